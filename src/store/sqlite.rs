//! The embedded SQLite store: one file, created if missing, in WAL mode so
//! readers never wait for the writer. Writes take the database's single
//! write lock up front (BEGIN IMMEDIATE), which serialises appends instead
//! of failing them half-way on a lock upgrade.

use std::collections::HashMap;
use std::str::FromStr;

use async_trait::async_trait;
use sqlx::error::DatabaseError;
use sqlx::sqlite::{
    Sqlite, SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqliteRow, SqliteSynchronous,
};
use sqlx::{QueryBuilder, Row};

use super::sql::{self, EventRow, LoadRow};
use super::{
    AppendError, Commit, EventStore, Loaded, OpenError, PoolStatus, RecordedEvent, StoreError,
    StoreOptions,
};
use crate::domain::{AccountId, TransactionId};

pub struct SqliteStore {
    pool: SqlitePool,
    in_memory: bool,
}

/// SQLITE_BUSY and SQLITE_LOCKED (with any extended code: the primary code
/// is the low byte), and the primary-key and unique constraint violations
/// (SQLITE_CONSTRAINT_PRIMARYKEY 1555, SQLITE_CONSTRAINT_UNIQUE 2067).
fn is_conflict(error: &dyn DatabaseError) -> bool {
    let Some(code) = error.code().and_then(|code| code.parse::<i32>().ok()) else {
        return false;
    };
    matches!(code & 0xff, 5 | 6) || matches!(code, 1555 | 2067)
}

const LOAD: &str = "
WITH snapshot AS (
    SELECT sequence_number, state FROM snapshots
    WHERE account_id = ?1
    ORDER BY sequence_number DESC LIMIT 1
)
SELECT 's' AS kind, sequence_number, NULL AS transaction_id,
       state AS payload, NULL AS recorded_at_ms
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

impl SqliteStore {
    pub async fn open(url: &str, options: &StoreOptions) -> Result<SqliteStore, OpenError> {
        let redacted = super::redact(url);
        let connect = SqliteConnectOptions::from_str(url)
            .map_err(|error| OpenError::Invalid {
                url: redacted.clone(),
                reason: error.to_string(),
            })?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // Every acknowledged commit is on disk, even after a power loss.
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(options.acquire_timeout);
        let in_memory = url.contains(":memory:") || url.contains("mode=memory");
        let pool = sql::pool_options::<Sqlite>(options).connect_lazy_with(connect.clone());
        let unreachable = |reason: String| OpenError::Unreachable {
            url: redacted.clone(),
            reason,
        };
        sql::first_connection::<sqlx::SqliteConnection>(&connect, options.connect_timeout)
            .await
            .map_err(unreachable)?;
        sqlx::migrate!("./migrations/sqlite")
            .run(&pool)
            .await
            .map_err(|error| unreachable(format!("migrating the schema: {error}")))?;
        Ok(SqliteStore { pool, in_memory })
    }

    /// Whether the database lives only in this process (`sqlite::memory:`).
    pub fn in_memory(&self) -> bool {
        self.in_memory
    }

    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }
}

fn load_row(row: &SqliteRow) -> Result<LoadRow, sqlx::Error> {
    Ok(LoadRow {
        kind: row.try_get("kind")?,
        sequence_number: row.try_get("sequence_number")?,
        transaction_id: row.try_get("transaction_id")?,
        payload: row.try_get("payload")?,
        recorded_at_ms: row.try_get("recorded_at_ms")?,
    })
}

fn event_row(row: &SqliteRow) -> Result<EventRow, sqlx::Error> {
    Ok(EventRow {
        sequence_number: row.try_get("sequence_number")?,
        transaction_id: row.try_get("transaction_id")?,
        payload: row.try_get("payload")?,
        recorded_at_ms: row.try_get("recorded_at_ms")?,
    })
}

/// The gap check: each account's stream must end right before the commit's
/// first event. The transaction holds the write lock (BEGIN IMMEDIATE), so
/// the head read here cannot move before we commit.
async fn check_heads(
    transaction: &mut sqlx::Transaction<'static, Sqlite>,
    expected: &[(String, i64)],
) -> Result<(), AppendError> {
    let mut heads = QueryBuilder::<Sqlite>::new(
        "SELECT account_id, MAX(sequence_number) FROM events WHERE account_id IN (",
    );
    let mut separated = heads.separated(", ");
    for (account, _) in expected {
        separated.push_bind(account.as_str());
    }
    heads.push(") GROUP BY account_id");
    let stored: HashMap<String, i64> = heads
        .build_query_as::<(String, i64)>()
        .fetch_all(&mut **transaction)
        .await
        .map_err(|error| sql::before_commit(error, is_conflict))?
        .into_iter()
        .collect();
    sql::check_heads(expected, &stored)
}

#[async_trait]
impl EventStore for SqliteStore {
    async fn load(
        &self,
        account: AccountId,
        transaction: Option<TransactionId>,
    ) -> Result<Loaded, StoreError> {
        let rows = sqlx::query(LOAD)
            .bind(account.to_string())
            .bind(transaction.map(|id| id.to_string()))
            .fetch_all(&self.pool)
            .await
            .map_err(sql::read_error)?;
        let rows = rows
            .iter()
            .map(load_row)
            .collect::<Result<Vec<_>, _>>()
            .map_err(sql::read_error)?;
        sql::assemble(account, rows)
    }

    async fn events(
        &self,
        account: AccountId,
        from: u64,
        limit: usize,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        let rows = sqlx::query(EVENTS)
            .bind(account.to_string())
            .bind(i64::try_from(from).unwrap_or(i64::MAX))
            .bind(i64::try_from(limit).unwrap_or(i64::MAX))
            .fetch_all(&self.pool)
            .await
            .map_err(sql::read_error)?;
        rows.iter()
            .map(|row| sql::decode_event(account, event_row(row).map_err(sql::read_error)?))
            .collect()
    }

    async fn append(&self, commit: &Commit) -> Result<(), AppendError> {
        let values = sql::commit_values(commit)?;
        if values.events.is_empty() && values.transactions.is_empty() {
            return Ok(());
        }
        let before = |error| sql::before_commit(error, is_conflict);
        let mut transaction = self
            .pool
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(before)?;
        if !values.heads.is_empty() {
            check_heads(&mut transaction, &values.heads).await?;
        }
        if !values.events.is_empty() {
            let mut insert = QueryBuilder::<Sqlite>::new(
                "INSERT INTO events (account_id, sequence_number, transaction_id, event_type, payload, recorded_at_ms) ",
            );
            insert.push_values(&values.events, |mut row, event| {
                row.push_bind(event.account_id.as_str())
                    .push_bind(event.sequence_number)
                    .push_bind(event.transaction_id.as_str())
                    .push_bind(event.event_type)
                    .push_bind(event.payload.as_str())
                    .push_bind(event.recorded_at_ms);
            });
            insert
                .build()
                .execute(&mut *transaction)
                .await
                .map_err(before)?;
        }
        if !values.transactions.is_empty() {
            let mut insert = QueryBuilder::<Sqlite>::new(
                "INSERT INTO applied_transactions (account_id, transaction_id, fingerprint) ",
            );
            insert.push_values(&values.transactions, |mut row, record| {
                row.push_bind(record.account_id.as_str())
                    .push_bind(record.transaction_id.as_str())
                    .push_bind(record.fingerprint.as_str());
            });
            insert
                .build()
                .execute(&mut *transaction)
                .await
                .map_err(before)?;
        }
        if !values.snapshots.is_empty() {
            let mut insert = QueryBuilder::<Sqlite>::new(
                "INSERT INTO snapshots (account_id, sequence_number, state) ",
            );
            insert.push_values(&values.snapshots, |mut row, snapshot| {
                row.push_bind(snapshot.account_id.as_str())
                    .push_bind(snapshot.sequence_number)
                    .push_bind(snapshot.state.as_str());
            });
            insert
                .build()
                .execute(&mut *transaction)
                .await
                .map_err(before)?;
        }
        transaction
            .commit()
            .await
            .map_err(|error| sql::at_commit(error, is_conflict))
    }

    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1")
            .execute(&self.pool)
            .await
            .map(|_| ())
            .map_err(sql::unavailable)
    }

    fn pool_status(&self) -> Option<PoolStatus> {
        Some(PoolStatus::of(&self.pool))
    }
}
