//! The event store contract, shared by every backend.
//!
//! A store keeps, per account, a gap-free sequence of events, the idempotency
//! records of the transactions applied to it, and every snapshot written. Its
//! one write, [`EventStore::append_batch`], applies several commits in order,
//! each atomic over every account it touches and succeeding only at the next
//! sequence numbers and only for transactionIds not yet recorded on those
//! accounts — enforced inside the store (by database constraints), never by a
//! check-then-write in the caller.
//!
//! Every event also gets a store-wide *position* when its commit commits:
//! strictly increasing, a commit's events consecutive, each account's events
//! in sequence order. [`EventStore::feed`] serves them with the guarantee that
//! no event commits later at or below a position any reader has been shown,
//! so a reader resuming from its last position misses nothing.
//!
//! This file is the contract alone: the types a store takes and returns,
//! its errors and the [`EventStore`] trait. Around it:
//!
//! - `rules.rs`: the batch rules every store applies alike — a commit's
//!   shape, which members of a batch fit ([`check_batch`]) and which are
//!   chained onto others ([`chained_onto`]), and [`Head`];
//! - `open.rs`: [`open`], the one place that knows every backend (the URL's
//!   scheme picks it), the [`StoreOptions`], and [`redact`] for the URLs it
//!   prints;
//! - `durability.rs`: what the database says, at opening, about whether a
//!   commit it acknowledges survives a crash or a failover;
//! - the backends: `memory.rs`; `sqlite.rs`, `postgres.rs` and `mysql.rs`,
//!   each its SQL and its dialect's particulars, over what the three share
//!   in `sql/` (see its header).

pub mod durability;
mod memory;
mod mysql;
mod open;
mod postgres;
mod rules;
mod sql;
mod sqlite;

pub use durability::Durability;
pub use memory::MemoryStore;
pub use mysql::MysqlStore;
pub use open::{
    ACQUIRE_TIMEOUT_MS, CONNECT_TIMEOUT_MS, DB_POOL_SIZE, OpenError, OpenedStore, StoreOptions,
    open, redact,
};
pub use postgres::PostgresStore;
pub use rules::{Head, chained_onto, check_batch};
pub use sqlite::SqliteStore;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::domain::{Account, AccountId, Event, Fingerprint, Timestamp, TransactionId};

/// One stored event with its place in the account's stream.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RecordedEvent {
    pub account_id: AccountId,
    pub sequence_number: u64,
    pub transaction_id: TransactionId,
    pub event: Event,
    pub recorded_at: Timestamp,
}

/// One event of the feed: its store-wide position and the event.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FeedEvent {
    /// ≥ 1, strictly increasing over the whole store; gaps are allowed.
    pub position: u64,
    pub event: RecordedEvent,
}

/// Where in an account's history [`EventStore::load_at`] stops.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum PointInTime {
    /// Right after the event with this sequence number.
    Version(u64),
    /// After the longest prefix of the stream whose events all have
    /// `recorded_at` ≤ this time.
    Time(Timestamp),
}

/// The state of an account as of a sequence number, stored so that loading
/// costs O(events since the snapshot), not O(history). Every snapshot is
/// kept, so that a past state costs the same.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Snapshot {
    pub account_id: AccountId,
    pub sequence_number: u64,
    pub state: Account,
    /// The largest `recorded_at` of the account's events up to and
    /// including `sequence_number` (clocks of several instances need not
    /// agree, so it is a running maximum, not the last event's time). `None`
    /// when unknown; such a snapshot is never used for a point in time.
    pub recorded_until: Option<Timestamp>,
}

/// "This transactionId was applied to this account, as this operation."
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TransactionRecord {
    pub account_id: AccountId,
    pub transaction_id: TransactionId,
    pub fingerprint: Fingerprint,
}

/// Everything one command writes, all or nothing.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Commit {
    /// Per account, contiguous and starting right after its last stored event.
    pub events: Vec<RecordedEvent>,
    pub transactions: Vec<TransactionRecord>,
    pub snapshots: Vec<Snapshot>,
}

impl Commit {
    /// The accounts touched, in canonical (ascending) order: stores write in
    /// this order so that opposite transfers cannot deadlock.
    pub fn accounts(&self) -> Vec<AccountId> {
        let mut accounts: Vec<AccountId> = self.events.iter().map(|e| e.account_id).collect();
        accounts.sort_unstable();
        accounts.dedup();
        accounts
    }
}

/// What loading an account returns: the latest snapshot, the events after
/// it, and — when asked for — the record of one transactionId, so that the
/// engine learns state and idempotency in one round trip.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Loaded {
    pub snapshot: Option<Snapshot>,
    pub events: Vec<RecordedEvent>,
    pub transaction: Option<TransactionRecord>,
}

impl Loaded {
    /// The account's state and its version (the last sequence number).
    pub fn fold(&self) -> (Account, u64) {
        let (state, version) = match &self.snapshot {
            Some(snapshot) => (snapshot.state.clone(), snapshot.sequence_number),
            None => (Account::Unopened, 0),
        };
        let version = self.events.last().map_or(version, |e| e.sequence_number);
        (
            crate::domain::replay(state, self.events.iter().map(|e| &e.event)),
            version,
        )
    }

    /// The largest `recorded_at` of every event up to the last one loaded:
    /// the snapshot's `recorded_until` and the events after it. `None` when
    /// there is no event, or when the snapshot does not know it.
    pub fn recorded_until(&self) -> Option<Timestamp> {
        let loaded = self.events.iter().map(|event| event.recorded_at).max();
        match (&self.snapshot, loaded) {
            (Some(snapshot), Some(loaded)) => Some(snapshot.recorded_until?.max(loaded)),
            (Some(snapshot), None) => snapshot.recorded_until,
            (None, loaded) => loaded,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
pub enum StoreError {
    /// The store cannot be reached or did not answer in time.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// The store answered with data it should never hold.
    #[error("store data is corrupt: {0}")]
    Corrupt(String),
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
pub enum AppendError {
    /// Another writer got there first: a sequence number or a transactionId
    /// is already taken. Reload and decide again.
    #[error("conflict: {0}")]
    Conflict(String),
    /// The commit was sent but its outcome is unknown (the reply was lost).
    /// It may or may not have landed; only reading the store can tell.
    #[error("commit outcome unknown: {0}")]
    Ambiguous(String),
    /// Nothing was written.
    #[error(transparent)]
    Store(#[from] StoreError),
}

#[async_trait]
pub trait EventStore: Send + Sync + 'static {
    /// The latest snapshot of `account`, the events after it, and the record
    /// of `transaction` on `account` if there is one.
    async fn load(
        &self,
        account: AccountId,
        transaction: Option<TransactionId>,
    ) -> Result<Loaded, StoreError>;

    /// [`EventStore::load`] of several accounts in one go: one `Loaded` per
    /// request, in the order asked, as `load` answers it (an unknown account
    /// is the empty `Loaded`; a request may repeat, and each is answered),
    /// each as the store held it at some point during the call.
    ///
    /// The default loads one account after the other; a store whose
    /// round trips cost more than its queries does it in one statement and
    /// says so in [`EventStore::loads_in_batches`].
    async fn load_many(
        &self,
        requests: &[(AccountId, Option<TransactionId>)],
    ) -> Result<Vec<Loaded>, StoreError> {
        let mut loaded = Vec::with_capacity(requests.len());
        for &(account, transaction) in requests {
            loaded.push(self.load(account, transaction).await?);
        }
        Ok(loaded)
    }

    /// Whether loads that arrive together are better sent as one
    /// [`EventStore::load_many`] than one by one: a store whose
    /// `load_many` is one statement over a network.
    fn loads_in_batches(&self) -> bool {
        false
    }

    /// The account as of a point in its history: the latest snapshot at or
    /// before the point and the events after it up to the point, never a
    /// transaction record. The work is bounded by the snapshot interval, not
    /// by the history.
    ///
    /// - `Version(n)`: the latest snapshot with sequence number ≤ n and the
    ///   events after it up to n. Beyond the head it stops at the head: the
    ///   caller compares the folded version with n.
    /// - `Time(t)`: the latest snapshot whose `recorded_until` is known and
    ///   ≤ t, then the events after it, in order, up to (not including) the
    ///   first one recorded after t.
    async fn load_at(&self, account: AccountId, at: PointInTime) -> Result<Loaded, StoreError>;

    /// Up to `limit` events of `account` from sequence number `from` on.
    async fn events(
        &self,
        account: AccountId,
        from: u64,
        limit: usize,
    ) -> Result<Vec<RecordedEvent>, StoreError>;

    /// Up to `limit` committed events with a position greater than `after`,
    /// in position order.
    ///
    /// Positions are strictly increasing store-wide, a commit's events have
    /// consecutive positions in the commit's order (both legs of a transfer
    /// adjacent), and an account's events are in sequence order. **The
    /// guarantee**: once any reader has been shown position p, no event with
    /// a position ≤ p commits later. So a reader that starts at 0 and always
    /// resumes after the last position it was given sees every committed
    /// event exactly once, and never an uncommitted one.
    async fn feed(&self, after: u64, limit: usize) -> Result<Vec<FeedEvent>, StoreError>;

    /// Group commit: applies `commits` in order and answers for each, in the
    /// same order.
    ///
    /// - Each member is checked against the state left by the members before
    ///   it that succeeded, so two members for one account chain (the second
    ///   may start right after the first's last event).
    /// - Every member that passes is written in one database transaction (one
    ///   WAL flush), all its rows or none.
    /// - A member that does not fit (a head moved, a transactionId already
    ///   recorded, a malformed commit) gets `Err(Conflict)` and writes
    ///   nothing; it never takes the others down. A member chained onto a
    ///   refused one (its first event right after the refused member's last on
    ///   some account, see [`chained_onto`]) is refused too — also when
    ///   another writer's event has taken the refused member's place, where
    ///   its head check alone would pass.
    /// - A COMMIT whose outcome is unknown (the connection lost during it)
    ///   answers `Err(Ambiguous)` for every member that was to be written;
    ///   members refused before keep their `Conflict`.
    /// - Nothing sent, or the connection unusable before COMMIT: every member
    ///   not already refused gets `Err(Store(Unavailable))`.
    async fn append_batch(&self, commits: &[Commit]) -> Vec<Result<(), AppendError>>;

    /// Writes one commit atomically: a batch of one.
    async fn append(&self, commit: &Commit) -> Result<(), AppendError> {
        self.append_batch(std::slice::from_ref(commit))
            .await
            .pop()
            .unwrap_or_else(|| {
                Err(AppendError::Store(StoreError::Corrupt(
                    "a batch of one was answered with no result".to_owned(),
                )))
            })
    }

    /// Answers when the store is reachable and takes writes (a server
    /// store: a primary, not read-only); `/ready` asks it.
    async fn ping(&self) -> Result<(), StoreError>;

    /// Whether the engine should gather this store's appends into batches.
    /// Batching is right for every store; a store whose append is a few
    /// microseconds under a lock and takes effect in the one poll that
    /// starts it (so a dropped caller leaves nothing half-done) gains
    /// nothing from it and loses the hand-off to the committer's task.
    fn group_commit(&self) -> GroupCommit {
        GroupCommit::Batch
    }

    /// The connection pool's current use, for the pool gauges; `None` for
    /// stores without a pool.
    fn pool_status(&self) -> Option<PoolStatus> {
        None
    }

    /// `accounts_db_pool_acquire_seconds`: how long store calls waited for
    /// a pooled connection, for the app serving the store to export; `None`
    /// for stores without a pool.
    fn pool_acquire_seconds(&self) -> Option<prometheus::HistogramVec> {
        None
    }
}

/// How the engine hands a store its appends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GroupCommit {
    /// Through the group committer: what arrives together is one
    /// [`EventStore::append_batch`] (one transaction, one flush).
    Batch,
    /// Each in its caller's task, a batch of one, under the same timeout.
    Direct,
}

/// Connections of a store's pool, by state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PoolStatus {
    pub idle: u64,
    pub in_use: u64,
}
