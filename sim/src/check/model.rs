//! The checker's reference model over the committed log: each account's
//! state after each of its events (folded by the checker's own transition
//! function, not the domain's), the operation each event records, and the
//! answers the contract's order of checks allows a request in a window.

use std::ops::RangeInclusive;

use accounts::domain::{Account, AccountId, Event, OwnerId, TRANSFER_AMOUNT_MIN, TransactionId};
use accounts::http::{AccountBody, ErrorCode};
use accounts::store::RecordedEvent;
use testkit::Answer;

use super::{History, Log};
use crate::client::{Attempt, OpRecord};
use crate::plan::{Action, Past, Who};

/// The checker's own model of an account, independent of the domain's
/// `evolve` (which trusts the `balance` fields and asserts in debug builds):
/// balances come from the amounts alone.
pub(super) fn model(state: &Account, event: &Event) -> Result<Account, String> {
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
pub(super) fn fold<'a>(
    mut state: Account,
    events: impl IntoIterator<Item = &'a RecordedEvent>,
) -> Result<Account, String> {
    for recorded in events {
        state = model(&state, &recorded.event)
            .map_err(|error| format!("#{}: {error}", recorded.sequence_number))?;
    }
    Ok(state)
}

/// The reference model over the committed log: every account's state after
/// each of its events, and which operation each event records.
pub(super) struct Model<'a> {
    pub(super) history: &'a History<'a>,
    /// Per account, `states[v]`: the state after its first `v` events (the
    /// fold stops at an illegal event, which `check_stream` reports).
    pub(super) states: Vec<Vec<Account>>,
    /// Per account, the operation each event belongs to (as a client names
    /// it), to compare with requests under the same transactionId.
    pub(super) actions: Vec<Vec<Action>>,
}

/// What the contract's order of checks answers in one model state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Expect {
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
pub(super) struct Expectations(pub(super) Vec<Expect>);

impl Expectations {
    pub(super) fn insert(&mut self, expect: Expect) {
        if !self.0.contains(&expect) {
            self.0.push(expect);
        }
    }

    pub(super) fn contains(&self, expect: &Expect) -> bool {
        self.0.contains(expect)
    }
}

/// One account as a request sees it at one moment: its state and the
/// operation recorded under the request's transactionId, if any.
#[derive(Clone, Copy)]
pub(super) struct Side<'a> {
    state: &'a Account,
    record: Option<&'a Action>,
}

impl<'a> Model<'a> {
    pub(super) fn new(history: &'a History<'a>) -> Model<'a> {
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

    pub(super) fn log(&self) -> &Log {
        self.history.log
    }

    /// The versions an account had at some moment of `attempt`'s window:
    /// from the one in force just before it was sent to the one in force
    /// when it was answered.
    pub(super) fn window(&self, account: usize, attempt: &Attempt) -> RangeInclusive<usize> {
        let landed = &self.log().accounts[account].landed;
        let skew = self.history.skew;
        let low = landed.partition_point(|t| *t + skew < attempt.at);
        let high = landed.partition_point(|t| *t <= attempt.answered + skew);
        low..=high.max(low)
    }

    /// The account at version `version`, as a request under `transaction` sees it.
    pub(super) fn side(
        &self,
        account: usize,
        version: usize,
        transaction: Option<TransactionId>,
    ) -> Side<'_> {
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

    pub(super) fn owner(&self, owner: usize) -> Option<OwnerId> {
        self.history.owners.get(owner).copied()
    }

    /// Whether `caller` may see `state` (someone else's account, or one
    /// nobody owns yet, is hidden from an owner's token).
    pub(super) fn may_see(&self, caller: Who, state: &Account) -> bool {
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
    pub(super) fn expect(
        &self,
        action: &Action,
        caller: Who,
        source: Side,
        target: Option<Side>,
    ) -> Expect {
        if let Action::Transfer { amount, .. } = *action
            && amount < TRANSFER_AMOUNT_MIN
        {
            return Expect::Refuse(ErrorCode::BadParameter);
        }
        if let Action::Open { owner, .. } = *action {
            return self.expect_open(owner, caller, source.state);
        }
        if !self.may_see(caller, source.state) || !source.state.exists() {
            return Expect::Refuse(ErrorCode::AccountNotFound);
        }
        if target.is_some_and(|t| !t.state.exists()) {
            return Expect::Refuse(ErrorCode::AccountNotFound);
        }
        if let Some(recorded) = source.record.or(target.and_then(|t| t.record)) {
            return if recorded == action {
                Expect::Replayed
            } else {
                Expect::Refuse(ErrorCode::TransactionReused)
            };
        }
        decide(action, source.state, target.map(|t| t.state))
    }

    /// An open by `owner`: only its own owner's token may ask, and it
    /// succeeds on an unopened account or one already open for that owner.
    fn expect_open(&self, owner: usize, caller: Who, state: &Account) -> Expect {
        if let Who::Owner(subject) = caller
            && subject != owner
        {
            return Expect::Refuse(ErrorCode::Forbidden);
        }
        match state {
            Account::Unopened => Expect::Apply,
            Account::Open { owner_id, .. } if Some(*owner_id) == self.owner(owner) => {
                Expect::Unchanged
            }
            _ => Expect::Refuse(ErrorCode::AccountExists),
        }
    }

    /// A transfer's target, when it is another account.
    pub(super) fn target_of(action: &Action) -> Option<usize> {
        match *action {
            Action::Transfer { from, to, .. } if from != to => Some(to),
            _ => None,
        }
    }

    /// Every answer the model allows a write inside `attempt`'s window.
    pub(super) fn expectations(&self, record: &OpRecord, attempt: &Attempt) -> Expectations {
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
    pub(super) fn read_version(
        &self,
        account: usize,
        point: Option<Past>,
        current: usize,
    ) -> usize {
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
    pub(super) fn explains_state(
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
    pub(super) fn own_events(&self, record: &OpRecord) -> Vec<(usize, usize)> {
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

/// Rule 5 of the order of checks, for a command on accounts that exist,
/// are visible and have nothing recorded under its transactionId.
fn decide(action: &Action, source: &Account, target: Option<&Account>) -> Expect {
    use ErrorCode::*;
    let refuse = Expect::Refuse;
    let balance = source.balance();
    let closed = matches!(source, Account::Closed { .. });
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
            let target = target.unwrap_or(source);
            if closed || matches!(target, Account::Closed { .. }) {
                refuse(AccountClosed)
            } else if from == to {
                refuse(TransferToSelf)
            } else if balance < amount {
                refuse(InsufficientBalance)
            } else if target.balance().checked_add(amount).is_none() {
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

pub(super) fn describe(allowed: &Expectations) -> String {
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
