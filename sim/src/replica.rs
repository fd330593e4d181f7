//! The database as a primary with a standby, inside the database host.
//! Every commit the primary applies is replicated to the standby:
//! synchronously, acknowledged only once the standby has it, so that a
//! failover never loses an acknowledged commit; or, as the planted bug
//! `async-replication`, acknowledged at once and applied to the standby a
//! lag later, so that a failover loses what had not reached it yet, and
//! the promoted standby hands out again feed positions readers were
//! already given (a rewind).
//!
//! A failover promotes the standby; the old primary rejoins as the new
//! standby, rebuilt from the new primary (what `pg_rewind` or a base backup
//! does). Connections made before a promotion belong to the demoted node,
//! and a primary fenced while a failover is under way is cut off from its
//! standby: both refuse every call (see `Database`), as a read-only node
//! refuses writes with SQLSTATE 25006, which the real stores answer as
//! unavailable — a node that took writes there would lose them at the
//! promotion.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use accounts::domain::{AccountId, TransactionId};
use accounts::store::{
    AppendError, Commit, EventStore, FeedEvent, Loaded, MemoryStore, PointInTime, RecordedEvent,
    StoreError,
};
use async_trait::async_trait;

use crate::check::at_once;
use crate::trace::Trace;

/// How a commit reaches the standby.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Replication {
    /// Before the commit is acknowledged.
    Sync,
    /// After: the standby applies it this long after the primary did.
    Async { lag: Duration },
}

/// One database node: its data, and every commit it applied, in order (to
/// rebuild a standby from it).
struct Node {
    store: Arc<MemoryStore>,
    applied: Vec<Commit>,
}

impl Node {
    fn empty() -> Node {
        Node {
            store: Arc::new(MemoryStore::new()),
            applied: Vec::new(),
        }
    }

    /// Applies commits that the primary applied: they must fit here too.
    fn replay(&mut self, commits: &[Commit]) {
        for commit in commits {
            let result = at_once(self.store.append(commit));
            assert!(
                result.is_ok(),
                "the standby refused a commit the primary applied: {result:?}"
            );
        }
        self.applied.extend_from_slice(commits);
    }
}

struct Nodes {
    primary: Node,
    standby: Node,
    /// `Async`: commits the primary acknowledged and the standby has not
    /// applied yet, with the virtual time each is due there.
    backlog: VecDeque<(Duration, Commit)>,
    /// Bumped by every promotion: a connection made in an earlier epoch is
    /// one to a demoted node.
    epoch: u64,
    /// The primary is cut off from its standby while a failover is under way.
    fenced: bool,
}

/// What a promotion did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Promotion {
    /// Commits the old primary had acknowledged and the standby never got.
    pub lost_commits: usize,
}

pub struct Cluster {
    replication: Replication,
    nodes: Mutex<Nodes>,
    trace: Trace,
}

impl Cluster {
    pub fn new(replication: Replication, trace: Trace) -> Cluster {
        Cluster {
            replication,
            nodes: Mutex::new(Nodes {
                primary: Node::empty(),
                standby: Node::empty(),
                backlog: VecDeque::new(),
                epoch: 0,
                fenced: false,
            }),
            trace,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Nodes> {
        self.nodes.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The current primary's data: what readers see, and the final log.
    pub fn primary(&self) -> Arc<MemoryStore> {
        self.lock().primary.store.clone()
    }

    pub fn epoch(&self) -> u64 {
        self.lock().epoch
    }

    /// Whether a connection made in `epoch` reaches a primary that takes
    /// calls: not a demoted node, not a fenced one.
    pub fn serves(&self, epoch: u64) -> bool {
        let nodes = self.lock();
        !nodes.fenced && nodes.epoch == epoch
    }

    /// A failover begins: the primary is cut off and fenced.
    pub fn fence(&self) {
        self.lock().fenced = true;
    }

    /// The standby becomes the primary (whatever the backlog had not
    /// delivered by `now` is lost), and the old primary rejoins as the
    /// standby, rebuilt from the new primary.
    pub fn promote(&self, now: Duration) -> Promotion {
        let mut nodes = self.lock();
        deliver(&mut nodes, now);
        let lost_commits = std::mem::take(&mut nodes.backlog).len();
        nodes.primary = std::mem::replace(&mut nodes.standby, Node::empty());
        let applied = nodes.primary.applied.clone();
        nodes.standby.replay(&applied);
        nodes.epoch += 1;
        nodes.fenced = false;
        Promotion { lost_commits }
    }

    fn apply(&self, commits: &[Commit]) -> Vec<Result<(), AppendError>> {
        let now = turmoil::sim_elapsed().unwrap_or_default();
        let mut nodes = self.lock();
        let results = at_once(nodes.primary.store.append_batch(commits));
        let landed: Vec<Commit> = commits
            .iter()
            .zip(&results)
            .filter(|(_, result)| result.is_ok())
            .map(|(commit, _)| commit.clone())
            .collect();
        nodes.primary.applied.extend_from_slice(&landed);
        match self.replication {
            Replication::Sync => nodes.standby.replay(&landed),
            Replication::Async { lag } => {
                deliver(&mut nodes, now);
                let due = now + lag;
                nodes.backlog.extend(landed.into_iter().map(|c| (due, c)));
                self.trace.log(|| {
                    format!(
                        "db: {} commit(s) acknowledged before the standby has them",
                        nodes.backlog.len()
                    )
                });
            }
        }
        results
    }
}

/// Applies to the standby what the backlog holds for it by `now`.
fn deliver(nodes: &mut Nodes, now: Duration) {
    while nodes.backlog.front().is_some_and(|(due, _)| *due <= now) {
        if let Some((_, commit)) = nodes.backlog.pop_front() {
            nodes.standby.replay(std::slice::from_ref(&commit));
        }
    }
}

/// Every call goes to the current primary; the database host decides
/// whether the connection it came on still reaches one.
#[async_trait]
impl EventStore for Cluster {
    async fn load(
        &self,
        account: AccountId,
        transaction: Option<TransactionId>,
    ) -> Result<Loaded, StoreError> {
        self.primary().load(account, transaction).await
    }

    async fn load_at(&self, account: AccountId, at: PointInTime) -> Result<Loaded, StoreError> {
        self.primary().load_at(account, at).await
    }

    async fn events(
        &self,
        account: AccountId,
        from: u64,
        limit: usize,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        self.primary().events(account, from, limit).await
    }

    async fn feed(&self, after: u64, limit: usize) -> Result<Vec<FeedEvent>, StoreError> {
        self.primary().feed(after, limit).await
    }

    async fn append_batch(&self, commits: &[Commit]) -> Vec<Result<(), AppendError>> {
        self.apply(commits)
    }

    async fn ping(&self) -> Result<(), StoreError> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use accounts::domain::OwnerId;
    use testkit::commits::{deposited, opened, single};
    use uuid::Uuid;

    use super::*;

    fn id(n: u128) -> Uuid {
        Uuid::from_u128(n)
    }

    /// a0 opened, then a deposit of 5: two commits, positions 1 and 2.
    fn commits() -> [Commit; 2] {
        let a = AccountId::from_uuid(id(1));
        let owner = OwnerId::from_uuid(id(2));
        [
            single(a, 1, TransactionId::from_uuid(id(3)), opened(owner)),
            single(a, 2, TransactionId::from_uuid(id(4)), deposited(5, 5)),
        ]
    }

    fn feed_after(cluster: &Cluster, promoted_at: Duration) -> Vec<u64> {
        for commit in commits() {
            assert_eq!(at_once(EventStore::append(cluster, &commit)), Ok(()));
        }
        cluster.promote(promoted_at);
        let feed = at_once(cluster.primary().feed(0, 10)).expect("the memory store answers");
        feed.iter().map(|e| e.position).collect()
    }

    #[test]
    fn synchronous_replication_keeps_every_acknowledged_commit_through_a_failover() {
        let cluster = Cluster::new(Replication::Sync, Trace::disabled());
        assert_eq!(feed_after(&cluster, Duration::ZERO), [1, 2]);
        // The rebuilt standby has it all too: a second failover keeps it.
        cluster.promote(Duration::ZERO);
        let feed = at_once(cluster.primary().feed(0, 10)).expect("the memory store answers");
        assert_eq!(feed.len(), 2);
    }

    #[test]
    fn asynchronous_replication_loses_what_the_standby_had_not_received() {
        // Outside a simulation the commits are applied at time zero.
        let lag = Duration::from_millis(100);
        let lagging = Cluster::new(Replication::Async { lag }, Trace::disabled());
        assert_eq!(feed_after(&lagging, lag / 2), Vec::<u64>::new());
        let caught_up = Cluster::new(Replication::Async { lag }, Trace::disabled());
        assert_eq!(feed_after(&caught_up, lag), [1, 2]);
    }

    #[test]
    fn a_fenced_or_demoted_primary_serves_no_connection() {
        let cluster = Cluster::new(Replication::Sync, Trace::disabled());
        let before = cluster.epoch();
        assert!(cluster.serves(before));
        cluster.fence();
        assert!(!cluster.serves(before));
        cluster.promote(Duration::ZERO);
        assert!(!cluster.serves(before), "the demoted node's connections");
        assert!(cluster.serves(cluster.epoch()));
    }
}
