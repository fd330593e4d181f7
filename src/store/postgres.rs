//! The PostgreSQL store. Ids are `uuid`, payloads `jsonb` (readable by
//! operators with the usual JSON operators). Values travel in their native
//! binary forms — `uuid`, `bigint`, `jsonb` and arrays of them — so the
//! server parses no text and casts nothing, and events decode straight from
//! the `jsonb` bytes. Every statement is a named prepared statement that
//! sqlx keeps per connection, parsed and planned once.
//!
//! A batch is one statement in its own transaction (autocommit): one round
//! trip and one WAL flush for all its members. The statement checks that
//! every account's stored head is where the batch expects it, takes the feed
//! positions from the one-row `event_positions` counter and inserts the
//! rows; the counter's row lock is held from there to the end of COMMIT.
//! PostgreSQL makes a transaction visible before it releases its locks, so
//! the next writer gets its range only once every lower position is
//! visible: a reader can never be shown a position above one that commits
//! later.

use async_trait::async_trait;
use sqlx::error::DatabaseError;
use sqlx::migrate::Migrator;
use sqlx::postgres::{PgConnectOptions, PgPool, PgRow};
use sqlx::types::Json;
use sqlx::{Postgres, Row};
use uuid::Uuid;

use super::sql::{self, Attempt, BatchWriter, SqlDialect, Stored, Use};
use super::{
    AppendError, Commit, EventStore, FeedEvent, Head, Loaded, OpenError, PointInTime, PoolStatus,
    RecordedEvent, Snapshot, StoreError, StoreOptions, TransactionRecord,
};
use crate::domain::{Account, AccountId, Event, Fingerprint, Timestamp, TransactionId};

pub struct PostgresStore {
    pooled: sql::Pooled<Postgres>,
}

impl SqlDialect for Postgres {
    /// Unique violation (a sequence number or transactionId taken),
    /// serialization failure, deadlock.
    fn is_conflict(error: &dyn DatabaseError) -> bool {
        matches!(error.code().as_deref(), Some("23505" | "40001" | "40P01"))
    }
}

/// The latest snapshot, the events after it and the record of the
/// transactionId, in one round trip. `kind` is a one-byte `"char"`.
const LOAD: &str = r#"
WITH snapshot AS (
    SELECT sequence_number, state, recorded_until_ms FROM snapshots
    WHERE account_id = $1
    ORDER BY sequence_number DESC LIMIT 1
)
SELECT 's'::"char" AS kind, sequence_number, NULL::uuid AS transaction_id,
       state AS payload, recorded_until_ms AS recorded_at_ms, NULL::text AS fingerprint
FROM snapshot
UNION ALL
SELECT 'e', sequence_number, transaction_id, payload, recorded_at_ms, NULL
FROM events
WHERE account_id = $1
  AND sequence_number > COALESCE((SELECT sequence_number FROM snapshot), 0)
UNION ALL
SELECT 't', NULL, transaction_id, NULL, NULL, fingerprint
FROM applied_transactions
WHERE account_id = $1 AND transaction_id = $2"#;

/// [`LOAD`] for several (account, transactionId) pairs ($1, $2; a NULL
/// transactionId asks for no record) in one statement, each row tagged with
/// its pair's place in the arrays (`n`, from 1). One statement: one round
/// trip and one snapshot of the database for the whole batch.
const LOAD_MANY: &str = r#"
SELECT r.n, k.*
FROM unnest($1::uuid[], $2::uuid[]) WITH ORDINALITY AS r(account_id, transaction_id, n)
CROSS JOIN LATERAL (
    WITH snapshot AS (
        SELECT s.sequence_number, s.state, s.recorded_until_ms FROM snapshots s
        WHERE s.account_id = r.account_id
        ORDER BY s.sequence_number DESC LIMIT 1
    )
    SELECT 's'::"char" AS kind, sequence_number, NULL::uuid AS transaction_id,
           state AS payload, recorded_until_ms AS recorded_at_ms, NULL::text AS fingerprint
    FROM snapshot
    UNION ALL
    SELECT 'e', e.sequence_number, e.transaction_id, e.payload, e.recorded_at_ms, NULL
    FROM events e
    WHERE e.account_id = r.account_id
      AND e.sequence_number > COALESCE((SELECT sequence_number FROM snapshot), 0)
    UNION ALL
    SELECT 't', NULL, a.transaction_id, NULL, NULL, a.fingerprint
    FROM applied_transactions a
    WHERE a.account_id = r.account_id AND a.transaction_id = r.transaction_id
) k"#;

/// The latest snapshot at or before version $2 and the events after it up
/// to the version.
const LOAD_AT_VERSION: &str = r#"
WITH snapshot AS (
    SELECT sequence_number, state, recorded_until_ms FROM snapshots
    WHERE account_id = $1 AND sequence_number <= $2
    ORDER BY sequence_number DESC LIMIT 1
)
SELECT 's'::"char" AS kind, sequence_number, NULL::uuid AS transaction_id,
       state AS payload, recorded_until_ms AS recorded_at_ms, NULL::text AS fingerprint
FROM snapshot
UNION ALL
SELECT 'e', sequence_number, transaction_id, payload, recorded_at_ms, NULL
FROM events
WHERE account_id = $1
  AND sequence_number > COALESCE((SELECT sequence_number FROM snapshot), 0)
  AND sequence_number <= $2"#;

/// The latest snapshot whose `recorded_until` is known and at or before
/// time $2, then the events after it up to the first one recorded after the
/// time (an index scan that stops at that event).
const LOAD_AT_TIME: &str = r#"
WITH snapshot AS (
    SELECT sequence_number, state, recorded_until_ms FROM snapshots
    WHERE account_id = $1 AND recorded_until_ms <= $2
    ORDER BY sequence_number DESC LIMIT 1
),
start AS (
    SELECT COALESCE((SELECT sequence_number FROM snapshot), 0) AS after_sequence
),
stop AS (
    SELECT COALESCE((
        SELECT sequence_number FROM events
        WHERE account_id = $1 AND sequence_number > (SELECT after_sequence FROM start)
          AND recorded_at_ms > $2
        ORDER BY sequence_number LIMIT 1), 9223372036854775807) AS at_sequence
)
SELECT 's'::"char" AS kind, sequence_number, NULL::uuid AS transaction_id,
       state AS payload, recorded_until_ms AS recorded_at_ms, NULL::text AS fingerprint
FROM snapshot
UNION ALL
SELECT 'e', sequence_number, transaction_id, payload, recorded_at_ms, NULL
FROM events
WHERE account_id = $1
  AND sequence_number > (SELECT after_sequence FROM start)
  AND sequence_number < (SELECT at_sequence FROM stop)"#;

const EVENTS: &str = "
SELECT sequence_number, transaction_id, payload, recorded_at_ms
FROM events
WHERE account_id = $1 AND sequence_number >= $2
ORDER BY sequence_number
LIMIT $3";

const FEED: &str = "
SELECT position, account_id, sequence_number, transaction_id, payload, recorded_at_ms
FROM events
WHERE position > $1
ORDER BY position
LIMIT $2";

/// What the store holds for a batch: each account's head ($1), and which of
/// the (account, transactionId) pairs ($2, $3) are recorded.
const STORED: &str = r#"
SELECT h.account_id,
       (SELECT MAX(e.sequence_number) FROM events e WHERE e.account_id = h.account_id) AS head,
       NULL::uuid AS transaction_id
FROM unnest($1::uuid[]) AS h(account_id)
UNION ALL
SELECT r.account_id, NULL, r.transaction_id
FROM unnest($2::uuid[], $3::uuid[]) AS r(account_id, transaction_id)
WHERE EXISTS (SELECT 1 FROM applied_transactions a
              WHERE a.account_id = r.account_id AND a.transaction_id = r.transaction_id)"#;

/// A batch's rows in one statement, so one round trip and its own
/// transaction (autocommit): written only if every account's stored head is
/// where the batch expects it (`fits`, the gap check; a concurrent writer of
/// the same next number collides on the primary key instead, 23505).
/// `counter` runs only then: it takes the feed positions, and every INSERT
/// reads it, so the row lock comes before any row is written — writers
/// never wait on each other's uncommitted rows while holding it. Returns the
/// position before the batch's first event; no row when the heads did not
/// fit.
const WRITE: &str = "
WITH fits AS (
    SELECT COALESCE(bool_and(
        COALESCE((SELECT MAX(e.sequence_number) FROM events e
                  WHERE e.account_id = h.account_id), 0) = h.head), true) AS ok
    FROM unnest($1::uuid[], $2::bigint[]) AS h(account_id, head)
),
counter AS (
    UPDATE event_positions SET last = last + cardinality($3::uuid[])
    WHERE id = 1 AND (SELECT ok FROM fits)
    RETURNING last - cardinality($3::uuid[]) AS base
),
new_events AS (
    INSERT INTO events (position, account_id, sequence_number, transaction_id,
                        event_type, payload, recorded_at_ms)
    SELECT counter.base + e.n, e.account_id, e.sequence_number, e.transaction_id,
           e.event_type, e.payload, e.recorded_at_ms
    FROM counter,
         unnest($3::uuid[], $4::bigint[], $5::uuid[], $6::text[], $7::jsonb[], $8::bigint[])
             WITH ORDINALITY
             AS e(account_id, sequence_number, transaction_id, event_type, payload,
                  recorded_at_ms, n)
),
new_transactions AS (
    INSERT INTO applied_transactions (account_id, transaction_id, fingerprint)
    SELECT t.* FROM counter, unnest($9::uuid[], $10::uuid[], $11::text[]) AS t
),
new_snapshots AS (
    INSERT INTO snapshots (account_id, sequence_number, state, recorded_until_ms)
    SELECT s.* FROM counter, unnest($12::uuid[], $13::bigint[], $14::jsonb[], $15::bigint[]) AS s
)
SELECT base FROM counter";

/// One integer, non-zero when this session cannot write: the server is a
/// standby or in recovery, or the session is read-only (e.g.
/// `default_transaction_read_only`).
const READ_ONLY: &str = "SELECT CASE WHEN pg_is_in_recovery() \
    OR current_setting('transaction_read_only') = 'on' THEN 1::int8 ELSE 0::int8 END";

static MIGRATOR: Migrator = sqlx::migrate!("./migrations/postgres");

impl PostgresStore {
    pub async fn open(url: &str, options: &StoreOptions) -> Result<PostgresStore, OpenError> {
        // No server default may cancel a statement: PostgreSQL answers a
        // COMMIT whose wait for the synchronous standby was cancelled
        // (statement_timeout included) with success and a WARNING, although
        // the standby may not have it. A client setting outranks the
        // database's and the role's defaults.
        let connect =
            sql::connect_options::<PgConnectOptions>(url)?.options([("statement_timeout", "0")]);
        let pool = sql::open_pool(
            url,
            connect,
            sql::pool_options::<Postgres>(options),
            options,
            &MIGRATOR,
        )
        .await?;
        Ok(PostgresStore {
            pooled: sql::Pooled::new(pool),
        })
    }

    pub fn pool(&self) -> &PgPool {
        self.pooled.pool()
    }

    /// Runs the load query `build` makes and assembles its rows.
    async fn query_loaded<'q>(
        &self,
        account: AccountId,
        build: impl Fn() -> sqlx::query::Query<'q, Postgres, sqlx::postgres::PgArguments>,
    ) -> Result<Loaded, StoreError> {
        let rows = self
            .pooled
            .read(|mut connection| {
                let query = build();
                async move { query.fetch_all(&mut *connection).await }
            })
            .await
            .map_err(sql::read_error)?;
        let mut loaded = Loaded::default();
        for row in &rows {
            add_load_row(&mut loaded, account, row)?;
        }
        loaded.events.sort_by_key(|event| event.sequence_number);
        Ok(loaded)
    }

    /// Writes `members` in one statement, if every head in `heads` holds.
    /// `Ok(false)`: a head did not, nothing written. A server that refuses
    /// to write wrote nothing; its connections are gone from the pool
    /// then, and the statement is sent once more on a new one, which may
    /// reach the new primary after a failover.
    async fn write_statement(
        &self,
        members: &[&Commit],
        heads: &[Head],
    ) -> Result<bool, AppendError> {
        let columns = Columns::of(members, heads)?;
        let written = match self.send_write(&columns).await? {
            Err(error) if sql::not_writable(&error) => {
                tracing::warn!(%error, "the database refuses writes; once more on a new connection");
                self.send_write(&columns).await?
            }
            written => written,
        };
        written
            .map(|base| base.is_some())
            .map_err(sql::at_commit::<Postgres>)
    }

    /// Sends the write statement on a pooled connection. The outer error:
    /// no connection, nothing sent — an outage, never an unknown outcome.
    async fn send_write(
        &self,
        columns: &Columns<'_>,
    ) -> Result<Result<Option<i64>, sqlx::Error>, AppendError> {
        let mut connection = self
            .pooled
            .acquire(Use::Write)
            .await
            .map_err(sql::before_commit::<Postgres>)?;
        let written = sqlx::query_scalar(WRITE)
            .bind(&columns.head_accounts)
            .bind(&columns.heads)
            .bind(&columns.event_accounts)
            .bind(&columns.sequences)
            .bind(&columns.event_transactions)
            .bind(&columns.event_types)
            .bind(&columns.payloads)
            .bind(&columns.recorded_at_ms)
            .bind(&columns.record_accounts)
            .bind(&columns.record_transactions)
            .bind(&columns.fingerprints)
            .bind(&columns.snapshot_accounts)
            .bind(&columns.snapshot_sequences)
            .bind(&columns.states)
            .bind(&columns.recorded_until_ms)
            .fetch_optional(&mut *connection)
            .await;
        if let Err(error) = &written {
            self.pooled.discard_if_not_writable(&mut connection, error);
        }
        Ok(written)
    }

    async fn read_stored(&self, members: &[&Commit]) -> Result<Stored, AppendError> {
        let mut accounts: Vec<Uuid> = members
            .iter()
            .flat_map(|member| member.events.iter().map(|e| *e.account_id.as_uuid()))
            .collect();
        accounts.sort_unstable();
        accounts.dedup();
        let records = members.iter().flat_map(|member| &member.transactions);
        let (record_accounts, record_transactions): (Vec<Uuid>, Vec<Uuid>) = records
            .map(|r| (*r.account_id.as_uuid(), *r.transaction_id.as_uuid()))
            .unzip();
        let (accounts, record_accounts, record_transactions) =
            (&accounts, &record_accounts, &record_transactions);
        // A read like any other, written nothing yet: a dead connection is
        // read past.
        let rows: Vec<(Uuid, Option<i64>, Option<Uuid>)> = self
            .pooled
            .read(|mut connection| async move {
                sqlx::query_as(STORED)
                    .bind(accounts)
                    .bind(record_accounts)
                    .bind(record_transactions)
                    .fetch_all(&mut *connection)
                    .await
            })
            .await
            .map_err(sql::before_commit::<Postgres>)?;
        let mut stored = Stored::default();
        for (account, head, transaction) in rows {
            let account = AccountId::from_uuid(account);
            stored.add(account, head, transaction.map(TransactionId::from_uuid))?;
        }
        Ok(stored)
    }

    /// Reads what the store holds, writes the members that fit in one
    /// statement, and asks for a split when a concurrent writer got in the
    /// way in between.
    async fn write_checked(&self, members: &[&Commit]) -> Attempt {
        let answers = match self.read_stored(members).await {
            Ok(stored) => stored.check(members),
            Err(error) => return Attempt::Answered(vec![Err(error); members.len()]),
        };
        let passing = sql::passing(members, &answers);
        if passing.is_empty() {
            return Attempt::Answered(answers);
        }
        // The members that fit agree with each other by construction.
        let Some(heads) = sql::first_heads(&passing) else {
            return Attempt::Split(moved_between());
        };
        match self.write_statement(&passing, &heads).await {
            Ok(true) => Attempt::Answered(answers),
            Ok(false) => Attempt::Split(moved_between()),
            Err(conflict @ AppendError::Conflict(_)) => Attempt::Split(conflict),
            Err(other) => Attempt::Answered(sql::failed(answers, &other)),
        }
    }
}

fn moved_between() -> AppendError {
    AppendError::Conflict("an account's stream does not end right before the commit".to_owned())
}

impl BatchWriter for PostgresStore {
    /// Optimistic first: members that agree with each other are written in
    /// one statement without reading anything, which is the whole cost of a
    /// batch that fits. Only when that statement refuses (a head moved, a
    /// transactionId taken) are the stored heads and records read to decide
    /// member by member.
    async fn write(&self, members: &[&Commit]) -> Attempt {
        if let Some(heads) = sql::first_heads(members) {
            match self.write_statement(members, &heads).await {
                Ok(true) => return Attempt::Answered(vec![Ok(()); members.len()]),
                Ok(false) if members.len() == 1 => return Attempt::Split(moved_between()),
                Err(conflict @ AppendError::Conflict(_)) if members.len() == 1 => {
                    return Attempt::Split(conflict);
                }
                Ok(false) | Err(AppendError::Conflict(_)) => {}
                Err(other) => return Attempt::Answered(vec![Err(other); members.len()]),
            }
        }
        self.write_checked(members).await
    }
}

/// The batch as one array per column, for `unnest`.
#[derive(Default)]
struct Columns<'a> {
    head_accounts: Vec<Uuid>,
    heads: Vec<i64>,
    event_accounts: Vec<Uuid>,
    sequences: Vec<i64>,
    event_transactions: Vec<Uuid>,
    event_types: Vec<&'static str>,
    payloads: Vec<Json<&'a Event>>,
    recorded_at_ms: Vec<i64>,
    record_accounts: Vec<Uuid>,
    record_transactions: Vec<Uuid>,
    fingerprints: Vec<&'a str>,
    snapshot_accounts: Vec<Uuid>,
    snapshot_sequences: Vec<i64>,
    states: Vec<Json<&'a Account>>,
    recorded_until_ms: Vec<Option<i64>>,
}

impl<'a> Columns<'a> {
    fn of(members: &[&'a Commit], heads: &[Head]) -> Result<Columns<'a>, AppendError> {
        let mut columns = Columns::default();
        for head in heads {
            columns.head_accounts.push(*head.account_id.as_uuid());
            columns
                .heads
                .push(sql::sequence_to_sql(head.sequence_number)?);
        }
        for member in members {
            for event in &member.events {
                columns.event_accounts.push(*event.account_id.as_uuid());
                columns
                    .sequences
                    .push(sql::sequence_to_sql(event.sequence_number)?);
                columns
                    .event_transactions
                    .push(*event.transaction_id.as_uuid());
                columns.event_types.push(event.event.type_name());
                columns.payloads.push(Json(&event.event));
                columns.recorded_at_ms.push(event.recorded_at.unix_millis());
            }
            for record in &member.transactions {
                columns.record_accounts.push(*record.account_id.as_uuid());
                columns
                    .record_transactions
                    .push(*record.transaction_id.as_uuid());
                columns.fingerprints.push(record.fingerprint.0.as_str());
            }
            for snapshot in &member.snapshots {
                columns
                    .snapshot_accounts
                    .push(*snapshot.account_id.as_uuid());
                columns
                    .snapshot_sequences
                    .push(sql::sequence_to_sql(snapshot.sequence_number)?);
                columns.states.push(Json(&snapshot.state));
                columns
                    .recorded_until_ms
                    .push(snapshot.recorded_until.map(Timestamp::unix_millis));
            }
        }
        Ok(columns)
    }
}

fn corrupt(what: String) -> impl FnOnce(sqlx::Error) -> StoreError {
    move |error| StoreError::Corrupt(format!("{what}: {error}"))
}

fn sequence(row: &PgRow) -> Result<u64, StoreError> {
    let sequence: i64 = row.try_get("sequence_number").map_err(sql::read_error)?;
    u64::try_from(sequence)
        .map_err(|_| StoreError::Corrupt(format!("negative sequence number {sequence}")))
}

/// One row of a load query, by its kind.
fn add_load_row(loaded: &mut Loaded, account: AccountId, row: &PgRow) -> Result<(), StoreError> {
    let kind: i8 = row.try_get("kind").map_err(sql::read_error)?;
    match kind as u8 {
        b's' => {
            let Json(state): Json<Account> = row
                .try_get("payload")
                .map_err(corrupt(format!("snapshot of account {account}")))?;
            let recorded_until: Option<i64> =
                row.try_get("recorded_at_ms").map_err(sql::read_error)?;
            loaded.snapshot = Some(Snapshot {
                account_id: account,
                sequence_number: sequence(row)?,
                state,
                recorded_until: recorded_until.map(Timestamp::from_unix_millis),
            });
        }
        b'e' => loaded.events.push(event_of(account, row)?),
        b't' => {
            let transaction: Uuid = row.try_get("transaction_id").map_err(sql::read_error)?;
            let fingerprint: String = row.try_get("fingerprint").map_err(sql::read_error)?;
            loaded.transaction = Some(TransactionRecord {
                account_id: account,
                transaction_id: TransactionId::from_uuid(transaction),
                fingerprint: Fingerprint(fingerprint),
            });
        }
        other => return Err(StoreError::Corrupt(format!("unknown row kind {other}"))),
    }
    Ok(())
}

/// An event row: `sequence_number`, `transaction_id`, `payload` (decoded
/// from the `jsonb` bytes) and `recorded_at_ms`.
fn event_of(account: AccountId, row: &PgRow) -> Result<RecordedEvent, StoreError> {
    let sequence_number = sequence(row)?;
    let Json(event): Json<Event> = row.try_get("payload").map_err(corrupt(format!(
        "event {sequence_number} of account {account}"
    )))?;
    let transaction: Uuid = row.try_get("transaction_id").map_err(sql::read_error)?;
    let recorded_at_ms: i64 = row.try_get("recorded_at_ms").map_err(sql::read_error)?;
    Ok(RecordedEvent {
        account_id: account,
        sequence_number,
        transaction_id: TransactionId::from_uuid(transaction),
        event,
        recorded_at: Timestamp::from_unix_millis(recorded_at_ms),
    })
}

#[async_trait]
impl EventStore for PostgresStore {
    async fn load(
        &self,
        account: AccountId,
        transaction: Option<TransactionId>,
    ) -> Result<Loaded, StoreError> {
        self.query_loaded(account, || {
            sqlx::query(LOAD)
                .bind(*account.as_uuid())
                .bind(transaction.map(|id| *id.as_uuid()))
        })
        .await
    }

    async fn load_many(
        &self,
        requests: &[(AccountId, Option<TransactionId>)],
    ) -> Result<Vec<Loaded>, StoreError> {
        let (unique, place) = sql::distinct_requests(requests);
        let (accounts, transactions): (Vec<Uuid>, Vec<Option<Uuid>>) = unique
            .iter()
            .map(|(account, transaction)| (*account.as_uuid(), transaction.map(|t| *t.as_uuid())))
            .unzip();
        let (accounts_bound, transactions_bound) = (&accounts, &transactions);
        let rows = self
            .pooled
            .read(|mut connection| async move {
                sqlx::query(LOAD_MANY)
                    .bind(accounts_bound)
                    .bind(transactions_bound)
                    .fetch_all(&mut *connection)
                    .await
            })
            .await
            .map_err(sql::read_error)?;
        let mut loaded = vec![Loaded::default(); unique.len()];
        for row in &rows {
            let n: i64 = row.try_get("n").map_err(sql::read_error)?;
            let index = usize::try_from(n - 1)
                .ok()
                .filter(|&index| index < unique.len())
                .ok_or_else(|| StoreError::Corrupt(format!("load row of request {n}")))?;
            add_load_row(&mut loaded[index], unique[index].0, row)?;
        }
        for account in &mut loaded {
            account.events.sort_by_key(|event| event.sequence_number);
        }
        Ok(place
            .into_iter()
            .map(|index| loaded[index].clone())
            .collect())
    }

    fn loads_in_batches(&self) -> bool {
        true
    }

    async fn load_at(&self, account: AccountId, at: PointInTime) -> Result<Loaded, StoreError> {
        let (query, bound) = match at {
            PointInTime::Version(version) => (LOAD_AT_VERSION, sql::bigint(version)),
            PointInTime::Time(time) => (LOAD_AT_TIME, time.unix_millis()),
        };
        self.query_loaded(account, || {
            sqlx::query(query).bind(*account.as_uuid()).bind(bound)
        })
        .await
    }

    async fn events(
        &self,
        account: AccountId,
        from: u64,
        limit: usize,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        let rows = self
            .pooled
            .read(|mut connection| async move {
                sqlx::query(EVENTS)
                    .bind(*account.as_uuid())
                    .bind(sql::bigint(from))
                    .bind(sql::bigint(limit))
                    .fetch_all(&mut *connection)
                    .await
            })
            .await
            .map_err(sql::read_error)?;
        rows.iter().map(|row| event_of(account, row)).collect()
    }

    async fn feed(&self, after: u64, limit: usize) -> Result<Vec<FeedEvent>, StoreError> {
        let rows = self
            .pooled
            .read(|mut connection| async move {
                sqlx::query(FEED)
                    .bind(sql::bigint(after))
                    .bind(sql::bigint(limit))
                    .fetch_all(&mut *connection)
                    .await
            })
            .await
            .map_err(sql::read_error)?;
        rows.iter()
            .map(|row| {
                let position: i64 = row.try_get("position").map_err(sql::read_error)?;
                let account: Uuid = row.try_get("account_id").map_err(sql::read_error)?;
                Ok(FeedEvent {
                    position: u64::try_from(position).map_err(|_| {
                        StoreError::Corrupt(format!("negative position {position}"))
                    })?,
                    event: event_of(AccountId::from_uuid(account), row)?,
                })
            })
            .collect()
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
