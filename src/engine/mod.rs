//! The engine: load → decide → append, with optimistic concurrency.
//!
//! Every command is answered in the order of ../shared/API.md: existence of
//! the accounts (404), then idempotency (an identical replay answers success
//! whatever happened since; a reused transactionId is 422), then the domain's
//! business rules, then the append at the next sequence numbers together with
//! the idempotency records and any snapshot. A conflict (another writer got
//! there first) or an ambiguous commit (the reply was lost) reloads and decides
//! again — the reload also reads the transactionId back, so a commit that did
//! land answers "already applied" and is never written twice.

mod inputs;

pub use inputs::{Clock, Entropy, FixedClock, SeededEntropy, SystemClock};

use std::sync::Arc;
use std::time::Duration;

use crate::domain::{
    self, Account, AccountId, Command, Effects, Fingerprint, Refusal, TransactionId,
};
use crate::metrics::EngineMetrics;
use crate::store::{
    AppendError, Commit, EventStore, Loaded, RecordedEvent, Snapshot, StoreError, TransactionRecord,
};

/// Default bound on reload-and-retry rounds after conflicts. Enough for a
/// hot account under a few dozen concurrent writers; past it the client gets
/// 409 and retries at its own pace instead of piling up here.
pub const RETRIES_MAX: u32 = 16;

#[derive(Clone, Debug)]
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
    /// A deliberate bug, only ever set by the simulation's self-test.
    pub planted_bug: Option<PlantedBug>,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            snapshot_every: 50,
            retries_max: RETRIES_MAX,
            backoff_base: Duration::from_millis(1),
            backoff_max: Duration::from_millis(50),
            store_timeout: Duration::from_secs(5),
            planted_bug: None,
        }
    }
}

/// Broken variants of the engine that the simulation must catch (`sim
/// --self-test`). Chosen at run time so no build of the service contains one
/// unless a caller asks for it explicitly.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum PlantedBug {
    /// A transfer written as two separate appends, source then target.
    TransferAsTwoAppends,
    /// The transactionId lookup is ignored: replays are decided again.
    SkipIdempotencyCheck,
    /// After a conflict, only the version is refreshed; the decision is
    /// made on the stale state.
    RetryWithoutReload,
    /// Snapshots hold the state before the snapshotted event.
    StaleSnapshot,
    /// An ambiguous commit is reported as a success without looking.
    SuccessOnAmbiguousCommit,
}

impl PlantedBug {
    pub const ALL: [PlantedBug; 5] = [
        PlantedBug::TransferAsTwoAppends,
        PlantedBug::SkipIdempotencyCheck,
        PlantedBug::RetryWithoutReload,
        PlantedBug::StaleSnapshot,
        PlantedBug::SuccessOnAmbiguousCommit,
    ];
}

/// A command for one account, with the client's transactionId if it sent one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
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
    #[error(
        "transactionId {transaction_id} was already used on account {account} for another operation ({recorded})"
    )]
    TransactionReused {
        account: AccountId,
        transaction_id: TransactionId,
        recorded: String,
    },
    #[error("the account is too busy: still conflicting after {0} retries")]
    Conflict(u32),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// An account as loaded: its state, version and the record of the
/// transactionId in flight, if that was already applied to it.
struct Loaded1 {
    state: Account,
    version: u64,
    transaction: Option<TransactionRecord>,
}

pub struct Engine {
    store: Arc<dyn EventStore>,
    clock: Arc<dyn Clock>,
    entropy: Arc<dyn Entropy>,
    config: EngineConfig,
    metrics: EngineMetrics,
}

impl Engine {
    pub fn new(
        store: Arc<dyn EventStore>,
        clock: Arc<dyn Clock>,
        entropy: Arc<dyn Entropy>,
        config: EngineConfig,
        metrics: EngineMetrics,
    ) -> Engine {
        Engine {
            store,
            clock,
            entropy,
            config,
            metrics,
        }
    }

    pub fn store(&self) -> &Arc<dyn EventStore> {
        &self.store
    }

    pub fn entropy(&self) -> &Arc<dyn Entropy> {
        &self.entropy
    }

    /// The current state of an account (`Account::Unopened` if unknown).
    pub async fn state(&self, account: AccountId) -> Result<Account, EngineError> {
        Ok(self.load(account, None).await?.state)
    }

    /// Up to `limit` events from sequence number `from` on.
    pub async fn events(
        &self,
        account: AccountId,
        from: u64,
        limit: usize,
    ) -> Result<Vec<RecordedEvent>, EngineError> {
        let events = self.timed(self.store.events(account, from, limit)).await?;
        Ok(events)
    }

    /// Whether the store answers.
    pub async fn ping(&self) -> Result<(), StoreError> {
        self.timed(self.store.ping()).await
    }

    pub async fn execute(&self, request: Request) -> Result<Outcome, EngineError> {
        let kind = command_kind(&request.command);
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

    async fn execute_with_retries(&self, request: Request) -> Result<Outcome, EngineError> {
        // One id for every attempt: if an earlier attempt landed without us
        // hearing of it, the reload finds this id and answers "already applied".
        let transaction_id = request
            .transaction_id
            .unwrap_or_else(|| TransactionId::from_uuid(self.entropy.uuid()));
        let fingerprint = request.command.fingerprint(request.account);
        let mut stale: Option<(Loaded1, Option<Loaded1>)> = None;
        for attempt in 0..=self.config.retries_max {
            if attempt > 0 {
                self.metrics.retries.inc();
                tokio::time::sleep(self.backoff(attempt)).await;
            }
            let (source, target) = match stale.take() {
                Some(stale) if self.bug(PlantedBug::RetryWithoutReload) => {
                    self.refresh_versions(&request, transaction_id, stale)
                        .await?
                }
                _ => self.load_parties(&request, transaction_id).await?,
            };
            if let Some(answer) = self.check_idempotency(&request, &fingerprint, &source, &target) {
                return answer;
            }
            let effects = domain::decide(
                request.account,
                &source.state,
                &request.command,
                target.as_ref().map(|t| &t.state),
            )?;
            if effects.is_empty() {
                return Ok(Outcome::Unchanged);
            }
            let commit = self.commit(
                &request,
                transaction_id,
                &fingerprint,
                &source,
                &target,
                effects,
            );
            match self.append(commit).await {
                Ok(()) => return Ok(Outcome::Applied),
                Err(AppendError::Conflict(_)) => self.metrics.conflicts.inc(),
                Err(AppendError::Ambiguous(_)) => {
                    self.metrics.ambiguous_commits.inc();
                    if self.bug(PlantedBug::SuccessOnAmbiguousCommit) {
                        return Ok(Outcome::Applied);
                    }
                }
                Err(AppendError::Store(error)) => return Err(error.into()),
            }
            stale = Some((source, target));
        }
        Err(EngineError::Conflict(self.config.retries_max))
    }

    fn bug(&self, bug: PlantedBug) -> bool {
        self.config.planted_bug == Some(bug)
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
        account: AccountId,
        transaction: Option<TransactionId>,
    ) -> Result<Loaded1, StoreError> {
        let loaded: Loaded = self.timed(self.store.load(account, transaction)).await?;
        if loaded.snapshot.is_some() {
            self.metrics.snapshots_loaded.inc();
        }
        let (state, version) = loaded.fold();
        Ok(Loaded1 {
            state,
            version,
            transaction: loaded.transaction,
        })
    }

    /// Loads the source and, for a transfer to another account, the target.
    /// A transfer to the same account loads it once; the domain refuses it.
    async fn load_parties(
        &self,
        request: &Request,
        transaction_id: TransactionId,
    ) -> Result<(Loaded1, Option<Loaded1>), StoreError> {
        let source = self.load(request.account, Some(transaction_id)).await?;
        let target = match request.command.target() {
            Some(target) if target != request.account => {
                Some(self.load(target, Some(transaction_id)).await?)
            }
            _ => None,
        };
        Ok((source, target))
    }

    /// The planted "retry without reload" bug: versions move on, states stay.
    async fn refresh_versions(
        &self,
        request: &Request,
        transaction_id: TransactionId,
        (mut source, mut target): (Loaded1, Option<Loaded1>),
    ) -> Result<(Loaded1, Option<Loaded1>), StoreError> {
        let (fresh_source, fresh_target) = self.load_parties(request, transaction_id).await?;
        source.version = fresh_source.version;
        source.transaction = fresh_source.transaction;
        if let (Some(target), Some(fresh)) = (target.as_mut(), fresh_target) {
            target.version = fresh.version;
            target.transaction = fresh.transaction;
        }
        Ok((source, target))
    }

    /// Rules 3 and 4 of the order of checks: unknown accounts first, then a
    /// transactionId already recorded on either account.
    fn check_idempotency(
        &self,
        request: &Request,
        fingerprint: &Fingerprint,
        source: &Loaded1,
        target: &Option<Loaded1>,
    ) -> Option<Result<Outcome, EngineError>> {
        let opening = matches!(request.command, Command::Open { .. });
        if !opening && !source.state.exists() {
            return Some(Err(Refusal::AccountNotFound.into()));
        }
        if target.as_ref().is_some_and(|t| !t.state.exists()) {
            return Some(Err(Refusal::TargetNotFound.into()));
        }
        if self.bug(PlantedBug::SkipIdempotencyCheck) {
            return None;
        }
        let records = [Some(source), target.as_ref()];
        let record = records
            .into_iter()
            .flatten()
            .find_map(|party| party.transaction.as_ref())?;
        Some(if &record.fingerprint == fingerprint {
            Ok(Outcome::AlreadyApplied)
        } else {
            Err(EngineError::TransactionReused {
                account: record.account_id,
                transaction_id: record.transaction_id,
                recorded: record.fingerprint.0.clone(),
            })
        })
    }

    /// The events at the next sequence numbers, the idempotency record on
    /// every account touched, and a snapshot wherever a sequence number
    /// reaches a multiple of `snapshot_every`.
    fn commit(
        &self,
        request: &Request,
        transaction_id: TransactionId,
        fingerprint: &Fingerprint,
        source: &Loaded1,
        target: &Option<Loaded1>,
        effects: Effects,
    ) -> Commit {
        let recorded_at = self.clock.now();
        let mut commit = Commit::default();
        let source_part = effects.source.map(|event| (request.account, source, event));
        let target_part = (request.command.target().zip(target.as_ref()))
            .zip(effects.target)
            .map(|((account_id, target), event)| (account_id, target, event));
        for (account_id, party, event) in source_part.into_iter().chain(target_part) {
            let sequence_number = party.version + 1;
            let after = domain::evolve(party.state.clone(), &event);
            if self.config.snapshot_every > 0 && sequence_number % self.config.snapshot_every == 0 {
                let state = if self.bug(PlantedBug::StaleSnapshot) {
                    party.state.clone()
                } else {
                    after
                };
                commit.snapshots.push(Snapshot {
                    account_id,
                    sequence_number,
                    state,
                });
            }
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
        commit
    }

    async fn append(&self, commit: Commit) -> Result<(), AppendError> {
        let parts = if self.bug(PlantedBug::TransferAsTwoAppends) {
            split_by_account(commit)
        } else {
            vec![commit]
        };
        for part in parts {
            self.append_one(&part).await?;
        }
        Ok(())
    }

    async fn append_one(&self, commit: &Commit) -> Result<(), AppendError> {
        let timeout = self.config.store_timeout;
        match tokio::time::timeout(timeout, self.store.append(commit)).await {
            Ok(Ok(())) => {
                self.metrics
                    .events_appended
                    .inc_by(commit.events.len() as u64);
                self.metrics
                    .snapshots_written
                    .inc_by(commit.snapshots.len() as u64);
                Ok(())
            }
            Ok(Err(error)) => Err(error),
            // The append may still complete after we stop waiting.
            Err(_) => Err(AppendError::Ambiguous(format!(
                "no answer within {} ms",
                timeout.as_millis()
            ))),
        }
    }
}

fn split_by_account(commit: Commit) -> Vec<Commit> {
    commit
        .accounts()
        .into_iter()
        .map(|account| Commit {
            events: commit
                .events
                .iter()
                .filter(|e| e.account_id == account)
                .cloned()
                .collect(),
            transactions: commit
                .transactions
                .iter()
                .filter(|t| t.account_id == account)
                .cloned()
                .collect(),
            snapshots: commit
                .snapshots
                .iter()
                .filter(|s| s.account_id == account)
                .cloned()
                .collect(),
        })
        .collect()
}

fn command_kind(command: &Command) -> &'static str {
    match command {
        Command::Open { .. } => "open",
        Command::Deposit { .. } => "deposit",
        Command::Withdraw { .. } => "withdraw",
        Command::Transfer { .. } => "transfer",
        Command::Close => "close",
    }
}
