//! The feed never rewinds silently. A database that fails over to a standby
//! lacking the last commits gives their positions to new events; a reader
//! resuming after a position it was given would skip those. The service's
//! stream and `accounts feed` both notice instead: the stream ends with a
//! `rewind` message, and `accounts feed` stops with an error naming the
//! position, printing nothing past it.

use std::io::{BufRead, BufReader, Read};
use std::process::Stdio;
use std::sync::mpsc::{Receiver, channel};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use accounts::follow::SseItem;
use accounts::store::{AppendError, Commit, EventStore, MemoryStore};
use async_trait::async_trait;
use testkit::database::TempFile;
use testkit::process::{Service, command};
use testkit::{Client, Socket, StatusCode, TestInstance, Transport, fresh_id, fresh_owner};
use testkit::{Decorated, Decorator};

const BINARY: &str = env!("CARGO_BIN_EXE_accounts");

/// A primary and its standby, both memory stores: appends reach the
/// standby only while replication is on, and a failover makes the standby
/// the store every call goes to.
struct Replicated {
    primary: MemoryStore,
    standby: MemoryStore,
    replicating: Mutex<bool>,
    failed_over: Mutex<bool>,
}

impl Replicated {
    fn new() -> Replicated {
        Replicated {
            primary: MemoryStore::new(),
            standby: MemoryStore::new(),
            replicating: Mutex::new(true),
            failed_over: Mutex::new(false),
        }
    }
}

/// Every call goes to the current node; appends also reach the standby
/// while replication is on.
#[async_trait]
impl Decorator for Replicated {
    fn inner(&self) -> &dyn EventStore {
        match *self.failed_over.lock().unwrap() {
            true => &self.standby,
            false => &self.primary,
        }
    }

    async fn append_batch(&self, commits: &[Commit]) -> Vec<Result<(), AppendError>> {
        let results = self.inner().append_batch(commits).await;
        let replicate = *self.replicating.lock().unwrap() && !*self.failed_over.lock().unwrap();
        if replicate {
            self.standby.append_batch(commits).await;
        }
        results
    }
}

async fn deposit(client: &Client<impl Transport>, account: &str, amount: u64) {
    client
        .deposit(account, amount, fresh_id())
        .await
        .assert_status(StatusCode::NO_CONTENT);
}

#[tokio::test]
async fn a_stream_whose_history_changed_under_it_ends_with_a_rewind_message() {
    let store = Arc::new(Decorated(Replicated::new()));
    let instance = TestInstance::over(store.clone());
    let client = instance.client();
    let account = fresh_id();
    client.open_ok(&account, fresh_owner()).await;
    deposit(&client, &account, 1).await;
    // The standby falls behind: positions 3 and 4 are on the primary only.
    *store.0.replicating.lock().unwrap() = false;
    deposit(&client, &account, 1).await;
    deposit(&client, &account, 1).await;
    let mut stream = client.follow(None, None).await;
    let given = stream.messages(4).await;
    assert_eq!(given.last().unwrap().id, 4);

    // The standby is promoted; a new account's events take positions 3, 4.
    *store.0.failed_over.lock().unwrap() = true;
    let other = fresh_id();
    client.open_ok(&other, fresh_owner()).await;
    deposit(&client, &other, 9).await;
    let rewind = loop {
        match stream.next_item().await {
            Some(SseItem::Message { id, event, data }) => break (id, event, data),
            Some(SseItem::Comment(_)) => continue,
            None => panic!("the stream ended without saying why"),
        }
    };
    assert_eq!(
        rewind.0, None,
        "no id: a reconnection must not resume past it"
    );
    assert_eq!(rewind.1.as_deref(), Some("rewind"));
    let data: serde_json::Value = serde_json::from_str(&rewind.2).unwrap();
    assert_eq!(data["position"], 4, "{data}");
    assert!(
        stream.next_item().await.is_none(),
        "the stream ends after it"
    );
    assert_eq!(instance.state.metrics().feed_stream_rewinds.get(), 1);
}

#[tokio::test]
async fn a_stream_over_a_history_that_holds_goes_on_past_an_outage_of_the_feed() {
    // The overlap check must not take a quiet feed, or the same events read
    // again, for a rewind.
    let store = Arc::new(Decorated(Replicated::new()));
    let instance = TestInstance::over(store.clone());
    let client = instance.client();
    let account = fresh_id();
    client.open_ok(&account, fresh_owner()).await;
    let mut stream = client.follow(None, None).await;
    assert_eq!(stream.messages(1).await[0].id, 1);
    // A failover to a standby that has everything: nothing changed.
    *store.0.failed_over.lock().unwrap() = true;
    deposit(&client, &account, 1).await;
    let next = stream.messages(1).await;
    assert_eq!((next[0].id, next[0].event.as_str()), (2, "MoneyDeposited"));
}

/// Copies an SQLite database (with its WAL and shared memory, if any): a
/// standby as of now.
fn copy_database(from: &TempFile, to: &TempFile) {
    for suffix in ["", "-wal", "-shm"] {
        let mut source = from.0.clone().into_os_string();
        source.push(suffix);
        let mut target = to.0.clone().into_os_string();
        target.push(suffix);
        if std::path::Path::new(&source).exists() {
            std::fs::copy(&source, &target).unwrap();
        }
    }
}

async fn deposits(client: &Client<Socket>, account: &str, amounts: &[u64]) {
    for &amount in amounts {
        deposit(client, account, amount).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accounts_feed_stops_instead_of_skipping_after_a_failover_that_lost_events() {
    let (primary, standby) = (TempFile::new("db"), TempFile::new("db"));
    let (primary_url, standby_url) = (primary.sqlite_url(), standby.sqlite_url());
    let service = Service::start(BINARY, &["--database-url", &primary_url]);
    let address = service.address.to_string();
    let account = fresh_id();
    let client = service.client();
    client.open_ok(&account, fresh_owner()).await;
    deposits(&client, &account, &[1, 1]).await;
    service.stop(Duration::from_secs(30));
    // The standby stops here, at position 3.
    copy_database(&primary, &standby);
    let service = Service::start_on(BINARY, &address, &["--database-url", &primary_url], &[]);
    deposits(&service.client(), &account, &[1, 1]).await;

    let mut feed = command(BINARY)
        .args(["feed", &format!("http://{address}")])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let lines = lines_of(&mut feed);
    let printed: Vec<String> = (0..5)
        .map(|_| lines.recv_timeout(Duration::from_secs(30)).unwrap())
        .collect();
    // The primary dies; the standby, promoted, takes positions 4 and 5 for
    // other events (other amounts).
    service.stop(Duration::from_secs(30));
    let promoted = Service::start_on(BINARY, &address, &["--database-url", &standby_url], &[]);
    deposits(&promoted.client(), &account, &[7, 7]).await;

    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = feed.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "accounts feed went on");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(!status.success());
    let after: Vec<String> = lines.iter().collect();
    let mut stderr = String::new();
    feed.stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    assert!(printed[4].contains("\"position\":5"), "{printed:?}");
    assert_eq!(
        after,
        Vec::<String>::new(),
        "nothing printed after position 5"
    );
    assert!(
        stderr.contains("the feed's history changed at position 5"),
        "{stderr}"
    );
}

/// `child`'s stdout, line by line, on a thread; the channel closes at its end.
fn lines_of(child: &mut std::process::Child) -> Receiver<String> {
    let stdout = BufReader::new(child.stdout.take().unwrap());
    let (sender, receiver) = channel();
    std::thread::spawn(move || {
        for line in stdout.lines().map_while(Result::ok) {
            if sender.send(line).is_err() {
                return;
            }
        }
    });
    receiver
}
