//! The engine: load → decide → append, with optimistic concurrency.
//!
//! Every command is answered in the order of docs/API.md ("Order of
//! checks"): whether the caller may touch the source account
//! (`domain::authorize`: 403, or 404 for someone else's account as for an
//! unknown one) and existence of the accounts (404), then idempotency (an
//! identical replay answers success whatever happened since; a reused
//! transactionId is 422), then the domain's business rules, then the append
//! at the next sequence numbers together with the idempotency records and
//! any snapshot.
//! A conflict (another writer got there first) or an ambiguous commit (the
//! reply was lost) reloads and decides again — the reload also reads the
//! transactionId back, so a commit that did land answers "already applied"
//! and is never written twice.
//!
//! Words: the *source* is the account a request names; the *target* is the
//! account a transfer pays into, and nothing else; a *party* is an account
//! as loaded for one request, and the *counterpart* is the target's party.
//! `execute_with_retries` reads top to bottom as the paragraph above.
//!
//! Doing less per command, with the same guarantees:
//! - a command on an account the instance knows is first decided on its
//!   cached state ([`cache`]) without a load. Only an append the store
//!   accepts makes that decision an answer; anything else (a conflict
//!   because the entry was stale, a refusal, nothing to do) is decided
//!   again from a load, exactly as without the cache;
//! - appends of commands that arrive together are written in one batch
//!   ([`committer`]), each command answered by its own member;
//! - an identical request in flight (the same client transactionId) waits
//!   for the first one's outcome instead of conflicting with it ([`claims`]);
//! - loads that arrive together — reads and the loads of commands the
//!   cache does not know — are read in one query ([`loader`]).

mod cache;
mod claims;
mod committer;
mod inputs;
mod loader;
mod queue;

pub use cache::{
    CACHE_ACCOUNTS, CachedAccount, LruStateCache, NoCache, RECENT_TRANSACTIONS, StateCache,
};
pub use committer::BATCH_MAX;
pub use inputs::{Clock, Entropy, FixedClock, SeededEntropy, SystemClock};
pub use loader::{LOADS_IN_FLIGHT, LOADS_MAX};
pub use queue::QUEUE_MAX;

use claims::Claims;
use committer::Committer;
use loader::Loader;

use std::sync::Arc;
use std::time::Duration;

use crate::domain::{
    self, Account, AccountId, Caller, Command, Effects, Fingerprint, Refusal, Timestamp,
    TransactionId,
};
use crate::metrics::EngineMetrics;
use crate::store::{
    AppendError, Commit, EventStore, FeedEvent, Loaded, PointInTime, PoolStatus, RecordedEvent,
    Snapshot, StoreError, TransactionRecord,
};

/// Default events between snapshots: a load then reads at most this many
/// events after the latest snapshot, and one snapshot row per 50 events
/// costs little storage.
pub const SNAPSHOT_EVERY: u64 = 50;

/// Default bound on reload-and-retry rounds after conflicts. Enough for a
/// hot account under a few dozen concurrent writers; past it the client gets
/// 409 and retries at its own pace instead of piling up here.
pub const RETRIES_MAX: u32 = 16;

/// The first retry waits up to this long: about one store round trip, so
/// two colliding writers usually part after one round.
pub const BACKOFF_BASE_MS: u64 = 1;

/// Retry waits never exceed this, so a request that keeps losing still
/// answers (409) well within the request timeout.
pub const BACKOFF_MAX_MS: u64 = 50;

/// Default longest store call: far above a healthy database's latency, well
/// below the request timeout, so a stuck store answers 503 rather than 408.
pub const STORE_TIMEOUT_MS: u64 = 5_000;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EngineConfig {
    /// Events between snapshots; 0 never snapshots.
    pub snapshot_every: u64,
    pub retries_max: u32,
    /// The first retry waits up to this long, doubling each round.
    pub backoff_base: Duration,
    pub backoff_max: Duration,
    /// The longest one store call may take before it counts as unavailable
    /// (or, for an append, as ambiguous).
    pub store_timeout: Duration,
    /// Accounts kept in the state cache; 0 keeps none.
    pub cache_accounts: usize,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            snapshot_every: SNAPSHOT_EVERY,
            retries_max: RETRIES_MAX,
            backoff_base: Duration::from_millis(BACKOFF_BASE_MS),
            backoff_max: Duration::from_millis(BACKOFF_MAX_MS),
            store_timeout: Duration::from_millis(STORE_TIMEOUT_MS),
            cache_accounts: CACHE_ACCOUNTS,
        }
    }
}

/// A command for one account, from `caller`, with the client's
/// transactionId if it sent one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    /// Who is asking (`Caller::Anyone` while authentication is off).
    pub caller: Caller,
    pub account: AccountId,
    pub command: Command,
    pub transaction_id: Option<TransactionId>,
}

/// A successful answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Events were appended.
    Applied,
    /// Nothing to do (a zero amount, an open repeated by the same owner, a
    /// close of a closed account); nothing recorded.
    Unchanged,
    /// The identical operation was applied before under this transactionId.
    AlreadyApplied,
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum EngineError {
    #[error("{0}")]
    Refused(#[from] Refusal),
    #[error("{}", reuse_message(*.account, *.transaction_id, .recorded.as_deref()))]
    TransactionReused {
        account: AccountId,
        transaction_id: TransactionId,
        /// The operation recorded under it, `None` when the caller may not
        /// read the account it is recorded on ([`domain::may_read`]): then
        /// the answer says only that the transactionId is taken.
        recorded: Option<String>,
    },
    #[error("the account is too busy: still conflicting after {0} retries")]
    Conflict(u32),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What a reuse answer says: everything to a caller who may read the
/// account the transactionId is recorded on, only that it is taken to
/// anyone else (not the account, not its operation).
fn reuse_message(
    account: AccountId,
    transaction_id: TransactionId,
    recorded: Option<&str>,
) -> String {
    match recorded {
        Some(recorded) => format!(
            "transactionId {transaction_id} was already used on account {account} for another operation ({recorded})"
        ),
        None => format!("transactionId {transaction_id} is already taken"),
    }
}

/// One account as loaded for a request: its state, its version (the last
/// sequence number) and the record of the request's transactionId on it, if
/// that was applied to this account before.
struct Party {
    account_id: AccountId,
    state: Account,
    version: u64,
    /// The largest recordedAt of its events so far (`None`: no event, or
    /// unknown), which a snapshot carries for point-in-time reads.
    recorded_until: Option<Timestamp>,
    transaction: Option<TransactionRecord>,
    /// Whether the party was loaded from the store, whose word on state and
    /// on `transaction` is final; a party from the cache is a guess that
    /// only an accepted append confirms, and its `transaction` is only what
    /// the cache remembers.
    loaded: bool,
    /// The transactionIds the cache remembers on the account.
    recent: Vec<(TransactionId, Fingerprint)>,
}

/// How far one decision got.
enum Step {
    Answer(Result<Outcome, EngineError>),
    /// The append conflicted: retry (after a backoff) from a load.
    Retry,
    /// The append's outcome is unknown: retry (after a backoff) from a
    /// load, which finds the transactionId if it landed.
    RetryAmbiguous,
    /// Decided on the cache to something only a load may answer (a
    /// refusal, nothing to do): decide again on a load, at once — nothing
    /// was written, so this is no retry.
    Reload,
}

/// The accounts a request touches: the source it names and, for a transfer
/// to another account, the counterpart (the target account, loaded).
struct Parties {
    source: Party,
    counterpart: Option<Party>,
}

impl Parties {
    fn all(&self) -> impl Iterator<Item = &Party> {
        std::iter::once(&self.source).chain(self.counterpart.as_ref())
    }

    fn counterpart_state(&self) -> Option<&Account> {
        self.counterpart.as_ref().map(|party| &party.state)
    }

    /// Whether every party comes from the store (see [`Party::loaded`]).
    fn loaded(&self) -> bool {
        self.all().all(|party| party.loaded)
    }
}

pub struct Engine {
    store: Arc<dyn EventStore>,
    clock: Arc<dyn Clock>,
    entropy: Arc<dyn Entropy>,
    config: EngineConfig,
    metrics: EngineMetrics,
    cache: Arc<dyn StateCache>,
    /// The client transactionIds of the requests running now (see [`claims`]).
    claims: Claims,
    committer: Committer,
    loader: Loader,
    /// Bumped right after every successful append, so feed readers on this
    /// instance wake at once instead of polling the store.
    commits: tokio::sync::watch::Sender<u64>,
}

impl Engine {
    pub fn new(
        store: Arc<dyn EventStore>,
        clock: Arc<dyn Clock>,
        entropy: Arc<dyn Entropy>,
        config: EngineConfig,
        metrics: EngineMetrics,
    ) -> Engine {
        let committer = Committer::new(
            store.clone(),
            config.store_timeout,
            metrics.batch_size.clone(),
        );
        let loader = Loader::new(store.clone(), config.store_timeout);
        Engine {
            store,
            loader,
            clock,
            entropy,
            cache: LruStateCache::with_capacity(config.cache_accounts),
            claims: Claims::default(),
            config,
            metrics,
            committer,
            commits: tokio::sync::watch::Sender::new(0),
        }
    }

    /// Changes after every commit made through this engine (the value counts
    /// them); commits of other instances are not seen here.
    pub fn commits(&self) -> tokio::sync::watch::Receiver<u64> {
        self.commits.subscribe()
    }

    /// The same engine with another state cache (the simulation plants a
    /// broken one through this).
    pub fn with_cache(mut self, cache: Arc<dyn StateCache>) -> Engine {
        self.cache = cache;
        self
    }

    /// The store's connection pool use (`None` for stores without a pool).
    pub fn pool_status(&self) -> Option<PoolStatus> {
        self.store.pool_status()
    }

    /// The current state of an account (`Account::Unopened` if unknown),
    /// if `caller` may see it; someone else's account is refused as an
    /// unknown one (`Refusal::AccountNotFound`).
    pub async fn state(&self, caller: Caller, account: AccountId) -> Result<Account, EngineError> {
        let state = self.load(account, None).await?.state;
        domain::authorize_access(caller, &state)?;
        Ok(state)
    }

    /// [`Engine::state`] with its version (the last sequence number folded
    /// into it), which the read side sends as the `ETag`.
    pub async fn state_with_version(
        &self,
        caller: Caller,
        account: AccountId,
    ) -> Result<(Account, u64), EngineError> {
        let party = self.load(account, None).await?;
        domain::authorize_access(caller, &party.state)?;
        Ok((party.state, party.version))
    }

    /// The state right after event `n` (`Version(n)`), or after the longest
    /// prefix of the stream recorded by a time (`Time(t)`), with its version.
    /// `None` when there is no such state: version `n` does not exist (0,
    /// beyond the head, an unknown account), or nothing was recorded by then.
    pub async fn state_at(
        &self,
        account: AccountId,
        at: PointInTime,
    ) -> Result<Option<(Account, u64)>, EngineError> {
        let loaded = self.timed(self.store.load_at(account, at)).await?;
        let (state, version) = loaded.fold();
        let exists = match at {
            PointInTime::Version(wanted) => version == wanted && version > 0,
            PointInTime::Time(_) => version > 0,
        };
        Ok(exists.then_some((state, version)))
    }

    /// Up to `limit` committed events of every account after feed position
    /// `after`, in position order (see [`EventStore::feed`] for the
    /// guarantee).
    pub async fn feed(&self, after: u64, limit: usize) -> Result<Vec<FeedEvent>, EngineError> {
        let events = self.timed(self.store.feed(after, limit)).await?;
        Ok(events)
    }

    /// Up to `limit` events from sequence number `from` on. Someone else's
    /// account has the empty stream, exactly as an unknown account does.
    pub async fn events(
        &self,
        caller: Caller,
        account: AccountId,
        from: u64,
        limit: usize,
    ) -> Result<Vec<RecordedEvent>, EngineError> {
        if !self.may_access(caller, account).await? {
            return Ok(Vec::new());
        }
        let events = self.timed(self.store.events(account, from, limit)).await?;
        Ok(events)
    }

    /// Whether `caller` may see `account`. Only an owner's token costs a
    /// load: anyone (authentication off) and admins see every account.
    async fn may_access(&self, caller: Caller, account: AccountId) -> Result<bool, StoreError> {
        if matches!(caller, Caller::Anyone | Caller::Admin) {
            return Ok(true);
        }
        let state = self.load(account, None).await?.state;
        Ok(domain::may_read(caller, &state))
    }

    /// Whether the store answers.
    pub async fn ping(&self) -> Result<(), StoreError> {
        self.timed(self.store.ping()).await
    }

    pub async fn execute(&self, request: Request) -> Result<Outcome, EngineError> {
        let kind = request.command.kind();
        let result = self.execute_with_retries(request).await;
        let outcome = match &result {
            Ok(Outcome::Applied) => "applied",
            Ok(Outcome::Unchanged) => "unchanged",
            Ok(Outcome::AlreadyApplied) => "already_applied",
            Err(EngineError::Refused(_) | EngineError::TransactionReused { .. }) => "refused",
            Err(EngineError::Conflict(_)) => "conflict",
            Err(EngineError::Store(_)) => "unavailable",
        };
        self.metrics
            .commands
            .with_label_values(&[kind, outcome])
            .inc();
        result
    }

    /// Load (or, the first time, take the cached state if the instance knows
    /// the account), check, decide, append — again after a conflict or an
    /// ambiguous append, from a fresh load, at most `retries_max` more times.
    async fn execute_with_retries(&self, request: Request) -> Result<Outcome, EngineError> {
        // One id for every attempt: if an earlier attempt landed without us
        // hearing of it, the reload finds this id and answers "already applied".
        let transaction_id = request
            .transaction_id
            .unwrap_or_else(|| TransactionId::from_uuid(self.entropy.uuid()));
        // A generated id is unique: only a client's can be sent twice.
        let _claim = match request.transaction_id {
            Some(id) => Some(self.claims.claim(id).await),
            None => None,
        };
        let fingerprint = request.command.fingerprint(request.account);
        let mut cached = self.cached_parties(&request, transaction_id).await?;
        let mut ambiguous = false;
        for attempt in 0..=self.config.retries_max {
            if attempt > 0 {
                self.metrics.retries.inc();
                tokio::time::sleep(self.backoff(attempt)).await;
            }
            let mut step = match cached.take() {
                Some(parties) => {
                    self.decide_and_append(&request, transaction_id, &fingerprint, parties)
                        .await
                }
                None => Step::Reload,
            };
            if let Step::Reload = step {
                let parties = self.load_parties(&request, transaction_id).await?;
                step = self
                    .decide_and_append(&request, transaction_id, &fingerprint, parties)
                    .await;
            }
            match step {
                Step::Answer(answer) => return answer,
                Step::RetryAmbiguous => ambiguous = true,
                _ => ambiguous = false,
            }
        }
        // The last append's outcome unknown, "too busy" would tell the
        // client it did not land: it may have.
        if ambiguous {
            return Err(EngineError::Store(StoreError::Unavailable(
                "the outcome of the last attempt is unknown; send it again with the same transactionId"
                    .to_owned(),
            )));
        }
        Err(EngineError::Conflict(self.config.retries_max))
    }

    /// The order of checks on `parties`, then the append. On parties from
    /// the cache only an accepted append (or a transactionId the cache
    /// knows as recorded) answers; every other outcome is decided again on
    /// a load, since the cached state may be stale. The cache learns how
    /// the append went.
    async fn decide_and_append(
        &self,
        request: &Request,
        transaction_id: TransactionId,
        fingerprint: &Fingerprint,
        parties: Parties,
    ) -> Step {
        let loaded = parties.loaded();
        let unless_cached = |answer: Result<Outcome, EngineError>| match loaded {
            true => Step::Answer(answer),
            false => Step::Reload,
        };
        if let Err(refusal) =
            domain::authorize(request.caller, &request.command, &parties.source.state)
                .and_then(|()| refuse_unknown_accounts(&request.command, &parties))
        {
            return unless_cached(Err(refusal.into()));
        }
        match answer_for_recorded_transaction(request.caller, fingerprint, &parties) {
            Recorded::Answer(answer) => return Step::Answer(answer),
            Recorded::OnlyTheStoreKnows => return Step::Reload,
            Recorded::New => {}
        }
        let effects = match domain::decide(
            request.account,
            &parties.source.state,
            &request.command,
            parties.counterpart_state(),
        ) {
            Ok(effects) => effects,
            Err(refusal) => return unless_cached(Err(refusal.into())),
        };
        if effects.is_empty() {
            return unless_cached(Ok(Outcome::Unchanged));
        }
        let (commit, after) = self.build_commit(transaction_id, fingerprint, &parties, effects);
        let result = self.append(commit).await;
        self.cache.settled(&after, result.is_ok());
        match result {
            Ok(()) => Step::Answer(Ok(Outcome::Applied)),
            Err(AppendError::Conflict(_)) => {
                self.metrics.conflicts.inc();
                if !loaded {
                    self.metrics.cache_stale.inc();
                }
                Step::Retry
            }
            Err(AppendError::Ambiguous(_)) => {
                self.metrics.ambiguous_commits.inc();
                Step::RetryAmbiguous
            }
            Err(AppendError::Store(error)) => Step::Answer(Err(error.into())),
        }
    }

    /// Full jitter: a uniform wait in [0, min(max, base · 2^attempt)], so that
    /// writers who collided once spread out instead of colliding again.
    fn backoff(&self, attempt: u32) -> Duration {
        let base = self.config.backoff_base.as_micros() as u64;
        let cap = self.config.backoff_max.as_micros() as u64;
        let ceiling = base.saturating_mul(1u64 << attempt.min(20)).min(cap);
        Duration::from_micros(self.entropy.below(ceiling.saturating_add(1)))
    }

    async fn timed<T>(
        &self,
        call: impl Future<Output = Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        match tokio::time::timeout(self.config.store_timeout, call).await {
            Ok(result) => result,
            Err(_) => Err(StoreError::Unavailable(format!(
                "no answer within {} ms",
                self.config.store_timeout.as_millis()
            ))),
        }
    }

    async fn load(
        &self,
        account_id: AccountId,
        transaction: Option<TransactionId>,
    ) -> Result<Party, StoreError> {
        let mut parties = self.load_many(&[(account_id, transaction)]).await?;
        parties.pop().ok_or_else(|| {
            StoreError::Corrupt("a load of one account was answered with none".to_owned())
        })
    }

    /// Loads accounts together (through the [`loader`], in a batch with
    /// other requests' loads), one party per request.
    async fn load_many(
        &self,
        requests: &[(AccountId, Option<TransactionId>)],
    ) -> Result<Vec<Party>, StoreError> {
        let loaded = self.timed(self.loader.load_many(requests)).await?;
        if loaded.len() != requests.len() {
            return Err(StoreError::Corrupt(format!(
                "a load of {} accounts was answered with {}",
                requests.len(),
                loaded.len()
            )));
        }
        Ok(requests
            .iter()
            .zip(loaded)
            .map(|(&(account_id, _), loaded)| self.party(account_id, loaded))
            .collect())
    }

    /// The party a load shows, which the cache learns.
    fn party(&self, account_id: AccountId, loaded: Loaded) -> Party {
        if loaded.snapshot.is_some() {
            self.metrics.snapshots_loaded.inc();
        }
        let (state, version) = loaded.fold();
        let recorded_until = loaded.recorded_until();
        // An unknown account is not kept: it answers nothing but 404s, and
        // probes of random ids would push the accounts in use out.
        if version > 0 {
            let recorded = loaded.transaction.iter();
            self.cache.loaded(CachedAccount {
                account_id,
                state: state.clone(),
                version,
                recorded_until,
                transactions: recorded
                    .map(|record| (record.transaction_id, record.fingerprint.clone()))
                    .collect(),
            });
        }
        Party {
            account_id,
            state,
            version,
            recorded_until,
            transaction: loaded.transaction,
            loaded: true,
            recent: Vec::new(),
        }
    }

    /// The account as the cache knows it, `None` if it does not.
    fn cached(&self, account_id: AccountId, transaction_id: TransactionId) -> Option<Party> {
        let Some(entry) = self.cache.get(account_id) else {
            self.metrics
                .cache_lookups
                .with_label_values(&["miss"])
                .inc();
            return None;
        };
        self.metrics.cache_lookups.with_label_values(&["hit"]).inc();
        let transaction = entry
            .recorded(transaction_id)
            .map(|fingerprint| TransactionRecord {
                account_id,
                transaction_id,
                fingerprint: fingerprint.clone(),
            });
        Some(Party {
            account_id,
            state: entry.state,
            version: entry.version,
            recorded_until: entry.recorded_until,
            transaction,
            loaded: false,
            recent: entry.transactions,
        })
    }

    /// The parties with the source from the cache, `None` when the cache
    /// does not know the source. A target the cache does not know is loaded.
    async fn cached_parties(
        &self,
        request: &Request,
        transaction_id: TransactionId,
    ) -> Result<Option<Parties>, StoreError> {
        let Some(source) = self.cached(request.account, transaction_id) else {
            return Ok(None);
        };
        let counterpart = match request.command.target() {
            Some(target) if target != request.account => {
                match self.cached(target, transaction_id) {
                    Some(party) => Some(party),
                    None => Some(self.load(target, Some(transaction_id)).await?),
                }
            }
            _ => None,
        };
        Ok(Some(Parties {
            source,
            counterpart,
        }))
    }

    /// Loads the source and, for a transfer to another account, the target,
    /// together. A transfer to the same account loads it once; the domain
    /// refuses it.
    async fn load_parties(
        &self,
        request: &Request,
        transaction_id: TransactionId,
    ) -> Result<Parties, StoreError> {
        let mut requests = vec![(request.account, Some(transaction_id))];
        if let Some(target) = request.command.target()
            && target != request.account
        {
            requests.push((target, Some(transaction_id)));
        }
        let mut parties = self.load_many(&requests).await?.into_iter();
        let source = parties.next().ok_or_else(|| {
            StoreError::Corrupt("a load of the source was answered with none".to_owned())
        })?;
        Ok(Parties {
            source,
            counterpart: parties.next(),
        })
    }

    /// The events at the next sequence numbers, the idempotency record on
    /// every account touched, and a snapshot wherever a sequence number
    /// reaches a multiple of `snapshot_every`; with the accounts as the
    /// commit leaves them, for the cache.
    fn build_commit(
        &self,
        transaction_id: TransactionId,
        fingerprint: &Fingerprint,
        parties: &Parties,
        effects: Effects,
    ) -> (Commit, Vec<CachedAccount>) {
        let recorded_at = self.clock.now();
        let mut commit = Commit::default();
        let mut after = Vec::with_capacity(2);
        let on_source = effects.source.map(|event| (&parties.source, event));
        let on_target = (parties.counterpart.as_ref()).zip(effects.target);
        for (party, event) in on_source.into_iter().chain(on_target) {
            let account_id = party.account_id;
            let sequence_number = party.version + 1;
            // A running maximum: instances' clocks need not agree. A
            // stream with an event but no known maximum stays unknown.
            let recorded_until = match party.version {
                0 => Some(recorded_at),
                _ => party.recorded_until.map(|until| until.max(recorded_at)),
            };
            let state = domain::evolve(party.state.clone(), &event);
            if self.snapshot_due(sequence_number) {
                commit.snapshots.push(Snapshot {
                    account_id,
                    sequence_number,
                    state: state.clone(),
                    recorded_until,
                });
            }
            let mut transactions = vec![(transaction_id, fingerprint.clone())];
            cache::merge_transactions(&mut transactions, &party.recent);
            after.push(CachedAccount {
                account_id,
                state,
                version: sequence_number,
                recorded_until,
                transactions,
            });
            commit.events.push(RecordedEvent {
                account_id,
                sequence_number,
                transaction_id,
                event,
                recorded_at,
            });
            commit.transactions.push(TransactionRecord {
                account_id,
                transaction_id,
                fingerprint: fingerprint.clone(),
            });
        }
        // Canonical account order, so stores that lock rows in the order
        // given never deadlock on opposite transfers.
        commit.events.sort_by_key(|e| e.account_id);
        commit.transactions.sort_by_key(|t| t.account_id);
        commit.snapshots.sort_by_key(|s| s.account_id);
        (commit, after)
    }

    /// Whether the event at `sequence_number` gets a snapshot (never when
    /// `snapshot_every` is 0).
    fn snapshot_due(&self, sequence_number: u64) -> bool {
        let every = self.config.snapshot_every;
        every > 0 && sequence_number.is_multiple_of(every)
    }

    /// Appends through the group committer, within the store timeout: an
    /// append still unanswered by then is ambiguous (it may yet land).
    async fn append(&self, commit: Commit) -> Result<(), AppendError> {
        let (events, snapshots) = (commit.events.len(), commit.snapshots.len());
        self.committer.append(commit).await?;
        self.commits.send_modify(|count| *count += 1);
        self.metrics.events_appended.inc_by(events as u64);
        self.metrics.snapshots_written.inc_by(snapshots as u64);
        Ok(())
    }
}

/// Rule 3 of the order of checks: the source must exist (unless the
/// command opens it), and so must a transfer's target.
fn refuse_unknown_accounts(command: &Command, parties: &Parties) -> Result<(), Refusal> {
    let opening = matches!(command, Command::Open { .. });
    if !opening && !parties.source.state.exists() {
        return Err(Refusal::AccountNotFound);
    }
    if parties
        .counterpart_state()
        .is_some_and(|state| !state.exists())
    {
        return Err(Refusal::TargetNotFound);
    }
    Ok(())
}

/// What rule 4 says about a request's transactionId.
enum Recorded {
    /// It is recorded: the answer, whatever happened to the accounts since.
    Answer(Result<Outcome, EngineError>),
    /// The cache knows it on the target, but the source (whose record
    /// would come first) is cached and may hold one the cache forgot.
    OnlyTheStoreKnows,
    /// Not recorded as far as the parties know: the business rules decide
    /// (and on cached parties, the store's refusal of a recorded
    /// transactionId on append sends the command to a load).
    New,
}

/// Rule 4: a transactionId already recorded on either account decides the
/// answer by itself, whatever happened to the accounts since — the
/// identical operation is "already applied", any other is a reuse. A record
/// is never changed or removed, so the cache's memory of one is as good as
/// a load's, as long as no party before it might hold one unknown.
fn answer_for_recorded_transaction(
    caller: Caller,
    fingerprint: &Fingerprint,
    parties: &Parties,
) -> Recorded {
    let mut all_known_so_far = true;
    for party in parties.all() {
        if let Some(record) = &party.transaction {
            if !all_known_so_far {
                return Recorded::OnlyTheStoreKnows;
            }
            return Recorded::Answer(if &record.fingerprint == fingerprint {
                Ok(Outcome::AlreadyApplied)
            } else {
                Err(EngineError::TransactionReused {
                    account: record.account_id,
                    transaction_id: record.transaction_id,
                    recorded: domain::may_read(caller, &party.state)
                        .then(|| record.fingerprint.0.clone()),
                })
            });
        }
        all_known_so_far &= party.loaded;
    }
    Recorded::New
}
