//! Graceful shutdown: `/ready` turns 503 as soon as the shutdown starts,
//! serving goes on for the drain delay, then the listener closes while a
//! request that is really in flight — its append held by the store until
//! the listener is closed — still finishes, with its answer and its effect.

use std::time::Duration;

use accounts::app::drain_after;
use testkit::{Client, Socket, StatusCode, TestInstance, id};
use tokio::sync::oneshot;

/// Generous: only a broken shutdown makes anything wait this long.
const BOUND: Duration = Duration::from_secs(30);

/// Waits until `check` holds, or fails after the bound.
async fn eventually<F: Future<Output = bool>>(what: &str, check: impl Fn() -> F) {
    let deadline = std::time::Instant::now() + BOUND;
    while !check().await {
        assert!(std::time::Instant::now() < deadline, "{what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drains_then_closes_the_listener_and_finishes_in_flight_requests() {
    let (store, app) = TestInstance::instrumented();
    let (trigger, triggered) = oneshot::channel::<()>();
    let (close, closed) = oneshot::channel::<()>();
    // The drain as the binary runs it, except that its delay ends when the
    // test says so (the delay itself is timed below, on paused time).
    let shutdown = {
        let state = app.state.clone();
        async move {
            let signal = async { triggered.await.unwrap_or(()) };
            drain_after(signal, state, Duration::ZERO).await;
            let _ = closed.await;
        }
    };
    let server = app.serve_until(shutdown).await;
    // A new connection per request: each one meets the listener as it is.
    let remote = Client::new(Socket::at(server.address).fresh_connections());
    remote.open_ok(id(1), id(2)).await;
    assert_eq!(remote.ready().await.status, StatusCode::OK);

    store.hold_appends();
    let in_flight = tokio::spawn({
        let remote = remote.clone();
        async move { remote.deposit(id(1), 5, id(3)).await.status }
    });
    // The open's append, then the deposit's: it is inside the store.
    store.appends_reached(2).await;

    trigger.send(()).unwrap();
    eventually("/ready turns 503 once the shutdown starts", || async {
        remote.ready().await.status == StatusCode::SERVICE_UNAVAILABLE
    })
    .await;
    remote
        .ready()
        .await
        .assert_error(StatusCode::SERVICE_UNAVAILABLE, "unavailable", "draining");
    assert_eq!(
        remote.ping().await.status,
        200,
        "still serving while draining"
    );

    close.send(()).unwrap();
    eventually("the listener closes after the drain", || async {
        tokio::net::TcpStream::connect(server.address)
            .await
            .is_err()
    })
    .await;
    assert!(!in_flight.is_finished(), "the deposit is still in flight");
    store.release_appends();
    let status = tokio::time::timeout(BOUND, in_flight)
        .await
        .expect("the in-flight request finishes")
        .unwrap();
    assert_eq!(status, StatusCode::NO_CONTENT, "in-flight requests finish");
    tokio::time::timeout(BOUND, server.finished())
        .await
        .expect("serve returns once in-flight requests are done");
    assert_eq!(app.client().balance(id(1)).await, 5, "with their effect");
}

#[tokio::test(start_paused = true)]
async fn the_drain_turns_ready_503_at_once_and_lasts_the_drain_delay() {
    let app = TestInstance::new();
    let client = app.client();
    let (trigger, triggered) = oneshot::channel::<()>();
    let delay = Duration::from_millis(800);
    let drain = tokio::spawn(drain_after(
        async { triggered.await.unwrap_or(()) },
        app.state.clone(),
        delay,
    ));
    tokio::task::yield_now().await;
    assert_eq!(client.ready().await.status, StatusCode::OK);
    trigger.send(()).unwrap();
    while !app.state.is_draining() {
        tokio::task::yield_now().await;
    }
    let started = tokio::time::Instant::now();
    client
        .ready()
        .await
        .assert_error(StatusCode::SERVICE_UNAVAILABLE, "unavailable", "draining");
    assert_eq!(client.ping().await.status, 200, "still serving");
    drain.await.unwrap();
    assert_eq!(
        started.elapsed(),
        delay,
        "the drain lasts its delay, exactly"
    );
}
