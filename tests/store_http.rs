//! The HTTP API over each durable store, in-process: the scripted history
//! of `event_stream_format.rs` must serve, byte for byte, the event streams
//! pinned in `fixtures/snapshots/` (written from the memory store), and the
//! answers that depend on stored state (replays after a close, paging with
//! `Link`) must be those of the contract.

mod common;
mod store_support;

use accounts::domain::Timestamp;
use accounts::engine::EngineConfig;
use common::{START_MILLIS, TestApp, id};
use store_support::{Backend, TestStore};

async fn app_over(test: &TestStore) -> TestApp {
    TestApp::with_store(
        test.store.clone(),
        EngineConfig {
            // Small, so the history also goes through stored snapshots.
            snapshot_every: 2,
            ..EngineConfig::default()
        },
    )
}

/// The stream text as `event_stream_format.rs` prints it.
async fn stream_text(app: &TestApp, account: &str) -> String {
    let answer = app.get(&format!("/api/account/{account}/events")).await;
    assert_eq!(answer.status, 200);
    let mut text = answer.body.clone();
    for event in answer.json().as_array().unwrap() {
        if matches!(
            event["type"].as_str(),
            Some("AccountOpened" | "AccountClosed")
        ) {
            let generated = event["transactionId"].as_str().unwrap();
            text = text.replace(generated, "[generated]");
        }
    }
    text.replace("},{", "},\n{")
}

/// The body of an insta snapshot file (after its metadata header).
fn pinned(text: &str) -> String {
    text.splitn(3, "---\n")
        .nth(2)
        .expect("a snapshot body")
        .trim_end()
        .to_owned()
}

async fn scripted_history(backend: Backend) {
    let test = TestStore::open(backend).await;
    let app = app_over(&test).await;
    let (alice, bob, owner) = (id(0xa11ce), id(0xb0b), id(0x0e));
    let mut step = 0;
    let mut at = |app: &TestApp| {
        step += 1;
        app.clock
            .set(Timestamp::from_unix_millis(START_MILLIS + step * 1_234));
    };
    at(&app);
    app.open(&alice, &owner).await;
    app.open(&bob, &owner).await;
    let script = [
        format!(
            "/api/account/{alice}/deposit?amount=100&transactionId={}",
            id(1)
        ),
        format!("/api/account/{alice}?deposit=50&transactionId={}", id(2)),
        format!(
            "/api/account/{alice}/withdraw?amount=30&transactionId={}",
            id(3)
        ),
        format!(
            "/api/account/{alice}/transfer?targetAccount={bob}&amount=70&transactionId={}",
            id(4)
        ),
        format!(
            "/api/account/{bob}?transfer={alice}&amount=20&transactionId={}",
            id(5)
        ),
        format!(
            "/api/account/{bob}/withdraw?amount=50&transactionId={}",
            id(6)
        ),
    ];
    for url in &script {
        at(&app);
        assert_eq!(app.put(url).await.status, 204, "{url}");
    }
    at(&app);
    assert_eq!(app.delete(&format!("/api/account/{bob}")).await.status, 204);

    assert_eq!(
        stream_text(&app, &alice).await,
        pinned(include_str!(
            "../fixtures/snapshots/alice_event_stream.snap"
        ))
    );
    assert_eq!(
        stream_text(&app, &bob).await,
        pinned(include_str!("../fixtures/snapshots/bob_event_stream.snap"))
    );

    // Replays answer from the stored records, whatever happened since: the
    // transfer again after bob was closed is 204 and records nothing; the
    // same id for another amount is 422.
    assert_eq!(app.put(&script[3]).await.status, 204);
    let reused = format!(
        "/api/account/{alice}/transfer?targetAccount={bob}&amount=71&transactionId={}",
        id(4)
    );
    assert_eq!(app.put(&reused).await.status, 422);
    assert_eq!(app.balance(&alice).await, 70);
    assert_eq!(app.events(&alice).await.len(), 6);

    // A fresh app over the same store (a restart) reads the same state.
    let restarted = app_over(&test).await;
    assert_eq!(restarted.balance(&alice).await, 70);
    let page = restarted
        .get(&format!("/api/account/{alice}/events?from=2&limit=3"))
        .await;
    assert_eq!(page.status, 200);
    let sequences: Vec<i64> = page
        .json()
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["sequenceNumber"].as_i64().unwrap())
        .collect();
    assert_eq!(sequences, [2, 3, 4]);
    assert_eq!(
        page.header("link"),
        Some(format!("</api/account/{alice}/events?from=5&limit=3>; rel=\"next\"").as_str())
    );
}

#[tokio::test]
async fn sqlite_serves_the_pinned_event_streams() {
    scripted_history(Backend::Sqlite).await;
}

#[tokio::test]
#[ignore = "needs ACCOUNTS_TEST_POSTGRES_URL"]
async fn postgres_serves_the_pinned_event_streams() {
    scripted_history(Backend::Postgres).await;
}

#[tokio::test]
#[ignore = "needs ACCOUNTS_TEST_MYSQL_URL"]
async fn mysql_serves_the_pinned_event_streams() {
    scripted_history(Backend::Mysql).await;
}
