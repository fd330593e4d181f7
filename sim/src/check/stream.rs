//! What was written, judged on its own: each account's stream (gap-free,
//! legal, its `balance` fields the running sum, snapshot + tail equal to the
//! full replay), both legs of every transfer, and the conservation of money.

use std::collections::BTreeMap;

use accounts::domain::{Account, AccountId, Event, TransactionId};
use accounts::store::{Loaded, RecordedEvent};

use super::model::{fold, model};
use super::{AccountLog, Log};
use crate::client::{OpRecord, Verdict, verdict};
use crate::plan::Action;

/// The balance the service itself derives from a load (snapshot, then the
/// `balance` field of each later event): what it reports and decides on.
pub(super) fn service_balance(loaded: &Loaded) -> i64 {
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
pub(super) fn check_stream(index: usize, account: &AccountLog, violations: &mut Vec<String>) {
    if let Some(full) = check_events(index, account, violations) {
        check_load(index, account, &full, violations);
    }
}

/// The stream event by event; the state it folds to, unless an illegal
/// transition stops it (reported).
fn check_events(
    index: usize,
    account: &AccountLog,
    violations: &mut Vec<String>,
) -> Option<Account> {
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
                return None;
            }
        };
        check_money(&at, recorded, state.balance(), violations);
    }
    Some(state)
}

/// A deposit or withdrawal moves a positive amount and records the running
/// balance, which is never negative.
fn check_money(at: &str, recorded: &RecordedEvent, running: i64, violations: &mut Vec<String>) {
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

/// What a load returns against the full replay `full`: the snapshot equal to
/// the replay up to it, snapshot + tail equal to all of it, and the balance
/// the service would report equal to the events' sum.
fn check_load(index: usize, account: &AccountLog, full: &Account, violations: &mut Vec<String>) {
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
        Ok(loaded) if loaded == *full && version == last => {}
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
pub(super) fn check_transfers(log: &Log, violations: &mut Vec<String>) {
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
pub(super) fn check_conservation(log: &Log, records: &[OpRecord], violations: &mut Vec<String>) {
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
