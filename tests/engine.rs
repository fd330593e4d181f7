//! The engine's own paths, with fixed inputs and on paused time (every wait
//! is virtual, so the tests are fast and exact): the backoff between
//! retries is the one drawn from the injected entropy; a conflict reloads
//! and decides again on the fresh state; an ambiguous commit that landed is
//! "already applied" and one that was lost is applied on the retry; a store
//! that does not answer is unavailable, an append that does not answer is
//! ambiguous; snapshots come every `snapshot_every` events, never with 0;
//! and the metrics count what happened. The state cache and group commit do
//! less per command without changing an answer: engines with stale caches
//! on one store stay exactly-once and conserve money, commands that arrive
//! together are written in one batch whose conflicting member fails alone,
//! and a replay of a transactionId the cache forgot answers the record.
//! The store is the kit's `InstrumentedStore`, scripted per call.

use std::sync::Arc;
use std::time::Duration;

use accounts::domain::{
    Account, AccountId, Amount, Caller, Command, Event, Fingerprint, OwnerId, Timestamp,
    TransactionId,
};
use accounts::engine::{
    Engine, EngineConfig, EngineError, Entropy, Outcome, RECENT_TRANSACTIONS, Request,
    SeededEntropy,
};
use accounts::metrics::EngineMetrics;
use accounts::store::{Commit, PointInTime, RecordedEvent, StoreError, TransactionRecord};
use testkit::stores::AppendCall;
use testkit::{Backend, Fault, Instrumented, InstrumentedStore, TestInstance, TestStore};
use tokio::time::Instant;
use uuid::Uuid;

const SEED: u64 = 11;

fn id(n: u128) -> AccountId {
    AccountId::from_uuid(Uuid::from_u128(n))
}

fn tx(n: u128) -> TransactionId {
    TransactionId::from_uuid(Uuid::from_u128(0x7700 + n))
}

fn amount(value: i64) -> Amount {
    Amount::new(value).expect("a valid amount")
}

fn request(account: AccountId, command: Command, transaction: u128) -> Request {
    Request {
        caller: Caller::Anyone,
        account,
        command,
        transaction_id: Some(tx(transaction)),
    }
}

fn deposit(account: AccountId, value: i64, transaction: u128) -> Request {
    request(
        account,
        Command::Deposit {
            amount: amount(value),
        },
        transaction,
    )
}

fn open(account: AccountId) -> Request {
    Request {
        caller: Caller::Anyone,
        account,
        command: Command::Open {
            owner_id: OwnerId::from_uuid(Uuid::from_u128(0x0e)),
        },
        transaction_id: None,
    }
}

/// An engine over `store` with `config`, and its metrics.
fn engine(store: &Instrumented, config: EngineConfig) -> (Engine, EngineMetrics) {
    seeded_engine(store, config, SEED)
}

fn seeded_engine(store: &Instrumented, config: EngineConfig, seed: u64) -> (Engine, EngineMetrics) {
    let builder = TestInstance::builder()
        .store(store.clone())
        .seed(seed)
        .engine_config(config);
    let metrics = builder.metrics().engine;
    (builder.build_engine(), metrics)
}

/// An engine shared by concurrent tasks, over accounts 1 to `accounts`,
/// each opened and funded with `balance`.
async fn funded_engine(
    store: &Instrumented,
    accounts: u128,
    balance: i64,
) -> (Arc<Engine>, EngineMetrics) {
    let (engine, metrics) = engine(store, EngineConfig::default());
    for n in 1..=accounts {
        funded(&engine, id(n), balance).await;
    }
    (Arc::new(engine), metrics)
}

/// An account opened, with `balance` deposited.
async fn funded(engine: &Engine, account: AccountId, balance: i64) {
    assert_eq!(engine.execute(open(account)).await, Ok(Outcome::Applied));
    if balance > 0 {
        let outcome = engine.execute(deposit(account, balance, 0)).await;
        assert_eq!(outcome, Ok(Outcome::Applied));
    }
}

async fn events(store: &Instrumented, account: AccountId) -> Vec<RecordedEvent> {
    store.bypass().events(account, 1, 1_000).await.unwrap()
}

fn balances(events: &[RecordedEvent]) -> Vec<i64> {
    events
        .iter()
        .filter_map(|e| match e.event {
            Event::MoneyDeposited { balance, .. } | Event::MoneyWithdrawn { balance, .. } => {
                Some(balance)
            }
            _ => None,
        })
        .collect()
}

// ------------------------------------------------------------- retries

/// Full jitter, written out from the engine's documentation: retry `a`
/// waits a uniform draw in [0, min(max, base · 2^min(a, 20))], drawn from
/// the engine's entropy after the two draws of the open's generated
/// transactionId.
fn expected_waits(config: &EngineConfig, retries: u32) -> Vec<Duration> {
    let entropy = SeededEntropy::new(SEED);
    entropy.uuid();
    let (base, cap) = (
        config.backoff_base.as_micros() as u64,
        config.backoff_max.as_micros() as u64,
    );
    (1..=retries)
        .map(|attempt| {
            let ceiling = (base << attempt.min(20)).min(cap);
            Duration::from_micros(entropy.below(ceiling + 1))
        })
        .collect()
}

/// Between consecutive appends, exactly the expected wait, rounded up to
/// tokio's timer resolution of a millisecond (loads take no virtual time).
fn assert_waited(calls: &[AppendCall], expected: &[Duration]) {
    let waits: Vec<Duration> = calls.windows(2).map(|w| w[1].at - w[0].at).collect();
    assert_eq!(waits.len(), expected.len());
    for (retry, (waited, drawn)) in waits.iter().zip(expected).enumerate() {
        let tick = Duration::from_millis(1);
        assert!(
            drawn <= waited && *waited < *drawn + tick,
            "retry {}: waited {waited:?} for a draw of {drawn:?}",
            retry + 1
        );
    }
}

/// Opens an account with `config` against a store whose every append
/// conflicts: the retries run out. Checks the waits between the appends
/// and returns the metrics.
async fn open_against_conflicts(config: &EngineConfig) -> EngineMetrics {
    let store = InstrumentedStore::new();
    store.fail_appends(Some(Fault::Conflict));
    let (engine, metrics) = engine(&store, config.clone());
    let started = Instant::now();
    let outcome = engine.execute(open(id(1))).await;
    assert_eq!(outcome, Err(EngineError::Conflict(config.retries_max)));
    let calls = store.append_calls();
    assert_eq!(calls[0].at, started, "the first attempt does not wait");
    let expected = expected_waits(config, config.retries_max);
    assert_waited(&calls, &expected);
    assert!(
        expected.iter().any(|wait| !wait.is_zero()),
        "the waits are not all zero"
    );
    metrics
}

#[tokio::test(start_paused = true)]
async fn retries_wait_the_backoff_drawn_from_the_injected_entropy() {
    // A cap above base · 2^21, so that the exponent's own cap shows.
    let config = EngineConfig {
        retries_max: 24,
        backoff_base: Duration::from_micros(1),
        backoff_max: Duration::from_secs(10),
        ..EngineConfig::default()
    };
    let metrics = open_against_conflicts(&config).await;
    assert_eq!(metrics.retries.get(), 24);
    assert_eq!(
        metrics.conflicts.get(),
        25,
        "the first attempt and 24 retries"
    );
}

#[tokio::test(start_paused = true)]
async fn the_backoff_is_capped() {
    let config = EngineConfig {
        retries_max: 8,
        backoff_base: Duration::from_millis(1),
        backoff_max: Duration::from_millis(5),
        ..EngineConfig::default()
    };
    open_against_conflicts(&config).await;
    let expected = expected_waits(&config, 8);
    assert!(expected.iter().all(|wait| *wait <= config.backoff_max));
}

#[tokio::test(start_paused = true)]
async fn a_conflict_reloads_and_decides_again_on_the_fresh_state() {
    let store = InstrumentedStore::new();
    let (engine, metrics) = engine(&store, EngineConfig::default());
    let account = id(1);
    funded(&engine, account, 10).await;
    // Another writer deposits 5 just before our append lands.
    let interloper = other_writers_deposit(account);
    store.script_appends([Fault::OtherWriterFirst(Box::new(interloper))]);
    let reads = store.reads();
    let outcome = engine.execute(deposit(account, 7, 1)).await;
    assert_eq!(outcome, Ok(Outcome::Applied));
    let stored = events(&store, account).await;
    assert_eq!(stored.len(), 4);
    assert_eq!(
        stored[3].sequence_number, 4,
        "appended after the other writer"
    );
    assert_eq!(
        balances(&stored),
        [10, 15, 22],
        "decided again on 15, not on 10"
    );
    assert_eq!(
        store.reads(),
        reads + 1,
        "decided on the cached state first, loaded again after the conflict"
    );
    assert_eq!((metrics.conflicts.get(), metrics.retries.get()), (1, 1));
}

/// A deposit of 7 onto a funded 10 whose first append is ambiguous as
/// `fault` makes it: its answer, the balances written, and the appends it took.
async fn ambiguous_deposit(fault: Fault) -> (Result<Outcome, EngineError>, Vec<i64>, usize) {
    let store = InstrumentedStore::new();
    let (engine, metrics) = engine(&store, EngineConfig::default());
    funded(&engine, id(1), 10).await;
    store.script_appends([fault]);
    let attempted = store.appends_attempted();
    let outcome = engine.execute(deposit(id(1), 7, 1)).await;
    assert_eq!(metrics.ambiguous_commits.get(), 1);
    let balances = balances(&events(&store, id(1)).await);
    (outcome, balances, store.appends_attempted() - attempted)
}

#[tokio::test(start_paused = true)]
async fn an_ambiguous_commit_that_landed_answers_already_applied() {
    let (outcome, balances, appends) = ambiguous_deposit(Fault::AmbiguousLanded).await;
    assert_eq!(outcome, Ok(Outcome::AlreadyApplied));
    assert_eq!(balances, [10, 17], "written once");
    assert_eq!(appends, 1, "not written again");
}

#[tokio::test(start_paused = true)]
async fn an_ambiguous_commit_that_was_lost_is_applied_on_the_retry() {
    let (outcome, balances, appends) = ambiguous_deposit(Fault::AmbiguousLost).await;
    assert_eq!(outcome, Ok(Outcome::Applied));
    assert_eq!(balances, [10, 17]);
    assert_eq!(appends, 2);
}

#[tokio::test(start_paused = true)]
async fn retries_that_end_ambiguous_answer_unavailable_not_conflict() {
    let store = InstrumentedStore::new();
    let (engine, _) = engine(&store, EngineConfig::default());
    funded(&engine, id(1), 10).await;
    store.fail_appends(Some(Fault::AmbiguousLost));
    let outcome = engine.execute(deposit(id(1), 7, 1)).await;
    assert!(
        matches!(outcome, Err(EngineError::Store(StoreError::Unavailable(_)))),
        "{outcome:?}"
    );
    store.fail_appends(None);
    assert_eq!(
        engine.execute(deposit(id(1), 7, 1)).await,
        Ok(Outcome::Applied)
    );
    assert_eq!(balances(&events(&store, id(1)).await), [10, 17]);
}

// ------------------------------------------------------------- timeouts

#[tokio::test(start_paused = true)]
async fn a_load_that_does_not_answer_is_unavailable_after_the_store_timeout() {
    // Without the state cache, which would decide the deposit on the
    // account it knows, without the hanging load.
    let config = EngineConfig {
        store_timeout: Duration::from_secs(3),
        cache_accounts: 0,
        ..EngineConfig::default()
    };
    let store = InstrumentedStore::new();
    let (engine, metrics) = engine(&store, config);
    funded(&engine, id(1), 10).await;
    let attempted = store.appends_attempted();
    store.script_reads([Fault::Hang]);
    let started = Instant::now();
    let outcome = engine.execute(deposit(id(1), 7, 1)).await;
    assert!(
        matches!(outcome, Err(EngineError::Store(StoreError::Unavailable(_)))),
        "{outcome:?}"
    );
    assert_eq!(started.elapsed(), Duration::from_secs(3));
    assert_eq!(
        store.appends_attempted(),
        attempted,
        "never reached the append"
    );
    let unavailable = metrics
        .commands
        .with_label_values(&["deposit", "unavailable"]);
    assert_eq!(unavailable.get(), 1);
    // Reads of every kind and pings are timed the same way.
    store.script_reads(vec![Fault::Hang; 5]);
    assert!(matches!(
        engine.state(Caller::Anyone, id(1)).await,
        Err(EngineError::Store(_))
    ));
    assert!(matches!(
        engine.events(Caller::Anyone, id(1), 1, 10).await,
        Err(EngineError::Store(_))
    ));
    assert!(matches!(
        engine.state_at(id(1), PointInTime::Version(1)).await,
        Err(EngineError::Store(_))
    ));
    assert!(matches!(
        engine.feed(0, 10).await,
        Err(EngineError::Store(_))
    ));
    assert!(matches!(
        engine.ping().await,
        Err(StoreError::Unavailable(_))
    ));
    assert_eq!(started.elapsed(), Duration::from_secs(18));
}

#[tokio::test(start_paused = true)]
async fn an_append_that_does_not_answer_is_ambiguous_and_retried() {
    append_that_does_not_answer_is_ambiguous_and_retried(InstrumentedStore::new()).await;
}

/// The store hangs on the first append: after the store timeout the engine
/// calls it ambiguous, reads the transaction back, and writes it once.
async fn append_that_does_not_answer_is_ambiguous_and_retried(store: Instrumented) {
    let config = EngineConfig {
        store_timeout: Duration::from_secs(3),
        ..EngineConfig::default()
    };
    let (engine, metrics) = engine(&store, config);
    funded(&engine, id(1), 10).await;
    store.script_appends([Fault::Hang]);
    let started = Instant::now();
    let outcome = engine.execute(deposit(id(1), 7, 1)).await;
    assert_eq!(outcome, Ok(Outcome::Applied));
    assert!(started.elapsed() >= Duration::from_secs(3));
    assert_eq!(metrics.ambiguous_commits.get(), 1);
    assert_eq!(balances(&events(&store, id(1)).await), [10, 17]);
}

#[tokio::test(start_paused = true)]
async fn an_unavailable_store_at_append_is_answered_at_once_without_retry() {
    let store = InstrumentedStore::new();
    let (engine, metrics) = engine(&store, EngineConfig::default());
    funded(&engine, id(1), 10).await;
    store.script_appends([Fault::Unavailable]);
    let attempted = store.appends_attempted();
    let outcome = engine.execute(deposit(id(1), 7, 1)).await;
    assert!(matches!(outcome, Err(EngineError::Store(_))), "{outcome:?}");
    assert_eq!(store.appends_attempted(), attempted + 1);
    assert_eq!(metrics.retries.get(), 0);
    assert_eq!(balances(&events(&store, id(1)).await), [10]);
}

// ------------------------------------------------------------ snapshots

/// The sequence numbers of the snapshots the engine wrote, per commit.
fn snapshot_positions(store: &Instrumented) -> Vec<u64> {
    store
        .append_calls()
        .iter()
        .flat_map(|call| call.commit.snapshots.iter().map(|s| s.sequence_number))
        .collect()
}

/// An account opened and given `count` deposits (1, 2, 3, …) by an engine
/// snapshotting every `snapshot_every` events.
async fn deposits_with_snapshots_every(
    snapshot_every: u64,
    count: u128,
) -> (Instrumented, Engine, EngineMetrics) {
    let config = EngineConfig {
        snapshot_every,
        ..EngineConfig::default()
    };
    let store = InstrumentedStore::new();
    let (engine, metrics) = engine(&store, config);
    funded(&engine, id(1), 0).await;
    for n in 1..=count {
        let outcome = engine.execute(deposit(id(1), n as i64, n)).await;
        assert_eq!(outcome, Ok(Outcome::Applied));
    }
    (store, engine, metrics)
}

#[tokio::test(start_paused = true)]
async fn snapshot_every_zero_never_snapshots() {
    let (store, engine, metrics) = deposits_with_snapshots_every(0, 12).await;
    assert_eq!(snapshot_positions(&store), Vec::<u64>::new());
    assert_eq!(
        store.bypass().load(id(1), None).await.unwrap().snapshot,
        None
    );
    assert_eq!(metrics.snapshots_written.get(), 0);
    assert_eq!(
        engine.state(Caller::Anyone, id(1)).await.unwrap().balance(),
        78
    );
}

#[tokio::test(start_paused = true)]
async fn snapshots_come_every_snapshot_every_events_with_the_state_after_them() {
    let (store, engine, metrics) = deposits_with_snapshots_every(3, 7).await;
    assert_eq!(snapshot_positions(&store), [3, 6]);
    assert_eq!(metrics.snapshots_written.get(), 2);
    let loaded = store.bypass().load(id(1), None).await.unwrap();
    let snapshot = loaded.snapshot.expect("the latest snapshot");
    assert_eq!(snapshot.sequence_number, 6);
    // Opened at 1, deposits 1..=5 at 2..=6: 15 after event 6.
    assert_eq!(snapshot.state.balance(), 15);
    let loads_with_snapshots = metrics.snapshots_loaded.get();
    assert_eq!(
        engine.state(Caller::Anyone, id(1)).await.unwrap().balance(),
        28
    );
    assert_eq!(metrics.snapshots_loaded.get(), loads_with_snapshots + 1);
}

#[tokio::test(start_paused = true)]
async fn a_transfer_snapshots_each_account_when_its_own_number_is_due() {
    let config = EngineConfig {
        snapshot_every: 2,
        ..EngineConfig::default()
    };
    let store = InstrumentedStore::new();
    let (engine, _) = engine(&store, config);
    let (a, b) = (id(1), id(2));
    funded(&engine, a, 10).await; // a at 2
    funded(&engine, b, 0).await; // b at 1
    let transfer = request(
        a,
        Command::Transfer {
            target: b,
            amount: amount(4),
        },
        9,
    );
    assert_eq!(engine.execute(transfer).await, Ok(Outcome::Applied));
    // a's withdrawal is its event 3 (no snapshot); b's deposit its event 2.
    let last = store.append_calls().pop().expect("the transfer's commit");
    let snapshotted: Vec<(AccountId, u64)> = last
        .commit
        .snapshots
        .iter()
        .map(|s| (s.account_id, s.sequence_number))
        .collect();
    assert_eq!(snapshotted, [(b, 2)]);
    assert_eq!(last.commit.events.len(), 2);
    assert_eq!(
        last.commit.transactions.len(),
        2,
        "recorded on both accounts"
    );
}

// ---------------------------------------------------------- idempotency

#[tokio::test(start_paused = true)]
async fn a_transaction_id_recorded_on_the_target_alone_decides_the_answer() {
    let store = InstrumentedStore::new();
    let (engine, _) = engine(&store, EngineConfig::default());
    let (a, b) = (id(1), id(2));
    funded(&engine, a, 10).await;
    funded(&engine, b, 0).await;
    assert_eq!(engine.execute(deposit(b, 3, 5)).await, Ok(Outcome::Applied));
    let transfer = request(
        a,
        Command::Transfer {
            target: b,
            amount: amount(3),
        },
        5,
    );
    let outcome = engine.execute(transfer).await;
    assert!(
        matches!(outcome, Err(EngineError::TransactionReused { account, .. }) if account == b),
        "{outcome:?}"
    );
    assert_eq!(balances(&events(&store, a).await), [10]);
}

// -------------------------------------------------------------- metrics

#[tokio::test(start_paused = true)]
async fn commands_are_counted_by_kind_and_outcome_and_appends_by_event() {
    let config = EngineConfig {
        retries_max: 1,
        ..EngineConfig::default()
    };
    let store = InstrumentedStore::new();
    let (engine, metrics) = engine(&store, config);
    let (a, b, c) = (id(1), id(2), id(3));
    funded(&engine, a, 10).await;
    funded(&engine, b, 0).await;
    funded(&engine, c, 0).await;
    let count =
        |kind: &str, outcome: &str| metrics.commands.with_label_values(&[kind, outcome]).get();
    assert_eq!(engine.execute(open(a)).await, Ok(Outcome::Unchanged));
    assert_eq!(
        engine.execute(deposit(a, 0, 1)).await,
        Ok(Outcome::Unchanged)
    );
    assert_eq!(
        engine.execute(deposit(a, 10, 0)).await,
        Ok(Outcome::AlreadyApplied)
    );
    let withdraw = request(a, Command::Withdraw { amount: amount(99) }, 2);
    assert!(matches!(
        engine.execute(withdraw).await,
        Err(EngineError::Refused(_))
    ));
    assert!(matches!(
        engine.execute(deposit(a, 11, 0)).await,
        Err(EngineError::TransactionReused { .. })
    ));
    let transfer = request(
        a,
        Command::Transfer {
            target: b,
            amount: amount(4),
        },
        3,
    );
    assert_eq!(engine.execute(transfer).await, Ok(Outcome::Applied));
    store.script_appends([Fault::Conflict, Fault::Conflict]);
    assert_eq!(
        engine.execute(request(c, Command::Close, 4)).await,
        Err(EngineError::Conflict(1))
    );
    store.script_appends([Fault::Unavailable]);
    assert!(matches!(
        engine.execute(request(c, Command::Close, 5)).await,
        Err(EngineError::Store(_))
    ));
    assert_eq!(count("open", "applied"), 3);
    assert_eq!(count("open", "unchanged"), 1);
    assert_eq!(count("deposit", "applied"), 1);
    assert_eq!(count("deposit", "unchanged"), 1);
    assert_eq!(count("deposit", "already_applied"), 1);
    assert_eq!(count("deposit", "refused"), 1);
    assert_eq!(count("withdraw", "refused"), 1);
    assert_eq!(count("transfer", "applied"), 1);
    assert_eq!(count("close", "conflict"), 1);
    assert_eq!(count("close", "unavailable"), 1);
    // Opens 3, deposit 1, the transfer's 2 legs.
    assert_eq!(metrics.events_appended.get(), 6);
}

// --------------------------------------------------------------- stores

#[tokio::test]
async fn the_pool_status_is_the_stores() {
    let memory = InstrumentedStore::new();
    assert_eq!(
        engine(&memory, EngineConfig::default()).0.pool_status(),
        None
    );
    let sqlite = TestStore::open(Backend::Sqlite).await;
    let engine = sqlite.engine(SEED, 50);
    assert_eq!(
        engine.state(Caller::Anyone, id(1)).await,
        Ok(Account::Unopened)
    );
    let status = engine
        .pool_status()
        .expect("a pooled store reports its pool");
    assert!(status.idle + status.in_use >= 1, "{status:?}");
}

#[tokio::test(start_paused = true)]
async fn a_transfer_to_itself_loads_the_account_once_and_is_refused() {
    let store = InstrumentedStore::new();
    let (engine, _) = engine(&store, EngineConfig::default());
    funded(&engine, id(1), 10).await;
    let (reads, attempted) = (store.reads(), store.appends_attempted());
    let to_itself = request(
        id(1),
        Command::Transfer {
            target: id(1),
            amount: amount(4),
        },
        7,
    );
    let outcome = engine.execute(to_itself).await;
    assert_eq!(
        outcome,
        Err(EngineError::Refused(
            accounts::domain::Refusal::TransferToSelf
        ))
    );
    assert_eq!(
        store.reads(),
        reads + 1,
        "one load: source and target are one"
    );
    assert_eq!(store.appends_attempted(), attempted);
}

// ------------------------------------------------ cache and group commit

fn transfer(from: AccountId, to: AccountId, value: i64, transaction: u128) -> Request {
    request(
        from,
        Command::Transfer {
            target: to,
            amount: amount(value),
        },
        transaction,
    )
}

async fn balance_of(engine: &Engine, account: AccountId) -> i64 {
    let state = engine.state(Caller::Anyone, account).await;
    state.expect("a readable state").balance()
}

fn hits(metrics: &EngineMetrics) -> u64 {
    metrics.cache_lookups.with_label_values(&["hit"]).get()
}

/// Events of the final store carrying `transaction`, over `accounts`.
async fn carrying(store: &Instrumented, accounts: &[AccountId], transaction: u128) -> usize {
    let mut count = 0;
    for account in accounts {
        let stream = events(store, *account).await;
        count += stream
            .iter()
            .filter(|e| e.transaction_id == tx(transaction))
            .count();
    }
    count
}

#[tokio::test(start_paused = true)]
async fn a_command_on_a_known_account_skips_the_load_and_reads_stay_fresh() {
    let store = InstrumentedStore::new();
    let (one, metrics) = engine(&store, EngineConfig::default());
    let (two, _) = seeded_engine(&store, EngineConfig::default(), SEED + 1);
    funded(&one, id(1), 10).await;
    let reads = store.reads();
    assert_eq!(
        one.execute(deposit(id(1), 5, 1)).await,
        Ok(Outcome::Applied)
    );
    assert_eq!(store.reads(), reads, "decided on the cached state");
    assert!(hits(&metrics) >= 1);
    // Read-your-writes, and another instance's writes: reads go to the store.
    assert_eq!(balance_of(&one, id(1)).await, 15);
    assert_eq!(
        two.execute(deposit(id(1), 7, 2)).await,
        Ok(Outcome::Applied)
    );
    assert_eq!(
        balance_of(&one, id(1)).await,
        22,
        "one sees two's deposit at once"
    );
    // The read refreshed one's entry: its next command is not stale.
    assert_eq!(
        one.execute(deposit(id(1), 1, 3)).await,
        Ok(Outcome::Applied)
    );
    assert_eq!(metrics.cache_stale.get(), 0);
    assert_eq!(balances(&events(&store, id(1)).await), [10, 15, 22, 23]);
}

#[tokio::test(start_paused = true)]
async fn two_engines_on_one_store_with_stale_caches_stay_correct() {
    let store = InstrumentedStore::new();
    let config = EngineConfig {
        retries_max: 64,
        ..EngineConfig::default()
    };
    let (one, one_metrics) = seeded_engine(&store, config.clone(), 1);
    let (two, two_metrics) = seeded_engine(&store, config, 2);
    let (one, two) = (Arc::new(one), Arc::new(two));
    let accounts: Vec<AccountId> = (1..=4).map(id).collect();
    for account in &accounts {
        funded(&one, *account, 100).await;
        // Both instances know every account before the race.
        two.state(Caller::Anyone, *account).await.unwrap();
    }
    // Appends take a while, so the engines' commands overlap and each
    // one's cache goes stale under the other's writes.
    store.delay_appends(Duration::from_millis(2));
    let mut tasks = tokio::task::JoinSet::new();
    let mut requests = Vec::new();
    for n in 0..120u128 {
        let from = accounts[(n % 4) as usize];
        let to = accounts[((n / 4 + n + 1) % 4) as usize];
        let to = if to == from {
            accounts[((n + 2) % 4) as usize]
        } else {
            to
        };
        let request = transfer(from, to, 1 + (n % 37) as i64, 1_000 + n);
        requests.push((n, request.clone()));
        let engine = if n % 2 == 0 { one.clone() } else { two.clone() };
        tasks.spawn(async move { (n, engine.execute(request).await) });
    }
    let mut answers = std::collections::BTreeMap::new();
    while let Some(joined) = tasks.join_next().await {
        let (n, answer) = joined.unwrap();
        answers.insert(n, answer);
    }
    let mut applied = 0;
    for (n, answer) in &answers {
        let written = carrying(&store, &accounts, 1_000 + n).await;
        match answer {
            Ok(Outcome::Applied) => {
                applied += 1;
                assert_eq!(written, 2, "transfer {n}: both legs, once");
            }
            Err(EngineError::Refused(accounts::domain::Refusal::InsufficientBalance {
                ..
            })) => {
                assert_eq!(written, 0, "transfer {n} was refused")
            }
            other => panic!("transfer {n}: {other:?}"),
        }
    }
    assert!(applied > 60, "most transfers land: {applied}");
    let mut total = 0;
    for account in &accounts {
        let state = store.bypass().load(*account, None).await.unwrap().fold().0;
        testkit::stores::checked_stream(store.bypass().as_ref(), *account, &state).await;
        total += state.balance();
    }
    assert_eq!(total, 400, "money is conserved");
    let stale = one_metrics.cache_stale.get() + two_metrics.cache_stale.get();
    assert!(stale > 0, "the caches did go stale");
    assert!(hits(&one_metrics) > 0 && hits(&two_metrics) > 0);
    // Every applied transfer, replayed on the other engine, is answered from
    // its record and written nowhere again.
    store.delay_appends(Duration::ZERO);
    let events_before = store.appends_applied();
    for (n, request) in requests {
        if answers[&n] == Ok(Outcome::Applied) {
            let engine = if n % 2 == 0 { &two } else { &one };
            assert_eq!(
                engine.execute(request).await,
                Ok(Outcome::AlreadyApplied),
                "replay of {n}"
            );
        }
    }
    assert_eq!(store.appends_applied(), events_before);
}

#[tokio::test(start_paused = true)]
async fn commands_that_arrive_together_are_written_in_one_batch() {
    let store = InstrumentedStore::new();
    let (engine, metrics) = funded_engine(&store, 8, 0).await;
    let (batches, attempted) = (store.batch_sizes().len(), store.appends_attempted());
    // While the first append is in the store, the others queue behind it.
    store.delay_appends(Duration::from_millis(10));
    let mut tasks = tokio::task::JoinSet::new();
    for n in 1..=8u128 {
        let engine = engine.clone();
        tasks.spawn(async move { engine.execute(deposit(id(n), n as i64, n)).await });
    }
    while let Some(joined) = tasks.join_next().await {
        assert_eq!(joined.unwrap(), Ok(Outcome::Applied));
    }
    let sizes = store.batch_sizes()[batches..].to_vec();
    assert_eq!(sizes.iter().sum::<usize>(), 8, "{sizes:?}");
    assert!(
        sizes.len() <= 2 && sizes.iter().any(|&size| size > 1),
        "{sizes:?}"
    );
    assert_eq!(
        store.appends_attempted(),
        attempted + 8,
        "each written once"
    );
    for n in 1..=8 {
        assert_eq!(balances(&events(&store, id(n)).await), [n as i64]);
    }
    let histogram = &metrics.batch_size;
    assert!(histogram.get_sample_count() >= sizes.len() as u64);
}

#[tokio::test(start_paused = true)]
async fn a_store_that_gains_nothing_from_batches_gets_each_append_at_once() {
    let store = InstrumentedStore::new();
    store.append_directly();
    let (engine, metrics) = funded_engine(&store, 8, 0).await;
    let batches = store.batch_sizes().len();
    // Batched, the others would queue behind the first append's 10 ms.
    store.delay_appends(Duration::from_millis(10));
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for n in 1..=8u128 {
        let engine = engine.clone();
        tasks.spawn(async move { engine.execute(deposit(id(n), n as i64, n)).await });
    }
    while let Some(joined) = tasks.join_next().await {
        assert_eq!(joined.unwrap(), Ok(Outcome::Applied));
    }
    assert!(
        started.elapsed() < Duration::from_millis(20),
        "side by side"
    );
    assert_eq!(store.batch_sizes()[batches..], [1; 8]);
    assert_eq!(metrics.batch_size.get_sample_count(), 0, "no batch written");
    for n in 1..=8 {
        assert_eq!(balances(&events(&store, id(n)).await), [n as i64]);
    }
}

#[tokio::test(start_paused = true)]
async fn a_direct_append_that_does_not_answer_is_ambiguous_and_retried() {
    let store = InstrumentedStore::new();
    store.append_directly();
    append_that_does_not_answer_is_ambiguous_and_retried(store).await;
}

#[tokio::test(start_paused = true)]
async fn a_direct_append_whose_caller_gives_up_writes_nothing() {
    let store = InstrumentedStore::new();
    store.append_directly();
    let (engine, _) = engine(&store, EngineConfig::default());
    let engine = Arc::new(engine);
    funded(&engine, id(1), 10).await;
    let (attempted, applied) = (store.appends_attempted(), store.appends_applied());
    store.hold_appends();
    let request = tokio::spawn({
        let engine = engine.clone();
        async move { engine.execute(deposit(id(1), 7, 1)).await }
    });
    store.appends_reached(attempted + 1).await;
    request.abort();
    assert!(request.await.unwrap_err().is_cancelled());
    store.release_appends();
    // Long enough for anything still running to have written.
    tokio::time::sleep(Duration::from_secs(60)).await;
    assert_eq!(store.appends_applied(), applied);
    assert_eq!(balances(&events(&store, id(1)).await), [10]);
}

#[tokio::test(start_paused = true)]
async fn a_conflicting_member_of_a_batch_does_not_fail_the_others() {
    let store = InstrumentedStore::new();
    let (engine, metrics) = funded_engine(&store, 6, 10).await;
    let (batches, applied) = (store.batch_sizes().len(), store.appends_applied());
    // Another writer deposits 5 on account 3 just before the first batch:
    // the member for account 3, decided on its cached state, is stale.
    let interloper = other_writers_deposit(id(3));
    store.script_appends([Fault::OtherWriterFirst(Box::new(interloper))]);
    store.delay_appends(Duration::from_millis(10));
    let mut tasks = tokio::task::JoinSet::new();
    for n in 1..=6u128 {
        let engine = engine.clone();
        tasks.spawn(async move { engine.execute(deposit(id(n), 1, n)).await });
    }
    while let Some(joined) = tasks.join_next().await {
        assert_eq!(joined.unwrap(), Ok(Outcome::Applied));
    }
    let sizes = store.batch_sizes()[batches..].to_vec();
    assert!(sizes.iter().any(|&size| size > 1), "{sizes:?}");
    assert_eq!(
        sizes.iter().sum::<usize>(),
        7,
        "six members and the stale one's retry: {sizes:?}"
    );
    assert_eq!(
        store.appends_applied(),
        applied + 6,
        "every command landed once"
    );
    assert_eq!((metrics.conflicts.get(), metrics.cache_stale.get()), (1, 1));
    assert_eq!(
        balances(&events(&store, id(3)).await),
        [10, 15, 16],
        "decided again on the other writer's 15"
    );
    for n in [1, 2, 4, 5, 6] {
        assert_eq!(balances(&events(&store, id(n)).await), [10, 11]);
    }
}

#[tokio::test(start_paused = true)]
async fn a_replay_after_the_cache_forgot_the_account_answers_the_record() {
    let config = EngineConfig {
        cache_accounts: 2,
        ..EngineConfig::default()
    };
    let store = InstrumentedStore::new();
    let (engine, _) = engine(&store, config);
    let a = id(1);
    funded(&engine, a, 10).await;
    let withdraw = request(a, Command::Withdraw { amount: amount(10) }, 1);
    assert_eq!(engine.execute(withdraw.clone()).await, Ok(Outcome::Applied));
    assert_eq!(engine.execute(deposit(a, 5, 2)).await, Ok(Outcome::Applied));
    // Two other accounts push `a` out of a cache of two.
    funded(&engine, id(2), 0).await;
    funded(&engine, id(3), 0).await;
    let reads = store.reads();
    // Decided afresh, a withdrawal of 10 from 5 would be refused: the answer
    // comes from the record.
    assert_eq!(engine.execute(withdraw).await, Ok(Outcome::AlreadyApplied));
    assert!(store.reads() > reads, "the forgotten account was loaded");
    let reused = engine.execute(deposit(a, 3, 1)).await;
    assert!(
        matches!(reused, Err(EngineError::TransactionReused { .. })),
        "{reused:?}"
    );
    assert_eq!(balances(&events(&store, a).await), [10, 0, 5]);
}

#[tokio::test(start_paused = true)]
async fn a_replay_of_a_transaction_id_older_than_the_cache_remembers_answers_the_record() {
    let store = InstrumentedStore::new();
    let (engine, metrics) = engine(&store, EngineConfig::default());
    let a = id(1);
    funded(&engine, a, 10).await;
    let withdraw = request(a, Command::Withdraw { amount: amount(10) }, 1);
    assert_eq!(engine.execute(withdraw.clone()).await, Ok(Outcome::Applied));
    let newer = RECENT_TRANSACTIONS as u128 + 1;
    for n in 0..newer {
        let outcome = engine.execute(deposit(a, 1, 100 + n)).await;
        assert_eq!(outcome, Ok(Outcome::Applied));
    }
    let stored = events(&store, a).await.len();
    // A recent one is answered from the cache, without a load.
    let reads = store.reads();
    assert_eq!(
        engine.execute(deposit(a, 1, 100 + newer - 1)).await,
        Ok(Outcome::AlreadyApplied)
    );
    assert_eq!(store.reads(), reads);
    // The cached entry is current but no longer lists transactions 1 and
    // 100: the withdrawal is refused on the cached 5 (so decided on a load),
    // the deposit is refused by the store as recorded (so retried on a load).
    assert_eq!(engine.execute(withdraw).await, Ok(Outcome::AlreadyApplied));
    let stale = metrics.cache_stale.get();
    assert_eq!(
        engine.execute(deposit(a, 1, 100)).await,
        Ok(Outcome::AlreadyApplied)
    );
    assert_eq!(metrics.cache_stale.get(), stale + 1, "the store refused it");
    assert_eq!(
        events(&store, a).await.len(),
        stored,
        "nothing written twice"
    );
}

/// Another writer's deposit of 5 onto an account funded with 10 (its
/// events 1 and 2): event 3, under a transactionId of its own.
fn other_writers_deposit(account: AccountId) -> Commit {
    let other = TransactionId::from_uuid(Uuid::from_u128(0xbeef));
    Commit {
        events: vec![RecordedEvent {
            account_id: account,
            sequence_number: 3,
            transaction_id: other,
            event: Event::MoneyDeposited {
                amount_deposited: 5,
                balance: 15,
                transfer_from: None,
            },
            recorded_at: Timestamp::from_unix_millis(0),
        }],
        transactions: vec![TransactionRecord {
            account_id: account,
            transaction_id: other,
            fingerprint: Fingerprint("deposit amount=5".to_owned()),
        }],
        snapshots: vec![],
    }
}

/// Commands on one account, all in flight at once behind a slow store;
/// their answers in the order given.
async fn at_once(
    engine: &Arc<Engine>,
    requests: Vec<Request>,
) -> Vec<Result<Outcome, EngineError>> {
    let mut tasks = tokio::task::JoinSet::new();
    for (n, request) in requests.into_iter().enumerate() {
        let engine = engine.clone();
        tasks.spawn(async move { (n, engine.execute(request).await) });
    }
    let mut answers = Vec::new();
    while let Some(joined) = tasks.join_next().await {
        answers.push(joined.unwrap());
    }
    answers.sort_by_key(|(n, _)| *n);
    answers.into_iter().map(|(_, answer)| answer).collect()
}

#[tokio::test(start_paused = true)]
async fn identical_requests_in_flight_wait_for_the_first_instead_of_conflicting() {
    let store = InstrumentedStore::new();
    let (engine, metrics) = engine(&store, EngineConfig::default());
    let engine = Arc::new(engine);
    let a = id(1);
    funded(&engine, a, 0).await;
    let attempted = store.appends_attempted();
    store.delay_appends(Duration::from_millis(10));
    let answers = at_once(&engine, vec![deposit(a, 5, 1); 8]).await;
    let applied = answers
        .iter()
        .filter(|a| **a == Ok(Outcome::Applied))
        .count();
    let replayed = answers
        .iter()
        .filter(|a| **a == Ok(Outcome::AlreadyApplied));
    assert_eq!((applied, replayed.count()), (1, 7), "{answers:?}");
    assert_eq!(store.appends_attempted(), attempted + 1, "written once");
    assert_eq!(metrics.conflicts.get(), 0);
    // A reuse of the id for something else waits too, then is refused.
    let reuse = at_once(&engine, vec![deposit(a, 5, 2), deposit(a, 6, 2)]).await;
    assert_eq!(reuse[0], Ok(Outcome::Applied));
    assert!(matches!(
        reuse[1],
        Err(EngineError::TransactionReused { .. })
    ));
    assert_eq!(balances(&events(&store, a).await), [5, 10]);
}
