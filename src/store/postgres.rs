//! The PostgreSQL store. Ids are `uuid`, payloads `jsonb` (readable by
//! operators with the usual JSON operators); values are bound as text and
//! cast in SQL, so the crate needs no extra sqlx type features.

use std::collections::HashMap;
use std::str::FromStr;

use async_trait::async_trait;
use sqlx::error::DatabaseError;
use sqlx::postgres::{PgConnectOptions, PgPool, PgRow};
use sqlx::{Postgres, QueryBuilder, Row};

use super::sql::{self, EventRow, LoadRow};
use super::{
    AppendError, Commit, EventStore, Loaded, OpenError, PoolStatus, RecordedEvent, StoreError,
    StoreOptions,
};
use crate::domain::{AccountId, TransactionId};

pub struct PostgresStore {
    pool: PgPool,
}

/// Unique violation (a sequence number or transactionId taken),
/// serialization failure, deadlock.
fn is_conflict(error: &dyn DatabaseError) -> bool {
    matches!(error.code().as_deref(), Some("23505" | "40001" | "40P01"))
}

const LOAD: &str = "
WITH snapshot AS (
    SELECT sequence_number, state FROM snapshots
    WHERE account_id = $1::uuid
    ORDER BY sequence_number DESC LIMIT 1
)
SELECT 's' AS kind, sequence_number, NULL::text AS transaction_id,
       state::text AS payload, NULL::bigint AS recorded_at_ms
FROM snapshot
UNION ALL
SELECT 'e', sequence_number, transaction_id::text, payload::text, recorded_at_ms
FROM events
WHERE account_id = $1::uuid
  AND sequence_number > COALESCE((SELECT sequence_number FROM snapshot), 0)
UNION ALL
SELECT 't', NULL, transaction_id::text, fingerprint, NULL
FROM applied_transactions
WHERE account_id = $1::uuid AND transaction_id = $2::uuid";

const EVENTS: &str = "
SELECT sequence_number, transaction_id::text AS transaction_id,
       payload::text AS payload, recorded_at_ms
FROM events
WHERE account_id = $1::uuid AND sequence_number >= $2
ORDER BY sequence_number
LIMIT $3";

impl PostgresStore {
    pub async fn open(url: &str, options: &StoreOptions) -> Result<PostgresStore, OpenError> {
        let redacted = super::redact(url);
        let connect = PgConnectOptions::from_str(url).map_err(|error| OpenError::Invalid {
            url: redacted.clone(),
            reason: error.to_string(),
        })?;
        let pool = sql::pool_options::<Postgres>(options).connect_lazy_with(connect.clone());
        let unreachable = |reason: String| OpenError::Unreachable {
            url: redacted.clone(),
            reason,
        };
        sql::first_connection::<sqlx::PgConnection>(&connect, options.connect_timeout)
            .await
            .map_err(unreachable)?;
        sqlx::migrate!("./migrations/postgres")
            .run(&pool)
            .await
            .map_err(|error| unreachable(format!("migrating the schema: {error}")))?;
        Ok(PostgresStore { pool })
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }
}

fn load_row(row: &PgRow) -> Result<LoadRow, sqlx::Error> {
    Ok(LoadRow {
        kind: row.try_get("kind")?,
        sequence_number: row.try_get("sequence_number")?,
        transaction_id: row.try_get("transaction_id")?,
        payload: row.try_get("payload")?,
        recorded_at_ms: row.try_get("recorded_at_ms")?,
    })
}

fn event_row(row: &PgRow) -> Result<EventRow, sqlx::Error> {
    Ok(EventRow {
        sequence_number: row.try_get("sequence_number")?,
        transaction_id: row.try_get("transaction_id")?,
        payload: row.try_get("payload")?,
        recorded_at_ms: row.try_get("recorded_at_ms")?,
    })
}

/// The gap check: each account's stream must end right before the commit's
/// first event. Reading the committed head under READ COMMITTED is enough: a
/// concurrent writer of the same next number collides with us on the primary
/// key instead, and a committed head never moves backwards.
async fn check_heads(
    transaction: &mut sqlx::Transaction<'static, Postgres>,
    expected: &[(String, i64)],
) -> Result<(), AppendError> {
    let mut heads = QueryBuilder::<Postgres>::new(
        "SELECT account_id::text, MAX(sequence_number) FROM events WHERE account_id IN (",
    );
    let mut separated = heads.separated(", ");
    for (account, _) in expected {
        separated.push_bind(account.as_str());
        separated.push_unseparated("::uuid");
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
impl EventStore for PostgresStore {
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
        let mut transaction = self.pool.begin().await.map_err(before)?;
        if !values.heads.is_empty() {
            check_heads(&mut transaction, &values.heads).await?;
        }
        if !values.events.is_empty() {
            let mut insert = QueryBuilder::<Postgres>::new(
                "INSERT INTO events (account_id, sequence_number, transaction_id, event_type, payload, recorded_at_ms) ",
            );
            insert.push_values(&values.events, |mut row, event| {
                row.push_bind(event.account_id.as_str())
                    .push_unseparated("::uuid")
                    .push_bind(event.sequence_number)
                    .push_bind(event.transaction_id.as_str())
                    .push_unseparated("::uuid")
                    .push_bind(event.event_type)
                    .push_bind(event.payload.as_str())
                    .push_unseparated("::jsonb")
                    .push_bind(event.recorded_at_ms);
            });
            insert
                .build()
                .execute(&mut *transaction)
                .await
                .map_err(before)?;
        }
        if !values.transactions.is_empty() {
            let mut insert = QueryBuilder::<Postgres>::new(
                "INSERT INTO applied_transactions (account_id, transaction_id, fingerprint) ",
            );
            insert.push_values(&values.transactions, |mut row, record| {
                row.push_bind(record.account_id.as_str())
                    .push_unseparated("::uuid")
                    .push_bind(record.transaction_id.as_str())
                    .push_unseparated("::uuid")
                    .push_bind(record.fingerprint.as_str());
            });
            insert
                .build()
                .execute(&mut *transaction)
                .await
                .map_err(before)?;
        }
        if !values.snapshots.is_empty() {
            let mut insert = QueryBuilder::<Postgres>::new(
                "INSERT INTO snapshots (account_id, sequence_number, state) ",
            );
            insert.push_values(&values.snapshots, |mut row, snapshot| {
                row.push_bind(snapshot.account_id.as_str())
                    .push_unseparated("::uuid")
                    .push_bind(snapshot.sequence_number)
                    .push_bind(snapshot.state.as_str())
                    .push_unseparated("::jsonb");
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
