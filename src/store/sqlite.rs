//! The embedded SQLite store: one file, created if missing, in WAL mode so
//! readers never wait for the writer. Writes take the database's single
//! write lock up front (BEGIN IMMEDIATE), which serialises appends instead
//! of failing them half-way on a lock upgrade.
//!
//! That single writer is also what makes feed positions safe: a batch takes
//! `MAX(position) + 1` onwards under the write lock, so positions are handed
//! out in commit order and no reader can see a later one before an earlier
//! one commits.

use std::pin::Pin;

use async_trait::async_trait;
use sqlx::error::DatabaseError;
use sqlx::migrate::Migrator;
use sqlx::sqlite::{
    Sqlite, SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqlitePool,
    SqliteSynchronous,
};

use super::sql::{self, Attempt, BatchWriter, SqlDialect, TransactionWrite};
use super::{
    AppendError, Commit, EventStore, FeedEvent, Loaded, OpenError, PointInTime, PoolStatus,
    RecordedEvent, StoreError, StoreOptions,
};
use crate::domain::{AccountId, TransactionId};

pub struct SqliteStore {
    pooled: sql::Pooled<Sqlite>,
    in_memory: bool,
}

impl SqlDialect for Sqlite {
    /// SQLITE_BUSY and SQLITE_LOCKED (with any extended code: the primary code
    /// is the low byte), and the primary-key and unique constraint violations
    /// (SQLITE_CONSTRAINT_PRIMARYKEY 1555, SQLITE_CONSTRAINT_UNIQUE 2067).
    fn is_conflict(error: &dyn DatabaseError) -> bool {
        let Some(code) = error.code().and_then(|code| code.parse::<i32>().ok()) else {
            return false;
        };
        matches!(code & 0xff, 5 | 6) || matches!(code, 1555 | 2067)
    }
}

const LOAD: &str = "
WITH snapshot AS (
    SELECT sequence_number, state, recorded_until_ms FROM snapshots
    WHERE account_id = ?1
    ORDER BY sequence_number DESC LIMIT 1
)
SELECT 's' AS kind, sequence_number, NULL AS transaction_id,
       state AS payload, recorded_until_ms AS recorded_at_ms
FROM snapshot
UNION ALL
SELECT 'e', sequence_number, transaction_id, payload, recorded_at_ms
FROM events
WHERE account_id = ?1
  AND sequence_number > COALESCE((SELECT sequence_number FROM snapshot), 0)
UNION ALL
SELECT 't', NULL, transaction_id, fingerprint, NULL
FROM applied_transactions
WHERE account_id = ?1 AND transaction_id = ?2";

const EVENTS: &str = "
SELECT sequence_number, transaction_id, payload, recorded_at_ms
FROM events
WHERE account_id = ?1 AND sequence_number >= ?2
ORDER BY sequence_number
LIMIT ?3";

/// The latest snapshot at or before version ?2 and the events after it up to
/// the version.
const LOAD_AT_VERSION: &str = "
WITH snapshot AS (
    SELECT sequence_number, state, recorded_until_ms FROM snapshots
    WHERE account_id = ?1 AND sequence_number <= ?2
    ORDER BY sequence_number DESC LIMIT 1
)
SELECT 's' AS kind, sequence_number, NULL AS transaction_id,
       state AS payload, recorded_until_ms AS recorded_at_ms
FROM snapshot
UNION ALL
SELECT 'e', sequence_number, transaction_id, payload, recorded_at_ms
FROM events
WHERE account_id = ?1
  AND sequence_number > COALESCE((SELECT sequence_number FROM snapshot), 0)
  AND sequence_number <= ?2";

/// The latest snapshot whose `recorded_until` is known and at or before time
/// ?2, then the events after it up to the first one recorded after the time
/// (an index range scan that stops at that event).
const LOAD_AT_TIME: &str = "
WITH snapshot AS (
    SELECT sequence_number, state, recorded_until_ms FROM snapshots
    WHERE account_id = ?1 AND recorded_until_ms <= ?2
    ORDER BY sequence_number DESC LIMIT 1
),
start AS (
    SELECT COALESCE((SELECT sequence_number FROM snapshot), 0) AS after_sequence
),
stop AS (
    SELECT COALESCE((
        SELECT sequence_number FROM events
        WHERE account_id = ?1 AND sequence_number > (SELECT after_sequence FROM start)
          AND recorded_at_ms > ?2
        ORDER BY sequence_number LIMIT 1), 9223372036854775807) AS at_sequence
)
SELECT 's' AS kind, sequence_number, NULL AS transaction_id,
       state AS payload, recorded_until_ms AS recorded_at_ms
FROM snapshot
UNION ALL
SELECT 'e', sequence_number, transaction_id, payload, recorded_at_ms
FROM events
WHERE account_id = ?1
  AND sequence_number > (SELECT after_sequence FROM start)
  AND sequence_number < (SELECT at_sequence FROM stop)";

const FEED: &str = "
SELECT position, account_id, sequence_number, transaction_id, payload, recorded_at_ms
FROM events
WHERE position > ?1
ORDER BY position
LIMIT ?2";

/// SQLite has no standby: the file is writable or the store did not open.
const READ_ONLY: &str = "SELECT 0";

static MIGRATOR: Migrator = sqlx::migrate!("./migrations/sqlite");

impl SqliteStore {
    pub async fn open(url: &str, options: &StoreOptions) -> Result<SqliteStore, OpenError> {
        let connect = sql::connect_options::<SqliteConnectOptions>(url)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // Every acknowledged commit is on disk, even after a power loss.
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(options.acquire_timeout);
        let in_memory = shared_database(url).map_err(|reason| OpenError::Invalid {
            url: super::redact(url),
            reason,
        })?;
        let pool_options = pool_options(options, in_memory);
        let pool = sql::open_pool(url, connect, pool_options, options, &MIGRATOR).await?;
        Ok(SqliteStore {
            pooled: sql::Pooled::new(pool),
            in_memory,
        })
    }

    /// Whether the database lives only in this process (`sqlite::memory:`).
    pub fn in_memory(&self) -> bool {
        self.in_memory
    }

    pub fn pool(&self) -> &SqlitePool {
        self.pooled.pool()
    }
}

impl TransactionWrite for Sqlite {
    /// The transaction takes the write lock up front, so the heads it reads
    /// cannot move before it commits.
    const BEGIN: Option<&'static str> = Some("BEGIN IMMEDIATE");

    /// Positions after the largest stored one (through its unique index), read
    /// under the write lock that BEGIN IMMEDIATE took: no other writer can take
    /// the same range or commit in between.
    fn reserve_positions(
        connection: &mut SqliteConnection,
        _count: i64,
    ) -> Pin<Box<dyn Future<Output = Result<i64, sqlx::Error>> + Send + '_>> {
        Box::pin(async move {
            let last: i64 = sqlx::query_scalar("SELECT COALESCE(MAX(position), 0) FROM events")
                .fetch_one(connection)
                .await?;
            Ok(last + 1)
        })
    }
}

impl BatchWriter for SqliteStore {
    async fn write(&self, members: &[&Commit]) -> Attempt {
        Sqlite::write_in_transaction(&self.pooled, members).await
    }
}

/// The shared pool settings, except for `sqlite::memory:`: that database
/// lives only while a connection to it is open, so the pool keeps exactly one
/// connection, never reaped for idleness or age (sqlx's defaults would close
/// every connection after 10 idle minutes and wipe the data of a running
/// instance). One connection also avoids the shared cache's table locks,
/// which fail a read during a write at once with SQLITE_LOCKED (a 503).
fn pool_options(options: &StoreOptions, in_memory: bool) -> sqlx::pool::PoolOptions<Sqlite> {
    let pool = sql::pool_options::<Sqlite>(options);
    if in_memory {
        pool.max_connections(1)
            .min_connections(1)
            .idle_timeout(None)
            .max_lifetime(None)
    } else {
        pool
    }
}

/// Whether the URL names one database that every pooled connection shares:
/// a file, or `sqlite::memory:` (which sqlx names and shares). Returns
/// whether it is in memory. An empty path (SQLite then opens a private
/// temporary database per connection) or `mode=memory` / `cache=private`
/// (an unnamed or unshared in-memory database per connection) would give
/// each connection of the pool its own database: writes would land in one
/// and reads see another, or no schema at all.
fn shared_database(url: &str) -> Result<bool, String> {
    // The same prefix handling as sqlx's own parser.
    let rest = url
        .trim_start_matches("sqlite://")
        .trim_start_matches("sqlite:");
    let (database, query) = rest.split_once('?').unwrap_or((rest, ""));
    let parameters: Vec<(String, String)> =
        serde_urlencoded::from_str(query).map_err(|error| error.to_string())?;
    for (key, value) in &parameters {
        match (key.as_str(), value.as_str()) {
            ("mode", "memory") => {
                return Err(
                    "mode=memory gives every pooled connection its own database; use sqlite::memory:"
                        .to_owned(),
                );
            }
            ("cache", "private") => {
                return Err(
                    "cache=private gives every pooled connection its own in-memory database"
                        .to_owned(),
                );
            }
            _ => {}
        }
    }
    if database.is_empty() {
        return Err("no database file: use sqlite:PATH (created if missing)".to_owned());
    }
    Ok(database == ":memory:")
}

#[async_trait]
impl EventStore for SqliteStore {
    async fn load(
        &self,
        account: AccountId,
        transaction: Option<TransactionId>,
    ) -> Result<Loaded, StoreError> {
        let query = || {
            sqlx::query_as(LOAD)
                .bind(account.to_string())
                .bind(transaction.map(|id| id.to_string()))
        };
        sql::load(&self.pooled, account, query).await
    }

    async fn load_at(&self, account: AccountId, at: PointInTime) -> Result<Loaded, StoreError> {
        let (query, bound) = match at {
            PointInTime::Version(version) => (LOAD_AT_VERSION, sql::bigint(version)),
            PointInTime::Time(time) => (LOAD_AT_TIME, time.unix_millis()),
        };
        let query = || sqlx::query_as(query).bind(account.to_string()).bind(bound);
        sql::load(&self.pooled, account, query).await
    }

    async fn events(
        &self,
        account: AccountId,
        from: u64,
        limit: usize,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        sql::events(&self.pooled, EVENTS, account, from, limit).await
    }

    async fn feed(&self, after: u64, limit: usize) -> Result<Vec<FeedEvent>, StoreError> {
        sql::feed(&self.pooled, FEED, after, limit).await
    }

    async fn append_batch(&self, commits: &[Commit]) -> Vec<Result<(), AppendError>> {
        sql::append_batch(self, commits).await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        sql::ping(&self.pooled, READ_ONLY).await
    }

    fn pool_status(&self) -> Option<PoolStatus> {
        Some(PoolStatus::of(self.pooled.pool()))
    }

    fn pool_acquire_seconds(&self) -> Option<prometheus::HistogramVec> {
        Some(self.pooled.acquire_seconds())
    }
}

#[cfg(test)]
mod tests {
    use super::shared_database;

    #[test]
    fn a_file_or_sqlite_memory_is_one_shared_database() {
        assert_eq!(shared_database("sqlite:accounts.db"), Ok(false));
        assert_eq!(shared_database("sqlite:///var/lib/accounts.db"), Ok(false));
        assert_eq!(shared_database("sqlite:a.db?mode=rwc"), Ok(false));
        assert_eq!(shared_database("sqlite::memory:"), Ok(true));
        assert_eq!(shared_database("sqlite://:memory:"), Ok(true));
    }

    #[test]
    fn an_in_memory_database_keeps_its_one_connection_forever() {
        let options = super::StoreOptions::default();
        let memory = super::pool_options(&options, true);
        assert_eq!(memory.get_max_connections(), 1);
        assert_eq!(memory.get_min_connections(), 1);
        assert_eq!(memory.get_idle_timeout(), None);
        assert_eq!(memory.get_max_lifetime(), None);
        let file = super::pool_options(&options, false);
        assert_eq!(file.get_max_connections(), options.pool_size);
    }

    #[test]
    fn urls_that_give_each_connection_its_own_database_are_refused() {
        for url in [
            "sqlite:",
            "sqlite://",
            "sqlite:?mode=rwc",
            "sqlite:?mode=memory",
            "sqlite:a.db?mode=memory",
            "sqlite::memory:?cache=private",
        ] {
            assert!(shared_database(url).is_err(), "{url}");
        }
    }
}
