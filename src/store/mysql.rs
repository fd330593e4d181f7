//! The MySQL/MariaDB store. Ids are CHAR(36) ASCII with a binary collation,
//! payloads JSON — on MariaDB an alias of LONGTEXT that sqlx reports as a
//! blob, so every read casts it to text.

use async_trait::async_trait;
use sqlx::error::DatabaseError;
use sqlx::migrate::Migrator;
use sqlx::mysql::{MySql, MySqlConnectOptions, MySqlDatabaseError, MySqlPool};

use super::sql;
use super::{
    AppendError, Commit, EventStore, Loaded, OpenError, PoolStatus, RecordedEvent, StoreError,
    StoreOptions,
};
use crate::domain::{AccountId, TransactionId};

pub struct MysqlStore {
    pool: MySqlPool,
}

/// By error number, not SQLSTATE class: 23000 also covers CHECK and NOT
/// NULL failures, which no retry cures. 1062 duplicate key (a sequence
/// number or transactionId taken), 1213 deadlock, 1205 lock wait timeout,
/// 1020 "record has changed since last read" (MariaDB's snapshot-isolation
/// write conflict).
pub(super) fn is_conflict(error: &dyn DatabaseError) -> bool {
    error
        .try_downcast_ref::<MySqlDatabaseError>()
        .is_some_and(|error| matches!(error.number(), 1062 | 1213 | 1205 | 1020))
}

const LOAD: &str = "
WITH snapshot AS (
    SELECT sequence_number, state FROM snapshots
    WHERE account_id = ?
    ORDER BY sequence_number DESC LIMIT 1
)
SELECT 's' AS kind, sequence_number, CAST(NULL AS CHAR) AS transaction_id,
       CAST(state AS CHAR) AS payload, CAST(NULL AS SIGNED) AS recorded_at_ms
FROM snapshot
UNION ALL
SELECT 'e', sequence_number, CAST(transaction_id AS CHAR), CAST(payload AS CHAR), recorded_at_ms
FROM events
WHERE account_id = ?
  AND sequence_number > COALESCE((SELECT sequence_number FROM snapshot), 0)
UNION ALL
SELECT 't', NULL, CAST(transaction_id AS CHAR), CAST(fingerprint AS CHAR), NULL
FROM applied_transactions
WHERE account_id = ? AND transaction_id = ?";

const EVENTS: &str = "
SELECT sequence_number, CAST(transaction_id AS CHAR) AS transaction_id,
       CAST(payload AS CHAR) AS payload, recorded_at_ms
FROM events
WHERE account_id = ? AND sequence_number >= ?
ORDER BY sequence_number
LIMIT ?";

static MIGRATOR: Migrator = sqlx::migrate!("./migrations/mysql");

impl MysqlStore {
    pub async fn open(url: &str, options: &StoreOptions) -> Result<MysqlStore, OpenError> {
        let connect = sql::connect_options::<MySqlConnectOptions>(url)?;
        let pool = sql::open_pool::<MySql>(url, connect, options, &MIGRATOR).await?;
        Ok(MysqlStore { pool })
    }

    pub fn pool(&self) -> &MySqlPool {
        &self.pool
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
        let query = sqlx::query_as(LOAD)
            .bind(&account_text)
            .bind(&account_text)
            .bind(&account_text)
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
        // The gap check's plain read is InnoDB's consistent read, taken at
        // the transaction's first statement, so it sees every committed
        // head; a concurrent writer of the same next number collides with
        // us on the primary key (1062) instead, and a committed head never
        // moves backwards.
        let transaction = self
            .pool
            .begin()
            .await
            .map_err(|error| sql::before_commit(error, is_conflict))?;
        sql::append_in_transaction(transaction, &values, is_conflict).await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        sql::ping(&self.pool).await
    }

    fn pool_status(&self) -> Option<PoolStatus> {
        Some(PoolStatus::of(&self.pool))
    }
}
