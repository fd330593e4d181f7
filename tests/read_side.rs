//! The read side of docs/API.md: the `ETag` of a state, past states
//! (`?version=`, `?at=`), the store-wide feed (paging, long-poll) and its
//! Server-Sent Events stream, with their parameters' errors and who may
//! read them.

use std::time::Duration;

use accounts::engine::EngineConfig;
use accounts::http::{
    ErrorCode, FEED_LIMIT_MAX, FEED_POLL_MS, FEED_WAIT_MS_MAX, STREAM_KEEP_ALIVE_MS,
};
use accounts::store::{EventStore, MemoryStore};
use serde_json::Value;
use std::sync::Arc;
use testkit::history::ScriptedHistory;
use testkit::{Client, InProcess, StatusCode, TestInstance, fresh_id, fresh_owner, position};
use tokio::time::Instant;

/// Snapshots every 2 events, so past states come from kept snapshots.
fn snapshotting() -> TestInstance {
    TestInstance::builder()
        .engine_config(EngineConfig {
            snapshot_every: 2,
            ..EngineConfig::default()
        })
        .build()
}

fn pins() -> insta::Settings {
    let mut settings = insta::Settings::clone_current();
    settings.set_snapshot_path("../fixtures/snapshots");
    settings.set_prepend_module_to_snapshot(false);
    settings
}

/// `"<version>" <body>` of a 200 state answer, `<status> <code>` otherwise.
async fn state_line(client: &Client<InProcess>, target: String) -> String {
    let answer = client.get(target).await;
    match answer.status {
        StatusCode::OK => format!(
            "{} {}",
            answer.header("etag").expect("an ETag"),
            answer.body
        ),
        status => format!(
            "{} {}",
            status.as_u16(),
            answer.error_code().expect("an error body")
        ),
    }
}

#[tokio::test]
async fn past_states_of_the_scripted_history_are_pinned() {
    let app = snapshotting();
    let history = ScriptedHistory::play(&app).await;
    let client = app.client();
    let mut lines = Vec::new();
    for account in [&history.alice, &history.bob] {
        for version in 1..=7 {
            let target = format!("/api/account/{account}?version={version}");
            lines.push(format!(
                "{target} → {}",
                state_line(&client, target.clone()).await
            ));
        }
        // The script moves the clock 1.234 s before each step, from 10:00.
        for at in [
            "2026-11-26T10:00:01.233Z",
            "2026-11-26T10:00:01.234Z",
            "2026-11-26T10:00:04.000Z",
            "2026-11-26T11:00:05.000%2B01:00",
            "2026-11-26T10:00:07.404Z",
            "2026-11-26T10:00:09.000Z",
            "2030-01-01T00:00:00Z",
        ] {
            let target = format!("/api/account/{account}?at={at}");
            lines.push(format!(
                "{target} → {}",
                state_line(&client, target.clone()).await
            ));
        }
        let target = format!("/api/account/{account}");
        lines.push(format!(
            "{target} → {}",
            state_line(&client, target.clone()).await
        ));
    }
    pins().bind(|| insta::assert_snapshot!("past_states", lines.join("\n")));
}

#[tokio::test]
async fn the_etag_is_the_version_of_the_state() {
    let app = TestInstance::new();
    let client = app.client();
    let (account, owner) = (fresh_id(), fresh_owner());
    client.open_funded(&account, &owner, 10, fresh_id()).await;
    let answer = client.state(&account).await;
    answer.assert_status(StatusCode::OK);
    assert_eq!(answer.header("etag"), Some("\"2\""));
    client
        .withdraw(&account, 3, fresh_id())
        .await
        .assert_status(StatusCode::NO_CONTENT);
    assert_eq!(client.state(&account).await.header("etag"), Some("\"3\""));
    let past = client.state_at_version(&account, 2).await;
    assert_eq!(past.header("etag"), Some("\"2\""));
    assert_eq!(past.json()["balance"], 10);
    // The body is unchanged: exactly its four keys, in order.
    assert_eq!(
        past.body,
        format!(r#"{{"accountId":"{account}","ownerId":"{owner}","balance":10,"open":true}}"#)
    );
}

#[tokio::test]
async fn bad_version_and_time_parameters_are_400_and_missing_states_404() {
    let app = TestInstance::new();
    let client = app.client();
    let (account, owner) = (fresh_id(), fresh_owner());
    client.open_funded(&account, &owner, 10, fresh_id()).await;
    let base = format!("/api/account/{account}");
    for query in [
        "version=0",
        "version=-1",
        "version=x",
        "version=",
        "version=9223372036854775808",
        "version=1&version=2",
        "at=yesterday",
        "at=2026-11-26",
        "at=",
        "at=2026-11-26T10:00:00Z&at=2026-11-26T10:00:00Z",
        "version=1&at=2026-11-26T10:00:00Z",
    ] {
        let answer = client.get(format!("{base}?{query}")).await;
        answer.assert_status(StatusCode::BAD_REQUEST);
        assert_eq!(
            answer.error_code(),
            Some(ErrorCode::BadParameter),
            "{query}"
        );
    }
    let unknown = fresh_id();
    for target in [
        format!("{base}?version=3"),
        format!("{base}?version=9223372036854775807"),
        format!("{base}?at=2026-11-26T09:59:59.999Z"),
        format!("/api/account/{unknown}?version=1"),
        format!("/api/account/{unknown}?at=2030-01-01T00:00:00Z"),
    ] {
        let answer = client.get(target.clone()).await;
        answer.assert_status(StatusCode::NOT_FOUND);
        assert_eq!(
            answer.error_code(),
            Some(ErrorCode::AccountNotFound),
            "{target}"
        );
    }
}

#[tokio::test]
async fn past_states_are_the_owners_and_the_feed_the_admins() {
    let app = TestInstance::with_auth();
    let tokens = app.tokens();
    let (account, alice, bob) = (fresh_id(), fresh_owner(), fresh_owner());
    let as_alice = app.client().with_token(tokens.owner(alice));
    let as_bob = app.client().with_token(tokens.owner(bob));
    let as_admin = app.client().with_token(tokens.admin());
    as_alice.open_funded(&account, alice, 5, fresh_id()).await;

    as_alice
        .state_at_version(&account, 1)
        .await
        .assert_status(StatusCode::OK);
    as_admin
        .state_at_version(&account, 2)
        .await
        .assert_status(StatusCode::OK);
    // Someone else's past answers as an unknown account's does.
    let theirs = as_bob.state_at_version(&account, 1).await;
    let unknown = as_bob.state_at_version(fresh_id(), 1).await;
    theirs.assert_status(StatusCode::NOT_FOUND);
    assert_eq!(theirs.error_code(), unknown.error_code());
    as_bob
        .state_at_time(&account, "2030-01-01T00:00:00Z")
        .await
        .assert_status(StatusCode::NOT_FOUND);

    for feed in [
        as_alice.feed(None, None, None).await,
        as_alice.feed_stream(None, None).await,
    ] {
        feed.assert_status(StatusCode::FORBIDDEN);
        assert_eq!(feed.error_code(), Some(ErrorCode::Forbidden));
    }
    for feed in [
        app.client().feed(None, None, None).await,
        app.client().feed_stream(None, None).await,
    ] {
        feed.assert_status(StatusCode::UNAUTHORIZED);
    }
    // Parameters are checked before the caller (rule 2 before rule 3).
    as_alice
        .get("/api/events?limit=0")
        .await
        .assert_status(StatusCode::BAD_REQUEST);
    assert_eq!(as_admin.feed_page(0, 10).await.len(), 2);
}

/// Opens `n` accounts with a deposit each: 2n events.
async fn write(client: &Client<InProcess>, n: usize) -> Vec<String> {
    let mut accounts = Vec::new();
    for _ in 0..n {
        let account = fresh_id();
        client
            .open_funded(&account, fresh_owner(), 7, fresh_id())
            .await;
        accounts.push(account);
    }
    accounts
}

#[tokio::test]
async fn the_feed_pages_every_event_in_commit_order() {
    let app = TestInstance::new();
    let client = app.client();
    let accounts = write(&client, 5).await;
    let (from, to) = (&accounts[0], &accounts[1]);
    client
        .transfer(from, to, 3, fresh_id())
        .await
        .assert_status(StatusCode::NO_CONTENT);

    let first = client.feed(None, Some(4), None).await;
    first.assert_status(StatusCode::OK);
    let page = first.json();
    let page = page.as_array().unwrap();
    assert_eq!(page.len(), 4);
    let last = position(&page[3]);
    assert_eq!(
        first.header("link"),
        Some(format!("</api/events?after={last}&limit=4>; rel=\"next\"").as_str())
    );
    // The stream's event object with position and accountId in front.
    let front = format!(
        r#"[{{"position":{},"accountId":"{}","sequenceNumber":1,"transactionId":"#,
        position(&page[0]),
        accounts[0]
    );
    assert!(first.body.starts_with(&front), "{}", first.body);
    let event = client.events_page(&accounts[0], None, Some(1)).await.body;
    let tail = first.body[front.len() - r#""transactionId":"#.len()..]
        .split("},")
        .next()
        .unwrap()
        .to_owned();
    assert!(
        event.contains(&tail),
        "{tail} is the stream's event: {event}"
    );

    let feed = client.whole_feed(3).await;
    assert_eq!(feed.len(), 12);
    let positions: Vec<u64> = feed.iter().map(position).collect();
    assert!(positions.windows(2).all(|w| w[0] < w[1]), "{positions:?}");
    assert!(positions[0] >= 1);
    // Per account, the stream's order; the transfer's legs adjacent.
    for account in &accounts {
        let own: Vec<&Value> = feed
            .iter()
            .filter(|e| e["accountId"] == account.as_str())
            .collect();
        let numbers: Vec<u64> = own
            .iter()
            .map(|e| e["sequenceNumber"].as_u64().unwrap())
            .collect();
        let expected: Vec<u64> = (1..=numbers.len() as u64).collect();
        assert_eq!(numbers, expected);
    }
    let legs = &feed[10..12];
    assert_eq!(legs[0]["transactionId"], legs[1]["transactionId"]);
    // A page that is not full has no next link.
    let tail = client.feed(Some(positions[9]), Some(10), None).await;
    assert_eq!(tail.json().as_array().unwrap().len(), 2);
    assert_eq!(tail.header("link"), None);
    assert_eq!(
        client.feed_page(positions[11], 10).await,
        Vec::<Value>::new()
    );
}

#[tokio::test]
async fn bad_feed_parameters_are_400() {
    let app = TestInstance::new();
    let client = app.client();
    let too_many = FEED_LIMIT_MAX + 1;
    let too_long = FEED_WAIT_MS_MAX + 1;
    for query in [
        "after=-1".to_owned(),
        "after=x".to_owned(),
        "after=9223372036854775808".to_owned(),
        "limit=0".to_owned(),
        format!("limit={too_many}"),
        "limit=1.5".to_owned(),
        "waitMs=-5".to_owned(),
        format!("waitMs={too_long}"),
        "after=1&after=2".to_owned(),
    ] {
        for path in ["/api/events", "/api/events/stream"] {
            if path.ends_with("stream") && !query.starts_with("after") {
                continue;
            }
            let answer = client.get(format!("{path}?{query}")).await;
            answer.assert_status(StatusCode::BAD_REQUEST);
            assert_eq!(
                answer.error_code(),
                Some(ErrorCode::BadParameter),
                "{path}?{query}"
            );
        }
    }
    for id in ["x", "-1", "1.0", ""] {
        let answer = client
            .get("/api/events/stream")
            .header("last-event-id", id)
            .await;
        answer.assert_status(StatusCode::BAD_REQUEST);
        assert_eq!(answer.error_code(), Some(ErrorCode::BadParameter), "{id:?}");
    }
    client
        .get(format!(
            "/api/events?limit={FEED_LIMIT_MAX}&waitMs=0&after=0"
        ))
        .await
        .assert_status(StatusCode::OK);
}

#[tokio::test(start_paused = true)]
async fn a_long_poll_wakes_at_once_on_a_commit_of_this_instance() {
    let app = TestInstance::new();
    let client = app.client();
    write(&client, 1).await;
    let head = position(client.feed_page(0, 10).await.last().unwrap());
    let waiting = {
        let client = client.clone();
        tokio::spawn(async move { client.feed(Some(head), None, Some(30_000)).await })
    };
    // Off the polling grid, so only the commit signal can answer at once.
    tokio::time::sleep(Duration::from_millis(5 * FEED_POLL_MS + FEED_POLL_MS / 2)).await;
    assert!(!waiting.is_finished(), "nothing committed yet");
    write(&client, 1).await;
    let committed = Instant::now();
    let answer = waiting.await.unwrap();
    assert!(
        committed.elapsed() < Duration::from_millis(100),
        "{:?}",
        committed.elapsed()
    );
    answer.assert_status(StatusCode::OK);
    let events = answer.json();
    assert_eq!(
        events[0]["type"], "AccountOpened",
        "the first event after head"
    );
}

#[tokio::test(start_paused = true)]
async fn a_long_poll_sees_another_instances_commit_within_the_poll_interval() {
    let store: Arc<dyn EventStore> = Arc::new(MemoryStore::new());
    let (reader, writer) = (TestInstance::over(store.clone()), TestInstance::over(store));
    let waiting = {
        let client = reader.client();
        tokio::spawn(async move { client.feed(None, None, Some(30_000)).await })
    };
    tokio::time::sleep(Duration::from_millis(3 * FEED_POLL_MS + FEED_POLL_MS / 2)).await;
    assert!(!waiting.is_finished());
    write(&writer.client(), 1).await;
    let committed = Instant::now();
    let answer = waiting.await.unwrap();
    let delay = committed.elapsed();
    assert!(delay <= Duration::from_millis(FEED_POLL_MS), "{delay:?}");
    assert!(!answer.json().as_array().unwrap().is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_long_poll_with_nothing_new_answers_empty_after_its_wait_even_beyond_the_request_timeout()
{
    let app = TestInstance::new();
    let started = Instant::now();
    let answer = app.client().feed(None, None, Some(FEED_WAIT_MS_MAX)).await;
    answer.assert_status(StatusCode::OK);
    assert_eq!(answer.body, "[]");
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(FEED_WAIT_MS_MAX)
            && waited < Duration::from_millis(FEED_WAIT_MS_MAX + FEED_POLL_MS),
        "{waited:?}"
    );
    let at_once = Instant::now();
    app.client()
        .feed(None, None, None)
        .await
        .assert_status(StatusCode::OK);
    assert_eq!(at_once.elapsed(), Duration::ZERO, "no waitMs: no wait");
}

#[tokio::test]
async fn the_stream_sends_every_event_then_follows_live() {
    let app = TestInstance::new();
    let client = app.client();
    write(&client, 2).await;
    let feed = client.whole_feed(100).await;
    let mut stream = client.follow(None, None).await;
    let messages = stream.messages(4).await;
    for (message, event) in messages.iter().zip(&feed) {
        assert_eq!(message.id, position(event));
        assert_eq!(message.event, event["type"].as_str().unwrap());
        assert_eq!(&message.data, event);
    }
    write(&client, 1).await;
    let live = stream.messages(2).await;
    assert_eq!(live[0].event, "AccountOpened");
    assert_eq!(live[1].event, "MoneyDeposited");
    assert!(live[0].id > messages[3].id);
}

#[tokio::test]
async fn the_stream_resumes_after_last_event_id_which_wins_over_after() {
    let app = TestInstance::new();
    let client = app.client();
    write(&client, 3).await;
    let feed = client.whole_feed(100).await;
    let positions: Vec<u64> = feed.iter().map(position).collect();
    let mut from_after = client.follow(Some(positions[1]), None).await;
    assert_eq!(from_after.next_message().await.unwrap().id, positions[2]);
    let mut resumed = client.follow(Some(positions[1]), Some(positions[4])).await;
    assert_eq!(resumed.next_message().await.unwrap().id, positions[5]);
}

#[tokio::test(start_paused = true)]
async fn an_idle_stream_gets_keep_alive_comments() {
    let app = TestInstance::new();
    let mut stream = app.client().follow(None, None).await;
    let opened = Instant::now();
    let item = stream.next_item().await.expect("the stream stays open");
    assert!(
        matches!(item, accounts::follow::SseItem::Comment(_)),
        "{item:?}"
    );
    assert!(opened.elapsed() <= Duration::from_millis(STREAM_KEEP_ALIVE_MS));
}

#[tokio::test]
async fn the_stream_ends_when_the_instance_drains() {
    let app = TestInstance::new();
    let mut stream = app.client().follow(None, None).await;
    app.state.begin_drain();
    assert_eq!(stream.next_item().await, None);
}
