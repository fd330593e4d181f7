//! The feed's guarantee under concurrency, per store: 8 writers append
//! single deposits, transfers and batches (some members conflicting on
//! purpose) while 2 readers page the feed from position 0, always resuming
//! after the last position they were given, until the writers are done and
//! the feed is drained. Every reader must have seen exactly the committed
//! events, each once, every account's in sequence order, a transfer's legs
//! adjacent.
//!
//! The same checker must catch the classic bug: positions from a plain
//! sequence, taken before the commit and not held until it. Two test-only
//! variants plant it — a store decorator (any store) and, on PostgreSQL and
//! MariaDB, raw inserts that take `nextval` of a database sequence.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use accounts::domain::{AccountId, Event, OwnerId, TransactionId};
use accounts::engine::{Entropy, SeededEntropy};
use accounts::store::{AppendError, Commit, EventStore, FeedEvent, RecordedEvent, StoreError};
use async_trait::async_trait;
use testkit::commits::{self, deposited, opened};
use testkit::database::{ServerConnection, event_insert};
use testkit::{Backend, Decorated, Decorator, TestStore};

const WRITERS: u64 = 8;
const READERS: usize = 2;
const OPERATIONS_PER_WRITER: usize = 40;
const ACCOUNTS: usize = 6;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn memory_feed_readers_see_every_commit_once_in_order() {
    feed_under_concurrent_writers(Backend::Memory).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_feed_readers_see_every_commit_once_in_order() {
    feed_under_concurrent_writers(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs ACCOUNTS_TEST_POSTGRES_URL"]
async fn postgres_feed_readers_see_every_commit_once_in_order() {
    feed_under_concurrent_writers(Backend::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs ACCOUNTS_TEST_MYSQL_URL"]
async fn mysql_feed_readers_see_every_commit_once_in_order() {
    feed_under_concurrent_writers(Backend::Mysql).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_checker_catches_positions_taken_before_commit_memory() {
    planted_decorator_is_caught(Backend::Memory).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs ACCOUNTS_TEST_POSTGRES_URL"]
async fn the_checker_catches_a_plain_sequence_postgres() {
    planted_sequence_is_caught(Backend::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs ACCOUNTS_TEST_MYSQL_URL"]
async fn the_checker_catches_a_plain_sequence_mysql() {
    planted_sequence_is_caught(Backend::Mysql).await;
}

// ------------------------------------------------------------------ the run

/// What the writers committed: each landed commit's events, in order.
type Committed = Vec<Vec<(AccountId, u64)>>;

async fn feed_under_concurrent_writers(backend: Backend) {
    let test = TestStore::open(backend).await;
    let (committed, readers) = run(test.store.clone()).await;
    let events: usize = committed.iter().map(Vec::len).sum();
    eprintln!(
        "{backend:?}: {WRITERS} writers, {READERS} readers, {} commits, {events} events",
        committed.len()
    );
    let fresh = test.store.feed(0, usize::MAX).await.expect("feed");
    for (reader, seen) in readers.iter().enumerate() {
        if let Err(violations) = check(&committed, seen) {
            panic!("{backend:?}, reader {reader}: {violations}");
        }
        assert_eq!(
            seen, &fresh,
            "reader {reader} saw the feed as read afterwards"
        );
    }
}

/// Runs the writers and readers over `store` and returns what the writers
/// committed and what each reader saw.
async fn run(store: Arc<dyn EventStore>) -> (Committed, Vec<Vec<FeedEvent>>) {
    let entropy = SeededEntropy::from_os();
    let accounts: Vec<AccountId> = (0..ACCOUNTS)
        .map(|_| AccountId::from_uuid(entropy.uuid()))
        .collect();
    let mut committed = Committed::new();
    for account in &accounts {
        let owner = OwnerId::from_uuid(entropy.uuid());
        // Opened with enough money for every transfer out of it.
        let open = commit_of(
            vec![
                (*account, 1, opened(owner)),
                (*account, 2, deposited(1_000_000, 1_000_000)),
            ],
            &entropy,
        );
        store.append(&open).await.expect("open");
        committed.push(events_of(&open));
    }
    let done = Arc::new(AtomicBool::new(false));
    let readers: Vec<_> = (0..READERS)
        .map(|reader| {
            let (store, done) = (store.clone(), done.clone());
            tokio::spawn(async move { read_until_drained(&*store, &done, reader as u64).await })
        })
        .collect();
    let writers: Vec<_> = (0..WRITERS)
        .map(|writer| {
            let (store, accounts) = (store.clone(), accounts.clone());
            tokio::spawn(async move { write(&*store, &accounts, writer).await })
        })
        .collect();
    for writer in writers {
        committed.extend(writer.await.expect("writer"));
    }
    done.store(true, Ordering::SeqCst);
    let mut seen = Vec::new();
    for reader in readers {
        seen.push(reader.await.expect("reader"));
    }
    (committed, seen)
}

/// Pages the feed in small, varying pages, resuming after the last
/// position seen, until the writers are done and a page comes back empty.
async fn read_until_drained(
    store: &dyn EventStore,
    done: &AtomicBool,
    seed: u64,
) -> Vec<FeedEvent> {
    let entropy = SeededEntropy::new(seed);
    let mut seen: Vec<FeedEvent> = Vec::new();
    loop {
        // Read `done` before the page: an empty page read after it was set
        // comes after every write.
        let finished = done.load(Ordering::SeqCst);
        let after = seen.last().map_or(0, |event| event.position);
        let limit = entropy.below(12) as usize + 1;
        let page = store.feed(after, limit).await.expect("feed page");
        if page.is_empty() {
            if finished {
                return seen;
            }
            // Polling, not synchronisation: the loop ends on `done`.
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        seen.extend(page);
    }
}

/// Random operations; returns the commits that landed.
async fn write(store: &dyn EventStore, accounts: &[AccountId], writer: u64) -> Committed {
    let entropy = SeededEntropy::new(1_000 + writer);
    let mut committed = Committed::new();
    for _ in 0..OPERATIONS_PER_WRITER {
        let pick =
            |entropy: &SeededEntropy| accounts[entropy.below(accounts.len() as u64) as usize];
        let batch = match entropy.below(10) {
            0..=3 => deposits(store, pick(&entropy), 1, &entropy).await,
            4..=5 => {
                let (from, to) = (pick(&entropy), pick(&entropy));
                if from == to {
                    continue;
                }
                vec![transfer(store, from, to, &entropy).await]
            }
            6..=8 => {
                // Two chained deposits on one account, one on another, and
                // now and then a member at a stale head.
                let (first, second) = (pick(&entropy), pick(&entropy));
                let mut batch = deposits(store, first, 2, &entropy).await;
                if second != first {
                    batch.extend(deposits(store, second, 1, &entropy).await);
                }
                if entropy.below(3) == 0 {
                    batch.insert(1, stale(store, pick(&entropy), &entropy).await);
                }
                batch
            }
            _ => vec![stale(store, pick(&entropy), &entropy).await],
        };
        let results = store.append_batch(&batch).await;
        for (commit, result) in batch.iter().zip(results) {
            match result {
                Ok(()) => committed.push(events_of(commit)),
                Err(AppendError::Conflict(_)) => {}
                Err(other) => panic!("writer {writer}: {other:?}"),
            }
        }
    }
    committed
}

/// The account's balance and version.
async fn head(store: &dyn EventStore, account: AccountId) -> (i64, u64) {
    let (state, version) = store.load(account, None).await.expect("load").fold();
    (state.balance(), version)
}

/// `count` deposits of 1 at the account's next sequence numbers, each a
/// commit chained onto the one before (the members of a batch).
async fn deposits(
    store: &dyn EventStore,
    account: AccountId,
    count: u64,
    entropy: &SeededEntropy,
) -> Vec<Commit> {
    let (balance, version) = head(store, account).await;
    (1..=count)
        .map(|ahead| {
            let event = deposited(1, balance + ahead as i64);
            commit_of(vec![(account, version + ahead, event)], entropy)
        })
        .collect()
}

/// A deposit at a number already taken: always a conflict.
async fn stale(store: &dyn EventStore, account: AccountId, entropy: &SeededEntropy) -> Commit {
    let (balance, version) = head(store, account).await;
    commit_of(vec![(account, version, deposited(1, balance + 1))], entropy)
}

async fn transfer(
    store: &dyn EventStore,
    from: AccountId,
    to: AccountId,
    entropy: &SeededEntropy,
) -> Commit {
    let ((from_balance, from_version), (to_balance, to_version)) =
        (head(store, from).await, head(store, to).await);
    commits::transfer(
        (from, from_version + 1, from_balance - 1),
        (to, to_version + 1, to_balance + 1),
        1,
        TransactionId::from_uuid(entropy.uuid()),
    )
}

/// A commit of these events under one new transactionId.
fn commit_of(events: Vec<(AccountId, u64, Event)>, entropy: &SeededEntropy) -> Commit {
    commits::commit_of(events, TransactionId::from_uuid(entropy.uuid()))
}

fn events_of(commit: &Commit) -> Vec<(AccountId, u64)> {
    commit
        .events
        .iter()
        .map(|event| (event.account_id, event.sequence_number))
        .collect()
}

// -------------------------------------------------------------- the checker

/// What one reader saw against what was committed: positions strictly
/// increasing, no event twice, exactly the committed events, every account
/// in sequence order, every commit's events adjacent and in its order.
fn check(committed: &Committed, seen: &[FeedEvent]) -> Result<(), String> {
    let mut violations = Vec::new();
    for pair in seen.windows(2) {
        if pair[0].position >= pair[1].position {
            violations.push(format!(
                "position {} after {}",
                pair[1].position, pair[0].position
            ));
        }
    }
    let mut index_of: HashMap<(AccountId, u64), usize> = HashMap::new();
    for (index, event) in seen.iter().enumerate() {
        let key = (event.event.account_id, event.event.sequence_number);
        if index_of.insert(key, index).is_some() {
            violations.push(format!("{key:?} seen twice"));
        }
    }
    let expected: HashSet<(AccountId, u64)> = committed.iter().flatten().copied().collect();
    let missing: Vec<_> = expected
        .iter()
        .filter(|key| !index_of.contains_key(key))
        .collect();
    let extra: Vec<_> = index_of
        .keys()
        .filter(|key| !expected.contains(key))
        .collect();
    if !missing.is_empty() {
        violations.push(format!(
            "{} committed events never seen, e.g. {:?}",
            missing.len(),
            missing[0]
        ));
    }
    if !extra.is_empty() {
        violations.push(format!(
            "{} events seen that were not committed",
            extra.len()
        ));
    }
    let mut last: HashMap<AccountId, u64> = HashMap::new();
    for event in seen {
        let previous = last.insert(event.event.account_id, event.event.sequence_number);
        if previous.is_some_and(|previous| previous >= event.event.sequence_number) {
            violations.push(format!(
                "account {} out of order: {} after {}",
                event.event.account_id,
                event.event.sequence_number,
                previous.unwrap_or_default()
            ));
        }
    }
    for commit in committed.iter().filter(|commit| commit.len() > 1) {
        let indexes: Vec<Option<&usize>> = commit.iter().map(|key| index_of.get(key)).collect();
        let adjacent = indexes
            .windows(2)
            .all(|pair| matches!(pair, [Some(a), Some(b)] if **b == **a + 1));
        if !adjacent {
            violations.push(format!("a commit's events are not adjacent: {indexes:?}"));
        }
    }
    match violations.len() {
        0 => Ok(()),
        count => Err(format!(
            "{count} violations: {}",
            violations
                .iter()
                .take(5)
                .cloned()
                .collect::<Vec<_>>()
                .join("; ")
        )),
    }
}

// ----------------------------------------------------- the planted variants

/// Runs the same writers and readers over a store with positions from a
/// plain counter taken before the commit (the auto-increment bug) until the
/// checker catches it, and fails if it never does.
async fn planted_decorator_is_caught(backend: Backend) {
    let test = TestStore::open(backend).await;
    for round in 1..=5 {
        let planted = Arc::new(Decorated(PositionsTakenEarly::new(test.store.clone())));
        let (committed, readers) = run(planted).await;
        let caught = readers
            .iter()
            .filter_map(|seen| check(&committed, seen).err())
            .next();
        if let Some(violations) = caught {
            eprintln!("{backend:?}: caught in round {round}: {violations}");
            return;
        }
    }
    panic!("the checker never caught positions taken before the commit");
}

/// The bug, as a decorator: each commit takes its positions from a plain
/// counter when it starts, then commits a moment later; its events enter
/// the feed only then, at the positions taken earlier. Readers that were
/// already shown a later position never see them.
struct PositionsTakenEarly {
    inner: Arc<dyn EventStore>,
    next: AtomicU64,
    feed: Mutex<BTreeMap<u64, RecordedEvent>>,
    entropy: SeededEntropy,
}

impl PositionsTakenEarly {
    fn new(inner: Arc<dyn EventStore>) -> PositionsTakenEarly {
        PositionsTakenEarly {
            inner,
            next: AtomicU64::new(1),
            feed: Mutex::default(),
            entropy: SeededEntropy::from_os(),
        }
    }
}

#[async_trait]
impl Decorator for PositionsTakenEarly {
    fn inner(&self) -> &dyn EventStore {
        &*self.inner
    }

    async fn feed(&self, after: u64, limit: usize) -> Result<Vec<FeedEvent>, StoreError> {
        let feed = self.feed.lock().unwrap();
        Ok(feed
            .range(after.saturating_add(1)..)
            .take(limit)
            .map(|(position, event)| FeedEvent {
                position: *position,
                event: event.clone(),
            })
            .collect())
    }

    async fn append_batch(&self, commits: &[Commit]) -> Vec<Result<(), AppendError>> {
        let count: usize = commits.iter().map(|c| c.events.len()).sum();
        let first = self.next.fetch_add(count as u64, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_micros(self.entropy.below(3_000))).await;
        let results = self.inner.append_batch(commits).await;
        let mut feed = self.feed.lock().unwrap();
        let mut position = first;
        for (commit, result) in commits.iter().zip(&results) {
            for event in &commit.events {
                if result.is_ok() {
                    feed.insert(position, event.clone());
                }
                position += 1;
            }
        }
        results
    }
}

/// The bug in the database: writers insert events at `nextval` of a plain
/// sequence (PostgreSQL `CREATE SEQUENCE`, MariaDB's SEQUENCE), each in its
/// own transaction that commits a moment later, without the counter row;
/// readers page the store's real feed query.
async fn planted_sequence_is_caught(backend: Backend) {
    let test = TestStore::open(backend).await;
    let url = test.url.clone().expect("a server database");
    let mut connection = ServerConnection::connect(backend, &url).await.unwrap();
    let create = "CREATE SEQUENCE planted_positions".to_owned();
    connection.execute(create).await.unwrap();
    let done = Arc::new(AtomicBool::new(false));
    let readers: Vec<_> = (0..READERS)
        .map(|reader| {
            let (store, done) = (test.store.clone(), done.clone());
            tokio::spawn(async move { read_until_drained(&*store, &done, reader as u64).await })
        })
        .collect();
    let writers: Vec<_> = (0..WRITERS)
        .map(|writer| {
            let url = url.clone();
            tokio::spawn(async move { raw_writer(backend, &url, writer).await })
        })
        .collect();
    let mut committed = Committed::new();
    for writer in writers {
        committed.extend(writer.await.expect("writer"));
    }
    done.store(true, Ordering::SeqCst);
    let mut caught = Vec::new();
    for reader in readers {
        let seen = reader.await.expect("reader");
        caught.extend(check(&committed, &seen).err());
    }
    eprintln!("{backend:?}: planted sequence: {caught:?}");
    assert!(
        !caught.is_empty(),
        "the checker never caught the plain sequence"
    );
}

/// One account per writer, one event per transaction, each holding its
/// position for up to 3 ms before COMMIT.
async fn raw_writer(backend: Backend, url: &str, writer: u64) -> Committed {
    let entropy = SeededEntropy::new(5_000 + writer);
    let account = AccountId::from_uuid(entropy.uuid());
    let mut connection = ServerConnection::connect(backend, url).await.unwrap();
    let mut committed = Committed::new();
    for sequence in 1..=OPERATIONS_PER_WRITER as u64 {
        let transaction = entropy.uuid().to_string();
        let pause = Duration::from_micros(entropy.below(3_000));
        insert_slowly(&mut connection, account, sequence, transaction, pause).await;
        committed.push(vec![(account, sequence)]);
    }
    committed
}

/// Inserts one event at the sequence's next value and commits after
/// `pause`.
async fn insert_slowly(
    connection: &mut ServerConnection,
    account: AccountId,
    sequence: u64,
    transaction: String,
    pause: Duration,
) {
    let next = match connection {
        ServerConnection::Postgres(_) => "nextval('planted_positions')",
        ServerConnection::Mysql(_) => "NEXTVAL(planted_positions)",
    };
    let sql = event_insert(&account.to_string(), sequence as i64, &transaction, next);
    for statement in ["BEGIN".to_owned(), sql] {
        connection.execute(statement).await.unwrap();
    }
    tokio::time::sleep(pause).await;
    connection.execute("COMMIT".to_owned()).await.unwrap();
}
