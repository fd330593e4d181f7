use serde::{Deserialize, Serialize};

use super::{AccountId, Amount, OwnerId};

/// The state of one account id, folded from its events.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "camelCase")]
pub enum Account {
    /// No event yet: the id is free.
    Unopened,
    #[serde(rename_all = "camelCase")]
    Open { owner_id: OwnerId, balance: i64 },
    /// Closing needs a zero balance, so a closed account holds no money.
    #[serde(rename_all = "camelCase")]
    Closed { owner_id: OwnerId },
}

impl Account {
    pub fn owner_id(&self) -> Option<OwnerId> {
        match self {
            Account::Unopened => None,
            Account::Open { owner_id, .. } | Account::Closed { owner_id } => Some(*owner_id),
        }
    }

    pub fn balance(&self) -> i64 {
        match self {
            Account::Open { balance, .. } => *balance,
            Account::Unopened | Account::Closed { .. } => 0,
        }
    }

    pub fn exists(&self) -> bool {
        !matches!(self, Account::Unopened)
    }
}

/// What a client asks of one account (the transfer's source).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    Open { owner_id: OwnerId },
    Deposit { amount: Amount },
    Withdraw { amount: Amount },
    Transfer { target: AccountId, amount: Amount },
    Close,
}

impl Command {
    /// The normalised operation that makes two requests "identical" for
    /// idempotency: kind, amount value and both parties, so URL style, id
    /// letter case and `05` vs `5` do not matter. A transfer's fingerprint is
    /// the same on both of its accounts.
    pub fn fingerprint(&self, account: AccountId) -> Fingerprint {
        Fingerprint(match self {
            Command::Open { owner_id } => format!("open owner={owner_id}"),
            Command::Deposit { amount } => format!("deposit amount={amount}"),
            Command::Withdraw { amount } => format!("withdraw amount={amount}"),
            Command::Transfer { target, amount } => {
                format!("transfer from={account} to={target} amount={amount}")
            }
            Command::Close => "close".to_owned(),
        })
    }

    /// The other account a command touches, if any.
    pub fn target(&self) -> Option<AccountId> {
        match self {
            Command::Transfer { target, .. } => Some(*target),
            _ => None,
        }
    }
}

/// A normalised operation, stored with each idempotency record.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Fingerprint(pub String);

/// What happened to an account. The balance after the event is part of it so
/// that a reader of the stream never has to add anything up.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum Event {
    #[serde(rename_all = "camelCase")]
    AccountOpened {
        owner_id: OwnerId,
    },
    #[serde(rename_all = "camelCase")]
    MoneyDeposited {
        amount_deposited: i64,
        balance: i64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        transfer_from: Option<AccountId>,
    },
    #[serde(rename_all = "camelCase")]
    MoneyWithdrawn {
        amount_withdrawn: i64,
        balance: i64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        transfer_to: Option<AccountId>,
    },
    AccountClosed,
}

impl Event {
    /// Money that entered (positive) or left (negative) the account.
    pub fn money_moved(&self) -> i128 {
        match self {
            Event::MoneyDeposited {
                amount_deposited, ..
            } => i128::from(*amount_deposited),
            Event::MoneyWithdrawn {
                amount_withdrawn, ..
            } => -i128::from(*amount_withdrawn),
            Event::AccountOpened { .. } | Event::AccountClosed => 0,
        }
    }
}

/// Why a command was refused. Each variant is one rule of ../shared/API.md.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("account not found")]
    AccountNotFound,
    #[error("target account not found")]
    TargetNotFound,
    #[error("account already exists")]
    AlreadyExists,
    #[error("account is closed")]
    AccountClosed,
    #[error("target account is closed")]
    TargetClosed,
    #[error("insufficient balance: the balance is {balance}, the amount {amount}")]
    InsufficientBalance { balance: i64, amount: i64 },
    #[error("account cannot be closed with a non-zero balance ({balance})")]
    CloseWithBalance { balance: i64 },
    #[error("cannot transfer to the same account")]
    TransferToSelf,
    #[error("the balance would overflow")]
    BalanceOverflow,
}

/// The events one command produces: at most one on each account it touches.
/// Empty effects mean "nothing to do" (a zero amount, a repeated open by the
/// same owner, a close of a closed account): nothing is appended and no
/// transactionId is recorded.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Effects {
    pub source: Option<Event>,
    pub target: Option<Event>,
}

impl Effects {
    fn none() -> Effects {
        Effects::default()
    }

    fn on_source(event: Event) -> Effects {
        Effects {
            source: Some(event),
            target: None,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.source.is_none() && self.target.is_none()
    }
}

/// Decides what `command` does to `source` (and, for a transfer, `target`,
/// the state of the command's target account). Pure and total: every outcome
/// is events or a refusal.
pub fn decide(
    source_id: AccountId,
    source: &Account,
    command: &Command,
    target: Option<&Account>,
) -> Result<Effects, Refusal> {
    match command {
        Command::Open { owner_id } => open(source, *owner_id),
        Command::Deposit { amount } => deposit(source, *amount),
        Command::Withdraw { amount } => withdraw(source, *amount),
        Command::Transfer {
            target: target_id,
            amount,
        } => {
            let target = target.unwrap_or(&Account::Unopened);
            transfer(source_id, source, *target_id, target, *amount)
        }
        Command::Close => close(source),
    }
}

fn open(account: &Account, owner: OwnerId) -> Result<Effects, Refusal> {
    match account {
        Account::Unopened => Ok(Effects::on_source(Event::AccountOpened { owner_id: owner })),
        // A lost 201 must be safe to retry.
        Account::Open { owner_id, .. } if *owner_id == owner => Ok(Effects::none()),
        Account::Open { .. } | Account::Closed { .. } => Err(Refusal::AlreadyExists),
    }
}

fn open_balance(account: &Account) -> Result<i64, Refusal> {
    match account {
        Account::Unopened => Err(Refusal::AccountNotFound),
        Account::Closed { .. } => Err(Refusal::AccountClosed),
        Account::Open { balance, .. } => Ok(*balance),
    }
}

fn deposit(account: &Account, amount: Amount) -> Result<Effects, Refusal> {
    let balance = open_balance(account)?;
    if amount.is_zero() {
        return Ok(Effects::none());
    }
    let balance = balance
        .checked_add(amount.value())
        .ok_or(Refusal::BalanceOverflow)?;
    Ok(Effects::on_source(Event::MoneyDeposited {
        amount_deposited: amount.value(),
        balance,
        transfer_from: None,
    }))
}

fn withdraw(account: &Account, amount: Amount) -> Result<Effects, Refusal> {
    let balance = open_balance(account)?;
    if amount.is_zero() {
        return Ok(Effects::none());
    }
    let balance = debit(balance, amount)?;
    Ok(Effects::on_source(Event::MoneyWithdrawn {
        amount_withdrawn: amount.value(),
        balance,
        transfer_to: None,
    }))
}

fn debit(balance: i64, amount: Amount) -> Result<i64, Refusal> {
    if balance < amount.value() {
        return Err(Refusal::InsufficientBalance {
            balance,
            amount: amount.value(),
        });
    }
    // Both are non-negative and balance >= amount, so this cannot underflow.
    Ok(balance - amount.value())
}

fn transfer(
    source_id: AccountId,
    source: &Account,
    target_id: AccountId,
    target: &Account,
    amount: Amount,
) -> Result<Effects, Refusal> {
    let source_balance = open_balance(source)?;
    let target_balance = match target {
        Account::Unopened => return Err(Refusal::TargetNotFound),
        Account::Closed { .. } => return Err(Refusal::TargetClosed),
        Account::Open { balance, .. } => *balance,
    };
    if source_id == target_id {
        return Err(Refusal::TransferToSelf);
    }
    if amount.is_zero() {
        return Ok(Effects::none());
    }
    let source_balance = debit(source_balance, amount)?;
    let target_balance = target_balance
        .checked_add(amount.value())
        .ok_or(Refusal::BalanceOverflow)?;
    Ok(Effects {
        source: Some(Event::MoneyWithdrawn {
            amount_withdrawn: amount.value(),
            balance: source_balance,
            transfer_to: Some(target_id),
        }),
        target: Some(Event::MoneyDeposited {
            amount_deposited: amount.value(),
            balance: target_balance,
            transfer_from: Some(source_id),
        }),
    })
}

fn close(account: &Account) -> Result<Effects, Refusal> {
    match account {
        Account::Unopened => Err(Refusal::AccountNotFound),
        Account::Closed { .. } => Ok(Effects::none()),
        Account::Open { balance: 0, .. } => Ok(Effects::on_source(Event::AccountClosed)),
        Account::Open { balance, .. } => Err(Refusal::CloseWithBalance { balance: *balance }),
    }
}

/// Applies one event. Total: an event that cannot follow the state (which
/// decide never produces) leaves the state as it is, and debug builds assert.
pub fn evolve(state: Account, event: &Event) -> Account {
    match (state, event) {
        (Account::Unopened, Event::AccountOpened { owner_id }) => Account::Open {
            owner_id: *owner_id,
            balance: 0,
        },
        (
            Account::Open {
                owner_id,
                balance: before,
            },
            Event::MoneyDeposited { balance, .. },
        )
        | (
            Account::Open {
                owner_id,
                balance: before,
            },
            Event::MoneyWithdrawn { balance, .. },
        ) => {
            debug_assert_eq!(
                i128::from(before) + event.money_moved(),
                i128::from(*balance),
                "an event's balance must follow from the one before"
            );
            debug_assert!(*balance >= 0, "a balance is never negative");
            Account::Open {
                owner_id,
                balance: *balance,
            }
        }
        (Account::Open { owner_id, .. }, Event::AccountClosed) => Account::Closed { owner_id },
        (state, event) => {
            debug_assert!(false, "{event:?} cannot follow {state:?}");
            state
        }
    }
}

/// Folds events over a starting state.
pub fn replay<'a>(state: Account, events: impl IntoIterator<Item = &'a Event>) -> Account {
    events.into_iter().fold(state, evolve)
}
