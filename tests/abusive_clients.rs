//! Slow and abusive clients on real sockets: slowloris (headers trickled),
//! many idle connections, clients that disconnect mid-request and bodies
//! streamed without end. While they hang on, other clients are served
//! promptly; once they are gone, the server's tasks are back to where they
//! were (tokio's runtime metrics), so nothing leaks.

mod hostile_support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use accounts::http::{Limits, ServeConfig};
use hostile_support::{
    Server, TestStore, app, engine_config, fresh_id, observe, open_with, raw, serve_config,
    status_of,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const HEADER_READ_TIMEOUT: Duration = Duration::from_millis(1_000);

/// Tasks alive on this test's runtime: the serve loop's plus one per
/// connection.
fn tasks() -> usize {
    tokio::runtime::Handle::current()
        .metrics()
        .num_alive_tasks()
}

/// Waits until the task count is back to `baseline`, or fails.
async fn settles_to(baseline: usize) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while tasks() > baseline {
        assert!(
            Instant::now() < deadline,
            "{} tasks alive, {baseline} before",
            tasks()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A well-behaved client: each request must be answered within `within`.
async fn served_promptly(server: &Server, requests: usize, within: Duration) {
    for _ in 0..requests {
        let started = Instant::now();
        let answer = raw(
            server.address,
            b"GET /ping HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
            Duration::from_secs(5),
        )
        .await;
        assert_eq!(status_of(&answer), Some(200));
        assert!(
            started.elapsed() < within,
            "answered after {:?}",
            started.elapsed()
        );
    }
}

async fn start(store: Arc<TestStore>, limits: Limits) -> (Server, usize) {
    let config = ServeConfig {
        header_read_timeout: HEADER_READ_TIMEOUT,
        ..serve_config()
    };
    let server = Server::start(app(store, engine_config(), limits), config).await;
    // Let the serve loop reach its accept.
    tokio::time::sleep(Duration::from_millis(50)).await;
    let baseline = tasks();
    (server, baseline)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slowloris_clients_are_cut_off_and_block_nobody() {
    let (server, baseline) = start(Arc::new(TestStore::new()), Limits::default()).await;
    let address = server.address;
    let trickle =
        b"GET /ping HTTP/1.1\r\nHost: t\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n";
    let slowloris: Vec<_> = (0..50)
        .map(|_| {
            tokio::spawn(async move {
                let started = Instant::now();
                let mut stream = TcpStream::connect(address).await.unwrap();
                // One byte every 50 ms: the head would take ~5 s.
                for byte in trickle.iter() {
                    if stream.write_all(&[*byte]).await.is_err() {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    let mut probe = [0u8; 1];
                    if let Ok(Ok(0)) =
                        tokio::time::timeout(Duration::from_millis(1), stream.read(&mut probe))
                            .await
                    {
                        break;
                    }
                }
                started.elapsed()
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(300)).await;
    // Fifty client tasks here, and fifty connection tasks in the server.
    assert!(
        tasks() >= baseline + 100,
        "{} tasks, {baseline} before",
        tasks()
    );
    served_promptly(&server, 20, Duration::from_millis(750)).await;
    for client in slowloris {
        let cut_off = client.await.unwrap();
        assert!(
            cut_off < Duration::from_secs(3),
            "cut off after {cut_off:?}"
        );
    }
    settles_to(baseline).await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_idle_connections_block_nobody_and_are_closed() {
    let (server, baseline) = start(Arc::new(TestStore::new()), Limits::default()).await;
    let mut idle = Vec::new();
    for _ in 0..300 {
        idle.push(TcpStream::connect(server.address).await.unwrap());
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(
        tasks() >= baseline + 300,
        "{} tasks, {baseline} before",
        tasks()
    );
    served_promptly(&server, 20, Duration::from_millis(750)).await;
    // The server closes every one of them after the header-read timeout.
    for stream in &mut idle {
        let mut buffer = Vec::new();
        let read =
            tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut buffer)).await;
        assert!(read.is_ok(), "an idle connection is still open");
    }
    settles_to(baseline).await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_that_disconnect_mid_request_leak_nothing_and_change_nothing() {
    let store = Arc::new(TestStore::slow(Duration::from_millis(300)));
    let state = app(store.clone(), engine_config(), Limits::default());
    let account = fresh_id();
    open_with(&state, &account, 10).await;
    let before = observe(&state, &account).await;
    let applied = store.applied();
    let config = ServeConfig {
        header_read_timeout: HEADER_READ_TIMEOUT,
        ..serve_config()
    };
    let server = Server::start(state.clone(), config).await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    let baseline = tasks();
    let deposit = format!(
        "PUT /api/account/{account}/deposit?amount=5&transactionId={} HTTP/1.1\r\nHost: t\r\n",
        fresh_id()
    );
    let mut clients = Vec::new();
    for i in 0..60 {
        let address = server.address;
        let deposit = deposit.clone();
        clients.push(tokio::spawn(async move {
            let mut stream = TcpStream::connect(address).await.unwrap();
            let bytes = match i % 3 {
                // Half a head, then gone.
                0 => deposit.as_bytes()[..deposit.len() / 2].to_vec(),
                // A whole head announcing a body that never comes.
                1 => format!("{deposit}Content-Length: 100\r\n\r\n{}", "x".repeat(10)).into_bytes(),
                // A whole read sent to the slow store, gone before the answer.
                _ => format!(
                    "GET /api/account/{} HTTP/1.1\r\nHost: t\r\n\r\n",
                    fresh_id()
                )
                .into_bytes(),
            };
            let _ = stream.write_all(&bytes).await;
            tokio::time::sleep(Duration::from_millis(50)).await;
            drop(stream);
        }));
    }
    for client in clients {
        client.await.unwrap();
    }
    served_promptly(&server, 10, Duration::from_millis(750)).await;
    settles_to(baseline).await;
    // Half-sent heads never reach the engine. A whole head is a whole
    // command (no operation reads a body), so the deposit announcing a body
    // that never comes may be applied, or cancelled when its client goes:
    // once at most, since all of them share one transactionId.
    let applied_since = store.applied() - applied;
    assert!(applied_since <= 1, "{applied_since} appends");
    let balance = |observed: &(String, String)| -> i64 {
        let state: serde_json::Value = serde_json::from_str(&observed.0).unwrap();
        state["balance"].as_i64().unwrap()
    };
    let after = observe(&state, &account).await;
    assert_eq!(balance(&after), balance(&before) + 5 * applied_since as i64);
    if applied_since == 0 {
        assert_eq!(after, before);
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endless_streamed_body_does_not_hold_the_server() {
    let (server, baseline) = start(Arc::new(TestStore::new()), Limits::default()).await;
    let mut stream = TcpStream::connect(server.address).await.unwrap();
    stream
        .write_all(b"PUT /api/account/x/deposit?amount=1 HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n")
        .await
        .unwrap();
    // A chunk every few milliseconds for as long as the server listens.
    let writer = tokio::spawn(async move {
        let chunk = format!("400\r\n{}\r\n", "x".repeat(0x400));
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(5) {
            if stream.write_all(chunk.as_bytes()).await.is_err() {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        false
    });
    served_promptly(&server, 10, Duration::from_millis(750)).await;
    // The answer (400: the id is invalid) needs none of the body; the server
    // then stops reading it and closes.
    assert!(
        writer.await.unwrap(),
        "the server kept reading an endless body"
    );
    settles_to(baseline).await;
    server.stop().await;
}
