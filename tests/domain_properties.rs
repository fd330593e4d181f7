//! Properties of the pure core over random command sequences: whatever the
//! commands, balances stay non-negative, replaying the produced events gives
//! the same state, each balance is its deposits minus its withdrawals, and
//! transfers move money without creating or destroying any.

use std::collections::BTreeMap;

use accounts::domain::{
    Account, AccountId, Amount, Command, Event, OwnerId, decide, evolve, replay,
};
use proptest::prelude::*;
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

#[derive(Default)]
struct World {
    states: BTreeMap<AccountId, Account>,
    streams: BTreeMap<AccountId, Vec<Event>>,
    /// Money that entered or left the system through deposits and withdrawals
    /// (not transfers), in i128 so the sum itself cannot overflow.
    external: i128,
}

impl World {
    fn state(&self, id: AccountId) -> Account {
        self.states.get(&id).cloned().unwrap_or(Account::Unopened)
    }

    fn apply(&mut self, id: AccountId, event: Event) {
        let next = evolve(self.state(id), &event);
        self.states.insert(id, next);
        self.streams.entry(id).or_default().push(event);
    }

    fn run(&mut self, source: AccountId, command: &Command) {
        let target = command.target().map(|t| self.state(t));
        let Ok(effects) = decide(source, &self.state(source), command, target.as_ref()) else {
            return;
        };
        match command {
            Command::Deposit { amount } if effects.source.is_some() => {
                self.external += i128::from(amount.value())
            }
            Command::Withdraw { amount } if effects.source.is_some() => {
                self.external -= i128::from(amount.value())
            }
            _ => {}
        }
        if let Some(event) = effects.source {
            self.apply(source, event);
        }
        if let (Some(event), Some(target)) = (effects.target, command.target()) {
            self.apply(target, event);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn money_is_never_created_or_destroyed(steps in prop::collection::vec(step(), 1..60)) {
        let mut world = World::default();
        for (n, command) in &steps {
            world.run(account(*n), command);
            for state in world.states.values() {
                prop_assert!(state.balance() >= 0, "negative balance in {state:?}");
            }
        }
        let total: i128 = world.states.values().map(|s| i128::from(s.balance())).sum();
        prop_assert_eq!(total, world.external, "balances must add up to deposits minus withdrawals");
        for (id, events) in &world.streams {
            let replayed = replay(Account::Unopened, events);
            prop_assert_eq!(&replayed, &world.state(*id), "replay must reproduce the state");
            let moved: i128 = events.iter().map(Event::money_moved).sum();
            prop_assert_eq!(moved, i128::from(replayed.balance()), "balance = deposits - withdrawals");
        }
    }

    #[test]
    fn a_transfer_conserves_the_two_accounts_total(
        source_balance in 0i64..=i64::MAX,
        target_balance in 0i64..=i64::MAX,
        value in 0i64..=i64::MAX,
    ) {
        let owner_id = OwnerId::from_uuid(Uuid::from_u128(7));
        let source = Account::Open { owner_id, balance: source_balance };
        let target = Account::Open { owner_id, balance: target_balance };
        let command = Command::Transfer { target: account(1), amount: Amount::new(value).unwrap() };
        if let Ok(effects) = decide(account(0), &source, &command, Some(&target)) {
            let source_after = effects.source.map_or(source.clone(), |e| evolve(source.clone(), &e));
            let target_after = effects.target.map_or(target.clone(), |e| evolve(target.clone(), &e));
            let before = i128::from(source_balance) + i128::from(target_balance);
            let after = i128::from(source_after.balance()) + i128::from(target_after.balance());
            prop_assert_eq!(before, after);
            prop_assert!(source_after.balance() >= 0);
        }
    }
}
