//! The store contract, written once and run against every store: memory,
//! SQLite, PostgreSQL and MariaDB. Test names show the store
//! (`postgres::gap_is_a_conflict`). The server databases need
//! ACCOUNTS_TEST_POSTGRES_URL / ACCOUNTS_TEST_MYSQL_URL (a server where the
//! tests may create and drop databases) and are ignored without them.

use std::collections::HashMap;
use std::sync::Arc;

use accounts::domain::{
    Account, AccountId, Amount, Command, Event, Fingerprint, OwnerId, Timestamp, TransactionId,
    replay,
};
use accounts::engine::{Engine, EngineError, Entropy, Outcome, Request, SeededEntropy};
use accounts::store::{
    AppendError, Commit, EventStore, RecordedEvent, Snapshot, TransactionRecord,
};
use testkit::stores::checked_stream;
use testkit::{Backend, TestStore};

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

const AT: Timestamp = Timestamp::from_unix_millis(1_795_000_000_123);

fn recorded(
    account_id: AccountId,
    sequence_number: u64,
    transaction_id: TransactionId,
    event: Event,
) -> RecordedEvent {
    RecordedEvent {
        account_id,
        sequence_number,
        transaction_id,
        event,
        recorded_at: AT,
    }
}

fn record(account_id: AccountId, transaction_id: TransactionId, what: &str) -> TransactionRecord {
    TransactionRecord {
        account_id,
        transaction_id,
        fingerprint: Fingerprint(what.to_owned()),
    }
}

fn opened(owner: OwnerId) -> Event {
    Event::AccountOpened { owner_id: owner }
}

fn deposited(amount: i64, balance: i64) -> Event {
    Event::MoneyDeposited {
        amount_deposited: amount,
        balance,
        transfer_from: None,
    }
}

/// A commit of one event on one account, with its transaction record.
fn single(account_id: AccountId, sequence: u64, tx: TransactionId, event: Event) -> Commit {
    Commit {
        events: vec![recorded(account_id, sequence, tx, event)],
        transactions: vec![record(account_id, tx, "test")],
        snapshots: vec![],
    }
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
    assert_eq!(engine.state(id).await.unwrap().balance(), 60 * 61 / 2);
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
    assert_eq!(engine.state(id).await.unwrap().balance(), 100);
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
    assert_eq!(engine.state(id).await.unwrap().balance(), expected);
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
        let state = engine.state(*id).await.unwrap();
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
