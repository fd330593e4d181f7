//! The PostgreSQL store. Ids are `uuid`, payloads `jsonb` (readable by
//! operators with the usual JSON operators); values are bound as text (or
//! text arrays) and cast in SQL, so the crate needs no extra sqlx type
//! features. An append is one statement: one round trip, its own commit.

use async_trait::async_trait;
use sqlx::Postgres;
use sqlx::error::DatabaseError;
use sqlx::migrate::Migrator;
use sqlx::postgres::{PgConnectOptions, PgPool};

use super::sql;
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
pub(super) fn is_conflict(error: &dyn DatabaseError) -> bool {
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

/// The whole append in one statement, so one round trip and its own
/// transaction (autocommit): the events, idempotency records and snapshots,
/// each inserted only if every account's stored head is where the commit
/// expects it (the gap check). Data-modifying CTEs all run, see the same
/// snapshot, and commit or fail together. A concurrent writer of the same
/// next number collides on the primary key (23505) instead; a committed head
/// never moves backwards. Returns whether the heads fitted.
const APPEND: &str = "
WITH fits AS (
    SELECT COALESCE(bool_and(
        COALESCE((SELECT MAX(e.sequence_number) FROM events e
                  WHERE e.account_id = h.account_id), 0) = h.head), true) AS ok
    FROM unnest($7::uuid[], $8::bigint[]) AS h(account_id, head)
),
new_events AS (
    INSERT INTO events
        (account_id, sequence_number, transaction_id, event_type, payload, recorded_at_ms)
    SELECT * FROM unnest($1::uuid[], $2::bigint[], $3::uuid[], $4::text[], $5::jsonb[], $6::bigint[])
    WHERE (SELECT ok FROM fits)
    RETURNING 1
),
new_transactions AS (
    INSERT INTO applied_transactions (account_id, transaction_id, fingerprint)
    SELECT * FROM unnest($9::uuid[], $10::uuid[], $11::text[])
    WHERE (SELECT ok FROM fits)
    RETURNING 1
),
new_snapshots AS (
    INSERT INTO snapshots (account_id, sequence_number, state)
    SELECT * FROM unnest($12::uuid[], $13::bigint[], $14::jsonb[])
    WHERE (SELECT ok FROM fits)
    RETURNING 1
)
SELECT ok FROM fits";

static MIGRATOR: Migrator = sqlx::migrate!("./migrations/postgres");

impl PostgresStore {
    pub async fn open(url: &str, options: &StoreOptions) -> Result<PostgresStore, OpenError> {
        let connect = sql::connect_options::<PgConnectOptions>(url)?;
        let pool = sql::open_pool::<Postgres>(url, connect, options, &MIGRATOR).await?;
        Ok(PostgresStore { pool })
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }
}

/// One column of rows, bound as an array for `unnest`.
fn column<'a, Row, Value>(rows: &'a [Row], value: impl Fn(&'a Row) -> Value) -> Vec<Value> {
    rows.iter().map(value).collect()
}

#[async_trait]
impl EventStore for PostgresStore {
    async fn load(
        &self,
        account: AccountId,
        transaction: Option<TransactionId>,
    ) -> Result<Loaded, StoreError> {
        let query = sqlx::query_as(LOAD)
            .bind(account.to_string())
            .bind(transaction.map(|id| id.to_string()));
        sql::load(&self.pool, account, query).await
    }

    async fn events(
        &self,
        account: AccountId,
        from: u64,
        limit: usize,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        sql::events(&self.pool, EVENTS, account, from, limit).await
    }

    async fn append(&self, commit: &Commit) -> Result<(), AppendError> {
        let Some(values) = sql::commit_values(commit)? else {
            return Ok(());
        };
        // Nothing is sent before the connection is ours: failing here is
        // an outage, never an unknown outcome.
        let mut connection = self
            .pool
            .acquire()
            .await
            .map_err(|error| AppendError::Store(sql::unavailable(error)))?;
        let (events, heads) = (&values.events, &values.heads);
        let (transactions, snapshots) = (&values.transactions, &values.snapshots);
        let fits: Option<bool> = sqlx::query_scalar(APPEND)
            .bind(column(events, |e| e.account_id.as_str()))
            .bind(column(events, |e| e.sequence_number))
            .bind(column(events, |e| e.transaction_id.as_str()))
            .bind(column(events, |e| e.event_type))
            .bind(column(events, |e| e.payload.as_str()))
            .bind(column(events, |e| e.recorded_at_ms))
            .bind(column(heads, |(account, _)| account.as_str()))
            .bind(column(heads, |(_, head)| *head))
            .bind(column(transactions, |t| t.account_id.as_str()))
            .bind(column(transactions, |t| t.transaction_id.as_str()))
            .bind(column(transactions, |t| t.fingerprint.as_str()))
            .bind(column(snapshots, |s| s.account_id.as_str()))
            .bind(column(snapshots, |s| s.sequence_number))
            .bind(column(snapshots, |s| s.state.as_str()))
            .fetch_one(&mut *connection)
            .await
            .map_err(|error| sql::at_commit(error, is_conflict))?;
        if fits == Some(true) {
            Ok(())
        } else {
            Err(AppendError::Conflict(
                "an account's stream does not end right before the commit".to_owned(),
            ))
        }
    }

    async fn ping(&self) -> Result<(), StoreError> {
        sql::ping(&self.pool).await
    }

    fn pool_status(&self) -> Option<PoolStatus> {
        Some(PoolStatus::of(&self.pool))
    }
}
