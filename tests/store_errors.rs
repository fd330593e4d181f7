//! How the SQL stores classify database errors, fed with real errors that
//! real databases produce: each database's conflict codes (duplicate key,
//! deadlock, serialization failure, lock timeout, busy) must make the
//! engine reload and retry; a CHECK violation is no conflict (no retry cures
//! it: nothing was written, 503); a COMMIT whose connection is cut off
//! leaves the outcome unknown (ambiguous), while the same cut before COMMIT
//! wrote nothing (503). `classify_write_error` is the mapping the stores'
//! appends apply.
//!
//! SQLite runs everywhere; PostgreSQL and MariaDB need
//! ACCOUNTS_TEST_POSTGRES_URL / ACCOUNTS_TEST_MYSQL_URL and are ignored
//! without them.

use std::time::Duration;

use accounts::domain::AccountId;
use accounts::store::{AppendError, Dialect, StoreError, WriteStage, classify_write_error};
use sqlx::{AssertSqlSafe, Connection};
use testkit::{Backend, TestStore};

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
    let classified = classify_write_error(dialect, stage, error);
    assert!(
        matches!(classified, AppendError::Conflict(_)),
        "{code} at {stage:?} is a conflict: {classified:?}"
    );
}

/// Asserts the error carries `expected` and, raised before COMMIT, means
/// "nothing written, store unavailable" (503), not a conflict.
fn assert_refused_write(dialect: Dialect, error: sqlx::Error, expected: &str) {
    assert_eq!(code(&error), expected, "{error}");
    let classified = classify_write_error(dialect, WriteStage::BeforeCommit, error);
    assert!(
        matches!(classified, AppendError::Store(StoreError::Unavailable(_))),
        "{expected} is no conflict: {classified:?}"
    );
}

fn assert_ambiguous(dialect: Dialect, error: sqlx::Error) {
    let classified = classify_write_error(dialect, WriteStage::AtCommit, error);
    assert!(
        matches!(classified, AppendError::Ambiguous(_)),
        "a COMMIT cut off is ambiguous: {classified:?}"
    );
}

fn assert_unavailable(dialect: Dialect, error: sqlx::Error) {
    let classified = classify_write_error(dialect, WriteStage::BeforeCommit, error);
    assert!(
        matches!(classified, AppendError::Store(StoreError::Unavailable(_))),
        "a connection cut before COMMIT wrote nothing: {classified:?}"
    );
}

fn uuid() -> String {
    testkit::ids::random_uuid().to_string()
}

// ------------------------------------------------------------ PostgreSQL

mod postgres {
    use sqlx::PgConnection;

    use super::*;

    const DIALECT: Dialect = Dialect::Postgres;

    async fn connect(test: &TestStore) -> PgConnection {
        PgConnection::connect(test.url.as_deref().expect("a server database"))
            .await
            .expect("connect")
    }

    async fn run(connection: &mut PgConnection, sql: String) -> Result<(), sqlx::Error> {
        bounded(sqlx::raw_sql(AssertSqlSafe(sql)).execute(connection))
            .await
            .map(|_| ())
    }

    fn insert(account: &str, sequence: i64) -> String {
        format!(
            "INSERT INTO events VALUES ('{account}'::uuid, {sequence}, '{}'::uuid, \
             'AccountClosed', '{{\"type\":\"AccountClosed\"}}'::jsonb, 0)",
            uuid()
        )
    }

    fn touch(account: &str) -> String {
        format!(
            "UPDATE events SET recorded_at_ms = recorded_at_ms + 1 \
             WHERE account_id = '{account}'::uuid AND sequence_number = 1"
        )
    }

    /// A store database with one event on each of two fresh accounts.
    async fn prepared() -> (TestStore, String, String) {
        let test = TestStore::open(Backend::Postgres).await;
        let (a, b) = (uuid(), uuid());
        let mut connection = connect(&test).await;
        for account in [&a, &b] {
            run(&mut connection, insert(account, 1)).await.unwrap();
        }
        (test, a, b)
    }

    #[tokio::test]
    #[ignore = "needs ACCOUNTS_TEST_POSTGRES_URL"]
    async fn a_duplicate_key_is_a_conflict() {
        let (test, a, _) = prepared().await;
        let error = expect_error(run(&mut connect(&test).await, insert(&a, 1)).await, "dup");
        assert_conflict(DIALECT, WriteStage::BeforeCommit, error, &["23505"]);
    }

    #[tokio::test]
    #[ignore = "needs ACCOUNTS_TEST_POSTGRES_URL"]
    async fn a_serialization_failure_is_a_conflict_before_and_at_commit() {
        let (test, a, _) = prepared().await;
        // Repeatable read: a row changed since the snapshot cannot be updated.
        let (mut first, mut second) = (connect(&test).await, connect(&test).await);
        run(&mut first, "BEGIN ISOLATION LEVEL REPEATABLE READ".into())
            .await
            .unwrap();
        run(
            &mut first,
            format!("SELECT * FROM events WHERE account_id = '{a}'::uuid"),
        )
        .await
        .unwrap();
        run(&mut second, touch(&a)).await.unwrap();
        let error = expect_error(run(&mut first, touch(&a)).await, "update");
        assert_conflict(DIALECT, WriteStage::BeforeCommit, error, &["40001"]);
        run(&mut first, "ROLLBACK".into()).await.unwrap();

        // Serializable: write skew, caught when the second one commits.
        for connection in [&mut first, &mut second] {
            run(connection, "BEGIN ISOLATION LEVEL SERIALIZABLE".into())
                .await
                .unwrap();
            run(
                connection,
                format!("SELECT MAX(sequence_number) FROM events WHERE account_id = '{a}'::uuid"),
            )
            .await
            .unwrap();
        }
        run(&mut first, insert(&a, 2)).await.unwrap();
        let second_insert = run(&mut second, insert(&a, 3)).await;
        run(&mut first, "COMMIT".into()).await.unwrap();
        let (stage, error) = match second_insert {
            Err(error) => (WriteStage::BeforeCommit, error),
            Ok(()) => (
                WriteStage::AtCommit,
                expect_error(run(&mut second, "COMMIT".into()).await, "commit"),
            ),
        };
        assert_conflict(DIALECT, stage, error, &["40001"]);
    }

    #[tokio::test]
    #[ignore = "needs ACCOUNTS_TEST_POSTGRES_URL"]
    async fn a_deadlock_is_a_conflict() {
        let (test, a, b) = prepared().await;
        let (mut first, mut second) = (connect(&test).await, connect(&test).await);
        run(&mut first, "BEGIN".into()).await.unwrap();
        run(&mut first, touch(&a)).await.unwrap();
        run(&mut second, "BEGIN".into()).await.unwrap();
        run(&mut second, touch(&b)).await.unwrap();
        let (one, other) = tokio::join!(run(&mut first, touch(&b)), run(&mut second, touch(&a)));
        let error = match (one, other) {
            (Err(error), Ok(())) | (Ok(()), Err(error)) => error,
            both => panic!("exactly one side is aborted: {both:?}"),
        };
        assert_conflict(DIALECT, WriteStage::BeforeCommit, error, &["40P01"]);
    }

    #[tokio::test]
    #[ignore = "needs ACCOUNTS_TEST_POSTGRES_URL"]
    async fn a_lock_timeout_wrote_nothing_and_is_no_conflict() {
        let (test, a, _) = prepared().await;
        let (mut first, mut second) = (connect(&test).await, connect(&test).await);
        run(&mut first, "BEGIN".into()).await.unwrap();
        run(&mut first, touch(&a)).await.unwrap();
        run(&mut second, "SET lock_timeout = '50ms'".into())
            .await
            .unwrap();
        let error = expect_error(run(&mut second, touch(&a)).await, "locked update");
        // Not among PostgreSQL's conflict codes: the service never sets a
        // lock timeout, and one that fires is an overloaded database (503).
        assert_refused_write(DIALECT, error, "55P03");
    }

    #[tokio::test]
    #[ignore = "needs ACCOUNTS_TEST_POSTGRES_URL"]
    async fn a_check_violation_is_no_conflict() {
        let (test, a, _) = prepared().await;
        let error = expect_error(run(&mut connect(&test).await, insert(&a, 0)).await, "seq 0");
        assert_refused_write(DIALECT, error, "23514");
    }

    async fn backend_pid(connection: &mut PgConnection) -> i32 {
        sqlx::query_scalar("SELECT pg_backend_pid()")
            .fetch_one(connection)
            .await
            .unwrap()
    }

    async fn terminate(test: &TestStore, pid: i32) {
        let mut admin = connect(test).await;
        let terminated: bool = sqlx::query_scalar("SELECT pg_terminate_backend($1)")
            .bind(pid)
            .fetch_one(&mut admin)
            .await
            .unwrap();
        assert!(terminated);
    }

    #[tokio::test]
    #[ignore = "needs ACCOUNTS_TEST_POSTGRES_URL"]
    async fn a_commit_cut_off_is_ambiguous_and_a_cut_before_it_wrote_nothing() {
        let (test, a, _) = prepared().await;
        let mut writer = connect(&test).await;
        run(&mut writer, "BEGIN".into()).await.unwrap();
        run(&mut writer, insert(&a, 2)).await.unwrap();
        terminate(&test, backend_pid(&mut writer).await).await;
        let error = expect_error(run(&mut writer, "COMMIT".into()).await, "commit");
        assert_ambiguous(DIALECT, error);

        let mut writer = connect(&test).await;
        run(&mut writer, "BEGIN".into()).await.unwrap();
        terminate(&test, backend_pid(&mut writer).await).await;
        let error = expect_error(run(&mut writer, insert(&a, 2)).await, "insert");
        assert_unavailable(DIALECT, error);
        // Both were cut before their COMMIT took effect: nothing landed.
        let events = test
            .store
            .events(AccountId::parse(&a).unwrap(), 1, 10)
            .await
            .unwrap();
        assert_eq!(events.len(), 1);
    }
}

// --------------------------------------------------------------- MariaDB

mod mysql {
    use sqlx::MySqlConnection;

    use super::*;

    const DIALECT: Dialect = Dialect::Mysql;

    async fn connect(test: &TestStore) -> MySqlConnection {
        MySqlConnection::connect(test.url.as_deref().expect("a server database"))
            .await
            .expect("connect")
    }

    async fn run(connection: &mut MySqlConnection, sql: String) -> Result<(), sqlx::Error> {
        bounded(sqlx::raw_sql(AssertSqlSafe(sql)).execute(connection))
            .await
            .map(|_| ())
    }

    fn insert(account: &str, sequence: i64) -> String {
        format!(
            "INSERT INTO events VALUES ('{account}', {sequence}, '{}', 'AccountClosed', \
             '{{\"type\":\"AccountClosed\"}}', 0)",
            uuid()
        )
    }

    fn touch(account: &str) -> String {
        format!(
            "UPDATE events SET recorded_at_ms = recorded_at_ms + 1 \
             WHERE account_id = '{account}' AND sequence_number = 1"
        )
    }

    async fn prepared() -> (TestStore, String, String) {
        let test = TestStore::open(Backend::Mysql).await;
        let (a, b) = (uuid(), uuid());
        let mut connection = connect(&test).await;
        for account in [&a, &b] {
            run(&mut connection, insert(account, 1)).await.unwrap();
        }
        (test, a, b)
    }

    #[tokio::test]
    #[ignore = "needs ACCOUNTS_TEST_MYSQL_URL"]
    async fn a_duplicate_key_is_a_conflict() {
        let (test, a, _) = prepared().await;
        let error = expect_error(run(&mut connect(&test).await, insert(&a, 1)).await, "dup");
        assert_conflict(DIALECT, WriteStage::BeforeCommit, error, &["1062"]);
    }

    #[tokio::test]
    #[ignore = "needs ACCOUNTS_TEST_MYSQL_URL"]
    async fn a_record_changed_since_read_is_a_conflict() {
        let (test, a, _) = prepared().await;
        let (mut first, mut second) = (connect(&test).await, connect(&test).await);
        run(
            &mut first,
            "SET SESSION innodb_snapshot_isolation = ON".into(),
        )
        .await
        .unwrap();
        run(&mut first, "START TRANSACTION".into()).await.unwrap();
        run(
            &mut first,
            format!("SELECT * FROM events WHERE account_id = '{a}'"),
        )
        .await
        .unwrap();
        run(&mut second, touch(&a)).await.unwrap();
        let error = expect_error(run(&mut first, touch(&a)).await, "update");
        assert_conflict(DIALECT, WriteStage::BeforeCommit, error, &["1020"]);
    }

    #[tokio::test]
    #[ignore = "needs ACCOUNTS_TEST_MYSQL_URL"]
    async fn a_deadlock_is_a_conflict() {
        let (test, a, b) = prepared().await;
        let (mut first, mut second) = (connect(&test).await, connect(&test).await);
        run(&mut first, "START TRANSACTION".into()).await.unwrap();
        run(&mut first, touch(&a)).await.unwrap();
        run(&mut second, "START TRANSACTION".into()).await.unwrap();
        run(&mut second, touch(&b)).await.unwrap();
        let (one, other) = tokio::join!(run(&mut first, touch(&b)), run(&mut second, touch(&a)));
        let error = match (one, other) {
            (Err(error), Ok(())) | (Ok(()), Err(error)) => error,
            both => panic!("exactly one side is aborted: {both:?}"),
        };
        assert_conflict(DIALECT, WriteStage::BeforeCommit, error, &["1213"]);
    }

    #[tokio::test]
    #[ignore = "needs ACCOUNTS_TEST_MYSQL_URL"]
    async fn a_lock_wait_timeout_is_a_conflict() {
        let (test, a, _) = prepared().await;
        let (mut first, mut second) = (connect(&test).await, connect(&test).await);
        run(&mut first, "START TRANSACTION".into()).await.unwrap();
        run(&mut first, touch(&a)).await.unwrap();
        run(
            &mut second,
            "SET SESSION innodb_lock_wait_timeout = 1".into(),
        )
        .await
        .unwrap();
        let error = expect_error(run(&mut second, touch(&a)).await, "locked update");
        assert_conflict(DIALECT, WriteStage::BeforeCommit, error, &["1205"]);
    }

    #[tokio::test]
    #[ignore = "needs ACCOUNTS_TEST_MYSQL_URL"]
    async fn a_check_violation_is_no_conflict() {
        let (test, a, _) = prepared().await;
        let error = expect_error(run(&mut connect(&test).await, insert(&a, 0)).await, "seq 0");
        // 4025 shares SQLSTATE 23000 with a duplicate key: the class alone
        // would call it a conflict.
        assert_refused_write(DIALECT, error, "4025");
    }

    async fn kill(test: &TestStore, connection: &mut MySqlConnection) {
        let id: u64 = sqlx::query_scalar("SELECT CONNECTION_ID()")
            .fetch_one(&mut *connection)
            .await
            .unwrap();
        run(&mut connect(test).await, format!("KILL {id}"))
            .await
            .unwrap();
    }

    #[tokio::test]
    #[ignore = "needs ACCOUNTS_TEST_MYSQL_URL"]
    async fn a_commit_cut_off_is_ambiguous_and_a_cut_before_it_wrote_nothing() {
        let (test, a, _) = prepared().await;
        let mut writer = connect(&test).await;
        run(&mut writer, "START TRANSACTION".into()).await.unwrap();
        run(&mut writer, insert(&a, 2)).await.unwrap();
        kill(&test, &mut writer).await;
        let error = expect_error(run(&mut writer, "COMMIT".into()).await, "commit");
        assert_ambiguous(DIALECT, error);

        let mut writer = connect(&test).await;
        run(&mut writer, "START TRANSACTION".into()).await.unwrap();
        kill(&test, &mut writer).await;
        let error = expect_error(run(&mut writer, insert(&a, 2)).await, "insert");
        assert_unavailable(DIALECT, error);
        let events = test
            .store
            .events(AccountId::parse(&a).unwrap(), 1, 10)
            .await
            .unwrap();
        assert_eq!(events.len(), 1);
    }
}

// ---------------------------------------------------------------- SQLite

mod sqlite {
    use std::str::FromStr;

    use sqlx::SqliteConnection;
    use sqlx::sqlite::SqliteConnectOptions;

    use super::*;

    const DIALECT: Dialect = Dialect::Sqlite;

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

    fn insert(account: &str, sequence: i64) -> String {
        format!(
            "INSERT INTO events VALUES ('{account}', {sequence}, '{}', 'AccountClosed', \
             '{{\"type\":\"AccountClosed\"}}', 0)",
            uuid()
        )
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
