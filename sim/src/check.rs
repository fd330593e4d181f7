//! The checker: judges a recorded history — the requests with their sent
//! and answered times and answers, and the committed log with the time each
//! event landed — and nothing else, so any runner that records one (the
//! turmoil worlds, or real processes) can reuse it through [`check`].
//!
//! Beyond what was written (gap-free streams, legal transitions,
//! conservation, provenance, exactly-once), every answer is judged against a
//! reference model, per account (linearizability): the model's state at a
//! moment is the fold of the events that had landed by then, and each answer
//! must be the one the contract's order of checks gives for some state the
//! account had inside the request's window (sent → answered). A transfer's
//! two accounts may be seen at different moments of the window, as the
//! engine loads them one after the other.

use std::collections::{BTreeMap, BTreeSet};
use std::pin::pin;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use accounts::domain::{Account, AccountId, Event, OwnerId, TRANSFER_AMOUNT_MIN, TransactionId};
use accounts::http::{AccountBody, EVENTS_LIMIT_DEFAULT, ErrorCode, EventBody, FeedEventBody};
use accounts::store::{EventStore, FeedEvent, Loaded, MemoryStore, RecordedEvent};

use crate::client::{Attempt, OpRecord, ReaderRecord, Verdict, verdict};
use crate::landing::Landings;
use crate::plan::{Action, CLIENTS, Past, READERS, Who};
use testkit::Answer;

/// One account as the store holds it after the run.
pub struct AccountLog {
    pub id: AccountId,
    /// Every event, from sequence number 1.
    pub events: Vec<RecordedEvent>,
    /// When each event landed (same index as `events`), on the clock of the
    /// requests' windows, to within `History::skew` either way (a runner
    /// that knows landing times only roughly widens the skew).
    pub landed: Vec<Duration>,
    /// What a load returns: the latest snapshot and the events after it.
    pub loaded: Loaded,
}

pub struct Log {
    pub accounts: Vec<AccountLog>,
    /// The store-wide feed of the final log, in position order (empty where
    /// the runner has no feed readers).
    pub feed: Vec<FeedEvent>,
}

/// A recorded run: everything the checker looks at.
pub struct History<'a> {
    pub log: &'a Log,
    /// Owner ids by index, as `Action::Open` and `Who::Owner` name them.
    pub owners: &'a [OwnerId],
    /// Every operation, with every attempt's window and reply.
    pub records: &'a [OpRecord],
    /// Every feed reader's requests and replies.
    pub readers: &'a [ReaderRecord],
    /// How far apart two hosts' clocks may read at one moment (turmoil
    /// advances each host through a tick on its own), and so how far off a
    /// landing time may be: every window is widened by it on both sides.
    pub skew: Duration,
    /// When the run's clock read zero (unix ms): `?at=` offsets
    /// (`Past::At`) are relative to it.
    pub clock_zero_ms: i64,
}

/// The memory store answers without ever waiting, so its futures complete on
/// their first poll; no runtime needed.
pub(crate) fn at_once<F: Future>(future: F) -> F::Output {
    let mut future = pin!(future);
    match future
        .as_mut()
        .poll(&mut Context::from_waker(Waker::noop()))
    {
        Poll::Ready(output) => output,
        Poll::Pending => unreachable!("the memory store never waits"),
    }
}

impl Log {
    /// The final log of `accounts` (by index), stamped with `landings`.
    pub fn read(store: &MemoryStore, accounts: &[AccountId], landings: &Landings) -> Log {
        let accounts = accounts
            .iter()
            .map(|&id| {
                let events = at_once(store.events(id, 1, usize::MAX))
                    .expect("the memory store does not fail");
                let landed = events
                    .iter()
                    .map(|e| landings.get(id, e.sequence_number).unwrap_or_default())
                    .collect();
                AccountLog {
                    id,
                    events,
                    landed,
                    loaded: at_once(store.load(id, None)).expect("the memory store does not fail"),
                }
            })
            .collect();
        let feed = at_once(store.feed(0, usize::MAX)).expect("the memory store does not fail");
        Log { accounts, feed }
    }

    pub fn event_count(&self) -> usize {
        self.accounts.iter().map(|a| a.events.len()).sum()
    }

    /// One line per event, for the digest.
    pub fn lines(&self) -> Vec<String> {
        self.accounts
            .iter()
            .flat_map(|account| account.events.iter().map(|e| format!("{e:?}")))
            .collect()
    }

    fn index_of(&self, id: AccountId) -> Option<usize> {
        self.accounts.iter().position(|a| a.id == id)
    }
}

pub fn check(history: &History) -> Vec<String> {
    let log = history.log;
    let records = history.records;
    let mut violations = Vec::new();
    for (index, account) in log.accounts.iter().enumerate() {
        check_stream(index, account, &mut violations);
    }
    check_transfers(log, &mut violations);
    let model = Model::new(history);
    check_provenance(&model, &mut violations);
    // Before the sums: a lost operation is named where it happened.
    for record in records {
        check_answers(&model, record, &mut violations);
    }
    check_conservation(log, records, &mut violations);
    for reader in history.readers {
        check_feed(log, reader, &mut violations);
    }
    // What has a name says what went wrong; much of the rest follows from it.
    let (mut named, rest): (Vec<String>, Vec<String>) = violations
        .into_iter()
        .partition(|v| NAMED.iter().any(|name| v.starts_with(name)));
    named.extend(rest);
    named
}

/// The violations reported by name, first in a report.
pub const NAMED: [&str; 2] = ["lost-acknowledged", "feed-rewind"];

/// A feed reader's concatenated pages against the final log: every answer
/// a 200 or a retryable failure, positions strictly increasing, each event
/// the committed one at its position, and nothing skipped — the reader's
/// sequence is exactly the final feed up to the last position it was given,
/// or all of it once it caught up. Also, on its own sequence: each
/// account's events in sequence order and both legs of a transfer adjacent.
fn check_feed(log: &Log, reader: &ReaderRecord, violations: &mut Vec<String>) {
    let name = READERS[reader.reader];
    if let Some(Ok(answer)) = &reader.as_owner
        && answer.status.is_success()
    {
        violations.push(format!(
            "{name}: an owner's token read the feed ({}), where the contract answers 403",
            answer.status
        ));
    }
    if let Some((owner, Ok(answer))) = &reader.past_state_as_owner
        && answer.status.is_success()
        && answer.json()["ownerId"] != owner.to_string()
    {
        violations.push(format!(
            "{name}: owner {owner} read someone else's state at version 1: {}",
            answer.body
        ));
    }
    let mut seen: Vec<FeedEventBody> = Vec::new();
    for attempt in &reader.attempts {
        let Ok(answer) = &attempt.reply else {
            continue;
        };
        let status = answer.status.as_u16();
        if status == 408 || status >= 500 {
            continue;
        }
        if status != 200 {
            violations.push(format!(
                "{name}: the feed after {} answered {status} {}",
                attempt.after, answer.body
            ));
            return;
        }
        let expected_after = seen.last().map_or(0, |e| e.position);
        if attempt.after != expected_after {
            violations.push(format!(
                "{name}: asked after {} where its last position was {expected_after}",
                attempt.after
            ));
            return;
        }
        match serde_json::from_str::<Vec<FeedEventBody>>(&answer.body) {
            Ok(page) => seen.extend(page),
            Err(error) => {
                violations.push(format!(
                    "{name}: a feed page that is not a list of feed events ({error}): {}",
                    answer.body
                ));
                return;
            }
        }
    }
    let account = |id: AccountId| {
        log.index_of(id)
            .map_or_else(|| id.to_string(), |index| format!("a{index}"))
    };
    let describe = |e: &FeedEventBody| {
        format!(
            "position {} ({} #{} {})",
            e.position,
            account(e.account_id),
            e.event.sequence_number,
            e.event.event.type_name()
        )
    };
    let before = violations.len();
    // Positions strictly increase along the reader's sequence.
    for pair in seen.windows(2) {
        if pair[1].position <= pair[0].position {
            violations.push(format!(
                "feed-rewind: {name}: {} came after {}: positions must strictly increase (a duplicate or a rewind)",
                describe(&pair[1]),
                describe(&pair[0])
            ));
        }
    }
    // Each event is the committed one at its position: what a reader was
    // given is never taken back, by a failover or anything else.
    let committed: BTreeMap<u64, FeedEventBody> = log
        .feed
        .iter()
        .map(|e| (e.position, FeedEventBody::from(e)))
        .collect();
    for event in &seen {
        match committed.get(&event.position) {
            Some(expected) if expected == event => {}
            Some(expected) => violations.push(format!(
                "feed-rewind: {name}: was given {}, which is not the committed event at that position, {}",
                describe(event),
                describe(expected)
            )),
            None => violations.push(format!(
                "feed-rewind: {name}: was given {}, which is not in the final log (an uncommitted event, or one taken back)",
                describe(event)
            )),
        }
    }
    // Nothing committed is skipped: up to the last position the reader was
    // given (a committed event below it can never appear later), or all of
    // the log once it caught up.
    let last = seen.last().map_or(0, |e| e.position);
    let given: BTreeSet<u64> = seen.iter().map(|e| e.position).collect();
    let missing: Vec<&FeedEventBody> = committed
        .values()
        .filter(|e| (reader.caught_up || e.position <= last) && !given.contains(&e.position))
        .collect();
    if let Some(first) = missing.first() {
        violations.push(format!(
            "{name}: skipped {} committed event(s), the first {}{}",
            missing.len(),
            describe(first),
            if reader.caught_up {
                " (it caught up with the final log)"
            } else {
                ""
            }
        ));
    }
    if violations.len() > before {
        return;
    }
    // On its own sequence: each account in sequence order, transfer legs adjacent.
    let mut sequence: BTreeMap<AccountId, u64> = BTreeMap::new();
    for event in &seen {
        let previous = sequence.insert(event.account_id, event.event.sequence_number);
        if previous.is_some_and(|p| p >= event.event.sequence_number) {
            violations.push(format!(
                "{name}: {} came after #{} of the same account",
                describe(event),
                previous.unwrap_or_default()
            ));
        }
    }
    let is_leg = |e: &FeedEventBody| {
        matches!(
            e.event.event,
            Event::MoneyWithdrawn {
                transfer_to: Some(_),
                ..
            } | Event::MoneyDeposited {
                transfer_from: Some(_),
                ..
            }
        )
    };
    let mut legs: BTreeMap<TransactionId, Vec<usize>> = BTreeMap::new();
    for (index, event) in seen.iter().enumerate() {
        if is_leg(event) {
            legs.entry(event.event.transaction_id)
                .or_default()
                .push(index);
        }
    }
    for indexes in legs.values() {
        if let [a, b] = indexes[..]
            && b != a + 1
        {
            violations.push(format!(
                "{name}: the legs of a transfer, {} and {}, are not adjacent",
                describe(&seen[a]),
                describe(&seen[b])
            ));
        }
    }
}

/// The checker's own model of an account, independent of the domain's
/// `evolve` (which trusts the `balance` fields and asserts in debug builds):
/// balances come from the amounts alone.
fn model(state: &Account, event: &Event) -> Result<Account, String> {
    match (state, event) {
        (Account::Unopened, Event::AccountOpened { owner_id }) => Ok(Account::Open {
            owner_id: *owner_id,
            balance: 0,
        }),
        (Account::Open { owner_id, balance }, Event::MoneyDeposited { .. })
        | (Account::Open { owner_id, balance }, Event::MoneyWithdrawn { .. }) => {
            let after = i128::from(*balance) + event.money_moved();
            let balance = i64::try_from(after).map_err(|_| format!("balance {after} overflows"))?;
            Ok(Account::Open {
                owner_id: *owner_id,
                balance,
            })
        }
        (Account::Open { owner_id, .. }, Event::AccountClosed) => Ok(Account::Closed {
            owner_id: *owner_id,
        }),
        (state, event) => Err(format!(
            "{} on an account that is {state:?}",
            event.type_name()
        )),
    }
}

/// Folds events with the model; the first illegal transition stops it.
fn fold<'a>(
    mut state: Account,
    events: impl IntoIterator<Item = &'a RecordedEvent>,
) -> Result<Account, String> {
    for recorded in events {
        state = model(&state, &recorded.event)
            .map_err(|error| format!("#{}: {error}", recorded.sequence_number))?;
    }
    Ok(state)
}

/// The balance the service itself derives from a load (snapshot, then the
/// `balance` field of each later event): what it reports and decides on.
fn service_balance(loaded: &Loaded) -> i64 {
    let start = loaded.snapshot.as_ref().map_or(0, |s| s.state.balance());
    loaded
        .events
        .iter()
        .fold(start, |balance, e| match e.event {
            Event::MoneyDeposited { balance, .. } | Event::MoneyWithdrawn { balance, .. } => {
                balance
            }
            Event::AccountClosed => 0,
            Event::AccountOpened { .. } => balance,
        })
}

/// Gap-free sequence numbers, legal transitions, every `balance` field equal
/// to the running sum and never negative, each transactionId at most once,
/// and snapshot + tail equal to the full replay.
fn check_stream(index: usize, account: &AccountLog, violations: &mut Vec<String>) {
    let mut state = Account::Unopened;
    let mut seen: BTreeMap<TransactionId, u64> = BTreeMap::new();
    for (position, recorded) in account.events.iter().enumerate() {
        let at = format!("a{index}#{}", recorded.sequence_number);
        if recorded.sequence_number != position as u64 + 1 {
            violations.push(format!(
                "a{index}: sequence numbers have a gap: event {} has number {}",
                position + 1,
                recorded.sequence_number
            ));
        }
        if let Some(first) = seen.insert(recorded.transaction_id, recorded.sequence_number) {
            violations.push(format!(
                "{at}: transaction {} applied twice on one account (first at #{first})",
                recorded.transaction_id
            ));
        }
        state = match model(&state, &recorded.event) {
            Ok(next) => next,
            Err(error) => {
                violations.push(format!("{at}: {error}"));
                return;
            }
        };
        let running = state.balance();
        match recorded.event {
            Event::MoneyDeposited {
                amount_deposited: amount,
                balance,
                ..
            }
            | Event::MoneyWithdrawn {
                amount_withdrawn: amount,
                balance,
                ..
            } => {
                if amount <= 0 {
                    violations.push(format!("{at}: moves a non-positive amount {amount}"));
                }
                if balance != running {
                    violations.push(format!(
                        "{at}: the event says balance {balance}, its events add up to {running}"
                    ));
                }
                if running < 0 {
                    violations.push(format!("{at}: the balance is negative ({running})"));
                }
            }
            Event::AccountOpened { .. } | Event::AccountClosed => {}
        }
    }
    let full = state;
    let last = account.events.len() as u64;
    let snapshot_state = account
        .loaded
        .snapshot
        .as_ref()
        .map_or(Account::Unopened, |s| s.state.clone());
    if let Some(snapshot) = &account.loaded.snapshot {
        let upto = usize::try_from(snapshot.sequence_number).unwrap_or(usize::MAX);
        match fold(Account::Unopened, account.events.iter().take(upto)) {
            Ok(prefix) if prefix == snapshot.state => {}
            Ok(prefix) => violations.push(format!(
                "a{index}: the snapshot at #{} holds {:?}, the replay up to there {prefix:?}",
                snapshot.sequence_number, snapshot.state
            )),
            Err(error) => violations.push(format!("a{index}: {error}")),
        }
    }
    let version = account
        .loaded
        .events
        .last()
        .map(|e| e.sequence_number)
        .or_else(|| account.loaded.snapshot.as_ref().map(|s| s.sequence_number))
        .unwrap_or(0);
    match fold(snapshot_state, &account.loaded.events) {
        Ok(loaded) if loaded == full && version == last => {}
        Ok(loaded) => violations.push(format!(
            "a{index}: snapshot + tail gives {loaded:?} at #{version}, the full replay {full:?} at #{last}"
        )),
        Err(error) => violations.push(format!("a{index}: snapshot + tail: {error}")),
    }
    if service_balance(&account.loaded) != full.balance() {
        violations.push(format!(
            "a{index}: the service would report balance {}, the events add up to {}",
            service_balance(&account.loaded),
            full.balance()
        ));
    }
}

/// A transfer's source, target and transactionId.
type TransferKey = (AccountId, AccountId, TransactionId);
/// The amounts withdrawn from the source and deposited to the target.
type Legs = (Vec<i64>, Vec<i64>);

/// Each transfer has both legs, with one transactionId and one amount.
fn check_transfers(log: &Log, violations: &mut Vec<String>) {
    let mut legs: BTreeMap<TransferKey, Legs> = BTreeMap::new();
    for account in &log.accounts {
        for recorded in &account.events {
            match recorded.event {
                Event::MoneyWithdrawn {
                    amount_withdrawn,
                    transfer_to: Some(target),
                    ..
                } => legs
                    .entry((account.id, target, recorded.transaction_id))
                    .or_default()
                    .0
                    .push(amount_withdrawn),
                Event::MoneyDeposited {
                    amount_deposited,
                    transfer_from: Some(source),
                    ..
                } => legs
                    .entry((source, account.id, recorded.transaction_id))
                    .or_default()
                    .1
                    .push(amount_deposited),
                _ => {}
            }
        }
    }
    for ((source, target, transaction), (withdrawn, deposited)) in legs {
        if withdrawn.len() != 1 || withdrawn != deposited {
            let (source, target) = (
                log.index_of(source)
                    .map_or("?".to_owned(), |i| i.to_string()),
                log.index_of(target)
                    .map_or("?".to_owned(), |i| i.to_string()),
            );
            violations.push(format!(
                "transfer {transaction} from a{source} to a{target}: withdrawn {withdrawn:?}, deposited {deposited:?}"
            ));
        }
    }
}

/// The balances the service reports add up to the money that entered minus
/// the money that left, by the events and by the clients' successes.
fn check_conservation(log: &Log, records: &[OpRecord], violations: &mut Vec<String>) {
    let reported: i128 = log
        .accounts
        .iter()
        .map(|a| i128::from(service_balance(&a.loaded)))
        .sum();
    let mut external: i128 = 0;
    for account in &log.accounts {
        for recorded in &account.events {
            match recorded.event {
                Event::MoneyDeposited {
                    transfer_from: None,
                    ..
                }
                | Event::MoneyWithdrawn {
                    transfer_to: None, ..
                } => external += recorded.event.money_moved(),
                _ => {}
            }
        }
    }
    if reported != external {
        violations.push(format!(
            "money not conserved: the balances add up to {reported}, deposits minus withdrawals to {external}"
        ));
    }
    let unresolved = records.iter().any(|r| {
        r.action.is_write()
            && !r
                .attempts
                .iter()
                .any(|a| verdict(&r.action, &a.reply) != Verdict::Unknown)
    });
    if unresolved {
        return;
    }
    let mut acknowledged: i128 = 0;
    for record in records {
        let succeeded = record
            .attempts
            .iter()
            .any(|a| verdict(&record.action, &a.reply) == Verdict::Success);
        match record.action {
            Action::Deposit { amount, .. } if succeeded => acknowledged += i128::from(amount),
            Action::Withdraw { amount, .. } if succeeded => acknowledged -= i128::from(amount),
            _ => {}
        }
    }
    if reported != acknowledged {
        violations.push(format!(
            "money not conserved: the balances add up to {reported}, the deposits minus withdrawals clients were told succeeded to {acknowledged}"
        ));
    }
}

/// The reference model over the committed log: every account's state after
/// each of its events, and which operation each event records.
struct Model<'a> {
    history: &'a History<'a>,
    /// Per account, `states[v]`: the state after its first `v` events (the
    /// fold stops at an illegal event, which `check_stream` reports).
    states: Vec<Vec<Account>>,
    /// Per account, the operation each event belongs to (as a client names
    /// it), to compare with requests under the same transactionId.
    actions: Vec<Vec<Action>>,
}

/// What the contract's order of checks answers in one model state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Expect {
    /// 2xx, and the events are appended.
    Apply,
    /// 2xx, nothing to do (zero amount, repeated open, closing a closed account).
    Unchanged,
    /// 2xx: the identical operation was recorded before under this transactionId.
    Replayed,
    Refuse(ErrorCode),
}

/// The answers the model allows, in the order first met.
#[derive(Default)]
struct Expectations(Vec<Expect>);

impl Expectations {
    fn insert(&mut self, expect: Expect) {
        if !self.0.contains(&expect) {
            self.0.push(expect);
        }
    }

    fn contains(&self, expect: &Expect) -> bool {
        self.0.contains(expect)
    }
}

/// One account as a request sees it at one moment: its state and the
/// operation recorded under the request's transactionId, if any.
#[derive(Clone, Copy)]
struct Side<'a> {
    state: &'a Account,
    record: Option<&'a Action>,
}

impl<'a> Model<'a> {
    fn new(history: &'a History<'a>) -> Model<'a> {
        let log = history.log;
        let mut states = Vec::new();
        let mut actions = Vec::new();
        for (index, account) in log.accounts.iter().enumerate() {
            let mut state = Account::Unopened;
            let mut after = vec![state.clone()];
            for recorded in &account.events {
                state = model(&state, &recorded.event).unwrap_or(state);
                after.push(state.clone());
            }
            states.push(after);
            actions.push(
                account
                    .events
                    .iter()
                    .map(|e| event_action(history, index, &e.event))
                    .collect(),
            );
        }
        Model {
            history,
            states,
            actions,
        }
    }

    fn log(&self) -> &Log {
        self.history.log
    }

    /// The versions an account had at some moment of `attempt`'s window:
    /// from the one in force just before it was sent to the one in force
    /// when it was answered.
    fn window(&self, account: usize, attempt: &Attempt) -> std::ops::RangeInclusive<usize> {
        let landed = &self.log().accounts[account].landed;
        let skew = self.history.skew;
        let low = landed.partition_point(|t| *t + skew < attempt.at);
        let high = landed.partition_point(|t| *t <= attempt.answered + skew);
        low..=high.max(low)
    }

    /// The account at version `version`, as a request under `transaction` sees it.
    fn side(&self, account: usize, version: usize, transaction: Option<TransactionId>) -> Side<'_> {
        let events = &self.log().accounts[account].events[..version];
        let record = transaction.and_then(|t| {
            events
                .iter()
                .position(|e| e.transaction_id == t)
                .map(|i| &self.actions[account][i])
        });
        Side {
            state: &self.states[account][version],
            record,
        }
    }

    fn owner(&self, owner: usize) -> Option<OwnerId> {
        self.history.owners.get(owner).copied()
    }

    /// Whether `caller` may see `state` (someone else's account, or one
    /// nobody owns yet, is hidden from an owner's token).
    fn may_see(&self, caller: Who, state: &Account) -> bool {
        match caller {
            Who::Anyone | Who::Admin => true,
            Who::Owner(owner) => {
                state.owner_id().is_some() && state.owner_id() == self.owner(owner)
            }
        }
    }

    /// The answer the contract gives a write in one model state: rules 2
    /// (a transfer moves at least 1), 3 (with owner scoping), 4 and 5 of
    /// the order of checks, in that order.
    fn expect(&self, action: &Action, caller: Who, source: Side, target: Option<Side>) -> Expect {
        use ErrorCode::*;
        let refuse = Expect::Refuse;
        if let Action::Transfer { amount, .. } = *action
            && amount < TRANSFER_AMOUNT_MIN
        {
            return refuse(BadParameter);
        }
        if let Action::Open { owner, .. } = *action {
            if let Who::Owner(subject) = caller
                && subject != owner
            {
                return refuse(Forbidden);
            }
            return match source.state {
                Account::Unopened => Expect::Apply,
                Account::Open { owner_id, .. } if Some(*owner_id) == self.owner(owner) => {
                    Expect::Unchanged
                }
                _ => refuse(AccountExists),
            };
        }
        if !self.may_see(caller, source.state) || !source.state.exists() {
            return refuse(AccountNotFound);
        }
        if target.is_some_and(|t| !t.state.exists()) {
            return refuse(AccountNotFound);
        }
        if let Some(recorded) = source.record.or(target.and_then(|t| t.record)) {
            return if recorded == action {
                Expect::Replayed
            } else {
                refuse(TransactionReused)
            };
        }
        let balance = source.state.balance();
        let closed = matches!(source.state, Account::Closed { .. });
        match *action {
            Action::Deposit { amount, .. } => {
                if closed {
                    refuse(AccountClosed)
                } else if amount == 0 {
                    Expect::Unchanged
                } else if balance.checked_add(amount).is_none() {
                    refuse(BalanceOverflow)
                } else {
                    Expect::Apply
                }
            }
            Action::Withdraw { amount, .. } => {
                if closed {
                    refuse(AccountClosed)
                } else if amount == 0 {
                    Expect::Unchanged
                } else if balance < amount {
                    refuse(InsufficientBalance)
                } else {
                    Expect::Apply
                }
            }
            Action::Transfer { from, to, amount } => {
                let target_state = target.map_or(source.state, |t| t.state);
                if closed || matches!(target_state, Account::Closed { .. }) {
                    refuse(AccountClosed)
                } else if from == to {
                    refuse(TransferToSelf)
                } else if balance < amount {
                    refuse(InsufficientBalance)
                } else if target_state.balance().checked_add(amount).is_none() {
                    refuse(BalanceOverflow)
                } else {
                    Expect::Apply
                }
            }
            Action::Close { .. } => {
                if closed {
                    Expect::Unchanged
                } else if balance != 0 {
                    refuse(CloseWithBalance)
                } else {
                    Expect::Apply
                }
            }
            Action::Open { .. }
            | Action::GetState { .. }
            | Action::GetStateAt { .. }
            | Action::GetEvents { .. } => {
                unreachable!("opens are answered above, reads are not commands")
            }
        }
    }

    /// A transfer's target, when it is another account.
    fn target_of(action: &Action) -> Option<usize> {
        match *action {
            Action::Transfer { from, to, .. } if from != to => Some(to),
            _ => None,
        }
    }

    /// Every answer the model allows a write inside `attempt`'s window.
    fn expectations(&self, record: &OpRecord, attempt: &Attempt) -> Expectations {
        let source = record.action.account();
        let target = Model::target_of(&record.action);
        let mut allowed = Expectations::default();
        for v in self.window(source, attempt) {
            let source_side = self.side(source, v, record.transaction);
            match target {
                None => {
                    allowed.insert(self.expect(&record.action, record.caller, source_side, None));
                }
                Some(target) => {
                    for w in self.window(target, attempt) {
                        let target_side = self.side(target, w, record.transaction);
                        allowed.insert(self.expect(
                            &record.action,
                            record.caller,
                            source_side,
                            Some(target_side),
                        ));
                    }
                }
            }
        }
        allowed
    }

    /// The version a state read answers when the store holds version
    /// `current` of the account: the current one, `?version=n` (0 where n
    /// is beyond it: not found), or `?at=` the longest prefix recorded by
    /// then.
    fn read_version(&self, account: usize, point: Option<Past>, current: usize) -> usize {
        match point {
            None => current,
            Some(Past::Version(n)) => usize::try_from(n)
                .ok()
                .filter(|n| *n <= current)
                .unwrap_or(0),
            Some(Past::At(ms)) => {
                let at = self.history.clock_zero_ms.saturating_add(ms);
                let events = &self.log().accounts[account].events[..current];
                events
                    .iter()
                    .take_while(|e| e.recorded_at.unix_millis() <= at)
                    .count()
            }
        }
    }

    /// Whether a state read's answer is the model's when the store held
    /// version `current`: 404 for a state that does not exist or that the
    /// caller may not see, else that state's body with its version as ETag.
    fn explains_state(
        &self,
        record: &OpRecord,
        point: Option<Past>,
        current: usize,
        answer: &Answer,
    ) -> bool {
        let account = record.action.account();
        let version = self.read_version(account, point, current);
        let state = &self.states[account][version];
        if !state.exists() || !self.may_see(record.caller, state) {
            return answer.status == 404;
        }
        let etag = format!("\"{version}\"");
        answer.status == 200
            && answer.header("etag") == Some(etag.as_str())
            && serde_json::from_str::<AccountBody>(&answer.body).ok()
                == AccountBody::new(self.log().accounts[account].id, state)
    }

    /// The events recorded under `record`'s transactionId for its own
    /// operation (another operation may reuse the id): (account, index).
    fn own_events(&self, record: &OpRecord) -> Vec<(usize, usize)> {
        let Some(transaction) = record.transaction else {
            return Vec::new();
        };
        let mut own = Vec::new();
        for (account, log) in self.log().accounts.iter().enumerate() {
            for (index, event) in log.events.iter().enumerate() {
                if event.transaction_id == transaction
                    && self.actions[account][index] == record.action
                {
                    own.push((account, index));
                }
            }
        }
        own
    }
}

/// The operation a client would name for an event on account `index`.
fn event_action(history: &History, index: usize, event: &Event) -> Action {
    let log = history.log;
    let other = |id: AccountId| log.index_of(id).unwrap_or(usize::MAX);
    match *event {
        Event::AccountOpened { owner_id } => Action::Open {
            account: index,
            owner: history
                .owners
                .iter()
                .position(|o| *o == owner_id)
                .unwrap_or(usize::MAX),
        },
        Event::MoneyDeposited {
            amount_deposited: amount,
            transfer_from: None,
            ..
        } => Action::Deposit {
            account: index,
            amount,
        },
        Event::MoneyWithdrawn {
            amount_withdrawn: amount,
            transfer_to: None,
            ..
        } => Action::Withdraw {
            account: index,
            amount,
        },
        Event::MoneyDeposited {
            amount_deposited: amount,
            transfer_from: Some(source),
            ..
        } => Action::Transfer {
            from: other(source),
            to: index,
            amount,
        },
        Event::MoneyWithdrawn {
            amount_withdrawn: amount,
            transfer_to: Some(target),
            ..
        } => Action::Transfer {
            from: index,
            to: other(target),
            amount,
        },
        Event::AccountClosed => Action::Close { account: index },
    }
}

/// Every event comes from a request some client really sent: the same
/// operation under the same transactionId (an open: by the same owner).
fn check_provenance(model: &Model, violations: &mut Vec<String>) {
    let records = model.history.records;
    let mut by_transaction: BTreeMap<TransactionId, Vec<&OpRecord>> = BTreeMap::new();
    for record in records {
        if let Some(transaction) = record.transaction {
            by_transaction.entry(transaction).or_default().push(record);
        }
    }
    for (index, account) in model.log().accounts.iter().enumerate() {
        for (position, recorded) in account.events.iter().enumerate() {
            let at = format!("a{index}#{}", recorded.sequence_number);
            let action = &model.actions[index][position];
            if let Event::AccountOpened { owner_id } = recorded.event {
                if !records.iter().any(|r| r.action == *action) {
                    violations.push(format!("{at}: opened for {owner_id}, which nobody asked"));
                }
                continue;
            }
            let Some(senders) = by_transaction.get(&recorded.transaction_id) else {
                violations.push(format!(
                    "{at}: {} under transaction {}, which no client sent",
                    recorded.event.type_name(),
                    recorded.transaction_id
                ));
                continue;
            };
            if !senders.iter().any(|r| r.action == *action) {
                let sent: Vec<String> = senders
                    .iter()
                    .map(|r| format!("{} #{} ({})", CLIENTS[r.client], r.index, r.action))
                    .collect();
                violations.push(format!(
                    "{at}: {} ({action}) matches none of the requests sent under its transaction: {}",
                    recorded.event.type_name(),
                    sent.join(", ")
                ));
            }
        }
    }
}

/// A success with nothing of its own recorded: the model must have had
/// nothing to do at some moment of its window (for an open: the account
/// open for the same owner, its own event included). Where the model would
/// have applied it, an acknowledged operation was lost.
fn check_unrecorded_success(
    model: &Model,
    record: &OpRecord,
    attempt: &Attempt,
    when: &str,
    violations: &mut Vec<String>,
) {
    let allowed = model.expectations(record, attempt);
    let code = attempt.reply.as_ref().map_or(0, |a| a.status.as_u16());
    if allowed.contains(&Expect::Unchanged) {
        return;
    }
    violations.push(if allowed.contains(&Expect::Apply) {
        format!(
            "lost-acknowledged: {when}: answered {code}, yet nothing is recorded under its transaction in the final log (the model allows {})",
            describe(&allowed)
        )
    } else {
        format!(
            "{when}: answered {code} but nothing was recorded under its transaction; the model allows {}",
            describe(&allowed)
        )
    });
}

/// The statuses an operation may ever get.
fn allowed(action: &Action, code: u16) -> bool {
    let common = matches!(code, 408 | 503);
    common
        || match action {
            Action::Open { .. } => matches!(code, 201 | 403 | 409),
            Action::Deposit { .. }
            | Action::Withdraw { .. }
            | Action::Transfer { .. }
            | Action::Close { .. } => matches!(code, 204 | 400 | 404 | 409 | 422),
            Action::GetState { .. } | Action::GetStateAt { .. } => matches!(code, 200 | 404),
            Action::GetEvents { .. } => code == 200,
        }
}

fn describe(allowed: &Expectations) -> String {
    let words: Vec<String> = allowed
        .0
        .iter()
        .map(|e| match e {
            Expect::Apply => "2xx (applied)".to_owned(),
            Expect::Unchanged => "2xx (nothing to do)".to_owned(),
            Expect::Replayed => "2xx (replay)".to_owned(),
            Expect::Refuse(code) => format!("{} {code}", code.status().as_u16()),
        })
        .collect();
    words.join(" or ")
}

/// Every answer judged: its status is one the operation may get, an error
/// carries the code of its status, and the model explains it inside its
/// window; every write got a definitive answer (the liveness bound); a
/// success is backed by exactly its events, landed before it was answered
/// and decided on the state they were appended to; a refusal by none.
fn check_answers(model: &Model, record: &OpRecord, violations: &mut Vec<String>) {
    let who = format!(
        "{} #{} ({})",
        CLIENTS[record.client], record.index, record.action
    );
    let own = model.own_events(record);
    for attempt in &record.attempts {
        let Ok(answer) = &attempt.reply else {
            continue;
        };
        let (code, body) = (answer.status.as_u16(), &answer.body);
        let when = format!(
            "{who} sent at {} ms, answered at {} ms",
            attempt.at.as_millis(),
            attempt.answered.as_millis()
        );
        if !allowed(&record.action, code) {
            violations.push(format!("{when}: unexpected answer {code} {body}"));
            continue;
        }
        let error = answer.error_code();
        if code >= 400 && error.map(|e| e.status().as_u16()) != Some(code) {
            violations.push(format!(
                "{when}: answer {code} without an error code of that status: {body}"
            ));
            continue;
        }
        if !record.action.is_write() {
            check_read(model, record, attempt, &when, violations);
            continue;
        }
        match verdict(&record.action, &attempt.reply) {
            Verdict::Unknown => {}
            Verdict::Refusal => {
                let allowed = model.expectations(record, attempt);
                let error = error.expect("checked above");
                if !allowed.contains(&Expect::Refuse(error)) {
                    violations.push(format!(
                        "{when}: answered {code} {error}, the model allows {}",
                        describe(&allowed)
                    ));
                }
            }
            Verdict::Success => {
                if let Some(&(account, index)) = own.first() {
                    let landed = model.log().accounts[account].landed[index];
                    if landed > attempt.answered + model.history.skew {
                        violations.push(format!(
                            "{when}: answered {code} before its events landed (at {} ms)",
                            landed.as_millis()
                        ));
                    }
                    continue;
                }
                check_unrecorded_success(model, record, attempt, &when, violations);
            }
        }
    }
    if !record.action.is_write() {
        return;
    }
    let verdicts: BTreeSet<_> = record
        .attempts
        .iter()
        .map(|a| format!("{:?}", verdict(&record.action, &a.reply)))
        .collect();
    let success = verdicts.contains("Success");
    let refusal = verdicts.contains("Refusal");
    if !success && !refusal {
        violations.push(format!(
            "{who}: no definitive answer within the liveness bound after {} attempts",
            record.attempts.len()
        ));
        return;
    }
    if record.transaction.is_none() {
        return;
    }
    let arity = if matches!(record.action, Action::Transfer { .. }) {
        2
    } else {
        1
    };
    if !own.is_empty() && own.len() != arity {
        violations.push(format!(
            "{who}: {} events carry its transaction and operation (expected {arity})",
            own.len()
        ));
    }
    if refusal && !success && !own.is_empty() {
        violations.push(format!(
            "{who}: refused, yet {} events carry its transaction",
            own.len()
        ));
    }
    if !own.is_empty() && !success {
        return;
    }
    // Applied: the decision must be the model's on the state each event
    // was appended to (the version right before it, on both accounts).
    if let Some(&(account, index)) = own.iter().find(|(a, _)| *a == record.action.account()) {
        let source = model.side(account, index, record.transaction);
        let target = Model::target_of(&record.action).and_then(|target| {
            own.iter()
                .find(|(a, _)| *a == target)
                .map(|&(a, i)| model.side(a, i, record.transaction))
        });
        let decided = model.expect(&record.action, record.caller, source, target);
        if decided != Expect::Apply {
            violations.push(format!(
                "{who}: applied at a{account}#{}, where the model answers {}",
                index + 1,
                describe(&Expectations(vec![decided]))
            ));
        }
    }
}

/// A state read equals the model's state at a version inside the window
/// (404: unknown, or someone else's, then); an event page is the slice of
/// the final stream that some version inside the window had.
fn check_read(
    model: &Model,
    record: &OpRecord,
    attempt: &Attempt,
    when: &str,
    violations: &mut Vec<String>,
) {
    let Ok(answer) = &attempt.reply else {
        return;
    };
    let account = record.action.account();
    let log = &model.log().accounts[account];
    let states = &model.states[account];
    let window = model.window(account, attempt);
    let body = &answer.body;
    // 503 and 408 say nothing about the account.
    if !matches!(answer.status.as_u16(), 200 | 404) {
        return;
    }
    match record.action {
        Action::GetState { .. } | Action::GetStateAt { .. } => {
            let point = match record.action {
                Action::GetStateAt { point, .. } => Some(point),
                _ => None,
            };
            let explained = window
                .clone()
                .any(|v| model.explains_state(record, point, v, answer));
            if !explained {
                violations.push(format!(
                    "{when}: read {} (ETag {}) {body}, but the account's states in the window were versions {}..={} of {}",
                    answer.status.as_u16(),
                    answer.header("etag").unwrap_or("none"),
                    window.start(),
                    window.end(),
                    log.events.len()
                ));
            }
        }
        Action::GetEvents { from, limit, .. } => {
            let Ok(page) = serde_json::from_str::<Vec<EventBody>>(body) else {
                violations.push(format!("{when}: unreadable events {body}"));
                return;
            };
            let skip = usize::try_from(from.saturating_sub(1)).unwrap_or(usize::MAX);
            let limit = limit.unwrap_or(EVENTS_LIMIT_DEFAULT) as usize;
            let end = skip.saturating_add(page.len());
            let slice: Option<Vec<EventBody>> = log
                .events
                .get(skip.min(log.events.len())..end.min(log.events.len()))
                .filter(|_| end <= log.events.len() || page.is_empty())
                .map(|events| events.iter().map(EventBody::from).collect());
            let is_slice = page.is_empty() || slice.as_ref() == Some(&page);
            let explained = is_slice
                && window.clone().any(|v| {
                    if !model.may_see(record.caller, &states[v]) {
                        page.is_empty()
                    } else if page.len() == limit {
                        end <= v
                    } else {
                        end == v.max(skip)
                    }
                });
            if !explained {
                violations.push(format!(
                    "{when}: read events {body}, not the page of any version {}..={} of the final stream",
                    window.start(),
                    window.end()
                ));
            }
        }
        _ => {}
    }
}

/// The branches of the contract a sweep must reach, by the name the
/// coverage line prints.
pub const BRANCHES: [&str; 19] = [
    "transactionId reused on a transfer's source",
    "transactionId reused on a transfer's target",
    "zero amount",
    "transfer to self",
    "amount near the i64 limit",
    "balance overflow",
    "insufficient balance",
    "close with balance",
    "close without balance",
    "unknown account",
    "closed account",
    "re-open by the same owner",
    "re-open by another owner",
    "event page",
    "requests in flight at once",
    "auth: another owner's account",
    "auth: admin",
    "past state inside the history",
    "past state outside the history",
];

/// The branches of [`BRANCHES`] a recorded history reached: each counts
/// only when a request took it and got a definitive answer.
pub fn branches(records: &[OpRecord]) -> BTreeSet<&'static str> {
    let mut reached = BTreeSet::new();
    let answered = |record: &OpRecord| -> Vec<(u16, Option<ErrorCode>)> {
        record
            .attempts
            .iter()
            .filter_map(|a| a.reply.as_ref().ok())
            .map(|answer| (answer.status.as_u16(), answer.error_code()))
            .collect()
    };
    let transfers: Vec<(&OpRecord, usize, usize)> = records
        .iter()
        .filter_map(|r| match r.action {
            Action::Transfer { from, to, .. } if from != to => Some((r, from, to)),
            _ => None,
        })
        .collect();
    let mut opens_succeeded: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
    for record in records {
        let answers = answered(record);
        let definitive = record
            .attempts
            .iter()
            .any(|a| verdict(&record.action, &a.reply) != Verdict::Unknown);
        let code = |wanted: ErrorCode| answers.iter().any(|(_, c)| *c == Some(wanted));
        let success = answers
            .iter()
            .any(|(status, _)| (200..300).contains(status));
        for &(transfer, from, to) in &transfers {
            let reused = std::ptr::eq(transfer, record)
                || transfer.transaction != record.transaction
                || transfer.action == record.action;
            if !reused && definitive {
                if record.action.account() == from {
                    reached.insert(BRANCHES[0]);
                }
                if record.action.account() == to {
                    reached.insert(BRANCHES[1]);
                }
            }
        }
        let amount = match record.action {
            Action::Deposit { amount, .. }
            | Action::Withdraw { amount, .. }
            | Action::Transfer { amount, .. } => Some(amount),
            _ => None,
        };
        if amount == Some(0) && success {
            reached.insert(BRANCHES[2]);
        }
        if code(ErrorCode::TransferToSelf) {
            reached.insert(BRANCHES[3]);
        }
        if amount.is_some_and(|a| a > i64::MAX / 2) && definitive {
            reached.insert(BRANCHES[4]);
        }
        for (wanted, branch) in [
            (ErrorCode::BalanceOverflow, 5),
            (ErrorCode::InsufficientBalance, 6),
            (ErrorCode::CloseWithBalance, 7),
            (ErrorCode::AccountClosed, 10),
        ] {
            if code(wanted) {
                reached.insert(BRANCHES[branch]);
            }
        }
        if matches!(record.action, Action::Close { .. }) && success {
            reached.insert(BRANCHES[8]);
        }
        if record.action.is_write() && code(ErrorCode::AccountNotFound) {
            reached.insert(BRANCHES[9]);
        }
        if let Action::Open { account, owner } = record.action {
            if success {
                opens_succeeded.entry(account).or_default().push(owner);
            }
            if code(ErrorCode::AccountExists) {
                reached.insert(BRANCHES[12]);
            }
        }
        if let Action::GetEvents { from, limit, .. } = record.action
            && (from > 1 || limit.is_some())
            && answers.iter().any(|(status, _)| *status == 200)
        {
            reached.insert(BRANCHES[13]);
        }
        past_state_branches(record, &answers, &mut reached);
        match record.caller {
            Who::Owner(owner)
                if !matches!(record.action, Action::Open { .. })
                    && owner != record.action.account()
                    && definitive =>
            {
                reached.insert(BRANCHES[15]);
            }
            Who::Admin if definitive => {
                reached.insert(BRANCHES[16]);
            }
            _ => {}
        }
    }
    if opens_succeeded.values().any(|owners| {
        owners
            .iter()
            .enumerate()
            .any(|(i, o)| owners[..i].contains(o))
    }) {
        reached.insert(BRANCHES[11]);
    }
    let overlapping = records.iter().any(|a| {
        records.iter().any(|b| {
            a.client == b.client
                && a.index < b.index
                && a.attempts.iter().any(|x| {
                    b.attempts
                        .iter()
                        .any(|y| x.at < y.answered && y.at < x.answered)
                })
        })
    });
    if overlapping {
        reached.insert(BRANCHES[14]);
    }
    reached
}

/// A past-state read's branches: inside the history (200) or outside it
/// (404; another owner's 404 says nothing about the history).
fn past_state_branches(
    record: &OpRecord,
    answers: &[(u16, Option<ErrorCode>)],
    reached: &mut BTreeSet<&'static str>,
) {
    let Action::GetStateAt { account, .. } = record.action else {
        return;
    };
    if answers.iter().any(|(status, _)| *status == 200) {
        reached.insert(BRANCHES[17]);
    }
    let stranger = matches!(record.caller, Who::Owner(owner) if owner != account);
    if !stranger && answers.iter().any(|(status, _)| *status == 404) {
        reached.insert(BRANCHES[18]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use accounts::domain::Timestamp;
    use axum::http::{HeaderMap, StatusCode};
    use uuid::Uuid;

    use crate::client::FeedAttempt;

    fn id(n: u128) -> Uuid {
        Uuid::from_u128(n)
    }

    /// a0 and a1 opened, then a transfer of 5 from a0 to a1: positions 1–4.
    fn log() -> Log {
        let (a0, a1) = (AccountId::from_uuid(id(1)), AccountId::from_uuid(id(2)));
        let transfer = TransactionId::from_uuid(id(9));
        let event = |position, account_id, sequence_number, transaction_id, event| FeedEvent {
            position,
            event: RecordedEvent {
                account_id,
                sequence_number,
                transaction_id,
                event,
                recorded_at: Timestamp::from_unix_millis(0),
            },
        };
        let opened = |n| Event::AccountOpened {
            owner_id: OwnerId::from_uuid(id(n)),
        };
        Log {
            accounts: Vec::new(),
            feed: vec![
                event(1, a0, 1, TransactionId::from_uuid(id(7)), opened(3)),
                event(2, a1, 1, TransactionId::from_uuid(id(8)), opened(4)),
                event(
                    3,
                    a0,
                    2,
                    transfer,
                    Event::MoneyWithdrawn {
                        amount_withdrawn: 5,
                        balance: 0,
                        transfer_to: Some(a1),
                    },
                ),
                event(
                    4,
                    a1,
                    2,
                    transfer,
                    Event::MoneyDeposited {
                        amount_deposited: 5,
                        balance: 5,
                        transfer_from: Some(a0),
                    },
                ),
            ],
        }
    }

    /// A reader that was given these pages (as the final log's events, or
    /// as the bodies given), asking after its last position each time.
    fn reader(pages: &[Vec<FeedEventBody>], caught_up: bool) -> ReaderRecord {
        let mut after = 0;
        let attempts = pages
            .iter()
            .map(|page| {
                let attempt = FeedAttempt {
                    at: Duration::ZERO,
                    answered: Duration::ZERO,
                    instance: 0,
                    after,
                    reply: Ok(Answer {
                        status: StatusCode::OK,
                        headers: HeaderMap::new(),
                        body: serde_json::to_string(page).expect("serializes"),
                    }),
                };
                after = page.last().map_or(after, |e| e.position);
                attempt
            })
            .collect();
        ReaderRecord {
            reader: 0,
            attempts,
            caught_up,
            as_owner: None,
            past_state_as_owner: None,
        }
    }

    fn judge(pages: &[&[usize]], caught_up: bool) -> Vec<String> {
        let log = log();
        let bodies: Vec<FeedEventBody> = log.feed.iter().map(FeedEventBody::from).collect();
        let pages: Vec<Vec<FeedEventBody>> = pages
            .iter()
            .map(|page| page.iter().map(|&i| bodies[i].clone()).collect())
            .collect();
        let mut violations = Vec::new();
        check_feed(&log, &reader(&pages, caught_up), &mut violations);
        violations
    }

    #[test]
    fn a_reader_that_saw_the_whole_log_once_passes() {
        assert_eq!(judge(&[&[0, 1], &[2, 3], &[]], true), Vec::<String>::new());
        // Not caught up: a prefix of the log is all it owes.
        assert_eq!(judge(&[&[0], &[1, 2]], false), Vec::<String>::new());
    }

    #[test]
    fn skips_duplicates_and_order_are_flagged() {
        let skipped = judge(&[&[0, 1], &[3], &[]], true);
        assert!(
            skipped.iter().any(|v| v.contains("skipped 1")),
            "{skipped:?}"
        );
        // A skip below the last position given, even before catching up.
        let gap = judge(&[&[0, 2]], false);
        assert!(gap.iter().any(|v| v.contains("skipped 1")), "{gap:?}");
        let missing_tail = judge(&[&[0, 1], &[2]], true);
        assert!(
            missing_tail.iter().any(|v| v.contains("skipped 1")),
            "{missing_tail:?}"
        );
        let duplicate = judge(&[&[0, 1], &[1, 2]], false);
        assert!(
            duplicate.iter().any(|v| v.contains("strictly increase")),
            "{duplicate:?}"
        );
    }

    #[test]
    fn an_uncommitted_or_altered_event_is_flagged() {
        let log = log();
        let mut phantom = FeedEventBody::from(&log.feed[3]);
        phantom.position = 5;
        let mut altered = FeedEventBody::from(&log.feed[1]);
        altered.event.sequence_number = 7;
        let first = FeedEventBody::from(&log.feed[0]);
        for (page, expected) in [
            (vec![first.clone(), phantom], "not in the final log"),
            (vec![first, altered], "not the committed event"),
        ] {
            let mut violations = Vec::new();
            check_feed(&log, &reader(&[page], false), &mut violations);
            assert!(
                violations.iter().any(|v| v.contains(expected)),
                "{violations:?}"
            );
        }
    }

    #[test]
    fn a_refused_page_is_flagged() {
        let mut record = reader(&[Vec::new()], false);
        if let Ok(answer) = &mut record.attempts[0].reply {
            answer.status = StatusCode::FORBIDDEN;
        }
        let mut violations = Vec::new();
        check_feed(&log(), &record, &mut violations);
        assert!(
            violations.iter().any(|v| v.contains("answered 403")),
            "{violations:?}"
        );
    }
}
