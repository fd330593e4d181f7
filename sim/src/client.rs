//! Client hosts: each sends its planned operations one after another over
//! HTTP, retries after a timeout or an inconclusive answer with the same
//! transactionId (on the next instance), sometimes sends a request that
//! already succeeded once more, and records every reply it saw. Once the
//! faults have healed, it drives every operation still without a definitive
//! answer to one (the liveness phase).

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

use accounts::domain::TransactionId;
use accounts::http::{ErrorBody, ErrorCode};
use hyper::Method;

use crate::net::{Reply, send};
use crate::plan::{Action, CLIENTS, INSTANCES, Op, Plan, Style};
use crate::trace::Trace;

/// Longer than the service needs for one request without faults, shorter
/// than a crashed instance takes to come back.
pub const REQUEST_TIMEOUT: Duration = Duration::from_millis(1_000);
/// Attempts per operation while faults may be active; an operation still
/// inconclusive after them waits for the liveness phase.
pub const FAULT_PHASE_ATTEMPTS: usize = 3;
/// After the faults heal, every pending operation must be answered
/// definitively within this much virtual time.
pub const LIVENESS_BOUND: Duration = Duration::from_secs(20);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    First,
    /// The identical request sent again after a success.
    Resend,
    Liveness,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Attempt {
    pub at: Duration,
    pub phase: Phase,
    pub instance: usize,
    pub reply: Reply,
}

/// Everything one client saw of one operation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OpRecord {
    pub client: usize,
    pub index: usize,
    pub action: Action,
    pub transaction: Option<TransactionId>,
    pub attempts: Vec<Attempt>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// 2xx (and, for reads, 404): the operation is done.
    Success,
    /// A definitive refusal: nothing was, or ever will be, recorded for it.
    Refusal,
    /// Timeout, lost connection, 408, 503, or a 409 that a retry can cure.
    Unknown,
}

pub fn verdict(action: &Action, reply: &Reply) -> Verdict {
    let Reply::Status { code, body } = reply else {
        return Verdict::Unknown;
    };
    match (*code, action) {
        (200..=299, _) => Verdict::Success,
        (404, Action::GetState { .. }) => Verdict::Success,
        // An open's 409 is either "already exists" (definitive) or "too busy"
        // after the engine's retries (retry); the error code tells them apart.
        (409, Action::Open { .. }) if error_code(body) == Some(ErrorCode::AccountExists) => {
            Verdict::Refusal
        }
        (408 | 409, _) => Verdict::Unknown,
        (400..=499, _) => Verdict::Refusal,
        _ => Verdict::Unknown,
    }
}

/// The machine-readable code of an error answer's body, if it has one.
pub fn error_code(body: &str) -> Option<ErrorCode> {
    serde_json::from_str::<ErrorBody>(body)
        .ok()
        .map(|error| error.code)
}

/// The request an operation sends, every time.
pub fn request(plan: &Plan, client: usize, index: usize, op: &Op) -> (Method, String) {
    let id = |account: usize| plan.account_id(account);
    let transaction = plan.transaction_id(client, index);
    match (&op.action, op.style) {
        (Action::Open { account }, _) => (
            Method::POST,
            format!(
                "/api/account/{}?owner={}",
                id(*account),
                plan.owner_id(*account)
            ),
        ),
        (Action::Deposit { account, amount }, Style::Query) => (
            Method::PUT,
            format!(
                "/api/account/{}?deposit={amount}&transactionId={transaction}",
                id(*account)
            ),
        ),
        (Action::Deposit { account, amount }, Style::Path) => (
            Method::PUT,
            format!(
                "/api/account/{}/deposit?amount={amount}&transactionId={transaction}",
                id(*account)
            ),
        ),
        (Action::Withdraw { account, amount }, Style::Query) => (
            Method::PUT,
            format!(
                "/api/account/{}?withdraw={amount}&transactionId={transaction}",
                id(*account)
            ),
        ),
        (Action::Withdraw { account, amount }, Style::Path) => (
            Method::PUT,
            format!(
                "/api/account/{}/withdraw?amount={amount}&transactionId={transaction}",
                id(*account)
            ),
        ),
        (Action::Transfer { from, to, amount }, Style::Query) => (
            Method::PUT,
            format!(
                "/api/account/{}?transfer={}&amount={amount}&transactionId={transaction}",
                id(*from),
                id(*to)
            ),
        ),
        (Action::Transfer { from, to, amount }, Style::Path) => (
            Method::PUT,
            format!(
                "/api/account/{}/transfer?targetAccount={}&amount={amount}&transactionId={transaction}",
                id(*from),
                id(*to)
            ),
        ),
        (Action::Close { account }, _) => (
            Method::DELETE,
            format!("/api/account/{}?transactionId={transaction}", id(*account)),
        ),
        (Action::GetState { account }, _) => {
            (Method::GET, format!("/api/account/{}", id(*account)))
        }
        (Action::GetEvents { account }, _) => {
            (Method::GET, format!("/api/account/{}/events", id(*account)))
        }
    }
}

pub struct Client {
    pub client: usize,
    pub ops: Vec<Op>,
    pub requests: Vec<(Method, String)>,
    pub transactions: Vec<Option<TransactionId>>,
    pub instances: usize,
    pub heal_at: Duration,
    pub trace: Trace,
    pub records: Rc<RefCell<Vec<OpRecord>>>,
}

impl Client {
    pub fn new(plan: &Plan, client: usize, trace: Trace) -> Client {
        let ops = plan.clients[client].clone();
        let requests = ops
            .iter()
            .enumerate()
            .map(|(index, op)| request(plan, client, index, op))
            .collect();
        let transactions = ops
            .iter()
            .enumerate()
            .map(|(index, op)| {
                op.action
                    .has_transaction()
                    .then(|| plan.transaction_id(client, index))
            })
            .collect();
        Client {
            client,
            ops,
            requests,
            transactions,
            instances: plan.instances,
            heal_at: Duration::from_millis(plan.heal_at_ms()),
            trace,
            records: Rc::default(),
        }
    }

    pub async fn run(self) -> turmoil::Result {
        let mut pending = Vec::new();
        for (index, op) in self.ops.iter().enumerate() {
            tokio::time::sleep(Duration::from_millis(op.think_ms)).await;
            self.records.borrow_mut().push(OpRecord {
                client: self.client,
                index,
                action: op.action.clone(),
                transaction: self.transactions[index],
                attempts: Vec::new(),
            });
            let mut settled = self
                .settle(index, Phase::First, FAULT_PHASE_ATTEMPTS, None)
                .await;
            if op.resend && settled == Some(Verdict::Success) {
                settled = self
                    .settle(index, Phase::Resend, FAULT_PHASE_ATTEMPTS, None)
                    .await;
            }
            if settled.is_none() && op.action.is_write() {
                pending.push(index);
            }
        }
        if pending.is_empty() {
            return Ok(());
        }
        let now = turmoil::sim_elapsed().unwrap_or_default();
        if now < self.heal_at {
            tokio::time::sleep(self.heal_at - now).await;
        }
        let deadline = turmoil::sim_elapsed().unwrap_or_default() + LIVENESS_BOUND;
        for index in pending {
            self.settle(index, Phase::Liveness, usize::MAX, Some(deadline))
                .await;
        }
        Ok(())
    }

    /// Sends the operation until it gets a definitive answer, at most
    /// `attempts_max` times and not past `deadline`; `None` if it got none.
    async fn settle(
        &self,
        index: usize,
        phase: Phase,
        attempts_max: usize,
        deadline: Option<Duration>,
    ) -> Option<Verdict> {
        let op = &self.ops[index];
        let (method, path) = &self.requests[index];
        for attempt in 0..attempts_max {
            let now = turmoil::sim_elapsed().unwrap_or_default();
            if deadline.is_some_and(|deadline| now >= deadline) {
                break;
            }
            let instance = (op.instance + attempt) % self.instances;
            let reply = send(INSTANCES[instance], method.clone(), path, REQUEST_TIMEOUT).await;
            self.trace.log(|| {
                format!(
                    "{} #{index} {:?} via {}: {} {} -> {}",
                    CLIENTS[self.client],
                    phase,
                    INSTANCES[instance],
                    method,
                    path,
                    describe(&reply)
                )
            });
            let verdict = verdict(&op.action, &reply);
            self.records.borrow_mut()[index].attempts.push(Attempt {
                at: now,
                phase,
                instance,
                reply,
            });
            if verdict != Verdict::Unknown {
                return Some(verdict);
            }
            // A short, growing pause; the next attempt goes to the next instance.
            let pause = 50 * (1 + attempt.min(5) as u64);
            tokio::time::sleep(Duration::from_millis(pause)).await;
        }
        None
    }
}

fn describe(reply: &Reply) -> String {
    match reply {
        Reply::Status { code, body } if body.is_empty() => code.to_string(),
        Reply::Status { code, body } => format!("{code} {body}"),
        Reply::Timeout => "timeout".to_owned(),
        Reply::Failed(error) => format!("failed: {error}"),
    }
}
