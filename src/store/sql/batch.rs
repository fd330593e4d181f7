//! Group commit on a SQL store, whatever writes the rows: which members of
//! a batch are answered before any database is asked (a malformed commit,
//! one chained onto a refused member), the one attempt at writing the rest
//! through the dialect's [`BatchWriter`], and the split into one-by-one
//! writes when a concurrent writer got in the way. The checks against the
//! stored heads and records are the store-wide rules
//! ([`crate::store::check_batch`]); [`Stored`] holds what a writer read for
//! them.

use std::collections::{HashMap, HashSet};

use super::rows::{sequence_from_sql, sequence_to_sql};
use crate::domain::{AccountId, TransactionId};
use crate::store::{AppendError, Commit, Head, StoreError, chained_onto, check_batch};

/// The checks a commit must pass before any database is asked: its shape
/// (the rules every store shares, see [`Commit::check_shape`]) and sequence
/// numbers that fit a BIGINT. The database then enforces the rest: the first
/// event of each account at exactly its head + 1, and no (account, sequence)
/// or (account, transactionId) taken. `Ok(false)`: a valid commit with
/// neither events nor idempotency records, which writes nothing.
pub(in crate::store) fn check_commit(commit: &Commit) -> Result<bool, AppendError> {
    for head in commit.check_shape()? {
        sequence_to_sql(head.sequence_number)?;
    }
    for event in &commit.events {
        sequence_to_sql(event.sequence_number)?;
    }
    Ok(!(commit.events.is_empty() && commit.transactions.is_empty()))
}

/// How one attempt to write several members ended.
pub(in crate::store) enum Attempt {
    /// Each member's answer, in order.
    Answered(Vec<Result<(), AppendError>>),
    /// A constraint refused rows that the check let through: another writer
    /// changed the data in between. Nothing was written; the members are to
    /// be tried one by one, so that only the one in the way is refused.
    Split(AppendError),
}

/// A database's way of writing the members of a batch that fit, in one
/// transaction (see [`append_batch`]).
pub(in crate::store) trait BatchWriter: Sync {
    fn write<'a>(&'a self, members: &'a [&'a Commit]) -> impl Future<Output = Attempt> + Send + 'a;
}

/// Group commit on a SQL store: the members that cannot be written at all
/// are answered first ([`check_commit`], and members chained onto those),
/// the others go to the writer in one attempt, and — when a concurrent
/// writer got in the way of that attempt — one by one, each in its own
/// transaction, so that only the member in the way is refused (and the
/// members chained onto it: [`chained_onto`]).
pub(in crate::store) async fn append_batch(
    writer: &impl BatchWriter,
    commits: &[Commit],
) -> Vec<Result<(), AppendError>> {
    let chains = chained_onto(&commits.iter().collect::<Vec<_>>());
    let mut results: Vec<Option<Result<(), AppendError>>> = vec![None; commits.len()];
    let mut members: Vec<usize> = Vec::new();
    for (index, commit) in commits.iter().enumerate() {
        results[index] = match check_commit(commit) {
            Ok(true) => match refused_before(&chains[index], &results) {
                Some(refused) => Some(Err(refused)),
                None => {
                    members.push(index);
                    None
                }
            },
            Ok(false) => Some(Ok(())),
            Err(error) => Some(Err(error)),
        };
    }
    let batch: Vec<&Commit> = members.iter().map(|&index| &commits[index]).collect();
    if !batch.is_empty() {
        match writer.write(&batch).await {
            Attempt::Answered(answers) => {
                debug_assert_eq!(answers.len(), members.len());
                for (&index, answer) in members.iter().zip(answers) {
                    results[index] = Some(answer);
                }
            }
            Attempt::Split(error) if members.len() == 1 => results[members[0]] = Some(Err(error)),
            Attempt::Split(_) => {
                for &index in &members {
                    let answer = match refused_before(&chains[index], &results) {
                        Some(refused) => Err(refused),
                        None => write_alone(writer, &commits[index]).await,
                    };
                    results[index] = Some(answer);
                }
            }
        }
    }
    results
        .into_iter()
        .map(|result| {
            result.unwrap_or_else(|| {
                Err(AppendError::Store(StoreError::Corrupt(
                    "a batch member was left unanswered".to_owned(),
                )))
            })
        })
        .collect()
}

/// The conflict of a member chained onto an earlier member already refused.
fn refused_before(
    chain: &[usize],
    results: &[Option<Result<(), AppendError>>],
) -> Option<AppendError> {
    let refused = chain
        .iter()
        .find(|&&earlier| matches!(results[earlier], Some(Err(_))))?;
    Some(AppendError::Conflict(format!(
        "chained onto member {refused} of the batch, which was refused"
    )))
}

/// One member in its own transaction. A writer that answers a batch of one
/// with anything but one answer cannot say whether it wrote the member:
/// ambiguous, which the engine settles by reading the transactionId back —
/// never a success by default.
async fn write_alone(writer: &impl BatchWriter, member: &Commit) -> Result<(), AppendError> {
    match writer.write(&[member]).await {
        Attempt::Answered(answers) => match <[_; 1]>::try_from(answers) {
            Ok([answer]) => answer,
            Err(answers) => Err(AppendError::Ambiguous(format!(
                "a write of one member was answered with {} results",
                answers.len()
            ))),
        },
        Attempt::Split(error) => Err(error),
    }
}

/// What the store holds for the accounts and transactionIds of a batch.
#[derive(Default)]
pub(in crate::store) struct Stored {
    pub heads: HashMap<AccountId, u64>,
    pub records: HashSet<(AccountId, TransactionId)>,
}

impl Stored {
    /// Every member's answer if the members that fit are written.
    pub fn check(&self, members: &[&Commit]) -> Vec<Result<(), AppendError>> {
        check_batch(
            members.iter().copied(),
            |account| self.heads.get(&account).copied().unwrap_or(0),
            |account, transaction| self.records.contains(&(account, transaction)),
        )
    }

    /// Adds a row of the stored-state query: `head` set for an account's
    /// last sequence number, `transaction_id` for a recorded transactionId.
    pub fn add(
        &mut self,
        account: AccountId,
        head: Option<i64>,
        transaction: Option<TransactionId>,
    ) -> Result<(), StoreError> {
        if let Some(head) = head {
            self.heads.insert(account, sequence_from_sql(head)?);
        }
        if let Some(transaction) = transaction {
            self.records.insert((account, transaction));
        }
        Ok(())
    }
}

/// Each account's head as the first member touching it expects it, in
/// canonical account order, if every later member chains onto the ones
/// before and no transactionId repeats — then writing them all needs only
/// these heads to hold. `None` when the members contradict each other.
pub(in crate::store) fn first_heads(members: &[&Commit]) -> Option<Vec<Head>> {
    let mut first: HashMap<AccountId, u64> = HashMap::new();
    for member in members {
        for head in member.check_shape().ok()? {
            first.entry(head.account_id).or_insert(head.sequence_number);
        }
    }
    let consistent = check_batch(
        members.iter().copied(),
        |account| first.get(&account).copied().unwrap_or(0),
        |_, _| false,
    );
    if consistent.iter().any(Result::is_err) {
        return None;
    }
    let mut heads: Vec<Head> = first
        .into_iter()
        .map(|(account_id, sequence_number)| Head {
            account_id,
            sequence_number,
        })
        .collect();
    heads.sort_by_key(|head| head.account_id);
    Some(heads)
}

/// The members whose answer is `Ok`.
pub(in crate::store) fn passing<'a>(
    members: &[&'a Commit],
    answers: &[Result<(), AppendError>],
) -> Vec<&'a Commit> {
    members
        .iter()
        .zip(answers)
        .filter(|(_, answer)| answer.is_ok())
        .map(|(member, _)| *member)
        .collect()
}

/// `answers` with every `Ok` (a member that was to be written) replaced by
/// `error`: what a failed write means for them.
pub(in crate::store) fn failed(
    mut answers: Vec<Result<(), AppendError>>,
    error: &AppendError,
) -> Vec<Result<(), AppendError>> {
    for answer in &mut answers {
        if answer.is_ok() {
            *answer = Err(error.clone());
        }
    }
    answers
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use uuid::Uuid;

    use super::*;
    use crate::domain::{Event, Timestamp};
    use crate::store::RecordedEvent;

    /// Asks for a split on the first write, then answers every write of one
    /// member with no answer at all.
    struct Mute {
        writes: AtomicUsize,
    }

    impl BatchWriter for Mute {
        async fn write<'a>(&'a self, _members: &'a [&'a Commit]) -> Attempt {
            match self.writes.fetch_add(1, Ordering::SeqCst) {
                0 => Attempt::Split(AppendError::Conflict("in the way".to_owned())),
                _ => Attempt::Answered(Vec::new()),
            }
        }
    }

    fn opening(n: u128) -> Commit {
        Commit {
            events: vec![RecordedEvent {
                account_id: AccountId::from_uuid(Uuid::from_u128(n)),
                sequence_number: 1,
                transaction_id: TransactionId::from_uuid(Uuid::from_u128(100 + n)),
                event: Event::AccountClosed,
                recorded_at: Timestamp::from_unix_millis(0),
            }],
            transactions: Vec::new(),
            snapshots: Vec::new(),
        }
    }

    #[tokio::test]
    async fn a_member_written_alone_without_an_answer_is_ambiguous() {
        let writer = Mute {
            writes: AtomicUsize::new(0),
        };
        let answers = append_batch(&writer, &[opening(1), opening(2)]).await;
        assert_eq!(
            writer.writes.load(Ordering::SeqCst),
            3,
            "split, then one by one"
        );
        for answer in answers {
            assert!(
                matches!(answer, Err(AppendError::Ambiguous(_))),
                "{answer:?}"
            );
        }
    }
}
