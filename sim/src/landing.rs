//! When each event landed: a decorator around the durable store that stamps
//! every event it commits with the virtual time of the commit, so that the
//! checker can say which state the store held at any moment of a request's
//! window. It sits right against the durable store (inside every fault
//! wrapper), where a commit really happens; any other simulated store can be
//! wrapped the same way.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use accounts::domain::AccountId;
use accounts::store::{AppendError, Commit, EventStore};
use async_trait::async_trait;
use testkit::{Decorated, Decorator};

/// The landing time of every committed event, by (account, sequence number).
#[derive(Clone, Default)]
pub struct Landings(Arc<Mutex<BTreeMap<(AccountId, u64), Duration>>>);

impl Landings {
    /// When event `sequence_number` of `account` landed, if it did.
    pub fn get(&self, account: AccountId, sequence_number: u64) -> Option<Duration> {
        self.lock().get(&(account, sequence_number)).copied()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<(AccountId, u64), Duration>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

pub struct Stamped {
    inner: Arc<dyn EventStore>,
    landings: Landings,
}

impl Stamped {
    pub fn wrap(inner: Arc<dyn EventStore>, landings: Landings) -> Arc<Decorated<Stamped>> {
        Arc::new(Decorated(Stamped { inner, landings }))
    }
}

#[async_trait]
impl Decorator for Stamped {
    fn inner(&self) -> &dyn EventStore {
        &*self.inner
    }

    async fn append_batch(&self, commits: &[Commit]) -> Vec<Result<(), AppendError>> {
        let results = self.inner.append_batch(commits).await;
        let now = turmoil::sim_elapsed().unwrap_or_default();
        let mut landings = self.landings.lock();
        for (commit, result) in commits.iter().zip(&results) {
            if result.is_ok() {
                for event in &commit.events {
                    landings.insert((event.account_id, event.sequence_number), now);
                }
            }
        }
        results
    }
}
