//! What the three SQL stores share: opening the pool, the checks a commit
//! must pass before it is sent, turning rows into events and back, the
//! queries whose SQL every dialect writes alike, and the mapping of sqlx
//! errors onto the store contract's errors.
//!
//! Each database module keeps its own SQL where placeholders, casts and
//! types differ, and its own idea of a conflict; everything here is generic
//! over the sqlx `Database`, so one piece of code serves all three.

use std::collections::HashMap;
use std::time::Duration;

use sqlx::error::DatabaseError;
use sqlx::migrate::{Migrate, Migrator};
use sqlx::pool::PoolOptions;
use sqlx::query_builder::Separated;
use sqlx::{
    ConnectOptions, Database, Encode, Executor, FromRow, IntoArguments, Pool, QueryBuilder,
    Transaction, Type,
};

use super::{
    AppendError, Commit, Head, Loaded, OpenError, RecordedEvent, Snapshot, StoreError,
    StoreOptions, TransactionRecord,
};
use crate::domain::{AccountId, Event, Fingerprint, Timestamp, TransactionId};

/// The row kinds of the one-round-trip load query (a UNION ALL of the latest
/// snapshot, the events after it and the transaction record).
pub(super) const KIND_SNAPSHOT: &str = "s";
pub(super) const KIND_EVENT: &str = "e";
pub(super) const KIND_TRANSACTION: &str = "t";

/// One row of the load query, decoded into plain values by column name;
/// its meaning depends on `kind`.
#[derive(FromRow)]
pub(super) struct LoadRow {
    pub kind: String,
    pub sequence_number: Option<i64>,
    pub transaction_id: Option<String>,
    /// Event JSON, snapshot state JSON, or the fingerprint.
    pub payload: Option<String>,
    pub recorded_at_ms: Option<i64>,
}

/// One row of the events table.
#[derive(FromRow)]
pub(super) struct EventRow {
    pub sequence_number: i64,
    pub transaction_id: String,
    pub payload: String,
    pub recorded_at_ms: i64,
}

/// An event ready to be bound into an INSERT.
pub(super) struct EventValues {
    pub account_id: String,
    pub sequence_number: i64,
    pub transaction_id: String,
    pub event_type: &'static str,
    pub payload: String,
    pub recorded_at_ms: i64,
}

pub(super) struct SnapshotValues {
    pub account_id: String,
    pub sequence_number: i64,
    pub state: String,
}

pub(super) struct TransactionValues {
    pub account_id: String,
    pub transaction_id: String,
    pub fingerprint: String,
}

/// A commit as the values the INSERTs bind, plus the sequence number each
/// account's stream must currently end at.
pub(super) struct CommitValues {
    /// (account, last stored sequence number it must have), in canonical
    /// account order.
    pub heads: Vec<(String, i64)>,
    pub events: Vec<EventValues>,
    pub transactions: Vec<TransactionValues>,
    pub snapshots: Vec<SnapshotValues>,
}

pub(super) fn sequence_to_sql(sequence: u64) -> Result<i64, AppendError> {
    i64::try_from(sequence)
        .map_err(|_| AppendError::Conflict(format!("sequence number {sequence} is out of range")))
}

fn sequence_from_sql(sequence: i64) -> Result<u64, StoreError> {
    u64::try_from(sequence)
        .map_err(|_| StoreError::Corrupt(format!("negative sequence number {sequence}")))
}

/// Checks the commit's shape (the rules every store shares, see
/// [`Commit::check_shape`]) and turns it into bindable values. The database
/// then enforces the rest: the first event of each account at exactly its
/// head + 1, and no (account, sequence) or (account, transactionId) taken.
///
/// `None`: a valid commit with neither events nor idempotency records,
/// which writes nothing.
pub(super) fn commit_values(commit: &Commit) -> Result<Option<CommitValues>, AppendError> {
    let heads = commit
        .check_shape()?
        .into_iter()
        .map(|head| {
            Ok((
                head.account_id.to_string(),
                sequence_to_sql(head.sequence_number)?,
            ))
        })
        .collect::<Result<_, AppendError>>()?;
    let events = commit
        .events
        .iter()
        .map(|event| {
            Ok(EventValues {
                account_id: event.account_id.to_string(),
                sequence_number: sequence_to_sql(event.sequence_number)?,
                transaction_id: event.transaction_id.to_string(),
                // The same name as the payload's `type`, so an operator can
                // filter without parsing JSON.
                event_type: event.event.type_name(),
                payload: serde_json::to_string(&event.event).map_err(corrupt_json)?,
                recorded_at_ms: event.recorded_at.unix_millis(),
            })
        })
        .collect::<Result<Vec<_>, AppendError>>()?;
    let transactions: Vec<TransactionValues> = commit
        .transactions
        .iter()
        .map(|record| TransactionValues {
            account_id: record.account_id.to_string(),
            transaction_id: record.transaction_id.to_string(),
            fingerprint: record.fingerprint.0.clone(),
        })
        .collect();
    let snapshots = commit
        .snapshots
        .iter()
        .map(|snapshot| {
            Ok(SnapshotValues {
                account_id: snapshot.account_id.to_string(),
                sequence_number: sequence_to_sql(snapshot.sequence_number)?,
                state: serde_json::to_string(&snapshot.state).map_err(corrupt_json)?,
            })
        })
        .collect::<Result<Vec<_>, AppendError>>()?;
    if events.is_empty() && transactions.is_empty() {
        return Ok(None);
    }
    Ok(Some(CommitValues {
        heads,
        events,
        transactions,
        snapshots,
    }))
}

fn corrupt_json(error: serde_json::Error) -> AppendError {
    AppendError::Store(StoreError::Corrupt(format!("cannot encode JSON: {error}")))
}

fn parse_transaction(text: &str) -> Result<TransactionId, StoreError> {
    TransactionId::parse(text)
        .map_err(|_| StoreError::Corrupt(format!("bad transaction id {text:?}")))
}

pub(super) fn decode_event(account: AccountId, row: EventRow) -> Result<RecordedEvent, StoreError> {
    let event: Event = serde_json::from_str(&row.payload).map_err(|error| {
        StoreError::Corrupt(format!(
            "event {} of account {account}: {error}",
            row.sequence_number
        ))
    })?;
    Ok(RecordedEvent {
        account_id: account,
        sequence_number: sequence_from_sql(row.sequence_number)?,
        transaction_id: parse_transaction(&row.transaction_id)?,
        event,
        recorded_at: Timestamp::from_unix_millis(row.recorded_at_ms),
    })
}

fn missing(what: &str) -> StoreError {
    StoreError::Corrupt(format!("load query returned a row without its {what}"))
}

/// Assembles the rows of the load query; events come back in sequence order.
pub(super) fn assemble(account: AccountId, rows: Vec<LoadRow>) -> Result<Loaded, StoreError> {
    let mut loaded = Loaded::default();
    for row in rows {
        match row.kind.as_str() {
            KIND_SNAPSHOT => {
                let sequence = row.sequence_number.ok_or_else(|| missing("sequence"))?;
                let state = row.payload.ok_or_else(|| missing("state"))?;
                loaded.snapshot = Some(Snapshot {
                    account_id: account,
                    sequence_number: sequence_from_sql(sequence)?,
                    state: serde_json::from_str(&state).map_err(|error| {
                        StoreError::Corrupt(format!("snapshot of account {account}: {error}"))
                    })?,
                });
            }
            KIND_EVENT => loaded.events.push(decode_event(
                account,
                EventRow {
                    sequence_number: row.sequence_number.ok_or_else(|| missing("sequence"))?,
                    transaction_id: row.transaction_id.ok_or_else(|| missing("transaction"))?,
                    payload: row.payload.ok_or_else(|| missing("payload"))?,
                    recorded_at_ms: row.recorded_at_ms.ok_or_else(|| missing("time"))?,
                },
            )?),
            KIND_TRANSACTION => {
                let id = row.transaction_id.ok_or_else(|| missing("transaction"))?;
                loaded.transaction = Some(TransactionRecord {
                    account_id: account,
                    transaction_id: parse_transaction(&id)?,
                    fingerprint: Fingerprint(row.payload.ok_or_else(|| missing("fingerprint"))?),
                });
            }
            other => return Err(StoreError::Corrupt(format!("unknown row kind {other:?}"))),
        }
    }
    loaded.events.sort_by_key(|event| event.sequence_number);
    Ok(loaded)
}

/// Maps an error of a read (load, events, ping): nothing was written.
pub(super) fn read_error(error: sqlx::Error) -> StoreError {
    match error {
        sqlx::Error::ColumnDecode { .. }
        | sqlx::Error::Decode(_)
        | sqlx::Error::ColumnNotFound(_)
        | sqlx::Error::ColumnIndexOutOfBounds { .. } => StoreError::Corrupt(error.to_string()),
        other => unavailable(other),
    }
}

pub(super) fn unavailable(error: sqlx::Error) -> StoreError {
    match error {
        sqlx::Error::PoolTimedOut => {
            StoreError::Unavailable("no database connection available in time".to_owned())
        }
        other => StoreError::Unavailable(other.to_string()),
    }
}

/// The SQL databases the stores speak, each with its own idea of a conflict.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dialect {
    Postgres,
    Mysql,
    Sqlite,
}

/// Where in an append a database error arose: before COMMIT was sent
/// (nothing can have been written) or at the COMMIT itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WriteStage {
    BeforeCommit,
    AtCommit,
}

/// What an error of an append means for the store contract — exactly the
/// mapping the stores apply ([`before_commit`], [`at_commit`] with the
/// dialect's conflict codes). Public so that tests can feed it real errors
/// produced by real databases.
pub fn classify_write_error(
    dialect: Dialect,
    stage: WriteStage,
    error: sqlx::Error,
) -> AppendError {
    let is_conflict = match dialect {
        Dialect::Postgres => super::postgres::is_conflict,
        Dialect::Mysql => super::mysql::is_conflict,
        Dialect::Sqlite => super::sqlite::is_conflict,
    };
    match stage {
        WriteStage::BeforeCommit => before_commit(error, is_conflict),
        WriteStage::AtCommit => at_commit(error, is_conflict),
    }
}

/// Maps an error raised before COMMIT was sent: the transaction cannot have
/// landed (the server rolls it back when the connection drops), so anything
/// but a conflict means "nothing written, store unavailable".
pub(super) fn before_commit(
    error: sqlx::Error,
    is_conflict: fn(&dyn DatabaseError) -> bool,
) -> AppendError {
    match &error {
        sqlx::Error::Database(database) if is_conflict(database.as_ref()) => {
            AppendError::Conflict(database.message().to_owned())
        }
        sqlx::Error::Database(database) => {
            // Not a conflict and not the network: a constraint or statement
            // the schema should never refuse. Still nothing was written.
            tracing::error!(error = %database, "database refused an append");
            AppendError::Store(StoreError::Unavailable(format!(
                "database refused the write: {}",
                database.message()
            )))
        }
        _ => AppendError::Store(unavailable(error)),
    }
}

/// Maps an error of the COMMIT itself. A refusal the database reports as a
/// conflict rolled the transaction back; anything else — the reply lost,
/// the connection dropped, the server shut down mid-commit — leaves the
/// outcome unknown, and only reading the transactionId back can tell.
pub(super) fn at_commit(
    error: sqlx::Error,
    is_conflict: fn(&dyn DatabaseError) -> bool,
) -> AppendError {
    match &error {
        sqlx::Error::Database(database) if is_conflict(database.as_ref()) => {
            AppendError::Conflict(database.message().to_owned())
        }
        _ => AppendError::Ambiguous(error.to_string()),
    }
}

/// Waits until the database accepts a connection, retrying until
/// `connect_timeout` passes; the error is the last one seen (e.g.
/// "connection refused"), for a one-line start-up message. A direct
/// connection rather than the pool's, whose own retries hide the cause.
pub(super) async fn first_connection<C: sqlx::Connection>(
    options: &<C as sqlx::Connection>::Options,
    connect_timeout: Duration,
) -> Result<(), String> {
    let deadline = tokio::time::Instant::now() + connect_timeout;
    let mut last_error = None;
    loop {
        let remaining = deadline.saturating_duration_since(tokio::time::Instant::now());
        if remaining.is_zero() {
            break;
        }
        match tokio::time::timeout(remaining, C::connect_with(options)).await {
            Ok(Ok(connection)) => {
                let _ = connection.close().await;
                return Ok(());
            }
            Ok(Err(error)) if retryable_at_start(&error) => last_error = Some(error.to_string()),
            Ok(Err(error)) => return Err(error.to_string()),
            Err(_) => break,
        }
        tokio::time::sleep(Duration::from_millis(100).min(remaining)).await;
    }
    Err(format!(
        "no connection within {} ms{}",
        connect_timeout.as_millis(),
        last_error.map_or_else(String::new, |e| format!(" ({e})"))
    ))
}

/// Errors worth waiting out at start-up (the database still starting);
/// a wrong password or an unknown database is not.
fn retryable_at_start(error: &sqlx::Error) -> bool {
    matches!(
        error,
        sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut | sqlx::Error::Tls(_)
    )
}

/// The pool settings every SQL store shares. sqlx's default of pinging a
/// connection before handing it out stays on: it costs a round trip per
/// store call, but a connection that died while idle (database restart,
/// killed backend) is replaced instead of failing a request with 503.
pub(super) fn pool_options<DB: sqlx::Database>(options: &StoreOptions) -> PoolOptions<DB> {
    PoolOptions::new()
        .max_connections(options.pool_size)
        .acquire_timeout(options.acquire_timeout)
        .test_before_acquire(true)
}

/// Parses a database URL into the backend's connection options.
pub(super) fn connect_options<Options: ConnectOptions>(url: &str) -> Result<Options, OpenError> {
    Options::from_str(url).map_err(|error| OpenError::Invalid {
        url: super::redact(url),
        reason: error.to_string(),
    })
}

/// Opens a lazy pool, waits for the first connection (so start-up reports
/// the database's own error) and brings the schema up to date.
pub(super) async fn open_pool<DB>(
    url: &str,
    connect: <DB::Connection as sqlx::Connection>::Options,
    options: &StoreOptions,
    migrator: &Migrator,
) -> Result<Pool<DB>, OpenError>
where
    DB: Database,
    DB::Connection: Migrate,
{
    open_pool_with(url, connect, pool_options::<DB>(options), options, migrator).await
}

/// [`open_pool`] with pool settings of the caller's choosing.
pub(super) async fn open_pool_with<DB>(
    url: &str,
    connect: <DB::Connection as sqlx::Connection>::Options,
    pool_options: PoolOptions<DB>,
    options: &StoreOptions,
    migrator: &Migrator,
) -> Result<Pool<DB>, OpenError>
where
    DB: Database,
    DB::Connection: Migrate,
{
    let pool = pool_options.connect_lazy_with(connect.clone());
    let unreachable = |reason: String| OpenError::Unreachable {
        url: super::redact(url),
        reason,
    };
    first_connection::<DB::Connection>(&connect, options.connect_timeout)
        .await
        .map_err(unreachable)?;
    migrator
        .run(&pool)
        .await
        .map_err(|error| unreachable(format!("migrating the schema: {error}")))?;
    Ok(pool)
}

/// Runs the load query (its binds differ per dialect) and assembles the
/// account's state from its rows.
pub(super) async fn load<DB>(
    pool: &Pool<DB>,
    account: AccountId,
    query: sqlx::query::QueryAs<'_, DB, LoadRow, DB::Arguments>,
) -> Result<Loaded, StoreError>
where
    DB: Database,
    DB::Arguments: IntoArguments<DB>,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    LoadRow: for<'r> FromRow<'r, DB::Row>,
{
    let rows = query.fetch_all(pool).await.map_err(read_error)?;
    assemble(account, rows)
}

/// Reads up to `limit` events of `account` from sequence number `from` on
/// with `query`, whose three parameters are account, from and limit.
pub(super) async fn events<DB>(
    pool: &Pool<DB>,
    query: &'static str,
    account: AccountId,
    from: u64,
    limit: usize,
) -> Result<Vec<RecordedEvent>, StoreError>
where
    DB: Database,
    DB::Arguments: IntoArguments<DB>,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    for<'q> String: Encode<'q, DB> + Type<DB>,
    for<'q> i64: Encode<'q, DB> + Type<DB>,
    EventRow: for<'r> FromRow<'r, DB::Row>,
{
    let rows: Vec<EventRow> = sqlx::query_as(query)
        .bind(account.to_string())
        .bind(i64::try_from(from).unwrap_or(i64::MAX))
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .fetch_all(pool)
        .await
        .map_err(read_error)?;
    rows.into_iter()
        .map(|row| decode_event(account, row))
        .collect()
}

pub(super) async fn ping<DB>(pool: &Pool<DB>) -> Result<(), StoreError>
where
    DB: Database,
    DB::Arguments: IntoArguments<DB>,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
{
    sqlx::query("SELECT 1")
        .execute(pool)
        .await
        .map(|_| ())
        .map_err(unavailable)
}

/// The append as plain statements in one transaction, begun by the caller
/// (each database begins it its own way and says why the head it reads
/// cannot move before COMMIT): the gap check, one multi-row INSERT per
/// table, then COMMIT.
pub(super) async fn append_in_transaction<DB>(
    mut transaction: Transaction<'static, DB>,
    values: &CommitValues,
    is_conflict: fn(&dyn DatabaseError) -> bool,
) -> Result<(), AppendError>
where
    DB: Database,
    DB::Arguments: IntoArguments<DB>,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    for<'q> &'q str: Encode<'q, DB> + Type<DB>,
    for<'q> i64: Encode<'q, DB> + Type<DB>,
    (String, i64): for<'r> FromRow<'r, DB::Row>,
{
    if !values.heads.is_empty() {
        check_heads(&mut transaction, &values.heads, is_conflict).await?;
    }
    insert(
        &mut transaction,
        "INSERT INTO events (account_id, sequence_number, transaction_id, event_type, payload, recorded_at_ms) ",
        &values.events,
        |mut row, event| {
            row.push_bind(event.account_id.as_str())
                .push_bind(event.sequence_number)
                .push_bind(event.transaction_id.as_str())
                .push_bind(event.event_type)
                .push_bind(event.payload.as_str())
                .push_bind(event.recorded_at_ms);
        },
        is_conflict,
    )
    .await?;
    insert(
        &mut transaction,
        "INSERT INTO applied_transactions (account_id, transaction_id, fingerprint) ",
        &values.transactions,
        |mut row, record| {
            row.push_bind(record.account_id.as_str())
                .push_bind(record.transaction_id.as_str())
                .push_bind(record.fingerprint.as_str());
        },
        is_conflict,
    )
    .await?;
    insert(
        &mut transaction,
        "INSERT INTO snapshots (account_id, sequence_number, state) ",
        &values.snapshots,
        |mut row, snapshot| {
            row.push_bind(snapshot.account_id.as_str())
                .push_bind(snapshot.sequence_number)
                .push_bind(snapshot.state.as_str());
        },
        is_conflict,
    )
    .await?;
    transaction
        .commit()
        .await
        .map_err(|error| at_commit(error, is_conflict))
}

/// The gap check: each account's stream must end right before the commit's
/// first event. Accounts without events are absent from the result (head
/// 0). A commit starting at or below the head would also fail on the
/// primary key, but is refused here first.
async fn check_heads<DB>(
    transaction: &mut Transaction<'static, DB>,
    expected: &[(String, i64)],
    is_conflict: fn(&dyn DatabaseError) -> bool,
) -> Result<(), AppendError>
where
    DB: Database,
    DB::Arguments: IntoArguments<DB>,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    for<'q> &'q str: Encode<'q, DB> + Type<DB>,
    (String, i64): for<'r> FromRow<'r, DB::Row>,
{
    let mut heads = QueryBuilder::<DB>::new(
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
        .map_err(|error| before_commit(error, is_conflict))?
        .into_iter()
        .collect();
    for (account, head) in expected {
        let actual = stored.get(account).copied().unwrap_or(0);
        if actual != *head {
            return Err(Head::moved_at(account, actual, *head));
        }
    }
    Ok(())
}

/// One multi-row INSERT of `rows` (none: no statement), `push_row` binding
/// one row's values.
async fn insert<DB, Item>(
    transaction: &mut Transaction<'static, DB>,
    statement: &str,
    rows: &[Item],
    push_row: impl FnMut(Separated<'_, DB, &'static str>, &Item),
    is_conflict: fn(&dyn DatabaseError) -> bool,
) -> Result<(), AppendError>
where
    DB: Database,
    DB::Arguments: IntoArguments<DB>,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
{
    if rows.is_empty() {
        return Ok(());
    }
    let mut insert = QueryBuilder::<DB>::new(statement);
    insert.push_values(rows, push_row);
    insert
        .build()
        .execute(&mut **transaction)
        .await
        .map_err(|error| before_commit(error, is_conflict))?;
    Ok(())
}
