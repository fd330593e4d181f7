//! Planted bugs for the self-test (`sim --self-test`): broken variants of
//! the service that the checker must catch. Each is a decorator around a
//! seam the service already has — the `EventStore` the engine is given, or
//! its `StateCache` — so the production engine carries no test branch, and
//! a bug is chosen at run time (never a Cargo feature, which would unify
//! into the service's build).
//!
//! Each decorator makes the engine behave as the engine bug it is named
//! after would: the engine still runs its real code, but on what the store
//! shows it or does with what it sends.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use accounts::domain::{Account, AccountId, Event, TransactionId};
use accounts::engine::{CachedAccount, LruStateCache, StateCache};
use accounts::store::{
    AppendError, Commit, EventStore, Loaded, RecordedEvent, Snapshot, StoreError,
};
use async_trait::async_trait;
use testkit::{Decorated, Decorator};

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum PlantedBug {
    /// A transfer written as two separate appends, one per account.
    TransferAsTwoAppends,
    /// The transactionId lookup is lost: replays are decided again.
    SkipIdempotencyCheck,
    /// After a failed append, the retry decides on the state it had loaded
    /// before; only the version is fresh.
    RetryWithoutReload,
    /// Snapshots hold the state before the snapshotted event.
    StaleSnapshot,
    /// An append whose outcome is unknown is reported as a success.
    SuccessOnAmbiguousCommit,
    /// The state cache keeps what a refused (or unknown) commit would have
    /// left, instead of dropping the accounts: the next command is decided
    /// on a state the account never had.
    CacheKeepsRefusedCommit,
}

impl PlantedBug {
    pub const ALL: [PlantedBug; 6] = [
        PlantedBug::TransferAsTwoAppends,
        PlantedBug::SkipIdempotencyCheck,
        PlantedBug::RetryWithoutReload,
        PlantedBug::StaleSnapshot,
        PlantedBug::SuccessOnAmbiguousCommit,
        PlantedBug::CacheKeepsRefusedCommit,
    ];
}

/// The state cache an instance with `bug` planted uses, `None` for the
/// bugs that live elsewhere (the instance keeps its own cache).
pub fn plant_cache(bug: PlantedBug, capacity: usize) -> Option<Arc<dyn StateCache>> {
    match bug {
        PlantedBug::CacheKeepsRefusedCommit => {
            Some(Arc::new(KeepsRefused(LruStateCache::new(capacity.max(1)))))
        }
        _ => None,
    }
}

/// `CacheKeepsRefusedCommit`: every commit counts as landed.
struct KeepsRefused(LruStateCache);

impl StateCache for KeepsRefused {
    fn get(&self, account: AccountId) -> Option<CachedAccount> {
        self.0.get(account)
    }

    fn loaded(&self, entry: CachedAccount) {
        self.0.loaded(entry);
    }

    fn settled(&self, after: &[CachedAccount], _landed: bool) {
        self.0.settled(after, true);
    }
}

/// The store an instance with `bug` planted sees.
pub fn plant(bug: PlantedBug, store: Arc<dyn EventStore>) -> Arc<dyn EventStore> {
    Arc::new(Decorated(BuggyStore {
        inner: store,
        bug,
        served: Mutex::default(),
    }))
}

struct BuggyStore {
    inner: Arc<dyn EventStore>,
    bug: PlantedBug,
    /// For `RetryWithoutReload`: per (account, transactionId), the state the
    /// last load for that request showed, and whether the next load must
    /// show it again (after that request's append failed).
    served: Mutex<BTreeMap<(AccountId, TransactionId), Served>>,
}

struct Served {
    state: Account,
    stale_next: bool,
}

impl BuggyStore {
    /// `RetryWithoutReload`: after a failed append, the fresh version and
    /// transaction record with the state of the load before it.
    fn maybe_stale(&self, account: AccountId, transaction: TransactionId, fresh: Loaded) -> Loaded {
        let mut served = self.served.lock().unwrap_or_else(|p| p.into_inner());
        let (fresh_state, version) = fresh.fold();
        let entry = served.entry((account, transaction)).or_insert(Served {
            state: fresh_state.clone(),
            stale_next: false,
        });
        if !std::mem::take(&mut entry.stale_next) {
            entry.state = fresh_state;
            return fresh;
        }
        Loaded {
            snapshot: Some(Snapshot {
                account_id: account,
                sequence_number: version,
                state: entry.state.clone(),
                recorded_until: None,
            }),
            events: Vec::new(),
            transaction: fresh.transaction,
        }
    }

    /// `RetryWithoutReload`: what the append of a request means for its next
    /// load.
    fn after_append(&self, commit: &Commit, result: &Result<(), AppendError>) {
        let mut served = self.served.lock().unwrap_or_else(|p| p.into_inner());
        for record in &commit.transactions {
            let key = (record.account_id, record.transaction_id);
            match result {
                Ok(()) | Err(AppendError::Store(_)) => {
                    served.remove(&key);
                }
                Err(AppendError::Conflict(_) | AppendError::Ambiguous(_)) => {
                    if let Some(entry) = served.get_mut(&key) {
                        entry.stale_next = true;
                    }
                }
            }
        }
    }

    async fn append_one(&self, commit: &Commit) -> Result<(), AppendError> {
        match self.bug {
            PlantedBug::TransferAsTwoAppends => self.append_in_parts(commit).await,
            PlantedBug::StaleSnapshot => self.inner.append(&with_stale_snapshots(commit)).await,
            PlantedBug::SuccessOnAmbiguousCommit => match self.inner.append(commit).await {
                Err(AppendError::Ambiguous(_)) => Ok(()),
                other => other,
            },
            PlantedBug::RetryWithoutReload => {
                let result = self.inner.append(commit).await;
                self.after_append(commit, &result);
                result
            }
            PlantedBug::SkipIdempotencyCheck | PlantedBug::CacheKeepsRefusedCommit => {
                self.inner.append(commit).await
            }
        }
    }

    async fn append_in_parts(&self, commit: &Commit) -> Result<(), AppendError> {
        for account in commit.accounts() {
            let part = Commit {
                events: only(&commit.events, |e| e.account_id == account),
                transactions: only(&commit.transactions, |t| t.account_id == account),
                snapshots: only(&commit.snapshots, |s| s.account_id == account),
            };
            self.inner.append(&part).await?;
        }
        Ok(())
    }
}

fn only<T: Clone>(items: &[T], keep: impl Fn(&T) -> bool) -> Vec<T> {
    items.iter().filter(|item| keep(item)).cloned().collect()
}

/// The commit with every snapshot holding the state before its event.
fn with_stale_snapshots(commit: &Commit) -> Commit {
    let mut stale = commit.clone();
    for snapshot in &mut stale.snapshots {
        let event = commit.events.iter().find(|e: &&RecordedEvent| {
            e.account_id == snapshot.account_id && e.sequence_number == snapshot.sequence_number
        });
        if let Some(event) = event {
            snapshot.state = state_before(&snapshot.state, &event.event);
        }
    }
    stale
}

/// Undoes one event: the state `event` was applied to, given the state after.
fn state_before(after: &Account, event: &Event) -> Account {
    match (after, event) {
        (_, Event::AccountOpened { .. }) => Account::Unopened,
        (Account::Open { owner_id, balance }, _) => Account::Open {
            owner_id: *owner_id,
            balance: i64::try_from(i128::from(*balance) - event.money_moved()).unwrap_or(*balance),
        },
        (Account::Closed { owner_id }, Event::AccountClosed) => Account::Open {
            owner_id: *owner_id,
            balance: 0,
        },
        (state, _) => state.clone(),
    }
}

#[async_trait]
impl Decorator for BuggyStore {
    fn inner(&self) -> &dyn EventStore {
        &*self.inner
    }

    async fn load(
        &self,
        account: AccountId,
        transaction: Option<TransactionId>,
    ) -> Result<Loaded, StoreError> {
        let mut loaded = self.inner.load(account, transaction).await?;
        match (self.bug, transaction) {
            (PlantedBug::SkipIdempotencyCheck, _) => loaded.transaction = None,
            (PlantedBug::RetryWithoutReload, Some(transaction)) => {
                loaded = self.maybe_stale(account, transaction, loaded);
            }
            _ => {}
        }
        Ok(loaded)
    }

    /// The members one after the other, each through the planted bug.
    async fn append_batch(&self, commits: &[Commit]) -> Vec<Result<(), AppendError>> {
        let mut results = Vec::with_capacity(commits.len());
        for commit in commits {
            results.push(self.append_one(commit).await);
        }
        results
    }
}

#[cfg(test)]
mod tests {
    use accounts::domain::OwnerId;
    use uuid::Uuid;

    use super::*;

    #[test]
    fn state_before_undoes_each_event() {
        let owner_id = OwnerId::from_uuid(Uuid::from_u128(1));
        let open = |balance| Account::Open { owner_id, balance };
        let cases = [
            (
                open(0),
                Event::AccountOpened { owner_id },
                Account::Unopened,
            ),
            (
                open(7),
                Event::MoneyDeposited {
                    amount_deposited: 5,
                    balance: 7,
                    transfer_from: None,
                },
                open(2),
            ),
            (
                open(2),
                Event::MoneyWithdrawn {
                    amount_withdrawn: 5,
                    balance: 2,
                    transfer_to: None,
                },
                open(7),
            ),
            (Account::Closed { owner_id }, Event::AccountClosed, open(0)),
        ];
        for (after, event, before) in cases {
            assert_eq!(state_before(&after, &event), before, "{event:?}");
            assert_eq!(accounts::domain::evolve(before, &event), after);
        }
    }
}
