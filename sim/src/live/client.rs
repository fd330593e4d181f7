//! The simulation's clients in wall-clock time over real sockets: each
//! sends its planned operations one after another, retries an inconclusive
//! answer with the same transactionId on the next instance, sometimes
//! resends a success, and once the faults have healed drives every write
//! still without a definitive answer to one. The same requests and the
//! same verdicts as `crate::client`; only time and transport differ.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use accounts::domain::TransactionId;
use accounts::http::{ErrorBody, ErrorCode};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use testkit::{Answer, ApiRequest, Client as ApiClient, Reply, Socket, Transport};

use crate::client::{
    Attempt, OpRecord, Phase, REQUEST_TIMEOUT, Round, Verdict, fault_phase, liveness_phase,
    request, retry, transactions, verdict,
};
use crate::plan::{Action, Plan, Who};

/// One exchange as the client saw it, on the run's clock.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LiveAttempt {
    pub sent: Duration,
    pub answered: Duration,
    pub phase: Phase,
    pub instance: usize,
    pub reply: Reply,
}

/// Everything one client saw of one operation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LiveRecord {
    pub client: usize,
    pub index: usize,
    pub action: Action,
    pub transaction: Option<TransactionId>,
    pub attempts: Vec<LiveAttempt>,
}

impl LiveRecord {
    /// The simulation's record of the same observations, for its checker.
    pub fn to_op_record(&self) -> OpRecord {
        OpRecord {
            client: self.client,
            index: self.index,
            action: self.action.clone(),
            transaction: self.transaction,
            // Live binaries run without authentication (see `live_plan`).
            caller: Who::Anyone,
            attempts: self
                .attempts
                .iter()
                .map(|a| Attempt {
                    at: a.sent,
                    answered: a.answered,
                    phase: a.phase,
                    instance: a.instance,
                    reply: a.reply.clone(),
                })
                .collect(),
        }
    }
}

/// Where each instance listens now: a restarted binary gets a new port.
/// While an instance is down its old address stays, and refuses.
#[derive(Clone, Default)]
pub struct Addresses(Arc<RwLock<Vec<SocketAddr>>>);

impl Addresses {
    pub fn get(&self, instance: usize) -> SocketAddr {
        self.0.read().unwrap_or_else(|p| p.into_inner())[instance]
    }

    pub fn set(&self, instance: usize, address: SocketAddr) {
        let mut addresses = self.0.write().unwrap_or_else(|p| p.into_inner());
        if addresses.len() <= instance {
            addresses.resize(instance + 1, address);
        }
        addresses[instance] = address;
    }

    pub fn len(&self) -> usize {
        self.0.read().unwrap_or_else(|p| p.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Bugs planted between the clients and the service (a proxy or client
/// library gone wrong), to show the live checker catching a wrong history:
/// the service and its database stay correct, only what clients are told
/// is wrong.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LiveBug {
    /// The first deposit of the run is answered 204 without ever reaching
    /// the service.
    AckWithoutForwarding,
    /// A write with a transactionId that got no answer (or a 503) is
    /// reported as refused (400 `insufficient_balance`): an unknown outcome
    /// presented as definitive.
    UnknownAsRefusal,
}

pub const LIVE_BUG_NAMES: [(LiveBug, &str); 2] = [
    (LiveBug::AckWithoutForwarding, "ack-without-forwarding"),
    (LiveBug::UnknownAsRefusal, "unknown-as-refusal"),
];

pub fn live_bug_name(bug: LiveBug) -> &'static str {
    LIVE_BUG_NAMES
        .iter()
        .find(|(b, _)| *b == bug)
        .map_or("unknown", |(_, name)| name)
}

pub fn live_bug_from_name(name: &str) -> Result<LiveBug, String> {
    LIVE_BUG_NAMES
        .iter()
        .find(|(_, n)| *n == name)
        .map(|(bug, _)| *bug)
        .ok_or_else(|| {
            let names: Vec<&str> = LIVE_BUG_NAMES.iter().map(|(_, n)| *n).collect();
            format!("unknown live bug {name:?}; one of: {}", names.join(", "))
        })
}

/// The kit's socket transport, seen through the run's planted bug.
#[derive(Clone)]
pub struct Planted {
    socket: Socket,
    bug: Option<LiveBug>,
    /// Shared by every client of the run: a once-per-run bug fires once.
    fired: Arc<AtomicBool>,
}

fn fake_answer(status: StatusCode, body: String) -> Answer {
    let mut headers = HeaderMap::new();
    if !body.is_empty() {
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
    }
    Answer::new(status, headers, body.as_bytes())
}

impl Transport for Planted {
    async fn send(&self, request: ApiRequest) -> Reply {
        // Writes a client identifies by transactionId: deposits, withdrawals,
        // transfers, closes (an open's 400 would be caught as a status no
        // open may get, which proves less).
        let identified = request.target.contains("transactionId=");
        match self.bug {
            Some(LiveBug::AckWithoutForwarding)
                if request.target.contains("deposit")
                    && !self.fired.swap(true, Ordering::SeqCst) =>
            {
                Ok(fake_answer(StatusCode::NO_CONTENT, String::new()))
            }
            Some(LiveBug::UnknownAsRefusal) if identified => {
                let reply = self.socket.send(request).await;
                let unknown = match &reply {
                    Ok(answer) => answer.status == StatusCode::SERVICE_UNAVAILABLE,
                    Err(_) => true,
                };
                if !unknown {
                    return reply;
                }
                let body = serde_json::to_string(&ErrorBody {
                    code: ErrorCode::InsufficientBalance,
                    message: "the balance does not cover the amount".to_owned(),
                })
                .expect("an error body serialises");
                Ok(fake_answer(StatusCode::BAD_REQUEST, body))
            }
            _ => self.socket.send(request).await,
        }
    }
}

/// What every client of one run shares.
#[derive(Clone)]
pub struct Shared {
    pub started: Instant,
    /// `started` on the wall clock (unix ms): what `?at=` offsets are
    /// relative to.
    pub started_unix_ms: i64,
    pub addresses: Addresses,
    pub bug: Option<LiveBug>,
    pub fired: Arc<AtomicBool>,
    pub heal_at: Duration,
}

impl Shared {
    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }
}

pub struct LiveClient {
    client: usize,
    ops: Vec<crate::plan::Op>,
    requests: Vec<ApiRequest>,
    transactions: Vec<Option<TransactionId>>,
    shared: Shared,
    /// One kept-alive connection pool per address the client has used.
    apis: Mutex<BTreeMap<SocketAddr, ApiClient<Planted>>>,
    pub records: Arc<Mutex<Vec<LiveRecord>>>,
}

impl LiveClient {
    pub fn new(plan: &Plan, client: usize, shared: Shared) -> LiveClient {
        let ops = plan.clients[client].clone();
        let requests = ops
            .iter()
            .enumerate()
            .map(|(index, op)| request(plan, client, index, op, shared.started_unix_ms))
            .collect();
        let transactions = transactions(plan, client, &ops);
        LiveClient {
            client,
            ops,
            requests,
            transactions,
            shared,
            apis: Mutex::default(),
            records: Arc::default(),
        }
    }

    pub async fn run(self) {
        let mut pending = Vec::new();
        for (index, op) in self.ops.iter().enumerate() {
            tokio::time::sleep(Duration::from_millis(op.think_ms)).await;
            self.records
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(LiveRecord {
                    client: self.client,
                    index,
                    action: op.action.clone(),
                    transaction: self.transactions[index],
                    attempts: Vec::new(),
                });
            if fault_phase(op, |round| self.settle(index, round)).await {
                pending.push(index);
            }
        }
        let heal_at = self.shared.heal_at;
        let clock = || self.shared.elapsed();
        liveness_phase(pending, heal_at, clock, |index, round| {
            self.settle(index, round)
        })
        .await;
    }

    fn api(&self, address: SocketAddr) -> ApiClient<Planted> {
        let mut apis = self.apis.lock().unwrap_or_else(|p| p.into_inner());
        apis.entry(address)
            .or_insert_with(|| {
                ApiClient::new(Planted {
                    socket: Socket::at(address),
                    bug: self.shared.bug,
                    fired: self.shared.fired.clone(),
                })
                .with_timeout(REQUEST_TIMEOUT)
            })
            .clone()
    }

    /// As the simulation's client: sends within `round`; `None` if no
    /// answer was definitive.
    async fn settle(&self, index: usize, round: Round) -> Option<Verdict> {
        let clock = || self.shared.elapsed();
        retry(round, clock, move |attempt, sent| {
            self.send(index, round.phase, attempt, sent)
        })
        .await
    }

    /// Attempt `attempt` of operation `index`, sent at `sent` (since the
    /// run's start) to the instance after the previous attempt's; recorded,
    /// and its verdict.
    async fn send(&self, index: usize, phase: Phase, attempt: usize, sent: Duration) -> Verdict {
        let op = &self.ops[index];
        let instance = (op.instance + attempt) % self.shared.addresses.len();
        let api = self.api(self.shared.addresses.get(instance));
        let reply = api.call(self.requests[index].clone()).reply().await;
        let answered = self.shared.elapsed();
        let verdict = verdict(&op.action, &reply);
        self.records.lock().unwrap_or_else(|p| p.into_inner())[index]
            .attempts
            .push(LiveAttempt {
                sent,
                answered,
                phase,
                instance,
                reply,
            });
        verdict
    }
}
