//! The event stream's JSON is a public format: an insta snapshot pins what a
//! scripted history produces today, and a golden file written by an earlier
//! version must keep decoding as the format evolves.

use accounts::domain::Event;
use accounts::http::EventBody;
use testkit::TestInstance;
use testkit::history::{ScriptedHistory, stream_text};

#[tokio::test]
async fn scripted_history_snapshot() {
    let app = TestInstance::new();
    let history = ScriptedHistory::play(&app).await;

    let mut settings = insta::Settings::clone_current();
    settings.set_snapshot_path("../fixtures/snapshots");
    settings.set_prepend_module_to_snapshot(false);
    let alice_events = stream_text(&app, &history.alice).await;
    let bob_events = stream_text(&app, &history.bob).await;
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
