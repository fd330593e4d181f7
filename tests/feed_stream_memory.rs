//! The feed's stream keeps the instance's memory flat whatever its
//! consumers do: with 100 consumers following the feed and 10 that stopped
//! reading (over real sockets with small receive buffers), a burst of
//! events disconnects the 10 stalled ones once their bounded buffers stay
//! full, the 100 others get every event exactly once (a follower cut off
//! on a loaded machine reconnects with Last-Event-ID, as the contract
//! says), and the events queued in the service, sampled all along the
//! burst, never exceed one bounded buffer per consumer — where unbounded
//! buffering would hold the whole burst for each stalled consumer. The
//! process's resident memory is printed too, but it holds the 100 clients
//! as well, so it is not what is asserted.

use std::time::Duration;

use accounts::http::{STREAM_BUFFER_EVENTS, STREAM_STALL_MS};
use testkit::{Client, FeedMessage, StatusCode, TestInstance, fresh_id, fresh_owner};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

const FOLLOWING: usize = 100;
const STALLED: usize = 10;
/// Deposits in the burst: ~280 bytes of SSE each, so each stalled consumer
/// would hold ~1.1 MB without a bound, ~11 MB for the ten.
const BURST: usize = 4_000;

fn resident_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").expect("Linux /proc");
    let pages: u64 = statm.split_whitespace().nth(1).unwrap().parse().unwrap();
    pages * 4096
}

/// A consumer that sends its request and never reads, with a small receive
/// window so the server's side fills quickly.
async fn stalled(address: std::net::SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut stream = socket.connect(address).await.unwrap();
    stream
        .write_all(b"GET /api/events/stream HTTP/1.1\r\nHost: test\r\nAccept: text/event-stream\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    stream
}

async fn until(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    while !condition() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_consumers_are_disconnected_and_memory_stays_flat() {
    let app = TestInstance::new();
    // The kernel autotunes a socket's send buffer up to 4 MB, so a stalled
    // consumer would take ~12 000 events before the service's own buffer
    // fills; pinned small, a few hundred do. The bound under test is the
    // service's, not the kernel's.
    let socket = TcpSocket::new_v4().unwrap();
    socket.set_send_buffer_size(8 * 1024).unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let served = app.serve_on(socket.listen(1024).unwrap(), std::future::pending());
    let writer = app.client();
    let account = fresh_id();
    writer.open_ok(&account, fresh_owner()).await;

    let mut followers = Vec::new();
    for _ in 0..FOLLOWING {
        let client = Client::new(testkit::Socket::at(served.address));
        let stream = client.follow(None, None).await;
        followers.push(tokio::spawn(follow(client, stream)));
    }
    let mut stalled_sockets = Vec::new();
    for _ in 0..STALLED {
        stalled_sockets.push(stalled(served.address).await);
    }
    let metrics = app.metrics.clone();
    until("every consumer connected", || {
        metrics.feed_streams.get() == (FOLLOWING + STALLED) as i64
    })
    .await;
    let before = resident_bytes();

    let sampler = {
        let metrics = metrics.clone();
        tokio::spawn(async move {
            let mut peak = 0;
            loop {
                peak = peak.max(metrics.feed_stream_buffered.get());
                if metrics.feed_streams.get() == FOLLOWING as i64
                    && metrics.feed_stream_slow_disconnects.get() >= STALLED as u64
                {
                    return peak;
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
    };
    for _ in 0..BURST {
        writer
            .deposit(&account, 1, fresh_id())
            .await
            .assert_status(StatusCode::NO_CONTENT);
    }
    let mut streams = Vec::new();
    let mut reconnections = 0;
    for follower in followers {
        let (sequence, reconnected, stream) = follower.await.expect("a follower does not panic");
        let expected: Vec<u64> = (1..=BURST as u64 + 1).collect();
        assert_eq!(
            sequence, expected,
            "a follower got every event once, in order"
        );
        reconnections += reconnected;
        streams.push(stream);
    }
    until("the stalled consumers' disconnection", || {
        metrics.feed_streams.get() == FOLLOWING as i64
    })
    .await;
    assert!(metrics.feed_stream_slow_disconnects.get() >= STALLED as u64);
    let peak = sampler.await.expect("the sampler does not panic");
    let after = resident_bytes();
    let growth = after.saturating_sub(before);
    eprintln!(
        "{FOLLOWING} following + {STALLED} stalled consumers, {BURST} events: RSS {} → {} MB (+{:.1} MB), buffer {STREAM_BUFFER_EVENTS} events, stall {STREAM_STALL_MS} ms, {reconnections} follower reconnections, at most {peak} events queued",
        before / (1 << 20),
        after / (1 << 20),
        growth as f64 / f64::from(1 << 20)
    );
    // A follower cut off and reconnecting has, for a moment, its new stream
    // open while the old one drains: one more bounded buffer per reconnection.
    let bound = ((FOLLOWING + STALLED + reconnections) * STREAM_BUFFER_EVENTS) as i64;
    assert!(peak <= bound, "{peak} events queued, above {bound}");
    // What stays queued is the stalled consumers' buffers, never the burst.
    let left = metrics.feed_stream_buffered.get();
    assert!(
        left <= (STALLED * STREAM_BUFFER_EVENTS) as i64,
        "{left} events still queued"
    );
    assert!(
        left > 0,
        "the stalled consumers' buffers were full when cut off"
    );

    // A stalled consumer that reads again gets what was queued, then the
    // end of the stream (it would reconnect with Last-Event-ID).
    let mut socket = stalled_sockets.pop().unwrap();
    let mut received = Vec::new();
    tokio::time::timeout(Duration::from_secs(60), socket.read_to_end(&mut received))
        .await
        .expect("the server ends the stalled stream")
        .unwrap();
    let text = String::from_utf8_lossy(&received);
    assert!(
        text.starts_with("HTTP/1.1 200"),
        "{}",
        &text[..text.len().min(200)]
    );
    assert!(
        text.ends_with("0\r\n\r\n"),
        "a clean end of the chunked stream"
    );
    assert!(
        !text.contains(&format!("\nid: {}\n", BURST + 1)),
        "cut off before the end of the burst"
    );
    drop(streams);
    drop(served);
}

/// Reads the whole burst (sequence numbers 1..=BURST+1 of the one account),
/// reconnecting with Last-Event-ID whenever the stream ends.
async fn follow(
    client: Client<testkit::Socket>,
    mut stream: testkit::EventStream,
) -> (Vec<u64>, usize, testkit::EventStream) {
    let mut sequence = Vec::new();
    let mut last_id = None;
    let mut reconnections = 0;
    while sequence.len() <= BURST {
        match stream.next_message().await {
            Some(FeedMessage { id, data, .. }) => {
                last_id = Some(id);
                sequence.push(data["sequenceNumber"].as_u64().expect("a sequence number"));
            }
            None => {
                reconnections += 1;
                let request = client.feed_stream(None, last_id).request().clone();
                // A connection the server just closed may be handed out
                // again by the pool: try again, as any consumer would.
                if let Ok(reopened) = client.transport().try_open_stream(request).await {
                    assert_eq!(reopened.status, StatusCode::OK);
                    stream = reopened;
                }
            }
        }
    }
    (sequence, reconnections, stream)
}
