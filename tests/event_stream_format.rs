//! The event stream's JSON is a public format: an insta snapshot pins what a
//! scripted history produces today, and a golden file written by an earlier
//! version must keep decoding as the format evolves.

mod common;

use accounts::domain::{Event, Timestamp};
use accounts::http::EventBody;
use common::{START_MILLIS, TestApp, id};

/// The stream's body exactly as served (key order included), one event a
/// line, with the ids the service generated (open, and a close sent without
/// one) replaced so the snapshot pins the format, not the entropy's seed.
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

#[tokio::test]
async fn scripted_history_snapshot() {
    let app = TestApp::new();
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

    let mut settings = insta::Settings::clone_current();
    settings.set_snapshot_path("../fixtures/snapshots");
    settings.set_prepend_module_to_snapshot(false);
    let alice_events = stream_text(&app, &alice).await;
    let bob_events = stream_text(&app, &bob).await;
    settings.bind(|| {
        insta::assert_snapshot!("alice_event_stream", alice_events);
        insta::assert_snapshot!("bob_event_stream", bob_events);
    });
}

#[test]
fn golden_event_stream_v1_still_decodes() {
    let text = include_str!("../fixtures/golden/event-stream-v1.json");
    let events: Vec<EventBody> = serde_json::from_str(text).expect("the v1 stream decodes");
    assert_eq!(events.len(), 7);
    assert!(matches!(events[0].event, Event::AccountOpened { .. }));
    assert!(matches!(
        events[3].event,
        Event::MoneyWithdrawn {
            amount_withdrawn: 25,
            balance: 55,
            transfer_to: Some(_)
        }
    ));
    assert!(matches!(
        events[4].event,
        Event::MoneyDeposited {
            amount_deposited: 5,
            balance: 60,
            transfer_from: Some(_)
        }
    ));
    assert_eq!(events[6].event, Event::AccountClosed);
    assert_eq!(
        events[6].recorded_at.to_rfc3339(),
        "2026-11-26T10:00:06.006Z"
    );
    let replayed = accounts::domain::replay(
        accounts::domain::Account::Unopened,
        events.iter().map(|e| &e.event),
    );
    assert!(matches!(replayed, accounts::domain::Account::Closed { .. }));
    // Re-encoding gives back the stored text, key order included.
    let compact = text.replace("\n  ", "").replace('\n', "");
    assert_eq!(serde_json::to_string(&events).unwrap(), compact);
}
