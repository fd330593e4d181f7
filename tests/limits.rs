//! Every limit, on a real socket, with the status it answers: body (413), URL
//! (414), request head (431), request timeout (408), header-read timeout (the
//! connection is closed), concurrency (503 + Retry-After), store timeout (503 +
//! Retry-After; an append that outlives it is ambiguous), retries (409) and
//! connections (accepting waits).
//!
//! A request a limit stops changes nothing: the timeouts are shown on an
//! opened account with a known balance, with the store holding the very call
//! that is slow (the append, or the load), and afterwards the balance and the
//! events are as before and the request's transactionId is still unused.
//! Slow calls are held until the test releases them, so no test depends on
//! how fast the machine is.

use std::time::Duration;

use accounts::engine::EngineConfig;
use accounts::http::{Limits, ServeConfig};
use testkit::instance::{SHUTDOWN_GRACE, TestBuilder};
use testkit::raw::{request, status_of};
use testkit::{
    Answer, ApiRequest, Client, Fault, InProcess, Instrumented, Served, StatusCode, Style,
    TestInstance, fresh_id,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Generous: only a broken limit makes a request wait this long.
const BOUND: Duration = Duration::from_secs(30);

/// Retries that cost next to nothing, three of them.
fn quick_retries() -> EngineConfig {
    EngineConfig {
        retries_max: 3,
        backoff_base: Duration::from_micros(100),
        backoff_max: Duration::from_millis(1),
        ..EngineConfig::default()
    }
}

fn serve_config() -> ServeConfig {
    ServeConfig {
        shutdown_grace: SHUTDOWN_GRACE,
        ..ServeConfig::default()
    }
}

fn builder() -> TestBuilder {
    TestInstance::builder().engine_config(quick_retries())
}

/// A served instance over an instrumented store, with an account opened
/// with a balance of 5 (through the in-process client, before any knob is
/// turned) and what could be observed of it then.
struct Funded {
    app: TestInstance,
    store: Instrumented,
    api: Client<InProcess>,
    account: String,
    before: (String, String),
    applied: usize,
    attempted: usize,
    server: Served,
}

impl Funded {
    async fn start(builder: TestBuilder) -> Funded {
        let (store, app) = builder.instrumented();
        let api = app.client();
        let account = fresh_id();
        api.open_funded(&account, fresh_id(), 5, fresh_id()).await;
        let before = api.observe(&account).await;
        let (applied, attempted) = (store.appends_applied(), store.appends_attempted());
        let server = app.serve().await;
        Funded {
            app,
            store,
            api,
            account,
            before,
            applied,
            attempted,
            server,
        }
    }

    /// A deposit of 7 under `transaction`, over the socket.
    async fn deposit(&self, transaction: &str) -> Answer {
        self.server
            .client()
            .deposit(&self.account, 7, transaction)
            .await
    }

    /// The request under `transaction` changed nothing: the account reads
    /// as before, no append was written, and the transactionId is still
    /// free (a deposit of another amount under it is applied, not refused
    /// as reused).
    async fn changed_nothing(self, transaction: &str) {
        let (api, account) = (&self.api, &self.account);
        assert_eq!(api.observe(account).await, self.before);
        assert_eq!(self.store.appends_applied(), self.applied);
        api.deposit(account, 1, transaction)
            .await
            .assert_status(StatusCode::NO_CONTENT);
        assert_eq!(api.balance(account).await, 6);
        self.server.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_beyond_the_limit_is_413_and_changes_nothing() {
    let limits = Limits {
        body_bytes_max: 1024,
        ..Limits::default()
    };
    let funded = Funded::start(builder().limits(limits)).await;
    let transaction = fresh_id();
    let target = ApiRequest::deposit(Style::Path, &funded.account, 5, &transaction).target;
    let address = funded.server.address;
    let body = "x".repeat(2048);
    let extra = format!("Content-Length: 2048\r\n\r\n{body}");
    request(address, "PUT", &target, &extra)
        .await
        .assert_error_code("payload_too_large");
    // Only announced: refused before a byte of it is read.
    let extra = "Content-Length: 1000000000\r\n";
    request(address, "PUT", &target, extra)
        .await
        .assert_error_code("payload_too_large");
    funded.changed_nothing(&transaction).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_url_beyond_the_limit_is_414_and_a_head_beyond_the_limit_is_431() {
    let (store, app) = builder().instrumented();
    let server = app.serve().await;
    let long = format!("/api/account/{}", "a".repeat(accounts::http::URL_BYTES_MAX));
    let answer = request(server.address, "GET", &long, "").await;
    answer.assert_error_code("uri_too_long");
    let query = format!("/ping?pad={}", "a".repeat(accounts::http::URL_BYTES_MAX));
    assert_eq!(request(server.address, "GET", &query, "").await.status, 414);

    // A head larger than hyper's limit is refused before routing: 431, no
    // body, and the connection is closed.
    let header = format!(
        "X-Pad: {}\r\n",
        "a".repeat(accounts::http::HEADER_BYTES_MAX)
    );
    let answer = request(server.address, "GET", "/ping", &header).await;
    assert_eq!(answer.status, 431);
    let many: String = (0..200).map(|i| format!("X-H{i}: v\r\n")).collect();
    assert_eq!(
        request(server.address, "GET", "/ping", &many).await.status,
        431
    );
    // A URL beyond even hyper's buffer: refused before routing as well.
    let huge = format!("/{}", "a".repeat(70_000));
    let status = request(server.address, "GET", &huge, "").await.status;
    assert!(status == 431 || status == 414, "{status}");
    assert_eq!(store.reads() + store.appends_attempted(), 0);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_not_answered_within_the_request_timeout_is_408_and_changes_nothing() {
    // Long enough for the in-memory load before the append on a loaded
    // machine: the request must time out in the append.
    let limits = Limits {
        request_timeout: Duration::from_secs(1),
        ..Limits::default()
    };
    let engine = EngineConfig {
        store_timeout: BOUND,
        ..quick_retries()
    };
    let funded = Funded::start(builder().limits(limits).engine_config(engine)).await;
    // The append is held until after the request timed out.
    funded.store.hold_appends();
    let transaction = fresh_id();
    funded
        .deposit(&transaction)
        .await
        .assert_error_code("request_timeout");
    let reached = funded.store.appends_attempted();
    assert_eq!(reached, funded.attempted + 1, "timed out in its append");
    funded.store.release_appends();
    funded.changed_nothing(&transaction).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_slower_than_the_store_timeout_is_503_with_retry_after_and_changes_nothing() {
    // Without the state cache, which would decide the deposit on the
    // account it knows, without the held load.
    let engine = EngineConfig {
        store_timeout: Duration::from_millis(100),
        cache_accounts: 0,
        ..quick_retries()
    };
    let funded = Funded::start(builder().engine_config(engine)).await;
    let remote = funded.server.client();
    funded.store.hold_reads();
    let transaction = fresh_id();
    for answer in [
        remote.state(&funded.account).await,
        remote.events(&funded.account).await,
        funded.deposit(&transaction).await,
    ] {
        answer.assert_error_code("unavailable");
        assert_eq!(answer.header("retry-after"), Some("1"));
    }
    let reached = funded.store.appends_attempted();
    assert_eq!(reached, funded.attempted, "no load, no append");
    funded.store.release_reads();
    funded.changed_nothing(&transaction).await;
}

/// An append that outlives the store timeout may still land, so the engine
/// treats it as ambiguous: it reloads, finds the transactionId not recorded
/// and decides again — until its retries run out: 503, as the last append's
/// outcome is unknown (a 409 would say it did not happen). None of the
/// abandoned appends writes anything.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_append_slower_than_the_store_timeout_is_ambiguous_and_changes_nothing() {
    // Far above an in-memory load on a loaded machine: only the held
    // appends time out.
    let engine = EngineConfig {
        store_timeout: Duration::from_millis(500),
        ..quick_retries()
    };
    let funded = Funded::start(builder().engine_config(engine)).await;
    funded.store.hold_appends();
    let transaction = fresh_id();
    funded
        .deposit(&transaction)
        .await
        .assert_error_code("unavailable");
    let reached = funded.store.appends_attempted();
    assert_eq!(reached, funded.attempted + 4, "1 + retries_max");
    assert_eq!(funded.app.metrics.engine.ambiguous_commits.get(), 4);
    funded.store.release_appends();
    funded.changed_nothing(&transaction).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_that_always_conflicts_is_409_after_the_retries() {
    let (store, app) = builder().instrumented();
    store.fail_appends(Some(Fault::Conflict));
    let server = app.serve().await;
    let answer = server.client().open(fresh_id(), fresh_id()).await;
    answer.assert_error_code("conflict");
    // retries_max = 3: the first attempt and three retries, then 409.
    assert_eq!(store.appends_attempted(), 4);
    assert_eq!(store.appends_applied(), 0);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_beyond_the_concurrency_limit_are_shed_with_503_and_retry_after() {
    let limits = Limits {
        concurrency_max: 2,
        ..Limits::default()
    };
    let (store, app) = builder().limits(limits).instrumented();
    let server = app.serve().await;
    let remote = server.client();
    store.hold_reads();
    let admitted: Vec<_> = (0..2)
        .map(|_| {
            let remote = remote.clone();
            tokio::spawn(async move { remote.state(fresh_id()).await.status })
        })
        .collect();
    // Both are in, held inside the store.
    store.reads_reached(2).await;
    // Queued rather than shed, it would wait as long as the reads are held.
    let shed = remote.ping().timeout(BOUND).reply().await;
    let shed = shed.expect("shed at once, not queued");
    shed.assert_error_code("overloaded");
    assert_eq!(shed.header("retry-after"), Some("1"));
    store.release_reads();
    for request in admitted {
        assert_eq!(
            request.await.unwrap(),
            404,
            "the admitted requests complete"
        );
    }
    assert_eq!(remote.ping().await.status, 200);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_does_not_send_its_head_in_time_is_disconnected() {
    let config = ServeConfig {
        header_read_timeout: Duration::from_millis(300),
        ..serve_config()
    };
    let server = builder().serve_config(config).build().serve().await;
    for partial in [&b""[..], b"GET /ping HTTP/1.1\r\nHost: t\r\n"] {
        let mut stream = TcpStream::connect(server.address).await.unwrap();
        stream.write_all(partial).await.unwrap();
        let started = std::time::Instant::now();
        let mut buffer = Vec::new();
        let read = tokio::time::timeout(BOUND, stream.read_to_end(&mut buffer)).await;
        // Closed by the server (EOF or reset), not by our timeout.
        assert!(read.is_ok(), "still open after {BOUND:?}");
        assert!(
            started.elapsed() >= Duration::from_millis(250),
            "closed before the timeout: {:?}",
            started.elapsed()
        );
        assert!(
            status_of(&buffer).is_none_or(|s| s == 408),
            "{:?}",
            String::from_utf8_lossy(&buffer)
        );
    }
    // An idle keep-alive connection is closed the same way.
    let mut stream = TcpStream::connect(server.address).await.unwrap();
    stream
        .write_all(b"GET /ping HTTP/1.1\r\nHost: t\r\n\r\n")
        .await
        .unwrap();
    let mut buffer = vec![0u8; 1024];
    let n = stream.read(&mut buffer).await.unwrap();
    assert_eq!(status_of(&buffer[..n]), Some(200));
    let mut rest = Vec::new();
    let read = tokio::time::timeout(BOUND, stream.read_to_end(&mut rest)).await;
    assert!(read.is_ok(), "idle connection still open after {BOUND:?}");
    server.stop().await;
}

/// One request on an open keep-alive connection, answered.
async fn ping_on(stream: &mut TcpStream) {
    stream
        .write_all(b"GET /ping HTTP/1.1\r\nHost: t\r\n\r\n")
        .await
        .unwrap();
    let mut buffer = vec![0u8; 1024];
    let n = tokio::time::timeout(BOUND, stream.read(&mut buffer))
        .await
        .expect("answered")
        .unwrap();
    assert_eq!(status_of(&buffer[..n]), Some(200));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_beyond_the_limit_wait_to_be_accepted() {
    let config = ServeConfig {
        connections_max: 2,
        header_read_timeout: BOUND,
        ..serve_config()
    };
    let server = builder().serve_config(config).build().serve().await;
    // Two keep-alive connections, each served once and then held open.
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut stream = TcpStream::connect(server.address).await.unwrap();
        ping_on(&mut stream).await;
        held.push(stream);
    }
    // A third connection is queued by the kernel, not served...
    let mut third = TcpStream::connect(server.address).await.unwrap();
    third
        .write_all(b"GET /ping HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    // ...even after the server has served a request sent after it.
    ping_on(&mut held[0]).await;
    let mut probe = [0u8; 1];
    let early = tokio::time::timeout(Duration::from_millis(100), third.read(&mut probe)).await;
    assert!(early.is_err(), "served beyond the connection limit");
    // Once one of the held connections goes, it is.
    drop(held.pop());
    let mut buffer = Vec::new();
    tokio::time::timeout(BOUND, third.read_to_end(&mut buffer))
        .await
        .expect("served once a connection is free")
        .unwrap();
    assert_eq!(status_of(&buffer), Some(200));
    server.stop().await;
}

/// Feed streams are bounded by their own limit: a stream outlives its
/// request, so the concurrency limit never sees it. Past the limit a new
/// stream is 503 overloaded with Retry-After, every other route still
/// answers (`/ready` included), and a place frees up when a reader leaves.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn feed_streams_beyond_their_limit_are_503_and_leave_the_rest_served() {
    let limits = Limits {
        feed_streams_max: 2,
        concurrency_max: 4,
        ..Limits::default()
    };
    let app = builder()
        .limits(limits)
        .serve_config(serve_config())
        .build();
    let served = app.serve().await;
    let api = served.client().with_timeout(BOUND);
    let mut streams = vec![
        api.follow(Some(0), None).await,
        api.follow(Some(0), None).await,
    ];
    for _ in 0..3 {
        let refused = api.feed_stream(Some(0), None).await;
        refused.assert_error(
            StatusCode::SERVICE_UNAVAILABLE,
            "overloaded",
            "feed streams",
        );
        assert!(refused.header("retry-after").is_some(), "{refused:?}");
    }
    // Two streams held, more than the concurrency limit's worth of requests
    // answered beside them.
    for _ in 0..8 {
        assert_eq!(api.ready().await.status, StatusCode::OK);
    }
    let account = fresh_id();
    api.open(&account, fresh_id())
        .await
        .assert_status(StatusCode::CREATED);
    streams.pop();
    // The reader that left frees its place once its task sees it gone.
    let deadline = tokio::time::Instant::now() + BOUND;
    let reopened = loop {
        let request = api.feed_stream(Some(0), None).request().clone();
        let stream = served.client().transport().try_open_stream(request).await;
        match stream {
            Ok(stream) if stream.status == StatusCode::OK => break stream,
            Ok(stream) => assert_eq!(stream.status, StatusCode::SERVICE_UNAVAILABLE),
            Err(error) => panic!("no answer: {error}"),
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the place never freed"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    drop((reopened, streams));
    served.stop().await;
}
