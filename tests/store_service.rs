//! The durable stores as a user meets them: the real `accounts` binary,
//! started on a store URL, spoken to over HTTP.
//! - data survives the process being killed and started again (SQLite,
//!   PostgreSQL, MariaDB);
//! - a store URL that is unreachable, malformed or of an unknown scheme
//!   stops start-up with one line and a non-zero exit, password redacted;
//! - a database that can lose commits it acknowledges (here PostgreSQL's
//!   `synchronous_commit` off or local for the database) stops start-up
//!   with one line naming the setting, unless the operator accepts it; one
//!   without a synchronous standby starts, with a warning and a gauge at 0;
//! - a database outage (cut through a TCP proxy in this test) turns
//!   requests and `/ready` into 503 with Retry-After, and the service
//!   recovers by itself when the database is back.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use testkit::database::{TempFile, TestDatabase};
use testkit::ids::random_uuid;
use testkit::process::{Service, command};
use testkit::{Backend, Client, Socket, StatusCode};
use tokio::net::{TcpListener, TcpStream};

const BINARY: &str = env!("CARGO_BIN_EXE_accounts");

fn start(database_url: &str, extra: &[&str]) -> Service {
    let mut args = vec!["--database-url", database_url];
    args.extend(["--drain-delay-ms", "0", "--log-format", "text"]);
    args.extend(extra);
    Service::start(BINARY, &args)
}

fn new_id() -> String {
    random_uuid().to_string()
}

async fn open(api: &Client<Socket>, account: &str) {
    api.open_ok(account, new_id()).await;
}

async fn deposit(
    api: &Client<Socket>,
    account: &str,
    amount: i64,
    transaction: &str,
) -> StatusCode {
    api.deposit(account, amount, transaction).await.status
}

async fn event_count(api: &Client<Socket>, account: &str) -> usize {
    api.event_list(account).await.len()
}

// ------------------------------------------------------------ durability

async fn survives_a_restart(database_url: &str) {
    let account = new_id();
    let other = new_id();
    let repeated = new_id();
    let service = start(database_url, &["--snapshot-every", "3"]);
    let api = service.client();
    open(&api, &account).await;
    open(&api, &other).await;
    for amount in [5, 7, 11] {
        assert_eq!(
            deposit(&api, &account, amount, &new_id()).await,
            StatusCode::NO_CONTENT
        );
    }
    assert_eq!(
        deposit(&api, &account, 100, &repeated).await,
        StatusCode::NO_CONTENT
    );
    let transfer = api.transfer(&account, &other, 3, new_id()).await;
    assert_eq!(transfer.status, StatusCode::NO_CONTENT);
    assert_eq!(api.balance(&account).await, 120);
    service.crash();

    let service = start(database_url, &["--snapshot-every", "3"]);
    let api = service.client();
    assert_eq!(api.balance(&account).await, 120);
    assert_eq!(api.balance(&other).await, 3);
    assert_eq!(event_count(&api, &account).await, 6);
    // The idempotency records survive too: the replay records nothing.
    assert_eq!(
        deposit(&api, &account, 100, &repeated).await,
        StatusCode::NO_CONTENT
    );
    assert_eq!(api.balance(&account).await, 120);
    assert_eq!(event_count(&api, &account).await, 6);
    let metrics = api.metrics().await.body;
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
    survives_a_restart(&file.sqlite_url()).await;
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
    let output = command(BINARY)
        .args(["--listen", "127.0.0.1:0", "--database-url", database_url])
        .args(["--connect-timeout-ms", "1000"])
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

// ------------------------------------------------------- durability guard

const WITHIN: Duration = Duration::from_secs(30);

#[tokio::test]
#[ignore = "needs ACCOUNTS_TEST_POSTGRES_URL"]
async fn postgres_that_can_lose_acknowledged_commits_is_refused_unless_accepted() {
    let database = TestDatabase::create(Backend::Postgres).await;
    let mut admin = database.admin().await.unwrap();
    for value in ["off", "local"] {
        // What a session of this database gets: a database default counts.
        let name = &database.name;
        let alter = format!("ALTER DATABASE {name} SET synchronous_commit = {value}");
        admin.execute(alter).await.unwrap();
        let line = refused_start(&database.url);
        assert!(
            line.contains(&format!("synchronous_commit={value} (")),
            "{line}"
        );
        assert!(line.contains("--allow-unsafe-durability"), "{line}");
    }
    let accepted = start(&database.url, &["--allow-unsafe-durability"]);
    accepted.wait_log("synchronous_commit=local", WITHIN);
    let api = accepted.client();
    let account = new_id();
    open(&api, &account).await;
    assert_eq!(event_count(&api, &account).await, 1);
    accepted.stop(WITHIN);
    let by_env = Service::start_with(
        BINARY,
        &["--database-url", &database.url],
        &[("ACCOUNTS_ALLOW_UNSAFE_DURABILITY", "true")],
    );
    by_env.wait_log("accepted (--allow-unsafe-durability)", WITHIN);
}

/// A single server is a deployment: it starts, and says what a failover
/// could cost.
async fn a_primary_without_a_synchronous_standby_starts_with_a_warning_and_a_gauge(
    backend: Backend,
) {
    let database = TestDatabase::create(backend).await;
    let service = start(&database.url, &[]);
    service.wait_log("without a synchronous standby", WITHIN);
    let metrics = service.client().metrics().await;
    assert!(
        metrics
            .body
            .contains("\naccounts_store_synchronous_standby 0\n"),
        "{}",
        metrics.body
    );
}

#[tokio::test]
#[ignore = "needs ACCOUNTS_TEST_POSTGRES_URL"]
async fn postgres_without_a_synchronous_standby_starts_with_a_warning_and_a_gauge() {
    a_primary_without_a_synchronous_standby_starts_with_a_warning_and_a_gauge(Backend::Postgres)
        .await;
}

#[tokio::test]
#[ignore = "needs ACCOUNTS_TEST_MYSQL_URL"]
async fn mysql_without_a_synchronous_replica_starts_with_a_warning_and_a_gauge() {
    a_primary_without_a_synchronous_standby_starts_with_a_warning_and_a_gauge(Backend::Mysql).await;
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

async fn outage_is_503_and_recovers(backend: Backend) {
    let database = TestDatabase::create(backend).await;
    let (_, upstream) = through(&database.url, "127.0.0.1:1".parse().unwrap());
    let proxy = Proxy::start(upstream).await;
    let (url, _) = through(&database.url, proxy.address);
    let service = start(
        &url,
        &["--acquire-timeout-ms", "500", "--store-timeout-ms", "2000"],
    );
    let api = service.client();
    let account = new_id();
    open(&api, &account).await;
    assert_eq!(
        deposit(&api, &account, 5, &new_id()).await,
        StatusCode::NO_CONTENT
    );
    assert_eq!(api.ready().await.status, StatusCode::OK);

    proxy.cut();
    let during = new_id();
    let response = api.deposit(&account, 7, &during).await;
    response.assert_error(StatusCode::SERVICE_UNAVAILABLE, "unavailable", "");
    assert!(response.headers.contains_key("retry-after"));
    assert_eq!(api.ready().await.status, StatusCode::SERVICE_UNAVAILABLE);

    proxy.restore();
    let deadline = Instant::now() + Duration::from_secs(30);
    while api.ready().await.status != StatusCode::OK {
        assert!(Instant::now() < deadline, "the service recovers by itself");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The client's retry of the request that got 503 applies it once.
    assert_eq!(
        deposit(&api, &account, 7, &during).await,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        deposit(&api, &account, 7, &during).await,
        StatusCode::NO_CONTENT
    );
    assert_eq!(api.balance(&account).await, 12);
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
