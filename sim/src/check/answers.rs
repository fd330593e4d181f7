//! The clients' requests judged against the model: every event some
//! client really asked for (provenance), and every answer, write or read,
//! one the model allows inside the request's window, with exactly its own
//! events behind a success (exactly-once, no acknowledged write lost).

use std::collections::{BTreeMap, BTreeSet};

use accounts::domain::{Event, TransactionId};
use accounts::http::{EVENTS_LIMIT_DEFAULT, EventBody};
use testkit::Answer;

use super::model::{Expect, Expectations, Model, describe};
use crate::client::{Attempt, OpRecord, Verdict, verdict};
use crate::plan::{Action, CLIENTS, Past};

/// Every event comes from a request some client really sent: the same
/// operation under the same transactionId (an open: by the same owner).
pub(super) fn check_provenance(model: &Model, violations: &mut Vec<String>) {
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

/// Every answer judged: its status is one the operation may get, an error
/// carries the code of its status, and the model explains it inside its
/// window; every write got a definitive answer (the liveness bound); a
/// success is backed by exactly its events, landed before it was answered
/// and decided on the state they were appended to; a refusal by none.
pub(super) fn check_answers(model: &Model, record: &OpRecord, violations: &mut Vec<String>) {
    let who = format!(
        "{} #{} ({})",
        CLIENTS[record.client], record.index, record.action
    );
    let own = model.own_events(record);
    for attempt in &record.attempts {
        check_attempt(model, record, &own, attempt, &who, violations);
    }
    if record.action.is_write() {
        check_write_outcome(model, record, &own, &who, violations);
    }
}

/// One attempt's answer, where it got one.
fn check_attempt(
    model: &Model,
    record: &OpRecord,
    own: &[(usize, usize)],
    attempt: &Attempt,
    who: &str,
    violations: &mut Vec<String>,
) {
    let Ok(answer) = &attempt.reply else {
        return;
    };
    let (code, body) = (answer.status.as_u16(), &answer.body);
    let when = format!(
        "{who} sent at {} ms, answered at {} ms",
        attempt.at.as_millis(),
        attempt.answered.as_millis()
    );
    if !allowed(&record.action, code) {
        violations.push(format!("{when}: unexpected answer {code} {body}"));
        return;
    }
    let error = answer.error_code();
    if code >= 400 && error.map(|e| e.status().as_u16()) != Some(code) {
        violations.push(format!(
            "{when}: answer {code} without an error code of that status: {body}"
        ));
        return;
    }
    if !record.action.is_write() {
        check_read(model, record, attempt, &when, violations);
        return;
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
            let Some(&(account, index)) = own.first() else {
                check_unrecorded_success(model, record, attempt, &when, violations);
                return;
            };
            let landed = model.log().accounts[account].landed[index];
            if landed > attempt.answered + model.history.skew {
                violations.push(format!(
                    "{when}: answered {code} before its events landed (at {} ms)",
                    landed.as_millis()
                ));
            }
        }
    }
}

/// A write across its attempts: a definitive answer, and as many events of
/// its own as the operation has legs — none after a refusal, and where
/// applied, decided as the model decides.
fn check_write_outcome(
    model: &Model,
    record: &OpRecord,
    own: &[(usize, usize)],
    who: &str,
    violations: &mut Vec<String>,
) {
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
    check_decision(model, record, own, who, violations);
}

/// Applied: the decision must be the model's on the state each event was
/// appended to (the version right before it, on both accounts).
fn check_decision(
    model: &Model,
    record: &OpRecord,
    own: &[(usize, usize)],
    who: &str,
    violations: &mut Vec<String>,
) {
    let Some(&(account, index)) = own.iter().find(|(a, _)| *a == record.action.account()) else {
        return;
    };
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
    // 503 and 408 say nothing about the account.
    if !matches!(answer.status.as_u16(), 200 | 404) {
        return;
    }
    let read = Read {
        model,
        record,
        account: record.action.account(),
        window: model.window(record.action.account(), attempt),
        answer,
        when,
    };
    match record.action {
        Action::GetState { .. } => read.check_state(None, violations),
        Action::GetStateAt { point, .. } => read.check_state(Some(point), violations),
        Action::GetEvents { from, limit, .. } => read.check_events(from, limit, violations),
        _ => {}
    }
}

/// One read's answer, with the versions its account had inside its window.
struct Read<'a> {
    model: &'a Model<'a>,
    record: &'a OpRecord,
    account: usize,
    window: std::ops::RangeInclusive<usize>,
    answer: &'a Answer,
    when: &'a str,
}

impl Read<'_> {
    fn check_state(&self, point: Option<Past>, violations: &mut Vec<String>) {
        let (answer, window) = (self.answer, &self.window);
        let explained = window
            .clone()
            .any(|v| self.model.explains_state(self.record, point, v, answer));
        if !explained {
            violations.push(format!(
                "{}: read {} (ETag {}) {}, but the account's states in the window were versions {}..={} of {}",
                self.when,
                answer.status.as_u16(),
                answer.header("etag").unwrap_or("none"),
                answer.body,
                window.start(),
                window.end(),
                self.model.log().accounts[self.account].events.len()
            ));
        }
    }

    fn check_events(&self, from: u64, limit: Option<u64>, violations: &mut Vec<String>) {
        let (when, body) = (self.when, &self.answer.body);
        let log = &self.model.log().accounts[self.account];
        let states = &self.model.states[self.account];
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
            && self.window.clone().any(|v| {
                if !self.model.may_see(self.record.caller, &states[v]) {
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
                self.window.start(),
                self.window.end()
            ));
        }
    }
}
