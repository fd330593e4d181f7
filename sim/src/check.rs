//! The checker: judges a run from the final event log (read from the store
//! after the run) and the clients' records alone.

use std::collections::{BTreeMap, BTreeSet};
use std::pin::pin;
use std::task::{Context, Poll, Waker};

use accounts::domain::{Account, AccountId, Event, TransactionId};
use accounts::http::{AccountBody, EventBody};
use accounts::store::{EventStore, Loaded, MemoryStore, RecordedEvent};

use crate::client::{OpRecord, Verdict, verdict};
use crate::plan::{Action, CLIENTS, Plan};

/// One account as the store holds it after the run.
pub struct AccountLog {
    pub id: AccountId,
    /// Every event, from sequence number 1.
    pub events: Vec<RecordedEvent>,
    /// What a load returns: the latest snapshot and the events after it.
    pub loaded: Loaded,
}

pub struct Log {
    pub accounts: Vec<AccountLog>,
}

/// The memory store answers without ever waiting, so its futures complete on
/// their first poll; no runtime needed.
fn at_once<F: Future>(future: F) -> F::Output {
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
    pub fn read(store: &MemoryStore, plan: &Plan) -> Log {
        let accounts = (0..plan.accounts)
            .map(|index| {
                let id = plan.account_id(index);
                AccountLog {
                    id,
                    events: at_once(store.events(id, 1, usize::MAX))
                        .expect("the memory store does not fail"),
                    loaded: at_once(store.load(id, None)).expect("the memory store does not fail"),
                }
            })
            .collect();
        Log { accounts }
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

    /// Every event carrying `transaction`, with the index of its account.
    fn with_transaction(&self, transaction: TransactionId) -> Vec<(usize, &RecordedEvent)> {
        self.accounts
            .iter()
            .enumerate()
            .flat_map(|(index, account)| {
                account
                    .events
                    .iter()
                    .filter(move |e| e.transaction_id == transaction)
                    .map(move |e| (index, e))
            })
            .collect()
    }
}

pub fn check(plan: &Plan, log: &Log, records: &[OpRecord]) -> Vec<String> {
    let mut violations = Vec::new();
    for (index, account) in log.accounts.iter().enumerate() {
        check_stream(index, account, &mut violations);
    }
    check_transfers(log, &mut violations);
    check_conservation(log, records, &mut violations);
    check_provenance(plan, log, records, &mut violations);
    for record in records {
        check_answers(log, record, &mut violations);
    }
    check_reads(log, records, &mut violations);
    violations
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

/// Every event comes from a request some client really sent.
fn check_provenance(plan: &Plan, log: &Log, records: &[OpRecord], violations: &mut Vec<String>) {
    let by_transaction: BTreeMap<TransactionId, &OpRecord> = records
        .iter()
        .filter_map(|r| r.transaction.map(|t| (t, r)))
        .collect();
    for (index, account) in log.accounts.iter().enumerate() {
        for recorded in &account.events {
            let at = format!("a{index}#{}", recorded.sequence_number);
            if let Event::AccountOpened { owner_id } = recorded.event {
                let requested = records
                    .iter()
                    .any(|r| r.action == Action::Open { account: index });
                if owner_id != plan.owner_id(index) || !requested {
                    violations.push(format!("{at}: opened for {owner_id}, which nobody asked"));
                }
                continue;
            }
            let Some(record) = by_transaction.get(&recorded.transaction_id) else {
                violations.push(format!(
                    "{at}: {} under transaction {}, which no client sent",
                    recorded.event.type_name(),
                    recorded.transaction_id
                ));
                continue;
            };
            let other = |id: AccountId| log.index_of(id).unwrap_or(usize::MAX);
            let expected = match recorded.event {
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
                Event::AccountOpened { .. } => unreachable!("handled above"),
            };
            if record.action != expected {
                violations.push(format!(
                    "{at}: {} does not match the request {} #{} sent under its transaction ({})",
                    recorded.event.type_name(),
                    CLIENTS[record.client],
                    record.index,
                    record.action
                ));
            }
        }
    }
}

/// The statuses an operation may ever get.
fn allowed(action: &Action, code: u16) -> bool {
    let common = matches!(code, 408 | 503);
    common
        || match action {
            Action::Open { .. } => matches!(code, 201 | 409),
            Action::Deposit { .. } | Action::Withdraw { .. } | Action::Transfer { .. } => {
                matches!(code, 204 | 400 | 404 | 409)
            }
            Action::Close { .. } => matches!(code, 204 | 400 | 404 | 409),
            Action::GetState { .. } => matches!(code, 200 | 404),
            Action::GetEvents { .. } => code == 200,
        }
}

/// Every success a client saw is backed by exactly its events, every
/// definitive refusal by none, no operation gets both, and every write got a
/// definitive answer (the liveness phase's bound).
fn check_answers(log: &Log, record: &OpRecord, violations: &mut Vec<String>) {
    let who = format!(
        "{} #{} ({})",
        CLIENTS[record.client], record.index, record.action
    );
    for attempt in &record.attempts {
        let Ok(answer) = &attempt.reply else {
            continue;
        };
        let (code, body) = (answer.status.as_u16(), &answer.body);
        if !allowed(&record.action, code) {
            violations.push(format!("{who}: unexpected answer {code} {body}"));
        }
        let error_status = answer.error_code().map(|error| error.status().as_u16());
        if code >= 400 && error_status != Some(code) {
            violations.push(format!(
                "{who}: answer {code} without an error code of that status: {body}"
            ));
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
    let account = &log.accounts[record.action.account()];
    let Some(transaction) = record.transaction else {
        // An open: its transactionId is the service's own.
        let opened = account
            .events
            .iter()
            .any(|e| matches!(e.event, Event::AccountOpened { .. }));
        if !opened {
            violations.push(format!("{who}: answered but the account was never opened"));
        }
        return;
    };
    if success && refusal {
        violations.push(format!("{who}: answered both success and refusal"));
    }
    let events = log.with_transaction(transaction);
    if refusal && !events.is_empty() {
        violations.push(format!(
            "{who}: refused, yet {} events carry its transaction",
            events.len()
        ));
    }
    if !success {
        return;
    }
    let expected = match record.action {
        Action::Transfer { .. } => 2,
        Action::Close { .. } => {
            let closed_before = account.events.iter().any(|e| {
                matches!(e.event, Event::AccountClosed) && e.transaction_id != transaction
            });
            if closed_before { 0 } else { 1 }
        }
        _ => 1,
    };
    if events.len() != expected {
        violations.push(format!(
            "{who}: answered success, but {} events carry its transaction (expected {expected})",
            events.len()
        ));
    }
}

/// A state read shows a balance the account really had; an event-stream read
/// is a prefix of the final log.
fn check_reads(log: &Log, records: &[OpRecord], violations: &mut Vec<String>) {
    for record in records {
        let who = format!(
            "{} #{} ({})",
            CLIENTS[record.client], record.index, record.action
        );
        let account = &log.accounts[record.action.account()];
        for attempt in &record.attempts {
            let Ok(answer) = &attempt.reply else {
                continue;
            };
            if answer.status != 200 {
                continue;
            }
            let body = &answer.body;
            match record.action {
                Action::GetState { .. } => match serde_json::from_str::<AccountBody>(body) {
                    Ok(state) => {
                        let had = std::iter::once(0)
                            .chain(account.events.iter().filter_map(|e| match e.event {
                                Event::MoneyDeposited { balance, .. }
                                | Event::MoneyWithdrawn { balance, .. } => Some(balance),
                                _ => None,
                            }))
                            .any(|b| b == state.balance);
                        let closed = account
                            .events
                            .iter()
                            .any(|e| matches!(e.event, Event::AccountClosed));
                        if state.account_id != account.id || !had || (!state.open && !closed) {
                            violations
                                .push(format!("{who}: read a state the account never had: {body}"));
                        }
                    }
                    Err(error) => {
                        violations.push(format!("{who}: unreadable state {body}: {error}"))
                    }
                },
                Action::GetEvents { .. } => match serde_json::from_str::<Vec<EventBody>>(body) {
                    Ok(events) => {
                        let prefix: Vec<EventBody> = account
                            .events
                            .iter()
                            .take(events.len())
                            .map(EventBody::from)
                            .collect();
                        if events != prefix {
                            violations.push(format!(
                                "{who}: read events that are not a prefix of the final log: {body}"
                            ));
                        }
                    }
                    Err(error) => {
                        violations.push(format!("{who}: unreadable events {body}: {error}"));
                    }
                },
                _ => {}
            }
        }
    }
}
