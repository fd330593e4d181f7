//! Stores that wrap another store: [`Decorator`] (write only what a wrapper
//! changes; every other call goes through — the one place that grows when
//! the store contract grows) and [`InstrumentedStore`], the knobs tests turn:
//! delays, held calls, scripted faults, and counts of what reached the store.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use accounts::domain::{Account, AccountId, TransactionId, replay};
use accounts::store::{
    AppendError, Commit, EventStore, FeedEvent, GroupCommit, Loaded, MemoryStore, PointInTime,
    PoolStatus, RecordedEvent, StoreError,
};
use async_trait::async_trait;
use tokio::sync::watch;
use tokio::time::Instant;

/// The reads of the store contract, as [`Decorator::before_read`] is told.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Read {
    Load,
    LoadAt,
    Events,
    Feed,
    Ping,
}

impl Read {
    /// The store method's name, for traces.
    pub fn name(self) -> &'static str {
        match self {
            Read::Load => "load",
            Read::LoadAt => "load_at",
            Read::Events => "events",
            Read::Feed => "feed",
            Read::Ping => "ping",
        }
    }
}

/// A store that wraps `inner()`: each method passes the call through unless
/// the decorator overrides it. Wrap it in [`Decorated`] to use it as an
/// `EventStore`.
#[async_trait]
pub trait Decorator: Send + Sync + 'static {
    fn inner(&self) -> &dyn EventStore;

    /// Runs before each read the decorator does not override (a delay, a
    /// fault: an error is the read's answer); by default nothing.
    async fn before_read(&self, _read: Read) -> Result<(), StoreError> {
        Ok(())
    }

    async fn load(
        &self,
        account: AccountId,
        transaction: Option<TransactionId>,
    ) -> Result<Loaded, StoreError> {
        self.before_read(Read::Load).await?;
        self.inner().load(account, transaction).await
    }

    async fn load_at(&self, account: AccountId, at: PointInTime) -> Result<Loaded, StoreError> {
        self.before_read(Read::LoadAt).await?;
        self.inner().load_at(account, at).await
    }

    async fn events(
        &self,
        account: AccountId,
        from: u64,
        limit: usize,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        self.before_read(Read::Events).await?;
        self.inner().events(account, from, limit).await
    }

    async fn feed(&self, after: u64, limit: usize) -> Result<Vec<FeedEvent>, StoreError> {
        self.before_read(Read::Feed).await?;
        self.inner().feed(after, limit).await
    }

    /// Every append arrives here: `EventStore::append` is a batch of one.
    async fn append_batch(&self, commits: &[Commit]) -> Vec<Result<(), AppendError>> {
        self.inner().append_batch(commits).await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.before_read(Read::Ping).await?;
        self.inner().ping().await
    }

    fn pool_status(&self) -> Option<PoolStatus> {
        self.inner().pool_status()
    }

    /// Batched, whatever the inner store says: a decorator's appends may
    /// wait (delays, faults, a second write) where the inner store's do
    /// not, and a direct append dropped at such a wait would stop the
    /// decorator half-way. A decorator whose appends are the inner store's
    /// may pass the hint through.
    fn group_commit(&self) -> GroupCommit {
        GroupCommit::Batch
    }
}

/// A [`Decorator`] as an `EventStore` (the orphan rule forbids implementing
/// the library's trait for every decorator directly).
pub struct Decorated<D>(pub D);

impl<D> std::ops::Deref for Decorated<D> {
    type Target = D;

    fn deref(&self) -> &D {
        &self.0
    }
}

#[async_trait]
impl<D: Decorator> EventStore for Decorated<D> {
    async fn load(
        &self,
        account: AccountId,
        transaction: Option<TransactionId>,
    ) -> Result<Loaded, StoreError> {
        self.0.load(account, transaction).await
    }

    async fn load_at(&self, account: AccountId, at: PointInTime) -> Result<Loaded, StoreError> {
        self.0.load_at(account, at).await
    }

    async fn events(
        &self,
        account: AccountId,
        from: u64,
        limit: usize,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        self.0.events(account, from, limit).await
    }

    async fn feed(&self, after: u64, limit: usize) -> Result<Vec<FeedEvent>, StoreError> {
        self.0.feed(after, limit).await
    }

    async fn append_batch(&self, commits: &[Commit]) -> Vec<Result<(), AppendError>> {
        self.0.append_batch(commits).await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.0.ping().await
    }

    fn pool_status(&self) -> Option<PoolStatus> {
        self.0.pool_status()
    }

    fn group_commit(&self) -> GroupCommit {
        self.0.group_commit()
    }
}

/// The whole stored stream of `account`, checked: its sequence numbers run
/// 1, 2, 3… without a gap, and its events fold to `state`.
pub async fn checked_stream(
    store: &dyn EventStore,
    account: AccountId,
    state: &Account,
) -> Vec<RecordedEvent> {
    let events = store.events(account, 1, usize::MAX).await.expect("events");
    let sequences: Vec<u64> = events.iter().map(|e| e.sequence_number).collect();
    assert_eq!(sequences, (1..=events.len() as u64).collect::<Vec<_>>());
    let folded = replay(Account::Unopened, events.iter().map(|e| &e.event));
    assert_eq!(&folded, state, "the stream of {account} folds to its state");
    events
}

/// What an [`InstrumentedStore`] does to one call instead of (or before)
/// passing it through.
#[derive(Clone, Debug)]
pub enum Fault {
    /// Another writer got there first: refused, nothing written.
    Conflict,
    /// The store cannot be reached: nothing written.
    Unavailable,
    /// The commit is written, but the caller is told the outcome is unknown.
    AmbiguousLanded,
    /// Nothing is written, and the caller is told the outcome is unknown.
    AmbiguousLost,
    /// This commit of another writer is written first; then the call goes
    /// through (and the store itself decides whether it still fits).
    OtherWriterFirst(Box<Commit>),
    /// The call never answers.
    Hang,
}

/// The knobs of one kind of call (reads or appends).
#[derive(Default)]
struct Knobs {
    delay: Duration,
    /// Faults for the next calls, one each, in order.
    script: VecDeque<Fault>,
    /// The fault of every call once the script is used up.
    always: Option<Fault>,
}

impl Knobs {
    fn next_fault(&mut self) -> Option<Fault> {
        self.script.pop_front().or_else(|| self.always.clone())
    }
}

/// One kind of call's knobs and counts, and the gate that holds it.
struct Calls {
    knobs: Mutex<Knobs>,
    /// Calls that reached the store (before any gate or delay).
    entered: watch::Sender<usize>,
    /// Whether calls may proceed past the gate.
    open: watch::Sender<bool>,
}

impl Default for Calls {
    fn default() -> Self {
        Calls {
            knobs: Mutex::default(),
            entered: watch::Sender::new(0),
            open: watch::Sender::new(true),
        }
    }
}

impl Calls {
    fn knobs(&self) -> MutexGuard<'_, Knobs> {
        self.knobs.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Counts `count` calls in (a batch counts each member), waits at the
    /// gate and for the delay, and returns the fault to inject, if any.
    async fn enter(&self, count: usize) -> Option<Fault> {
        self.entered.send_modify(|n| *n += count);
        let mut open = self.open.subscribe();
        let _ = open.wait_for(|open| *open).await;
        let (delay, fault) = {
            let mut knobs = self.knobs();
            (knobs.delay, knobs.next_fault())
        };
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        if let Some(Fault::Hang) = fault {
            std::future::pending::<()>().await;
        }
        fault
    }

    async fn reached(&self, count: usize) {
        let mut entered = self.entered.subscribe();
        let _ = entered.wait_for(|n| *n >= count).await;
    }
}

/// One append that reached the store: when, and what it asked to write.
#[derive(Clone, Debug)]
pub struct AppendCall {
    pub at: Instant,
    pub commit: Commit,
}

/// An [`InstrumentedStore`] as tests hold it: usable as an `EventStore`,
/// its knobs reached through `Deref`.
pub type Instrumented = Arc<Decorated<InstrumentedStore>>;

/// A store (by default a fresh `MemoryStore`) with knobs for tests, all
/// settable while it serves: delays before reads or appends (before the
/// write, so a caller that gives up cancels it), calls held until released,
/// faults scripted per call or for every call, and counts of what reached it.
pub struct InstrumentedStore {
    inner: Arc<dyn EventStore>,
    reads: Calls,
    appends: Calls,
    appends_applied: AtomicUsize,
    append_log: Mutex<Vec<AppendCall>>,
    batch_log: Mutex<Vec<usize>>,
    /// Answered by [`EventStore::group_commit`].
    direct: AtomicBool,
}

impl InstrumentedStore {
    pub fn new() -> Instrumented {
        InstrumentedStore::over(Arc::new(MemoryStore::new()))
    }

    pub fn over(inner: Arc<dyn EventStore>) -> Instrumented {
        Arc::new(Decorated(InstrumentedStore {
            inner,
            reads: Calls::default(),
            appends: Calls::default(),
            appends_applied: AtomicUsize::new(0),
            append_log: Mutex::default(),
            batch_log: Mutex::default(),
            direct: AtomicBool::new(false),
        }))
    }

    /// The wrapped store, reached without any knob.
    pub fn bypass(&self) -> &Arc<dyn EventStore> {
        &self.inner
    }

    /// Engines built after this append without batching
    /// ([`GroupCommit::Direct`], as over the memory store), so that tests
    /// can turn the knobs on that path too. By default appends are batched:
    /// the knobs make them wait, as a database's do.
    pub fn append_directly(&self) {
        self.direct.store(true, Ordering::SeqCst);
    }

    pub fn delay_reads(&self, delay: Duration) {
        self.reads.knobs().delay = delay;
    }

    pub fn delay_appends(&self, delay: Duration) {
        self.appends.knobs().delay = delay;
    }

    /// The next reads (loads, points in time, event and feed pages, pings)
    /// suffer these faults, one each.
    pub fn script_reads(&self, faults: impl IntoIterator<Item = Fault>) {
        self.reads.knobs().script.extend(faults);
    }

    /// The next appends suffer these faults, one each.
    pub fn script_appends(&self, faults: impl IntoIterator<Item = Fault>) {
        self.appends.knobs().script.extend(faults);
    }

    /// Every read after the script suffers `fault` (`None`: none).
    pub fn fail_reads(&self, fault: Option<Fault>) {
        self.reads.knobs().always = fault;
    }

    /// Every append after the script suffers `fault` (`None`: none).
    pub fn fail_appends(&self, fault: Option<Fault>) {
        self.appends.knobs().always = fault;
    }

    /// Reads wait (after being counted) until [`InstrumentedStore::release_reads`].
    pub fn hold_reads(&self) {
        self.reads.open.send_replace(false);
    }

    pub fn release_reads(&self) {
        self.reads.open.send_replace(true);
    }

    /// Appends wait (after being counted, before writing) until
    /// [`InstrumentedStore::release_appends`].
    pub fn hold_appends(&self) {
        self.appends.open.send_replace(false);
    }

    pub fn release_appends(&self) {
        self.appends.open.send_replace(true);
    }

    /// Reads that reached the store so far.
    pub fn reads(&self) -> usize {
        *self.reads.entered.borrow()
    }

    /// Appends that reached the store so far (held, failed or written), each
    /// member of a batch counted.
    pub fn appends_attempted(&self) -> usize {
        *self.appends.entered.borrow()
    }

    /// Appends the wrapped store accepted.
    pub fn appends_applied(&self) -> usize {
        self.appends_applied.load(Ordering::SeqCst)
    }

    /// Waits until `count` reads have reached the store.
    pub async fn reads_reached(&self, count: usize) {
        self.reads.reached(count).await;
    }

    /// Waits until `count` appends have reached the store.
    pub async fn appends_reached(&self, count: usize) {
        self.appends.reached(count).await;
    }

    /// Every append that got past the gate and delay, in order, one per
    /// member of a batch.
    pub fn append_calls(&self) -> Vec<AppendCall> {
        self.append_log
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The number of members of every `append_batch` that got past the gate
    /// and delay, in order (a single append is a batch of one).
    pub fn batch_sizes(&self) -> Vec<usize> {
        self.batch_log
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The members the wrapped store accepted are counted as applied.
    async fn write(&self, commits: &[Commit]) -> Vec<Result<(), AppendError>> {
        let results = self.inner.append_batch(commits).await;
        let applied = results.iter().filter(|result| result.is_ok()).count();
        self.appends_applied.fetch_add(applied, Ordering::SeqCst);
        results
    }

    fn log(&self, commits: &[Commit]) {
        let at = Instant::now();
        let calls = commits.iter().map(|commit| AppendCall {
            at,
            commit: commit.clone(),
        });
        self.append_log
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend(calls);
        self.batch_log
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(commits.len());
    }
}

fn unavailable() -> StoreError {
    StoreError::Unavailable("injected by the test".to_owned())
}

/// A fault on a read: anything but `Unavailable` (or `Hang`, already
/// waited out) lets the read through.
fn read_fault(fault: Option<Fault>) -> Result<(), StoreError> {
    match fault {
        Some(Fault::Unavailable) => Err(unavailable()),
        _ => Ok(()),
    }
}

#[async_trait]
impl Decorator for InstrumentedStore {
    fn inner(&self) -> &dyn EventStore {
        &*self.inner
    }

    async fn before_read(&self, _read: Read) -> Result<(), StoreError> {
        read_fault(self.reads.enter(1).await)
    }

    fn group_commit(&self) -> GroupCommit {
        if self.direct.load(Ordering::SeqCst) {
            GroupCommit::Direct
        } else {
            GroupCommit::Batch
        }
    }

    /// One fault per batch, as one database transaction suffers it: every
    /// member alike, except that a landed-but-ambiguous batch leaves the
    /// members the store refused refused.
    async fn append_batch(&self, commits: &[Commit]) -> Vec<Result<(), AppendError>> {
        let fault = self.appends.enter(commits.len()).await;
        self.log(commits);
        let every = |error: AppendError| vec![Err(error); commits.len()];
        match fault {
            None | Some(Fault::Hang) => self.write(commits).await,
            Some(Fault::Conflict) => every(AppendError::Conflict("injected by the test".into())),
            Some(Fault::Unavailable) => every(unavailable().into()),
            Some(Fault::AmbiguousLost) => every(AppendError::Ambiguous("injected: lost".into())),
            Some(Fault::AmbiguousLanded) => {
                let landed = || AppendError::Ambiguous("injected: landed".into());
                let results = self.write(commits).await;
                results.into_iter().map(|r| r.and(Err(landed()))).collect()
            }
            Some(Fault::OtherWriterFirst(other)) => {
                self.inner
                    .append(&other)
                    .await
                    .expect("the other writer's commit fits");
                self.write(commits).await
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use accounts::domain::{AccountId, OwnerId, TransactionId};
    use uuid::Uuid;

    use super::*;
    use crate::commits::{opened, single};

    fn account(n: u128) -> AccountId {
        AccountId::from_uuid(Uuid::from_u128(n))
    }

    fn opening(n: u128) -> Commit {
        let owner = OwnerId::from_uuid(Uuid::from_u128(0x0e));
        single(
            account(n),
            1,
            TransactionId::from_uuid(Uuid::from_u128(n)),
            opened(owner),
        )
    }

    #[tokio::test]
    async fn a_landed_ambiguous_batch_keeps_its_refused_members_refused() {
        let store = InstrumentedStore::new();
        store.append(&opening(1)).await.unwrap();
        store.script_appends([Fault::AmbiguousLanded]);
        let results = store.append_batch(&[opening(2), opening(1)]).await;
        assert!(
            matches!(results[0], Err(AppendError::Ambiguous(_))),
            "{results:?}"
        );
        assert!(
            matches!(results[1], Err(AppendError::Conflict(_))),
            "{results:?}"
        );
        let landed = store.bypass().load(account(2), None).await.unwrap();
        assert_eq!(landed.events.len(), 1, "the ambiguous member landed");
        assert_eq!(store.appends_attempted(), 3, "each member counted");
        assert_eq!(store.appends_applied(), 2);
        assert_eq!(store.append_calls().len(), 3);
        assert_eq!(store.batch_sizes(), [1, 2]);
    }

    #[tokio::test]
    async fn every_kind_of_read_goes_through_the_read_knobs() {
        let store = InstrumentedStore::new();
        store.fail_reads(Some(Fault::Unavailable));
        assert!(store.load(account(1), None).await.is_err());
        let at = PointInTime::Version(1);
        assert!(store.load_at(account(1), at).await.is_err());
        assert!(store.events(account(1), 1, 10).await.is_err());
        assert!(store.feed(0, 10).await.is_err());
        assert!(store.ping().await.is_err());
        assert_eq!(store.reads(), 5);
        store.fail_reads(None);
        assert_eq!(store.feed(0, 10).await, Ok(Vec::new()));
    }
}
