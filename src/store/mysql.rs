//! The MySQL/MariaDB store. Ids are CHAR(36) ASCII with a binary collation,
//! payloads JSON — on MariaDB an alias of LONGTEXT that sqlx reports as a
//! blob, so every read casts it to text.
//!
//! Feed positions come from the one-row `event_positions` counter, taken by
//! an `UPDATE … LAST_INSERT_ID(last + n)` (the new value comes back in the
//! statement's OK packet: no extra round trip) as the last statement before
//! the events are inserted and COMMIT is sent. The row lock it takes is held
//! until COMMIT, and InnoDB makes a committing transaction visible to new
//! reads before it releases its locks, so whoever takes the next range
//! commits after every earlier range is visible: commits that hold
//! positions become visible in position order.

use std::pin::Pin;

use async_trait::async_trait;
use sqlx::AssertSqlSafe;
use sqlx::error::DatabaseError;
use sqlx::migrate::Migrator;
use sqlx::mysql::{MySql, MySqlConnectOptions, MySqlConnection, MySqlDatabaseError, MySqlPool};

use super::sql::{self, Attempt, BatchWriter, SqlDialect, TransactionWrite};
use super::{
    AppendError, Commit, EventStore, FeedEvent, Loaded, OpenError, PointInTime, PoolStatus,
    RecordedEvent, StoreError, StoreOptions,
};
use crate::domain::{AccountId, TransactionId};

pub struct MysqlStore {
    pooled: sql::Pooled<MySql>,
}

impl SqlDialect for MySql {
    /// By error number, not SQLSTATE class: 23000 also covers CHECK and NOT
    /// NULL failures, which no retry cures. 1062 duplicate key (a sequence
    /// number or transactionId taken), 1213 deadlock, 1205 lock wait
    /// timeout, 1020 "record has changed since last read" (MariaDB's
    /// snapshot-isolation write conflict).
    fn is_conflict(error: &dyn DatabaseError) -> bool {
        error
            .try_downcast_ref::<MySqlDatabaseError>()
            .is_some_and(|error| matches!(error.number(), 1062 | 1213 | 1205 | 1020))
    }
}

/// The events' lower bound is an uncorrelated MAX over `snapshots`, not the
/// CTE: MariaDB folds the former into a constant and reads only the range
/// after it, but filters every event of the account through the latter
/// (EXPLAIN on a 100,000-event account: `range`, 1 row against `ref`, 50k).
const LOAD: &str = "
WITH snapshot AS (
    SELECT sequence_number, state, recorded_until_ms FROM snapshots
    WHERE account_id = ?
    ORDER BY sequence_number DESC LIMIT 1
)
SELECT 's' AS kind, sequence_number, CAST(NULL AS CHAR) AS transaction_id,
       CAST(state AS CHAR) AS payload, recorded_until_ms AS recorded_at_ms
FROM snapshot
UNION ALL
SELECT 'e', sequence_number, CAST(transaction_id AS CHAR), CAST(payload AS CHAR), recorded_at_ms
FROM events
WHERE account_id = ?
  AND sequence_number > (SELECT COALESCE(MAX(sequence_number), 0) FROM snapshots WHERE account_id = ?)
UNION ALL
SELECT 't', NULL, CAST(transaction_id AS CHAR), CAST(fingerprint AS CHAR), NULL
FROM applied_transactions
WHERE account_id = ? AND transaction_id = ?";

/// One request of a load of several accounts: [`LOAD`]'s snapshot and
/// events, each row tagged with the request's place `{n}`. The snapshot is a
/// derived table: a CTE per request cannot be written into a UNION ALL.
/// Binds: account, account, account.
const LOAD_ONE_OF_MANY: &str = "
SELECT {n} AS n, 's' AS kind, sequence_number, CAST(NULL AS CHAR) AS transaction_id,
       CAST(state AS CHAR) AS payload, recorded_until_ms AS recorded_at_ms
FROM (SELECT sequence_number, state, recorded_until_ms FROM snapshots
      WHERE account_id = ? ORDER BY sequence_number DESC LIMIT 1) AS snapshot
UNION ALL
SELECT {n}, 'e', sequence_number, CAST(transaction_id AS CHAR), CAST(payload AS CHAR), recorded_at_ms
FROM events
WHERE account_id = ?
  AND sequence_number > (SELECT COALESCE(MAX(sequence_number), 0) FROM snapshots WHERE account_id = ?)";

/// The transaction record of request `{n}`, for a request with a
/// transactionId. Binds: account, transactionId.
const RECORD_ONE_OF_MANY: &str = "
UNION ALL
SELECT {n}, 't', NULL, CAST(transaction_id AS CHAR), CAST(fingerprint AS CHAR), NULL
FROM applied_transactions
WHERE account_id = ? AND transaction_id = ?";

/// The load of the distinct requests `unique` in one statement: one
/// [`LOAD_ONE_OF_MANY`] (and [`RECORD_ONE_OF_MANY`]) per request, joined by
/// UNION ALL; the text holds nothing but these and the requests' places.
fn load_many_statement(unique: &[(AccountId, Option<TransactionId>)]) -> String {
    let mut statement = String::new();
    for (n, (_, transaction)) in unique.iter().enumerate() {
        if n > 0 {
            statement.push_str("\nUNION ALL");
        }
        let n = n.to_string();
        statement.push_str(&LOAD_ONE_OF_MANY.replace("{n}", &n));
        if transaction.is_some() {
            statement.push_str(&RECORD_ONE_OF_MANY.replace("{n}", &n));
        }
    }
    statement
}

const EVENTS: &str = "
SELECT sequence_number, CAST(transaction_id AS CHAR) AS transaction_id,
       CAST(payload AS CHAR) AS payload, recorded_at_ms
FROM events
WHERE account_id = ? AND sequence_number >= ?
ORDER BY sequence_number
LIMIT ?";

/// The latest snapshot at or before a version and the events after it up to
/// the version. Binds: account, version, account, account, version, version.
const LOAD_AT_VERSION: &str = "
WITH snapshot AS (
    SELECT sequence_number, state, recorded_until_ms FROM snapshots
    WHERE account_id = ? AND sequence_number <= ?
    ORDER BY sequence_number DESC LIMIT 1
)
SELECT 's' AS kind, sequence_number, CAST(NULL AS CHAR) AS transaction_id,
       CAST(state AS CHAR) AS payload, recorded_until_ms AS recorded_at_ms
FROM snapshot
UNION ALL
SELECT 'e', sequence_number, CAST(transaction_id AS CHAR), CAST(payload AS CHAR), recorded_at_ms
FROM events
WHERE account_id = ?
  AND sequence_number > (
      SELECT COALESCE(MAX(sequence_number), 0) FROM snapshots
      WHERE account_id = ? AND sequence_number <= ?)
  AND sequence_number <= ?";

/// The latest snapshot whose `recorded_until` is known and at or before a
/// time, then the events after it up to the first one recorded after the
/// time (an index range scan that stops at that event). Binds: account,
/// time, account, time, account.
const LOAD_AT_TIME: &str = "
WITH snapshot AS (
    SELECT sequence_number, state, recorded_until_ms FROM snapshots
    WHERE account_id = ? AND recorded_until_ms <= ?
    ORDER BY sequence_number DESC LIMIT 1
),
start AS (
    SELECT COALESCE((SELECT sequence_number FROM snapshot), 0) AS after_sequence
),
stop AS (
    SELECT COALESCE((
        SELECT sequence_number FROM events
        WHERE account_id = ? AND sequence_number > (SELECT after_sequence FROM start)
          AND recorded_at_ms > ?
        ORDER BY sequence_number LIMIT 1), 9223372036854775807) AS at_sequence
)
SELECT 's' AS kind, sequence_number, CAST(NULL AS CHAR) AS transaction_id,
       CAST(state AS CHAR) AS payload, recorded_until_ms AS recorded_at_ms
FROM snapshot
UNION ALL
SELECT 'e', sequence_number, CAST(transaction_id AS CHAR), CAST(payload AS CHAR), recorded_at_ms
FROM events
WHERE account_id = ?
  AND sequence_number > (SELECT after_sequence FROM start)
  AND sequence_number < (SELECT at_sequence FROM stop)";

const FEED: &str = "
SELECT position, CAST(account_id AS CHAR) AS account_id, sequence_number,
       CAST(transaction_id AS CHAR) AS transaction_id, CAST(payload AS CHAR) AS payload,
       recorded_at_ms
FROM events
WHERE position > ?
ORDER BY position
LIMIT ?";

/// One integer, non-zero when the server cannot write: `read_only` (a
/// replica, or a primary being demoted) or `innodb_read_only`.
const READ_ONLY: &str = "SELECT CAST(@@global.read_only OR @@global.innodb_read_only AS SIGNED)";

static MIGRATOR: Migrator = sqlx::migrate!("./migrations/mysql");

impl MysqlStore {
    pub async fn open(url: &str, options: &StoreOptions) -> Result<MysqlStore, OpenError> {
        let connect = sql::connect_options::<MySqlConnectOptions>(url)?;
        let pool = sql::open_pool(
            url,
            connect,
            sql::pool_options::<MySql>(options),
            options,
            &MIGRATOR,
        )
        .await?;
        Ok(MysqlStore {
            pooled: sql::Pooled::new(pool),
        })
    }

    pub fn pool(&self) -> &MySqlPool {
        self.pooled.pool()
    }
}

impl TransactionWrite for MySql {
    /// The consistent read of the stored heads is InnoDB's snapshot, taken
    /// at the transaction's first read, so it sees every committed head; a
    /// concurrent writer of the same next number or transactionId collides
    /// with us on the primary key (1062) instead, and a committed head never
    /// moves backwards.
    const BEGIN: Option<&'static str> = None;

    /// The counter row's lock, as late as the transaction allows: the OK packet
    /// of the UPDATE carries the new `last`.
    fn reserve_positions(
        connection: &mut MySqlConnection,
        count: i64,
    ) -> Pin<Box<dyn Future<Output = Result<i64, sqlx::Error>> + Send + '_>> {
        Box::pin(async move {
            let done = sqlx::query(
                "UPDATE event_positions SET last = LAST_INSERT_ID(last + ?) WHERE id = 1",
            )
            .bind(count)
            .execute(connection)
            .await?;
            // Without its row the UPDATE succeeds touching nothing, and
            // LAST_INSERT_ID() is whatever it was: positions made up from it
            // would break the feed. Nothing is committed: the transaction is
            // rolled back.
            if done.rows_affected() != 1 {
                return Err(sqlx::Error::Protocol(format!(
                    "the feed position counter (event_positions, id 1) is missing: \
                     its UPDATE touched {} rows",
                    done.rows_affected()
                )));
            }
            Ok(sql::bigint(done.last_insert_id()) - count + 1)
        })
    }
}

impl BatchWriter for MysqlStore {
    async fn write(&self, members: &[&Commit]) -> Attempt {
        MySql::write_in_transaction(&self.pooled, members).await
    }
}

#[async_trait]
impl EventStore for MysqlStore {
    async fn load(
        &self,
        account: AccountId,
        transaction: Option<TransactionId>,
    ) -> Result<Loaded, StoreError> {
        let account_text = account.to_string();
        let transaction_text = transaction.map(|id| id.to_string());
        let query = || {
            sqlx::query_as(LOAD)
                .bind(&account_text)
                .bind(&account_text)
                .bind(&account_text)
                .bind(&account_text)
                .bind(&transaction_text)
        };
        sql::load(&self.pooled, account, query).await
    }

    async fn load_many(
        &self,
        requests: &[(AccountId, Option<TransactionId>)],
    ) -> Result<Vec<Loaded>, StoreError> {
        let (unique, place) = sql::distinct_requests(requests);
        if unique.is_empty() {
            return Ok(Vec::new());
        }
        let statement = load_many_statement(&unique);
        let binds: Vec<(String, Option<String>)> = unique
            .iter()
            .map(|(account, transaction)| (account.to_string(), transaction.map(|t| t.to_string())))
            .collect();
        let (statement, binds) = (statement.as_str(), &binds);
        let rows = self
            .pooled
            .read(|mut connection| async move {
                let mut query = sqlx::query_as::<_, sql::ManyLoadRow>(AssertSqlSafe(statement));
                for (account, transaction) in binds {
                    query = query.bind(account).bind(account).bind(account);
                    if let Some(transaction) = transaction {
                        query = query.bind(account).bind(transaction);
                    }
                }
                query.fetch_all(&mut *connection).await
            })
            .await
            .map_err(sql::read_error)?;
        sql::assemble_many(&unique, place, rows)
    }

    /// Not yet: measured with `just bench` on MariaDB 10.11, the batched
    /// statement (a UNION ALL whose text changes with the batch's size, so
    /// each size is prepared anew on every connection) made transfers 4–5×
    /// slower and GETs slower than one load per account. `load_many`
    /// stays correct and tested for when it pays.
    fn loads_in_batches(&self) -> bool {
        false
    }

    async fn load_at(&self, account: AccountId, at: PointInTime) -> Result<Loaded, StoreError> {
        let account_text = account.to_string();
        let query = || match at {
            PointInTime::Version(version) => sqlx::query_as(LOAD_AT_VERSION)
                .bind(&account_text)
                .bind(sql::bigint(version))
                .bind(&account_text)
                .bind(&account_text)
                .bind(sql::bigint(version))
                .bind(sql::bigint(version)),
            PointInTime::Time(time) => sqlx::query_as(LOAD_AT_TIME)
                .bind(&account_text)
                .bind(time.unix_millis())
                .bind(&account_text)
                .bind(time.unix_millis())
                .bind(&account_text),
        };
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
