//! Planted bugs for the self-test (`sim --self-test`): broken variants of
//! the service that the checker must catch. Each is a decorator around a
//! seam the service already has — the `EventStore` the engine is given, or
//! its `StateCache`, or the router the instance serves (a layer in front
//! of it) — so the production code carries no test branch, and a bug is
//! chosen at run time (never a Cargo feature, which would unify into the
//! service's build).
//!
//! Each decorator makes the service behave as the bug it is named after
//! would: the engine still runs its real code, but on what the store shows
//! it or does with what it sends, and the client sees what the layer makes
//! of the answer. They are chosen as an attacker of the checker would: most
//! show only in a rare interleaving or on one branch of the contract.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use accounts::domain::{Account, AccountId, Event, TransactionId};
use accounts::engine::{CachedAccount, LruStateCache, StateCache};
use accounts::http::{ApiError, ErrorBody, ErrorCode};
use accounts::store::{
    AppendError, Commit, EventStore, FeedEvent, Loaded, PointInTime, RecordedEvent, Snapshot,
    StoreError,
};
use async_trait::async_trait;
use axum::Router;
use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http_body_util::BodyExt;
use testkit::{Decorated, Decorator};

use crate::plan::mix;
use crate::replica::Replication;

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
    /// Store: an append that lost the race for its sequence number is
    /// renumbered after the winner and written anyway (last writer wins).
    AppendWithoutSequenceCheck,
    /// Idempotency: a transfer's transactionId is found on its source only;
    /// its record on the target is lost.
    RecordOnSourceOnly,
    /// Engine: an append is acknowledged at once and written a little later
    /// (an acknowledgement before durability).
    AckBeforeCommit,
    /// Domain: a withdrawal or transfer of exactly the balance is refused
    /// as insufficient (`<` written `<=`).
    InsufficientAtExactBalance,
    /// Parameters: a zero-amount transfer from an open account answers 204
    /// (as before a transfer had to move at least 1), a free probe of
    /// whether its target exists.
    ZeroTransferAccepted,
    /// Reads: a state read is served from the instance's previous read of
    /// that account (a cache one write behind).
    StaleStateRead,
    /// Reads: an event page that reaches the head of the stream misses the
    /// newest event.
    EventsPageMissesNewest,
    /// Reads: the store-wide feed now and then drops an event from a page
    /// (the one before the page's last, at an odd position), so a reader
    /// resuming after the last position it was given never sees it.
    FeedSkips,
    /// HTTP: an insufficient-balance refusal is answered 204.
    RefusalAsSuccess,
    /// HTTP: a closed account's refusal is answered as an unknown one (404).
    ClosedAsNotFound,
    /// Authentication: deposits skip the owner check (anyone's token may
    /// deposit to anyone's account).
    DepositSkipsOwnerCheck,
    /// Authentication: an owner's token may open an account for another
    /// owner.
    OpenSkipsOwnerCheck,
    /// Authentication: anyone's token reads anyone's account state.
    StateSkipsOwnerCheck,
    /// Authentication: anyone's token reads anyone's event stream.
    EventsSkipsOwnerCheck,
    /// Authentication: anyone's token withdraws from anyone's account.
    WithdrawSkipsOwnerCheck,
    /// Authentication: anyone's token transfers from anyone's account.
    TransferSkipsOwnerCheck,
    /// Authentication: anyone's token closes anyone's account.
    CloseSkipsOwnerCheck,
    /// Authentication: an owner's token reads the store-wide feed.
    FeedSkipsOwnerCheck,
    /// Authentication: anyone's token reads anyone's past state
    /// (`?version=`, `?at=`).
    StateAtSkipsOwnerCheck,
    /// Store, group commit: in a batch with a refused member, the answers
    /// are handed out one member off (the refusal goes to the member after
    /// it), so one command is told it succeeded although nothing of it was
    /// written and another is refused although it landed.
    BatchAnswersMisaligned,
    /// Reads: `?version=n` answers the state after n − 1 events (with the
    /// ETag of n): a past state one event short.
    PastStateOneShort,
    /// Replication: the database's primary acknowledges a commit before its
    /// standby has it (asynchronous replication), so a failover loses
    /// acknowledged commits and the promoted standby reuses feed positions.
    AsyncReplication,
}

/// Where a planted bug sits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Layer {
    Store,
    Idempotency,
    Engine,
    Domain,
    Reads,
    Http,
    Auth,
    Replication,
}

impl PlantedBug {
    pub const ALL: [PlantedBug; 28] = [
        PlantedBug::TransferAsTwoAppends,
        PlantedBug::SkipIdempotencyCheck,
        PlantedBug::RetryWithoutReload,
        PlantedBug::StaleSnapshot,
        PlantedBug::SuccessOnAmbiguousCommit,
        PlantedBug::CacheKeepsRefusedCommit,
        PlantedBug::AppendWithoutSequenceCheck,
        PlantedBug::RecordOnSourceOnly,
        PlantedBug::AckBeforeCommit,
        PlantedBug::InsufficientAtExactBalance,
        PlantedBug::ZeroTransferAccepted,
        PlantedBug::StaleStateRead,
        PlantedBug::EventsPageMissesNewest,
        PlantedBug::FeedSkips,
        PlantedBug::RefusalAsSuccess,
        PlantedBug::ClosedAsNotFound,
        PlantedBug::DepositSkipsOwnerCheck,
        PlantedBug::OpenSkipsOwnerCheck,
        PlantedBug::StateSkipsOwnerCheck,
        PlantedBug::EventsSkipsOwnerCheck,
        PlantedBug::WithdrawSkipsOwnerCheck,
        PlantedBug::TransferSkipsOwnerCheck,
        PlantedBug::CloseSkipsOwnerCheck,
        PlantedBug::FeedSkipsOwnerCheck,
        PlantedBug::StateAtSkipsOwnerCheck,
        PlantedBug::BatchAnswersMisaligned,
        PlantedBug::PastStateOneShort,
        PlantedBug::AsyncReplication,
    ];

    pub fn layer(self) -> Layer {
        match self {
            PlantedBug::TransferAsTwoAppends
            | PlantedBug::StaleSnapshot
            | PlantedBug::AppendWithoutSequenceCheck
            | PlantedBug::BatchAnswersMisaligned => Layer::Store,
            PlantedBug::SkipIdempotencyCheck | PlantedBug::RecordOnSourceOnly => Layer::Idempotency,
            PlantedBug::RetryWithoutReload
            | PlantedBug::SuccessOnAmbiguousCommit
            | PlantedBug::AckBeforeCommit
            | PlantedBug::CacheKeepsRefusedCommit => Layer::Engine,
            PlantedBug::InsufficientAtExactBalance => Layer::Domain,
            PlantedBug::StaleStateRead
            | PlantedBug::EventsPageMissesNewest
            | PlantedBug::FeedSkips
            | PlantedBug::PastStateOneShort => Layer::Reads,
            PlantedBug::ZeroTransferAccepted
            | PlantedBug::RefusalAsSuccess
            | PlantedBug::ClosedAsNotFound => Layer::Http,
            PlantedBug::DepositSkipsOwnerCheck
            | PlantedBug::OpenSkipsOwnerCheck
            | PlantedBug::StateSkipsOwnerCheck
            | PlantedBug::EventsSkipsOwnerCheck
            | PlantedBug::WithdrawSkipsOwnerCheck
            | PlantedBug::TransferSkipsOwnerCheck
            | PlantedBug::CloseSkipsOwnerCheck
            | PlantedBug::FeedSkipsOwnerCheck
            | PlantedBug::StateAtSkipsOwnerCheck => Layer::Auth,
            PlantedBug::AsyncReplication => Layer::Replication,
        }
    }
}

/// How the database host replicates its commits: synchronously, unless
/// `AsyncReplication` is planted, which acknowledges first and lets the
/// standby lag by a delay the seed picks (long enough for a failover to
/// fall inside it).
pub fn replication(bug: Option<PlantedBug>, seed: u64) -> Replication {
    match bug {
        Some(PlantedBug::AsyncReplication) => Replication::Async {
            lag: Duration::from_millis(100 + mix(seed, 12, 0) % 900),
        },
        _ => Replication::Sync,
    }
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
        last_read: Mutex::default(),
    }))
}

/// The router an instance with `bug` planted serves: the real one, behind
/// a layer for the bugs that live in front of it. `store` is the instance's
/// store, for layers that look at an account; `admin_token` is a token with
/// the admin scope (authentication on).
pub fn wrap_router(
    bug: PlantedBug,
    router: Router,
    store: Arc<dyn EventStore>,
    admin_token: String,
) -> Router {
    let layered = matches!(
        bug,
        PlantedBug::InsufficientAtExactBalance
            | PlantedBug::ZeroTransferAccepted
            | PlantedBug::RefusalAsSuccess
            | PlantedBug::ClosedAsNotFound
    ) || PlantedBug::skipped_owner_check(bug).is_some();
    if !layered {
        return router;
    }
    router.layer(axum::middleware::from_fn(
        move |request: Request, next: Next| {
            let store = store.clone();
            let admin_token = admin_token.clone();
            async move { buggy_layer(bug, store, admin_token, request, next).await }
        },
    ))
}

impl PlantedBug {
    /// The kind of request (see [`request_kind`]) whose owner check `bug`
    /// skips, `None` for the bugs of other layers.
    fn skipped_owner_check(bug: PlantedBug) -> Option<&'static str> {
        Some(match bug {
            PlantedBug::DepositSkipsOwnerCheck => "deposit",
            PlantedBug::OpenSkipsOwnerCheck => "open",
            PlantedBug::StateSkipsOwnerCheck => "state",
            PlantedBug::EventsSkipsOwnerCheck => "events",
            PlantedBug::WithdrawSkipsOwnerCheck => "withdraw",
            PlantedBug::TransferSkipsOwnerCheck => "transfer",
            PlantedBug::CloseSkipsOwnerCheck => "close",
            PlantedBug::FeedSkipsOwnerCheck => "feed",
            PlantedBug::StateAtSkipsOwnerCheck => "state-at",
            _ => return None,
        })
    }
}

/// What an API request does, as a layer in front of the router reads it
/// from its method and target: `open`, `state`, `state-at` (`?version=` or
/// `?at=`), `events`, `feed`, or the money operation's kind, or `close`.
fn request_kind(request: &Request) -> Option<&'static str> {
    let path = request.uri().path();
    if path.starts_with("/api/events") {
        return Some("feed");
    }
    let rest = path.strip_prefix("/api/account/")?;
    let query = request.uri().query().unwrap_or_default();
    let past = query
        .split('&')
        .any(|p| p.starts_with("version=") || p.starts_with("at="));
    match (request.method(), rest.split_once('/')) {
        (&Method::POST, None) => Some("open"),
        (&Method::GET, None) if past => Some("state-at"),
        (&Method::GET, None) => Some("state"),
        (&Method::GET, Some((_, "events"))) => Some("events"),
        (&Method::DELETE, None) => Some("close"),
        (&Method::PUT, _) => operation(request).map(|op| op.kind),
        _ => None,
    }
}

/// A money operation as a layer in front of the router reads it from the
/// request target (either URL style).
struct Operation {
    kind: &'static str,
    account: Option<AccountId>,
    target: Option<AccountId>,
    amount: Option<i64>,
}

fn operation(request: &Request) -> Option<Operation> {
    if request.method() != Method::PUT {
        return None;
    }
    let path = request.uri().path().strip_prefix("/api/account/")?;
    let (account, path_kind) = match path.split_once('/') {
        Some((account, kind)) => (account, Some(kind)),
        None => (path, None),
    };
    let parameters: BTreeMap<&str, &str> = request
        .uri()
        .query()
        .unwrap_or_default()
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .collect();
    let (kind, target, amount) = match path_kind {
        Some("deposit") => ("deposit", None, parameters.get("amount")),
        Some("withdraw") => ("withdraw", None, parameters.get("amount")),
        Some("transfer") => (
            "transfer",
            parameters.get("targetAccount"),
            parameters.get("amount"),
        ),
        Some(_) => return None,
        None if parameters.contains_key("deposit") => ("deposit", None, parameters.get("deposit")),
        None if parameters.contains_key("withdraw") => {
            ("withdraw", None, parameters.get("withdraw"))
        }
        None => (
            "transfer",
            Some(parameters.get("transfer")?),
            parameters.get("amount"),
        ),
    };
    Some(Operation {
        kind,
        account: AccountId::parse(account).ok(),
        target: target.and_then(|t| AccountId::parse(t).ok()),
        amount: amount.and_then(|a| a.parse().ok()),
    })
}

async fn buggy_layer(
    bug: PlantedBug,
    store: Arc<dyn EventStore>,
    admin_token: String,
    mut request: Request,
    next: Next,
) -> Response {
    let operation = operation(&request);
    match (bug, &operation) {
        (PlantedBug::InsufficientAtExactBalance, Some(op))
            if matches!(op.kind, "withdraw" | "transfer") =>
        {
            if let (Some(account), Some(amount)) = (op.account, op.amount)
                && amount > 0
                && let Ok(loaded) = store.load(account, None).await
                && matches!(loaded.fold().0, Account::Open { balance, .. } if balance == amount)
            {
                return ApiError::new(
                    ErrorCode::InsufficientBalance,
                    format!("account {account}: insufficient balance"),
                )
                .into_response();
            }
        }
        (PlantedBug::ZeroTransferAccepted, Some(op))
            if op.kind == "transfer" && op.amount == Some(0) =>
        {
            // Both parties open and distinct: what a zero transfer answered
            // 204 to before, telling that the target exists.
            if let (Some(account), Some(target)) = (op.account, op.target)
                && account != target
                && is_open(&store, account).await
                && is_open(&store, target).await
            {
                return StatusCode::NO_CONTENT.into_response();
            }
        }
        _ if PlantedBug::skipped_owner_check(bug)
            .is_some_and(|kind| request_kind(&request) == Some(kind)) =>
        {
            // The owner check skipped: the request goes on as an admin's.
            if request.headers().contains_key(header::AUTHORIZATION)
                && let Ok(value) = HeaderValue::from_str(&format!("Bearer {admin_token}"))
            {
                request.headers_mut().insert(header::AUTHORIZATION, value);
            }
        }
        _ => {}
    }
    let response = next.run(request).await;
    match bug {
        PlantedBug::RefusalAsSuccess => {
            rewrite_error(response, |code| {
                (code == ErrorCode::InsufficientBalance)
                    .then(|| StatusCode::NO_CONTENT.into_response())
            })
            .await
        }
        PlantedBug::ClosedAsNotFound => {
            rewrite_error(response, |code| {
                (code == ErrorCode::AccountClosed).then(|| {
                    ApiError::new(ErrorCode::AccountNotFound, "account not found").into_response()
                })
            })
            .await
        }
        _ => response,
    }
}

async fn is_open(store: &Arc<dyn EventStore>, account: AccountId) -> bool {
    let loaded = store.load(account, None).await;
    loaded.is_ok_and(|loaded| matches!(loaded.fold().0, Account::Open { .. }))
}

/// Replaces an error answer whose code `replace` picks; other answers pass
/// unchanged.
async fn rewrite_error(
    response: Response,
    replace: impl FnOnce(ErrorCode) -> Option<Response>,
) -> Response {
    if !response.status().is_client_error() {
        return response;
    }
    let (parts, body) = response.into_parts();
    let Ok(bytes) = body.collect().await.map(|b| b.to_bytes()) else {
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    };
    let code = serde_json::from_slice::<ErrorBody>(&bytes)
        .ok()
        .map(|e| e.code);
    match code.and_then(replace) {
        Some(replaced) => replaced,
        None => Response::from_parts(parts, Body::from(bytes)),
    }
}

struct BuggyStore {
    inner: Arc<dyn EventStore>,
    bug: PlantedBug,
    /// For `RetryWithoutReload`: per (account, transactionId), the state the
    /// last load for that request showed, and whether the next load must
    /// show it again (after that request's append failed).
    served: Mutex<BTreeMap<(AccountId, TransactionId), Served>>,
    /// For `StaleStateRead`: per account, what the previous state read got.
    last_read: Mutex<BTreeMap<AccountId, Loaded>>,
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
            PlantedBug::AppendWithoutSequenceCheck => match self.inner.append(commit).await {
                Err(AppendError::Conflict(_)) => self.append_after_head(commit).await,
                other => other,
            },
            PlantedBug::AckBeforeCommit => {
                let (inner, commit) = (self.inner.clone(), commit.clone());
                tokio::spawn(async move {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    let _ = inner.append(&commit).await;
                });
                Ok(())
            }
            _ => self.inner.append(commit).await,
        }
    }

    /// `PastStateOneShort`: the state after n − 1 events, labelled version n.
    async fn one_short(&self, account: AccountId, n: u64) -> Result<Loaded, StoreError> {
        let before = self
            .inner
            .load_at(account, PointInTime::Version(n - 1))
            .await?;
        Ok(Loaded {
            snapshot: Some(Snapshot {
                account_id: account,
                sequence_number: n,
                state: before.fold().0,
                recorded_until: None,
            }),
            events: Vec::new(),
            transaction: None,
        })
    }

    /// `AppendWithoutSequenceCheck`: the commit renumbered to follow what
    /// is there now, and written.
    async fn append_after_head(&self, commit: &Commit) -> Result<(), AppendError> {
        let mut renumbered = commit.clone();
        for account in commit.accounts() {
            let head = self.inner.load(account, None).await?.fold().1;
            for event in renumbered
                .events
                .iter_mut()
                .filter(|e| e.account_id == account)
            {
                event.sequence_number = head + 1;
            }
            renumbered.snapshots.retain(|s| s.account_id != account);
        }
        self.inner.append(&renumbered).await
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

    async fn feed(&self, after: u64, limit: usize) -> Result<Vec<FeedEvent>, StoreError> {
        let mut page = self.inner.feed(after, limit).await?;
        if self.bug == PlantedBug::FeedSkips
            && let Some(index) = page.len().checked_sub(2)
            && page[index].position % 2 == 1
        {
            page.remove(index);
        }
        Ok(page)
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
            (PlantedBug::RecordOnSourceOnly, Some(_)) => {
                let target_side = format!("to={account} ");
                if loaded
                    .transaction
                    .as_ref()
                    .is_some_and(|r| r.fingerprint.0.contains(&target_side))
                {
                    loaded.transaction = None;
                }
            }
            (PlantedBug::StaleStateRead, None) => {
                let mut last = self.last_read.lock().unwrap_or_else(|p| p.into_inner());
                if let Some(previous) = last.insert(account, loaded.clone()) {
                    loaded = previous;
                }
            }
            _ => {}
        }
        Ok(loaded)
    }

    async fn load_at(&self, account: AccountId, at: PointInTime) -> Result<Loaded, StoreError> {
        let loaded = self.inner.load_at(account, at).await?;
        match (self.bug, at) {
            (PlantedBug::PastStateOneShort, PointInTime::Version(n))
                if n > 1 && loaded.fold().1 == n =>
            {
                self.one_short(account, n).await
            }
            _ => Ok(loaded),
        }
    }

    async fn events(
        &self,
        account: AccountId,
        from: u64,
        limit: usize,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        let mut events = self.inner.events(account, from, limit).await?;
        if self.bug == PlantedBug::EventsPageMissesNewest && events.len() < limit {
            events.pop();
        }
        Ok(events)
    }

    /// The members one after the other, each through the planted bug; the
    /// batch bug hands the store's own answers to the wrong members.
    async fn append_batch(&self, commits: &[Commit]) -> Vec<Result<(), AppendError>> {
        if self.bug == PlantedBug::BatchAnswersMisaligned {
            let mut results = self.inner.append_batch(commits).await;
            if results.len() > 1
                && results
                    .iter()
                    .any(|r| matches!(r, Err(AppendError::Conflict(_))))
            {
                results.rotate_right(1);
            }
            return results;
        }
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
