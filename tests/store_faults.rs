//! Fault tests on the server databases: while clients run deposits and
//! transfers (retrying with the same transactionId, as real clients do), an
//! administrator's connection keeps killing the connections of the
//! service's database — `pg_terminate_backend` on PostgreSQL, `KILL` on
//! MariaDB — aiming at those in the middle of an append or its COMMIT, and
//! now and then at all of them. The test requires that commits really were
//! cut off mid-flight (the engine saw ambiguous outcomes), not only idle
//! connections. Afterwards nothing may be lost or duplicated: every
//! acknowledged operation is applied exactly once, every refused one not at
//! all, and each account's balance is exactly what the answers imply.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use accounts::domain::{
    AccountId, Amount, Caller, Command, Event, OwnerId, Timestamp, TransactionId,
};
use accounts::engine::{
    Engine, EngineConfig, EngineError, Entropy, Outcome, Request, SeededEntropy,
};
use accounts::store::{AppendError, Commit, RecordedEvent, StoreOptions};
use testkit::database::{Connections, ServerConnection, event_insert};
use testkit::stores::checked_stream;
use testkit::{Backend, StatusCode, TestInstance, TestStore};

const ACCOUNTS: usize = 4;
const CLIENTS: u64 = 8;
const OPERATIONS_PER_CLIENT: usize = 40;
const INITIAL_BALANCE: i64 = 1_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs ACCOUNTS_TEST_POSTGRES_URL"]
async fn postgres_connections_killed_mid_load_lose_and_duplicate_nothing() {
    connections_killed_mid_load(Backend::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs ACCOUNTS_TEST_MYSQL_URL"]
async fn mysql_connections_killed_mid_load_lose_and_duplicate_nothing() {
    connections_killed_mid_load(Backend::Mysql).await;
}

/// One client operation and the answer it finally got.
#[derive(Clone, Debug)]
struct Acknowledged {
    transaction_id: TransactionId,
    /// (account, money moved) of the operation, applied or not.
    effects: Vec<(AccountId, i64)>,
    applied: bool,
}

async fn connections_killed_mid_load(backend: Backend) {
    let options = StoreOptions {
        pool_size: 6,
        connect_timeout: Duration::from_secs(10),
        acquire_timeout: Duration::from_secs(2),
    };
    let test = TestStore::open_with(backend, options).await;
    let builder = TestInstance::builder()
        .store(test.store.clone())
        .engine_config(EngineConfig {
            snapshot_every: 5,
            store_timeout: Duration::from_secs(5),
            ..EngineConfig::default()
        });
    let metrics = builder.metrics().engine;
    let engine = Arc::new(builder.build_engine());
    let entropy = SeededEntropy::from_os();
    let accounts = funded_accounts(&engine, ACCOUNTS, &entropy).await;

    let done = Arc::new(AtomicBool::new(false));
    let mut killer = test.database().expect("a server database").killer().await;
    let killer = {
        let done = done.clone();
        tokio::spawn(async move {
            let (mut committing, mut all) = (0, 0);
            for round in 1usize.. {
                if done.load(Ordering::SeqCst) {
                    break;
                }
                committing += killer.kill(Connections::Committing).await;
                if round % 50 == 0 {
                    all += killer.kill(Connections::All).await;
                }
                // Pacing only: the clients need the CPU too.
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            (committing, all)
        })
    };
    let clients: Vec<_> = (0..CLIENTS)
        .map(|client| {
            let engine = engine.clone();
            let accounts = accounts.clone();
            tokio::spawn(async move { run_client(&engine, &accounts, client).await })
        })
        .collect();
    let mut answers = Vec::new();
    for client in clients {
        answers.extend(client.await.expect("client"));
    }
    done.store(true, Ordering::SeqCst);
    let (committing, all) = killer.await.expect("killer");
    let ambiguous = metrics.ambiguous_commits.get();
    eprintln!(
        "{backend:?}: {} operations, {committing} connections killed while writing or committing, \
         {all} in sweeps of all, {ambiguous} ambiguous commits, {} conflicts",
        answers.len(),
        metrics.conflicts.get()
    );
    assert!(
        committing > 0,
        "connections were killed in the middle of appends"
    );
    assert!(
        ambiguous > 0,
        "COMMITs were cut off mid-flight: the engine saw outcomes it could not know"
    );
    check(&engine, &test, &accounts, &answers).await;
}

/// `count` accounts opened and funded with `INITIAL_BALANCE`, before any
/// connection is killed.
async fn funded_accounts(engine: &Engine, count: usize, entropy: &SeededEntropy) -> Vec<AccountId> {
    let accounts: Vec<AccountId> = (0..count)
        .map(|_| AccountId::from_uuid(entropy.uuid()))
        .collect();
    for id in &accounts {
        let owner = OwnerId::from_uuid(entropy.uuid());
        engine
            .execute(request(*id, Command::Open { owner_id: owner }, entropy))
            .await
            .expect("open");
        let deposit = Command::Deposit {
            amount: Amount::new(INITIAL_BALANCE).unwrap(),
        };
        engine
            .execute(request(*id, deposit, entropy))
            .await
            .expect("deposit");
    }
    accounts
}

fn request(account: AccountId, command: Command, entropy: &SeededEntropy) -> Request {
    Request {
        caller: Caller::Anyone,
        account,
        command,
        transaction_id: Some(TransactionId::from_uuid(entropy.uuid())),
    }
}

/// Random deposits and transfers, each retried with its transactionId
/// until it gets a final answer (applied, already applied, or refused).
async fn run_client(engine: &Engine, accounts: &[AccountId], client: u64) -> Vec<Acknowledged> {
    let entropy = SeededEntropy::new(client);
    let mut answers = Vec::new();
    for _ in 0..OPERATIONS_PER_CLIENT {
        let from = accounts[entropy.below(ACCOUNTS as u64) as usize];
        let amount = entropy.below(400) as i64 + 1;
        let (command, effects) = if entropy.below(3) == 0 {
            (
                Command::Deposit {
                    amount: Amount::new(amount).unwrap(),
                },
                vec![(from, amount)],
            )
        } else {
            let to = accounts[entropy.below(ACCOUNTS as u64) as usize];
            (
                Command::Transfer {
                    target: to,
                    amount: Amount::new(amount).unwrap(),
                },
                vec![(from, -amount), (to, amount)],
            )
        };
        let request = request(from, command, &entropy);
        let transaction_id = request.transaction_id.unwrap();
        let mut attempts = 0;
        let applied = loop {
            attempts += 1;
            assert!(attempts < 500, "no final answer for {request:?}");
            match engine.execute(request.clone()).await {
                Ok(Outcome::Applied | Outcome::AlreadyApplied) => break true,
                Ok(Outcome::Unchanged) => panic!("a non-zero amount always changes something"),
                Err(EngineError::Refused(_)) => break false,
                Err(EngineError::TransactionReused { .. }) => {
                    panic!("the identical request is never a reused id")
                }
                Err(EngineError::Conflict(_) | EngineError::Store(_)) => {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            }
        };
        answers.push(Acknowledged {
            transaction_id,
            effects,
            applied,
        });
    }
    answers
}

async fn check(
    engine: &Engine,
    test: &TestStore,
    accounts: &[AccountId],
    answers: &[Acknowledged],
) {
    let mut expected: HashMap<AccountId, i64> =
        accounts.iter().map(|id| (*id, INITIAL_BALANCE)).collect();
    for answer in answers.iter().filter(|a| a.applied) {
        for (account, moved) in &answer.effects {
            *expected.get_mut(account).unwrap() += moved;
        }
    }
    let mut occurrences: HashMap<(AccountId, TransactionId), usize> = HashMap::new();
    for id in accounts {
        let state = engine
            .state(Caller::Anyone, *id)
            .await
            .expect("state after the faults");
        assert_eq!(state.balance(), expected[id], "balance of {id}");
        let events = checked_stream(&*test.store, *id, &state).await;
        for event in &events {
            *occurrences.entry((*id, event.transaction_id)).or_default() += 1;
        }
    }
    for answer in answers {
        let self_transfer = answer.effects.len() == 2 && answer.effects[0].0 == answer.effects[1].0;
        for (account, _) in &answer.effects {
            let count = occurrences
                .get(&(*account, answer.transaction_id))
                .copied()
                .unwrap_or(0);
            let wanted = usize::from(answer.applied && !self_transfer);
            assert_eq!(
                count, wanted,
                "transaction {} on {account}: applied={} but {count} events",
                answer.transaction_id, answer.applied
            );
        }
    }
    let total: i64 = expected.values().sum();
    let deposits: i64 = answers
        .iter()
        .filter(|a| a.applied && a.effects.len() == 1)
        .map(|a| a.effects[0].1)
        .sum();
    assert_eq!(total, ACCOUNTS as i64 * INITIAL_BALANCE + deposits);
}

// ------------------------------------------ connections that died idle

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs ACCOUNTS_TEST_POSTGRES_URL"]
async fn postgres_connections_killed_while_idle_fail_no_request() {
    connections_killed_while_idle(Backend::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs ACCOUNTS_TEST_MYSQL_URL"]
async fn mysql_connections_killed_while_idle_fail_no_request() {
    connections_killed_while_idle(Backend::Mysql).await;
}

/// The pool pings only connections idle for a second or more, so one killed
/// a moment ago is handed out as it is. Every pooled connection is killed
/// between rounds of reads and writes that use them all again at once; no
/// read, deposit or transfer may fail for it: reads and writes that cannot
/// have committed are tried again on a live connection, and a write whose
/// outcome the kill made unknown is read back by the engine.
async fn connections_killed_while_idle(backend: Backend) {
    const POOL: u32 = 4;
    let options = StoreOptions {
        pool_size: POOL,
        connect_timeout: Duration::from_secs(10),
        acquire_timeout: Duration::from_secs(2),
    };
    let test = TestStore::open_with(backend, options).await;
    let engine = Arc::new(
        TestInstance::builder()
            .store(test.store.clone())
            .build_engine(),
    );
    let entropy = SeededEntropy::from_os();
    let accounts = funded_accounts(&engine, POOL as usize * 2, &entropy).await;
    let mut killer = test.database().expect("a server database").killer().await;
    let mut expected: HashMap<AccountId, i64> =
        accounts.iter().map(|id| (*id, INITIAL_BALANCE)).collect();
    for round in 0..5 {
        let killed = killer.kill(Connections::All).await;
        assert!(
            killed > 0,
            "round {round}: the pool held connections to kill"
        );
        // As many at once as the pool has connections, so that every dead
        // one is handed out.
        let calls: Vec<_> = accounts
            .iter()
            .enumerate()
            .map(|(n, &id)| {
                let engine = engine.clone();
                let command = match n % 3 {
                    0 => None,
                    1 => Some(Command::Deposit {
                        amount: Amount::new(5).unwrap(),
                    }),
                    _ => Some(Command::Transfer {
                        target: accounts[(n + 1) % accounts.len()],
                        amount: Amount::new(1).unwrap(),
                    }),
                };
                let request = command.map(|command| request(id, command, &entropy));
                tokio::spawn(async move {
                    match request {
                        None => engine.state(Caller::Anyone, id).await.map(|_| None),
                        Some(request) => engine.execute(request).await.map(Some),
                    }
                })
            })
            .collect();
        for (n, call) in calls.into_iter().enumerate() {
            let answer = call.await.expect("call");
            assert!(
                answer.is_ok(),
                "round {round}, call {n}: failed after its connection was killed idle: {answer:?}"
            );
            match n % 3 {
                0 => {}
                1 => *expected.get_mut(&accounts[n]).unwrap() += 5,
                _ => {
                    *expected.get_mut(&accounts[n]).unwrap() -= 1;
                    *expected
                        .get_mut(&accounts[(n + 1) % accounts.len()])
                        .unwrap() += 1;
                }
            }
        }
    }
    for id in &accounts {
        let state = engine.state(Caller::Anyone, *id).await.expect("state");
        assert_eq!(state.balance(), expected[id], "balance of {id}");
        checked_stream(&*test.store, *id, &state).await;
    }
}

// ------------------------------------------------------------- deadlocks

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs ACCOUNTS_TEST_POSTGRES_URL"]
async fn postgres_deadlock_is_a_conflict_and_writes_nothing() {
    // PostgreSQL aborts the transaction whose deadlock check runs first:
    // the append, which started waiting first (40P01).
    assert_deadlock_is_a_conflict(Backend::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs ACCOUNTS_TEST_MYSQL_URL"]
async fn mysql_deadlock_is_a_conflict_and_writes_nothing() {
    // InnoDB aborts the lighter transaction: the append (1213).
    assert_deadlock_is_a_conflict(Backend::Mysql).await;
}

/// Far above the databases' deadlock detection (PostgreSQL checks after
/// `deadlock_timeout`, 1 s; InnoDB at once): a cycle never broken fails the
/// test instead of hanging it.
const DEADLOCK_BOUND: Duration = Duration::from_secs(60);

/// Waits until a connection to the database at `url` waits for a row lock
/// (the append, blocked by the raw writer): an event, not a guess of time.
async fn wait_for_a_lock_wait<T>(backend: Backend, url: &str, append: &tokio::task::JoinHandle<T>) {
    let mut observer = ServerConnection::connect(backend, url).await.unwrap();
    let deadline = std::time::Instant::now() + DEADLOCK_BOUND;
    loop {
        let waiting: i64 = match &mut observer {
            ServerConnection::Postgres(connection) => sqlx::query_scalar(
                "SELECT COUNT(*) FROM pg_stat_activity
                 WHERE datname = current_database() AND wait_event_type = 'Lock'",
            )
            .fetch_one(connection)
            .await
            .unwrap(),
            ServerConnection::Mysql(connection) => sqlx::query_scalar(
                "SELECT COUNT(*) FROM information_schema.INNODB_TRX t
                 JOIN information_schema.PROCESSLIST p ON p.ID = t.trx_mysql_thread_id
                 WHERE t.trx_state = 'LOCK WAIT' AND p.DB = DATABASE()",
            )
            .fetch_one(connection)
            .await
            .unwrap(),
        };
        if waiting > 0 {
            return;
        }
        assert!(
            !append.is_finished(),
            "the append ended without waiting for a lock"
        );
        assert!(
            std::time::Instant::now() < deadline,
            "the append never waited for the other writer's row"
        );
        // InnoDB refreshes INNODB_TRX only when it was last read over
        // 100 ms ago: polled faster, it never changes.
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
}

/// A transfer commit (rows of `low`, then `high`) races a raw transaction
/// that holds `high`'s next row and then asks for `low`'s: a lock cycle the
/// database must break. Returns the append's answer after checking that a
/// refused append wrote nothing.
/// An instance on a PostgreSQL test database through a pool of 4 that
/// waits at most 2 s for a connection, so a dead server shows in seconds.
async fn small_pool_on_postgres() -> (TestStore, TestInstance) {
    let options = StoreOptions {
        pool_size: 4,
        connect_timeout: Duration::from_secs(10),
        acquire_timeout: Duration::from_secs(2),
    };
    let test = TestStore::open_with(Backend::Postgres, options).await;
    let app = TestInstance::over(test.store.clone());
    (test, app)
}

/// The append that loses a deadlock answers a conflict (so the engine
/// retries it), never a store error.
async fn assert_deadlock_is_a_conflict(backend: Backend) {
    let outcome = deadlock_against_an_opposite_writer(backend).await;
    assert!(
        matches!(outcome, Err(AppendError::Conflict(_))),
        "{outcome:?}"
    );
}

async fn deadlock_against_an_opposite_writer(backend: Backend) -> Result<(), AppendError> {
    let test = TestStore::open(backend).await;
    let entropy = SeededEntropy::from_os();
    let mut pair = [
        AccountId::from_uuid(entropy.uuid()),
        AccountId::from_uuid(entropy.uuid()),
    ];
    pair.sort();
    let [low, high] = pair;
    let at = Timestamp::from_unix_millis(1_795_000_000_000);
    let event = |account, sequence, event| RecordedEvent {
        account_id: account,
        sequence_number: sequence,
        transaction_id: TransactionId::from_uuid(entropy.uuid()),
        event,
        recorded_at: at,
    };
    for account in pair {
        let owner = OwnerId::from_uuid(entropy.uuid());
        test.store
            .append(&Commit {
                events: vec![event(account, 1, Event::AccountOpened { owner_id: owner })],
                ..Commit::default()
            })
            .await
            .unwrap();
    }
    let deposit = Event::MoneyDeposited {
        amount_deposited: 1,
        balance: 1,
        transfer_from: None,
    };
    let commit = Commit {
        events: vec![event(low, 2, deposit.clone()), event(high, 2, deposit)],
        ..Commit::default()
    };

    let url = test.url.clone().unwrap();
    let mut other = RawWriter::connect(backend, &url).await;
    other.begin().await;
    // Ballast: InnoDB aborts the transaction that changed fewer rows, so
    // this one must weigh more than the append for the append to lose.
    for _ in 0..8 {
        let unrelated = entropy.uuid().to_string();
        other.insert_event(&unrelated, 1).await.unwrap();
    }
    other.insert_event(&high.to_string(), 2).await.unwrap();
    let append = {
        let store = test.store.clone();
        tokio::spawn(async move { store.append(&commit).await })
    };
    // The append has taken `low`'s row once it waits for `high`'s.
    wait_for_a_lock_wait(backend, &url, &append).await;
    let low_text = low.to_string();
    let closing = other.insert_event(&low_text, 2);
    let (outcome, closed) =
        tokio::time::timeout(DEADLOCK_BOUND, async { tokio::join!(append, closing) })
            .await
            .expect("the database breaks the lock cycle");
    let outcome = outcome.expect("append task");
    eprintln!("{backend:?}: append {outcome:?}; other writer {closed:?}");
    other.rollback().await;
    let stored = test.store.events(low, 1, 10).await.unwrap().len();
    match &outcome {
        Ok(()) => assert_eq!(stored, 2),
        Err(_) => assert_eq!(stored, 1, "a refused append writes nothing"),
    }
    outcome
}

/// A plain connection writing events rows by hand, outside the store.
struct RawWriter(ServerConnection);

impl RawWriter {
    async fn connect(backend: Backend, url: &str) -> RawWriter {
        RawWriter(ServerConnection::connect(backend, url).await.unwrap())
    }

    async fn begin(&mut self) {
        self.0.execute("BEGIN".to_owned()).await.unwrap();
    }

    async fn rollback(&mut self) {
        self.0.execute("ROLLBACK".to_owned()).await.unwrap();
    }

    /// An event row at a feed position of its own, far above the store's
    /// (the writer is rolled back, so it never shows in the feed).
    async fn insert_event(&mut self, account: &str, sequence: i64) -> Result<(), sqlx::Error> {
        let transaction = uuid::Uuid::from_u128(u128::from(sequence as u64)).to_string();
        let account = uuid::Uuid::parse_str(account).expect("a uuid");
        let account_bits = account.as_u128() % (1 << 40);
        let position = i64::from(u32::MAX) + (account_bits as i64) * 16 + sequence;
        let insert = event_insert(
            &account.to_string(),
            sequence,
            &transaction,
            &position.to_string(),
        );
        self.0.execute(insert).await
    }
}

// ------------------------------------------------- a server that stops writing

/// A PostgreSQL server that refuses writes — what a demoted primary, a
/// standby or a primary restarting in recovery answers (`25006`) — makes a
/// deposit `503 unavailable` with nothing changed, never a 500 or a
/// success; the readiness check says so too. Once the server writes again,
/// the same deposit (same transactionId) succeeds on the first try: the
/// pool dropped the connections that refused, and the engine's second
/// attempt went out on a new one.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs ACCOUNTS_TEST_POSTGRES_URL"]
async fn postgres_read_only_server_is_unavailable_and_changes_nothing() {
    let (test, app) = small_pool_on_postgres().await;
    let client = app.client();
    let account = SeededEntropy::from_os().uuid();
    client
        .open_funded(
            account,
            SeededEntropy::from_os().uuid(),
            100,
            SeededEntropy::from_os().uuid(),
        )
        .await;
    let database = test.database().expect("a server database");
    let mut admin = database.admin().await.expect("an admin connection");
    let mut killer = database.killer().await;
    admin
        .execute(format!(
            "ALTER DATABASE {} SET default_transaction_read_only = on",
            database.name
        ))
        .await
        .expect("ALTER DATABASE");
    // New sessions see the setting; the pooled ones are made new.
    killer.kill(Connections::All).await;
    let deposit = SeededEntropy::from_os().uuid();
    let refused = client.deposit(account, 10, deposit).await;
    refused.assert_error(
        StatusCode::SERVICE_UNAVAILABLE,
        "unavailable",
        "unavailable",
    );
    let transfer_target = SeededEntropy::from_os().uuid();
    let opened = client
        .open(transfer_target, SeededEntropy::from_os().uuid())
        .await;
    opened.assert_error(
        StatusCode::SERVICE_UNAVAILABLE,
        "unavailable",
        "unavailable",
    );
    assert_eq!(client.balance(account).await, 100, "nothing changed");
    assert_eq!(
        client.event_list(account).await.len(),
        2,
        "nothing recorded"
    );
    client.ready().await.assert_error(
        StatusCode::SERVICE_UNAVAILABLE,
        "unavailable",
        "does not take writes",
    );

    admin
        .execute(format!(
            "ALTER DATABASE {} RESET default_transaction_read_only",
            database.name
        ))
        .await
        .expect("ALTER DATABASE RESET");
    client
        .deposit(account, 10, deposit)
        .await
        .assert_status(StatusCode::NO_CONTENT);
    assert_eq!(client.balance(account).await, 110);
    let ready = client.ready().await;
    assert_eq!(ready.status, 200, "{ready:?}");
}

/// Every connection killed again and again by `pg_terminate_backend`
/// (`57P01`) while deposits run: each answer is a success or `503`, never
/// a 500; sent again with the same transactionId until it succeeds, every
/// deposit is applied exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs ACCOUNTS_TEST_POSTGRES_URL"]
async fn postgres_terminated_sessions_answer_success_or_503_and_apply_once() {
    const DEPOSITS: usize = 40;
    let (test, app) = small_pool_on_postgres().await;
    let client = app.client();
    let entropy = SeededEntropy::from_os();
    let account = entropy.uuid();
    client
        .open_funded(account, entropy.uuid(), 0, entropy.uuid())
        .await;
    let mut killer = test.database().expect("a server database").killer().await;
    let stop = Arc::new(AtomicBool::new(false));
    let killing = {
        let stop = stop.clone();
        tokio::spawn(async move {
            let mut killed = 0;
            while !stop.load(Ordering::Relaxed) {
                killed += killer.kill(Connections::All).await;
                tokio::task::yield_now().await;
            }
            killed
        })
    };
    let ids: Vec<_> = (0..DEPOSITS).map(|_| entropy.uuid()).collect();
    let mut refused = Vec::new();
    for id in &ids {
        let answer = client.deposit(account, 1, id).await;
        match answer.status.as_u16() {
            204 => {}
            503 => refused.push(*id),
            other => panic!("a deposit under killed sessions answered {other}: {answer:?}"),
        }
    }
    stop.store(true, Ordering::Relaxed);
    let killed = killing.await.expect("killer");
    assert!(killed > 0, "sessions were terminated");
    for id in refused {
        client
            .deposit(account, 1, id)
            .await
            .assert_status(StatusCode::NO_CONTENT);
    }
    assert_eq!(client.balance(account).await, DEPOSITS as i64);
    assert_eq!(client.event_list(account).await.len(), DEPOSITS + 1);
}

/// The MariaDB feed counter's row gone (an operator's mistake, a bad
/// restore): the append stops with `503` and writes nothing, rather than
/// inventing positions from a stale `LAST_INSERT_ID()`.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs ACCOUNTS_TEST_MYSQL_URL"]
async fn mysql_missing_position_counter_refuses_the_append() {
    let test = TestStore::open(Backend::Mysql).await;
    let engine = test.engine(1, 0);
    let entropy = SeededEntropy::from_os();
    let account = funded_accounts(&engine, 1, &entropy).await[0];
    let database = test.database().expect("a server database");
    let mut admin = database.admin().await.expect("an admin connection");
    admin
        .execute(format!("DELETE FROM {}.event_positions", database.name))
        .await
        .expect("DELETE");
    let deposit = Command::Deposit {
        amount: Amount::new(1).unwrap(),
    };
    match engine.execute(request(account, deposit, &entropy)).await {
        Err(EngineError::Store(error)) => assert!(
            error.to_string().contains("position counter"),
            "the error names the missing counter: {error}"
        ),
        other => panic!("an append without the counter row answered {other:?}"),
    }
    let events = test.store.events(account, 1, 100).await.expect("events");
    assert_eq!(events.len(), 2, "nothing recorded: {events:?}");
}
