//! Commands in flight on this instance, so that a hot account is written at
//! the speed of group commit instead of one commit per round trip.
//!
//! Without this, every command on one account that arrives while another
//! is being appended is decided on the same cached version, and all but one
//! member of each batch conflict and go round again. Here:
//!
//! - **Chains.** A commit being appended leaves a *tail* on each account it
//!   touches: the state, version and transactionIds the account will have
//!   if it lands. The next command on the account is decided on the tail,
//!   exactly as on a cached entry (a guess: only an accepted append
//!   answers), and its commit goes at the following sequence numbers,
//!   *chained onto* the one before. The group committer sends a chained
//!   commit only behind its predecessor in the same batch (where the store
//!   refuses it if the predecessor is refused, see `store::rules`) or after
//!   its predecessor landed; otherwise it refuses it as a conflict, and the
//!   command is decided again from a load. So no commit ever lands on a
//!   state it was not decided on, even when another writer took its
//!   predecessor's place.
//! - **Claims.** A client's transactionId is claimed for the whole of its
//!   request: an identical request (a client's retry while the first is
//!   still running, or the same request sent twice at once) waits for the
//!   first to finish and is then answered from what it left — "already
//!   applied", without conflicting with it. The claim is also what makes a
//!   tail's transactionIds safe to answer from: the only transactionId a
//!   request answers by is its own, and while it holds the claim no commit
//!   of another request carries it.
//!
//! A [`Link`] is one commit's outcome as this instance learns it: set by
//! the committer when the store answers, and by the engine (to "not landed")
//! when it stops waiting, whichever comes first; the first word stays.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::watch;

use super::cache::CachedAccount;
use crate::domain::{AccountId, TransactionId};

/// One in-flight commit's outcome: `None` until known, then whether it
/// landed.
#[derive(Debug)]
pub struct Link {
    outcome: watch::Sender<Option<bool>>,
}

impl Link {
    pub fn new() -> Arc<Link> {
        Arc::new(Link {
            outcome: watch::Sender::new(None),
        })
    }

    /// Records the outcome, unless one is recorded already.
    pub fn settle(&self, landed: bool) {
        self.outcome.send_if_modified(|outcome| match outcome {
            Some(_) => false,
            None => {
                *outcome = Some(landed);
                true
            }
        });
    }

    pub fn outcome(&self) -> Option<bool> {
        *self.outcome.borrow()
    }

    /// Waits until the outcome is known.
    pub async fn settled(&self) {
        let mut outcome = self.outcome.subscribe();
        // The sender is `self`, alive while we wait: the wait cannot fail.
        let _ = outcome.wait_for(Option::is_some).await;
    }
}

/// What the next command on an account is decided on while a commit on it
/// is in flight.
struct Tail {
    after: CachedAccount,
    link: Arc<Link>,
}

#[derive(Default)]
struct Inner {
    tails: HashMap<AccountId, Tail>,
    /// The claimed transactionIds; waiters watch for the sender's drop.
    claims: HashMap<TransactionId, watch::Receiver<()>>,
}

/// The engine's tails and claims, behind one lock: reading a tail and
/// settling the commit that left it must not interleave.
#[derive(Default)]
pub struct InFlight {
    inner: Mutex<Inner>,
}

/// A held claim on a transactionId, released when dropped (also when the
/// request is cancelled).
pub struct Claim<'a> {
    in_flight: &'a InFlight,
    transaction_id: TransactionId,
    _held: watch::Sender<()>,
}

impl Drop for Claim<'_> {
    fn drop(&mut self) {
        self.in_flight.lock().claims.remove(&self.transaction_id);
        // `_held` drops after this, waking the waiters.
    }
}

impl InFlight {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Claims `transaction_id`, first waiting for every request that holds it.
    pub async fn claim(&self, transaction_id: TransactionId) -> Claim<'_> {
        loop {
            let mut held = {
                let mut inner = self.lock();
                match inner.claims.get(&transaction_id) {
                    Some(held) => held.clone(),
                    None => {
                        let (sender, receiver) = watch::channel(());
                        inner.claims.insert(transaction_id, receiver);
                        return Claim {
                            in_flight: self,
                            transaction_id,
                            _held: sender,
                        };
                    }
                }
            };
            // Ends (with an error) when the holder's claim is dropped.
            while held.changed().await.is_ok() {}
        }
    }

    /// The account as the commit in flight on it leaves it, with that
    /// commit's link; `None` when nothing is in flight on it, or what is
    /// did not land.
    pub fn tail(&self, account_id: AccountId) -> Option<(CachedAccount, Arc<Link>)> {
        let inner = self.lock();
        let tail = inner.tails.get(&account_id)?;
        (tail.link.outcome() != Some(false)).then(|| (tail.after.clone(), tail.link.clone()))
    }

    /// Leaves `after` as the tails of a commit in flight (its `link`),
    /// unless a commit it is chained onto is already known not to have
    /// landed: then it cannot land either, and nothing may be decided on it.
    pub fn begin(&self, after: &[CachedAccount], link: &Arc<Link>, chained_onto: &[Arc<Link>]) {
        let mut inner = self.lock();
        if chained_onto
            .iter()
            .any(|link| link.outcome() == Some(false))
        {
            return;
        }
        for account in after {
            let tail = Tail {
                after: account.clone(),
                link: link.clone(),
            };
            inner.tails.insert(account.account_id, tail);
        }
    }

    /// The commit of `link` on `accounts` is settled. Landed: its tails give
    /// way to the cache, unless later commits left theirs. Not landed: every
    /// tail on those accounts goes, since any later one was decided on it
    /// (or, decided on a load, is merely dropped as a guess).
    pub fn end(&self, accounts: &[CachedAccount], link: &Arc<Link>, landed: bool) {
        let mut inner = self.lock();
        for account in accounts {
            let ours = inner
                .tails
                .get(&account.account_id)
                .is_some_and(|tail| Arc::ptr_eq(&tail.link, link));
            if ours || !landed {
                inner.tails.remove(&account.account_id);
            }
        }
    }

    /// Tails and claims held now.
    #[cfg(test)]
    fn len(&self) -> (usize, usize) {
        let inner = self.lock();
        (inner.tails.len(), inner.claims.len())
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use uuid::Uuid;

    use super::*;
    use crate::domain::{Account, OwnerId};

    fn account(version: u64) -> CachedAccount {
        CachedAccount {
            account_id: AccountId::from_uuid(Uuid::from_u128(1)),
            state: Account::Open {
                owner_id: OwnerId::from_uuid(Uuid::from_u128(2)),
                balance: version as i64,
            },
            version,
            recorded_until: None,
            transactions: Vec::new(),
        }
    }

    #[test]
    fn the_first_outcome_stays() {
        let link = Link::new();
        assert_eq!(link.outcome(), None);
        link.settle(false);
        link.settle(true);
        assert_eq!(link.outcome(), Some(false));
    }

    #[test]
    fn a_tail_lasts_until_its_commit_settles_and_a_failure_takes_later_ones_too() {
        let in_flight = InFlight::default();
        let (first, second) = (Link::new(), Link::new());
        in_flight.begin(&[account(1)], &first, &[]);
        assert_eq!(in_flight.tail(account(0).account_id).unwrap().0.version, 1);
        in_flight.begin(&[account(2)], &second, std::slice::from_ref(&first));
        first.settle(true);
        in_flight.end(&[account(1)], &first, true);
        let (tail, link) = in_flight.tail(account(0).account_id).unwrap();
        assert_eq!(tail.version, 2, "a later commit's tail stays");
        assert!(Arc::ptr_eq(&link, &second));
        second.settle(false);
        assert!(
            in_flight.tail(account(0).account_id).is_none(),
            "not landed"
        );
        in_flight.end(&[account(2)], &second, false);
        assert_eq!(in_flight.len(), (0, 0));
    }

    #[test]
    fn nothing_is_chained_onto_a_commit_known_not_to_have_landed() {
        let in_flight = InFlight::default();
        let (refused, next) = (Link::new(), Link::new());
        refused.settle(false);
        in_flight.begin(&[account(2)], &next, &[refused]);
        assert!(in_flight.tail(account(0).account_id).is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn a_claimed_transaction_waits_for_the_holder() {
        let in_flight = Arc::new(InFlight::default());
        let id = TransactionId::from_uuid(Uuid::from_u128(3));
        let held = in_flight.claim(id).await;
        let waiter = tokio::spawn({
            let in_flight = in_flight.clone();
            async move {
                let _claim = in_flight.claim(id).await;
                tokio::time::Instant::now()
            }
        });
        tokio::time::sleep(Duration::from_millis(5)).await;
        assert!(!waiter.is_finished());
        let released = tokio::time::Instant::now();
        drop(held);
        assert_eq!(waiter.await.unwrap(), released);
        assert_eq!(in_flight.len(), (0, 0));
    }
}
