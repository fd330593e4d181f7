//! Group commit under connection kills, on PostgreSQL and MariaDB: writers
//! send batches (chained deposits and transfers) straight to the store while
//! an administrator's connection keeps killing the service's connections —
//! mostly those caught inside the write or its COMMIT — so that commits are
//! cut off mid-flight and answered `Ambiguous`. The test goes on until it
//! has seen such outcomes, then reads everything back: every acknowledged
//! member is stored exactly once, every ambiguous one at most once (found or
//! not by its transactionId, never half), every refused one not at all, and
//! the feed still holds every stored event once, in a consistent order.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use accounts::domain::{Account, AccountId, Event, OwnerId, TransactionId};
use accounts::engine::{Entropy, SeededEntropy};
use accounts::store::{AppendError, Commit, EventStore, RecordedEvent, StoreError, StoreOptions};
use testkit::commits::{self, deposited, opened, whole_feed};
use testkit::database::{Connections, Killer};
use testkit::{Backend, TestStore};

const ACCOUNTS: usize = 8;
const WRITERS: u64 = 6;
/// Enough cut-off commits to call the proof made.
const AMBIGUOUS_WANTED: usize = 8;
/// Per writer, whatever happens.
const BATCHES_MAX: usize = 400;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs ACCOUNTS_TEST_POSTGRES_URL"]
async fn postgres_batches_cut_off_mid_commit_lose_and_double_nothing() {
    batches_under_kills(Backend::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs ACCOUNTS_TEST_MYSQL_URL"]
async fn mysql_batches_cut_off_mid_commit_lose_and_double_nothing() {
    batches_under_kills(Backend::Mysql).await;
}

/// One member of a batch and the answer it got.
struct Answered {
    commit: Commit,
    answer: Result<(), AppendError>,
}

#[derive(Default)]
struct Counts {
    ambiguous: AtomicUsize,
    kills: AtomicUsize,
}

async fn batches_under_kills(backend: Backend) {
    let options = StoreOptions {
        pool_size: 6,
        connect_timeout: Duration::from_secs(10),
        acquire_timeout: Duration::from_secs(5),
    };
    let test = TestStore::open_with(backend, options).await;
    let entropy = SeededEntropy::from_os();
    let accounts: Vec<AccountId> = (0..ACCOUNTS)
        .map(|_| AccountId::from_uuid(entropy.uuid()))
        .collect();
    for account in &accounts {
        for commit in opening(*account, &entropy) {
            test.store.append(&commit).await.expect("open");
        }
    }
    let counts = Arc::new(Counts::default());
    let done = Arc::new(AtomicBool::new(false));
    let killer = {
        let (done, counts) = (done.clone(), counts.clone());
        let killer = test.database().expect("a server database").killer().await;
        tokio::spawn(async move { kill_until_done(killer, &done, &counts).await })
    };
    let writers: Vec<_> = (0..WRITERS)
        .map(|writer| {
            let (store, accounts, counts) = (test.store.clone(), accounts.clone(), counts.clone());
            tokio::spawn(async move { write_batches(&*store, &accounts, writer, &counts).await })
        })
        .collect();
    let mut answered = Vec::new();
    for writer in writers {
        answered.extend(writer.await.expect("writer"));
    }
    done.store(true, Ordering::SeqCst);
    killer.await.expect("killer");

    let report = check(&*test.store, &accounts, &answered).await;
    eprintln!(
        "{backend:?}: {} members in batches, {} connections killed; {} applied, {} refused, \
         {} unavailable, {} ambiguous ({} of them landed)",
        answered.len(),
        counts.kills.load(Ordering::SeqCst),
        report.applied,
        report.refused,
        report.unavailable,
        report.ambiguous,
        report.ambiguous_landed
    );
    assert!(
        report.ambiguous > 0,
        "no commit was cut off mid-flight: the test proved nothing"
    );
}

/// The account opened, then funded for every transfer out of it.
fn opening(account: AccountId, entropy: &SeededEntropy) -> [Commit; 2] {
    let owner = OwnerId::from_uuid(entropy.uuid());
    [
        commit_of(vec![(account, 1, opened(owner))], entropy),
        commit_of(vec![(account, 2, deposited(1_000_000, 1_000_000))], entropy),
    ]
}

/// A commit of these events under one new transactionId.
fn commit_of(events: Vec<(AccountId, u64, Event)>, entropy: &SeededEntropy) -> Commit {
    commits::commit_of(events, TransactionId::from_uuid(entropy.uuid()))
}

/// Kills the database's connections every few milliseconds — three times in
/// four only those inside the write or its COMMIT — until `done`.
async fn kill_until_done(mut killer: Killer, done: &AtomicBool, counts: &Counts) {
    let entropy = SeededEntropy::from_os();
    while !done.load(Ordering::SeqCst) {
        tokio::time::sleep(Duration::from_millis(5 + entropy.below(20))).await;
        let which = match entropy.below(4) {
            0 => Connections::All,
            _ => Connections::Committing,
        };
        counts
            .kills
            .fetch_add(killer.kill(which).await, Ordering::SeqCst);
    }
}

/// Batches of 2–5 members built from the current heads — chained deposits
/// on one account, transfers, deposits on others — until enough commits
/// were cut off (or `BATCHES_MAX`).
async fn write_batches(
    store: &dyn EventStore,
    accounts: &[AccountId],
    writer: u64,
    counts: &Counts,
) -> Vec<Answered> {
    let entropy = SeededEntropy::new(77 + writer);
    let mut answered = Vec::new();
    for round in 0..BATCHES_MAX {
        if counts.ambiguous.load(Ordering::SeqCst) >= AMBIGUOUS_WANTED && round >= 20 {
            break;
        }
        let Ok(batch) = build_batch(store, accounts, &entropy).await else {
            continue;
        };
        let answers = store.append_batch(&batch).await;
        assert_eq!(answers.len(), batch.len());
        for (commit, answer) in batch.into_iter().zip(answers) {
            if matches!(answer, Err(AppendError::Ambiguous(_))) {
                counts.ambiguous.fetch_add(1, Ordering::SeqCst);
            }
            answered.push(Answered { commit, answer });
        }
    }
    answered
}

async fn build_batch(
    store: &dyn EventStore,
    accounts: &[AccountId],
    entropy: &SeededEntropy,
) -> Result<Vec<Commit>, StoreError> {
    let pick = || accounts[entropy.below(accounts.len() as u64) as usize];
    let mut heads: HashMap<AccountId, (i64, u64)> = HashMap::new();
    let mut batch = Vec::new();
    for _ in 0..2 + entropy.below(4) {
        let (from, to) = (pick(), pick());
        for account in [from, to] {
            if let std::collections::hash_map::Entry::Vacant(entry) = heads.entry(account) {
                let (state, version) = store.load(account, None).await?.fold();
                entry.insert((state.balance(), version));
            }
        }
        let amount = entropy.below(50) as i64 + 1;
        let commit = if from == to || entropy.below(2) == 0 {
            let (balance, version) = heads[&from];
            heads.insert(from, (balance + amount, version + 1));
            let event = deposited(amount, balance + amount);
            commit_of(vec![(from, version + 1, event)], entropy)
        } else {
            let ((from_balance, from_version), (to_balance, to_version)) =
                (heads[&from], heads[&to]);
            let from_head = (from_balance - amount, from_version + 1);
            let to_head = (to_balance + amount, to_version + 1);
            heads.insert(from, from_head);
            heads.insert(to, to_head);
            commits::transfer(
                (from, from_head.1, from_head.0),
                (to, to_head.1, to_head.0),
                amount,
                TransactionId::from_uuid(entropy.uuid()),
            )
        };
        batch.push(commit);
    }
    Ok(batch)
}

#[derive(Default)]
struct Report {
    applied: usize,
    refused: usize,
    unavailable: usize,
    ambiguous: usize,
    ambiguous_landed: usize,
}

/// Reads everything back (the connections are left alone now) and checks
/// every member against its answer, then the feed against the streams.
async fn check(store: &dyn EventStore, accounts: &[AccountId], answered: &[Answered]) -> Report {
    let mut stored: HashMap<(AccountId, u64), RecordedEvent> = HashMap::new();
    let mut occurrences: HashMap<(AccountId, TransactionId), usize> = HashMap::new();
    for account in accounts {
        let events = store.events(*account, 1, 1_000_000).await.expect("events");
        let sequences: Vec<u64> = events.iter().map(|e| e.sequence_number).collect();
        assert_eq!(
            sequences,
            (1..=events.len() as u64).collect::<Vec<_>>(),
            "gap-free"
        );
        // Folding checks every balance against the one before (debug builds).
        let (state, _) = store.load(*account, None).await.expect("load").fold();
        assert!(matches!(state, Account::Open { .. }));
        for event in events {
            *occurrences
                .entry((event.account_id, event.transaction_id))
                .or_default() += 1;
            stored.insert((event.account_id, event.sequence_number), event);
        }
    }
    assert!(
        occurrences.values().all(|&count| count == 1),
        "a transactionId written twice on one account"
    );
    let mut report = Report::default();
    for member in answered {
        let found = member
            .commit
            .events
            .iter()
            .filter(|event| stored.get(&(event.account_id, event.sequence_number)) == Some(*event))
            .count();
        let recorded = record_count(store, &member.commit).await;
        let whole = member.commit.events.len();
        let landed = match (found, recorded) {
            (0, 0) => false,
            (found, recorded) if found == whole && recorded == member.commit.transactions.len() => {
                true
            }
            _ => panic!(
                "member half written ({found} of {whole} events, {recorded} records): {:?}",
                member.commit
            ),
        };
        match &member.answer {
            Ok(()) => {
                assert!(
                    landed,
                    "an acknowledged member is missing: {:?}",
                    member.commit
                );
                report.applied += 1;
            }
            Err(AppendError::Ambiguous(_)) => {
                report.ambiguous += 1;
                report.ambiguous_landed += usize::from(landed);
            }
            Err(AppendError::Conflict(_)) => {
                assert!(!landed, "a refused member was written: {:?}", member.commit);
                report.refused += 1;
            }
            Err(AppendError::Store(_)) => {
                assert!(!landed, "a member answered 'unavailable' was written");
                report.unavailable += 1;
            }
        }
    }
    check_feed(store, &stored, answered).await;
    report
}

/// How many of the member's transaction records are stored.
async fn record_count(store: &dyn EventStore, commit: &Commit) -> usize {
    let mut count = 0;
    for record in &commit.transactions {
        let loaded = store
            .load(record.account_id, Some(record.transaction_id))
            .await
            .expect("load");
        count += usize::from(loaded.transaction.is_some());
    }
    count
}

/// The feed holds every stored event once, positions strictly increasing,
/// each account in sequence order, every landed transfer's legs adjacent.
async fn check_feed(
    store: &dyn EventStore,
    stored: &HashMap<(AccountId, u64), RecordedEvent>,
    answered: &[Answered],
) {
    let feed = whole_feed(store).await;
    for pair in feed.windows(2) {
        assert!(pair[0].position < pair[1].position);
    }
    let index_of: HashMap<(AccountId, u64), usize> = feed
        .iter()
        .enumerate()
        .map(|(index, item)| ((item.event.account_id, item.event.sequence_number), index))
        .collect();
    assert_eq!(index_of.len(), feed.len(), "an event twice in the feed");
    let in_feed: HashSet<&(AccountId, u64)> = index_of.keys().collect();
    let in_streams: HashSet<&(AccountId, u64)> = stored.keys().collect();
    assert_eq!(
        in_feed, in_streams,
        "the feed holds exactly the stored events"
    );
    for item in &feed {
        assert_eq!(
            &stored[&(item.event.account_id, item.event.sequence_number)],
            &item.event
        );
    }
    let mut last: HashMap<AccountId, u64> = HashMap::new();
    for item in &feed {
        let previous = last.insert(item.event.account_id, item.event.sequence_number);
        assert!(previous.is_none_or(|previous| previous < item.event.sequence_number));
    }
    for member in answered.iter().filter(|m| m.commit.events.len() == 2) {
        let keys: Vec<Option<&usize>> = member
            .commit
            .events
            .iter()
            .map(|e| index_of.get(&(e.account_id, e.sequence_number)))
            .filter(|index| index.is_some())
            .collect();
        if let [Some(first), Some(second)] = keys[..] {
            let landed = stored.get(&(
                member.commit.events[0].account_id,
                member.commit.events[0].sequence_number,
            )) == Some(&member.commit.events[0]);
            if landed {
                assert_eq!(
                    *second,
                    first + 1,
                    "a transfer's legs are adjacent in the feed"
                );
            }
        }
    }
}
