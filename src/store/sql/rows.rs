//! The rows the SQL stores read and write, and their meaning: the columns
//! of the load, events and feed queries decoded into events, snapshots and
//! idempotency records (by column name, so every dialect's query only has
//! to name its columns alike), and a batch's rows as the text values the
//! INSERTs of MariaDB and SQLite bind. PostgreSQL decodes its binary `uuid`
//! and `jsonb` columns itself (`postgres.rs`) and uses only the number
//! conversions here.

use std::collections::HashMap;

use sqlx::FromRow;

use crate::domain::{AccountId, Event, Fingerprint, Timestamp, TransactionId};
use crate::store::{
    AppendError, Commit, FeedEvent, Loaded, RecordedEvent, Snapshot, StoreError, TransactionRecord,
};

/// The row kinds of the one-round-trip load query (a UNION ALL of the latest
/// snapshot, the events after it and the transaction record).
pub(in crate::store) const KIND_SNAPSHOT: &str = "s";

pub(in crate::store) const KIND_EVENT: &str = "e";

pub(in crate::store) const KIND_TRANSACTION: &str = "t";

/// One row of the load query, decoded into plain values by column name;
/// its meaning depends on `kind`.
#[derive(FromRow)]
pub(in crate::store) struct LoadRow {
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
pub(in crate::store) struct ManyLoadRow {
    pub n: i64,
    #[sqlx(flatten)]
    pub row: LoadRow,
}

/// Assembles the rows of a load of several accounts, one `Loaded` per
/// distinct request (`unique`, as [`distinct_requests`] returns them), then
/// answers every request in `place` order.
pub(in crate::store) fn assemble_many(
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
pub(in crate::store) struct EventRow {
    pub sequence_number: i64,
    pub transaction_id: String,
    pub payload: String,
    pub recorded_at_ms: i64,
}

/// One row of the feed query.
#[derive(FromRow)]
pub(in crate::store) struct FeedRow {
    pub position: i64,
    pub account_id: String,
    pub sequence_number: i64,
    pub transaction_id: String,
    pub payload: String,
    pub recorded_at_ms: i64,
}

/// An event ready to be bound into an INSERT as text.
pub(in crate::store) struct EventValues {
    pub account_id: String,
    pub sequence_number: i64,
    pub transaction_id: String,
    pub event_type: &'static str,
    pub payload: String,
    pub recorded_at_ms: i64,
}

pub(in crate::store) struct SnapshotValues {
    pub account_id: String,
    pub sequence_number: i64,
    pub state: String,
    pub recorded_until_ms: Option<i64>,
}

pub(in crate::store) struct TransactionValues {
    pub account_id: String,
    pub transaction_id: String,
    pub fingerprint: String,
}

/// The rows of several commits, as the text-bound INSERTs of MariaDB and
/// SQLite bind them; events in commit order, which is position order.
#[derive(Default)]
pub(in crate::store) struct RowValues {
    pub events: Vec<EventValues>,
    pub transactions: Vec<TransactionValues>,
    pub snapshots: Vec<SnapshotValues>,
}

pub(in crate::store) fn sequence_to_sql(sequence: u64) -> Result<i64, AppendError> {
    i64::try_from(sequence)
        .map_err(|_| AppendError::Conflict(format!("sequence number {sequence} is out of range")))
}

pub(super) fn sequence_from_sql(sequence: i64) -> Result<u64, StoreError> {
    u64::try_from(sequence)
        .map_err(|_| StoreError::Corrupt(format!("negative sequence number {sequence}")))
}

/// A bound for a page size or a position as SQL's BIGINT.
pub(in crate::store) fn bigint(value: impl TryInto<i64>) -> i64 {
    value.try_into().unwrap_or(i64::MAX)
}

/// The rows of `commits` as text binds.
pub(in crate::store) fn row_values<'c>(
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

pub(super) fn parse_transaction(text: &str) -> Result<TransactionId, StoreError> {
    TransactionId::parse(text)
        .map_err(|_| StoreError::Corrupt(format!("bad transaction id {text:?}")))
}

pub(super) fn parse_account(text: &str) -> Result<AccountId, StoreError> {
    AccountId::parse(text).map_err(|_| StoreError::Corrupt(format!("bad account id {text:?}")))
}

pub(in crate::store) fn decode_event(
    account: AccountId,
    row: EventRow,
) -> Result<RecordedEvent, StoreError> {
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

pub(in crate::store) fn decode_feed(row: FeedRow) -> Result<FeedEvent, StoreError> {
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
pub(in crate::store) fn assemble(
    account: AccountId,
    rows: Vec<LoadRow>,
) -> Result<Loaded, StoreError> {
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

/// The distinct requests of a [`crate::store::EventStore::load_many`], in order of
/// first appearance, and for each request the place of its answer among
/// them: a batch of loads often names one account several times.
pub(in crate::store) fn distinct_requests(
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
