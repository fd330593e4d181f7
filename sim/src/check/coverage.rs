//! Coverage: the branches of the contract a recorded history reached, for
//! the sweep's coverage line (a sweep that never reaches one has not
//! tested it, whatever its verdicts).

use std::collections::{BTreeMap, BTreeSet};

use accounts::http::ErrorCode;

use crate::client::{OpRecord, Verdict, verdict};
use crate::plan::{Action, Who};

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
    let transfers: Vec<(&OpRecord, usize, usize)> = records
        .iter()
        .filter_map(|r| match r.action {
            Action::Transfer { from, to, .. } if from != to => Some((r, from, to)),
            _ => None,
        })
        .collect();
    let mut opens_succeeded: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
    for record in records {
        let answered = Answered::of(record);
        reuse_branches(record, &answered, &transfers, &mut reached);
        outcome_branches(record, &answered, &mut reached);
        if let Action::Open { account, owner } = record.action
            && answered.success
        {
            opens_succeeded.entry(account).or_default().push(owner);
        }
        past_state_branches(record, &answered.answers, &mut reached);
        caller_branches(record, &answered, &mut reached);
    }
    if opens_succeeded.values().any(|owners| {
        owners
            .iter()
            .enumerate()
            .any(|(i, o)| owners[..i].contains(o))
    }) {
        reached.insert(BRANCHES[11]);
    }
    if overlapping(records) {
        reached.insert(BRANCHES[14]);
    }
    reached
}

/// A request's answers: each one's status and error code, whether one was
/// definitive, and whether one was a success.
struct Answered {
    answers: Vec<(u16, Option<ErrorCode>)>,
    definitive: bool,
    success: bool,
}

impl Answered {
    fn of(record: &OpRecord) -> Answered {
        let answers: Vec<(u16, Option<ErrorCode>)> = record
            .attempts
            .iter()
            .filter_map(|a| a.reply.as_ref().ok())
            .map(|answer| (answer.status.as_u16(), answer.error_code()))
            .collect();
        let definitive = record
            .attempts
            .iter()
            .any(|a| verdict(&record.action, &a.reply) != Verdict::Unknown);
        let success = answers
            .iter()
            .any(|(status, _)| (200..300).contains(status));
        Answered {
            answers,
            definitive,
            success,
        }
    }

    fn code(&self, wanted: ErrorCode) -> bool {
        self.answers.iter().any(|(_, c)| *c == Some(wanted))
    }
}

/// Another operation under a transfer's transactionId, on its source or its
/// target.
fn reuse_branches(
    record: &OpRecord,
    answered: &Answered,
    transfers: &[(&OpRecord, usize, usize)],
    reached: &mut BTreeSet<&'static str>,
) {
    for &(transfer, from, to) in transfers {
        let reused = std::ptr::eq(transfer, record)
            || transfer.transaction != record.transaction
            || transfer.action == record.action;
        if !reused && answered.definitive {
            if record.action.account() == from {
                reached.insert(BRANCHES[0]);
            }
            if record.action.account() == to {
                reached.insert(BRANCHES[1]);
            }
        }
    }
}

/// The branches a request's own amount and answers show.
fn outcome_branches(record: &OpRecord, answered: &Answered, reached: &mut BTreeSet<&'static str>) {
    let amount = match record.action {
        Action::Deposit { amount, .. }
        | Action::Withdraw { amount, .. }
        | Action::Transfer { amount, .. } => Some(amount),
        _ => None,
    };
    if amount == Some(0) && answered.success {
        reached.insert(BRANCHES[2]);
    }
    if answered.code(ErrorCode::TransferToSelf) {
        reached.insert(BRANCHES[3]);
    }
    if amount.is_some_and(|a| a > i64::MAX / 2) && answered.definitive {
        reached.insert(BRANCHES[4]);
    }
    for (wanted, branch) in [
        (ErrorCode::BalanceOverflow, 5),
        (ErrorCode::InsufficientBalance, 6),
        (ErrorCode::CloseWithBalance, 7),
        (ErrorCode::AccountClosed, 10),
    ] {
        if answered.code(wanted) {
            reached.insert(BRANCHES[branch]);
        }
    }
    if matches!(record.action, Action::Close { .. }) && answered.success {
        reached.insert(BRANCHES[8]);
    }
    if record.action.is_write() && answered.code(ErrorCode::AccountNotFound) {
        reached.insert(BRANCHES[9]);
    }
    if matches!(record.action, Action::Open { .. }) && answered.code(ErrorCode::AccountExists) {
        reached.insert(BRANCHES[12]);
    }
    if let Action::GetEvents { from, limit, .. } = record.action
        && (from > 1 || limit.is_some())
        && answered.answers.iter().any(|(status, _)| *status == 200)
    {
        reached.insert(BRANCHES[13]);
    }
}

/// Who asked: an owner on someone else's account, or the admin.
fn caller_branches(record: &OpRecord, answered: &Answered, reached: &mut BTreeSet<&'static str>) {
    match record.caller {
        Who::Owner(owner)
            if !matches!(record.action, Action::Open { .. })
                && owner != record.action.account()
                && answered.definitive =>
        {
            reached.insert(BRANCHES[15]);
        }
        Who::Admin if answered.definitive => {
            reached.insert(BRANCHES[16]);
        }
        _ => {}
    }
}

/// Whether two requests of one client were ever in flight at once.
fn overlapping(records: &[OpRecord]) -> bool {
    records.iter().any(|a| {
        records.iter().any(|b| {
            a.client == b.client
                && a.index < b.index
                && a.attempts.iter().any(|x| {
                    b.attempts
                        .iter()
                        .any(|y| x.at < y.answered && y.at < x.answered)
                })
        })
    })
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
