//! The store contract, written once and run against every store: memory,
//! SQLite, PostgreSQL and MariaDB. Test names show the store
//! (`postgres::gap_is_a_conflict`). The server databases need
//! ACCOUNTS_TEST_POSTGRES_URL / ACCOUNTS_TEST_MYSQL_URL (a server where the
//! tests may create and drop databases) and are ignored without them.

use std::collections::HashMap;
use std::sync::Arc;

use accounts::domain::{
    Account, AccountId, Amount, Caller, Command, Event, OwnerId, Timestamp, TransactionId, replay,
};
use accounts::engine::{
    Clock, Engine, EngineConfig, EngineError, Entropy, Outcome, Request, SeededEntropy,
};
use accounts::store::{
    AppendError, Commit, EventStore, FeedEvent, GroupCommit, Loaded, PointInTime, RecordedEvent,
    Snapshot,
};
use testkit::commits::{
    RECORDED_AT, deposited, opened, record, recorded, single, transfer, whole_feed,
};
use testkit::stores::checked_stream;
use testkit::{Backend, TestInstance, TestStore};

/// One test function per contract case and store.
macro_rules! contract_suite {
    ($module:ident, $backend:expr, $attributes:tt; $($case:ident),* $(,)?) => {
        mod $module {
            $( contract_case!($attributes, $backend, $case); )*
        }
    };
}

macro_rules! contract_case {
    ([$($attribute:meta),*], $backend:expr, $case:ident) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
        $(#[$attribute])*
        async fn $case() {
            let store = super::TestStore::open($backend).await;
            super::$case(&store).await;
        }
    };
}

macro_rules! every_store {
    ($($case:ident),* $(,)?) => {
        contract_suite!(memory, super::Backend::Memory, []; $($case),*);
        contract_suite!(sqlite, super::Backend::Sqlite, []; $($case),*);
        contract_suite!(
            postgres,
            super::Backend::Postgres,
            [ignore = "needs ACCOUNTS_TEST_POSTGRES_URL"];
            $($case),*
        );
        contract_suite!(
            mysql,
            super::Backend::Mysql,
            [ignore = "needs ACCOUNTS_TEST_MYSQL_URL"];
            $($case),*
        );
    };
}

every_store!(
    empty_account_loads_empty,
    append_at_next_sequence,
    first_event_must_be_number_one,
    gap_is_a_conflict,
    duplicate_sequence_is_a_conflict,
    duplicate_transaction_is_a_conflict_and_writes_nothing,
    conflicting_part_of_a_commit_writes_nothing,
    transfer_commit_touches_both_accounts,
    events_round_trip_unchanged,
    load_returns_snapshot_tail_and_transaction,
    events_paging,
    concurrent_appends_at_one_sequence_one_wins,
    snapshot_plus_tail_equals_full_replay,
    same_transaction_from_eight_clients_applies_once_per_round,
    distinct_transactions_from_eight_clients_all_count,
    concurrent_transfers_conserve_the_total,
    batch_member_in_conflict_leaves_the_others_to_land,
    batch_members_of_one_account_chain,
    batch_member_chained_after_a_refused_one_fails,
    batch_whose_every_member_conflicts_writes_nothing,
    a_store_appended_to_directly_appends_in_the_poll_that_starts_it,
    feed_pages_every_event_in_commit_order,
    load_at_version_reads_from_the_nearest_snapshot,
    load_at_time_is_the_longest_prefix_recorded_by_then,
    engine_snapshots_carry_a_running_maximum_of_recorded_at,
    load_many_answers_each_request_as_load_does,
    load_many_of_nothing_is_nothing,
);

// ---------------------------------------------------------------- helpers

fn ids() -> SeededEntropy {
    SeededEntropy::from_os()
}

fn account(entropy: &SeededEntropy) -> AccountId {
    AccountId::from_uuid(entropy.uuid())
}

fn transaction(entropy: &SeededEntropy) -> TransactionId {
    TransactionId::from_uuid(entropy.uuid())
}

/// Opens `account` and deposits 1 `deposits` times, one commit each;
/// returns the transactionIds in order.
async fn history(store: &dyn EventStore, account: AccountId, deposits: u64) -> Vec<TransactionId> {
    let entropy = ids();
    let owner = OwnerId::from_uuid(entropy.uuid());
    let mut transactions = Vec::new();
    let tx = transaction(&entropy);
    store
        .append(&single(account, 1, tx, opened(owner)))
        .await
        .expect("open");
    transactions.push(tx);
    for n in 1..=deposits {
        let tx = transaction(&entropy);
        store
            .append(&single(account, n + 1, tx, deposited(1, n as i64)))
            .await
            .expect("deposit");
        transactions.push(tx);
    }
    transactions
}

fn assert_conflict(result: Result<(), AppendError>) {
    match result {
        Err(AppendError::Conflict(_)) => {}
        other => panic!("expected a conflict, got {other:?}"),
    }
}

async fn all_events(store: &dyn EventStore, account: AccountId) -> Vec<RecordedEvent> {
    store.events(account, 1, 100_000).await.expect("events")
}

// ---------------------------------------------------------- store contract

async fn empty_account_loads_empty(test: &TestStore) {
    let entropy = ids();
    let loaded = test
        .store
        .load(account(&entropy), Some(transaction(&entropy)))
        .await
        .unwrap();
    assert_eq!(loaded.snapshot, None);
    assert!(loaded.events.is_empty());
    assert_eq!(loaded.transaction, None);
    assert_eq!(loaded.fold(), (Account::Unopened, 0));
    assert!(all_events(&*test.store, account(&entropy)).await.is_empty());
}

async fn append_at_next_sequence(test: &TestStore) {
    let entropy = ids();
    let id = account(&entropy);
    history(&*test.store, id, 2).await;
    let loaded = test.store.load(id, None).await.unwrap();
    let (state, version) = loaded.fold();
    assert_eq!(version, 3);
    assert_eq!(state.balance(), 2);
    let sequences: Vec<u64> = loaded.events.iter().map(|e| e.sequence_number).collect();
    assert_eq!(sequences, [1, 2, 3]);
}

async fn first_event_must_be_number_one(test: &TestStore) {
    let entropy = ids();
    let id = account(&entropy);
    let owner = OwnerId::from_uuid(entropy.uuid());
    for sequence in [0, 2] {
        assert_conflict(
            test.store
                .append(&single(id, sequence, transaction(&entropy), opened(owner)))
                .await,
        );
    }
    assert!(all_events(&*test.store, id).await.is_empty());
}

async fn gap_is_a_conflict(test: &TestStore) {
    let entropy = ids();
    let id = account(&entropy);
    history(&*test.store, id, 1).await;
    let tx = transaction(&entropy);
    assert_conflict(test.store.append(&single(id, 4, tx, deposited(1, 2))).await);
    assert_eq!(all_events(&*test.store, id).await.len(), 2);
    // The refused commit's transactionId stays unused.
    assert_eq!(
        test.store.load(id, Some(tx)).await.unwrap().transaction,
        None
    );
}

async fn duplicate_sequence_is_a_conflict(test: &TestStore) {
    let entropy = ids();
    let id = account(&entropy);
    let first = history(&*test.store, id, 1).await;
    let tx = transaction(&entropy);
    assert_conflict(test.store.append(&single(id, 2, tx, deposited(5, 5))).await);
    let events = all_events(&*test.store, id).await;
    assert_eq!(events.len(), 2);
    assert_eq!(events[1].transaction_id, first[1]);
    assert_eq!(events[1].event, deposited(1, 1));
    assert_eq!(
        test.store.load(id, Some(tx)).await.unwrap().transaction,
        None
    );
}

async fn duplicate_transaction_is_a_conflict_and_writes_nothing(test: &TestStore) {
    let entropy = ids();
    let id = account(&entropy);
    let transactions = history(&*test.store, id, 1).await;
    // The next sequence number is free, but the transactionId is taken.
    assert_conflict(
        test.store
            .append(&single(id, 3, transactions[1], deposited(1, 2)))
            .await,
    );
    let events = all_events(&*test.store, id).await;
    assert_eq!(
        events.len(),
        2,
        "the event of the refused commit is not written"
    );
    let loaded = test.store.load(id, Some(transactions[1])).await.unwrap();
    assert_eq!(
        loaded.transaction,
        Some(record(id, transactions[1], "test"))
    );
}

/// A transfer whose second account conflicts leaves the first untouched:
/// all or nothing, in canonical account order and in reverse.
async fn conflicting_part_of_a_commit_writes_nothing(test: &TestStore) {
    let entropy = ids();
    let sorted_pair = || {
        let mut pair = [account(&entropy), account(&entropy)];
        pair.sort();
        pair
    };
    let ([low, high], [other_low, other_high]) = (sorted_pair(), sorted_pair());
    for (clean, busy) in [(low, high), (other_high, other_low)] {
        history(&*test.store, clean, 1).await;
        let busy_transactions = history(&*test.store, busy, 1).await;
        for conflict in ["sequence", "transaction"] {
            let tx = transaction(&entropy);
            let (busy_sequence, busy_tx) = match conflict {
                "sequence" => (2, tx),
                _ => (3, busy_transactions[1]),
            };
            let mut commit = Commit {
                events: vec![
                    recorded(clean, 3, tx, deposited(1, 2)),
                    recorded(busy, busy_sequence, busy_tx, deposited(1, 2)),
                ],
                transactions: vec![record(clean, tx, "test"), record(busy, busy_tx, "test")],
                snapshots: vec![Snapshot {
                    account_id: clean,
                    sequence_number: 3,
                    state: Account::Unopened,
                    recorded_until: None,
                }],
            };
            commit.events.sort_by_key(|e| e.account_id);
            commit.transactions.sort_by_key(|t| t.account_id);
            assert_conflict(test.store.append(&commit).await);
            let loaded = test.store.load(clean, Some(tx)).await.unwrap();
            assert_eq!(
                loaded.events.len(),
                2,
                "{conflict}: no event on the clean account"
            );
            assert_eq!(
                loaded.transaction, None,
                "{conflict}: no record on the clean account"
            );
            assert_eq!(
                loaded.snapshot, None,
                "{conflict}: no snapshot on the clean account"
            );
        }
    }
}

async fn transfer_commit_touches_both_accounts(test: &TestStore) {
    let entropy = ids();
    let mut pair = [account(&entropy), account(&entropy)];
    pair.sort();
    let [low, high] = pair;
    history(&*test.store, low, 2).await;
    history(&*test.store, high, 0).await;
    let tx = transaction(&entropy);
    let fingerprint = format!("transfer from={low} to={high} amount=2");
    let commit = Commit {
        events: vec![
            recorded(
                low,
                4,
                tx,
                Event::MoneyWithdrawn {
                    amount_withdrawn: 2,
                    balance: 0,
                    transfer_to: Some(high),
                },
            ),
            recorded(
                high,
                2,
                tx,
                Event::MoneyDeposited {
                    amount_deposited: 2,
                    balance: 2,
                    transfer_from: Some(low),
                },
            ),
        ],
        transactions: vec![
            record(low, tx, &fingerprint),
            record(high, tx, &fingerprint),
        ],
        snapshots: vec![],
    };
    test.store.append(&commit).await.expect("transfer");
    for (id, version, balance) in [(low, 4, 0), (high, 2, 2)] {
        let loaded = test.store.load(id, Some(tx)).await.unwrap();
        assert_eq!(loaded.fold().1, version);
        assert_eq!(loaded.fold().0.balance(), balance);
        assert_eq!(loaded.transaction, Some(record(id, tx, &fingerprint)));
    }
    // The same transfer again conflicts on both: nothing more is written.
    assert_conflict(test.store.append(&commit).await);
    assert_eq!(all_events(&*test.store, low).await.len(), 4);
    assert_eq!(all_events(&*test.store, high).await.len(), 2);
}

async fn events_round_trip_unchanged(test: &TestStore) {
    let entropy = ids();
    let id = account(&entropy);
    let other = account(&entropy);
    let owner = OwnerId::from_uuid(entropy.uuid());
    let events = [
        opened(owner),
        deposited(i64::MAX - 1, i64::MAX - 1),
        Event::MoneyWithdrawn {
            amount_withdrawn: i64::MAX - 1,
            balance: 0,
            transfer_to: Some(other),
        },
        Event::MoneyDeposited {
            amount_deposited: 7,
            balance: 7,
            transfer_from: Some(other),
        },
        Event::MoneyWithdrawn {
            amount_withdrawn: 7,
            balance: 0,
            transfer_to: None,
        },
        Event::AccountClosed,
    ];
    let mut written = Vec::new();
    for (index, event) in events.into_iter().enumerate() {
        let mut event = recorded(id, index as u64 + 1, transaction(&entropy), event);
        event.recorded_at = Timestamp::from_unix_millis(1_795_000_000_000 + index as i64 * 1001);
        test.store
            .append(&Commit {
                events: vec![event.clone()],
                transactions: vec![],
                snapshots: vec![],
            })
            .await
            .unwrap();
        written.push(event);
    }
    assert_eq!(all_events(&*test.store, id).await, written);
    assert_eq!(test.store.load(id, None).await.unwrap().events, written);
}

async fn load_returns_snapshot_tail_and_transaction(test: &TestStore) {
    let entropy = ids();
    let id = account(&entropy);
    let owner = OwnerId::from_uuid(entropy.uuid());
    let mut transactions = Vec::new();
    for sequence in 1..=7u64 {
        let tx = transaction(&entropy);
        let event = if sequence == 1 {
            opened(owner)
        } else {
            deposited(10, (sequence as i64 - 1) * 10)
        };
        let mut commit = single(id, sequence, tx, event);
        if sequence == 3 || sequence == 5 {
            commit.snapshots.push(Snapshot {
                account_id: id,
                sequence_number: sequence,
                state: Account::Open {
                    owner_id: owner,
                    balance: (sequence as i64 - 1) * 10,
                },
                recorded_until: Some(RECORDED_AT),
            });
        }
        test.store.append(&commit).await.unwrap();
        transactions.push(tx);
    }
    let loaded = test.store.load(id, Some(transactions[1])).await.unwrap();
    let snapshot = loaded.snapshot.clone().expect("the latest snapshot");
    assert_eq!(snapshot.sequence_number, 5);
    assert_eq!(snapshot.state.balance(), 40);
    let tail: Vec<u64> = loaded.events.iter().map(|e| e.sequence_number).collect();
    assert_eq!(tail, [6, 7]);
    assert_eq!(
        loaded.transaction,
        Some(record(id, transactions[1], "test"))
    );
    assert_eq!(
        loaded.fold(),
        (
            Account::Open {
                owner_id: owner,
                balance: 60
            },
            7
        )
    );
    let unknown = test
        .store
        .load(id, Some(transaction(&entropy)))
        .await
        .unwrap();
    assert_eq!(unknown.transaction, None);
    assert_eq!(test.store.load(id, None).await.unwrap().transaction, None);
}

async fn events_paging(test: &TestStore) {
    let entropy = ids();
    let id = account(&entropy);
    history(&*test.store, id, 9).await;
    let page = |from, limit| {
        let store = test.store.clone();
        async move {
            store
                .events(id, from, limit)
                .await
                .unwrap()
                .iter()
                .map(|e| e.sequence_number)
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(page(1, 3).await, [1, 2, 3]);
    assert_eq!(page(4, 3).await, [4, 5, 6]);
    assert_eq!(page(8, 100).await, [8, 9, 10]);
    assert_eq!(page(10, 1).await, [10]);
    assert!(page(11, 10).await.is_empty());
    assert!(page(u64::MAX, 10).await.is_empty());
    assert_eq!(page(1, 10_000).await.len(), 10);
    assert!(
        test.store
            .events(account(&entropy), 1, 10)
            .await
            .unwrap()
            .is_empty()
    );
}

async fn concurrent_appends_at_one_sequence_one_wins(test: &TestStore) {
    let entropy = ids();
    for _ in 0..5 {
        let id = account(&entropy);
        history(&*test.store, id, 1).await;
        let attempts = (0..8).map(|n| {
            let store = test.store.clone();
            let tx = transaction(&entropy);
            tokio::spawn(async move {
                let result = store
                    .append(&single(id, 3, tx, deposited(n + 1, n + 2)))
                    .await;
                (tx, result)
            })
        });
        let results: Vec<_> = futures_join(attempts).await;
        let winners: Vec<TransactionId> = results
            .iter()
            .filter(|(_, result)| result.is_ok())
            .map(|(tx, _)| *tx)
            .collect();
        assert_eq!(winners.len(), 1, "exactly one writer wins: {results:?}");
        for (_, result) in &results {
            if let Err(error) = result {
                assert!(matches!(error, AppendError::Conflict(_)), "{error:?}");
            }
        }
        let events = all_events(&*test.store, id).await;
        assert_eq!(events.len(), 3);
        assert_eq!(events[2].transaction_id, winners[0]);
    }
}

async fn futures_join<T: Send + 'static>(
    tasks: impl IntoIterator<Item = tokio::task::JoinHandle<T>>,
) -> Vec<T> {
    let mut results = Vec::new();
    for task in tasks.into_iter().collect::<Vec<_>>() {
        results.push(task.await.expect("task"));
    }
    results
}

// ----------------------------------------------------------- engine level

async fn open_account(engine: &Engine, id: AccountId) {
    // Any owner will do; one derived from the id keeps runs reproducible.
    let owner = OwnerId::from_uuid(*id.as_uuid());
    let outcome = engine
        .execute(Request {
            caller: Caller::Anyone,
            account: id,
            command: Command::Open { owner_id: owner },
            transaction_id: None,
        })
        .await
        .expect("open");
    assert_eq!(outcome, Outcome::Applied);
}

/// Sends a request until it gets a final answer, as a client retrying 409
/// with the same transactionId does. Contention may exhaust the engine's
/// own retries (409, "retrying can succeed"); a healthy store never makes it
/// answer 503, so an outage fails the test instead of being retried away.
async fn execute_until_final(engine: &Engine, request: Request) -> Result<Outcome, EngineError> {
    for _ in 0..100 {
        match engine.execute(request.clone()).await {
            Err(EngineError::Conflict(_)) => {
                tokio::time::sleep(std::time::Duration::from_millis(5)).await;
            }
            Err(EngineError::Store(error)) => panic!("a healthy store answered 503: {error}"),
            answer => return answer,
        }
    }
    panic!("still 409 after 100 client retries of {request:?}");
}

fn deposit(id: AccountId, amount: i64, tx: TransactionId) -> Request {
    Request {
        caller: Caller::Anyone,
        account: id,
        command: Command::Deposit {
            amount: Amount::new(amount).unwrap(),
        },
        transaction_id: Some(tx),
    }
}

async fn snapshot_plus_tail_equals_full_replay(test: &TestStore) {
    let engine = test.engine(1, 7);
    let entropy = ids();
    let id = account(&entropy);
    open_account(&engine, id).await;
    for n in 1..=60 {
        engine
            .execute(deposit(id, n, transaction(&entropy)))
            .await
            .unwrap();
        let loaded = test.store.load(id, None).await.unwrap();
        let events = all_events(&*test.store, id).await;
        let full = replay(Account::Unopened, events.iter().map(|e| &e.event));
        assert_eq!(loaded.fold(), (full, events.len() as u64));
        let expected_snapshot = (events.len() as u64 / 7) * 7;
        assert_eq!(
            loaded.snapshot.as_ref().map_or(0, |s| s.sequence_number),
            expected_snapshot
        );
        assert!(loaded.events.len() < 7, "loading reads only the tail");
    }
    assert_eq!(
        engine.state(Caller::Anyone, id).await.unwrap().balance(),
        60 * 61 / 2
    );
}

async fn same_transaction_from_eight_clients_applies_once_per_round(test: &TestStore) {
    let engine = Arc::new(test.engine(2, 50));
    let entropy = ids();
    let id = account(&entropy);
    open_account(&engine, id).await;
    for _round in 0..100 {
        let tx = transaction(&entropy);
        let clients = (0..8).map(|_| {
            let engine = engine.clone();
            tokio::spawn(async move { execute_until_final(&engine, deposit(id, 1, tx)).await })
        });
        let outcomes = futures_join(clients).await;
        let applied = outcomes
            .iter()
            .filter(|o| matches!(o, Ok(Outcome::Applied)))
            .count();
        assert_eq!(applied, 1, "{outcomes:?}");
        assert!(
            outcomes
                .iter()
                .all(|o| matches!(o, Ok(Outcome::Applied | Outcome::AlreadyApplied))),
            "{outcomes:?}"
        );
    }
    assert_eq!(
        engine.state(Caller::Anyone, id).await.unwrap().balance(),
        100
    );
    assert_eq!(all_events(&*test.store, id).await.len(), 101);
}

async fn distinct_transactions_from_eight_clients_all_count(test: &TestStore) {
    let engine = Arc::new(test.engine(3, 50));
    let entropy = ids();
    let id = account(&entropy);
    open_account(&engine, id).await;
    let clients = (0..8).map(|client| {
        let engine = engine.clone();
        let transactions: Vec<TransactionId> = (0..25).map(|_| transaction(&entropy)).collect();
        tokio::spawn(async move {
            for tx in transactions {
                let outcome = execute_until_final(&engine, deposit(id, client + 1, tx)).await;
                assert_eq!(outcome, Ok(Outcome::Applied));
            }
        })
    });
    futures_join(clients).await;
    let expected: i64 = (1..=8).map(|amount| amount * 25).sum();
    assert_eq!(
        engine.state(Caller::Anyone, id).await.unwrap().balance(),
        expected
    );
    assert_eq!(all_events(&*test.store, id).await.len(), 1 + 8 * 25);
}

async fn concurrent_transfers_conserve_the_total(test: &TestStore) {
    let engine = Arc::new(test.engine(4, 10));
    let entropy = ids();
    let accounts: Vec<AccountId> = (0..4).map(|_| account(&entropy)).collect();
    for id in &accounts {
        open_account(&engine, *id).await;
        engine
            .execute(deposit(*id, 1_000, transaction(&entropy)))
            .await
            .unwrap();
    }
    let clients = (0..8u64).map(|client| {
        let engine = engine.clone();
        let accounts = accounts.clone();
        let entropy = SeededEntropy::new(client);
        tokio::spawn(async move {
            let mut applied = 0;
            for _ in 0..30 {
                let from = accounts[entropy.below(4) as usize];
                let to = accounts[entropy.below(4) as usize];
                let amount = Amount::new(entropy.below(300) as i64 + 1).unwrap();
                let request = Request {
                    caller: Caller::Anyone,
                    account: from,
                    command: Command::Transfer { target: to, amount },
                    transaction_id: Some(TransactionId::from_uuid(entropy.uuid())),
                };
                match execute_until_final(&engine, request).await {
                    Ok(Outcome::Applied) => applied += 1,
                    Ok(other) => panic!("a fresh transfer is applied or refused, not {other:?}"),
                    Err(EngineError::Refused(_)) => {}
                    Err(other) => panic!("unexpected answer {other:?}"),
                }
            }
            applied
        })
    });
    let applied: u32 = futures_join(clients).await.into_iter().sum();
    assert!(applied > 0, "some transfers went through");
    let mut total = 0;
    let mut seen: HashMap<TransactionId, usize> = HashMap::new();
    for id in &accounts {
        let state = engine.state(Caller::Anyone, *id).await.unwrap();
        assert!(state.balance() >= 0);
        let events = checked_stream(&*test.store, *id, &state).await;
        for event in &events {
            *seen.entry(event.transaction_id).or_default() += 1;
        }
        total += state.balance();
    }
    assert_eq!(total, 4_000, "transfers neither create nor destroy money");
    let transfer_events: usize = seen.values().filter(|&&n| n == 2).count();
    assert_eq!(
        transfer_events, applied as usize,
        "every applied transfer is one withdrawal and one deposit"
    );
}

// ------------------------------------------------------------ group commit

fn deposit_commit(account_id: AccountId, sequence: u64, tx: TransactionId, balance: i64) -> Commit {
    single(account_id, sequence, tx, deposited(1, balance))
}

/// The two legs of a transfer of 1 as one commit.
fn transfer_commit(
    from: (AccountId, u64, i64),
    to: (AccountId, u64, i64),
    tx: TransactionId,
) -> Commit {
    transfer(from, to, 1, tx)
}

fn assert_batch(results: &[Result<(), AppendError>], expected: &[bool]) {
    let landed: Vec<bool> = results.iter().map(Result::is_ok).collect();
    assert_eq!(landed, expected, "{results:?}");
    for result in results {
        if let Err(error) = result {
            assert!(matches!(error, AppendError::Conflict(_)), "{error:?}");
        }
    }
}

/// What [`GroupCommit::Direct`] promises: the engine appends to such a
/// store in the request's own task, so a request dropped mid-append must
/// find the append either not started or done — never waiting half-way.
/// Stores that batch make no such promise.
async fn a_store_appended_to_directly_appends_in_the_poll_that_starts_it(test: &TestStore) {
    if test.store.group_commit() != GroupCommit::Direct {
        return;
    }
    let entropy = ids();
    let id = account(&entropy);
    history(&*test.store, id, 1).await;
    let batch = [deposit_commit(id, 3, transaction(&entropy), 2)];
    let mut append = test.store.append_batch(&batch);
    let mut context = std::task::Context::from_waker(std::task::Waker::noop());
    let polled = append.as_mut().poll(&mut context);
    assert!(
        matches!(&polled, std::task::Poll::Ready(results) if results.iter().all(Result::is_ok)),
        "{polled:?}"
    );
    drop(append);
    assert_eq!(all_events(&*test.store, id).await.len(), 3);
}

/// A head that moved, a transactionId already recorded, a malformed commit
/// and a duplicate transactionId within the batch: each refused on its own,
/// the members around them written.
async fn batch_member_in_conflict_leaves_the_others_to_land(test: &TestStore) {
    let entropy = ids();
    let [x, y, z] = [(); 3].map(|_| account(&entropy));
    for id in [x, y, z] {
        history(&*test.store, id, 1).await;
    }
    let z_transactions = test.store.events(z, 1, 10).await.unwrap();
    let taken = z_transactions[1].transaction_id;
    let (tx_x, tx_y, tx_z, tx_x2) = [(); 4].map(|_| transaction(&entropy)).into();
    let batch = [
        deposit_commit(x, 3, tx_x, 2),
        // y is at 2 already: its head moved.
        deposit_commit(y, 2, tx_y, 5),
        // The next number is free but the transactionId is taken.
        deposit_commit(z, 3, taken, 2),
        // Malformed: sequence numbers start at 1.
        deposit_commit(z, 0, tx_z, 2),
        // The same transactionId as the first member, on the same account.
        deposit_commit(x, 4, tx_x, 3),
        // Chained onto the first member.
        deposit_commit(x, 4, tx_x2, 3),
        deposit_commit(z, 3, tx_z, 2),
    ];
    let results = test.store.append_batch(&batch).await;
    assert_batch(&results, &[true, false, false, false, false, true, true]);
    let sequences = |events: Vec<RecordedEvent>| {
        events
            .iter()
            .map(|e| (e.sequence_number, e.transaction_id))
            .collect::<Vec<_>>()
    };
    let x_events = sequences(all_events(&*test.store, x).await);
    assert_eq!(x_events[2..], [(3, tx_x), (4, tx_x2)]);
    assert_eq!(all_events(&*test.store, y).await.len(), 2);
    let z_events = sequences(all_events(&*test.store, z).await);
    assert_eq!(z_events[1..], [(2, taken), (3, tx_z)]);
    let loaded = test.store.load(y, Some(tx_y)).await.unwrap();
    assert_eq!(loaded.transaction, None, "a refused member records nothing");
    // The feed holds exactly the members that landed, in batch order.
    let feed = whole_feed(&*test.store).await;
    let tail: Vec<(AccountId, u64)> = feed[feed.len() - 3..]
        .iter()
        .map(|f| (f.event.account_id, f.event.sequence_number))
        .collect();
    assert_eq!(tail, [(x, 3), (x, 4), (z, 3)]);
    assert_eq!(feed.len(), 6 + 3);
    // Members that agree with each other, one of them refused by the
    // store alone: a transactionId taken, a head moved.
    let results = test
        .store
        .append_batch(&[
            deposit_commit(x, 5, transaction(&entropy), 4),
            deposit_commit(z, 4, taken, 3),
            deposit_commit(x, 6, transaction(&entropy), 5),
        ])
        .await;
    assert_batch(&results, &[true, false, true]);
    let results = test
        .store
        .append_batch(&[
            deposit_commit(y, 2, transaction(&entropy), 5),
            deposit_commit(x, 7, transaction(&entropy), 6),
        ])
        .await;
    assert_batch(&results, &[false, true]);
    assert_eq!(all_events(&*test.store, x).await.len(), 7);
    assert_eq!(all_events(&*test.store, y).await.len(), 2);
    assert_eq!(all_events(&*test.store, z).await.len(), 3);
}

async fn batch_members_of_one_account_chain(test: &TestStore) {
    let entropy = ids();
    let (x, y) = (account(&entropy), account(&entropy));
    history(&*test.store, x, 1).await;
    history(&*test.store, y, 0).await;
    let before = whole_feed(&*test.store).await;
    let batch = [
        deposit_commit(x, 3, transaction(&entropy), 2),
        deposit_commit(x, 4, transaction(&entropy), 3),
        transfer_commit((x, 5, 2), (y, 2, 1), transaction(&entropy)),
        deposit_commit(y, 3, transaction(&entropy), 2),
        deposit_commit(x, 6, transaction(&entropy), 3),
    ];
    let results = test.store.append_batch(&batch).await;
    assert_batch(&results, &[true; 5]);
    let (state, version) = test.store.load(x, None).await.unwrap().fold();
    assert_eq!((state.balance(), version), (3, 6));
    let (state, version) = test.store.load(y, None).await.unwrap().fold();
    assert_eq!((state.balance(), version), (2, 3));
    // One range of positions, in member order and each member's event order.
    let feed = whole_feed(&*test.store).await;
    let written: Vec<&FeedEvent> = feed[before.len()..].iter().collect();
    let expected: Vec<(AccountId, u64)> = batch
        .iter()
        .flat_map(|c| c.events.iter().map(|e| (e.account_id, e.sequence_number)))
        .collect();
    let got: Vec<(AccountId, u64)> = written
        .iter()
        .map(|f| (f.event.account_id, f.event.sequence_number))
        .collect();
    assert_eq!(got, expected);
    for pair in written.windows(2) {
        assert!(pair[0].position < pair[1].position);
    }
}

async fn batch_member_chained_after_a_refused_one_fails(test: &TestStore) {
    let entropy = ids();
    let x = account(&entropy);
    let transactions = history(&*test.store, x, 1).await;
    let fresh = transaction(&entropy);
    let batch = [
        // Refused: the transactionId is recorded.
        deposit_commit(x, 3, transactions[1], 2),
        // Chained onto the refused member: x is still at 2.
        deposit_commit(x, 4, transaction(&entropy), 3),
        // Decided on the state the members before it left: fits.
        deposit_commit(x, 3, fresh, 2),
    ];
    let results = test.store.append_batch(&batch).await;
    assert_batch(&results, &[false, false, true]);
    let events = all_events(&*test.store, x).await;
    assert_eq!(events.len(), 3);
    assert_eq!(events[2].transaction_id, fresh);
    // Another writer's event takes the first member's place: the head
    // check alone would let the chained member land on top of it, decided
    // on a state that never existed.
    let (first, chained) = (transaction(&entropy), transaction(&entropy));
    let batch = [
        deposit_commit(x, 4, first, 3),
        deposit_commit(x, 5, chained, 4),
    ];
    test.store
        .append(&deposit_commit(x, 4, transaction(&entropy), 3))
        .await
        .unwrap();
    let results = test.store.append_batch(&batch).await;
    assert_batch(&results, &[false, false]);
    let loaded = test.store.load(x, Some(chained)).await.unwrap();
    assert_eq!(loaded.fold().1, 4);
    assert_eq!(loaded.transaction, None);
}

async fn batch_whose_every_member_conflicts_writes_nothing(test: &TestStore) {
    let entropy = ids();
    let (x, y) = (account(&entropy), account(&entropy));
    let x_transactions = history(&*test.store, x, 2).await;
    history(&*test.store, y, 0).await;
    let before = whole_feed(&*test.store).await;
    let batch = [
        deposit_commit(x, 2, transaction(&entropy), 1),
        deposit_commit(x, 4, x_transactions[2], 3),
        deposit_commit(y, 5, transaction(&entropy), 1),
        transfer_commit((x, 3, 0), (y, 2, 1), transaction(&entropy)),
    ];
    let results = test.store.append_batch(&batch).await;
    assert_batch(&results, &[false; 4]);
    assert_eq!(whole_feed(&*test.store).await, before);
    assert_eq!(all_events(&*test.store, x).await.len(), 3);
    assert_eq!(all_events(&*test.store, y).await.len(), 1);
    assert!(test.store.append_batch(&[]).await.is_empty());
    // The store goes on: the next append lands after every earlier position.
    test.store
        .append(&deposit_commit(x, 4, transaction(&entropy), 3))
        .await
        .unwrap();
    let after = whole_feed(&*test.store).await;
    assert_eq!(after.len(), before.len() + 1);
    assert!(after.last().unwrap().position > before.last().unwrap().position);
}

// -------------------------------------------------------------------- feed

async fn feed_pages_every_event_in_commit_order(test: &TestStore) {
    let entropy = ids();
    assert!(whole_feed(&*test.store).await.is_empty());
    let mut pair = [account(&entropy), account(&entropy)];
    pair.sort();
    let [a, b] = pair;
    let c = account(&entropy);
    history(&*test.store, a, 2).await;
    history(&*test.store, b, 0).await;
    let commits = [
        transfer_commit((b, 2, 0), (a, 4, 3), transaction(&entropy)),
        deposit_commit(a, 5, transaction(&entropy), 4),
    ];
    for commit in &commits {
        test.store.append(commit).await.unwrap();
    }
    history(&*test.store, c, 1).await;
    let last = transfer_commit((a, 6, 3), (c, 3, 2), transaction(&entropy));
    test.store.append(&last).await.unwrap();
    // Appended one after the other: the feed is exactly that order, each
    // commit's events in the commit's order (both legs of a transfer
    // adjacent).
    let legs = |commit: &Commit| -> Vec<(AccountId, u64)> {
        commit
            .events
            .iter()
            .map(|e| (e.account_id, e.sequence_number))
            .collect()
    };
    let mut expected = vec![(a, 1), (a, 2), (a, 3), (b, 1)];
    expected.extend(legs(&commits[0]));
    expected.extend(legs(&commits[1]));
    expected.extend([(c, 1), (c, 2)]);
    expected.extend(legs(&last));
    let feed = whole_feed(&*test.store).await;
    let got: Vec<(AccountId, u64)> = feed
        .iter()
        .map(|f| (f.event.account_id, f.event.sequence_number))
        .collect();
    assert_eq!(got, expected);
    assert!(feed[0].position >= 1);
    for pair in feed.windows(2) {
        assert!(pair[0].position < pair[1].position, "strictly increasing");
    }
    // The feed's events are the stored events, unchanged.
    for item in &feed {
        let stored = test
            .store
            .events(item.event.account_id, item.event.sequence_number, 1)
            .await
            .unwrap();
        assert_eq!(stored, std::slice::from_ref(&item.event));
    }
    // Paging by `after` and `limit` reads the same sequence.
    for limit in [1, 2, 3, 5] {
        let mut after = 0;
        let mut paged = Vec::new();
        loop {
            let page = test.store.feed(after, limit).await.unwrap();
            assert!(page.len() <= limit);
            let Some(last) = page.last() else { break };
            after = last.position;
            paged.extend(page);
        }
        assert_eq!(paged, feed, "limit {limit}");
    }
    let middle = feed[4].position;
    assert_eq!(test.store.feed(middle, 2).await.unwrap(), feed[5..7]);
    assert_eq!(test.store.feed(middle - 1, 1).await.unwrap(), feed[4..5]);
    assert!(test.store.feed(middle, 0).await.unwrap().is_empty());
    let last = feed.last().unwrap().position;
    assert!(test.store.feed(last, 10).await.unwrap().is_empty());
    assert!(test.store.feed(u64::MAX, 10).await.unwrap().is_empty());
}

// ----------------------------------------------------------- point in time

/// An account of 12 deposits of 1 after its opening (13 events), with
/// snapshots at 4 and 8; returns the events.
async fn snapshotted_history(store: &dyn EventStore, id: AccountId) -> Vec<RecordedEvent> {
    let entropy = ids();
    let owner = OwnerId::from_uuid(entropy.uuid());
    for sequence in 1..=13u64 {
        let tx = transaction(&entropy);
        let event = match sequence {
            1 => opened(owner),
            _ => deposited(1, sequence as i64 - 1),
        };
        let mut commit = single(id, sequence, tx, event);
        if sequence % 4 == 0 {
            commit.snapshots.push(Snapshot {
                account_id: id,
                sequence_number: sequence,
                state: Account::Open {
                    owner_id: owner,
                    balance: sequence as i64 - 1,
                },
                recorded_until: Some(RECORDED_AT),
            });
        }
        store.append(&commit).await.unwrap();
    }
    all_events(store, id).await
}

/// The state after the first `length` events, folded from scratch.
fn prefix_state(events: &[RecordedEvent], length: usize) -> (Account, u64) {
    let state = replay(Account::Unopened, events[..length].iter().map(|e| &e.event));
    (state, length as u64)
}

fn snapshot_at(loaded: &Loaded) -> Option<u64> {
    loaded.snapshot.as_ref().map(|s| s.sequence_number)
}

async fn load_at_version_reads_from_the_nearest_snapshot(test: &TestStore) {
    let entropy = ids();
    let id = account(&entropy);
    let events = snapshotted_history(&*test.store, id).await;
    // (version, snapshot used, events read after it)
    let cases: [(u64, Option<u64>, &[u64]); 8] = [
        (1, None, &[1]),
        (3, None, &[1, 2, 3]),
        (4, Some(4), &[]),
        (6, Some(4), &[5, 6]),
        (7, Some(4), &[5, 6, 7]),
        (8, Some(8), &[]),
        (12, Some(12), &[]),
        (13, Some(12), &[13]),
    ];
    for (version, snapshot, tail) in cases {
        let loaded = test
            .store
            .load_at(id, PointInTime::Version(version))
            .await
            .unwrap();
        assert_eq!(snapshot_at(&loaded), snapshot, "version {version}");
        let read: Vec<u64> = loaded.events.iter().map(|e| e.sequence_number).collect();
        assert_eq!(read, tail, "version {version}");
        assert_eq!(loaded.transaction, None);
        assert_eq!(loaded.fold(), prefix_state(&events, version as usize));
    }
    // Beyond the head: the head, which the caller tells from the version.
    for beyond in [14, 1_000, u64::MAX] {
        let loaded = test
            .store
            .load_at(id, PointInTime::Version(beyond))
            .await
            .unwrap();
        assert_eq!(loaded.fold(), prefix_state(&events, 13));
    }
    let none = test
        .store
        .load_at(id, PointInTime::Version(0))
        .await
        .unwrap();
    assert_eq!(none.fold(), (Account::Unopened, 0));
    let unknown = test
        .store
        .load_at(account(&entropy), PointInTime::Version(3))
        .await
        .unwrap();
    assert_eq!(unknown, Loaded::default());
    // The engine answers "no such version" for all of these.
    let engine = test.engine(9, 4);
    assert_eq!(
        engine.state_at(id, PointInTime::Version(6)).await.unwrap(),
        Some(prefix_state(&events, 6))
    );
    for missing in [0, 14, u64::MAX] {
        let answer = engine.state_at(id, PointInTime::Version(missing)).await;
        assert_eq!(answer.unwrap(), None, "version {missing}");
    }
    let unknown = engine
        .state_at(account(&entropy), PointInTime::Version(1))
        .await;
    assert_eq!(unknown.unwrap(), None);
}

/// Two instances whose clocks disagree: recordedAt goes back and forth.
/// Snapshots at 3 (written without recorded_until, as before the column
/// existed) and 5.
async fn load_at_time_is_the_longest_prefix_recorded_by_then(test: &TestStore) {
    let entropy = ids();
    let id = account(&entropy);
    let owner = OwnerId::from_uuid(entropy.uuid());
    let times = [100, 200, 150, 300, 250, 400, 400, 350];
    let mut balance = 0;
    for (index, time) in times.into_iter().enumerate() {
        let sequence = index as u64 + 1;
        let event = match sequence {
            1 => opened(owner),
            _ => {
                balance += 1;
                deposited(1, balance)
            }
        };
        let mut commit = single(id, sequence, transaction(&entropy), event);
        commit.events[0].recorded_at = Timestamp::from_unix_millis(time);
        let snapshot = |recorded_until| Snapshot {
            account_id: id,
            sequence_number: sequence,
            state: Account::Open {
                owner_id: owner,
                balance,
            },
            recorded_until,
        };
        match sequence {
            3 => commit.snapshots.push(snapshot(None)),
            5 => commit
                .snapshots
                .push(snapshot(Some(Timestamp::from_unix_millis(300)))),
            _ => {}
        }
        test.store.append(&commit).await.unwrap();
    }
    let events = all_events(&*test.store, id).await;
    // (time, length of the prefix, snapshot used)
    let cases = [
        (99, 0, None),
        (100, 1, None),
        (150, 1, None),
        (199, 1, None),
        // Event 3 is older than event 2: both are in by 200, and the
        // snapshot at 3 does not know its time, so the events are read.
        (200, 3, None),
        (299, 3, None),
        (300, 5, Some(5)),
        (349, 5, Some(5)),
        (399, 5, Some(5)),
        (400, 8, Some(5)),
        (i64::MAX, 8, Some(5)),
    ];
    for (time, length, snapshot) in cases {
        let at = PointInTime::Time(Timestamp::from_unix_millis(time));
        let loaded = test.store.load_at(id, at).await.unwrap();
        assert_eq!(snapshot_at(&loaded), snapshot, "time {time}");
        assert_eq!(loaded.fold(), prefix_state(&events, length), "time {time}");
        let engine_answer = test.engine(9, 4).state_at(id, at).await.unwrap();
        let expected = (length > 0).then(|| prefix_state(&events, length));
        assert_eq!(engine_answer, expected, "time {time}");
    }
    let unknown = test
        .store
        .load_at(account(&entropy), PointInTime::Time(RECORDED_AT))
        .await
        .unwrap();
    assert_eq!(unknown, Loaded::default());
}

/// The engine's commit builder keeps `recorded_until` as the running maximum
/// of recordedAt, across two instances whose clocks disagree; the snapshots
/// then serve point-in-time reads like the events do.
async fn engine_snapshots_carry_a_running_maximum_of_recorded_at(test: &TestStore) {
    let entropy = ids();
    let id = account(&entropy);
    let builders = [1_000, 900].map(|millis| {
        let builder = TestInstance::builder()
            .store(test.store.clone())
            .seed(millis)
            .engine_config(EngineConfig {
                snapshot_every: 3,
                ..EngineConfig::default()
            });
        builder
            .clock()
            .set(Timestamp::from_unix_millis(millis as i64));
        builder
    });
    let clocks = builders.each_ref().map(|builder| builder.clock());
    let engines = builders.map(|builder| builder.build_engine());
    open_account(&engines[0], id).await;
    for n in 0..12usize {
        let instance = n % 2;
        let clock = &clocks[instance];
        clock.set(Timestamp::from_unix_millis(clock.now().unix_millis() + 100));
        engines[instance]
            .execute(deposit(id, 1, transaction(&entropy)))
            .await
            .unwrap();
    }
    let events = all_events(&*test.store, id).await;
    assert_eq!(events.len(), 13);
    let mut running = i64::MIN;
    for event in &events {
        running = running.max(event.recorded_at.unix_millis());
        if event.sequence_number % 3 != 0 {
            continue;
        }
        let loaded = test
            .store
            .load_at(id, PointInTime::Version(event.sequence_number))
            .await
            .unwrap();
        let snapshot = loaded.snapshot.expect("a snapshot every 3 events");
        assert_eq!(snapshot.sequence_number, event.sequence_number);
        assert_eq!(
            snapshot.recorded_until,
            Some(Timestamp::from_unix_millis(running)),
            "snapshot at {}",
            event.sequence_number
        );
    }
    for time in [999, 1_000, 1_050, 1_100, 1_150, 1_300, 1_500, 1_700, 2_000] {
        let at = PointInTime::Time(Timestamp::from_unix_millis(time));
        let length = events
            .iter()
            .take_while(|e| e.recorded_at.unix_millis() <= time)
            .count();
        let expected = (length > 0).then(|| prefix_state(&events, length));
        assert_eq!(
            engines[1].state_at(id, at).await.unwrap(),
            expected,
            "time {time}"
        );
    }
}

// ------------------------------------------------------------ load_many

/// Every kind of request at once, in an order that is not the accounts':
/// accounts with and without snapshots, with a long tail and none, unknown
/// accounts, recorded and unrecorded transactionIds (one recorded on another
/// account), and the same request twice. Each answer must be exactly what
/// `load` says for that request.
async fn load_many_answers_each_request_as_load_does(test: &TestStore) {
    let entropy = ids();
    let store = &*test.store;
    let snapshotted = account(&entropy);
    let plain = account(&entropy);
    let opened_only = account(&entropy);
    let unknown = account(&entropy);
    snapshotted_history(store, snapshotted).await;
    let plain_transactions = history(store, plain, 3).await;
    let opened_transactions = history(store, opened_only, 0).await;
    let snapshotted_transaction = all_events(store, snapshotted).await[9].transaction_id;
    let never_used = transaction(&entropy);
    let requests = vec![
        (plain, Some(plain_transactions[2])),
        (snapshotted, None),
        (unknown, Some(never_used)),
        (snapshotted, Some(snapshotted_transaction)),
        (opened_only, Some(opened_transactions[0])),
        (plain, Some(plain_transactions[2])),
        (plain, None),
        // Recorded, but on another account: no record here.
        (opened_only, Some(plain_transactions[0])),
        (unknown, None),
        (plain, Some(never_used)),
    ];
    let loaded = store.load_many(&requests).await.expect("load_many");
    assert_eq!(loaded.len(), requests.len());
    for (&(id, transaction), answer) in requests.iter().zip(&loaded) {
        let alone = store.load(id, transaction).await.expect("load");
        assert_eq!(answer, &alone, "load_many of ({id}, {transaction:?})");
    }
    // What the answers hold, not only that they agree with `load`.
    assert_eq!(snapshot_at(&loaded[1]), Some(12));
    assert_eq!(loaded[1].fold().1, 13);
    assert_eq!(
        loaded[3].transaction.as_ref().map(|r| r.transaction_id),
        Some(snapshotted_transaction)
    );
    assert_eq!(loaded[0].fold().0.balance(), 3);
    assert_eq!(
        loaded[0].transaction,
        Some(record(plain, plain_transactions[2], "test"))
    );
    assert_eq!(loaded[2], Loaded::default());
    assert_eq!(loaded[4].fold().1, 1);
    assert_eq!(loaded[7].transaction, None);
    assert_eq!(loaded[9].transaction, None);
}

async fn load_many_of_nothing_is_nothing(test: &TestStore) {
    assert_eq!(test.store.load_many(&[]).await.expect("load_many"), []);
}
