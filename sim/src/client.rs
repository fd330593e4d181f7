//! Client hosts: each sends its planned operations in order over HTTP (an
//! operation marked `overlap` stays in flight while the next starts), retries after a timeout or an inconclusive answer with the same
//! transactionId (on the next instance), sometimes sends a request that
//! already succeeded once more, and records every reply it saw. Once the
//! faults have healed, it drives every operation still without a definitive
//! answer to one (the liveness phase). The rounds of sends and their pauses
//! (`retry`, `fault_phase`, `liveness_phase`) are the live clients' too.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use accounts::domain::{AccountId, OwnerId, Timestamp, TransactionId};
use accounts::http::ErrorCode;
use testkit::{ApiRequest, Client as ApiClient, Reply, Tokens};

use crate::db::Ledger;
use crate::net::TurmoilHost;
use crate::plan::{Action, CLIENTS, INSTANCES, Op, Past, Plan, READERS, Who};
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

/// One round of sends of an operation: its phase, at most how many
/// attempts, and none begun past when.
#[derive(Clone, Copy, Debug)]
pub struct Round {
    pub phase: Phase,
    pub attempts_max: usize,
    pub deadline: Option<Duration>,
}

impl Round {
    pub const FIRST: Round = Round {
        phase: Phase::First,
        attempts_max: FAULT_PHASE_ATTEMPTS,
        deadline: None,
    };
    pub const RESEND: Round = Round {
        phase: Phase::Resend,
        ..Round::FIRST
    };

    /// After the heal: as many attempts as it takes, until `deadline`.
    pub fn liveness(deadline: Duration) -> Round {
        Round {
            phase: Phase::Liveness,
            attempts_max: usize::MAX,
            deadline: Some(deadline),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Attempt {
    /// When the request was sent (virtual time since the run's start).
    pub at: Duration,
    /// When its reply (or the lack of one) came.
    pub answered: Duration,
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
    /// Who sent it: with authentication on, its token's subject or admin.
    pub caller: Who,
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
    let Ok(answer) = reply else {
        return Verdict::Unknown;
    };
    match (answer.status.as_u16(), action) {
        (200..=299, _) => Verdict::Success,
        (404, Action::GetState { .. } | Action::GetStateAt { .. }) => Verdict::Success,
        // An open's 409 is either "already exists" (definitive) or "too busy"
        // after the engine's retries (retry); the error code tells them apart.
        (409, Action::Open { .. }) if answer.error_code() == Some(ErrorCode::AccountExists) => {
            Verdict::Refusal
        }
        (408 | 409, _) => Verdict::Unknown,
        (400..=499, _) => Verdict::Refusal,
        _ => Verdict::Unknown,
    }
}

/// The transactionId an operation sends: its own, or the earlier one it reuses.
pub fn transaction_of(plan: &Plan, client: usize, index: usize) -> TransactionId {
    let op = &plan.clients[client][index];
    plan.transaction_id(client, op.reuse.unwrap_or(index))
}

/// Tokens the simulated instances accept: HS256 with the kit's secret,
/// issued when virtual time starts.
pub fn tokens(epoch_millis: i64) -> Tokens {
    Tokens::with_secret(testkit::auth::SECRET).issued_at(Timestamp::from_unix_millis(epoch_millis))
}

/// The token `who` carries (`None` with authentication off).
pub fn token(plan: &Plan, tokens: &Tokens, who: Who) -> Option<String> {
    if !plan.auth {
        return None;
    }
    Some(match who {
        Who::Anyone | Who::Admin => tokens.admin(),
        Who::Owner(owner) => tokens.owner(plan.owner_id(owner)),
    })
}

/// The request an operation sends, every time; `clock_zero_ms` is when the
/// run's clock read zero (unix ms), which `?at=` offsets are relative to.
pub fn request(
    plan: &Plan,
    client: usize,
    index: usize,
    op: &Op,
    clock_zero_ms: i64,
) -> ApiRequest {
    let id = |account: usize| plan.account_id(account);
    let transaction = transaction_of(plan, client, index);
    match op.action {
        Action::Open { account, owner } => ApiRequest::open(id(account), plan.owner_id(owner)),
        Action::Deposit { account, amount } => {
            ApiRequest::deposit(op.style, id(account), amount, transaction)
        }
        Action::Withdraw { account, amount } => {
            ApiRequest::withdraw(op.style, id(account), amount, transaction)
        }
        Action::Transfer { from, to, amount } => {
            ApiRequest::transfer(op.style, id(from), id(to), amount, transaction)
        }
        Action::Close { account } => ApiRequest::close_with(id(account), transaction),
        Action::GetState { account } => ApiRequest::state(id(account)),
        Action::GetStateAt {
            account,
            point: Past::Version(version),
        } => ApiRequest::state_at_version(id(account), version),
        Action::GetStateAt {
            account,
            point: Past::At(ms),
        } => ApiRequest::state_at_time(
            id(account),
            Timestamp::from_unix_millis(clock_zero_ms.saturating_add(ms)),
        ),
        Action::GetEvents {
            account,
            from,
            limit,
        } => ApiRequest::events_page(id(account), Some(from), limit),
    }
}

pub struct Client {
    pub client: usize,
    pub ops: Vec<Op>,
    pub requests: Vec<ApiRequest>,
    /// Each operation's bearer token, when authentication is on.
    pub tokens: Vec<Option<String>>,
    pub transactions: Vec<Option<TransactionId>>,
    pub instances: usize,
    pub heal_at: Duration,
    pub trace: Trace,
    pub records: Rc<RefCell<Vec<OpRecord>>>,
}

impl Client {
    pub fn new(
        plan: &Plan,
        client: usize,
        minted: &Tokens,
        clock_zero_ms: i64,
        trace: Trace,
    ) -> Client {
        let ops = plan.clients[client].clone();
        let requests = ops
            .iter()
            .enumerate()
            .map(|(index, op)| request(plan, client, index, op, clock_zero_ms))
            .collect();
        let tokens = ops
            .iter()
            .map(|op| token(plan, minted, op.caller))
            .collect();
        let transactions = transactions(plan, client, &ops);
        // Every operation's record exists from the start: with requests in
        // flight at once, they are filled in any order.
        let records = ops
            .iter()
            .enumerate()
            .map(|(index, op)| OpRecord {
                client,
                index,
                action: op.action.clone(),
                transaction: transactions[index],
                caller: op.caller,
                attempts: Vec::new(),
            })
            .collect();
        Client {
            client,
            ops,
            requests,
            tokens,
            transactions,
            instances: plan.instances,
            heal_at: Duration::from_millis(plan.heal_at_ms()),
            trace,
            records: Rc::new(RefCell::new(records)),
        }
    }

    pub async fn run(self) -> turmoil::Result {
        let pending = RefCell::new(Vec::new());
        let mut index = 0;
        while index < self.ops.len() {
            // An overlapping operation runs alongside the next one.
            if self.ops[index].overlap && index + 1 < self.ops.len() {
                tokio::join!(self.play(index, &pending), self.play(index + 1, &pending));
                index += 2;
            } else {
                self.play(index, &pending).await;
                index += 1;
            }
        }
        let mut pending = pending.into_inner();
        pending.sort_unstable();
        liveness_phase(pending, self.heal_at, sim_now, |index, round| {
            self.settle(index, round)
        })
        .await;
        Ok(())
    }

    /// One operation of the fault phase: think, send until answered (or out
    /// of attempts), maybe resend; a write left without an answer goes to
    /// `pending`.
    async fn play(&self, index: usize, pending: &RefCell<Vec<usize>>) {
        let op = &self.ops[index];
        tokio::time::sleep(Duration::from_millis(op.think_ms)).await;
        if fault_phase(op, move |round| self.settle(index, round)).await {
            pending.borrow_mut().push(index);
        }
    }

    /// Sends the operation until it gets a definitive answer, within
    /// `round`; `None` if it got none.
    async fn settle(&self, index: usize, round: Round) -> Option<Verdict> {
        retry(round, sim_now, move |attempt, sent| {
            self.send(index, round.phase, attempt, sent)
        })
        .await
    }

    /// Attempt `attempt` of operation `index`, sent at `sent` (virtual
    /// time) to the instance after the previous attempt's; recorded, and
    /// its verdict.
    async fn send(&self, index: usize, phase: Phase, attempt: usize, sent: Duration) -> Verdict {
        let op = &self.ops[index];
        let request = &self.requests[index];
        let instance = (op.instance + attempt) % self.instances;
        let mut api =
            ApiClient::new(TurmoilHost(INSTANCES[instance])).with_timeout(REQUEST_TIMEOUT);
        if let Some(token) = &self.tokens[index] {
            api = api.with_token(token.as_str());
        }
        let reply = api.call(request.clone()).reply().await;
        let answered = turmoil::sim_elapsed().unwrap_or_default();
        self.trace.log(|| {
            format!(
                "{} #{index} {:?} via {}: {} {} -> {}",
                CLIENTS[self.client],
                phase,
                INSTANCES[instance],
                request.method,
                request.target,
                describe(&reply)
            )
        });
        let verdict = verdict(&op.action, &reply);
        self.records.borrow_mut()[index].attempts.push(Attempt {
            at: sent,
            answered,
            phase,
            instance,
            reply,
        });
        verdict
    }
}

/// The transactionId of each of client `client`'s operations that carries
/// one: the same in the simulation and live, for the same plan.
pub fn transactions(plan: &Plan, client: usize, ops: &[Op]) -> Vec<Option<TransactionId>> {
    ops.iter()
        .enumerate()
        .map(|(index, op)| {
            op.action
                .has_transaction()
                .then(|| transaction_of(plan, client, index))
        })
        .collect()
}

/// Virtual time since the run's start, on the host that asks.
fn sim_now() -> Duration {
    turmoil::sim_elapsed().unwrap_or_default()
}

/// Sends until an answer is definitive, within `round` on `clock`: each
/// attempt after the first follows a short, growing pause.
/// `send(attempt, sent)` makes attempt number `attempt` at time `sent`,
/// records it and gives its verdict. `None` if no answer was definitive.
/// The simulation's clients and the live ones retry alike, so that a plan
/// means the same in both.
pub async fn retry<F, Fut>(
    round: Round,
    clock: impl Fn() -> Duration,
    mut send: F,
) -> Option<Verdict>
where
    F: FnMut(usize, Duration) -> Fut,
    Fut: Future<Output = Verdict>,
{
    for attempt in 0..round.attempts_max {
        let sent = clock();
        if round.deadline.is_some_and(|deadline| sent >= deadline) {
            break;
        }
        let verdict = send(attempt, sent).await;
        if verdict != Verdict::Unknown {
            return Some(verdict);
        }
        // A short, growing pause; the next attempt goes to the next instance.
        let pause = 50 * (1 + attempt.min(5) as u64);
        tokio::time::sleep(Duration::from_millis(pause)).await;
    }
    None
}

/// One operation's fault phase, `settle` sending it for a round: sent until
/// answered (or out of attempts), then resent once after a success where
/// the plan says so. Whether it is left pending: a write without a
/// definitive answer, for the liveness phase.
pub async fn fault_phase<S, Fut>(op: &Op, mut settle: S) -> bool
where
    S: FnMut(Round) -> Fut,
    Fut: Future<Output = Option<Verdict>>,
{
    let mut settled = settle(Round::FIRST).await;
    if op.resend && settled == Some(Verdict::Success) {
        settled = settle(Round::RESEND).await;
    }
    settled.is_none() && op.action.is_write()
}

/// The liveness phase: once the faults have healed (at `heal_at` on
/// `clock`), every pending operation, in order, sent until it gets a
/// definitive answer, all within [`LIVENESS_BOUND`]. With nothing pending
/// the client is done at once, without waiting for the heal.
pub async fn liveness_phase<S, Fut>(
    pending: Vec<usize>,
    heal_at: Duration,
    clock: impl Fn() -> Duration,
    mut settle: S,
) where
    S: FnMut(usize, Round) -> Fut,
    Fut: Future<Output = Option<Verdict>>,
{
    if pending.is_empty() {
        return;
    }
    let now = clock();
    if now < heal_at {
        tokio::time::sleep(heal_at - now).await;
    }
    let round = Round::liveness(clock() + LIVENESS_BOUND);
    for index in pending {
        settle(index, round).await;
    }
}

fn describe(reply: &Reply) -> String {
    match reply {
        Ok(answer) if answer.body.is_empty() => answer.status.as_u16().to_string(),
        Ok(answer) => format!("{} {}", answer.status.as_u16(), answer.body),
        Err(no_answer) => no_answer.to_string(),
    }
}

/// One feed request of a reader and what came back.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FeedAttempt {
    pub at: Duration,
    pub answered: Duration,
    pub instance: usize,
    /// The `after` it asked with: the last position it had been given.
    pub after: u64,
    pub reply: Reply,
}

/// Everything one feed reader saw.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReaderRecord {
    pub reader: usize,
    pub attempts: Vec<FeedAttempt>,
    /// It read an empty page after every writer had finished and no commit
    /// could land any more (`Ledger::quiet`): it saw the whole final log.
    pub caught_up: bool,
    /// With authentication on, the answer to one feed request sent with an
    /// owner's token before the first page: the feed is the admins', so it
    /// must never be a success.
    pub as_owner: Option<Reply>,
    /// With authentication on, once caught up: an account's state at
    /// version 1 read with an owner's token (that owner, the answer). A 200
    /// may only show that owner's own account.
    pub past_state_as_owner: Option<(OwnerId, Reply)>,
}

/// A feed reader's pause between empty pages once the writers are done and
/// it waits for the log to be final (`Ledger::quiet`).
const SETTLE_POLL: Duration = Duration::from_millis(25);

/// A client that pages the store-wide feed from position 0, resuming after
/// the last position it was given and moving to the next instance on any
/// error (positions are store-wide, so every instance serves the same
/// feed), until it has caught up with the final log or the liveness bound
/// has passed.
pub struct Reader {
    pub reader: usize,
    pub plan: crate::plan::FeedReader,
    pub token: Option<String>,
    /// An owner's token (authentication on), sent once to be refused.
    pub owner_token: Option<String>,
    /// Whose token `owner_token` is, and an account (mostly someone
    /// else's) whose past state it asks for once caught up.
    pub past_state_probe: (OwnerId, AccountId),
    pub instances: usize,
    pub heal_at: Duration,
    /// How many writer clients have finished, out of `writers`.
    pub writers_done: Rc<std::cell::Cell<usize>>,
    pub writers: usize,
    /// Tells when no commit can land any more.
    pub ledger: Arc<Ledger>,
    /// The longest a message takes on the simulated network.
    pub latency_max: Duration,
    pub trace: Trace,
    pub record: Rc<RefCell<ReaderRecord>>,
}

impl Reader {
    /// The state at version 1 of the probe's account, with the owner's
    /// token (authentication on only).
    async fn probe_past_state(&self, api: &ApiClient<TurmoilHost>) {
        let Some(token) = &self.owner_token else {
            return;
        };
        let (owner, account) = self.past_state_probe;
        let api = api.with_token(token.as_str());
        let reply = api.state_at_version(account, 1).reply().await;
        self.record.borrow_mut().past_state_as_owner = Some((owner, reply));
    }

    pub async fn run(self) -> turmoil::Result {
        let think = Duration::from_millis(self.plan.think_ms);
        let wait = (self.plan.wait_ms > 0).then_some(self.plan.wait_ms);
        let timeout = REQUEST_TIMEOUT + Duration::from_millis(self.plan.wait_ms);
        let mut instance = self.plan.instance % self.instances;
        let mut after = 0;
        tokio::time::sleep(think).await;
        self.probe_feed_as_owner(instance, timeout).await;
        loop {
            let now = turmoil::sim_elapsed().unwrap_or_default();
            if now >= self.heal_at + LIVENESS_BOUND {
                return Ok(());
            }
            // The log is final once every writer is done and no late commit
            // (a zombie) can still land; only a page asked for after that
            // counts.
            let writers_done = self.writers_done.get() == self.writers && now >= self.heal_at;
            let final_log = writers_done && self.ledger.quiet(now, self.heal_at, self.latency_max);
            let mut api = ApiClient::new(TurmoilHost(INSTANCES[instance])).with_timeout(timeout);
            if let Some(token) = &self.token {
                api = api.with_token(token.as_str());
            }
            // Once the writers are done, only a late commit can still come:
            // a long poll at the head of the feed would mostly wait for
            // nothing, and the page that confirms the end even so.
            let wait = wait.filter(|_| !writers_done);
            let Some(page) = self.page(&api, instance, after, wait, now).await else {
                instance = (instance + 1) % self.instances;
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            };
            if let Some(last) = page.last() {
                // A malformed position is the checker's to report; stop here.
                let Some(position) = last["position"].as_u64() else {
                    return Ok(());
                };
                after = position;
            } else if final_log {
                self.record.borrow_mut().caught_up = true;
                self.probe_past_state(&api).await;
                return Ok(());
            } else if writers_done {
                // Waiting for the log to be final: look again soon.
                tokio::time::sleep(SETTLE_POLL).await;
            } else if wait.is_none() {
                tokio::time::sleep(think.max(Duration::from_millis(50))).await;
            }
        }
    }

    /// The feed asked for once with the owner's token (authentication on
    /// only), where the contract answers 403.
    async fn probe_feed_as_owner(&self, instance: usize, timeout: Duration) {
        let Some(token) = &self.owner_token else {
            return;
        };
        let api = ApiClient::new(TurmoilHost(INSTANCES[instance])).with_timeout(timeout);
        let reply = api
            .with_token(token.as_str())
            .feed(Some(0), Some(1), None)
            .reply()
            .await;
        self.record.borrow_mut().as_owner = Some(reply);
    }

    /// One page of the feed after `after`, recorded; its events, or `None`
    /// where the answer was not a success.
    async fn page(
        &self,
        api: &ApiClient<TurmoilHost>,
        instance: usize,
        after: u64,
        wait: Option<u64>,
        now: Duration,
    ) -> Option<Vec<serde_json::Value>> {
        let reply = api
            .feed(Some(after), Some(self.plan.limit), wait)
            .reply()
            .await;
        let answered = turmoil::sim_elapsed().unwrap_or_default();
        self.trace.log(|| {
            format!(
                "{} via {}: feed after {after} -> {}",
                READERS[self.reader],
                INSTANCES[instance],
                describe(&reply)
            )
        });
        let page = match &reply {
            Ok(answer) if answer.status.is_success() => Some(
                serde_json::from_str::<Vec<serde_json::Value>>(&answer.body).unwrap_or_default(),
            ),
            _ => None,
        };
        self.record.borrow_mut().attempts.push(FeedAttempt {
            at: now,
            answered,
            instance,
            after,
            reply,
        });
        page
    }
}
