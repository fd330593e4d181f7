//! Shared by the hostile-client tests (`hostile.rs`, `limits.rs`,
//! `abusive_clients.rs`, `openapi.rs`) and `shutdown.rs`: an app over a store
//! that can be made slow or always conflicting and that counts its appends,
//! requests through the real router in-process, and a real server on a
//! loopback port.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use accounts::app::InstanceBuilder;
use accounts::domain::{AccountId, TransactionId};
use accounts::engine::EngineConfig;
use accounts::http::{AppState, ErrorBody, Limits, ServeConfig, router, serve};
use accounts::store::{
    AppendError, Commit, EventStore, FeedEvent, Loaded, MemoryStore, PointInTime, RecordedEvent,
    StoreError,
};
use async_trait::async_trait;
use axum::body::Body;
use axum::http::{HeaderMap, Method, Request, StatusCode};
use http_body_util::BodyExt;
use tokio::sync::oneshot;
use tower::ServiceExt;

/// A memory store with knobs: a delay before every read or every append,
/// appends that always conflict, and a count of the appends that reached it.
pub struct TestStore {
    inner: MemoryStore,
    pub read_delay: Duration,
    pub append_delay: Duration,
    pub always_conflict: bool,
    pub appends_attempted: AtomicUsize,
    pub appends_applied: AtomicUsize,
}

impl TestStore {
    pub fn new() -> TestStore {
        TestStore {
            inner: MemoryStore::new(),
            read_delay: Duration::ZERO,
            append_delay: Duration::ZERO,
            always_conflict: false,
            appends_attempted: AtomicUsize::new(0),
            appends_applied: AtomicUsize::new(0),
        }
    }

    pub fn slow(read_delay: Duration) -> TestStore {
        TestStore {
            read_delay,
            ..TestStore::new()
        }
    }

    pub fn slow_appends(append_delay: Duration) -> TestStore {
        TestStore {
            append_delay,
            ..TestStore::new()
        }
    }

    pub fn conflicting() -> TestStore {
        TestStore {
            always_conflict: true,
            ..TestStore::new()
        }
    }

    pub fn applied(&self) -> usize {
        self.appends_applied.load(Ordering::SeqCst)
    }

    pub fn attempted(&self) -> usize {
        self.appends_attempted.load(Ordering::SeqCst)
    }

    async fn pause(delay: Duration) {
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
    }
}

#[async_trait]
impl EventStore for TestStore {
    async fn load(
        &self,
        account: AccountId,
        transaction: Option<TransactionId>,
    ) -> Result<Loaded, StoreError> {
        TestStore::pause(self.read_delay).await;
        self.inner.load(account, transaction).await
    }

    async fn load_at(&self, account: AccountId, at: PointInTime) -> Result<Loaded, StoreError> {
        TestStore::pause(self.read_delay).await;
        self.inner.load_at(account, at).await
    }

    async fn events(
        &self,
        account: AccountId,
        from: u64,
        limit: usize,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        TestStore::pause(self.read_delay).await;
        self.inner.events(account, from, limit).await
    }

    async fn feed(&self, after: u64, limit: usize) -> Result<Vec<FeedEvent>, StoreError> {
        TestStore::pause(self.read_delay).await;
        self.inner.feed(after, limit).await
    }

    async fn append_batch(&self, commits: &[Commit]) -> Vec<Result<(), AppendError>> {
        TestStore::pause(self.append_delay).await;
        self.appends_attempted
            .fetch_add(commits.len(), Ordering::SeqCst);
        if self.always_conflict {
            let conflict = AppendError::Conflict("this test store always conflicts".into());
            return vec![Err(conflict); commits.len()];
        }
        let results = self.inner.append_batch(commits).await;
        let applied = results.iter().filter(|result| result.is_ok()).count();
        self.appends_applied.fetch_add(applied, Ordering::SeqCst);
        results
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.inner.ping().await
    }
}

pub fn engine_config() -> EngineConfig {
    EngineConfig {
        backoff_base: Duration::from_micros(100),
        backoff_max: Duration::from_millis(1),
        ..EngineConfig::default()
    }
}

pub fn app(store: Arc<TestStore>, config: EngineConfig, limits: Limits) -> AppState {
    InstanceBuilder::new()
        .store(store)
        .seed(7)
        .engine_config(config)
        .limits(limits)
        .build()
        .state
}

pub fn default_app() -> (Arc<TestStore>, AppState) {
    let store = Arc::new(TestStore::new());
    let state = app(store.clone(), engine_config(), Limits::default());
    (store, state)
}

pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

impl Answer {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("body is not JSON ({e}): {:?}", self.text()))
    }

    /// An error answer as docs/API.md requires: JSON `{"code": …,
    /// "message": …}`, keys in that order, with a known code whose status is
    /// the answer's.
    pub fn assert_json_error(&self) {
        let content_type = self
            .headers
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        assert_eq!(content_type, "application/json", "status {}", self.status);
        let body: ErrorBody = serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not an error body ({e}): {:?}", self.text()));
        assert_eq!(
            serde_json::to_string(&body).unwrap(),
            self.text(),
            "exactly code, then message"
        );
        assert_eq!(body.code.status(), self.status, "code {}", body.code);
        assert!(!body.message.is_empty());
    }

    /// [`Answer::assert_json_error`] with this code.
    pub fn assert_error_code(&self, code: &str) {
        self.assert_json_error();
        let body: ErrorBody = serde_json::from_slice(&self.body).expect("checked above");
        assert_eq!(body.code.as_str(), code, "{}", self.text());
    }
}

/// One request through the real router, in-process.
pub async fn call(state: &AppState, method: Method, uri: &str) -> Answer {
    let request = Request::builder()
        .method(method)
        .uri(uri)
        .body(Body::empty())
        .expect("a valid request");
    send(state, request).await
}

pub async fn send(state: &AppState, request: Request<Body>) -> Answer {
    let response = router(state.clone())
        .oneshot(request)
        .await
        .expect("the router is infallible");
    let (parts, body) = response.into_parts();
    let body = body
        .collect()
        .await
        .expect("bodies are in memory")
        .to_bytes()
        .to_vec();
    Answer {
        status: parts.status,
        headers: parts.headers,
        body,
    }
}

/// Opens `account` for a fresh owner and deposits `amount` into it.
pub async fn open_with(state: &AppState, account: &str, amount: i64) {
    let owner = fresh_id();
    let opened = call(
        state,
        Method::POST,
        &format!("/api/account/{account}?owner={owner}"),
    )
    .await;
    assert_eq!(opened.status, StatusCode::CREATED, "{}", opened.text());
    let transaction = fresh_id();
    let deposited = call(
        state,
        Method::PUT,
        &format!("/api/account/{account}?deposit={amount}&transactionId={transaction}"),
    )
    .await;
    assert_eq!(
        deposited.status,
        StatusCode::NO_CONTENT,
        "{}",
        deposited.text()
    );
}

/// What a client can observe of an account: its state and its whole stream.
pub async fn observe(state: &AppState, account: &str) -> (String, String) {
    let account_state = call(state, Method::GET, &format!("/api/account/{account}")).await;
    let events = call(
        state,
        Method::GET,
        &format!("/api/account/{account}/events?limit=10000"),
    )
    .await;
    (account_state.text(), events.text())
}

/// A real server on a free loopback port, stopped when dropped.
pub struct Server {
    pub address: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Server {
    pub async fn start(state: AppState, config: ServeConfig) -> Server {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind a loopback port");
        let address = listener.local_addr().expect("a bound address");
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(serve(listener, router(state), config, async move {
            let _ = stopped.await;
        }));
        Server {
            address,
            stop: Some(stop),
            task: Some(task),
        }
    }

    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            task.await.expect("the serve loop does not panic");
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(task) = &self.task {
            task.abort();
        }
    }
}

pub fn serve_config() -> ServeConfig {
    ServeConfig {
        shutdown_grace: Duration::from_millis(200),
        ..ServeConfig::default()
    }
}

/// Sends raw bytes on a fresh connection and reads the whole answer (until
/// the server closes or `wait` passes).
pub async fn raw(address: SocketAddr, request: &[u8], wait: Duration) -> Vec<u8> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(address)
        .await
        .expect("connect");
    stream.write_all(request).await.expect("write");
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(wait, stream.read_to_end(&mut answer)).await;
    answer
}

/// The status code of a raw HTTP/1.1 answer.
pub fn status_of(answer: &[u8]) -> Option<u16> {
    let text = std::str::from_utf8(answer.get(..12)?).ok()?;
    text.strip_prefix("HTTP/1.1 ")?.parse().ok()
}

/// A UUID not used before in this test process (deterministic: a counter).
pub fn fresh_id() -> String {
    static NEXT: AtomicUsize = AtomicUsize::new(1);
    let n = NEXT.fetch_add(1, Ordering::SeqCst) as u128;
    uuid::Uuid::from_u128(0x5eed_0000_0000_4000_8000_0000_0000_0000 | n).to_string()
}

pub fn method(name: &str) -> Method {
    Method::from_bytes(name.as_bytes()).expect("a valid method name")
}
