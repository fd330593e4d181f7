//! How the SQL stores classify database errors, fed with real errors that
//! real databases produce: each database's conflict codes (duplicate key,
//! deadlock, serialization failure, lock timeout, busy) must make the
//! engine reload and retry; a CHECK violation is no conflict (no retry cures
//! it: nothing was written, 503); a COMMIT whose connection is cut off
//! leaves the outcome unknown (ambiguous), while the same cut before COMMIT
//! wrote nothing (503). [`classify_write_error`] is the mapping the stores'
//! appends apply.
//!
//! A unit test, so that the mapping needs no public API. It borrows the
//! test kit's databases and connections, which carry no type of this
//! crate (the kit's `accounts` is another copy of it in `cargo test --lib`):
//! the rows are read back through a store of this crate opened on the
//! kit's database.
//!
//! SQLite runs everywhere; PostgreSQL and MariaDB need
//! ACCOUNTS_TEST_POSTGRES_URL / ACCOUNTS_TEST_MYSQL_URL and are ignored
//! without them (`just integration` runs them).

use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use sqlx::{AssertSqlSafe, Connection, MySql, Postgres, Sqlite};
use testkit::database::event_insert;
use testkit::{Backend, TestStore};

use super::{WriteStage, classify_write_error};
use crate::domain::AccountId;
use crate::store::{AppendError, StoreError, StoreOptions};

/// The mapping of one dialect: [`classify_write_error`] of its database.
type Dialect = fn(WriteStage, sqlx::Error) -> AppendError;

/// Every test is bounded: a lock wait that never ends fails it.
const BOUND: Duration = Duration::from_secs(60);

async fn bounded<T>(future: impl Future<Output = T>) -> T {
    tokio::time::timeout(BOUND, future)
        .await
        .expect("the database answered within the bound")
}

/// The database's own code of an error (SQLSTATE or error number).
fn code(error: &sqlx::Error) -> String {
    match error {
        sqlx::Error::Database(database) => {
            if let Some(mysql) = database.try_downcast_ref::<sqlx::mysql::MySqlDatabaseError>() {
                return mysql.number().to_string();
            }
            database
                .code()
                .map(|code| code.into_owned())
                .unwrap_or_default()
        }
        other => format!("not a database error: {other}"),
    }
}

fn expect_error<T: std::fmt::Debug>(result: Result<T, sqlx::Error>, what: &str) -> sqlx::Error {
    match result {
        Err(error) => error,
        Ok(value) => panic!("{what} succeeded: {value:?}"),
    }
}

/// Asserts the error carries `expected` (one of them) and that the store
/// contract calls it a conflict at `stage`.
fn assert_conflict(dialect: Dialect, stage: WriteStage, error: sqlx::Error, expected: &[&str]) {
    let code = code(&error);
    assert!(expected.contains(&code.as_str()), "{code}: {error}");
    let classified = dialect(stage, error);
    assert!(
        matches!(classified, AppendError::Conflict(_)),
        "{code} at {stage:?} is a conflict: {classified:?}"
    );
}

/// Asserts the error carries `expected` and, raised before COMMIT, means
/// "nothing written, store unavailable" (503), not a conflict.
fn assert_refused_write(dialect: Dialect, error: sqlx::Error, expected: &str) {
    assert_eq!(code(&error), expected, "{error}");
    let classified = dialect(WriteStage::BeforeCommit, error);
    assert!(
        matches!(classified, AppendError::Store(StoreError::Unavailable(_))),
        "{expected} is no conflict: {classified:?}"
    );
}

fn assert_ambiguous(dialect: Dialect, error: sqlx::Error) {
    let classified = dialect(WriteStage::AtCommit, error);
    assert!(
        matches!(classified, AppendError::Ambiguous(_)),
        "a COMMIT cut off is ambiguous: {classified:?}"
    );
}

fn assert_unavailable(dialect: Dialect, error: sqlx::Error) {
    let classified = dialect(WriteStage::BeforeCommit, error);
    assert!(
        matches!(classified, AppendError::Store(StoreError::Unavailable(_))),
        "a connection cut before COMMIT wrote nothing: {classified:?}"
    );
}

/// How many events of `account` the database holds, read by a store of
/// this crate (the kit's store is another copy's).
async fn stored_events(test: &TestStore, account: &str) -> usize {
    let url = test.url.as_deref().expect("a database URL");
    let opened = crate::store::open(url, &StoreOptions::default())
        .await
        .expect("reopening the test database");
    let account = AccountId::parse(account).unwrap();
    opened.store.events(account, 1, 10).await.unwrap().len()
}

fn uuid() -> String {
    testkit::ids::random_uuid().to_string()
}

/// An event row written by hand, at a feed position of its own.
fn insert(account: &str, sequence: i64) -> String {
    static POSITION: AtomicI64 = AtomicI64::new(1);
    let position = POSITION.fetch_add(1, Ordering::SeqCst).to_string();
    event_insert(account, sequence, &uuid(), &position)
}

// ------------------------------------------- PostgreSQL and MariaDB

mod server {
    use testkit::database::ServerConnection;

    use super::*;

    /// The codes each server gives the same failures.
    struct Codes {
        dialect: Dialect,
        duplicate: &'static str,
        deadlock: &'static str,
        check: &'static str,
        /// A write to a row changed since this transaction's snapshot.
        stale_write: &'static str,
        /// Starts a transaction that reads from a snapshot and refuses to
        /// overwrite what changed since.
        snapshot_begin: &'static [&'static str],
        /// Makes the next lock wait give up quickly.
        lock_timeout: &'static str,
        lock_timeout_code: &'static str,
    }

    const POSTGRES: Codes = Codes {
        dialect: classify_write_error::<Postgres>,
        duplicate: "23505",
        deadlock: "40P01",
        check: "23514",
        stale_write: "40001",
        snapshot_begin: &["BEGIN ISOLATION LEVEL REPEATABLE READ"],
        lock_timeout: "SET lock_timeout = '50ms'",
        lock_timeout_code: "55P03",
    };

    const MYSQL: Codes = Codes {
        dialect: classify_write_error::<MySql>,
        duplicate: "1062",
        deadlock: "1213",
        check: "4025",
        stale_write: "1020",
        snapshot_begin: &[
            "SET SESSION innodb_snapshot_isolation = ON",
            "START TRANSACTION",
        ],
        lock_timeout: "SET SESSION innodb_lock_wait_timeout = 1",
        lock_timeout_code: "1205",
    };

    fn codes(backend: Backend) -> &'static Codes {
        match backend {
            Backend::Postgres => &POSTGRES,
            _ => &MYSQL,
        }
    }

    async fn connect(test: &TestStore) -> ServerConnection {
        let url = test.url.as_deref().expect("a server database");
        ServerConnection::connect(test.backend, url)
            .await
            .expect("connect")
    }

    async fn run(
        connection: &mut ServerConnection,
        sql: impl Into<String>,
    ) -> Result<(), sqlx::Error> {
        bounded(connection.execute(sql.into())).await
    }

    fn touch(account: &str) -> String {
        format!(
            "UPDATE events SET recorded_at_ms = recorded_at_ms + 1 \
             WHERE account_id = '{account}' AND sequence_number = 1"
        )
    }

    /// A store database with one event on each of two fresh accounts.
    async fn prepared(backend: Backend) -> (TestStore, String, String) {
        let test = TestStore::open(backend).await;
        let (a, b) = (uuid(), uuid());
        let mut connection = connect(&test).await;
        for account in [&a, &b] {
            run(&mut connection, insert(account, 1)).await.unwrap();
        }
        (test, a, b)
    }

    /// One test per server of each case below.
    macro_rules! on_both_servers {
        ($($case:ident),* $(,)?) => {
            mod postgres {
                $(
                    #[tokio::test]
                    #[ignore = "needs ACCOUNTS_TEST_POSTGRES_URL"]
                    async fn $case() {
                        super::$case(testkit::Backend::Postgres).await;
                    }
                )*
            }
            mod mysql {
                $(
                    #[tokio::test]
                    #[ignore = "needs ACCOUNTS_TEST_MYSQL_URL"]
                    async fn $case() {
                        super::$case(testkit::Backend::Mysql).await;
                    }
                )*
            }
        };
    }

    on_both_servers!(
        a_duplicate_key_is_a_conflict,
        a_write_to_a_row_changed_since_the_snapshot_is_a_conflict,
        a_deadlock_is_a_conflict,
        a_lock_timeout_is_classified_by_its_code,
        a_check_violation_is_no_conflict,
        a_commit_cut_off_is_ambiguous_and_a_cut_before_it_wrote_nothing,
    );

    async fn a_duplicate_key_is_a_conflict(backend: Backend) {
        let (test, a, _) = prepared(backend).await;
        let error = expect_error(run(&mut connect(&test).await, insert(&a, 1)).await, "dup");
        let codes = codes(backend);
        assert_conflict(
            codes.dialect,
            WriteStage::BeforeCommit,
            error,
            &[codes.duplicate],
        );
    }

    async fn a_write_to_a_row_changed_since_the_snapshot_is_a_conflict(backend: Backend) {
        let (test, a, _) = prepared(backend).await;
        let codes = codes(backend);
        let (mut first, mut second) = (connect(&test).await, connect(&test).await);
        for statement in codes.snapshot_begin {
            run(&mut first, *statement).await.unwrap();
        }
        run(
            &mut first,
            format!("SELECT * FROM events WHERE account_id = '{a}'"),
        )
        .await
        .unwrap();
        run(&mut second, touch(&a)).await.unwrap();
        let error = expect_error(run(&mut first, touch(&a)).await, "stale write");
        assert_conflict(
            codes.dialect,
            WriteStage::BeforeCommit,
            error,
            &[codes.stale_write],
        );
    }

    async fn a_deadlock_is_a_conflict(backend: Backend) {
        let (test, a, b) = prepared(backend).await;
        let (mut first, mut second) = (connect(&test).await, connect(&test).await);
        run(&mut first, "BEGIN").await.unwrap();
        run(&mut first, touch(&a)).await.unwrap();
        run(&mut second, "BEGIN").await.unwrap();
        run(&mut second, touch(&b)).await.unwrap();
        let (one, other) = tokio::join!(run(&mut first, touch(&b)), run(&mut second, touch(&a)));
        let error = match (one, other) {
            (Err(error), Ok(())) | (Ok(()), Err(error)) => error,
            both => panic!("exactly one side is aborted: {both:?}"),
        };
        let codes = codes(backend);
        assert_conflict(
            codes.dialect,
            WriteStage::BeforeCommit,
            error,
            &[codes.deadlock],
        );
    }

    /// MariaDB's lock wait timeout is a conflict. PostgreSQL's lock timeout
    /// is not among its conflict codes: the service never sets one, and one
    /// that fires is an overloaded database (503).
    async fn a_lock_timeout_is_classified_by_its_code(backend: Backend) {
        let (test, a, _) = prepared(backend).await;
        let codes = codes(backend);
        let (mut first, mut second) = (connect(&test).await, connect(&test).await);
        run(&mut first, "BEGIN").await.unwrap();
        run(&mut first, touch(&a)).await.unwrap();
        run(&mut second, codes.lock_timeout).await.unwrap();
        let error = expect_error(run(&mut second, touch(&a)).await, "locked update");
        match backend {
            Backend::Postgres => {
                assert_refused_write(codes.dialect, error, codes.lock_timeout_code)
            }
            _ => assert_conflict(
                codes.dialect,
                WriteStage::BeforeCommit,
                error,
                &[codes.lock_timeout_code],
            ),
        }
    }

    /// MariaDB's CHECK failure shares SQLSTATE 23000 with a duplicate key:
    /// the class alone would call it a conflict.
    async fn a_check_violation_is_no_conflict(backend: Backend) {
        let (test, a, _) = prepared(backend).await;
        let error = expect_error(run(&mut connect(&test).await, insert(&a, 0)).await, "seq 0");
        let codes = codes(backend);
        assert_refused_write(codes.dialect, error, codes.check);
    }

    /// `connection` ended by an operator, as a network cut would.
    async fn cut(test: &TestStore, connection: &mut ServerConnection) {
        let id = connection.session_id().await.unwrap();
        connect(test).await.kill_session(id).await.unwrap();
    }

    async fn a_commit_cut_off_is_ambiguous_and_a_cut_before_it_wrote_nothing(backend: Backend) {
        let (test, a, _) = prepared(backend).await;
        let dialect = codes(backend).dialect;
        let mut writer = connect(&test).await;
        run(&mut writer, "BEGIN").await.unwrap();
        run(&mut writer, insert(&a, 2)).await.unwrap();
        cut(&test, &mut writer).await;
        let error = expect_error(run(&mut writer, "COMMIT").await, "commit");
        assert_ambiguous(dialect, error);

        let mut writer = connect(&test).await;
        run(&mut writer, "BEGIN").await.unwrap();
        cut(&test, &mut writer).await;
        let error = expect_error(run(&mut writer, insert(&a, 2)).await, "insert");
        assert_unavailable(dialect, error);
        // Both were cut before their COMMIT took effect: nothing landed.
        assert_eq!(stored_events(&test, &a).await, 1);
    }

    /// Serializable write skew, caught when the second one commits.
    #[tokio::test]
    #[ignore = "needs ACCOUNTS_TEST_POSTGRES_URL"]
    async fn postgres_a_serialization_failure_at_commit_is_a_conflict() {
        let (test, a, _) = prepared(Backend::Postgres).await;
        let (mut first, mut second) = (connect(&test).await, connect(&test).await);
        for connection in [&mut first, &mut second] {
            run(connection, "BEGIN ISOLATION LEVEL SERIALIZABLE")
                .await
                .unwrap();
            let head = format!("SELECT MAX(sequence_number) FROM events WHERE account_id = '{a}'");
            run(connection, head).await.unwrap();
        }
        run(&mut first, insert(&a, 2)).await.unwrap();
        let second_insert = run(&mut second, insert(&a, 3)).await;
        run(&mut first, "COMMIT").await.unwrap();
        let (stage, error) = match second_insert {
            Err(error) => (WriteStage::BeforeCommit, error),
            Ok(()) => (
                WriteStage::AtCommit,
                expect_error(run(&mut second, "COMMIT").await, "commit"),
            ),
        };
        assert_conflict(classify_write_error::<Postgres>, stage, error, &["40001"]);
    }
}

// ---------------------------------------------------------------- SQLite

mod sqlite {
    use std::str::FromStr;

    use sqlx::SqliteConnection;
    use sqlx::sqlite::SqliteConnectOptions;

    use super::*;

    const DIALECT: Dialect = classify_write_error::<Sqlite>;

    /// A connection that never waits for a lock: busy answers at once.
    async fn connect(test: &TestStore) -> SqliteConnection {
        let url = test.url.as_deref().expect("a file database");
        let options = SqliteConnectOptions::from_str(url)
            .unwrap()
            .busy_timeout(Duration::ZERO);
        SqliteConnection::connect_with(&options)
            .await
            .expect("connect")
    }

    async fn run(connection: &mut SqliteConnection, sql: String) -> Result<(), sqlx::Error> {
        bounded(sqlx::raw_sql(AssertSqlSafe(sql)).execute(connection))
            .await
            .map(|_| ())
    }

    async fn prepared() -> (TestStore, String) {
        let test = TestStore::open(Backend::Sqlite).await;
        let a = uuid();
        run(&mut connect(&test).await, insert(&a, 1)).await.unwrap();
        (test, a)
    }

    #[tokio::test]
    async fn primary_key_and_unique_violations_are_conflicts() {
        let (test, a) = prepared().await;
        let mut connection = connect(&test).await;
        let error = expect_error(run(&mut connection, insert(&a, 1)).await, "dup");
        assert_conflict(DIALECT, WriteStage::BeforeCommit, error, &["1555"]);
        run(&mut connection, "CREATE TEMP TABLE t (x UNIQUE)".into())
            .await
            .unwrap();
        run(&mut connection, "INSERT INTO t VALUES (1)".into())
            .await
            .unwrap();
        let error = expect_error(
            run(&mut connection, "INSERT INTO t VALUES (1)".into()).await,
            "dup",
        );
        assert_conflict(DIALECT, WriteStage::BeforeCommit, error, &["2067"]);
    }

    #[tokio::test]
    async fn busy_is_a_conflict_also_with_an_extended_code() {
        let (test, a) = prepared().await;
        let (mut first, mut second) = (connect(&test).await, connect(&test).await);
        // The write lock taken, as the store's append takes it.
        run(&mut first, "BEGIN IMMEDIATE".into()).await.unwrap();
        let error = expect_error(run(&mut second, "BEGIN IMMEDIATE".into()).await, "lock");
        assert_conflict(DIALECT, WriteStage::BeforeCommit, error, &["5"]);
        run(&mut first, "ROLLBACK".into()).await.unwrap();

        // A reader whose snapshot went stale cannot start writing:
        // SQLITE_BUSY_SNAPSHOT (5 | 2 << 8).
        run(&mut second, "BEGIN".into()).await.unwrap();
        run(&mut second, "SELECT COUNT(*) FROM events".into())
            .await
            .unwrap();
        run(&mut first, insert(&a, 2)).await.unwrap();
        let error = expect_error(run(&mut second, insert(&a, 3)).await, "stale write");
        assert_conflict(DIALECT, WriteStage::BeforeCommit, error, &["517"]);
    }

    #[tokio::test]
    async fn a_check_violation_is_no_conflict() {
        let (test, a) = prepared().await;
        let error = expect_error(run(&mut connect(&test).await, insert(&a, 0)).await, "seq 0");
        assert_refused_write(DIALECT, error, "275");
    }
}
