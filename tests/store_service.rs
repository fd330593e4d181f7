//! The durable stores as a user meets them: the real `accounts` binary,
//! started on a store URL, spoken to over HTTP.
//! - data survives the process being killed and started again (SQLite,
//!   PostgreSQL, MariaDB);
//! - a store URL that is unreachable, malformed or of an unknown scheme
//!   stops start-up with one line and a non-zero exit, password redacted;
//! - a database outage (cut through a TCP proxy in this test) turns
//!   requests and `/ready` into 503 with Retry-After, and the service
//!   recovers by itself when the database is back.

mod store_support;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use accounts::engine::{Entropy, SeededEntropy};
use reqwest::StatusCode;
use store_support::{Backend, TempFile, TestDatabase};
use tokio::net::{TcpListener, TcpStream};

const BINARY: &str = env!("CARGO_BIN_EXE_accounts");

/// A running `accounts` process; killed (SIGKILL) when dropped.
struct Service {
    child: Child,
    base: String,
}

impl Service {
    fn start(database_url: &str, extra: &[&str]) -> Service {
        let mut child = Command::new(BINARY)
            .args(["--listen", "127.0.0.1:0", "--database-url", database_url])
            .args(["--drain-delay-ms", "0", "--log-format", "text"])
            .args(extra)
            .env_remove("DATABASE_URL")
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("starting accounts");
        let stderr = child.stderr.take().expect("stderr is piped");
        let (sender, receiver) = std::sync::mpsc::channel();
        // Reads the log for the bound address, then keeps draining it so
        // the service never blocks on a full pipe.
        std::thread::spawn(move || {
            let mut sender = Some(sender);
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(address) = line.split("listening on ").nth(1)
                    && let Some(sender) = sender.take()
                {
                    let _ = sender.send(address.trim().to_owned());
                }
            }
        });
        let address = receiver
            .recv_timeout(Duration::from_secs(60))
            .expect("the service logs the address it listens on");
        let address: SocketAddr = address.parse().expect("a socket address");
        Service {
            child,
            base: format!("http://{address}"),
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Kills the process without letting it shut down: whatever was
    /// acknowledged must already be durable.
    fn crash(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("a client")
}

fn new_id() -> String {
    SeededEntropy::from_os().uuid().to_string()
}

async fn open(service: &Service, account: &str) {
    let response = client()
        .post(service.url(&format!("/api/account/{account}?owner={}", new_id())))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
}

async fn deposit(service: &Service, account: &str, amount: i64, transaction: &str) -> StatusCode {
    client()
        .put(service.url(&format!(
            "/api/account/{account}/deposit?amount={amount}&transactionId={transaction}"
        )))
        .send()
        .await
        .unwrap()
        .status()
}

async fn balance(service: &Service, account: &str) -> i64 {
    let response = client()
        .get(service.url(&format!("/api/account/{account}")))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let body: serde_json::Value = response.json().await.unwrap();
    body["balance"].as_i64().expect("a balance")
}

async fn event_count(service: &Service, account: &str) -> usize {
    let response = client()
        .get(service.url(&format!("/api/account/{account}/events")))
        .send()
        .await
        .unwrap();
    let body: Vec<serde_json::Value> = response.json().await.unwrap();
    body.len()
}

// ------------------------------------------------------------ durability

async fn survives_a_restart(database_url: &str) {
    let account = new_id();
    let other = new_id();
    let repeated = new_id();
    let service = Service::start(database_url, &["--snapshot-every", "3"]);
    open(&service, &account).await;
    open(&service, &other).await;
    for amount in [5, 7, 11] {
        assert_eq!(
            deposit(&service, &account, amount, &new_id()).await,
            StatusCode::NO_CONTENT
        );
    }
    assert_eq!(
        deposit(&service, &account, 100, &repeated).await,
        StatusCode::NO_CONTENT
    );
    let transfer = client()
        .put(service.url(&format!(
            "/api/account/{account}/transfer?targetAccount={other}&amount=3&transactionId={}",
            new_id()
        )))
        .send()
        .await
        .unwrap();
    assert_eq!(transfer.status(), StatusCode::NO_CONTENT);
    assert_eq!(balance(&service, &account).await, 120);
    service.crash();

    let service = Service::start(database_url, &["--snapshot-every", "3"]);
    assert_eq!(balance(&service, &account).await, 120);
    assert_eq!(balance(&service, &other).await, 3);
    assert_eq!(event_count(&service, &account).await, 6);
    // The idempotency records survive too: the replay records nothing.
    assert_eq!(
        deposit(&service, &account, 100, &repeated).await,
        StatusCode::NO_CONTENT
    );
    assert_eq!(balance(&service, &account).await, 120);
    assert_eq!(event_count(&service, &account).await, 6);
    let metrics = client()
        .get(service.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for state in ["idle", "in_use"] {
        assert!(
            metrics.contains(&format!(
                "accounts_db_pool_connections{{state=\"{state}\"}}"
            )),
            "the pool gauges are exported: {metrics}"
        );
    }
}

#[tokio::test]
async fn sqlite_data_survives_a_restart() {
    let file = TempFile::new("db");
    survives_a_restart(&format!("sqlite:{}", file.0.display())).await;
}

#[tokio::test]
#[ignore = "needs ACCOUNTS_TEST_POSTGRES_URL"]
async fn postgres_data_survives_a_restart() {
    let database = TestDatabase::create(Backend::Postgres).await;
    survives_a_restart(&database.url).await;
}

#[tokio::test]
#[ignore = "needs ACCOUNTS_TEST_MYSQL_URL"]
async fn mysql_data_survives_a_restart() {
    let database = TestDatabase::create(Backend::Mysql).await;
    survives_a_restart(&database.url).await;
}

// ------------------------------------------------------------ start-up

/// Runs the binary on a store URL that cannot work; returns its stderr.
fn refused_start(database_url: &str) -> String {
    let started = Instant::now();
    let output = Command::new(BINARY)
        .args(["--listen", "127.0.0.1:0", "--database-url", database_url])
        .args(["--connect-timeout-ms", "1000"])
        .env_remove("DATABASE_URL")
        .output()
        .expect("running accounts");
    assert!(!output.status.success(), "{database_url} must not start");
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "start-up gives up after a bounded wait"
    );
    let stderr = String::from_utf8(output.stderr).unwrap();
    let errors: Vec<&str> = stderr.lines().filter(|l| l.starts_with("error:")).collect();
    assert_eq!(errors.len(), 1, "one error line: {stderr}");
    assert!(
        !stderr.contains("hunter2"),
        "the password is never shown: {stderr}"
    );
    errors[0].to_owned()
}

#[test]
fn unreachable_store_stops_start_up_with_one_line() {
    // Port 1 on loopback: nothing listens, the connection is refused.
    let line = refused_start("postgres://app:hunter2@127.0.0.1:1/accounts");
    assert!(
        line.contains("cannot open store postgres://app:***@127.0.0.1:1/accounts"),
        "{line}"
    );
    assert!(line.contains("no connection within 1000 ms"), "{line}");
    let line = refused_start("mysql://app:hunter2@127.0.0.1:1/accounts");
    assert!(
        line.contains("cannot open store mysql://app:***@127.0.0.1:1/accounts"),
        "{line}"
    );
    let line = refused_start("sqlite:/nonexistent-directory/accounts.db");
    assert!(line.contains("unable to open database file"), "{line}");
}

#[test]
fn malformed_or_unknown_store_url_stops_start_up_with_one_line() {
    let line = refused_start("postgres://app:hunter2@[::1/accounts");
    assert!(line.contains("invalid store URL"), "{line}");
    let line = refused_start("mysql://app:hunter2@host:notaport/accounts");
    assert!(line.contains("invalid store URL"), "{line}");
    let line = refused_start("redis://app:hunter2@127.0.0.1/0");
    assert!(line.contains("unsupported store URL scheme"), "{line}");
    // Unencoded `/`, `?` or `@` in a password make the URL malformed, and
    // that error line is exactly where it must not show.
    let line = refused_start("postgres://app:hunt/er2@127.0.0.1/accounts");
    assert!(line.contains("invalid store URL"), "{line}");
    assert!(!line.contains("hunt/er2"), "{line}");
    // SQLite URLs that would give every pooled connection its own database
    // (writes in one, reads from another) do not start either.
    for url in [
        "sqlite:",
        "sqlite:?mode=memory",
        "sqlite::memory:?cache=private",
    ] {
        let line = refused_start(url);
        assert!(line.contains("invalid store URL"), "{url}: {line}");
    }
}

// -------------------------------------------------------------- outages

/// A TCP relay to the database that the test can cut (every relayed
/// connection closed, new ones closed at once) and restore.
struct Proxy {
    address: SocketAddr,
    up: Arc<AtomicBool>,
    cut: Arc<tokio::sync::Notify>,
}

impl Proxy {
    async fn start(upstream: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let up = Arc::new(AtomicBool::new(true));
        let cut = Arc::new(tokio::sync::Notify::new());
        let (accept_up, accept_cut) = (up.clone(), cut.clone());
        tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                if !accept_up.load(Ordering::SeqCst) {
                    continue; // dropped: the client sees the connection closed
                }
                let cut = accept_cut.clone();
                tokio::spawn(async move {
                    let Ok(mut outbound) = TcpStream::connect(upstream).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                        _ = cut.notified() => {}
                    }
                });
            }
        });
        Proxy { address, up, cut }
    }

    fn cut(&self) {
        self.up.store(false, Ordering::SeqCst);
        self.cut.notify_waiters();
    }

    fn restore(&self) {
        self.up.store(true, Ordering::SeqCst);
    }
}

/// `url` with its host and port replaced by `address`.
fn through(url: &str, address: SocketAddr) -> (String, SocketAddr) {
    let (scheme, rest) = url.split_once("://").unwrap();
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let (authority, path) = rest.split_at(authority_end);
    let (credentials, host) = match authority.rsplit_once('@') {
        Some((credentials, host)) => (format!("{credentials}@"), host),
        None => (String::new(), authority),
    };
    let upstream = host
        .parse()
        .expect("the test URL names host:port as an IP address");
    (format!("{scheme}://{credentials}{address}{path}"), upstream)
}

async fn ready(service: &Service) -> StatusCode {
    client()
        .get(service.url("/ready"))
        .send()
        .await
        .unwrap()
        .status()
}

async fn outage_is_503_and_recovers(backend: Backend) {
    let database = TestDatabase::create(backend).await;
    let (_, upstream) = through(&database.url, "127.0.0.1:1".parse().unwrap());
    let proxy = Proxy::start(upstream).await;
    let (url, _) = through(&database.url, proxy.address);
    let service = Service::start(
        &url,
        &["--acquire-timeout-ms", "500", "--store-timeout-ms", "2000"],
    );
    let account = new_id();
    open(&service, &account).await;
    assert_eq!(
        deposit(&service, &account, 5, &new_id()).await,
        StatusCode::NO_CONTENT
    );
    assert_eq!(ready(&service).await, StatusCode::OK);

    proxy.cut();
    let during = new_id();
    let response = client()
        .put(service.url(&format!(
            "/api/account/{account}/deposit?amount=7&transactionId={during}"
        )))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(response.headers().contains_key("retry-after"));
    assert_eq!(ready(&service).await, StatusCode::SERVICE_UNAVAILABLE);

    proxy.restore();
    let deadline = Instant::now() + Duration::from_secs(30);
    while ready(&service).await != StatusCode::OK {
        assert!(Instant::now() < deadline, "the service recovers by itself");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The client's retry of the request that got 503 applies it once.
    assert_eq!(
        deposit(&service, &account, 7, &during).await,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        deposit(&service, &account, 7, &during).await,
        StatusCode::NO_CONTENT
    );
    assert_eq!(balance(&service, &account).await, 12);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs ACCOUNTS_TEST_POSTGRES_URL"]
async fn postgres_outage_is_503_and_the_service_recovers() {
    outage_is_503_and_recovers(Backend::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs ACCOUNTS_TEST_MYSQL_URL"]
async fn mysql_outage_is_503_and_the_service_recovers() {
    outage_is_503_and_recovers(Backend::Mysql).await;
}
