//! The in-memory store: the default, for trying the service and for tests
//! and the simulation. Data is lost on exit.

use std::collections::HashMap;
use std::sync::Mutex;

use async_trait::async_trait;

use super::{AppendError, Commit, EventStore, Loaded, RecordedEvent, Snapshot, StoreError};
use crate::domain::{AccountId, Fingerprint, TransactionId};

/// Every account's stream behind one lock. The lock is held only for the
/// few microseconds of a lookup or an append (never across an await), and
/// all per-account work is O(1) or O(events since the last snapshot).
#[derive(Default)]
pub struct MemoryStore {
    streams: Mutex<HashMap<AccountId, Stream>>,
}

#[derive(Default)]
struct Stream {
    /// Event `n` (1-based sequence number) is at index `n - 1`.
    events: Vec<RecordedEvent>,
    transactions: HashMap<TransactionId, Fingerprint>,
    snapshot: Option<Snapshot>,
}

impl MemoryStore {
    pub fn new() -> MemoryStore {
        MemoryStore::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<AccountId, Stream>> {
        // A panic while holding the lock cannot leave a half-applied commit:
        // append validates everything before it mutates anything.
        self.streams
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

fn usize_from(sequence: u64) -> usize {
    usize::try_from(sequence).unwrap_or(usize::MAX)
}

/// Checks a commit against the current streams without changing anything:
/// its shape (shared by every store), then that each stream ends where the
/// commit expects and that no transactionId is recorded already.
fn validate(streams: &HashMap<AccountId, Stream>, commit: &Commit) -> Result<(), AppendError> {
    for head in commit.check_shape()? {
        let stored = streams
            .get(&head.account_id)
            .map_or(0, |s| s.events.len() as u64);
        if stored != head.sequence_number {
            return Err(head.moved(stored));
        }
    }
    for record in &commit.transactions {
        let recorded = streams
            .get(&record.account_id)
            .is_some_and(|s| s.transactions.contains_key(&record.transaction_id));
        if recorded {
            return Err(AppendError::Conflict(format!(
                "transaction {} already recorded on account {}",
                record.transaction_id, record.account_id
            )));
        }
    }
    Ok(())
}

#[async_trait]
impl EventStore for MemoryStore {
    async fn load(
        &self,
        account: AccountId,
        transaction: Option<TransactionId>,
    ) -> Result<Loaded, StoreError> {
        let streams = self.lock();
        let Some(stream) = streams.get(&account) else {
            return Ok(Loaded::default());
        };
        let since = stream.snapshot.as_ref().map_or(0, |s| s.sequence_number);
        let transaction = transaction.and_then(|id| {
            stream
                .transactions
                .get(&id)
                .map(|fingerprint| super::TransactionRecord {
                    account_id: account,
                    transaction_id: id,
                    fingerprint: fingerprint.clone(),
                })
        });
        Ok(Loaded {
            snapshot: stream.snapshot.clone(),
            events: stream.events[usize_from(since).min(stream.events.len())..].to_vec(),
            transaction,
        })
    }

    async fn events(
        &self,
        account: AccountId,
        from: u64,
        limit: usize,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        let streams = self.lock();
        let Some(stream) = streams.get(&account) else {
            return Ok(Vec::new());
        };
        let start = usize_from(from.max(1) - 1).min(stream.events.len());
        let end = start.saturating_add(limit).min(stream.events.len());
        Ok(stream.events[start..end].to_vec())
    }

    async fn append(&self, commit: &Commit) -> Result<(), AppendError> {
        let mut streams = self.lock();
        validate(&streams, commit)?;
        for event in &commit.events {
            streams
                .entry(event.account_id)
                .or_default()
                .events
                .push(event.clone());
        }
        for record in &commit.transactions {
            let stream = streams.entry(record.account_id).or_default();
            stream
                .transactions
                .insert(record.transaction_id, record.fingerprint.clone());
        }
        for snapshot in &commit.snapshots {
            let stream = streams.entry(snapshot.account_id).or_default();
            let newer = stream
                .snapshot
                .as_ref()
                .is_none_or(|old| old.sequence_number < snapshot.sequence_number);
            if newer {
                stream.snapshot = Some(snapshot.clone());
            }
        }
        Ok(())
    }

    async fn ping(&self) -> Result<(), StoreError> {
        Ok(())
    }
}
