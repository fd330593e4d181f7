//! The in-memory store: the default, for trying the service and for tests
//! and the simulation. Data is lost on exit.
//!
//! Compact, because it holds everything: an event is kept once, as 48 bytes
//! in its account's stream (the account and sequence number are where it is;
//! amounts, balance and the transfer's other account as numbers; an owner id
//! in the two amount fields). The feed is an 8-byte entry per event pointing
//! into the streams, and a position is the entry's index + 1. An idempotency
//! record made by the engine needs no text: its fingerprint is derived from
//! the event it was recorded with ([`Event::fingerprint`]), so the record is a
//! 4-byte slot in a hash table of feed entries. Records whose fingerprint is
//! anything else (written by other callers) keep their text in a side map.
//! Every snapshot is kept, one per `--snapshot-every` events.

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::sync::Mutex;

use async_trait::async_trait;
use hashbrown::HashTable;

use super::{
    AppendError, Commit, EventStore, FeedEvent, GroupCommit, Loaded, PointInTime, RecordedEvent,
    Snapshot, StoreError, TransactionRecord, check_batch,
};
use crate::domain::{Account, AccountId, Event, Fingerprint, OwnerId, Timestamp, TransactionId};

/// Every account's stream behind one lock. The lock is held only for the
/// few microseconds of a lookup or an append (never across an await), and
/// all per-account work is O(1) or O(events since the last snapshot).
#[derive(Default)]
pub struct MemoryStore {
    state: Mutex<State>,
}

/// Accounts are numbered in the order first seen; streams, feed entries and
/// transfer counterparts refer to them by that number.
#[derive(Default)]
struct State {
    ids: Vec<AccountId>,
    numbers: HashMap<AccountId, u32>,
    /// Indexed by account number.
    streams: Vec<Stream>,
    /// Position `p` is entry `p - 1`.
    feed: Vec<FeedEntry>,
    /// Feed indexes of the events whose (account, transactionId) record has
    /// the fingerprint the event implies.
    recorded: HashTable<u32>,
    /// Every other record.
    other_records: HashMap<(AccountId, TransactionId), Fingerprint>,
    hasher: RandomState,
}

#[derive(Default)]
struct Stream {
    /// Event `n` (1-based sequence number) is at index `n - 1`.
    events: Vec<StoredEvent>,
    /// In sequence order.
    snapshots: Vec<StoredSnapshot>,
}

#[derive(Clone, Copy)]
struct FeedEntry {
    account: u32,
    index: u32,
}

struct StoredSnapshot {
    sequence_number: u64,
    state: Account,
    recorded_until: Option<Timestamp>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Opened,
    Deposited,
    Withdrawn,
    Closed,
}

/// An event without what its place in the stream says. `first` and `second`
/// are the amount and the balance, or the two halves of the owner id.
#[derive(Clone, Copy)]
struct StoredEvent {
    transaction_id: TransactionId,
    recorded_at_ms: i64,
    first: i64,
    second: i64,
    /// The transfer's other account, or [`NO_ACCOUNT`].
    counterpart: u32,
    kind: Kind,
}

const NO_ACCOUNT: u32 = u32::MAX;

const _: () = assert!(std::mem::size_of::<StoredEvent>() <= 48);
const _: () = assert!(std::mem::size_of::<FeedEntry>() == 8);

fn store_full() -> AppendError {
    AppendError::Store(StoreError::Unavailable(
        "the memory store holds as many events or accounts as it can number".to_owned(),
    ))
}

fn usize_from(value: u64) -> usize {
    usize::try_from(value).unwrap_or(usize::MAX)
}

impl MemoryStore {
    pub fn new() -> MemoryStore {
        MemoryStore::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave a half-applied commit:
        // a batch is checked before anything is changed, and applying a
        // checked commit cannot fail.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl StoredEvent {
    fn event(&self, ids: &[AccountId]) -> Event {
        let counterpart = (self.counterpart != NO_ACCOUNT).then(|| ids[self.counterpart as usize]);
        match self.kind {
            Kind::Opened => {
                let bits = (u128::from(self.first as u64) << 64) | u128::from(self.second as u64);
                Event::AccountOpened {
                    owner_id: OwnerId::from_uuid(uuid::Uuid::from_u128(bits)),
                }
            }
            Kind::Deposited => Event::MoneyDeposited {
                amount_deposited: self.first,
                balance: self.second,
                transfer_from: counterpart,
            },
            Kind::Withdrawn => Event::MoneyWithdrawn {
                amount_withdrawn: self.first,
                balance: self.second,
                transfer_to: counterpart,
            },
            Kind::Closed => Event::AccountClosed,
        }
    }
}

impl State {
    fn number(&self, account: AccountId) -> Option<u32> {
        self.numbers.get(&account).copied()
    }

    fn stream(&self, account: AccountId) -> Option<&Stream> {
        self.number(account)
            .map(|number| &self.streams[number as usize])
    }

    /// The account's number, given one if it has none yet. The caller has
    /// made sure numbers remain (see [`State::has_room`]).
    fn number_or_new(&mut self, account: AccountId) -> u32 {
        if let Some(number) = self.number(account) {
            return number;
        }
        let number = self.ids.len() as u32;
        self.ids.push(account);
        self.numbers.insert(account, number);
        self.streams.push(Stream::default());
        number
    }

    /// Whether the commits fit the 32-bit numbering of events and accounts
    /// (each event may name two new accounts).
    fn has_room(&self, commits: &[Commit]) -> bool {
        let events: usize = commits.iter().map(|commit| commit.events.len()).sum();
        let limit = NO_ACCOUNT as usize;
        self.feed.len().saturating_add(events) < limit
            && self.ids.len().saturating_add(2 * events) < limit
    }

    fn head(&self, account: AccountId) -> u64 {
        self.stream(account)
            .map_or(0, |stream| stream.events.len() as u64)
    }

    fn stored(&self, entry: FeedEntry) -> &StoredEvent {
        &self.streams[entry.account as usize].events[entry.index as usize]
    }

    fn recorded_event(&self, entry: FeedEntry) -> RecordedEvent {
        let stored = self.stored(entry);
        RecordedEvent {
            account_id: self.ids[entry.account as usize],
            sequence_number: u64::from(entry.index) + 1,
            transaction_id: stored.transaction_id,
            event: stored.event(&self.ids),
            recorded_at: Timestamp::from_unix_millis(stored.recorded_at_ms),
        }
    }

    fn events_of(&self, account: u32, range: std::ops::Range<usize>) -> Vec<RecordedEvent> {
        range
            .map(|index| {
                self.recorded_event(FeedEntry {
                    account,
                    index: index as u32,
                })
            })
            .collect()
    }

    fn record_hash(hasher: &RandomState, account: u32, transaction: &TransactionId) -> u64 {
        hasher.hash_one((account, transaction))
    }

    /// The feed index of the event `transaction` was recorded with on
    /// `account`, when the record is kept that way.
    fn record_slot(&self, account: AccountId, transaction: TransactionId) -> Option<u32> {
        let number = self.number(account)?;
        let hash = State::record_hash(&self.hasher, number, &transaction);
        let found = self.recorded.find(hash, |&index| {
            let entry = self.feed[index as usize];
            entry.account == number && self.stored(entry).transaction_id == transaction
        });
        found.copied()
    }

    fn is_recorded(&self, account: AccountId, transaction: TransactionId) -> bool {
        self.record_slot(account, transaction).is_some()
            || self.other_records.contains_key(&(account, transaction))
    }

    /// The fingerprint recorded for `transaction` on `account`, if any.
    fn record(&self, account: AccountId, transaction: TransactionId) -> Option<Fingerprint> {
        match self.record_slot(account, transaction) {
            Some(index) => {
                let event = self.stored(self.feed[index as usize]).event(&self.ids);
                event.fingerprint(account)
            }
            None => self.other_records.get(&(account, transaction)).cloned(),
        }
    }

    /// Writes a commit that [`check_batch`] let through.
    fn apply(&mut self, commit: &Commit) {
        let first_entry = self.feed.len();
        for event in &commit.events {
            let account = self.number_or_new(event.account_id);
            let stored = self.encode(event);
            let stream = &mut self.streams[account as usize];
            debug_assert_eq!(stream.events.len() as u64 + 1, event.sequence_number);
            let index = stream.events.len() as u32;
            stream.events.push(stored);
            self.feed.push(FeedEntry { account, index });
        }
        for record in &commit.transactions {
            self.apply_record(commit, first_entry, record);
        }
        for snapshot in &commit.snapshots {
            let account = self.number_or_new(snapshot.account_id);
            let snapshots = &mut self.streams[account as usize].snapshots;
            let at = snapshots.partition_point(|s| s.sequence_number < snapshot.sequence_number);
            snapshots.insert(
                at,
                StoredSnapshot {
                    sequence_number: snapshot.sequence_number,
                    state: snapshot.state.clone(),
                    recorded_until: snapshot.recorded_until,
                },
            );
        }
    }

    /// Records a transactionId: as a slot pointing at the commit's event it
    /// was recorded with when the event implies its fingerprint, as text
    /// otherwise.
    fn apply_record(&mut self, commit: &Commit, first_entry: usize, record: &TransactionRecord) {
        let with_event = commit.events.iter().position(|event| {
            event.account_id == record.account_id && event.transaction_id == record.transaction_id
        });
        if let Some(offset) = with_event {
            let event = &commit.events[offset].event;
            if event.fingerprint(record.account_id).as_ref() == Some(&record.fingerprint) {
                let index = (first_entry + offset) as u32;
                let number = self.feed[index as usize].account;
                let hash = State::record_hash(&self.hasher, number, &record.transaction_id);
                let (feed, streams, hasher) = (&self.feed, &self.streams, &self.hasher);
                self.recorded.insert_unique(hash, index, |&index| {
                    let entry = feed[index as usize];
                    let stored = &streams[entry.account as usize].events[entry.index as usize];
                    State::record_hash(hasher, entry.account, &stored.transaction_id)
                });
                return;
            }
        }
        self.other_records.insert(
            (record.account_id, record.transaction_id),
            record.fingerprint.clone(),
        );
    }

    fn encode(&mut self, recorded: &RecordedEvent) -> StoredEvent {
        let mut stored = StoredEvent {
            transaction_id: recorded.transaction_id,
            recorded_at_ms: recorded.recorded_at.unix_millis(),
            first: 0,
            second: 0,
            counterpart: NO_ACCOUNT,
            kind: Kind::Closed,
        };
        match &recorded.event {
            Event::AccountOpened { owner_id } => {
                let bits = owner_id.as_uuid().as_u128();
                stored.kind = Kind::Opened;
                stored.first = (bits >> 64) as u64 as i64;
                stored.second = bits as u64 as i64;
            }
            Event::MoneyDeposited {
                amount_deposited: amount,
                balance,
                transfer_from: counterpart,
            }
            | Event::MoneyWithdrawn {
                amount_withdrawn: amount,
                balance,
                transfer_to: counterpart,
            } => {
                stored.kind = match recorded.event {
                    Event::MoneyDeposited { .. } => Kind::Deposited,
                    _ => Kind::Withdrawn,
                };
                stored.first = *amount;
                stored.second = *balance;
                if let Some(counterpart) = counterpart {
                    stored.counterpart = self.number_or_new(*counterpart);
                }
            }
            Event::AccountClosed => {}
        }
        stored
    }

    fn snapshot(&self, account: AccountId, stored: &StoredSnapshot) -> Snapshot {
        Snapshot {
            account_id: account,
            sequence_number: stored.sequence_number,
            state: stored.state.clone(),
            recorded_until: stored.recorded_until,
        }
    }

    /// The snapshot (if any) and the events after it up to, not including,
    /// index `end` of the account's stream.
    fn loaded(&self, account: AccountId, snapshot: Option<&StoredSnapshot>, end: usize) -> Loaded {
        let Some(number) = self.number(account) else {
            return Loaded::default();
        };
        let start = snapshot.map_or(0, |s| usize_from(s.sequence_number));
        Loaded {
            snapshot: snapshot.map(|stored| self.snapshot(account, stored)),
            events: self.events_of(number, start..end.max(start)),
            transaction: None,
        }
    }
}

#[async_trait]
impl EventStore for MemoryStore {
    async fn load(
        &self,
        account: AccountId,
        transaction: Option<TransactionId>,
    ) -> Result<Loaded, StoreError> {
        let state = self.lock();
        let Some(stream) = state.stream(account) else {
            return Ok(Loaded::default());
        };
        let mut loaded = state.loaded(account, stream.snapshots.last(), stream.events.len());
        loaded.transaction = transaction.and_then(|id| {
            state
                .record(account, id)
                .map(|fingerprint| TransactionRecord {
                    account_id: account,
                    transaction_id: id,
                    fingerprint,
                })
        });
        Ok(loaded)
    }

    async fn load_at(&self, account: AccountId, at: PointInTime) -> Result<Loaded, StoreError> {
        let state = self.lock();
        let Some(stream) = state.stream(account) else {
            return Ok(Loaded::default());
        };
        let loaded = match at {
            PointInTime::Version(version) => {
                let before = stream
                    .snapshots
                    .partition_point(|s| s.sequence_number <= version);
                let snapshot = before.checked_sub(1).map(|at| &stream.snapshots[at]);
                let end = usize_from(version).min(stream.events.len());
                state.loaded(account, snapshot, end)
            }
            PointInTime::Time(time) => {
                let snapshot = stream
                    .snapshots
                    .iter()
                    .rev()
                    .find(|s| s.recorded_until.is_some_and(|until| until <= time));
                let start = snapshot.map_or(0, |s| usize_from(s.sequence_number));
                let after = stream.events[start..]
                    .iter()
                    .take_while(|event| event.recorded_at_ms <= time.unix_millis())
                    .count();
                state.loaded(account, snapshot, start + after)
            }
        };
        Ok(loaded)
    }

    async fn events(
        &self,
        account: AccountId,
        from: u64,
        limit: usize,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        let state = self.lock();
        let Some(number) = state.number(account) else {
            return Ok(Vec::new());
        };
        let length = state.streams[number as usize].events.len();
        let start = usize_from(from.max(1) - 1).min(length);
        let end = start.saturating_add(limit).min(length);
        Ok(state.events_of(number, start..end))
    }

    async fn feed(&self, after: u64, limit: usize) -> Result<Vec<FeedEvent>, StoreError> {
        let state = self.lock();
        let start = usize_from(after).min(state.feed.len());
        let end = start.saturating_add(limit).min(state.feed.len());
        Ok(state.feed[start..end]
            .iter()
            .enumerate()
            .map(|(offset, entry)| FeedEvent {
                position: (start + offset + 1) as u64,
                event: state.recorded_event(*entry),
            })
            .collect())
    }

    async fn append_batch(&self, commits: &[Commit]) -> Vec<Result<(), AppendError>> {
        let mut state = self.lock();
        if !state.has_room(commits) {
            return commits.iter().map(|_| Err(store_full())).collect();
        }
        let results = check_batch(
            commits,
            |account| state.head(account),
            |account, transaction| state.is_recorded(account, transaction),
        );
        for (commit, result) in commits.iter().zip(&results) {
            if result.is_ok() {
                state.apply(commit);
            }
        }
        results
    }

    async fn ping(&self) -> Result<(), StoreError> {
        Ok(())
    }

    /// An append holds the lock for microseconds and has no await: a
    /// caller's future either never starts it or finishes it in one poll, so
    /// a dropped caller leaves nothing half-done. A batch would save no
    /// flush, only add a channel hop and a task wake-up per command.
    fn group_commit(&self) -> GroupCommit {
        GroupCommit::Direct
    }
}
