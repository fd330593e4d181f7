//! The command-line contract of the README ("Configuration"), on the real
//! binary: help, version, errors, probes, SIGTERM, the old flag names — and
//! that the flags reach the server, each observed by its effect on a binary
//! started with non-default values.

use std::time::{Duration, Instant};

use sqlx::{Connection, SqliteConnection};
use testkit::database::TempFile;
use testkit::process::{Service, command};
use testkit::{Client, Socket, StatusCode, fresh_id};
use tokio::io::AsyncReadExt;

const BINARY: &str = env!("CARGO_BIN_EXE_accounts");

#[test]
fn help_documents_the_flags_without_printing_environment_values() {
    let output = command(BINARY)
        .arg("--help")
        .env(
            "DATABASE_URL",
            "postgres://user:hunter2@db.example/accounts",
        )
        .env("ACCOUNTS_LISTEN", "127.0.0.1:9999")
        .output()
        .unwrap();
    assert!(output.status.success());
    let help = String::from_utf8(output.stdout).unwrap();
    for flag in [
        "--listen",
        "--database-url",
        "--snapshot-every",
        "--db-pool-size",
        "--http-connections-max",
        "--log-format",
        "--drain-delay-ms",
    ] {
        assert!(help.contains(flag), "--help lacks {flag}");
    }
    assert!(
        help.contains("DATABASE_URL"),
        "names the environment variable"
    );
    assert!(
        !help.contains("hunter2") && !help.contains("9999"),
        "never prints values:\n{help}"
    );
}

#[test]
fn version_prints_the_version() {
    let output = command(BINARY).arg("--version").output().unwrap();
    assert!(output.status.success());
    assert_eq!(
        String::from_utf8(output.stdout).unwrap().trim(),
        format!("accounts {}", env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn an_unusable_store_url_is_a_one_line_error_and_a_failure_exit() {
    let output = command(BINARY)
        .args([
            "--listen",
            "127.0.0.1:0",
            "--database-url",
            "redis://user:hunter2@localhost/0",
        ])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8(output.stderr).unwrap();
    let error: Vec<&str> = stderr.lines().filter(|l| l.starts_with("error:")).collect();
    assert_eq!(error.len(), 1, "{stderr}");
    assert!(
        error[0].contains("unsupported store URL scheme"),
        "{stderr}"
    );
    assert!(
        !stderr.contains("hunter2"),
        "never prints the password: {stderr}"
    );
}

#[test]
fn probe_fails_when_nothing_answers() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    drop(listener);
    let status = command(BINARY)
        .args(["probe", &format!("http://{address}")])
        .output()
        .unwrap()
        .status;
    assert_eq!(status.code(), Some(1));
}

/// Starts the real binary on a free port, probes it, and stops it with
/// SIGTERM: the first log line warns about the memory store, the second names
/// the bound address, and the process exits 0 after its drain delay.
#[test]
fn serves_probes_and_stops_on_sigterm() {
    let mut service = Service::start(BINARY, &["--drain-delay-ms", "200"]);
    // The listening line is the readiness signal: wait for it to be read.
    service.wait_log("listening on", Duration::from_secs(30));
    let log = service.log();
    assert!(
        log[0].contains("in-memory store: data is lost on exit"),
        "{log:?}"
    );
    assert!(
        log[1].contains(&format!("listening on {}", service.address)),
        "{log:?}"
    );

    let probe = command(BINARY)
        .args(["probe", &format!("http://{}", service.address)])
        .status()
        .unwrap();
    assert!(probe.success(), "probe of a ready instance exits 0");

    let started = Instant::now();
    service.terminate();
    let status = service.wait_exit(Duration::from_secs(10));
    assert!(status.success(), "{status:?}");
    assert!(
        started.elapsed() >= Duration::from_millis(200),
        "kept serving for the drain delay"
    );
}

/// The renamed connection limits keep their old names: the old flags are
/// hidden aliases (their values are validated like the new ones), and the
/// old environment variables are still read.
#[test]
fn the_old_names_of_the_connection_limits_still_work() {
    for (flag, variable) in [
        ("--max-connections", "ACCOUNTS_MAX_CONNECTIONS"),
        ("--connections-max", "ACCOUNTS_CONNECTIONS_MAX"),
    ] {
        let by_flag = command(BINARY)
            .args(["--listen", "127.0.0.1:0", flag, "0"])
            .output()
            .unwrap();
        let stderr = String::from_utf8(by_flag.stderr).unwrap();
        assert_eq!(by_flag.status.code(), Some(2), "{flag}: {stderr}");
        assert!(stderr.contains("must be at least 1"), "{flag}: {stderr}");
        let by_variable = command(BINARY)
            .args(["--listen", "127.0.0.1:0"])
            .env(variable, "0")
            .output()
            .unwrap();
        let stderr = String::from_utf8(by_variable.stderr).unwrap();
        assert_eq!(by_variable.status.code(), Some(2), "{variable}: {stderr}");
        assert!(stderr.contains(variable), "{variable}: {stderr}");
    }
    // Both accepted together: the service starts and listens.
    Service::start_with(
        BINARY,
        &["--max-connections", "3"],
        &[("ACCOUNTS_CONNECTIONS_MAX", "5")],
    );
}

// ------------------------------------------------- flags reach the server

/// Generous next to the flags' values below, and still under the defaults
/// they replace (request 10 s, store 5 s, header read 5 s, grace 10 s), so
/// an effect seen within it is the flag's.
const BOUND: Duration = Duration::from_secs(4);

/// SQLite's single write lock, held by the test: every append of the
/// service waits for it (up to its `--acquire-timeout-ms`), reads do not.
struct WriteLock(SqliteConnection);

impl WriteLock {
    async fn take(url: &str) -> WriteLock {
        let mut connection = SqliteConnection::connect(url).await.expect("connect");
        sqlx::raw_sql("BEGIN IMMEDIATE")
            .execute(&mut connection)
            .await
            .expect("the write lock");
        WriteLock(connection)
    }

    async fn release(mut self) {
        sqlx::raw_sql("ROLLBACK")
            .execute(&mut self.0)
            .await
            .expect("released");
    }
}

fn serve_sqlite(file: &TempFile, flags: &[&str]) -> Service {
    let url = file.sqlite_url();
    let mut args = vec!["--database-url", url.as_str()];
    args.extend(flags);
    Service::start(BINARY, &args)
}

/// A value of the service's own `/metrics`.
async fn metric(api: &Client<Socket>, name: &str) -> f64 {
    let text = api.metrics().await.body;
    testkit::metrics::value(&text, name).unwrap_or_else(|| panic!("no {name}"))
}

/// A request `send` starts, once the test has seen it held by the write
/// lock. With `--concurrency-max 1`, a ping shed as overloaded while the
/// request is unfinished shows the request holds the one slot (timing
/// cannot: on a loaded machine a request may not even have arrived after
/// a while). A request that finished — shed itself because a ping held
/// the slot when it came — is sent again.
async fn held<T>(
    api: &Client<Socket>,
    send: impl Fn() -> tokio::task::JoinHandle<T>,
) -> tokio::task::JoinHandle<T> {
    let deadline = Instant::now() + BOUND;
    let mut request = send();
    loop {
        let ping = api.ping().await;
        if request.is_finished() {
            request = send();
        } else if ping.status == StatusCode::SERVICE_UNAVAILABLE {
            ping.assert_error_code("overloaded");
            return request;
        }
        assert!(
            Instant::now() < deadline,
            "the request was never held behind --concurrency-max 1"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// An account opened with a deposit of 1, before any lock is taken.
async fn funded(api: &Client<Socket>) -> String {
    let account = fresh_id();
    api.open_funded(&account, fresh_id(), 1, fresh_id()).await;
    account
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_size_limits_snapshot_interval_and_log_format_flags_reach_the_server() {
    let file = TempFile::new("db");
    let service = serve_sqlite(
        &file,
        &[
            "--snapshot-every",
            "2",
            "--body-bytes-max",
            "64",
            "--url-bytes-max",
            "300",
            "--header-bytes-max",
            "2048",
            "--log-format",
            "json",
        ],
    );
    let api = service.client();
    let account = funded(&api).await;
    for amount in [2, 3] {
        api.deposit(&account, amount, fresh_id())
            .await
            .assert_status(StatusCode::NO_CONTENT);
    }
    // Events 1..=4: snapshots at 2 and 4, in the service's own database.
    let mut database = SqliteConnection::connect(&file.sqlite_url()).await.unwrap();
    let stored: Vec<i64> = sqlx::query_scalar(
        "SELECT sequence_number FROM snapshots WHERE account_id = ? ORDER BY sequence_number",
    )
    .bind(&account)
    .fetch_all(&mut database)
    .await
    .unwrap();
    assert_eq!(stored, [2, 4], "--snapshot-every 2");

    let answer = api.ping().body(vec![b'x'; 100]).await;
    answer.assert_error_code("payload_too_large");
    assert_eq!(api.ping().body(vec![b'x'; 10]).await.status, 200);
    let answer = api.get(format!("/ping?pad={}", "a".repeat(300))).await;
    answer.assert_error_code("uri_too_long");
    let header = format!("X-Pad: {}\r\n", "a".repeat(3_000));
    let answer = testkit::raw::request(service.address, "GET", "/ping", &header).await;
    assert_eq!(answer.status, 431, "--header-bytes-max 2048");

    let log = service.log();
    assert!(!log.is_empty());
    for line in &log {
        let entry: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        assert!(entry["level"].is_string(), "{line}");
    }
}

/// A service on a fresh SQLite file started with `flags`, and the answer
/// to a deposit sent while the test holds the write lock (released once the
/// answer is in).
struct Blocked {
    answer: testkit::Answer,
    api: Client<Socket>,
    account: String,
    _service: Service,
    _file: TempFile,
}

async fn deposit_under_the_write_lock(flags: &[&str]) -> Blocked {
    let file = TempFile::new("db");
    let service = serve_sqlite(&file, flags);
    let api = service.client();
    let account = funded(&api).await;
    let lock = WriteLock::take(&file.sqlite_url()).await;
    let answer = api
        .deposit(&account, 5, fresh_id())
        .timeout(BOUND)
        .reply()
        .await
        .expect("answered within the bound, as the flags say");
    lock.release().await;
    Blocked {
        answer,
        api,
        account,
        _service: service,
        _file: file,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_request_timeout_flag_reaches_the_server() {
    let blocked = deposit_under_the_write_lock(&[
        "--request-timeout-ms",
        "200",
        "--acquire-timeout-ms",
        "60000",
        "--store-timeout-ms",
        "60000",
    ])
    .await;
    blocked.answer.assert_error_code("request_timeout");
    assert_eq!(blocked.api.balance(&blocked.account).await, 1);
}

/// Each append outlives the store timeout (ambiguous), then the retries
/// run out: 503, since whether the deposit happened is unknown (a 409 would
/// tell the client it did not).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_store_timeout_and_retries_flags_reach_the_server() {
    let blocked = deposit_under_the_write_lock(&[
        "--store-timeout-ms",
        "200",
        "--retries-max",
        "2",
        "--acquire-timeout-ms",
        "60000",
    ])
    .await;
    blocked.answer.assert_error_code("unavailable");
    let api = &blocked.api;
    assert_eq!(metric(api, "accounts_ambiguous_commits_total").await, 3.0);
    assert_eq!(metric(api, "accounts_retries_total").await, 2.0);
}

/// SQLite waits for its write lock as long as the acquire timeout, then
/// answers busy: a conflict, retried once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_acquire_timeout_flag_reaches_the_server() {
    let blocked =
        deposit_under_the_write_lock(&["--acquire-timeout-ms", "100", "--retries-max", "1"]).await;
    blocked.answer.assert_error_code("conflict");
    assert_eq!(metric(&blocked.api, "accounts_conflicts_total").await, 2.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_concurrency_and_header_read_timeout_flags_reach_the_server() {
    let file = TempFile::new("db");
    let service = serve_sqlite(
        &file,
        &[
            "--concurrency-max",
            "1",
            "--acquire-timeout-ms",
            "60000",
            "--header-read-timeout-ms",
            "200",
        ],
    );
    let api = service.client();
    let account = funded(&api).await;
    let lock = WriteLock::take(&file.sqlite_url()).await;
    // The one request allowed in flight is the held deposit: others are shed.
    let stuck = held(&api, || {
        let (api, account) = (api.clone(), account.clone());
        tokio::spawn(async move { api.deposit(&account, 5, fresh_id()).await.status })
    })
    .await;
    lock.release().await;
    assert_eq!(stuck.await.unwrap(), StatusCode::NO_CONTENT);

    // A connection that sends nothing is closed after the header-read
    // timeout, long before the default's 5 s.
    let mut idle = tokio::net::TcpStream::connect(service.address)
        .await
        .unwrap();
    let mut buffer = Vec::new();
    let closed = tokio::time::timeout(BOUND, idle.read_to_end(&mut buffer)).await;
    assert!(closed.is_ok(), "--header-read-timeout-ms 200");
}

#[test]
fn the_shutdown_grace_flag_reaches_the_server() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let file = TempFile::new("db");
    let mut service = serve_sqlite(
        &file,
        &[
            "--drain-delay-ms",
            "0",
            "--shutdown-grace-ms",
            "300",
            "--acquire-timeout-ms",
            "60000",
            "--concurrency-max",
            "1",
        ],
    );
    let api = service.client();
    let (lock, stuck) = runtime.block_on(async {
        let account = funded(&api).await;
        let lock = WriteLock::take(&file.sqlite_url()).await;
        let stuck = held(&api, || {
            let (api, account) = (api.clone(), account.clone());
            tokio::spawn(async move { api.deposit(&account, 5, fresh_id()).reply().await })
        })
        .await;
        (lock, stuck)
    });
    // The deposit cannot finish while the lock is held; the process must
    // stop anyway once the grace period is over.
    service.terminate();
    let status = service.wait_exit(BOUND);
    assert!(status.success(), "{status:?}");
    let reply = runtime.block_on(stuck).unwrap();
    assert!(reply.is_err(), "the stuck deposit was cut off: {reply:?}");
    runtime.block_on(lock.release());
}

/// With the default cache, a deposit on an account the instance just
/// served is decided without a load (a hit); `--cache-accounts 0` keeps
/// nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cache_accounts_flag_reaches_the_server() {
    for (flags, hits) in [(&[][..], true), (&["--cache-accounts", "0"][..], false)] {
        let file = TempFile::new("db");
        let service = serve_sqlite(&file, flags);
        let api = service.client();
        let account = funded(&api).await;
        api.deposit(&account, 2, fresh_id())
            .await
            .assert_status(StatusCode::NO_CONTENT);
        let text = api.metrics().await.body;
        let hit = testkit::metrics::sum(&text, |line| {
            line.starts_with("accounts_cache_lookups_total{result=\"hit\"}")
        });
        assert_eq!(hit > 0.0, hits, "{flags:?}: {hit} hits");
    }
}
