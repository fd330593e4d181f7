//! The black-box client of the HTTP API (the kit's, over a real socket),
//! what the money tests send with it, and the checks every money test ends
//! with: the event streams read back through Envoy.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Duration;

use rand_core::{RngCore, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;
use serde_json::Value;
use testkit::{Client, Reply, Socket, StatusCode};
use uuid::Uuid;

/// Deterministic ids and choices; the seed is printed by each test.
pub struct Random(Xoshiro256PlusPlus);

impl Random {
    pub fn new(seed: u64) -> Random {
        Random(Xoshiro256PlusPlus::seed_from_u64(seed))
    }

    pub fn uuid(&mut self) -> Uuid {
        let mut bytes = [0u8; 16];
        self.0.fill_bytes(&mut bytes);
        uuid::Builder::from_random_bytes(bytes).into_uuid()
    }

    pub fn below(&mut self, bound: u64) -> u64 {
        self.0.next_u64() % bound
    }
}

/// The kit's client over a real socket, with a timeout no healthy request
/// reaches.
pub type Api = Client<Socket>;

pub fn api(base: String) -> Api {
    Client::new(Socket::new(base)).with_timeout(Duration::from_secs(20))
}

/// Opens `account` with a deposit of `amount`, retrying until both are
/// acknowledged (ids fixed, so retries are safe).
pub async fn open_funded(api: &Api, random: &mut Random, account: Uuid, amount: i64) {
    let (owner, transaction) = (random.uuid(), random.uuid());
    until_definitive(|| api.open(account, owner).reply(), StatusCode::CREATED).await;
    until_definitive(
        || api.deposit(account, amount, transaction).reply(),
        StatusCode::NO_CONTENT,
    )
    .await;
}

/// A transfer, sent with `timeout` (a short one loses the response).
pub async fn send_transfer(api: &Api, transfer: &Transfer, timeout: Option<Duration>) -> Reply {
    let call = api.transfer(
        transfer.source,
        transfer.target,
        transfer.amount,
        transfer.transaction,
    );
    match timeout {
        Some(timeout) => call.timeout(timeout).reply().await,
        None => call.reply().await,
    }
}

/// Re-sends (same request, same ids) until an answer that is not a 409, a
/// 5xx or a lost response; asserts it is `expected`.
async fn until_definitive<F, Fut>(mut send: F, expected: StatusCode)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Reply>,
{
    for _ in 0..200 {
        match send().await {
            Ok(answer) if answer.status == expected => return,
            Ok(answer)
                if answer.status == StatusCode::CONFLICT || answer.status.is_server_error() => {}
            Err(_) => {}
            Ok(answer) => panic!(
                "expected {expected}, got {}: {}",
                answer.status, answer.body
            ),
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("no definitive answer after 200 tries");
}

#[derive(Clone, Debug)]
pub struct Transfer {
    pub source: Uuid,
    pub target: Uuid,
    pub amount: i64,
    pub transaction: Uuid,
}

/// How a transfer ended for the client that sent it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// 204: the service says it is applied, exactly once.
    Applied,
    /// 400 (insufficient balance): nothing recorded.
    Refused,
}

/// The checks after a run of transfers among `accounts`, each funded with
/// `initial`, from the event streams and states read back through Envoy:
/// - every account's sequence numbers are 1..=n without gaps, and each
///   transactionId appears at most once per account;
/// - every acknowledged transfer appears exactly once on each side, with its
///   amount and counterpart; no refused or unknown transfer appears at all;
/// - each balance (state and last event) equals the initial funding plus the
///   acknowledged transfers in, minus those out; so the total is conserved.
pub async fn check_transfers(
    api: &Api,
    accounts: &[Uuid],
    initial: i64,
    results: &[(Transfer, Outcome)],
) {
    let mut expected: HashMap<Uuid, i64> = accounts.iter().map(|a| (*a, initial)).collect();
    let mut by_transaction: HashMap<Uuid, (&Transfer, Outcome)> = HashMap::new();
    for (transfer, outcome) in results {
        by_transaction.insert(transfer.transaction, (transfer, *outcome));
        if *outcome == Outcome::Applied {
            *expected.get_mut(&transfer.source).expect("known account") -= transfer.amount;
            *expected.get_mut(&transfer.target).expect("known account") += transfer.amount;
        }
    }
    let mut seen: BTreeMap<Uuid, u32> = BTreeMap::new();
    let mut total = 0;
    for account in accounts {
        let events = api.all_events(account).await;
        for transaction in check_stream(*account, &events, &by_transaction) {
            *seen.entry(transaction).or_default() += 1;
        }
        let balance = api.balance(*account).await;
        let last = events.last().expect("an opened account has events");
        assert_eq!(
            last["balance"].as_i64(),
            Some(balance),
            "state and last event of {account}"
        );
        assert_eq!(balance, expected[account], "balance of {account}");
        total += balance;
    }
    for (transfer, outcome) in results {
        let sides = seen.get(&transfer.transaction).copied().unwrap_or(0);
        let wanted = if *outcome == Outcome::Applied { 2 } else { 0 };
        assert_eq!(sides, wanted, "events of {transfer:?} ({outcome:?})");
    }
    assert_eq!(total, initial * accounts.len() as i64, "money conserved");
}

/// Checks one account's stream: gap-free sequence numbers, each
/// transactionId once, every transfer leg an acknowledged transfer with its
/// amount and counterpart. Returns the transfers it has a leg of.
fn check_stream(
    account: Uuid,
    events: &[Value],
    by_transaction: &HashMap<Uuid, (&Transfer, Outcome)>,
) -> Vec<Uuid> {
    let mut transactions = HashSet::new();
    let mut legs = Vec::new();
    for (index, event) in events.iter().enumerate() {
        assert_eq!(
            event["sequenceNumber"].as_u64(),
            Some(index as u64 + 1),
            "gap-free sequence on {account}: {event}"
        );
        let transaction: Uuid = event["transactionId"]
            .as_str()
            .and_then(|t| t.parse().ok())
            .expect("transactionId is a uuid");
        assert!(
            transactions.insert(transaction),
            "transactionId {transaction} twice on {account}"
        );
        let (amount_key, counterpart) = match event["type"].as_str() {
            Some("MoneyWithdrawn") => ("amountWithdrawn", &event["transferTo"]),
            Some("MoneyDeposited") if event.get("transferFrom").is_some() => {
                ("amountDeposited", &event["transferFrom"])
            }
            // The opening and the funding deposit.
            _ => continue,
        };
        let (transfer, outcome) = by_transaction
            .get(&transaction)
            .unwrap_or_else(|| panic!("unknown transfer in the stream of {account}: {event}"));
        assert_eq!(
            *outcome,
            Outcome::Applied,
            "a refused transfer was recorded: {event}"
        );
        assert_eq!(event[amount_key].as_i64(), Some(transfer.amount), "{event}");
        let (this_side, other_side) = if amount_key == "amountWithdrawn" {
            (transfer.source, transfer.target)
        } else {
            (transfer.target, transfer.source)
        };
        assert_eq!(this_side, account, "{event}");
        assert_eq!(
            counterpart.as_str(),
            Some(other_side.to_string().as_str()),
            "{event}"
        );
        legs.push(transaction);
    }
    legs
}
