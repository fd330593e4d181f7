//! What the three SQL stores share: the checks a commit must pass before it
//! is sent, turning rows into events and back, and the mapping of sqlx
//! errors onto the store contract's errors.
//!
//! Each database module keeps its own SQL (placeholders, casts and types
//! differ); everything here is dialect-free.

use std::collections::HashMap;
use std::time::Duration;

use sqlx::error::DatabaseError;
use sqlx::pool::PoolOptions;

use super::{
    AppendError, Commit, Loaded, RecordedEvent, Snapshot, StoreError, StoreOptions,
    TransactionRecord,
};
use crate::domain::{AccountId, Event, Fingerprint, Timestamp, TransactionId};

/// The row kinds of the one-round-trip load query (a UNION ALL of the latest
/// snapshot, the events after it and the transaction record).
pub(super) const KIND_SNAPSHOT: &str = "s";
pub(super) const KIND_EVENT: &str = "e";
pub(super) const KIND_TRANSACTION: &str = "t";

/// One row of the load query, decoded into plain values by the database
/// module; its meaning depends on `kind`.
pub(super) struct LoadRow {
    pub kind: String,
    pub sequence_number: Option<i64>,
    pub transaction_id: Option<String>,
    /// Event JSON, snapshot state JSON, or the fingerprint.
    pub payload: Option<String>,
    pub recorded_at_ms: Option<i64>,
}

/// One row of the events table.
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

/// The name stored in the event type column (the same as the payload's
/// `type`, so an operator can filter without parsing JSON).
pub(super) fn event_type(event: &Event) -> &'static str {
    match event {
        Event::AccountOpened { .. } => "AccountOpened",
        Event::MoneyDeposited { .. } => "MoneyDeposited",
        Event::MoneyWithdrawn { .. } => "MoneyWithdrawn",
        Event::AccountClosed => "AccountClosed",
    }
}

/// Checks what can be checked without the database — each account's events
/// contiguous, snapshots covering an event of this commit, no transactionId
/// twice — and turns the commit into bindable values. The database then
/// enforces the rest: the first event of each account at exactly its head
/// + 1, and no (account, sequence) or (account, transactionId) taken.
pub(super) fn commit_values(commit: &Commit) -> Result<CommitValues, AppendError> {
    let mut next: HashMap<AccountId, u64> = HashMap::new();
    let mut heads = Vec::new();
    let mut events = Vec::with_capacity(commit.events.len());
    for event in &commit.events {
        if event.sequence_number == 0 {
            return Err(AppendError::Conflict(format!(
                "account {}: sequence numbers start at 1",
                event.account_id
            )));
        }
        let expected = next.entry(event.account_id).or_insert_with(|| {
            heads.push((event.account_id, event.sequence_number.saturating_sub(1)));
            event.sequence_number
        });
        if event.sequence_number != *expected {
            return Err(AppendError::Conflict(format!(
                "account {}: events of one commit must be contiguous, got {} after {}",
                event.account_id,
                event.sequence_number,
                *expected - 1
            )));
        }
        *expected += 1;
        events.push(EventValues {
            account_id: event.account_id.to_string(),
            sequence_number: sequence_to_sql(event.sequence_number)?,
            transaction_id: event.transaction_id.to_string(),
            event_type: event_type(&event.event),
            payload: serde_json::to_string(&event.event).map_err(corrupt_json)?,
            recorded_at_ms: event.recorded_at.unix_millis(),
        });
    }
    let mut seen = std::collections::HashSet::new();
    let mut transactions = Vec::with_capacity(commit.transactions.len());
    for record in &commit.transactions {
        if !seen.insert((record.account_id, record.transaction_id)) {
            return Err(AppendError::Conflict(format!(
                "transaction {} appears twice for account {} in one commit",
                record.transaction_id, record.account_id
            )));
        }
        transactions.push(TransactionValues {
            account_id: record.account_id.to_string(),
            transaction_id: record.transaction_id.to_string(),
            fingerprint: record.fingerprint.0.clone(),
        });
    }
    let mut snapshots = Vec::with_capacity(commit.snapshots.len());
    for snapshot in &commit.snapshots {
        let last = next.get(&snapshot.account_id).map_or(0, |n| n - 1);
        if snapshot.sequence_number == 0 || snapshot.sequence_number > last {
            return Err(AppendError::Conflict(format!(
                "snapshot of account {} at {} is not covered by the commit",
                snapshot.account_id, snapshot.sequence_number
            )));
        }
        snapshots.push(SnapshotValues {
            account_id: snapshot.account_id.to_string(),
            sequence_number: sequence_to_sql(snapshot.sequence_number)?,
            state: serde_json::to_string(&snapshot.state).map_err(corrupt_json)?,
        });
    }
    heads.sort();
    let heads = heads
        .into_iter()
        .map(|(account, head)| Ok((account.to_string(), sequence_to_sql(head)?)))
        .collect::<Result<_, AppendError>>()?;
    Ok(CommitValues {
        heads,
        events,
        transactions,
        snapshots,
    })
}

fn corrupt_json(error: serde_json::Error) -> AppendError {
    AppendError::Store(StoreError::Corrupt(format!("cannot encode JSON: {error}")))
}

/// Compares the heads the commit expects with the heads stored (accounts
/// without events are absent from `stored`). A gap — the commit starting
/// past the stored head — is refused here; a commit starting at or below the
/// head would also fail on the primary key, but is refused here first.
pub(super) fn check_heads(
    expected: &[(String, i64)],
    stored: &HashMap<String, i64>,
) -> Result<(), AppendError> {
    for (account, head) in expected {
        let actual = stored.get(account).copied().unwrap_or(0);
        if actual != *head {
            return Err(AppendError::Conflict(format!(
                "account {account} is at sequence number {actual}, the commit expects {head}"
            )));
        }
    }
    Ok(())
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
        .max_connections(options.max_connections)
        .acquire_timeout(options.acquire_timeout)
        .test_before_acquire(true)
}
