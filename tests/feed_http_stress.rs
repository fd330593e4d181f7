//! The feed's guarantee end to end over HTTP, per store: writers deposit,
//! transfer (both ways between a few hot accounts, so they conflict and the
//! engine retries) and replay transactionIds, through two instances over
//! the same store, while readers page `/api/events` and long-poll it with
//! `waitMs`, each always resuming after the last position it was given.
//! At the end every reader's sequence must be exactly the committed events
//! (every account's whole stream), each once, every account's in sequence
//! order, a transfer's two legs adjacent.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use serde_json::Value;
use testkit::{
    Backend, Client, InProcess, StatusCode, TestInstance, TestStore, fresh_id, fresh_owner,
    position,
};

const WRITERS: usize = 6;
const OPERATIONS_PER_WRITER: usize = 40;
const ACCOUNTS: usize = 5;
/// Readers that page with small pages, and readers that long-poll.
const PAGERS: usize = 2;
const POLLERS: usize = 2;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn memory_feed_over_http_under_concurrent_writers() {
    stress(Backend::Memory).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_feed_over_http_under_concurrent_writers() {
    stress(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs PostgreSQL (ACCOUNTS_TEST_POSTGRES_URL); run by `just integration`"]
async fn postgres_feed_over_http_under_concurrent_writers() {
    stress(Backend::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs MariaDB (ACCOUNTS_TEST_MYSQL_URL); run by `just integration`"]
async fn mysql_feed_over_http_under_concurrent_writers() {
    stress(Backend::Mysql).await;
}

async fn stress(backend: Backend) {
    let store = TestStore::open(backend).await;
    let instances = [
        TestInstance::over(store.store.clone()),
        TestInstance::over(store.store.clone()),
    ];
    let clients: Vec<Client<InProcess>> = instances.iter().map(TestInstance::client).collect();
    let accounts: Vec<String> = (0..ACCOUNTS).map(|_| fresh_id()).collect();
    for account in &accounts {
        clients[0]
            .open_funded(account, fresh_owner(), 1_000, fresh_id())
            .await;
    }
    let started = Instant::now();
    let done = Arc::new(AtomicBool::new(false));
    let mut readers = Vec::new();
    for reader in 0..PAGERS + POLLERS {
        let client = clients[reader % 2].clone();
        let done = done.clone();
        let long_poll = reader >= PAGERS;
        readers.push(tokio::spawn(async move {
            read_until_done(client, done, long_poll).await
        }));
    }
    let mut writers = Vec::new();
    for writer in 0..WRITERS {
        let client = clients[writer % 2].clone();
        let accounts = accounts.clone();
        writers.push(tokio::spawn(async move {
            write(client, accounts, writer).await;
        }));
    }
    for writer in writers {
        writer.await.expect("a writer does not panic");
    }
    done.store(true, Ordering::SeqCst);
    let mut sequences = Vec::new();
    for reader in readers {
        sequences.push(reader.await.expect("a reader does not panic"));
    }

    let mut committed = Vec::new();
    for account in &accounts {
        committed.extend(
            clients[1]
                .all_events(account)
                .await
                .into_iter()
                .map(|e| key_of(account, &e)),
        );
    }
    let committed_set: HashSet<(String, u64)> = committed.iter().cloned().collect();
    for (reader, sequence) in sequences.iter().enumerate() {
        check(reader, sequence, &committed_set);
    }
    eprintln!(
        "{backend:?}: {WRITERS} writers × {OPERATIONS_PER_WRITER} operations, {} readers, {} events, {:?}",
        PAGERS + POLLERS,
        committed.len(),
        started.elapsed()
    );
}

/// A mix of deposits, transfers both ways between hot accounts (conflicts),
/// refusals and replays of the same transactionId.
async fn write(client: Client<InProcess>, accounts: Vec<String>, writer: usize) {
    for operation in 0..OPERATIONS_PER_WRITER {
        let from = &accounts[(writer + operation) % ACCOUNTS];
        let to = &accounts[(writer + operation + 1 + operation % 3) % ACCOUNTS];
        let transaction = fresh_id();
        let answer = match operation % 4 {
            0 => client.deposit(from, 5, &transaction).await,
            1 | 2 => client.transfer(from, to, 3, &transaction).await,
            _ => client.withdraw(from, 1_000_000, &transaction).await,
        };
        // 409 (still conflicting after retries) is a legitimate answer of a
        // loaded store; a refusal is the withdrawal's; all change nothing.
        assert!(
            matches!(
                answer.status,
                StatusCode::NO_CONTENT | StatusCode::CONFLICT | StatusCode::BAD_REQUEST
            ),
            "{}: {}",
            answer.status,
            answer.body
        );
        if operation % 5 == 0 {
            let replay = client.deposit(from, 5, &transaction).await;
            assert!(replay.status.is_client_error() || replay.status == StatusCode::NO_CONTENT);
        }
    }
}

/// Pages the feed (or long-polls it) from 0, resuming after the last
/// position given, until the writers are done and a last page is empty.
async fn read_until_done(
    client: Client<InProcess>,
    done: Arc<AtomicBool>,
    long_poll: bool,
) -> Vec<Value> {
    let mut seen: Vec<Value> = Vec::new();
    loop {
        let finished = done.load(Ordering::SeqCst);
        let after = seen.last().map_or(0, position);
        let wait = (long_poll && !finished).then_some(200);
        let limit = if long_poll { 50 } else { 7 };
        let answer = client.feed(Some(after), Some(limit), wait).await;
        answer.assert_status(StatusCode::OK);
        let page = answer.json().as_array().expect("an array").clone();
        if page.is_empty() && finished {
            return seen;
        }
        seen.extend(page);
    }
}

fn key_of(account: &str, event: &Value) -> (String, u64) {
    (
        account.to_owned(),
        event["sequenceNumber"].as_u64().expect("a sequence number"),
    )
}

fn check(reader: usize, sequence: &[Value], committed: &HashSet<(String, u64)>) {
    let keys: Vec<(String, u64)> = sequence
        .iter()
        .map(|e| key_of(e["accountId"].as_str().expect("an account"), e))
        .collect();
    let unique: HashSet<&(String, u64)> = keys.iter().collect();
    assert_eq!(
        unique.len(),
        keys.len(),
        "reader {reader} saw an event twice"
    );
    let seen: HashSet<(String, u64)> = keys.iter().cloned().collect();
    assert_eq!(
        &seen, committed,
        "reader {reader} missed events or saw uncommitted ones"
    );
    let positions: Vec<u64> = sequence.iter().map(position).collect();
    assert!(
        positions.windows(2).all(|w| w[0] < w[1]),
        "reader {reader}: positions not increasing"
    );
    let mut last: HashMap<&str, u64> = HashMap::new();
    for (account, number) in &keys {
        let previous = last.insert(account, *number).unwrap_or(0);
        assert_eq!(
            *number,
            previous + 1,
            "reader {reader}: {account} out of order"
        );
    }
    // A transfer's legs: the withdrawal naming transferTo, then (adjacent)
    // the deposit with the same transactionId on the target.
    for (index, event) in sequence.iter().enumerate() {
        if event.get("transferTo").is_some() || event.get("transferFrom").is_some() {
            let transaction = &event["transactionId"];
            let beside = [index.checked_sub(1), Some(index + 1)]
                .into_iter()
                .flatten()
                .filter_map(|i| sequence.get(i))
                .any(|other| {
                    &other["transactionId"] == transaction
                        && other["accountId"] != event["accountId"]
                });
            assert!(
                beside,
                "reader {reader}: a transfer leg without its twin beside it"
            );
        }
    }
}
