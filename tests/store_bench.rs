//! A quick throughput check of the store itself (no HTTP, no engine): a
//! deposit as the engine makes it — load the account with the transactionId,
//! then append one event and its idempotency record — in a loop, by one
//! writer and by 16 concurrent writers over 64 accounts; then appends alone
//! by one writer that keeps the heads itself, one per call and 16 per
//! `append_batch`. Ignored: it measures, it asserts only that every deposit
//! landed. Run on PostgreSQL with
//!
//! ```sh
//! ACCOUNTS_TEST_POSTGRES_URL=postgres://postgres@127.0.0.1:5432/postgres \
//!   cargo test --release --test store_bench -- --ignored --nocapture
//! ```

use std::sync::Arc;
use std::time::Instant;

use accounts::domain::{AccountId, Event, OwnerId, TransactionId};
use accounts::engine::{Entropy, SeededEntropy};
use accounts::store::{Commit, EventStore};
use testkit::commits::{deposited, opened, record, recorded};
use testkit::database::test_options;
use testkit::{Backend, TestStore};

const ACCOUNTS: usize = 64;
const WRITERS: usize = 16;
const DEPOSITS_PER_WRITER: usize = 1_000;
const SEQUENTIAL_DEPOSITS: usize = 2_000;
/// Commits per append_batch in the group-commit phase.
const BATCH: usize = 16;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs ACCOUNTS_TEST_POSTGRES_URL; a measurement"]
async fn postgres_deposit_throughput() {
    throughput(Backend::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs ACCOUNTS_TEST_MYSQL_URL; a measurement"]
async fn mysql_deposit_throughput() {
    throughput(Backend::Mysql).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement"]
async fn sqlite_deposit_throughput() {
    throughput(Backend::Sqlite).await;
}

async fn throughput(backend: Backend) {
    let test = TestStore::open(backend).await;
    let store = without_flush_wait(&test).await;
    let entropy = SeededEntropy::new(11);
    let accounts: Vec<AccountId> = (0..ACCOUNTS)
        .map(|_| AccountId::from_uuid(entropy.uuid()))
        .collect();
    for account in &accounts {
        let owner = OwnerId::from_uuid(entropy.uuid());
        deposit(&*store, *account, opened(owner), &entropy).await;
    }

    let started = Instant::now();
    for _ in 0..SEQUENTIAL_DEPOSITS {
        deposit(&*store, accounts[0], one(), &entropy).await;
    }
    let sequential = SEQUENTIAL_DEPOSITS as f64 / started.elapsed().as_secs_f64();

    let started = Instant::now();
    let writers: Vec<_> = (0..WRITERS)
        .map(|writer| {
            let store = store.clone();
            let accounts = accounts.clone();
            tokio::spawn(async move {
                let entropy = SeededEntropy::new(100 + writer as u64);
                // Each writer owns its accounts: no conflicts, only throughput.
                let mine: Vec<AccountId> = accounts
                    .iter()
                    .skip(writer)
                    .step_by(WRITERS)
                    .copied()
                    .collect();
                for n in 0..DEPOSITS_PER_WRITER {
                    deposit(&*store, mine[n % mine.len()], one(), &entropy).await;
                }
            })
        })
        .collect();
    for writer in writers {
        writer.await.expect("writer");
    }
    let concurrent = (WRITERS * DEPOSITS_PER_WRITER) as f64 / started.elapsed().as_secs_f64();
    eprintln!(
        "{backend:?}: load + append deposits, 1 writer: {sequential:.0}/s; {WRITERS} writers over {ACCOUNTS} accounts: {concurrent:.0}/s"
    );

    // Appends alone, by one writer that keeps the heads itself (as an
    // engine with a state cache would): one commit per append, then
    // BATCH commits per append_batch.
    let mut heads = Vec::new();
    for account in &accounts {
        heads.push(store.load(*account, None).await.unwrap().fold().1);
    }
    let started = Instant::now();
    for n in 0..SEQUENTIAL_DEPOSITS {
        let index = n % ACCOUNTS;
        heads[index] += 1;
        let commit = deposit_commit(accounts[index], heads[index], &entropy);
        store.append(&commit).await.expect("append");
    }
    let single = SEQUENTIAL_DEPOSITS as f64 / started.elapsed().as_secs_f64();
    let started = Instant::now();
    for round in 0..SEQUENTIAL_DEPOSITS / BATCH {
        let batch: Vec<Commit> = (0..BATCH)
            .map(|member| {
                let index = (round * BATCH + member) % ACCOUNTS;
                heads[index] += 1;
                deposit_commit(accounts[index], heads[index], &entropy)
            })
            .collect();
        let results = store.append_batch(&batch).await;
        assert!(results.iter().all(Result::is_ok), "{results:?}");
    }
    let batched = SEQUENTIAL_DEPOSITS as f64 / started.elapsed().as_secs_f64();
    eprintln!(
        "{backend:?}: appends alone, 1 writer: {single:.0} commits/s; in batches of {BATCH}: {batched:.0} commits/s"
    );

    let mut events = 0;
    for account in &accounts {
        events += all_events(&store, *account).await;
    }
    assert_eq!(
        events,
        ACCOUNTS + 3 * SEQUENTIAL_DEPOSITS + WRITERS * DEPOSITS_PER_WRITER
    );
}

fn deposit_commit(account: AccountId, sequence: u64, entropy: &SeededEntropy) -> Commit {
    deposit_of(
        account,
        sequence,
        one(),
        TransactionId::from_uuid(entropy.uuid()),
    )
}

/// With `ACCOUNTS_BENCH_ASYNC_COMMIT` set, a PostgreSQL store whose
/// sessions do not wait for the WAL flush (`synchronous_commit = off` on the
/// test database): what is left is the statements' own cost, which the
/// flush otherwise hides on a slow disk.
async fn without_flush_wait(test: &TestStore) -> Arc<dyn EventStore> {
    if test.backend != Backend::Postgres
        || std::env::var_os("ACCOUNTS_BENCH_ASYNC_COMMIT").is_none()
    {
        return test.store.clone();
    }
    let database = test.database().expect("a server database");
    let mut admin = database.admin().await.unwrap();
    let sql = format!(
        "ALTER DATABASE {} SET synchronous_commit = off",
        database.name
    );
    admin.execute(sql).await.unwrap();
    eprintln!("synchronous_commit = off");
    let url = test.url.clone().unwrap();
    accounts::store::open(&url, &test_options())
        .await
        .unwrap()
        .store
}

fn one() -> Event {
    deposited(1, 0)
}

async fn all_events(store: &Arc<dyn EventStore>, account: AccountId) -> usize {
    store.events(account, 1, 1_000_000).await.unwrap().len()
}

/// One deposit as the engine makes it: a load with the transactionId, then
/// the append at the next sequence number.
async fn deposit(
    store: &dyn EventStore,
    account: AccountId,
    event: Event,
    entropy: &SeededEntropy,
) {
    let transaction_id = TransactionId::from_uuid(entropy.uuid());
    let loaded = store
        .load(account, Some(transaction_id))
        .await
        .expect("load");
    let (_, version) = loaded.fold();
    let commit = deposit_of(account, version + 1, event, transaction_id);
    store.append(&commit).await.expect("append");
}

/// One event and its idempotency record, as the engine writes a deposit.
fn deposit_of(
    account: AccountId,
    sequence: u64,
    event: Event,
    transaction_id: TransactionId,
) -> Commit {
    Commit {
        events: vec![recorded(account, sequence, transaction_id, event)],
        transactions: vec![record(account, transaction_id, "deposit amount=1")],
        ..Commit::default()
    }
}
