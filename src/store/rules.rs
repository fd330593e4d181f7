//! The rules of a batch that every store applies alike, whatever holds its
//! data: a commit's own shape ([`Commit::check_shape`]), which members of a
//! batch fit the stored heads and transactionIds and each other
//! ([`check_batch`]), and which are chained onto earlier ones
//! ([`chained_onto`]). They are pure functions of the commits and of what
//! the store read, kept apart from the contract in `store/mod.rs` (which
//! says *what* an append guarantees) because they are *how* a store decides
//! it: the memory store and the SQL stores call them, and a test can call
//! them without a store.

use std::collections::{HashMap, HashSet};

use super::{AppendError, Commit};
use crate::domain::{AccountId, TransactionId};

impl Commit {
    /// The checks every store makes before writing, that need nothing but
    /// the commit itself: each account's events numbered from 1 and
    /// contiguous, no transactionId twice on one account, every snapshot at
    /// an event of this commit. Returns the heads: per account touched, in
    /// canonical order, the sequence number its stored stream must end at
    /// (the commit's first number − 1). What needs the stored data — the
    /// heads, transactionIds already recorded — is the store's to check,
    /// atomically with the write.
    pub fn check_shape(&self) -> Result<Vec<Head>, AppendError> {
        let mut next: HashMap<AccountId, u64> = HashMap::new();
        let mut heads = Vec::new();
        for event in &self.events {
            let account = event.account_id;
            if event.sequence_number == 0 {
                return Err(AppendError::Conflict(format!(
                    "account {account}: sequence numbers start at 1"
                )));
            }
            let expected = next.entry(account).or_insert_with(|| {
                heads.push(Head {
                    account_id: account,
                    sequence_number: event.sequence_number - 1,
                });
                event.sequence_number
            });
            if event.sequence_number != *expected {
                return Err(AppendError::Conflict(format!(
                    "account {account}: events of one commit must be contiguous, got {} after {}",
                    event.sequence_number,
                    *expected - 1
                )));
            }
            *expected += 1;
        }
        let mut snapshot_at = HashSet::new();
        for snapshot in &self.snapshots {
            if !snapshot_at.insert((snapshot.account_id, snapshot.sequence_number)) {
                return Err(AppendError::Conflict(format!(
                    "two snapshots of account {} at {} in one commit",
                    snapshot.account_id, snapshot.sequence_number
                )));
            }
        }
        let mut seen = HashSet::new();
        for record in &self.transactions {
            if !seen.insert((record.account_id, record.transaction_id)) {
                return Err(AppendError::Conflict(format!(
                    "transaction {} appears twice for account {} in one commit",
                    record.transaction_id, record.account_id
                )));
            }
        }
        for snapshot in &self.snapshots {
            let last = next.get(&snapshot.account_id).map_or(0, |n| n - 1);
            if snapshot.sequence_number == 0 || snapshot.sequence_number > last {
                return Err(AppendError::Conflict(format!(
                    "snapshot of account {} at {} is not covered by the commit",
                    snapshot.account_id, snapshot.sequence_number
                )));
            }
        }
        heads.sort_by_key(|head| head.account_id);
        Ok(heads)
    }
}

/// Decides which members of a batch fit, by the rules every store shares
/// (see [`super::EventStore::append_batch`]): each member's shape, then its heads
/// and transactionIds against what the store holds — `stored_head(account)`,
/// the last stored sequence number (0: none), and `recorded(account,
/// transaction)` — as changed by the members before it that fit. A member
/// chained onto a refused one is refused too (see [`chained_onto`]). A store
/// calls it with what it read, writes the members that fit, and lets its
/// constraints refuse anything that changed in between.
pub fn check_batch<'c>(
    commits: impl IntoIterator<Item = &'c Commit>,
    stored_head: impl Fn(AccountId) -> u64,
    recorded: impl Fn(AccountId, TransactionId) -> bool,
) -> Vec<Result<(), AppendError>> {
    let commits: Vec<&Commit> = commits.into_iter().collect();
    let chains = chained_onto(&commits);
    let mut heads: HashMap<AccountId, u64> = HashMap::new();
    let mut taken: HashSet<(AccountId, TransactionId)> = HashSet::new();
    let mut results: Vec<Result<(), AppendError>> = Vec::with_capacity(commits.len());
    for (commit, chain) in commits.iter().zip(&chains) {
        if let Some(refused) = chain.iter().find(|&&earlier| results[earlier].is_err()) {
            results.push(Err(AppendError::Conflict(format!(
                "chained onto member {refused} of the batch, which was refused"
            ))));
            continue;
        }
        let check = || -> Result<(), AppendError> {
            for head in commit.check_shape()? {
                let current = match heads.get(&head.account_id) {
                    Some(current) => *current,
                    None => stored_head(head.account_id),
                };
                if current != head.sequence_number {
                    return Err(head.moved(current));
                }
            }
            for record in &commit.transactions {
                let key = (record.account_id, record.transaction_id);
                if taken.contains(&key) || recorded(key.0, key.1) {
                    return Err(AppendError::Conflict(format!(
                        "transaction {} already recorded on account {}",
                        record.transaction_id, record.account_id
                    )));
                }
            }
            Ok(())
        };
        let result = check();
        if result.is_ok() {
            for event in &commit.events {
                heads.insert(event.account_id, event.sequence_number);
            }
            let records = commit.transactions.iter();
            taken.extend(records.map(|record| (record.account_id, record.transaction_id)));
        }
        results.push(result);
    }
    results
}

/// For each member of a batch, the earlier members it is chained onto: those
/// whose events on an account it touches end at or beyond where it starts
/// (`earlier head < its head ≤ earlier last`). Such a member was decided on
/// the state an earlier member leaves, so it must not land when that member
/// does not — even if another writer's event took the earlier member's
/// place, which the head check alone would let through.
pub fn chained_onto(commits: &[&Commit]) -> Vec<Vec<usize>> {
    let spans: Vec<HashMap<AccountId, (u64, u64)>> = commits
        .iter()
        .map(|commit| {
            let mut spans: HashMap<AccountId, (u64, u64)> = HashMap::new();
            for event in &commit.events {
                let sequence = event.sequence_number;
                let span = spans
                    .entry(event.account_id)
                    .or_insert((sequence, sequence));
                span.0 = span.0.min(sequence);
                span.1 = span.1.max(sequence);
            }
            spans
        })
        .collect();
    spans
        .iter()
        .enumerate()
        .map(|(member, own)| {
            (0..member)
                .filter(|&earlier| {
                    own.iter().any(|(account, (first, _))| {
                        let head = first.saturating_sub(1);
                        spans[earlier]
                            .get(account)
                            .is_some_and(|(from, to)| from.saturating_sub(1) < head && head <= *to)
                    })
                })
                .collect()
        })
        .collect()
}

/// Where an account's stored stream must end for a commit to fit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Head {
    pub account_id: AccountId,
    /// The last stored sequence number (0: no event yet).
    pub sequence_number: u64,
}

impl Head {
    /// The conflict of a stream that ends at `stored`, not where the commit
    /// expects: another writer got there first.
    pub fn moved(&self, stored: u64) -> AppendError {
        Head::moved_at(&self.account_id, stored, self.sequence_number)
    }

    /// [`Head::moved`] for a store that holds the head in its own types.
    pub fn moved_at(
        account: &dyn std::fmt::Display,
        stored: impl std::fmt::Display,
        expected: impl std::fmt::Display,
    ) -> AppendError {
        AppendError::Conflict(format!(
            "account {account} is at sequence number {stored}, the commit expects {expected}"
        ))
    }
}

#[cfg(test)]
mod tests {
    use uuid::Uuid;

    use super::Head;
    use crate::domain::{
        Account, AccountId, Event, Fingerprint, OwnerId, Timestamp, TransactionId,
    };
    use crate::store::{AppendError, Commit, RecordedEvent, Snapshot, TransactionRecord};

    fn account(n: u128) -> AccountId {
        AccountId::from_uuid(Uuid::from_u128(n))
    }

    fn event(account_id: AccountId, sequence_number: u64) -> RecordedEvent {
        RecordedEvent {
            account_id,
            sequence_number,
            transaction_id: TransactionId::from_uuid(Uuid::from_u128(7)),
            event: Event::AccountClosed,
            recorded_at: Timestamp::from_unix_millis(0),
        }
    }

    fn record(account_id: AccountId) -> TransactionRecord {
        TransactionRecord {
            account_id,
            transaction_id: TransactionId::from_uuid(Uuid::from_u128(7)),
            fingerprint: Fingerprint("close".to_owned()),
        }
    }

    fn refusal(commit: &Commit) -> String {
        match commit.check_shape() {
            Err(AppendError::Conflict(message)) => message,
            other => panic!("expected a conflict, got {other:?}"),
        }
    }

    #[test]
    fn the_heads_of_a_commit_are_in_canonical_order() {
        let (a, b) = (account(1), account(2));
        let commit = Commit {
            events: vec![event(b, 8), event(a, 3), event(a, 4)],
            transactions: vec![record(b), record(a)],
            snapshots: vec![Snapshot {
                account_id: a,
                sequence_number: 4,
                state: Account::Closed {
                    owner_id: OwnerId::from_uuid(Uuid::from_u128(9)),
                },
                recorded_until: None,
            }],
        };
        let heads = commit.check_shape().unwrap();
        let expected = [(a, 2), (b, 7)].map(|(account_id, sequence_number)| Head {
            account_id,
            sequence_number,
        });
        assert_eq!(heads, expected);
    }

    #[test]
    fn commits_of_the_wrong_shape_are_refused() {
        let a = account(1);
        let zero = Commit {
            events: vec![event(a, 0)],
            ..Commit::default()
        };
        assert!(refusal(&zero).contains("start at 1"));
        let gap = Commit {
            events: vec![event(a, 1), event(a, 3)],
            ..Commit::default()
        };
        assert!(refusal(&gap).contains("contiguous"));
        let twice = Commit {
            events: vec![event(a, 1)],
            transactions: vec![record(a), record(a)],
            ..Commit::default()
        };
        assert!(refusal(&twice).contains("twice"));
        let uncovered = Commit {
            events: vec![event(a, 1)],
            snapshots: vec![Snapshot {
                account_id: a,
                sequence_number: 2,
                state: Account::Unopened,
                recorded_until: None,
            }],
            ..Commit::default()
        };
        assert!(refusal(&uncovered).contains("not covered"));
    }
}
