//! Slow and abusive clients on real sockets: slowloris (headers trickled),
//! many idle connections, clients that disconnect mid-request and bodies
//! streamed without end. While they hang on, other clients are served —
//! shown by serving them while the abusers are still connected, not by a
//! stopwatch — and once they are gone, the server's tasks are back to where
//! they were (tokio's runtime metrics), so nothing leaks.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use accounts::http::ServeConfig;
use testkit::instance::SHUTDOWN_GRACE;
use testkit::raw::{exchange, status_of};
use testkit::{Served, TestInstance, fresh_id};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Long enough that no abuser is cut off while the well-behaved clients are
/// served, on a loaded machine too.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(5);

/// Generous: only a broken server makes anything wait this long.
const BOUND: Duration = Duration::from_secs(30);

fn serve_config() -> ServeConfig {
    ServeConfig {
        header_read_timeout: HEADER_READ_TIMEOUT,
        shutdown_grace: SHUTDOWN_GRACE,
        ..ServeConfig::default()
    }
}

/// Tasks alive on this test's runtime: the serve loop's plus one per
/// connection.
fn tasks() -> usize {
    tokio::runtime::Handle::current()
        .metrics()
        .num_alive_tasks()
}

/// Waits until `done` holds, or fails after the bound.
async fn eventually(what: &str, done: impl Fn() -> bool) {
    let deadline = Instant::now() + BOUND;
    while !done() {
        assert!(Instant::now() < deadline, "{what}: {} tasks alive", tasks());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Well-behaved clients: each request answered 200.
async fn served(server: &Served, requests: usize) {
    for _ in 0..requests {
        let answer = exchange(
            server.address,
            b"GET /ping HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
            BOUND,
        )
        .await;
        assert_eq!(status_of(&answer), Some(200));
    }
}

/// Serves a fresh instance; returns it and the task count once its serve
/// loop runs (one more task than before).
async fn start() -> (Served, usize) {
    let before = tasks();
    let server = TestInstance::builder()
        .serve_config(serve_config())
        .build()
        .serve()
        .await;
    eventually("the serve loop starts", || tasks() > before).await;
    let baseline = tasks();
    (server, baseline)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slowloris_clients_are_cut_off_and_block_nobody() {
    let (server, baseline) = start().await;
    let address = server.address;
    // One byte every 50 ms: the head would take ~12 s, far past the timeout.
    let trickle = format!(
        "GET /ping HTTP/1.1\r\nHost: t\r\nX-Slow: {}",
        "a".repeat(200)
    );
    let cut_off = Arc::new(AtomicBool::new(false));
    let slowloris: Vec<_> = (0..50)
        .map(|_| {
            let (trickle, cut_off) = (trickle.clone(), cut_off.clone());
            tokio::spawn(async move {
                let mut stream = TcpStream::connect(address).await.unwrap();
                for byte in trickle.bytes() {
                    let mut probe = [0u8; 1];
                    let closed = stream.write_all(&[byte]).await.is_err()
                        || matches!(
                            tokio::time::timeout(
                                Duration::from_millis(50),
                                stream.read(&mut probe)
                            )
                            .await,
                            Ok(Ok(0) | Err(_))
                        );
                    if closed {
                        cut_off.store(true, Ordering::SeqCst);
                        return true;
                    }
                }
                false
            })
        })
        .collect();
    // Fifty client tasks here, and fifty connection tasks in the server.
    eventually("the slowloris clients are connected", || {
        tasks() >= baseline + 100
    })
    .await;
    served(&server, 20).await;
    assert!(
        !cut_off.load(Ordering::SeqCst),
        "served only after a slowloris client was cut off"
    );
    for client in slowloris {
        assert!(
            client.await.unwrap(),
            "cut off before its head was complete"
        );
    }
    eventually("the tasks settle", || tasks() <= baseline).await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_idle_connections_block_nobody_and_are_closed() {
    let (server, baseline) = start().await;
    let connected = Instant::now();
    let mut idle = Vec::new();
    for _ in 0..300 {
        idle.push(TcpStream::connect(server.address).await.unwrap());
    }
    eventually("the idle connections are accepted", || {
        tasks() >= baseline + 300
    })
    .await;
    served(&server, 20).await;
    assert!(
        connected.elapsed() < HEADER_READ_TIMEOUT,
        "served only after the idle connections timed out"
    );
    // The server closes every one of them after the header-read timeout.
    for stream in &mut idle {
        let mut buffer = Vec::new();
        let read = tokio::time::timeout(BOUND, stream.read_to_end(&mut buffer)).await;
        assert!(read.is_ok(), "an idle connection is still open");
    }
    eventually("the tasks settle", || tasks() <= baseline).await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_that_disconnect_mid_request_leak_nothing_and_change_nothing() {
    let (store, app) = TestInstance::builder()
        .serve_config(serve_config())
        .instrumented();
    let api = app.client();
    let account = fresh_id();
    api.open_funded(&account, fresh_id(), 10, fresh_id()).await;
    let before = api.observe(&account).await;
    let applied = store.appends_applied();
    let before_serving = tasks();
    let server = app.serve().await;
    eventually("the serve loop starts", || tasks() > before_serving).await;
    let baseline = tasks();
    // Reads wait in the store until the test releases them: a client that
    // sent a whole read is gone before its answer.
    store.hold_reads();
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
                // A whole read sent to the held store, gone before the answer.
                _ => format!(
                    "GET /api/account/{} HTTP/1.1\r\nHost: t\r\n\r\n",
                    fresh_id()
                )
                .into_bytes(),
            };
            let _ = stream.write_all(&bytes).await;
            drop(stream);
        }));
    }
    for client in clients {
        client.await.unwrap();
    }
    served(&server, 10).await;
    store.release_reads();
    eventually("the tasks settle", || tasks() <= baseline).await;
    // Half-sent heads never reach the engine. A whole head is a whole
    // command (no operation reads a body), so the deposit announcing a body
    // that never comes may be applied, or cancelled when its client goes:
    // once at most, since all of them share one transactionId.
    let applied_since = store.appends_applied() - applied;
    assert!(applied_since <= 1, "{applied_since} appends");
    let balance = |observed: &(String, String)| -> i64 {
        let state: serde_json::Value = serde_json::from_str(&observed.0).unwrap();
        state["balance"].as_i64().unwrap()
    };
    let after = api.observe(&account).await;
    assert_eq!(balance(&after), balance(&before) + 5 * applied_since as i64);
    if applied_since == 0 {
        assert_eq!(after, before);
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endless_streamed_body_does_not_hold_the_server() {
    let (server, baseline) = start().await;
    let mut stream = TcpStream::connect(server.address).await.unwrap();
    stream
        .write_all(b"PUT /api/account/x/deposit?amount=1 HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n")
        .await
        .unwrap();
    // A chunk every few milliseconds for as long as the server listens.
    let writer = tokio::spawn(async move {
        let chunk = format!("400\r\n{}\r\n", "x".repeat(0x400));
        let started = Instant::now();
        while started.elapsed() < BOUND {
            if stream.write_all(chunk.as_bytes()).await.is_err() {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        false
    });
    served(&server, 10).await;
    // The answer (400: the id is invalid) needs none of the body; the server
    // then stops reading it and closes.
    assert!(
        writer.await.unwrap(),
        "the server kept reading an endless body"
    );
    eventually("the tasks settle", || tasks() <= baseline).await;
    server.stop().await;
}
