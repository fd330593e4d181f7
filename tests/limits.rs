//! Every limit, on a real socket, with the status it answers: body (413), URL
//! (414), request head (431), request timeout (408), header-read timeout (the
//! connection is closed), concurrency (503 + Retry-After), store timeout (503 +
//! Retry-After), retries (409) and connections (accepting waits).

mod hostile_support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use accounts::http::{Limits, ServeConfig};
use hostile_support::{
    Server, TestStore, app, engine_config, fresh_id, open_with, raw, serve_config, status_of,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A parsed HTTP/1.1 answer read from a socket.
struct Reply {
    status: u16,
    head: String,
    body: String,
}

impl Reply {
    fn parse(bytes: &[u8]) -> Reply {
        let text = String::from_utf8_lossy(bytes).into_owned();
        let status = status_of(bytes).unwrap_or_else(|| panic!("no HTTP answer: {text:?}"));
        let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
        Reply {
            status,
            head: head.to_ascii_lowercase(),
            body: body.to_owned(),
        }
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.head
            .lines()
            .find_map(|line| line.strip_prefix(&format!("{name}: ")))
    }

    /// The JSON error body of docs/API.md with this code.
    fn assert_json_error(&self, code: &str) {
        assert_eq!(
            self.header("content-type"),
            Some("application/json"),
            "{}",
            self.head
        );
        let body: serde_json::Value = serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", self.body));
        assert!(
            body["message"].as_str().is_some_and(|m| !m.is_empty()),
            "{body}"
        );
        assert_eq!(body["code"], code, "{body}");
    }
}

/// One request on a fresh connection (`Connection: close`), whole answer.
async fn request(server: &Server, method: &str, target: &str, extra: &str) -> Reply {
    let text =
        format!("{method} {target} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n{extra}\r\n");
    Reply::parse(&raw(server.address, text.as_bytes(), Duration::from_secs(10)).await)
}

fn limits() -> Limits {
    Limits::default()
}

async fn server_with(store: Arc<TestStore>, limits: Limits, config: ServeConfig) -> Server {
    let mut engine = engine_config();
    engine.retries_max = 3;
    Server::start(app(store, engine, limits), config).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_beyond_the_limit_is_413_and_changes_nothing() {
    let store = Arc::new(TestStore::new());
    let state = app(
        store.clone(),
        engine_config(),
        Limits {
            body_bytes_max: 1024,
            ..limits()
        },
    );
    let account = fresh_id();
    open_with(&state, &account, 5).await;
    let applied = store.applied();
    let server = Server::start(state, serve_config()).await;
    let target = format!(
        "/api/account/{account}/deposit?amount=5&transactionId={}",
        fresh_id()
    );
    let body = "x".repeat(2048);
    let reply = request(
        &server,
        "PUT",
        &target,
        &format!("Content-Length: 2048\r\n\r\n{body}"),
    )
    .await;
    assert_eq!(reply.status, 413);
    reply.assert_json_error("payload_too_large");
    // Only announced: refused before a byte of it is read.
    let reply = request(&server, "PUT", &target, "Content-Length: 1000000000\r\n").await;
    assert_eq!(reply.status, 413);
    reply.assert_json_error("payload_too_large");
    assert_eq!(store.applied(), applied);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_url_beyond_the_limit_is_414_and_a_head_beyond_the_limit_is_431() {
    let store = Arc::new(TestStore::new());
    let server = server_with(store.clone(), limits(), serve_config()).await;
    let long = format!("/api/account/{}", "a".repeat(accounts::http::URL_BYTES_MAX));
    let reply = request(&server, "GET", &long, "").await;
    assert_eq!(reply.status, 414);
    reply.assert_json_error("uri_too_long");
    let query = format!("/ping?pad={}", "a".repeat(accounts::http::URL_BYTES_MAX));
    assert_eq!(request(&server, "GET", &query, "").await.status, 414);

    // A head larger than hyper's limit is refused before routing: 431, no
    // body, and the connection is closed.
    let header = format!(
        "X-Pad: {}\r\n",
        "a".repeat(accounts::http::HEADER_BYTES_MAX)
    );
    let reply = request(&server, "GET", "/ping", &header).await;
    assert_eq!(reply.status, 431);
    let many: String = (0..200).map(|i| format!("X-H{i}: v\r\n")).collect();
    assert_eq!(request(&server, "GET", "/ping", &many).await.status, 431);
    // A URL beyond even hyper's buffer: refused before routing as well.
    let huge = format!("/{}", "a".repeat(70_000));
    let status = request(&server, "GET", &huge, "").await.status;
    assert!(status == 431 || status == 414, "{status}");
    assert_eq!(store.attempted(), 0);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_not_answered_within_the_request_timeout_is_408_and_changes_nothing() {
    let store = Arc::new(TestStore::slow(Duration::from_secs(2)));
    let limits = Limits {
        request_timeout: Duration::from_millis(200),
        ..limits()
    };
    let mut engine = engine_config();
    engine.store_timeout = Duration::from_secs(10);
    let server = Server::start(app(store.clone(), engine, limits), serve_config()).await;
    let started = Instant::now();
    let target = format!(
        "/api/account/{}/deposit?amount=5&transactionId={}",
        fresh_id(),
        fresh_id()
    );
    let reply = request(&server, "PUT", &target, "").await;
    assert_eq!(reply.status, 408);
    reply.assert_json_error("request_timeout");
    assert!(
        started.elapsed() < Duration::from_millis(1_500),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(store.attempted(), 0);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_store_is_503_with_retry_after() {
    let store = Arc::new(TestStore::slow(Duration::from_secs(2)));
    let mut engine = engine_config();
    engine.store_timeout = Duration::from_millis(100);
    let server = Server::start(app(store.clone(), engine, limits()), serve_config()).await;
    for target in [
        format!("/api/account/{}", fresh_id()),
        format!("/api/account/{}/events", fresh_id()),
        format!(
            "/api/account/{}/deposit?amount=5&transactionId={}",
            fresh_id(),
            fresh_id()
        ),
    ] {
        let method = if target.contains("deposit") {
            "PUT"
        } else {
            "GET"
        };
        let reply = request(&server, method, &target, "").await;
        assert_eq!(reply.status, 503, "{target}");
        assert_eq!(reply.header("retry-after"), Some("1"));
        reply.assert_json_error("unavailable");
    }
    assert_eq!(store.attempted(), 0);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_that_always_conflicts_is_409_after_the_retries() {
    let store = Arc::new(TestStore::conflicting());
    let server = server_with(store.clone(), limits(), serve_config()).await;
    let account = fresh_id();
    let reply = request(
        &server,
        "POST",
        &format!("/api/account/{account}?owner={}", fresh_id()),
        "",
    )
    .await;
    assert_eq!(reply.status, 409);
    reply.assert_json_error("conflict");
    // retries_max = 3: the first attempt and three retries, then 409.
    assert_eq!(store.attempted(), 4);
    assert_eq!(store.applied(), 0);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_beyond_the_concurrency_limit_are_shed_with_503_and_retry_after() {
    let store = Arc::new(TestStore::slow(Duration::from_millis(1_000)));
    let limits = Limits {
        concurrency_max: 2,
        ..limits()
    };
    let server = server_with(store.clone(), limits, serve_config()).await;
    let address = server.address;
    let slow: Vec<_> = (0..2)
        .map(|_| {
            tokio::spawn(async move {
                let text = format!(
                    "GET /api/account/{} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
                    fresh_id()
                );
                Reply::parse(&raw(address, text.as_bytes(), Duration::from_secs(10)).await).status
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let started = Instant::now();
    let reply = request(&server, "GET", "/ping", "").await;
    assert_eq!(reply.status, 503);
    assert_eq!(reply.header("retry-after"), Some("1"));
    reply.assert_json_error("overloaded");
    assert!(
        started.elapsed() < Duration::from_millis(500),
        "shed at once, not queued"
    );
    for task in slow {
        assert_eq!(task.await.unwrap(), 404, "the admitted requests complete");
    }
    assert_eq!(request(&server, "GET", "/ping", "").await.status, 200);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_does_not_send_its_head_in_time_is_disconnected() {
    let store = Arc::new(TestStore::new());
    let config = ServeConfig {
        header_read_timeout: Duration::from_millis(300),
        ..serve_config()
    };
    let server = server_with(store, limits(), config).await;
    for partial in [&b""[..], b"GET /ping HTTP/1.1\r\nHost: t\r\n"] {
        let mut stream = TcpStream::connect(server.address).await.unwrap();
        stream.write_all(partial).await.unwrap();
        let started = Instant::now();
        let mut buffer = Vec::new();
        let read =
            tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut buffer)).await;
        // Closed by the server (EOF or reset), not by our timeout.
        assert!(read.is_ok(), "still open after 5 s");
        assert!(
            started.elapsed() >= Duration::from_millis(250),
            "{:?}",
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
    let read = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut rest)).await;
    assert!(read.is_ok(), "idle connection still open after 5 s");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_beyond_the_limit_wait_to_be_accepted() {
    let store = Arc::new(TestStore::new());
    let config = ServeConfig {
        connections_max: 2,
        header_read_timeout: Duration::from_secs(30),
        ..serve_config()
    };
    let server = server_with(store, limits(), config).await;
    // Two keep-alive connections, each served once and then held open.
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut stream = TcpStream::connect(server.address).await.unwrap();
        stream
            .write_all(b"GET /ping HTTP/1.1\r\nHost: t\r\n\r\n")
            .await
            .unwrap();
        let mut buffer = vec![0u8; 1024];
        let n = stream.read(&mut buffer).await.unwrap();
        assert_eq!(status_of(&buffer[..n]), Some(200));
        held.push(stream);
    }
    // A third connection is queued by the kernel, not served...
    let mut third = TcpStream::connect(server.address).await.unwrap();
    third
        .write_all(b"GET /ping HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut buffer = Vec::new();
    let early =
        tokio::time::timeout(Duration::from_millis(500), third.read_to_end(&mut buffer)).await;
    assert!(early.is_err(), "served beyond the connection limit");
    // ...until one of the held connections goes.
    drop(held.pop());
    tokio::time::timeout(Duration::from_secs(5), third.read_to_end(&mut buffer))
        .await
        .expect("served once a connection is free")
        .unwrap();
    assert_eq!(status_of(&buffer), Some(200));
    server.stop().await;
}
