//! A black-box client of the HTTP API (docs/API.md), and the checks every
//! money test ends with: the event streams read back through Envoy.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Duration;

use rand_core::{RngCore, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;
use reqwest::StatusCode;
use serde_json::Value;
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

/// What one HTTP exchange gave: a status and body, or no answer at all.
#[derive(Debug)]
pub enum Answer {
    Status(StatusCode, String),
    /// Connection refused or reset, or the client's own timeout.
    NoAnswer(String),
}

impl Answer {
    pub fn status(&self) -> Option<StatusCode> {
        match self {
            Answer::Status(status, _) => Some(*status),
            Answer::NoAnswer(_) => None,
        }
    }
}

#[derive(Clone)]
pub struct Api {
    base: String,
    http: reqwest::Client,
}

impl Api {
    pub fn new(base: String) -> Api {
        Api::with_headers(base, reqwest::header::HeaderMap::new())
    }

    /// A client that sends `Authorization: Bearer <token>` with every request.
    pub fn with_token(base: String, token: &str) -> Api {
        let mut headers = reqwest::header::HeaderMap::new();
        let value = format!("Bearer {token}").parse().expect("a header value");
        headers.insert(reqwest::header::AUTHORIZATION, value);
        Api::with_headers(base, headers)
    }

    fn with_headers(base: String, headers: reqwest::header::HeaderMap) -> Api {
        Api {
            base,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(20))
                .default_headers(headers)
                .build()
                .expect("build an HTTP client"),
        }
    }

    /// A request of `method` to `path` (with query), for the checks that
    /// need the status and headers of one answer.
    pub async fn raw(&self, method: reqwest::Method, path: &str) -> reqwest::Response {
        self.http
            .request(method, format!("{}{path}", self.base))
            .send()
            .await
            .expect("an answer")
    }

    async fn send(&self, request: reqwest::RequestBuilder) -> Answer {
        match request.send().await {
            Ok(response) => {
                let status = response.status();
                match response.text().await {
                    Ok(body) => Answer::Status(status, body),
                    Err(error) => Answer::NoAnswer(format!("{status}, then {error}")),
                }
            }
            Err(error) => Answer::NoAnswer(error.to_string()),
        }
    }

    pub async fn open(&self, account: Uuid, owner: Uuid) -> Answer {
        let url = format!("{}/api/account/{account}?owner={owner}", self.base);
        self.send(self.http.post(url)).await
    }

    pub async fn deposit(&self, account: Uuid, amount: i64, transaction: Uuid) -> Answer {
        let url = format!(
            "{}/api/account/{account}/deposit?amount={amount}&transactionId={transaction}",
            self.base
        );
        self.send(self.http.put(url)).await
    }

    /// A transfer, sent with `timeout` (a short one loses the response).
    pub async fn transfer(&self, transfer: &Transfer, timeout: Option<Duration>) -> Answer {
        let url = format!(
            "{}/api/account/{}/transfer?targetAccount={}&amount={}&transactionId={}",
            self.base, transfer.source, transfer.target, transfer.amount, transfer.transaction
        );
        let mut request = self.http.put(url);
        if let Some(timeout) = timeout {
            request = request.timeout(timeout);
        }
        self.send(request).await
    }

    pub async fn state(&self, account: Uuid) -> Answer {
        let url = format!("{}/api/account/{account}", self.base);
        self.send(self.http.get(url)).await
    }

    pub async fn balance(&self, account: Uuid) -> i64 {
        match self.state(account).await {
            Answer::Status(StatusCode::OK, body) => {
                let state: Value = serde_json::from_str(&body).expect("state is JSON");
                state["balance"].as_i64().expect("balance is an integer")
            }
            other => panic!("GET state of {account}: {other:?}"),
        }
    }

    /// The whole event stream of `account`, following `Link: rel="next"`.
    pub async fn events(&self, account: Uuid) -> Vec<Value> {
        let mut events = Vec::new();
        let mut url = format!("{}/api/account/{account}/events?limit=10000", self.base);
        loop {
            let response = self.http.get(&url).send().await.expect("events answered");
            assert_eq!(response.status(), StatusCode::OK, "GET {url}");
            let next = response
                .headers()
                .get(reqwest::header::LINK)
                .and_then(|link| link.to_str().ok())
                .and_then(|link| link.strip_prefix('<')?.split_once('>'))
                .map(|(path, _)| format!("{}{path}", self.base));
            let page: Vec<Value> = response.json().await.expect("events are a JSON array");
            events.extend(page);
            match next {
                Some(next) => url = next,
                None => return events,
            }
        }
    }

    /// Opens `account` with a deposit of `amount`, retrying until both are
    /// acknowledged (ids fixed, so retries are safe).
    pub async fn open_funded(&self, random: &mut Random, account: Uuid, amount: i64) {
        let owner = random.uuid();
        let transaction = random.uuid();
        until_definitive(|| self.open(account, owner), StatusCode::CREATED).await;
        until_definitive(
            || self.deposit(account, amount, transaction),
            StatusCode::NO_CONTENT,
        )
        .await;
    }
}

/// Re-sends (same request, same ids) until an answer that is not a 409, a
/// 5xx or a lost response; asserts it is `expected`.
async fn until_definitive<F, Fut>(mut send: F, expected: StatusCode)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Answer>,
{
    for _ in 0..200 {
        match send().await {
            Answer::Status(status, _) if status == expected => return,
            Answer::Status(status, _)
                if status == StatusCode::CONFLICT || status.is_server_error() => {}
            Answer::NoAnswer(_) => {}
            Answer::Status(status, body) => panic!("expected {expected}, got {status}: {body}"),
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
        let events = api.events(*account).await;
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
