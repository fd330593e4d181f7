//! Shared helpers for the in-process HTTP tests: the real router on a
//! deterministic engine (fixed clock, seeded entropy), wired by the
//! library's `InstanceBuilder`, called without sockets.

#![allow(dead_code)]

use std::sync::Arc;

use accounts::app::InstanceBuilder;
use accounts::domain::Timestamp;
use accounts::engine::{EngineConfig, FixedClock};
use accounts::http::{AppState, ErrorBody};
use accounts::store::{EventStore, MemoryStore};
use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, Method, Request, StatusCode};
use http_body_util::BodyExt;
use tower::ServiceExt;

/// 2026-11-26T10:00:00.000Z
pub const START_MILLIS: i64 = 1_795_687_200_000;

pub struct TestApp {
    pub router: Router,
    pub state: AppState,
    pub clock: Arc<FixedClock>,
}

pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: String,
}

impl Answer {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("body is not JSON ({e}): {:?}", self.body))
    }

    /// The `sequenceNumber`s of an event-stream page, in order.
    pub fn sequence_numbers(&self) -> Vec<i64> {
        let events = self.json();
        let events = events.as_array().expect("an event stream is an array");
        events
            .iter()
            .map(|e| e["sequenceNumber"].as_i64().expect("a sequence number"))
            .collect()
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .get(name)
            .map(|v| v.to_str().expect("header is text"))
    }

    /// Asserts an error answer of docs/API.md: the status, a JSON content
    /// type and a `{"code": …, "message": …}` body (keys in that order) with
    /// `code` and a message containing `needle`.
    pub fn assert_error(&self, status: StatusCode, code: &str, needle: &str) {
        assert_eq!(self.status, status, "body: {}", self.body);
        assert_eq!(self.header("content-type"), Some("application/json"));
        let body: ErrorBody = serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("not an error body ({e}): {:?}", self.body));
        assert_eq!(
            serde_json::to_string(&body).unwrap(),
            self.body,
            "exactly code, then message"
        );
        assert_eq!(body.code.as_str(), code, "body: {}", self.body);
        assert_eq!(body.code.status(), status, "the code's own status");
        assert!(
            body.message.contains(needle),
            "message {:?} should mention {needle:?}",
            body.message
        );
    }
}

impl TestApp {
    pub fn new() -> TestApp {
        TestApp::with_store(Arc::new(MemoryStore::new()), EngineConfig::default())
    }

    pub fn with_store(store: Arc<dyn EventStore>, config: EngineConfig) -> TestApp {
        let clock = Arc::new(FixedClock::new(Timestamp::from_unix_millis(START_MILLIS)));
        let instance = InstanceBuilder::new()
            .store(store)
            .clock(clock.clone())
            .seed(7)
            .engine_config(config)
            .build();
        TestApp {
            router: instance.router,
            state: instance.state,
            clock,
        }
    }

    pub async fn send(&self, method: Method, uri: &str) -> Answer {
        self.send_request(
            Request::builder()
                .method(method)
                .uri(uri)
                .body(Body::empty())
                .unwrap(),
        )
        .await
    }

    pub async fn send_request(&self, request: Request<Body>) -> Answer {
        let response = self
            .router
            .clone()
            .oneshot(request)
            .await
            .expect("infallible");
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = response
            .into_body()
            .collect()
            .await
            .expect("body")
            .to_bytes();
        Answer {
            status,
            headers,
            body: String::from_utf8(bytes.to_vec()).expect("UTF-8 body"),
        }
    }

    pub async fn get(&self, uri: &str) -> Answer {
        self.send(Method::GET, uri).await
    }

    pub async fn put(&self, uri: &str) -> Answer {
        self.send(Method::PUT, uri).await
    }

    pub async fn post(&self, uri: &str) -> Answer {
        self.send(Method::POST, uri).await
    }

    pub async fn delete(&self, uri: &str) -> Answer {
        self.send(Method::DELETE, uri).await
    }

    /// Opens `account` for `owner`, asserting 201.
    pub async fn open(&self, account: &str, owner: &str) {
        let answer = self
            .post(&format!("/api/account/{account}?owner={owner}"))
            .await;
        assert_eq!(answer.status, StatusCode::CREATED, "{}", answer.body);
    }

    pub async fn balance(&self, account: &str) -> i64 {
        let answer = self.get(&format!("/api/account/{account}")).await;
        assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
        answer.json()["balance"].as_i64().expect("balance")
    }

    pub async fn events(&self, account: &str) -> Vec<serde_json::Value> {
        let answer = self.get(&format!("/api/account/{account}/events")).await;
        assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
        answer.json().as_array().expect("an array").clone()
    }
}

/// A deterministic id: `id(1)` is `00000000-0000-0000-0000-000000000001`.
pub fn id(n: u128) -> String {
    uuid::Uuid::from_u128(n).hyphenated().to_string()
}

/// The history whose event streams are pinned in `fixtures/snapshots/`:
/// `event_stream_format.rs` writes the pins from the memory store,
/// `store_http.rs` checks every durable store serves them byte for byte.
pub struct ScriptedHistory {
    pub alice: String,
    pub bob: String,
    /// The PUTs played after the two opens, in order.
    pub script: Vec<String>,
}

impl ScriptedHistory {
    /// Opens alice and bob, plays the script and closes bob, the clock
    /// moving 1.234 s before each step.
    pub async fn play(app: &TestApp) -> ScriptedHistory {
        let (alice, bob, owner) = (id(0xa11ce), id(0xb0b), id(0x0e));
        let mut step = 0;
        let mut at = |app: &TestApp| {
            step += 1;
            app.clock
                .set(Timestamp::from_unix_millis(START_MILLIS + step * 1_234));
        };
        at(app);
        app.open(&alice, &owner).await;
        app.open(&bob, &owner).await;
        let script = vec![
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
            at(app);
            assert_eq!(app.put(url).await.status, 204, "{url}");
        }
        at(app);
        assert_eq!(app.delete(&format!("/api/account/{bob}")).await.status, 204);
        ScriptedHistory { alice, bob, script }
    }
}

/// The stream's body exactly as served (key order included), one event a
/// line, with the ids the service generated (open, and a close sent without
/// one) replaced so the pins hold the format, not the entropy's seed.
pub async fn stream_text(app: &TestApp, account: &str) -> String {
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
