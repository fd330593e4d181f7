//! The HTTP API over each durable store, in-process: the scripted history
//! (`testkit::history::ScriptedHistory`) must serve, byte for byte, the event streams
//! pinned in `fixtures/snapshots/` (written from the memory store), and the
//! answers that depend on stored state (replays after a close, paging with
//! `Link`) must be those of the contract.

use accounts::engine::EngineConfig;
use testkit::history::{ScriptedHistory, stream_text};
use testkit::{Backend, StatusCode, TestInstance, TestStore, id};

fn app_over(test: &TestStore) -> TestInstance {
    TestInstance::builder()
        .store(test.store.clone())
        .engine_config(EngineConfig {
            // Small, so the history also goes through stored snapshots.
            snapshot_every: 2,
            ..EngineConfig::default()
        })
        .build()
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
    let app = app_over(&test);
    let client = app.client();
    let ScriptedHistory { alice, bob, script } = ScriptedHistory::play(&app).await;

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
    assert_eq!(client.put(&script[3]).await.status, 204);
    let reused = client.transfer(&alice, &bob, 71, id(4)).await;
    reused.assert_error(
        StatusCode::UNPROCESSABLE_ENTITY,
        "transaction_reused",
        &id(4),
    );
    assert_eq!(client.balance(&alice).await, 70);
    assert_eq!(client.event_list(&alice).await.len(), 6);

    // A fresh app over the same store (a restart) reads the same state.
    let restarted = app_over(&test).client();
    assert_eq!(restarted.balance(&alice).await, 70);
    let page = restarted.events_page(&alice, Some(2), Some(3)).await;
    assert_eq!(page.status, 200);
    let sequences = page.sequence_numbers();
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
