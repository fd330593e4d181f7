//! Properties of the pure core over generated command sequences, from fixed
//! seeds: every command — refused or not — gets exactly the answer an
//! independent model of the rules (written here from docs/API.md, with
//! balances in i128) expects: the same events with the same balances, or
//! the same refusal. The fold of the events (`evolve`, `replay`) must give
//! the model's state, balances never go negative, and money only enters
//! or leaves through deposits and withdrawals.

use std::collections::BTreeMap;

use accounts::domain::{
    Account, AccountId, Amount, Command, Effects, Event, OwnerId, Refusal, decide, evolve, replay,
};
use proptest::prelude::*;
use testkit::properties::runner;
use uuid::Uuid;

const ACCOUNTS: u128 = 3;

fn account(n: u128) -> AccountId {
    AccountId::from_uuid(Uuid::from_u128(n + 1))
}

/// Amounts cluster where the rules bite: zero, small values, and values near
/// i64::MAX that overflow a balance.
fn amount() -> impl Strategy<Value = Amount> {
    prop_oneof![Just(0i64), 1i64..100, (i64::MAX - 100)..=i64::MAX,]
        .prop_map(|v| Amount::new(v).unwrap())
}

fn step() -> impl Strategy<Value = (u128, Command)> {
    let owner = (0u128..2).prop_map(|n| OwnerId::from_uuid(Uuid::from_u128(100 + n)));
    (
        0..ACCOUNTS,
        prop_oneof![
            owner.prop_map(|owner_id| Command::Open { owner_id }),
            amount().prop_map(|amount| Command::Deposit { amount }),
            amount().prop_map(|amount| Command::Withdraw { amount }),
            (0..ACCOUNTS, amount()).prop_map(|(t, amount)| Command::Transfer {
                target: account(t),
                amount
            }),
            Just(Command::Close),
        ],
    )
}

/// One account as the model sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Modelled {
    Free,
    Open { owner: OwnerId, balance: i128 },
    Closed { owner: OwnerId },
}

/// What the model expects of a command: the events on the source and the
/// target, or a refusal.
type Expected = Result<(Option<Event>, Option<Event>), Refusal>;

fn deposited(amount: i128, balance: i128, from: Option<AccountId>) -> Event {
    Event::MoneyDeposited {
        amount_deposited: amount as i64,
        balance: balance as i64,
        transfer_from: from,
    }
}

fn withdrawn(amount: i128, balance: i128, to: Option<AccountId>) -> Event {
    Event::MoneyWithdrawn {
        amount_withdrawn: amount as i64,
        balance: balance as i64,
        transfer_to: to,
    }
}

/// The rules of docs/API.md, in its order of checks, for open accounts'
/// balances held in i128 so that "would overflow i64" is a comparison.
fn expect(source_id: AccountId, source: Modelled, command: &Command, target: Modelled) -> Expected {
    const MAX: i128 = i64::MAX as i128;
    let open_balance = |account: Modelled, missing: Refusal, closed: Refusal| match account {
        Modelled::Free => Err(missing),
        Modelled::Closed { .. } => Err(closed),
        Modelled::Open { balance, .. } => Ok(balance),
    };
    let on_source = |event| Ok((Some(event), None));
    let nothing = Ok((None, None));
    match *command {
        Command::Open { owner_id } => match source {
            Modelled::Free => on_source(Event::AccountOpened { owner_id }),
            Modelled::Open { owner, .. } if owner == owner_id => nothing,
            _ => Err(Refusal::AlreadyExists),
        },
        Command::Deposit { amount } => {
            let balance = open_balance(source, Refusal::AccountNotFound, Refusal::AccountClosed)?;
            let amount = i128::from(amount.value());
            match amount {
                0 => nothing,
                _ if balance + amount > MAX => Err(Refusal::BalanceOverflow),
                _ => on_source(deposited(amount, balance + amount, None)),
            }
        }
        Command::Withdraw { amount } => {
            let balance = open_balance(source, Refusal::AccountNotFound, Refusal::AccountClosed)?;
            let amount = i128::from(amount.value());
            match amount {
                0 => nothing,
                _ if amount > balance => Err(insufficient(balance, amount)),
                _ => on_source(withdrawn(amount, balance - amount, None)),
            }
        }
        Command::Transfer {
            target: target_id,
            amount,
        } => {
            let from = open_balance(source, Refusal::AccountNotFound, Refusal::AccountClosed)?;
            let target = if target_id == source_id {
                source
            } else {
                target
            };
            let to = open_balance(target, Refusal::TargetNotFound, Refusal::TargetClosed)?;
            let amount = i128::from(amount.value());
            match amount {
                _ if target_id == source_id => Err(Refusal::TransferToSelf),
                0 => nothing,
                _ if amount > from => Err(insufficient(from, amount)),
                _ if to + amount > MAX => Err(Refusal::TargetBalanceOverflow),
                _ => Ok((
                    Some(withdrawn(amount, from - amount, Some(target_id))),
                    Some(deposited(amount, to + amount, Some(source_id))),
                )),
            }
        }
        Command::Close => match source {
            Modelled::Free => Err(Refusal::AccountNotFound),
            Modelled::Closed { .. } => nothing,
            Modelled::Open { balance: 0, .. } => on_source(Event::AccountClosed),
            Modelled::Open { balance, .. } => Err(Refusal::CloseWithBalance {
                balance: balance as i64,
            }),
        },
    }
}

fn insufficient(balance: i128, amount: i128) -> Refusal {
    Refusal::InsufficientBalance {
        balance: balance as i64,
        amount: amount as i64,
    }
}

/// The model's fold of one event, written apart from `evolve`.
fn model_apply(state: Modelled, event: &Event) -> Modelled {
    match (state, event) {
        (Modelled::Free, Event::AccountOpened { owner_id }) => Modelled::Open {
            owner: *owner_id,
            balance: 0,
        },
        (
            Modelled::Open { owner, balance },
            Event::MoneyDeposited {
                amount_deposited, ..
            },
        ) => Modelled::Open {
            owner,
            balance: balance + i128::from(*amount_deposited),
        },
        (
            Modelled::Open { owner, balance },
            Event::MoneyWithdrawn {
                amount_withdrawn, ..
            },
        ) => Modelled::Open {
            owner,
            balance: balance - i128::from(*amount_withdrawn),
        },
        (Modelled::Open { owner, .. }, Event::AccountClosed) => Modelled::Closed { owner },
        (state, event) => panic!("the model has no {event:?} after {state:?}"),
    }
}

/// The model's view of the service's state type, to compare the two.
fn modelled(state: &Account) -> Modelled {
    match *state {
        Account::Unopened => Modelled::Free,
        Account::Open { owner_id, balance } => Modelled::Open {
            owner: owner_id,
            balance: i128::from(balance),
        },
        Account::Closed { owner_id } => Modelled::Closed { owner: owner_id },
    }
}

/// What the run went through, to show every rule was reached.
#[derive(Default, Debug)]
struct Tally(BTreeMap<String, u32>);

impl Tally {
    fn add(&mut self, outcome: &Expected) {
        let name = match outcome {
            Ok((None, None)) => "nothing to do".to_owned(),
            Ok((Some(event), None)) => event.type_name().to_owned(),
            Ok((_, Some(_))) => "transfer".to_owned(),
            Err(refusal) => {
                let variant = format!("{refusal:?}");
                let name = variant.split([' ', '{']).next().unwrap_or_default();
                format!("refused: {name}")
            }
        };
        *self.0.entry(name).or_default() += 1;
    }
}

#[derive(Default)]
struct World {
    states: BTreeMap<AccountId, Account>,
    models: BTreeMap<AccountId, Modelled>,
    streams: BTreeMap<AccountId, Vec<Event>>,
    /// Money that entered or left through deposits and withdrawals (not
    /// transfers), as the model counts it.
    external: i128,
}

impl World {
    fn state(&self, id: AccountId) -> Account {
        self.states.get(&id).cloned().unwrap_or(Account::Unopened)
    }

    fn model(&self, id: AccountId) -> Modelled {
        self.models.get(&id).copied().unwrap_or(Modelled::Free)
    }

    fn apply(&mut self, id: AccountId, event: Event) {
        self.states.insert(id, evolve(self.state(id), &event));
        self.models.insert(id, model_apply(self.model(id), &event));
        self.streams.entry(id).or_default().push(event);
    }

    /// Runs one command through `decide`, which must answer as the model
    /// expects; applies its events. Returns the expectation.
    fn run(&mut self, source: AccountId, command: &Command) -> Result<Expected, TestCaseError> {
        let target = command.target().unwrap_or(source);
        let expected = expect(source, self.model(source), command, self.model(target));
        let target_state = command.target().map(|t| self.state(t));
        let decided = decide(source, &self.state(source), command, target_state.as_ref())
            .map(|Effects { source, target }| (source, target));
        prop_assert_eq!(
            &decided,
            &expected,
            "{:?} on {:?}",
            command,
            self.model(source)
        );
        if let Ok((on_source, on_target)) = decided {
            if let Some(event) = on_source {
                self.external += match (command, &event) {
                    (Command::Deposit { .. } | Command::Withdraw { .. }, event) => {
                        event.money_moved()
                    }
                    _ => 0,
                };
                self.apply(source, event);
            }
            if let Some(event) = on_target {
                self.apply(target, event);
            }
        }
        Ok(expected)
    }

    /// After every step: the fold of the events is the model's state, the
    /// stream replayed gives it too, and no balance is negative.
    fn check(&self) -> Result<(), TestCaseError> {
        for (id, stream) in &self.streams {
            let model = self.model(*id);
            prop_assert_eq!(modelled(&self.state(*id)), model, "evolve vs the model");
            let replayed = replay(Account::Unopened, stream);
            prop_assert_eq!(modelled(&replayed), model, "replay vs the model");
            if let Modelled::Open { balance, .. } = model {
                prop_assert!(balance >= 0, "negative balance {}", balance);
            }
        }
        let total: i128 = self
            .models
            .values()
            .map(|m| match m {
                Modelled::Open { balance, .. } => *balance,
                _ => 0,
            })
            .sum();
        prop_assert_eq!(total, self.external, "balances = deposits - withdrawals");
        Ok(())
    }
}

#[test]
fn every_command_gets_the_models_answer_and_money_is_conserved() {
    let tally = std::cell::RefCell::new(Tally::default());
    runner(512, 9_001)
        .run(&prop::collection::vec(step(), 1..60), |steps| {
            let mut world = World::default();
            for (n, command) in &steps {
                let expected = world.run(account(*n), command)?;
                tally.borrow_mut().add(&expected);
                world.check()?;
            }
            Ok(())
        })
        .unwrap();
    let tally = tally.into_inner();
    println!("outcomes: {:?}", tally.0);
    // The generated histories reached every event and every refusal.
    for outcome in [
        "nothing to do",
        "AccountOpened",
        "MoneyDeposited",
        "MoneyWithdrawn",
        "AccountClosed",
        "transfer",
        "refused: AccountNotFound",
        "refused: TargetNotFound",
        "refused: AlreadyExists",
        "refused: AccountClosed",
        "refused: TargetClosed",
        "refused: InsufficientBalance",
        "refused: CloseWithBalance",
        "refused: TransferToSelf",
        "refused: BalanceOverflow",
        "refused: TargetBalanceOverflow",
    ] {
        assert!(
            tally.0.get(outcome).is_some_and(|n| *n > 0),
            "never reached: {outcome}"
        );
    }
}

#[test]
fn a_transfer_conserves_the_two_accounts_total_or_is_refused_for_its_reason() {
    let balances = (0i64..=i64::MAX, 0i64..=i64::MAX, 0i64..=i64::MAX);
    runner(2_048, 9_002)
        .run(&balances, |(source_balance, target_balance, value)| {
            let owner_id = OwnerId::from_uuid(Uuid::from_u128(7));
            let source = Account::Open {
                owner_id,
                balance: source_balance,
            };
            let target = Account::Open {
                owner_id,
                balance: target_balance,
            };
            let command = Command::Transfer {
                target: account(1),
                amount: Amount::new(value).unwrap(),
            };
            let decided = decide(account(0), &source, &command, Some(&target));
            let (from, to, amount) = (
                i128::from(source_balance),
                i128::from(target_balance),
                i128::from(value),
            );
            match decided {
                Ok(effects) if amount == 0 => prop_assert!(effects.is_empty()),
                Ok(effects) => {
                    let source_after = effects
                        .source
                        .map_or(source.clone(), |e| evolve(source.clone(), &e));
                    let target_after = effects
                        .target
                        .map_or(target.clone(), |e| evolve(target.clone(), &e));
                    prop_assert_eq!(i128::from(source_after.balance()), from - amount);
                    prop_assert_eq!(i128::from(target_after.balance()), to + amount);
                }
                Err(Refusal::InsufficientBalance { .. }) => prop_assert!(amount > from),
                Err(Refusal::TargetBalanceOverflow) => {
                    prop_assert!(amount <= from && to + amount > i128::from(i64::MAX))
                }
                Err(other) => prop_assert!(false, "no other refusal applies: {:?}", other),
            }
            Ok(())
        })
        .unwrap();
}
