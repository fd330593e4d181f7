//! Databases made before the feed existed get positions for their events
//! when the store opens them: a database is created at the first migration,
//! filled with a history written by instances whose clocks disagree, then
//! opened by the store, which migrates it. The positions must keep every
//! account's events in sequence order and a transfer's two legs adjacent —
//! which ordering by recordedAt would not (an instance's clock behind puts an
//! account's later event first; two transfers in one millisecond interleave)
//! — and snapshots get their `recorded_until`.

use std::collections::HashMap;

use accounts::domain::{AccountId, Timestamp, TransactionId};
use accounts::store::{self, EventStore, FeedEvent, PointInTime};
use sqlx::migrate::Migrator;
use sqlx::{AssertSqlSafe, Connection};
use testkit::Backend;
use testkit::database::{TempFile, TestDatabase, test_options};

/// The first migration's version: the schema before the feed.
const BEFORE_THE_FEED: i64 = 20261126000001;

static SQLITE: Migrator = sqlx::migrate!("./migrations/sqlite");
static POSTGRES: Migrator = sqlx::migrate!("./migrations/postgres");
static MYSQL: Migrator = sqlx::migrate!("./migrations/mysql");

#[tokio::test]
async fn sqlite_stored_events_get_positions_in_a_consistent_order() {
    let file = TempFile::new("db");
    let url = format!("{}?mode=rwc", file.sqlite_url());
    let mut connection = sqlx::SqliteConnection::connect(&url).await.unwrap();
    SQLITE
        .run_to(BEFORE_THE_FEED, &mut connection)
        .await
        .unwrap();
    fill::<sqlx::Sqlite>(&mut connection).await;
    connection.close().await.unwrap();
    check_migrated(&url).await;
}

#[tokio::test]
#[ignore = "needs ACCOUNTS_TEST_POSTGRES_URL"]
async fn postgres_stored_events_get_positions_in_a_consistent_order() {
    let database = TestDatabase::create(Backend::Postgres).await;
    let mut connection = sqlx::PgConnection::connect(&database.url).await.unwrap();
    POSTGRES
        .run_to(BEFORE_THE_FEED, &mut connection)
        .await
        .unwrap();
    fill::<sqlx::Postgres>(&mut connection).await;
    connection.close().await.unwrap();
    check_migrated(&database.url).await;
}

#[tokio::test]
#[ignore = "needs ACCOUNTS_TEST_MYSQL_URL"]
async fn mysql_stored_events_get_positions_in_a_consistent_order() {
    let database = TestDatabase::create(Backend::Mysql).await;
    let mut connection = sqlx::MySqlConnection::connect(&database.url).await.unwrap();
    MYSQL
        .run_to(BEFORE_THE_FEED, &mut connection)
        .await
        .unwrap();
    fill::<sqlx::MySql>(&mut connection).await;
    connection.close().await.unwrap();
    check_migrated(&database.url).await;
}

fn id(n: u8) -> String {
    format!("00000000-0000-0000-0000-0000000000{n:02x}")
}

/// (account, sequence, transaction, payload, recorded_at_ms): accounts 1–4
/// in ascending id order. Account 1's second event is stamped by an instance
/// 500 ms behind; transfers 1→3 and 2→4 happen in the same millisecond.
fn history() -> Vec<(u8, i64, u8, String, i64)> {
    let opened = r#"{"type":"AccountOpened","ownerId":"00000000-0000-0000-0000-0000000000ff"}"#;
    let deposit = |balance: i64| {
        format!(r#"{{"type":"MoneyDeposited","amountDeposited":10,"balance":{balance}}}"#)
    };
    let out = |to: u8, balance: i64| {
        format!(
            r#"{{"type":"MoneyWithdrawn","amountWithdrawn":5,"balance":{balance},"transferTo":"{}"}}"#,
            id(to)
        )
    };
    let into = |from: u8, balance: i64| {
        format!(
            r#"{{"type":"MoneyDeposited","amountDeposited":5,"balance":{balance},"transferFrom":"{}"}}"#,
            id(from)
        )
    };
    vec![
        (1, 1, 0x11, opened.to_owned(), 1_000),
        (2, 1, 0x21, opened.to_owned(), 1_001),
        (3, 1, 0x31, opened.to_owned(), 1_002),
        (4, 1, 0x41, opened.to_owned(), 1_003),
        (1, 2, 0x12, deposit(10), 2_000),
        (2, 2, 0x22, deposit(10), 2_000),
        // The instance 500 ms behind.
        (1, 3, 0x13, deposit(20), 1_500),
        // Two transfers in one millisecond.
        (1, 4, 0x71, out(3, 15), 3_000),
        (3, 2, 0x71, into(1, 5), 3_000),
        (2, 3, 0x72, out(4, 5), 3_000),
        (4, 2, 0x72, into(2, 5), 3_000),
        // Behind again, on a transfer's account.
        (3, 3, 0x33, deposit(15), 2_900),
        (1, 5, 0x15, deposit(25), 3_100),
    ]
}

async fn fill<DB>(connection: &mut DB::Connection)
where
    DB: sqlx::Database,
    for<'c> &'c mut DB::Connection: sqlx::Executor<'c, Database = DB>,
{
    for (account, sequence, transaction, payload, at) in history() {
        let event_type = payload.split('"').nth(3).unwrap().to_owned();
        let sql = format!(
            "INSERT INTO events (account_id, sequence_number, transaction_id, event_type, payload, recorded_at_ms) \
             VALUES ('{}', {sequence}, '{}', '{event_type}', '{payload}', {at})",
            id(account),
            id(transaction)
        );
        sqlx::raw_sql(AssertSqlSafe(sql))
            .execute(&mut *connection)
            .await
            .unwrap();
    }
    // A snapshot of account 1 at its third event: recorded until 2000.
    let snapshot = format!(
        "INSERT INTO snapshots (account_id, sequence_number, state) VALUES ('{}', 3, '{}')",
        id(1),
        r#"{"status":"open","ownerId":"00000000-0000-0000-0000-0000000000ff","balance":20}"#
    );
    sqlx::raw_sql(AssertSqlSafe(snapshot))
        .execute(&mut *connection)
        .await
        .unwrap();
}

fn account(n: u8) -> AccountId {
    AccountId::parse(&id(n)).unwrap()
}

async fn check_migrated(url: &str) {
    let opened = store::open(url, &test_options())
        .await
        .expect("open and migrate");
    let store = opened.store;
    let feed = store.feed(0, 100).await.unwrap();
    let stored = history();
    assert_eq!(feed.len(), stored.len());
    let positions: Vec<u64> = feed.iter().map(|f| f.position).collect();
    assert_eq!(positions, (1..=stored.len() as u64).collect::<Vec<_>>());
    check_order(&feed);
    // Each transfer's legs adjacent.
    let index: HashMap<(AccountId, u64), usize> = feed
        .iter()
        .enumerate()
        .map(|(at, f)| ((f.event.account_id, f.event.sequence_number), at))
        .collect();
    for (first, second) in [((1, 4), (3, 2)), ((2, 3), (4, 2))] {
        let first = index[&(account(first.0), first.1)];
        let second = index[&(account(second.0), second.1)];
        assert_eq!(first.abs_diff(second), 1, "a transfer's legs are adjacent");
    }
    // The events themselves unchanged.
    for f in &feed {
        let (_, _, transaction, _, at) = stored
            .iter()
            .find(|(a, s, ..)| {
                account(*a) == f.event.account_id && *s as u64 == f.event.sequence_number
            })
            .unwrap();
        assert_eq!(
            f.event.transaction_id,
            TransactionId::parse(&id(*transaction)).unwrap()
        );
        assert_eq!(f.event.recorded_at, Timestamp::from_unix_millis(*at));
    }
    // The old snapshot got its running maximum and serves times.
    let loaded = store.load(account(1), None).await.unwrap();
    let snapshot = loaded.snapshot.clone().expect("the stored snapshot");
    assert_eq!(
        snapshot.recorded_until,
        Some(Timestamp::from_unix_millis(2_000))
    );
    let at = store
        .load_at(
            account(1),
            PointInTime::Time(Timestamp::from_unix_millis(2_999)),
        )
        .await
        .unwrap();
    assert_eq!(at.snapshot.as_ref().map(|s| s.sequence_number), Some(3));
    assert_eq!(at.fold().1, 3);
    // New appends go on after the stored positions.
    next_append_follows(&*store, stored.len() as u64).await;
}

fn check_order(feed: &[FeedEvent]) {
    let mut last: HashMap<AccountId, u64> = HashMap::new();
    for f in feed {
        let previous = last.insert(f.event.account_id, f.event.sequence_number);
        assert_eq!(
            previous.unwrap_or(0) + 1,
            f.event.sequence_number,
            "account {} in sequence order",
            f.event.account_id
        );
    }
}

async fn next_append_follows(store: &dyn EventStore, last_position: u64) {
    let (state, version) = store.load(account(4), None).await.unwrap().fold();
    let transaction_id = TransactionId::parse(&id(0x99)).unwrap();
    let commit = accounts::store::Commit {
        events: vec![accounts::store::RecordedEvent {
            account_id: account(4),
            sequence_number: version + 1,
            transaction_id,
            event: accounts::domain::Event::MoneyDeposited {
                amount_deposited: 1,
                balance: state.balance() + 1,
                transfer_from: None,
            },
            recorded_at: Timestamp::from_unix_millis(4_000),
        }],
        ..Default::default()
    };
    store.append(&commit).await.unwrap();
    let next = store.feed(last_position, 10).await.unwrap();
    assert_eq!(next.len(), 1);
    assert_eq!(next[0].position, last_position + 1);
}
