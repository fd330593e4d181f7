//! What the three SQL stores share: opening the pool, the checks a commit
//! must pass before it is sent, turning rows into events and back, the
//! queries whose SQL every dialect writes alike, and the mapping of sqlx
//! errors onto the store contract's errors.
//!
//! Each database module keeps its own SQL where placeholders, casts and
//! types differ, and its own idea of a conflict; everything here is generic
//! over the sqlx `Database`, so one piece of code serves all three.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::time::{Duration, Instant};

use prometheus::{HistogramOpts, HistogramVec};
use sqlx::error::DatabaseError;
use sqlx::migrate::{Migrate, Migrator};
use sqlx::pool::{PoolConnection, PoolConnectionMetadata, PoolOptions};
use sqlx::query_builder::Separated;
use sqlx::{
    AssertSqlSafe, ConnectOptions, Connection, Database, Encode, Executor, FromRow, IntoArguments,
    Pool, QueryBuilder, Transaction, Type,
};

use super::{
    AppendError, Commit, FeedEvent, Head, Loaded, OpenError, RecordedEvent, Snapshot, StoreError,
    StoreOptions, TransactionRecord, chained_onto, check_batch,
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
    /// An event's time, or a snapshot's `recorded_until`.
    pub recorded_at_ms: Option<i64>,
}

/// A row of a load of several accounts: the place of the request it
/// answers (from 0) and the row as [`LoadRow`].
#[derive(FromRow)]
pub(super) struct ManyLoadRow {
    pub n: i64,
    #[sqlx(flatten)]
    pub row: LoadRow,
}

/// Assembles the rows of a load of several accounts, one `Loaded` per
/// distinct request (`unique`, as [`distinct_requests`] returns them), then
/// answers every request in `place` order.
pub(super) fn assemble_many(
    unique: &[(AccountId, Option<TransactionId>)],
    place: Vec<usize>,
    rows: Vec<ManyLoadRow>,
) -> Result<Vec<Loaded>, StoreError> {
    let mut grouped: Vec<Vec<LoadRow>> = unique.iter().map(|_| Vec::new()).collect();
    for ManyLoadRow { n, row } in rows {
        let rows = usize::try_from(n)
            .ok()
            .and_then(|index| grouped.get_mut(index))
            .ok_or_else(|| StoreError::Corrupt(format!("load row of request {n}")))?;
        rows.push(row);
    }
    let loaded = unique
        .iter()
        .zip(grouped)
        .map(|((account, _), rows)| assemble(*account, rows))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(place
        .into_iter()
        .map(|index| loaded[index].clone())
        .collect())
}

/// One row of the events table.
#[derive(FromRow)]
pub(super) struct EventRow {
    pub sequence_number: i64,
    pub transaction_id: String,
    pub payload: String,
    pub recorded_at_ms: i64,
}

/// One row of the feed query.
#[derive(FromRow)]
pub(super) struct FeedRow {
    pub position: i64,
    pub account_id: String,
    pub sequence_number: i64,
    pub transaction_id: String,
    pub payload: String,
    pub recorded_at_ms: i64,
}

/// An event ready to be bound into an INSERT as text.
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
    pub recorded_until_ms: Option<i64>,
}

pub(super) struct TransactionValues {
    pub account_id: String,
    pub transaction_id: String,
    pub fingerprint: String,
}

/// The rows of several commits, as the text-bound INSERTs of MariaDB and
/// SQLite bind them; events in commit order, which is position order.
#[derive(Default)]
pub(super) struct RowValues {
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

/// A bound for a page size or a position as SQL's BIGINT.
pub(super) fn bigint(value: impl TryInto<i64>) -> i64 {
    value.try_into().unwrap_or(i64::MAX)
}

/// The checks a commit must pass before any database is asked: its shape
/// (the rules every store shares, see [`Commit::check_shape`]) and sequence
/// numbers that fit a BIGINT. The database then enforces the rest: the first
/// event of each account at exactly its head + 1, and no (account, sequence)
/// or (account, transactionId) taken. `Ok(false)`: a valid commit with
/// neither events nor idempotency records, which writes nothing.
pub(super) fn check_commit(commit: &Commit) -> Result<bool, AppendError> {
    for head in commit.check_shape()? {
        sequence_to_sql(head.sequence_number)?;
    }
    for event in &commit.events {
        sequence_to_sql(event.sequence_number)?;
    }
    Ok(!(commit.events.is_empty() && commit.transactions.is_empty()))
}

/// The rows of `commits` as text binds.
pub(super) fn row_values<'c>(
    commits: impl IntoIterator<Item = &'c Commit>,
) -> Result<RowValues, AppendError> {
    let mut rows = RowValues::default();
    for commit in commits {
        for event in &commit.events {
            rows.events.push(EventValues {
                account_id: event.account_id.to_string(),
                sequence_number: sequence_to_sql(event.sequence_number)?,
                transaction_id: event.transaction_id.to_string(),
                // The same name as the payload's `type`, so an operator can
                // filter without parsing JSON.
                event_type: event.event.type_name(),
                payload: serde_json::to_string(&event.event).map_err(corrupt_json)?,
                recorded_at_ms: event.recorded_at.unix_millis(),
            });
        }
        for record in &commit.transactions {
            rows.transactions.push(TransactionValues {
                account_id: record.account_id.to_string(),
                transaction_id: record.transaction_id.to_string(),
                fingerprint: record.fingerprint.0.clone(),
            });
        }
        for snapshot in &commit.snapshots {
            rows.snapshots.push(SnapshotValues {
                account_id: snapshot.account_id.to_string(),
                sequence_number: sequence_to_sql(snapshot.sequence_number)?,
                state: serde_json::to_string(&snapshot.state).map_err(corrupt_json)?,
                recorded_until_ms: snapshot.recorded_until.map(Timestamp::unix_millis),
            });
        }
    }
    Ok(rows)
}

fn corrupt_json(error: serde_json::Error) -> AppendError {
    AppendError::Store(StoreError::Corrupt(format!("cannot encode JSON: {error}")))
}

fn parse_transaction(text: &str) -> Result<TransactionId, StoreError> {
    TransactionId::parse(text)
        .map_err(|_| StoreError::Corrupt(format!("bad transaction id {text:?}")))
}

fn parse_account(text: &str) -> Result<AccountId, StoreError> {
    AccountId::parse(text).map_err(|_| StoreError::Corrupt(format!("bad account id {text:?}")))
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

pub(super) fn decode_feed(row: FeedRow) -> Result<FeedEvent, StoreError> {
    let account = parse_account(&row.account_id)?;
    Ok(FeedEvent {
        position: u64::try_from(row.position)
            .map_err(|_| StoreError::Corrupt(format!("negative position {}", row.position)))?,
        event: decode_event(
            account,
            EventRow {
                sequence_number: row.sequence_number,
                transaction_id: row.transaction_id,
                payload: row.payload,
                recorded_at_ms: row.recorded_at_ms,
            },
        )?,
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
                    recorded_until: row.recorded_at_ms.map(Timestamp::from_unix_millis),
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

/// The distinct requests of a [`super::EventStore::load_many`], in order of
/// first appearance, and for each request the place of its answer among
/// them: a batch of loads often names one account several times.
pub(super) fn distinct_requests(
    requests: &[(AccountId, Option<TransactionId>)],
) -> (Vec<(AccountId, Option<TransactionId>)>, Vec<usize>) {
    let mut unique = Vec::new();
    let mut seen = HashMap::new();
    let place = requests
        .iter()
        .map(|request| {
            *seen.entry(*request).or_insert_with(|| {
                unique.push(*request);
                unique.len() - 1
            })
        })
        .collect();
    (unique, place)
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
    let is_conflict = conflict_codes(dialect);
    match stage {
        WriteStage::BeforeCommit => before_commit(error, is_conflict),
        WriteStage::AtCommit => at_commit(error, is_conflict),
    }
}

/// What a database error says about the write that met it and about the
/// connection it came on. Public so that tests can check the table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorClass {
    /// Another writer got there first (the dialect's conflict codes): the
    /// statement wrote nothing; reload and decide again.
    Conflict,
    /// The server refuses to write at all — a read-only server, a standby,
    /// a primary being demoted or restarted, a server starting up or
    /// shutting down (PostgreSQL `25006`, `57P03`; MariaDB 1290, 1836,
    /// 1792). The statement wrote nothing, and the connection leads to a
    /// server that is no writable primary: it is closed, not pooled again.
    NotWritable,
    /// The connection is gone: closed by the network or the server, or the
    /// server terminated the session (`08*`, `57P01`, `57P02`, MariaDB
    /// 2006, 2013, 1053, 1927). Before COMMIT nothing was written; at
    /// COMMIT the outcome is unknown (PostgreSQL commits locally before it
    /// waits for a synchronous standby, and a session terminated during
    /// that wait has committed).
    ConnectionLost,
    /// Any other refusal by the server (a constraint the schema should
    /// never meet, a syntax error): before COMMIT nothing was written.
    Refused,
    /// An error of the client side (no pooled connection in time, a value
    /// that did not decode): nothing about the server.
    Client,
}

/// The class of an SQLSTATE that means the same on every database, if it
/// is one of those: class 08 is "connection exception" in PostgreSQL's and
/// MySQL's SQLSTATEs alike, `25006` a write in a read-only transaction.
pub fn sqlstate_class(code: &str) -> Option<ErrorClass> {
    match code {
        // 57P01 admin shutdown (also pg_terminate_backend), 57P02 crash
        // shutdown; 70100 is MariaDB's "connection was killed".
        "57P01" | "57P02" | "70100" => Some(ErrorClass::ConnectionLost),
        code if code.starts_with("08") => Some(ErrorClass::ConnectionLost),
        // 57P03 "cannot connect now": the server is starting, recovering or
        // shutting down, and was never sent a statement.
        "25006" | "57P03" => Some(ErrorClass::NotWritable),
        _ => None,
    }
}

/// The class of a MySQL/MariaDB error number, if it is one of those whose
/// SQLSTATE (mostly the generic `HY000`) does not say it.
pub fn mysql_number_class(number: u16) -> Option<ErrorClass> {
    match number {
        // ER_OPTION_PREVENTS_STATEMENT (read_only / super_read_only),
        // ER_READ_ONLY_MODE, ER_CANT_EXECUTE_IN_READ_ONLY_TRANSACTION.
        1290 | 1836 | 1792 => Some(ErrorClass::NotWritable),
        // CR_SERVER_GONE_ERROR, CR_SERVER_LOST (client codes that proxies
        // and some servers send too), ER_SERVER_SHUTDOWN, ER_CONNECTION_KILLED.
        2006 | 2013 | 1053 | 1927 => Some(ErrorClass::ConnectionLost),
        _ => None,
    }
}

/// The class of `error`, the dialect's conflicts told by `is_conflict`.
pub(super) fn class_of(
    error: &sqlx::Error,
    is_conflict: fn(&dyn DatabaseError) -> bool,
) -> ErrorClass {
    match error {
        sqlx::Error::Io(_) | sqlx::Error::Tls(_) => ErrorClass::ConnectionLost,
        sqlx::Error::Database(database) => {
            let number = database
                .try_downcast_ref::<sqlx::mysql::MySqlDatabaseError>()
                .and_then(|mysql| mysql_number_class(mysql.number()));
            let code = database.code();
            number
                .or_else(|| code.as_deref().and_then(sqlstate_class))
                .unwrap_or(if is_conflict(database.as_ref()) {
                    ErrorClass::Conflict
                } else {
                    ErrorClass::Refused
                })
        }
        _ => ErrorClass::Client,
    }
}

/// [`class_of`] with the conflict codes of `dialect`.
pub fn classify_error(dialect: Dialect, error: &sqlx::Error) -> ErrorClass {
    class_of(error, conflict_codes(dialect))
}

fn conflict_codes(dialect: Dialect) -> fn(&dyn DatabaseError) -> bool {
    match dialect {
        Dialect::Postgres => super::postgres::is_conflict,
        Dialect::Mysql => super::mysql::is_conflict,
        Dialect::Sqlite => super::sqlite::is_conflict,
    }
}

/// The error of a write to a server that refuses writes.
fn not_writable_error(error: &sqlx::Error) -> StoreError {
    let message = match error {
        sqlx::Error::Database(database) => database.message().to_owned(),
        other => other.to_string(),
    };
    StoreError::Unavailable(format!(
        "the database refuses writes (a standby, or a primary being demoted or restarted): {message}"
    ))
}

/// Maps an error raised before COMMIT was sent: the transaction cannot have
/// landed (the server rolls it back when the connection drops), so anything
/// but a conflict means "nothing written, store unavailable".
pub(super) fn before_commit(
    error: sqlx::Error,
    is_conflict: fn(&dyn DatabaseError) -> bool,
) -> AppendError {
    match (class_of(&error, is_conflict), &error) {
        (ErrorClass::Conflict, sqlx::Error::Database(database)) => {
            AppendError::Conflict(database.message().to_owned())
        }
        (ErrorClass::NotWritable, _) => AppendError::Store(not_writable_error(&error)),
        (ErrorClass::Refused, sqlx::Error::Database(database)) => {
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

/// Maps an error of the COMMIT itself (on PostgreSQL: of the one autocommit
/// statement that writes a batch). A refusal the database reports as a
/// conflict rolled the transaction back, and so did a refusal to write at
/// all (the server answered with an error, it did not commit); anything
/// else — the reply lost, the connection dropped, the session terminated
/// mid-commit — leaves the outcome unknown, and only reading the
/// transactionId back can tell.
pub(super) fn at_commit(
    error: sqlx::Error,
    is_conflict: fn(&dyn DatabaseError) -> bool,
) -> AppendError {
    match (class_of(&error, is_conflict), &error) {
        (ErrorClass::Conflict, sqlx::Error::Database(database)) => {
            AppendError::Conflict(database.message().to_owned())
        }
        (ErrorClass::NotWritable, _) => AppendError::Store(not_writable_error(&error)),
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

/// A pooled connection idle for longer than this is pinged before it is
/// handed out; a younger one is used as it is. One second is far longer
/// than a busy pool leaves a connection idle (so the hot path costs no extra
/// round trip, where pinging on every acquire cost one per store call), and
/// short enough that a pool that sat idle through a database restart finds
/// out on its first acquire rather than on a request. A connection that died
/// less than a second ago is caught where it fails: reads, and appends that
/// cannot have committed, are retried once on a checked connection
/// ([`Pooled::read`], [`write_in_transaction`]).
pub(super) const PING_IDLE_AFTER: Duration = Duration::from_secs(1);

/// The pool settings every SQL store shares.
pub(super) fn pool_options<DB: sqlx::Database>(options: &StoreOptions) -> PoolOptions<DB> {
    PoolOptions::new()
        .max_connections(options.pool_size)
        .acquire_timeout(options.acquire_timeout)
        .test_before_acquire(false)
        .before_acquire(
            |connection: &mut DB::Connection, metadata: PoolConnectionMetadata| {
                Box::pin(async move {
                    if metadata.idle_for >= PING_IDLE_AFTER {
                        connection.ping().await?;
                    }
                    Ok(true)
                })
            },
        )
}

/// Whether an error says the connection itself is gone (closed by the
/// server or the network, the server shutting down or killing it) rather
/// than anything about the statement: the statement may be sent again on
/// another connection if sending it twice is harmless.
pub(super) fn connection_lost(error: &sqlx::Error) -> bool {
    class_of(error, |_| false) == ErrorClass::ConnectionLost
}

/// Whether an error says the server refuses writes (see
/// [`ErrorClass::NotWritable`]).
pub(super) fn not_writable(error: &sqlx::Error) -> bool {
    class_of(error, |_| false) == ErrorClass::NotWritable
}

/// What a pooled connection is taken for, the label of the pool wait
/// histogram.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Use {
    Read,
    Write,
}

impl Use {
    fn label(self) -> &'static str {
        match self {
            Use::Read => "read",
            Use::Write => "write",
        }
    }
}

/// A SQL store's connection pool with what every use of it shares: the
/// wait for a connection is measured, and a read that finds its connection
/// dead is tried once more on one known to answer.
pub(super) struct Pooled<DB: Database> {
    pool: Pool<DB>,
    acquire_seconds: HistogramVec,
}

impl<DB: Database> Pooled<DB> {
    pub fn new(pool: Pool<DB>) -> Pooled<DB> {
        Pooled {
            pool,
            acquire_seconds: acquire_histogram(),
        }
    }

    pub fn pool(&self) -> &Pool<DB> {
        &self.pool
    }

    /// The pool wait histogram, for the owner of a registry to export.
    pub fn acquire_seconds(&self) -> HistogramVec {
        self.acquire_seconds.clone()
    }

    /// A connection from the pool, its wait measured (also a wait that
    /// ends in a timeout: that is the wait an overloaded pool imposes).
    pub async fn acquire(&self, purpose: Use) -> Result<PoolConnection<DB>, sqlx::Error> {
        let started = Instant::now();
        let connection = self.pool.acquire().await;
        self.acquire_seconds
            .with_label_values(&[purpose.label()])
            .observe(started.elapsed().as_secs_f64());
        connection
    }

    /// A connection that has just answered a ping. After one connection
    /// was found dead, its idle neighbours likely died with it (a database
    /// restart, an administrator killing every session), so each is tried
    /// in turn — a dead one is dropped, which closes it — until one answers
    /// or the pool has opened a new one.
    pub async fn acquire_checked(&self, purpose: Use) -> Result<PoolConnection<DB>, sqlx::Error> {
        let mut attempts = self.pool.options().get_max_connections() + 1;
        loop {
            let mut connection = self.acquire(purpose).await?;
            match connection.ping().await {
                Ok(()) => return Ok(connection),
                Err(error) if attempts <= 1 || !connection_lost(&error) => return Err(error),
                Err(_) => {
                    connection.close_on_drop();
                    attempts -= 1;
                }
            }
        }
    }

    /// After `error` on `connection`: if the server refuses writes, the
    /// connection is closed instead of pooled again — the pool's ping on
    /// release succeeds on a read-only server, so it would stay — and so is
    /// every idle connection, which most likely leads to the same server.
    /// New connections go wherever the address leads now (behind a proxy
    /// that follows the leader: the new primary).
    pub fn discard_if_not_writable(
        &self,
        connection: &mut PoolConnection<DB>,
        error: &sqlx::Error,
    ) {
        if !not_writable(error) {
            return;
        }
        connection.close_on_drop();
        self.close_idle();
    }

    /// Closes every idle connection (new ones are opened on demand).
    pub fn close_idle(&self) {
        for _ in 0..self.pool.num_idle() {
            match self.pool.try_acquire() {
                Some(mut idle) => idle.close_on_drop(),
                None => break,
            }
        }
    }

    /// Runs a read on a pooled connection; if the connection turns out to
    /// be dead (see [`connection_lost`]), once more on a checked one — a
    /// read changes nothing, so running it twice is harmless.
    pub async fn read<T, Fut>(
        &self,
        run: impl Fn(PoolConnection<DB>) -> Fut,
    ) -> Result<T, sqlx::Error>
    where
        Fut: Future<Output = Result<T, sqlx::Error>>,
    {
        let connection = self.acquire(Use::Read).await?;
        match run(connection).await {
            Err(error) if connection_lost(&error) => {
                tracing::debug!(%error, "a pooled connection was dead; reading again");
                run(self.acquire_checked(Use::Read).await?).await
            }
            result => result,
        }
    }
}

/// `accounts_db_pool_acquire_seconds`: one per store, registered by the app
/// that serves it (see `Metrics::export_pool_acquire`).
fn acquire_histogram() -> HistogramVec {
    HistogramVec::new(
        HistogramOpts::new(
            "accounts_db_pool_acquire_seconds",
            "Time a store call waited for a pooled database connection, by use (read or write).",
        )
        .buckets(vec![
            0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
            0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
        ]),
        &["use"],
    )
    .expect("valid metric")
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

/// Runs the load query `build` makes (its binds differ per dialect) and
/// assembles the account's state from its rows.
pub(super) async fn load<'q, DB>(
    pooled: &Pooled<DB>,
    account: AccountId,
    build: impl Fn() -> sqlx::query::QueryAs<'q, DB, LoadRow, DB::Arguments>,
) -> Result<Loaded, StoreError>
where
    DB: Database,
    DB::Arguments: IntoArguments<DB>,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    LoadRow: for<'r> FromRow<'r, DB::Row>,
{
    let rows = pooled
        .read(|mut connection| {
            let query = build();
            async move { query.fetch_all(&mut *connection).await }
        })
        .await
        .map_err(read_error)?;
    assemble(account, rows)
}

/// Reads up to `limit` events of `account` from sequence number `from` on
/// with `query`, whose three parameters are account, from and limit.
pub(super) async fn events<DB>(
    pooled: &Pooled<DB>,
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
    let rows: Vec<EventRow> = pooled
        .read(|mut connection| async move {
            sqlx::query_as(query)
                .bind(account.to_string())
                .bind(bigint(from))
                .bind(bigint(limit))
                .fetch_all(&mut *connection)
                .await
        })
        .await
        .map_err(read_error)?;
    rows.into_iter()
        .map(|row| decode_event(account, row))
        .collect()
}

/// Reads a page of the feed with `query`, whose two parameters are the
/// position to start after and the limit.
pub(super) async fn feed<DB>(
    pooled: &Pooled<DB>,
    query: &'static str,
    after: u64,
    limit: usize,
) -> Result<Vec<FeedEvent>, StoreError>
where
    DB: Database,
    DB::Arguments: IntoArguments<DB>,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    for<'q> i64: Encode<'q, DB> + Type<DB>,
    FeedRow: for<'r> FromRow<'r, DB::Row>,
{
    let rows: Vec<FeedRow> = pooled
        .read(|mut connection| async move {
            sqlx::query_as(query)
                .bind(bigint(after))
                .bind(bigint(limit))
                .fetch_all(&mut *connection)
                .await
        })
        .await
        .map_err(read_error)?;
    rows.into_iter().map(decode_feed).collect()
}

/// Whether the database answers and takes writes — on any connection: one
/// that died idle says nothing about the database, so it is read past like
/// any read. `read_only` is the dialect's query answering one integer,
/// non-zero when the server (or this session) cannot write: a standby, a
/// server in recovery, a read-only one. Such a connection is closed with
/// its idle neighbours, as after a write it refused
/// ([`Pooled::discard_if_not_writable`]), so that the next check and the
/// next write go out on new connections.
pub(super) async fn ping<DB>(pooled: &Pooled<DB>, read_only: &'static str) -> Result<(), StoreError>
where
    DB: Database,
    DB::Arguments: IntoArguments<DB>,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    i64: for<'r> sqlx::Decode<'r, DB> + Type<DB>,
    (i64,): for<'r> FromRow<'r, DB::Row>,
{
    // A second look on a new connection: a session left over from before
    // (its own read-only default, or a server since demoted and replaced
    // behind the address) says nothing about where new connections go.
    for _ in 0..2 {
        let refuses = pooled
            .read(|mut connection| async move {
                let (refuses,): (i64,) = sqlx::query_as(read_only)
                    .fetch_one(&mut *connection)
                    .await?;
                if refuses != 0 {
                    connection.close_on_drop();
                }
                Ok(refuses != 0)
            })
            .await
            .map_err(unavailable)?;
        if !refuses {
            return Ok(());
        }
        pooled.close_idle();
    }
    Err(StoreError::Unavailable(
        "the database does not take writes (a standby, in recovery, or read-only)".to_owned(),
    ))
}

// ------------------------------------------------------------ group commit

/// How one attempt to write several members ended.
pub(super) enum Attempt {
    /// Each member's answer, in order.
    Answered(Vec<Result<(), AppendError>>),
    /// A constraint refused rows that the check let through: another writer
    /// changed the data in between. Nothing was written; the members are to
    /// be tried one by one, so that only the one in the way is refused.
    Split(AppendError),
}

/// A database's way of writing the members of a batch that fit, in one
/// transaction (see [`append_batch`]).
pub(super) trait BatchWriter: Sync {
    fn write<'a>(&'a self, members: &'a [&'a Commit]) -> impl Future<Output = Attempt> + Send + 'a;
}

/// Group commit on a SQL store: the members that cannot be written at all
/// are answered first ([`check_commit`], and members chained onto those),
/// the others go to the writer in one attempt, and — when a concurrent
/// writer got in the way of that attempt — one by one, each in its own
/// transaction, so that only the member in the way is refused (and the
/// members chained onto it: [`chained_onto`]).
pub(super) async fn append_batch(
    writer: &impl BatchWriter,
    commits: &[Commit],
) -> Vec<Result<(), AppendError>> {
    let chains = chained_onto(&commits.iter().collect::<Vec<_>>());
    let mut results: Vec<Option<Result<(), AppendError>>> = vec![None; commits.len()];
    let mut members: Vec<usize> = Vec::new();
    for (index, commit) in commits.iter().enumerate() {
        results[index] = match check_commit(commit) {
            Ok(true) => match refused_before(&chains[index], &results) {
                Some(refused) => Some(Err(refused)),
                None => {
                    members.push(index);
                    None
                }
            },
            Ok(false) => Some(Ok(())),
            Err(error) => Some(Err(error)),
        };
    }
    let batch: Vec<&Commit> = members.iter().map(|&index| &commits[index]).collect();
    if !batch.is_empty() {
        match writer.write(&batch).await {
            Attempt::Answered(answers) => {
                debug_assert_eq!(answers.len(), members.len());
                for (&index, answer) in members.iter().zip(answers) {
                    results[index] = Some(answer);
                }
            }
            Attempt::Split(error) if members.len() == 1 => results[members[0]] = Some(Err(error)),
            Attempt::Split(_) => {
                for &index in &members {
                    let answer = match refused_before(&chains[index], &results) {
                        Some(refused) => Err(refused),
                        None => write_alone(writer, &commits[index]).await,
                    };
                    results[index] = Some(answer);
                }
            }
        }
    }
    results
        .into_iter()
        .map(|result| {
            result.unwrap_or_else(|| {
                Err(AppendError::Store(StoreError::Corrupt(
                    "a batch member was left unanswered".to_owned(),
                )))
            })
        })
        .collect()
}

/// The conflict of a member chained onto an earlier member already refused.
fn refused_before(
    chain: &[usize],
    results: &[Option<Result<(), AppendError>>],
) -> Option<AppendError> {
    let refused = chain
        .iter()
        .find(|&&earlier| matches!(results[earlier], Some(Err(_))))?;
    Some(AppendError::Conflict(format!(
        "chained onto member {refused} of the batch, which was refused"
    )))
}

/// One member in its own transaction. A writer that answers a batch of one
/// with anything but one answer cannot say whether it wrote the member:
/// ambiguous, which the engine settles by reading the transactionId back —
/// never a success by default.
async fn write_alone(writer: &impl BatchWriter, member: &Commit) -> Result<(), AppendError> {
    match writer.write(&[member]).await {
        Attempt::Answered(answers) => match <[_; 1]>::try_from(answers) {
            Ok([answer]) => answer,
            Err(answers) => Err(AppendError::Ambiguous(format!(
                "a write of one member was answered with {} results",
                answers.len()
            ))),
        },
        Attempt::Split(error) => Err(error),
    }
}

/// What the store holds for the accounts and transactionIds of a batch.
#[derive(Default)]
pub(super) struct Stored {
    pub heads: HashMap<AccountId, u64>,
    pub records: HashSet<(AccountId, TransactionId)>,
}

impl Stored {
    /// Every member's answer if the members that fit are written.
    pub fn check(&self, members: &[&Commit]) -> Vec<Result<(), AppendError>> {
        check_batch(
            members.iter().copied(),
            |account| self.heads.get(&account).copied().unwrap_or(0),
            |account, transaction| self.records.contains(&(account, transaction)),
        )
    }

    /// Adds a row of the stored-state query: `head` set for an account's
    /// last sequence number, `transaction_id` for a recorded transactionId.
    pub fn add(
        &mut self,
        account: AccountId,
        head: Option<i64>,
        transaction: Option<TransactionId>,
    ) -> Result<(), StoreError> {
        if let Some(head) = head {
            self.heads.insert(account, sequence_from_sql(head)?);
        }
        if let Some(transaction) = transaction {
            self.records.insert((account, transaction));
        }
        Ok(())
    }
}

/// Each account's head as the first member touching it expects it, in
/// canonical account order, if every later member chains onto the ones
/// before and no transactionId repeats — then writing them all needs only
/// these heads to hold. `None` when the members contradict each other.
pub(super) fn first_heads(members: &[&Commit]) -> Option<Vec<Head>> {
    let mut first: HashMap<AccountId, u64> = HashMap::new();
    for member in members {
        for head in member.check_shape().ok()? {
            first.entry(head.account_id).or_insert(head.sequence_number);
        }
    }
    let consistent = check_batch(
        members.iter().copied(),
        |account| first.get(&account).copied().unwrap_or(0),
        |_, _| false,
    );
    if consistent.iter().any(Result::is_err) {
        return None;
    }
    let mut heads: Vec<Head> = first
        .into_iter()
        .map(|(account_id, sequence_number)| Head {
            account_id,
            sequence_number,
        })
        .collect();
    heads.sort_by_key(|head| head.account_id);
    Some(heads)
}

/// The members whose answer is `Ok`.
pub(super) fn passing<'a>(
    members: &[&'a Commit],
    answers: &[Result<(), AppendError>],
) -> Vec<&'a Commit> {
    members
        .iter()
        .zip(answers)
        .filter(|(_, answer)| answer.is_ok())
        .map(|(member, _)| *member)
        .collect()
}

/// `answers` with every `Ok` (a member that was to be written) replaced by
/// `error`: what a failed write means for them.
pub(super) fn failed(
    mut answers: Vec<Result<(), AppendError>>,
    error: &AppendError,
) -> Vec<Result<(), AppendError>> {
    for answer in &mut answers {
        if answer.is_ok() {
            *answer = Err(error.clone());
        }
    }
    answers
}

/// Takes `count` feed positions inside an append's transaction and returns
/// the first: the database's own way, the last statement before the events
/// are inserted and COMMIT is sent.
pub(super) type Reserve<DB> = for<'t> fn(
    &'t mut <DB as Database>::Connection,
    i64,
) -> std::pin::Pin<
    Box<dyn Future<Output = Result<i64, sqlx::Error>> + Send + 't>,
>;

/// Why an attempt at a transaction stopped before COMMIT was sent: nothing
/// was written either way.
enum Stopped {
    /// The connection is gone (see [`connection_lost`]), or leads to a
    /// server that refuses writes ([`not_writable`]): the server rolls the
    /// transaction back, so the attempt may be made again (on another
    /// connection, which may reach a new primary).
    Lost(sqlx::Error),
    /// The answer of every member still to be written.
    Failed(AppendError),
}

impl Stopped {
    fn of(error: sqlx::Error, is_conflict: fn(&dyn DatabaseError) -> bool) -> Stopped {
        if connection_lost(&error) || not_writable(&error) {
            Stopped::Lost(error)
        } else {
            Stopped::Failed(before_commit(error, is_conflict))
        }
    }
}

impl From<AppendError> for Stopped {
    fn from(error: AppendError) -> Stopped {
        Stopped::Failed(error)
    }
}

impl From<StoreError> for Stopped {
    fn from(error: StoreError) -> Stopped {
        Stopped::Failed(AppendError::Store(error))
    }
}

/// The write of MariaDB and SQLite, in one transaction begun with `begin`
/// (each database begins it its own way and says why the heads it reads
/// cannot move unnoticed before COMMIT; `None`: the database's plain
/// BEGIN): what the store holds for the batch, in one query; which members
/// fit; their idempotency records and snapshots, one multi-row INSERT per
/// table; the positions; the events; and COMMIT.
///
/// A connection found dead before COMMIT was sent (one that died idle in the
/// pool, or was cut off mid-transaction) wrote nothing, so the attempt is
/// made once more on a connection that has just answered; a COMMIT that
/// fails is never sent again (its outcome is unknown: `Ambiguous`).
pub(super) async fn write_in_transaction<DB>(
    pooled: &Pooled<DB>,
    begin: Option<&'static str>,
    members: &[&Commit],
    reserve: Reserve<DB>,
    is_conflict: fn(&dyn DatabaseError) -> bool,
) -> Attempt
where
    DB: Database,
    DB::Arguments: IntoArguments<DB>,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    for<'q> &'q str: Encode<'q, DB> + Type<DB>,
    for<'q> i64: Encode<'q, DB> + Type<DB>,
    for<'q> Option<i64>: Encode<'q, DB> + Type<DB>,
    (String, Option<i64>, Option<String>): for<'r> FromRow<'r, DB::Row>,
{
    let everyone = |error: AppendError| Attempt::Answered(vec![Err(error); members.len()]);
    let connection = pooled.acquire(Use::Write).await;
    let lost = match write_once(pooled, connection, begin, members, reserve, is_conflict).await {
        Ok(attempt) => return attempt,
        Err(lost) => lost,
    };
    tracing::debug!(error = %lost, "connection lost or refused before COMMIT; writing the batch again");
    let connection = pooled.acquire_checked(Use::Write).await;
    match write_once(pooled, connection, begin, members, reserve, is_conflict).await {
        Ok(attempt) => attempt,
        Err(lost) => everyone(before_commit(lost, is_conflict)),
    }
}

/// One attempt of [`write_in_transaction`]; `Err`: the connection was lost
/// (or refused to write) before COMMIT was sent. A connection that refused
/// is closed rather than pooled again, with its idle neighbours.
async fn write_once<DB>(
    pooled: &Pooled<DB>,
    connection: Result<PoolConnection<DB>, sqlx::Error>,
    begin: Option<&'static str>,
    members: &[&Commit],
    reserve: Reserve<DB>,
    is_conflict: fn(&dyn DatabaseError) -> bool,
) -> Result<Attempt, sqlx::Error>
where
    DB: Database,
    DB::Arguments: IntoArguments<DB>,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    for<'q> &'q str: Encode<'q, DB> + Type<DB>,
    for<'q> i64: Encode<'q, DB> + Type<DB>,
    for<'q> Option<i64>: Encode<'q, DB> + Type<DB>,
    (String, Option<i64>, Option<String>): for<'r> FromRow<'r, DB::Row>,
{
    let mut connection = match connection {
        Ok(connection) => connection,
        Err(error) => {
            return match Stopped::of(error, is_conflict) {
                Stopped::Lost(error) => Err(error),
                Stopped::Failed(error) => Ok(Attempt::Answered(vec![Err(error); members.len()])),
            };
        }
    };
    let written = write_on(&mut connection, begin, members, reserve, is_conflict).await;
    if let Err(error) = &written {
        pooled.discard_if_not_writable(&mut connection, error);
    }
    written
}

/// The statements of one attempt on `connection`.
async fn write_on<DB>(
    connection: &mut DB::Connection,
    begin: Option<&'static str>,
    members: &[&Commit],
    reserve: Reserve<DB>,
    is_conflict: fn(&dyn DatabaseError) -> bool,
) -> Result<Attempt, sqlx::Error>
where
    DB: Database,
    DB::Arguments: IntoArguments<DB>,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    for<'q> &'q str: Encode<'q, DB> + Type<DB>,
    for<'q> i64: Encode<'q, DB> + Type<DB>,
    for<'q> Option<i64>: Encode<'q, DB> + Type<DB>,
    (String, Option<i64>, Option<String>): for<'r> FromRow<'r, DB::Row>,
{
    let everyone = |error: AppendError| Attempt::Answered(vec![Err(error); members.len()]);
    let stopped = |stopped: Stopped, answers: Option<Vec<Result<(), AppendError>>>| match stopped {
        Stopped::Lost(error) => Err(error),
        Stopped::Failed(error) => Ok(match answers {
            Some(answers) => Attempt::Answered(failed(answers, &error)),
            None => everyone(error),
        }),
    };
    let begun = match begin {
        // A `&'static str` that the compiler cannot see as one across the
        // await in this generic function.
        Some(statement) => Connection::begin_with(connection, AssertSqlSafe(statement)).await,
        None => Connection::begin(connection).await,
    };
    let mut transaction = match begun {
        Ok(transaction) => transaction,
        Err(error) => return stopped(Stopped::of(error, is_conflict), None),
    };
    let stored = match read_stored(&mut transaction, members, is_conflict).await {
        Ok(stored) => stored,
        Err(error) => return stopped(error, None),
    };
    let answers = stored.check(members);
    let passing = passing(members, &answers);
    if passing.is_empty() {
        // Dropping the transaction rolls it back.
        return Ok(Attempt::Answered(answers));
    }
    if let Err(error) = insert_rows(&mut transaction, &passing, reserve, is_conflict).await {
        return match error {
            Stopped::Failed(conflict @ AppendError::Conflict(_)) => Ok(Attempt::Split(conflict)),
            other => stopped(other, Some(answers)),
        };
    }
    Ok(match transaction.commit().await {
        Ok(()) => Attempt::Answered(answers),
        Err(error) => match at_commit(error, is_conflict) {
            conflict @ AppendError::Conflict(_) => Attempt::Split(conflict),
            other => Attempt::Answered(failed(answers, &other)),
        },
    })
}

/// The heads of the members' accounts and which of their transactionIds are
/// recorded, in one query.
async fn read_stored<DB>(
    transaction: &mut Transaction<'_, DB>,
    members: &[&Commit],
    is_conflict: fn(&dyn DatabaseError) -> bool,
) -> Result<Stored, Stopped>
where
    DB: Database,
    DB::Arguments: IntoArguments<DB>,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    for<'q> &'q str: Encode<'q, DB> + Type<DB>,
    (String, Option<i64>, Option<String>): for<'r> FromRow<'r, DB::Row>,
{
    let text = |ids: BTreeSet<String>| ids.into_iter().collect::<Vec<_>>();
    let accounts = text(
        members
            .iter()
            .flat_map(|member| member.events.iter().map(|e| e.account_id.to_string()))
            .collect(),
    );
    let recorded_accounts = text(
        members
            .iter()
            .flat_map(|member| member.transactions.iter().map(|t| t.account_id.to_string()))
            .collect(),
    );
    let transactions = text(
        members
            .iter()
            .flat_map(|m| m.transactions.iter().map(|t| t.transaction_id.to_string()))
            .collect(),
    );
    let mut query = QueryBuilder::<DB>::new("");
    // One scalar MAX per account, not one MAX … GROUP BY over the list:
    // SQLite answers the scalar form from the primary key's last entry, but
    // walks every event of the account for the grouped one (a 100,000-event
    // account: 0.02 ms against 140 ms).
    for (index, account) in accounts.iter().enumerate() {
        if index > 0 {
            query.push(" UNION ALL ");
        }
        query.push("SELECT CAST(");
        query.push_bind(account.as_str());
        query.push(" AS CHAR), (SELECT MAX(sequence_number) FROM events WHERE account_id = ");
        query.push_bind(account.as_str());
        query.push("), CAST(NULL AS CHAR)");
    }
    if !transactions.is_empty() {
        if !accounts.is_empty() {
            query.push(" UNION ALL ");
        }
        // Every pair of the two lists: a superset of the records asked
        // for, through the primary key; the exact pairs are kept below.
        query.push(
            "SELECT account_id, CAST(NULL AS SIGNED), CAST(transaction_id AS CHAR) \
             FROM applied_transactions WHERE account_id IN ",
        );
        push_list(&mut query, &recorded_accounts);
        query.push(" AND transaction_id IN ");
        push_list(&mut query, &transactions);
    }
    let rows = query
        .build_query_as::<(String, Option<i64>, Option<String>)>()
        .fetch_all(&mut **transaction)
        .await
        .map_err(|error| Stopped::of(error, is_conflict))?;
    let mut stored = Stored::default();
    for (account, head, transaction) in rows {
        let transaction = transaction.as_deref().map(parse_transaction).transpose()?;
        stored.add(parse_account(&account)?, head, transaction)?;
    }
    Ok(stored)
}

/// `(?, ?, …)` binding `values`.
fn push_list<DB>(query: &mut QueryBuilder<DB>, values: &[String])
where
    DB: Database,
    for<'q> &'q str: Encode<'q, DB> + Type<DB>,
{
    query.push("(");
    let mut separated = query.separated(", ");
    for value in values {
        separated.push_bind(value.as_str());
    }
    query.push(")");
}

/// The rows of the members that fit: idempotency records and snapshots in
/// canonical account order (so that two batches never wait on each other's
/// rows in opposite orders), then the positions, then the events in
/// position order.
async fn insert_rows<DB>(
    transaction: &mut Transaction<'_, DB>,
    passing: &[&Commit],
    reserve: Reserve<DB>,
    is_conflict: fn(&dyn DatabaseError) -> bool,
) -> Result<(), Stopped>
where
    DB: Database,
    DB::Arguments: IntoArguments<DB>,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    for<'q> &'q str: Encode<'q, DB> + Type<DB>,
    for<'q> i64: Encode<'q, DB> + Type<DB>,
    for<'q> Option<i64>: Encode<'q, DB> + Type<DB>,
{
    let mut rows = row_values(passing.iter().copied())?;
    rows.transactions.sort_by(|a, b| {
        (&a.account_id, &a.transaction_id).cmp(&(&b.account_id, &b.transaction_id))
    });
    rows.snapshots.sort_by(|a, b| {
        (&a.account_id, a.sequence_number).cmp(&(&b.account_id, b.sequence_number))
    });
    insert(
        transaction,
        "INSERT INTO applied_transactions (account_id, transaction_id, fingerprint) ",
        &rows.transactions,
        |mut row, record| {
            row.push_bind(record.account_id.as_str())
                .push_bind(record.transaction_id.as_str())
                .push_bind(record.fingerprint.as_str());
        },
        is_conflict,
    )
    .await?;
    insert(
        transaction,
        "INSERT INTO snapshots (account_id, sequence_number, state, recorded_until_ms) ",
        &rows.snapshots,
        |mut row, snapshot| {
            row.push_bind(snapshot.account_id.as_str())
                .push_bind(snapshot.sequence_number)
                .push_bind(snapshot.state.as_str())
                .push_bind(snapshot.recorded_until_ms);
        },
        is_conflict,
    )
    .await?;
    if rows.events.is_empty() {
        return Ok(());
    }
    let first = reserve(&mut **transaction, bigint(rows.events.len()))
        .await
        .map_err(|error| Stopped::of(error, is_conflict))?;
    let positioned: Vec<(i64, &EventValues)> = (first..).zip(&rows.events).collect();
    insert(
        transaction,
        "INSERT INTO events \
         (position, account_id, sequence_number, transaction_id, event_type, payload, recorded_at_ms) ",
        &positioned,
        |mut row, (position, event)| {
            row.push_bind(*position)
                .push_bind(event.account_id.as_str())
                .push_bind(event.sequence_number)
                .push_bind(event.transaction_id.as_str())
                .push_bind(event.event_type)
                .push_bind(event.payload.as_str())
                .push_bind(event.recorded_at_ms);
        },
        is_conflict,
    )
    .await
}

/// One multi-row INSERT of `rows` (none: no statement), `push_row` binding
/// one row's values.
async fn insert<DB, Item>(
    transaction: &mut Transaction<'_, DB>,
    statement: &str,
    rows: &[Item],
    push_row: impl FnMut(Separated<'_, DB, &'static str>, &Item),
    is_conflict: fn(&dyn DatabaseError) -> bool,
) -> Result<(), Stopped>
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
        .map_err(|error| Stopped::of(error, is_conflict))?;
    Ok(())
}

#[cfg(test)]
mod classification_tests {
    use std::borrow::Cow;

    use sqlx::error::ErrorKind;

    use super::*;

    /// A database error that carries nothing but an SQLSTATE, as a server
    /// would send it.
    #[derive(Debug)]
    struct Coded(&'static str);

    impl std::fmt::Display for Coded {
        fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(formatter, "error {}", self.0)
        }
    }

    impl std::error::Error for Coded {}

    impl DatabaseError for Coded {
        fn message(&self) -> &str {
            "refused"
        }
        fn code(&self) -> Option<Cow<'_, str>> {
            Some(Cow::Borrowed(self.0))
        }
        fn as_error(&self) -> &(dyn std::error::Error + Send + Sync + 'static) {
            self
        }
        fn as_error_mut(&mut self) -> &mut (dyn std::error::Error + Send + Sync + 'static) {
            self
        }
        fn into_error(self: Box<Self>) -> Box<dyn std::error::Error + Send + Sync + 'static> {
            self
        }
        fn kind(&self) -> ErrorKind {
            ErrorKind::Other
        }
    }

    fn database(code: &'static str) -> sqlx::Error {
        sqlx::Error::Database(Box::new(Coded(code)))
    }

    /// Every SQLSTATE a failover, a restart or a demotion produces, and the
    /// ones that must stay what they were.
    const POSTGRES: &[(&str, ErrorClass)] = &[
        ("25006", ErrorClass::NotWritable),
        ("57P03", ErrorClass::NotWritable),
        ("57P01", ErrorClass::ConnectionLost),
        ("57P02", ErrorClass::ConnectionLost),
        ("08000", ErrorClass::ConnectionLost),
        ("08003", ErrorClass::ConnectionLost),
        ("08006", ErrorClass::ConnectionLost),
        ("08001", ErrorClass::ConnectionLost),
        ("08P01", ErrorClass::ConnectionLost),
        ("23505", ErrorClass::Conflict),
        ("40001", ErrorClass::Conflict),
        ("40P01", ErrorClass::Conflict),
        ("23514", ErrorClass::Refused),
        ("42601", ErrorClass::Refused),
        ("57014", ErrorClass::Refused),
    ];

    #[test]
    fn postgres_sqlstates_map_onto_their_classes() {
        for &(code, class) in POSTGRES {
            assert_eq!(
                classify_error(Dialect::Postgres, &database(code)),
                class,
                "{code}"
            );
        }
    }

    #[test]
    fn mysql_error_numbers_map_onto_their_classes() {
        let table = [
            (1290, Some(ErrorClass::NotWritable)),
            (1836, Some(ErrorClass::NotWritable)),
            (1792, Some(ErrorClass::NotWritable)),
            (2006, Some(ErrorClass::ConnectionLost)),
            (2013, Some(ErrorClass::ConnectionLost)),
            (1053, Some(ErrorClass::ConnectionLost)),
            (1927, Some(ErrorClass::ConnectionLost)),
            (1062, None),
            (1213, None),
            (3819, None),
        ];
        for (number, class) in table {
            assert_eq!(mysql_number_class(number), class, "{number}");
        }
        // MariaDB's SQLSTATEs for the same: a killed connection, a shutdown.
        assert_eq!(sqlstate_class("70100"), Some(ErrorClass::ConnectionLost));
        assert_eq!(sqlstate_class("08S01"), Some(ErrorClass::ConnectionLost));
        assert_eq!(sqlstate_class("HY000"), None);
    }

    #[test]
    fn network_and_client_errors_have_their_classes() {
        let io = || sqlx::Error::Io(std::io::Error::from(std::io::ErrorKind::ConnectionRefused));
        assert_eq!(
            classify_error(Dialect::Mysql, &io()),
            ErrorClass::ConnectionLost
        );
        assert_eq!(
            classify_error(Dialect::Postgres, &sqlx::Error::PoolTimedOut),
            ErrorClass::Client
        );
    }

    /// A refusal to write is "nothing written, unavailable" at either stage
    /// — never a success, never ambiguous; a lost connection is ambiguous
    /// only at COMMIT.
    #[test]
    fn a_refusal_to_write_is_unavailable_and_a_lost_commit_ambiguous() {
        for stage in [WriteStage::BeforeCommit, WriteStage::AtCommit] {
            for code in ["25006", "57P03"] {
                let classified = classify_write_error(Dialect::Postgres, stage, database(code));
                assert!(
                    matches!(classified, AppendError::Store(StoreError::Unavailable(_))),
                    "{code} at {stage:?}: {classified:?}"
                );
            }
        }
        for code in ["57P01", "57P02", "08006"] {
            let before =
                classify_write_error(Dialect::Postgres, WriteStage::BeforeCommit, database(code));
            assert!(
                matches!(before, AppendError::Store(StoreError::Unavailable(_))),
                "{code}"
            );
            let at = classify_write_error(Dialect::Postgres, WriteStage::AtCommit, database(code));
            assert!(matches!(at, AppendError::Ambiguous(_)), "{code}: {at:?}");
        }
        let at = classify_write_error(
            Dialect::Postgres,
            WriteStage::AtCommit,
            sqlx::Error::PoolTimedOut,
        );
        assert!(matches!(at, AppendError::Ambiguous(_)), "{at:?}");
    }
}

#[cfg(test)]
mod batch_tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use uuid::Uuid;

    use super::*;
    use crate::domain::Event;

    /// Asks for a split on the first write, then answers every write of one
    /// member with no answer at all.
    struct Mute {
        writes: AtomicUsize,
    }

    impl BatchWriter for Mute {
        async fn write<'a>(&'a self, _members: &'a [&'a Commit]) -> Attempt {
            match self.writes.fetch_add(1, Ordering::SeqCst) {
                0 => Attempt::Split(AppendError::Conflict("in the way".to_owned())),
                _ => Attempt::Answered(Vec::new()),
            }
        }
    }

    fn opening(n: u128) -> Commit {
        Commit {
            events: vec![RecordedEvent {
                account_id: AccountId::from_uuid(Uuid::from_u128(n)),
                sequence_number: 1,
                transaction_id: TransactionId::from_uuid(Uuid::from_u128(100 + n)),
                event: Event::AccountClosed,
                recorded_at: Timestamp::from_unix_millis(0),
            }],
            transactions: Vec::new(),
            snapshots: Vec::new(),
        }
    }

    #[tokio::test]
    async fn a_member_written_alone_without_an_answer_is_ambiguous() {
        let writer = Mute {
            writes: AtomicUsize::new(0),
        };
        let answers = append_batch(&writer, &[opening(1), opening(2)]).await;
        assert_eq!(
            writer.writes.load(Ordering::SeqCst),
            3,
            "split, then one by one"
        );
        for answer in answers {
            assert!(
                matches!(answer, Err(AppendError::Ambiguous(_))),
                "{answer:?}"
            );
        }
    }
}
