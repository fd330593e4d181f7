//! The scripted history whose event streams are pinned in
//! `fixtures/snapshots/`: `event_stream_format.rs` writes the pins from the
//! memory store, `store_http.rs` checks every durable store serves them
//! byte for byte.

use axum::http::StatusCode;

use crate::api::Style;
use crate::ids::id;
use crate::instance::TestInstance;

pub struct ScriptedHistory {
    pub alice: String,
    pub bob: String,
    /// The PUTs played after the two opens, in order (request targets).
    pub script: Vec<String>,
}

impl ScriptedHistory {
    /// Opens alice and bob, plays the script and closes bob, the clock
    /// moving 1.234 s before each step.
    pub async fn play(app: &TestInstance) -> ScriptedHistory {
        let (alice, bob, owner) = (id(0xa11ce), id(0xb0b), id(0x0e));
        let client = app.client();
        let (path, query) = (
            client.with_style(Style::Path),
            client.with_style(Style::Query),
        );
        let mut step = 0;
        let mut tick = || {
            step += 1;
            app.set_clock(step * 1_234);
        };
        tick();
        client.open_ok(&alice, &owner).await;
        client.open_ok(&bob, &owner).await;
        let script = [
            path.deposit(&alice, 100, id(1)),
            query.deposit(&alice, 50, id(2)),
            path.withdraw(&alice, 30, id(3)),
            path.transfer(&alice, &bob, 70, id(4)),
            query.transfer(&bob, &alice, 20, id(5)),
            path.withdraw(&bob, 50, id(6)),
        ];
        let mut targets = Vec::new();
        for call in script {
            tick();
            let target = call.request().target.clone();
            call.await.assert_status(StatusCode::NO_CONTENT);
            targets.push(target);
        }
        tick();
        client
            .close(&bob)
            .await
            .assert_status(StatusCode::NO_CONTENT);
        ScriptedHistory {
            alice,
            bob,
            script: targets,
        }
    }
}

/// The stream's body exactly as served (key order included), one event a
/// line, with the ids the service generated (open, and a close sent without
/// one) replaced so the pins hold the format, not the entropy's seed.
pub async fn stream_text(app: &TestInstance, account: &str) -> String {
    let answer = app.client().events(account).await;
    answer.assert_status(StatusCode::OK);
    let mut text = answer.body.clone();
    for event in answer.json().as_array().expect("an array") {
        if matches!(
            event["type"].as_str(),
            Some("AccountOpened" | "AccountClosed")
        ) {
            let generated = event["transactionId"].as_str().expect("an id");
            text = text.replace(generated, "[generated]");
        }
    }
    text.replace("},{", "},\n{")
}
