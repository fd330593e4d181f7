//! Graceful shutdown over a real socket: `/ready` turns 503 as soon as the
//! shutdown starts, serving goes on for the drain delay, then the listener
//! closes while in-flight requests still finish.

mod common;
mod hostile_support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use accounts::app::drain_after;
use accounts::engine::EngineConfig;
use accounts::http::{ServeConfig, router, serve};
use common::{TestApp, id};
use hostile_support::TestStore;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drains_then_closes_the_listener_and_finishes_in_flight_requests() {
    // Every append takes 600 ms: an in-flight request we can start just
    // before the listener closes.
    let store = Arc::new(TestStore::slow_appends(Duration::from_millis(600)));
    let app = TestApp::with_store(store, EngineConfig::default());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let (trigger, triggered) = tokio::sync::oneshot::channel::<()>();
    let drain_delay = Duration::from_millis(800);
    let shutdown = drain_after(
        async { triggered.await.unwrap_or(()) },
        app.state.clone(),
        drain_delay,
    );
    let server = tokio::spawn(serve(
        listener,
        router(app.state.clone()),
        ServeConfig::default(),
        shutdown,
    ));
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .unwrap();

    let open = client
        .post(format!("{base}/api/account/{}?owner={}", id(1), id(2)))
        .send()
        .await
        .unwrap();
    assert_eq!(open.status(), 201);
    assert_eq!(status(&client, &format!("{base}/ready")).await, 200);

    let started = Instant::now();
    trigger.send(()).unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(
        status(&client, &format!("{base}/ready")).await,
        503,
        "ready turns 503 at once"
    );
    assert_eq!(
        status(&client, &format!("{base}/ping")).await,
        200,
        "still serving"
    );

    // In flight when the drain delay ends: it must still be answered.
    let url = format!(
        "{base}/api/account/{}/deposit?amount=5&transactionId={}",
        id(1),
        id(3)
    );
    let in_flight = tokio::spawn({
        let client = client.clone();
        async move { client.put(url).send().await.map(|r| r.status().as_u16()) }
    });
    tokio::time::sleep(drain_delay.saturating_sub(started.elapsed()) + Duration::from_millis(100))
        .await;
    let refused = client.get(format!("{base}/ping")).send().await;
    assert!(
        refused.is_err(),
        "the listener is closed after the drain delay: {refused:?}"
    );
    assert_eq!(
        in_flight.await.unwrap().unwrap(),
        204,
        "in-flight requests finish"
    );
    tokio::time::timeout(Duration::from_secs(5), server)
        .await
        .expect("serve returns")
        .unwrap();
    assert_eq!(app.balance(&id(1)).await, 5);
}

async fn status(client: &reqwest::Client, url: &str) -> u16 {
    client
        .get(url)
        .send()
        .await
        .expect("the server answers")
        .status()
        .as_u16()
}
