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

pub mod durability;
mod memory;
mod mysql;
mod postgres;
mod sql;
mod sqlite;

pub use durability::Durability;
pub use memory::MemoryStore;
pub use mysql::MysqlStore;
pub use postgres::PostgresStore;
pub use sql::{
    Dialect, ErrorClass, WriteStage, classify_error, classify_write_error, mysql_number_class,
    sqlstate_class,
};
pub use sqlite::SqliteStore;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::domain::{Account, AccountId, Event, Fingerprint, Timestamp, TransactionId};
use durability::{MysqlSettings, PostgresSettings};

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

    /// The checks every store makes before writing, that need nothing but
    /// the commit itself: each account's events numbered from 1 and
    /// contiguous, no transactionId twice on one account, every snapshot at
    /// an event of this commit. Returns the heads: per account touched, in
    /// canonical order, the sequence number its stored stream must end at
    /// (the commit's first number − 1). What needs the stored data — the
    /// heads, transactionIds already recorded — is the store's to check,
    /// atomically with the write.
    pub fn check_shape(&self) -> Result<Vec<Head>, AppendError> {
        let mut next: HashMap<AccountId, u64> = HashMap::new();
        let mut heads = Vec::new();
        for event in &self.events {
            let account = event.account_id;
            if event.sequence_number == 0 {
                return Err(AppendError::Conflict(format!(
                    "account {account}: sequence numbers start at 1"
                )));
            }
            let expected = next.entry(account).or_insert_with(|| {
                heads.push(Head {
                    account_id: account,
                    sequence_number: event.sequence_number - 1,
                });
                event.sequence_number
            });
            if event.sequence_number != *expected {
                return Err(AppendError::Conflict(format!(
                    "account {account}: events of one commit must be contiguous, got {} after {}",
                    event.sequence_number,
                    *expected - 1
                )));
            }
            *expected += 1;
        }
        let mut snapshot_at = HashSet::new();
        for snapshot in &self.snapshots {
            if !snapshot_at.insert((snapshot.account_id, snapshot.sequence_number)) {
                return Err(AppendError::Conflict(format!(
                    "two snapshots of account {} at {} in one commit",
                    snapshot.account_id, snapshot.sequence_number
                )));
            }
        }
        let mut seen = HashSet::new();
        for record in &self.transactions {
            if !seen.insert((record.account_id, record.transaction_id)) {
                return Err(AppendError::Conflict(format!(
                    "transaction {} appears twice for account {} in one commit",
                    record.transaction_id, record.account_id
                )));
            }
        }
        for snapshot in &self.snapshots {
            let last = next.get(&snapshot.account_id).map_or(0, |n| n - 1);
            if snapshot.sequence_number == 0 || snapshot.sequence_number > last {
                return Err(AppendError::Conflict(format!(
                    "snapshot of account {} at {} is not covered by the commit",
                    snapshot.account_id, snapshot.sequence_number
                )));
            }
        }
        heads.sort_by_key(|head| head.account_id);
        Ok(heads)
    }
}

/// Decides which members of a batch fit, by the rules every store shares
/// (see [`EventStore::append_batch`]): each member's shape, then its heads
/// and transactionIds against what the store holds — `stored_head(account)`,
/// the last stored sequence number (0: none), and `recorded(account,
/// transaction)` — as changed by the members before it that fit. A member
/// chained onto a refused one is refused too (see [`chained_onto`]). A store
/// calls it with what it read, writes the members that fit, and lets its
/// constraints refuse anything that changed in between.
pub fn check_batch<'c>(
    commits: impl IntoIterator<Item = &'c Commit>,
    stored_head: impl Fn(AccountId) -> u64,
    recorded: impl Fn(AccountId, TransactionId) -> bool,
) -> Vec<Result<(), AppendError>> {
    let commits: Vec<&Commit> = commits.into_iter().collect();
    let chains = chained_onto(&commits);
    let mut heads: HashMap<AccountId, u64> = HashMap::new();
    let mut taken: HashSet<(AccountId, TransactionId)> = HashSet::new();
    let mut results: Vec<Result<(), AppendError>> = Vec::with_capacity(commits.len());
    for (commit, chain) in commits.iter().zip(&chains) {
        if let Some(refused) = chain.iter().find(|&&earlier| results[earlier].is_err()) {
            results.push(Err(AppendError::Conflict(format!(
                "chained onto member {refused} of the batch, which was refused"
            ))));
            continue;
        }
        let check = || -> Result<(), AppendError> {
            for head in commit.check_shape()? {
                let current = match heads.get(&head.account_id) {
                    Some(current) => *current,
                    None => stored_head(head.account_id),
                };
                if current != head.sequence_number {
                    return Err(head.moved(current));
                }
            }
            for record in &commit.transactions {
                let key = (record.account_id, record.transaction_id);
                if taken.contains(&key) || recorded(key.0, key.1) {
                    return Err(AppendError::Conflict(format!(
                        "transaction {} already recorded on account {}",
                        record.transaction_id, record.account_id
                    )));
                }
            }
            Ok(())
        };
        let result = check();
        if result.is_ok() {
            for event in &commit.events {
                heads.insert(event.account_id, event.sequence_number);
            }
            let records = commit.transactions.iter();
            taken.extend(records.map(|record| (record.account_id, record.transaction_id)));
        }
        results.push(result);
    }
    results
}

/// For each member of a batch, the earlier members it is chained onto: those
/// whose events on an account it touches end at or beyond where it starts
/// (`earlier head < its head ≤ earlier last`). Such a member was decided on
/// the state an earlier member leaves, so it must not land when that member
/// does not — even if another writer's event took the earlier member's
/// place, which the head check alone would let through.
pub fn chained_onto(commits: &[&Commit]) -> Vec<Vec<usize>> {
    let spans: Vec<HashMap<AccountId, (u64, u64)>> = commits
        .iter()
        .map(|commit| {
            let mut spans: HashMap<AccountId, (u64, u64)> = HashMap::new();
            for event in &commit.events {
                let sequence = event.sequence_number;
                let span = spans
                    .entry(event.account_id)
                    .or_insert((sequence, sequence));
                span.0 = span.0.min(sequence);
                span.1 = span.1.max(sequence);
            }
            spans
        })
        .collect();
    spans
        .iter()
        .enumerate()
        .map(|(member, own)| {
            (0..member)
                .filter(|&earlier| {
                    own.iter().any(|(account, (first, _))| {
                        let head = first.saturating_sub(1);
                        spans[earlier]
                            .get(account)
                            .is_some_and(|(from, to)| from.saturating_sub(1) < head && head <= *to)
                    })
                })
                .collect()
        })
        .collect()
}

/// Where an account's stored stream must end for a commit to fit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Head {
    pub account_id: AccountId,
    /// The last stored sequence number (0: no event yet).
    pub sequence_number: u64,
}

impl Head {
    /// The conflict of a stream that ends at `stored`, not where the commit
    /// expects: another writer got there first.
    pub fn moved(&self, stored: u64) -> AppendError {
        Head::moved_at(&self.account_id, stored, self.sequence_number)
    }

    /// [`Head::moved`] for a store that holds the head in its own types.
    pub fn moved_at(
        account: &dyn std::fmt::Display,
        stored: impl std::fmt::Display,
        expected: impl std::fmt::Display,
    ) -> AppendError {
        AppendError::Conflict(format!(
            "account {account} is at sequence number {stored}, the commit expects {expected}"
        ))
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

impl PoolStatus {
    fn of<DB: sqlx::Database>(pool: &sqlx::Pool<DB>) -> PoolStatus {
        let size = u64::from(pool.size());
        let idle = pool.num_idle() as u64;
        PoolStatus {
            idle,
            in_use: size.saturating_sub(idle),
        }
    }
}

/// Default database pool size: enough for a few hundred requests per
/// second at a few milliseconds each, small enough that several instances
/// fit within PostgreSQL's default of 100 connections.
pub const DB_POOL_SIZE: u32 = 10;

/// Default wait for the database at start-up: covers a database container
/// that starts alongside the service.
pub const CONNECT_TIMEOUT_MS: u64 = 10_000;

/// Default wait for a pooled connection: a pool exhausted for this long is
/// an overload better answered 503 than queued further.
pub const ACQUIRE_TIMEOUT_MS: u64 = 2_000;

/// How to reach a database store.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoreOptions {
    /// Connections of the database pool.
    pub pool_size: u32,
    /// How long start-up waits for the database to answer.
    pub connect_timeout: Duration,
    /// How long one store call waits for a pooled connection (and, on
    /// SQLite, for the write lock) before it counts as unavailable.
    pub acquire_timeout: Duration,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            pool_size: DB_POOL_SIZE,
            connect_timeout: Duration::from_millis(CONNECT_TIMEOUT_MS),
            acquire_timeout: Duration::from_millis(ACQUIRE_TIMEOUT_MS),
        }
    }
}

/// A store opened from a URL.
pub struct OpenedStore {
    pub store: Arc<dyn EventStore>,
    /// The URL without its password, for logs.
    pub description: String,
    pub durable: bool,
    /// What the database said about keeping acknowledged commits.
    pub durability: Durability,
}

/// A store URL that cannot be used, in one line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OpenError {
    #[error(
        "unsupported store URL scheme in {0:?}: use memory:, sqlite:PATH, postgres://… or mysql://…"
    )]
    UnknownScheme(String),
    #[error("invalid store URL {url:?}: {reason}")]
    Invalid { url: String, reason: String },
    #[error("cannot open store {url}: {reason}")]
    Unreachable { url: String, reason: String },
}

/// The URL with any password replaced by `***`, safe to log — also when
/// the URL is malformed, since that is when it gets printed (in the start-up
/// error). The credentials end at the *last* `@`: a password holding `/`, `?`
/// or `#` (which should have been percent-encoded) makes the URL unparseable,
/// and splitting at the first `/` would print it. Query parameters naming a
/// password (`?password=…`, which PostgreSQL accepts) are hidden too.
pub fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let rest = match rest.rsplit_once('@') {
        Some((credentials, host_and_path)) => {
            let user = credentials
                .split_once(':')
                .map_or(credentials, |(user, _)| user);
            format!("{user}:***@{host_and_path}")
        }
        None => rest.to_owned(),
    };
    format!("{scheme}://{}", redact_query_passwords(&rest))
}

/// `a=1&password=x&sslpassword=y` → `a=1&password=***&sslpassword=***`.
fn redact_query_passwords(text: &str) -> String {
    let Some((before, query)) = text.split_once('?') else {
        return text.to_owned();
    };
    let parameters: Vec<String> = query
        .split('&')
        .map(|parameter| match parameter.split_once('=') {
            Some((key, _)) if key.to_ascii_lowercase().contains("password") => {
                format!("{key}=***")
            }
            _ => parameter.to_owned(),
        })
        .collect();
    format!("{before}?{}", parameters.join("&"))
}

/// Opens the store a URL names, creating or migrating its schema. A URL
/// that cannot be parsed, a database that does not answer within
/// `connect_timeout` and an unknown scheme are one-line errors.
pub async fn open(url: &str, options: &StoreOptions) -> Result<OpenedStore, OpenError> {
    let scheme = url.split(':').next().unwrap_or_default();
    // The settings are read once the pool is up, on one of its connections:
    // what a role's or database's defaults make of them is what counts.
    let unreadable = |error: sqlx::Error| OpenError::Unreachable {
        url: redact(url),
        reason: format!("reading its durability settings: {error}"),
    };
    let (store, durable, durability): (Arc<dyn EventStore>, bool, Durability) = match scheme {
        "memory" => (Arc::new(MemoryStore::new()), false, Durability::default()),
        "sqlite" => {
            let store = SqliteStore::open(url, options).await?;
            let durable = !store.in_memory();
            (Arc::new(store), durable, Durability::default())
        }
        "postgres" | "postgresql" => {
            let store = PostgresStore::open(url, options).await?;
            let settings = PostgresSettings::read(store.pool()).await;
            let durability = settings.map_err(unreadable)?.judge();
            (Arc::new(store), true, durability)
        }
        "mysql" | "mariadb" => {
            let store = MysqlStore::open(url, options).await?;
            let settings = MysqlSettings::read(store.pool()).await;
            let durability = settings.map_err(unreadable)?.judge();
            (Arc::new(store), true, durability)
        }
        _ => return Err(OpenError::UnknownScheme(redact(url))),
    };
    Ok(OpenedStore {
        store,
        description: redact(url),
        durable,
        durability,
    })
}

#[cfg(test)]
mod tests {
    use uuid::Uuid;

    use super::{AppendError, Commit, Head, RecordedEvent, Snapshot, TransactionRecord, redact};
    use crate::domain::{
        Account, AccountId, Event, Fingerprint, OwnerId, Timestamp, TransactionId,
    };

    fn account(n: u128) -> AccountId {
        AccountId::from_uuid(Uuid::from_u128(n))
    }

    fn event(account_id: AccountId, sequence_number: u64) -> RecordedEvent {
        RecordedEvent {
            account_id,
            sequence_number,
            transaction_id: TransactionId::from_uuid(Uuid::from_u128(7)),
            event: Event::AccountClosed,
            recorded_at: Timestamp::from_unix_millis(0),
        }
    }

    fn record(account_id: AccountId) -> TransactionRecord {
        TransactionRecord {
            account_id,
            transaction_id: TransactionId::from_uuid(Uuid::from_u128(7)),
            fingerprint: Fingerprint("close".to_owned()),
        }
    }

    fn refusal(commit: &Commit) -> String {
        match commit.check_shape() {
            Err(AppendError::Conflict(message)) => message,
            other => panic!("expected a conflict, got {other:?}"),
        }
    }

    #[test]
    fn the_heads_of_a_commit_are_in_canonical_order() {
        let (a, b) = (account(1), account(2));
        let commit = Commit {
            events: vec![event(b, 8), event(a, 3), event(a, 4)],
            transactions: vec![record(b), record(a)],
            snapshots: vec![Snapshot {
                account_id: a,
                sequence_number: 4,
                state: Account::Closed {
                    owner_id: OwnerId::from_uuid(Uuid::from_u128(9)),
                },
                recorded_until: None,
            }],
        };
        let heads = commit.check_shape().unwrap();
        let expected = [(a, 2), (b, 7)].map(|(account_id, sequence_number)| Head {
            account_id,
            sequence_number,
        });
        assert_eq!(heads, expected);
    }

    #[test]
    fn commits_of_the_wrong_shape_are_refused() {
        let a = account(1);
        let zero = Commit {
            events: vec![event(a, 0)],
            ..Commit::default()
        };
        assert!(refusal(&zero).contains("start at 1"));
        let gap = Commit {
            events: vec![event(a, 1), event(a, 3)],
            ..Commit::default()
        };
        assert!(refusal(&gap).contains("contiguous"));
        let twice = Commit {
            events: vec![event(a, 1)],
            transactions: vec![record(a), record(a)],
            ..Commit::default()
        };
        assert!(refusal(&twice).contains("twice"));
        let uncovered = Commit {
            events: vec![event(a, 1)],
            snapshots: vec![Snapshot {
                account_id: a,
                sequence_number: 2,
                state: Account::Unopened,
                recorded_until: None,
            }],
            ..Commit::default()
        };
        assert!(refusal(&uncovered).contains("not covered"));
    }

    #[test]
    fn redact_hides_passwords_only() {
        assert_eq!(
            redact("postgres://u:secret@h:5432/db"),
            "postgres://u:***@h:5432/db"
        );
        assert_eq!(redact("mysql://root@h/db"), "mysql://root:***@h/db");
        assert_eq!(redact("postgres://h/db"), "postgres://h/db");
        assert_eq!(redact("sqlite:accounts.db"), "sqlite:accounts.db");
    }

    #[test]
    fn redact_hides_passwords_of_malformed_urls_and_in_the_query() {
        for (url, secret) in [
            ("postgres://u:sec/ret@h:5432/db", "sec/ret"),
            ("postgres://u:sec?ret@h/db", "sec?ret"),
            ("mysql://u:a@b@h/db", "a@b"),
            ("postgres://u:pw@h/db?application_name=x@y", "pw"),
            (
                "postgres://u@h/db?sslmode=disable&password=secret",
                "secret",
            ),
            ("postgres://h/db?PASSWORD=secret&user=u", "secret"),
        ] {
            let redacted = redact(url);
            assert!(!redacted.contains(secret), "{url} -> {redacted}");
            assert!(redacted.contains("***"), "{url} -> {redacted}");
        }
        assert_eq!(
            redact("postgres://u@h/db?sslmode=disable&password=secret"),
            "postgres://u:***@h/db?sslmode=disable&password=***"
        );
    }
}
