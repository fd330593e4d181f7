//! The per-instance state cache: the latest state, version and recent
//! transactionIds of the accounts an instance serves, so that a command on
//! a known account skips the load.
//!
//! An entry is never an authority, only a guess that the store checks: the
//! engine appends what it decided on an entry at the entry's next sequence
//! number, and a stale entry fails the store's sequence check as a
//! conflict, after which the account is loaded and decided again. What the
//! engine may never do is answer anything the store did not confirm from
//! an entry (a refusal, "nothing to do", a read). So an entry must only be
//! *true at its version* — the state the account really had after that
//! event — which holds because entries come from loads and from appends
//! the store accepted, and never from anything else.
//!
//! The cache is a trait so that the simulation can plant a broken one
//! (`sim/src/bugs.rs`) without a test branch in the engine.

use std::sync::Mutex;

use hashlink::LruCache;

use crate::domain::{Account, AccountId, Fingerprint, Timestamp, TransactionId};

/// Default number of accounts an instance keeps: a few MiB at most, and far
/// more than the hot set of a typical instance.
pub const CACHE_ACCOUNTS: usize = 10_000;

/// TransactionIds remembered per account: enough to answer a client's
/// retry of its last few commands without a load; older ones are still
/// found in the store (the append refuses a recorded one, and the reload
/// answers from the record).
pub const RECENT_TRANSACTIONS: usize = 4;

/// One account as an instance last knew it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CachedAccount {
    pub account_id: AccountId,
    pub state: Account,
    /// The sequence number of the last event `state` includes.
    pub version: u64,
    /// The largest recordedAt of its events up to `version` (see `Snapshot`).
    pub recorded_until: Option<Timestamp>,
    /// TransactionIds recorded on the account, latest last, at most
    /// [`RECENT_TRANSACTIONS`].
    pub transactions: Vec<(TransactionId, Fingerprint)>,
}

impl CachedAccount {
    /// The fingerprint recorded with `transaction`, if the entry knows it.
    pub fn recorded(&self, transaction: TransactionId) -> Option<&Fingerprint> {
        self.transactions
            .iter()
            .find(|(id, _)| *id == transaction)
            .map(|(_, fingerprint)| fingerprint)
    }
}

/// What the engine tells its cache and asks of it.
pub trait StateCache: Send + Sync + 'static {
    fn get(&self, account: AccountId) -> Option<CachedAccount>;

    /// What the store showed: kept unless the cache already holds a later
    /// version of the account (loads race with appends).
    fn loaded(&self, entry: CachedAccount);

    /// The accounts a commit would leave, and whether the store accepted
    /// it. Accepted: they are the accounts now. Refused or unknown (a
    /// conflict, an ambiguous or failed append): the cache must forget
    /// those accounts, since what it held was stale or may be.
    fn settled(&self, after: &[CachedAccount], landed: bool);
}

/// A cache that keeps nothing (`--cache-accounts 0`).
pub struct NoCache;

impl StateCache for NoCache {
    fn get(&self, _account: AccountId) -> Option<CachedAccount> {
        None
    }

    fn loaded(&self, _entry: CachedAccount) {}

    fn settled(&self, _after: &[CachedAccount], _landed: bool) {}
}

/// The production cache: least recently used accounts go first.
pub struct LruStateCache {
    entries: Mutex<LruCache<AccountId, CachedAccount>>,
}

impl LruStateCache {
    pub fn new(capacity: usize) -> LruStateCache {
        LruStateCache {
            entries: Mutex::new(LruCache::new(capacity.max(1))),
        }
    }

    fn entries(&self) -> std::sync::MutexGuard<'_, LruCache<AccountId, CachedAccount>> {
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The cache for `capacity` accounts: [`NoCache`] for 0.
    pub fn with_capacity(capacity: usize) -> std::sync::Arc<dyn StateCache> {
        if capacity == 0 {
            std::sync::Arc::new(NoCache)
        } else {
            std::sync::Arc::new(LruStateCache::new(capacity))
        }
    }
}

impl StateCache for LruStateCache {
    fn get(&self, account: AccountId) -> Option<CachedAccount> {
        self.entries().get(&account).cloned()
    }

    fn loaded(&self, mut entry: CachedAccount) {
        let mut entries = self.entries();
        if let Some(held) = entries.get(&entry.account_id) {
            if held.version > entry.version {
                return;
            }
            if held.version == entry.version {
                merge_transactions(&mut entry.transactions, &held.transactions);
            }
        }
        entries.insert(entry.account_id, entry);
    }

    fn settled(&self, after: &[CachedAccount], landed: bool) {
        let mut entries = self.entries();
        for entry in after {
            let later =
                (entries.peek(&entry.account_id)).is_some_and(|held| held.version > entry.version);
            if !landed {
                entries.remove(&entry.account_id);
            } else if !later {
                entries.insert(entry.account_id, entry.clone());
            }
        }
    }
}

/// `older`'s transactions not in `latest` go before them, and the list is
/// cut to the most recent [`RECENT_TRANSACTIONS`].
pub fn merge_transactions(
    latest: &mut Vec<(TransactionId, Fingerprint)>,
    older: &[(TransactionId, Fingerprint)],
) {
    let mut merged: Vec<(TransactionId, Fingerprint)> = older
        .iter()
        .filter(|(id, _)| !latest.iter().any(|(known, _)| known == id))
        .cloned()
        .collect();
    merged.append(latest);
    let excess = merged.len().saturating_sub(RECENT_TRANSACTIONS);
    merged.drain(..excess);
    *latest = merged;
}

#[cfg(test)]
mod tests {
    use uuid::Uuid;

    use super::*;
    use crate::domain::OwnerId;

    fn entry(account: u128, version: u64, balance: i64, txs: &[u128]) -> CachedAccount {
        CachedAccount {
            account_id: AccountId::from_uuid(Uuid::from_u128(account)),
            state: Account::Open {
                owner_id: OwnerId::from_uuid(Uuid::from_u128(9)),
                balance,
            },
            version,
            recorded_until: None,
            transactions: txs
                .iter()
                .map(|n| {
                    (
                        TransactionId::from_uuid(Uuid::from_u128(*n)),
                        Fingerprint(format!("t{n}")),
                    )
                })
                .collect(),
        }
    }

    #[test]
    fn a_load_never_replaces_a_later_version() {
        let cache = LruStateCache::new(4);
        cache.settled(&[entry(1, 5, 50, &[5])], true);
        cache.loaded(entry(1, 4, 40, &[]));
        assert_eq!(
            cache.get(entry(1, 0, 0, &[]).account_id).unwrap().version,
            5
        );
        cache.loaded(entry(1, 6, 60, &[6]));
        let held = cache.get(entry(1, 0, 0, &[]).account_id).unwrap();
        assert_eq!((held.version, held.state.balance()), (6, 60));
    }

    #[test]
    fn a_refused_commit_drops_its_accounts_and_the_least_recently_used_go_first() {
        let cache = LruStateCache::new(2);
        cache.settled(&[entry(1, 1, 0, &[]), entry(2, 1, 0, &[])], true);
        cache.settled(&[entry(1, 2, 5, &[])], false);
        assert_eq!(cache.get(entry(1, 0, 0, &[]).account_id), None);
        cache.loaded(entry(3, 1, 0, &[]));
        cache.get(entry(3, 0, 0, &[]).account_id);
        cache.loaded(entry(4, 1, 0, &[]));
        assert_eq!(cache.get(entry(2, 0, 0, &[]).account_id), None, "evicted");
        assert!(cache.get(entry(3, 0, 0, &[]).account_id).is_some());
    }

    #[test]
    fn recent_transactions_keep_the_latest_few() {
        let mut latest = entry(1, 9, 0, &[8, 9]).transactions;
        let older = entry(1, 7, 0, &[4, 5, 6, 7, 8]).transactions;
        merge_transactions(&mut latest, &older);
        let ids: Vec<u128> = latest
            .iter()
            .map(|(id, _)| id.as_uuid().as_u128())
            .collect();
        assert_eq!(ids, [6, 7, 8, 9]);
    }
}
