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

/// What a client asks of one account (the transfer's source). Its kind's
/// name ([`Command::kind`]) is the variant's, in snake case.
#[derive(Clone, Debug, PartialEq, Eq, strum::IntoStaticStr)]
#[strum(serialize_all = "snake_case")]
pub enum Command {
    Open { owner_id: OwnerId },
    Deposit { amount: Amount },
    Withdraw { amount: Amount },
    Transfer { target: AccountId, amount: Amount },
    Close,
}

impl Command {
    /// `"open"`, `"deposit"`, `"withdraw"`, `"transfer"` or `"close"`.
    pub fn kind(&self) -> &'static str {
        self.into()
    }

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

    /// A transfer's target: the other account a command touches, if any.
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
/// that a reader of the stream never has to add anything up. Its type's name
/// ([`Event::type_name`]) is the variant's, as serde's `type` tag is.
#[derive(
    Clone, Debug, PartialEq, Eq, Serialize, Deserialize, strum::IntoStaticStr, strum::VariantNames,
)]
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
        /// Present when the deposit is the receiving half of a transfer.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        transfer_from: Option<AccountId>,
    },
    #[serde(rename_all = "camelCase")]
    MoneyWithdrawn {
        amount_withdrawn: i64,
        balance: i64,
        /// Present when the withdrawal is the sending half of a transfer.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        transfer_to: Option<AccountId>,
    },
    AccountClosed,
}

impl Event {
    /// The event's type, as its JSON `type` says (and the SQL stores'
    /// `event_type` column).
    pub fn type_name(&self) -> &'static str {
        self.into()
    }

    /// The fingerprint of the command that recorded this event on
    /// `account` ([`Command::fingerprint`]): a store can keep the event and
    /// derive the idempotency record's text from it. `None` for an amount no
    /// command could carry (negative).
    pub fn fingerprint(&self, account: AccountId) -> Option<Fingerprint> {
        let (source, command) = match *self {
            Event::AccountOpened { owner_id } => (account, Command::Open { owner_id }),
            Event::MoneyDeposited {
                amount_deposited,
                transfer_from,
                ..
            } => {
                let amount = Amount::new(amount_deposited)?;
                match transfer_from {
                    None => (account, Command::Deposit { amount }),
                    Some(source) => (
                        source,
                        Command::Transfer {
                            target: account,
                            amount,
                        },
                    ),
                }
            }
            Event::MoneyWithdrawn {
                amount_withdrawn,
                transfer_to,
                ..
            } => {
                let amount = Amount::new(amount_withdrawn)?;
                match transfer_to {
                    None => (account, Command::Withdraw { amount }),
                    Some(target) => (account, Command::Transfer { target, amount }),
                }
            }
            Event::AccountClosed => (account, Command::Close),
        };
        Some(command.fingerprint(source))
    }

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

/// Why a command was refused. Each variant is one rule of docs/API.md.
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
    /// A transfer's target would overflow. Its own refusal, so the answer
    /// names the target (not the source) and says nothing of its balance.
    #[error("the target's balance would overflow")]
    TargetBalanceOverflow,
    /// An owner's token opening an account for another owner (403).
    #[error("a token may open accounts only for its own subject")]
    OpenForAnotherOwner,
    /// An owner's token asking for what only admins may see (403).
    #[error("only an admin token may do this")]
    AdminOnly,
}

/// The events one command produces: at most one on each account it touches.
/// Empty effects mean "nothing to do" (a zero amount, a repeated open by the
/// same owner, a close of a closed account): nothing is appended and no
/// transactionId is recorded.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Effects {
    /// The event on the account the command names.
    pub source: Option<Event>,
    /// The event on a transfer's target account.
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

/// Decides what `command` does to the `source` account (and, for a
/// transfer, to its target, whose state is `target_state`). Pure and total:
/// every outcome is events or a refusal.
pub fn decide(
    source_id: AccountId,
    source: &Account,
    command: &Command,
    target_state: Option<&Account>,
) -> Result<Effects, Refusal> {
    match command {
        Command::Open { owner_id } => open(source, *owner_id),
        Command::Deposit { amount } => deposit(source, *amount),
        Command::Withdraw { amount } => withdraw(source, *amount),
        Command::Transfer { target, amount } => {
            // A transfer to the same account has one state for both sides,
            // whatever the caller passed as the target's state.
            let target_state = if *target == source_id {
                source
            } else {
                target_state.unwrap_or(&Account::Unopened)
            };
            transfer(source_id, source, *target, target_state, *amount)
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
    target: AccountId,
    target_state: &Account,
    amount: Amount,
) -> Result<Effects, Refusal> {
    let source_balance = open_balance(source)?;
    let target_balance = match target_state {
        Account::Unopened => return Err(Refusal::TargetNotFound),
        Account::Closed { .. } => return Err(Refusal::TargetClosed),
        Account::Open { balance, .. } => *balance,
    };
    if source_id == target {
        return Err(Refusal::TransferToSelf);
    }
    if amount.is_zero() {
        return Ok(Effects::none());
    }
    let source_balance = debit(source_balance, amount)?;
    let target_balance = target_balance
        .checked_add(amount.value())
        .ok_or(Refusal::TargetBalanceOverflow)?;
    Ok(Effects {
        source: Some(Event::MoneyWithdrawn {
            amount_withdrawn: amount.value(),
            balance: source_balance,
            transfer_to: Some(target),
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

#[cfg(test)]
mod tests {
    use uuid::Uuid;

    use super::*;

    fn account(n: u128) -> AccountId {
        AccountId::from_uuid(Uuid::from_u128(n))
    }

    fn owner(n: u128) -> OwnerId {
        OwnerId::from_uuid(Uuid::from_u128(n))
    }

    fn amount(value: i64) -> Amount {
        Amount::new(value).unwrap()
    }

    fn open_with(balance: i64) -> Account {
        Account::Open {
            owner_id: owner(1),
            balance,
        }
    }

    const A: u128 = 0xA;
    const B: u128 = 0xB;

    fn run(state: &Account, command: Command) -> Result<Effects, Refusal> {
        decide(account(A), state, &command, None)
    }

    fn transfer(source: &Account, target: &Account, value: i64) -> Result<Effects, Refusal> {
        let command = Command::Transfer {
            target: account(B),
            amount: amount(value),
        };
        decide(account(A), source, &command, Some(target))
    }

    #[test]
    fn open_creates_an_account_once() {
        let effects = run(&Account::Unopened, Command::Open { owner_id: owner(1) }).unwrap();
        assert_eq!(
            effects.source,
            Some(Event::AccountOpened { owner_id: owner(1) })
        );
        assert_eq!(effects.target, None);
    }

    #[test]
    fn open_again_by_the_same_owner_changes_nothing() {
        let effects = run(&open_with(5), Command::Open { owner_id: owner(1) }).unwrap();
        assert!(effects.is_empty());
    }

    #[test]
    fn open_of_an_existing_id_by_another_owner_or_when_closed_is_refused() {
        let other = Command::Open { owner_id: owner(2) };
        assert_eq!(run(&open_with(0), other), Err(Refusal::AlreadyExists));
        let same = Command::Open { owner_id: owner(1) };
        assert_eq!(
            run(&Account::Closed { owner_id: owner(1) }, same),
            Err(Refusal::AlreadyExists)
        );
    }

    #[test]
    fn deposit_adds_to_the_balance() {
        let effects = run(&open_with(5), Command::Deposit { amount: amount(7) }).unwrap();
        let expected = Event::MoneyDeposited {
            amount_deposited: 7,
            balance: 12,
            transfer_from: None,
        };
        assert_eq!(effects.source, Some(expected));
    }

    #[test]
    fn operations_on_an_unknown_account_are_refused() {
        for command in [
            Command::Deposit { amount: amount(1) },
            Command::Withdraw { amount: amount(1) },
            Command::Deposit {
                amount: Amount::ZERO,
            },
            Command::Close,
        ] {
            assert_eq!(
                run(&Account::Unopened, command),
                Err(Refusal::AccountNotFound)
            );
        }
        assert_eq!(
            transfer(&Account::Unopened, &open_with(0), 1),
            Err(Refusal::AccountNotFound)
        );
    }

    #[test]
    fn operations_on_a_closed_account_are_refused_even_for_zero() {
        let closed = Account::Closed { owner_id: owner(1) };
        for value in [0, 1] {
            let deposit = Command::Deposit {
                amount: amount(value),
            };
            assert_eq!(run(&closed, deposit), Err(Refusal::AccountClosed));
            let withdraw = Command::Withdraw {
                amount: amount(value),
            };
            assert_eq!(run(&closed, withdraw), Err(Refusal::AccountClosed));
            assert_eq!(
                transfer(&closed, &open_with(0), value),
                Err(Refusal::AccountClosed)
            );
            assert_eq!(
                transfer(&open_with(5), &closed, value),
                Err(Refusal::TargetClosed)
            );
        }
    }

    #[test]
    fn a_zero_amount_on_an_open_account_changes_nothing() {
        assert!(
            run(
                &open_with(0),
                Command::Deposit {
                    amount: Amount::ZERO
                }
            )
            .unwrap()
            .is_empty()
        );
        assert!(
            run(
                &open_with(0),
                Command::Withdraw {
                    amount: Amount::ZERO
                }
            )
            .unwrap()
            .is_empty()
        );
        assert!(
            transfer(&open_with(0), &open_with(0), 0)
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn withdrawal_beyond_the_balance_is_refused() {
        let refused = run(&open_with(5), Command::Withdraw { amount: amount(6) });
        assert_eq!(
            refused,
            Err(Refusal::InsufficientBalance {
                balance: 5,
                amount: 6
            })
        );
        let effects = run(&open_with(5), Command::Withdraw { amount: amount(5) }).unwrap();
        let expected = Event::MoneyWithdrawn {
            amount_withdrawn: 5,
            balance: 0,
            transfer_to: None,
        };
        assert_eq!(effects.source, Some(expected));
    }

    #[test]
    fn deposits_that_would_overflow_are_refused_not_wrapped() {
        let refused = run(&open_with(i64::MAX), Command::Deposit { amount: amount(1) });
        assert_eq!(refused, Err(Refusal::BalanceOverflow));
        // The target overflows, not the source: the refusal says which.
        let refused = transfer(&open_with(1), &open_with(i64::MAX), 1);
        assert_eq!(refused, Err(Refusal::TargetBalanceOverflow));
        let fits = run(
            &open_with(i64::MAX - 1),
            Command::Deposit { amount: amount(1) },
        );
        assert!(fits.is_ok());
    }

    #[test]
    fn a_transfer_is_one_decision_over_two_accounts() {
        let effects = transfer(&open_with(10), &open_with(3), 4).unwrap();
        assert_eq!(
            effects.source,
            Some(Event::MoneyWithdrawn {
                amount_withdrawn: 4,
                balance: 6,
                transfer_to: Some(account(B))
            })
        );
        assert_eq!(
            effects.target,
            Some(Event::MoneyDeposited {
                amount_deposited: 4,
                balance: 7,
                transfer_from: Some(account(A))
            })
        );
    }

    #[test]
    fn transfers_need_funds_and_an_open_target() {
        let refused = transfer(&open_with(3), &open_with(0), 4);
        assert_eq!(
            refused,
            Err(Refusal::InsufficientBalance {
                balance: 3,
                amount: 4
            })
        );
        assert_eq!(
            transfer(&open_with(3), &Account::Unopened, 1),
            Err(Refusal::TargetNotFound)
        );
    }

    #[test]
    fn a_transfer_to_the_same_account_is_refused() {
        let command = Command::Transfer {
            target: account(A),
            amount: amount(1),
        };
        let refused = decide(account(A), &open_with(5), &command, Some(&open_with(5)));
        assert_eq!(refused, Err(Refusal::TransferToSelf));
    }

    #[test]
    fn close_needs_a_zero_balance_and_is_idempotent() {
        assert_eq!(
            run(&open_with(0), Command::Close).unwrap().source,
            Some(Event::AccountClosed)
        );
        assert_eq!(
            run(&open_with(3), Command::Close),
            Err(Refusal::CloseWithBalance { balance: 3 })
        );
        assert!(
            run(&Account::Closed { owner_id: owner(1) }, Command::Close)
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn fingerprints_ignore_the_form_and_tell_operations_apart() {
        let five = Command::Deposit {
            amount: Amount::parse("05").unwrap(),
        };
        assert_eq!(
            five.fingerprint(account(A)),
            Command::Deposit { amount: amount(5) }.fingerprint(account(A))
        );
        let withdraw = Command::Withdraw { amount: amount(5) };
        assert_ne!(
            five.fingerprint(account(A)),
            withdraw.fingerprint(account(A))
        );
        let to_b = Command::Transfer {
            target: account(B),
            amount: amount(5),
        };
        let to_a = Command::Transfer {
            target: account(A),
            amount: amount(5),
        };
        assert_ne!(to_b.fingerprint(account(A)), to_a.fingerprint(account(B)));
    }

    #[test]
    fn every_event_derives_the_fingerprint_of_the_command_that_made_it() {
        let open = Account::Open {
            owner_id: owner(1),
            balance: 100,
        };
        let commands = [
            (Account::Unopened, Command::Open { owner_id: owner(1) }),
            (open.clone(), Command::Deposit { amount: amount(7) }),
            (open.clone(), Command::Withdraw { amount: amount(7) }),
            (
                open.clone(),
                Command::Transfer {
                    target: account(B),
                    amount: amount(7),
                },
            ),
            (
                Account::Open {
                    owner_id: owner(1),
                    balance: 0,
                },
                Command::Close,
            ),
        ];
        for (state, command) in commands {
            let expected = command.fingerprint(account(A));
            let effects = decide(account(A), &state, &command, Some(&open)).unwrap();
            let on_source = effects.source.map(|event| (account(A), event));
            let on_target = effects.target.map(|event| (account(B), event));
            for (id, event) in on_source.into_iter().chain(on_target) {
                assert_eq!(event.fingerprint(id), Some(expected.clone()), "{event:?}");
            }
        }
        let negative = Event::MoneyDeposited {
            amount_deposited: -1,
            balance: 0,
            transfer_from: None,
        };
        assert_eq!(negative.fingerprint(account(A)), None);
    }

    #[test]
    fn the_type_name_is_the_serialized_type() {
        for event in [
            Event::AccountOpened { owner_id: owner(1) },
            Event::MoneyDeposited {
                amount_deposited: 1,
                balance: 1,
                transfer_from: None,
            },
            Event::MoneyWithdrawn {
                amount_withdrawn: 1,
                balance: 0,
                transfer_to: Some(account(B)),
            },
            Event::AccountClosed,
        ] {
            let json = serde_json::to_value(&event).unwrap();
            assert_eq!(json["type"], event.type_name());
        }
    }

    #[test]
    fn a_command_kind_is_its_variant_in_snake_case() {
        let kinds: Vec<&str> = [
            Command::Open { owner_id: owner(1) },
            Command::Deposit { amount: amount(1) },
            Command::Withdraw { amount: amount(1) },
            Command::Transfer {
                target: account(B),
                amount: amount(1),
            },
            Command::Close,
        ]
        .iter()
        .map(Command::kind)
        .collect();
        assert_eq!(kinds, ["open", "deposit", "withdraw", "transfer", "close"]);
    }

    #[test]
    fn evolve_follows_the_events() {
        let events = [
            Event::AccountOpened { owner_id: owner(1) },
            Event::MoneyDeposited {
                amount_deposited: 5,
                balance: 5,
                transfer_from: None,
            },
            Event::MoneyWithdrawn {
                amount_withdrawn: 5,
                balance: 0,
                transfer_to: None,
            },
            Event::AccountClosed,
        ];
        let states: Vec<Account> = events
            .iter()
            .scan(Account::Unopened, |state, event| {
                *state = evolve(state.clone(), event);
                Some(state.clone())
            })
            .collect();
        assert_eq!(states[1], open_with(5));
        assert_eq!(states[3], Account::Closed { owner_id: owner(1) });
    }
}
