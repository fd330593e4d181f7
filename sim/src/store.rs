//! The fault-injecting store: the one real `MemoryStore`, shared by every
//! instance like a database outside the hosts (it survives their crashes),
//! seen through a wrapper that adds latency, errors and ambiguous commits in
//! the plan's time windows.
//!
//! It stays here rather than in the test kit: its faults are drawn from the
//! run's seed, placed in virtual-time windows and written to the run's
//! trace — the simulation's own machinery. It is written as the kit's
//! `Decorator`, so calls it leaves alone pass through by themselves.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use accounts::store::{AppendError, Commit, EventStore, StoreError};
use async_trait::async_trait;
use rand_core::{RngCore, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;
use testkit::{Decorated, Decorator, Read};

use crate::plan::{StoreFaultKind, StoreWindow, mix};
use crate::trace::Trace;

/// Counts of the faults injected, for the run's summary.
#[derive(Default)]
pub struct Injected {
    pub unavailable: AtomicU64,
    pub ambiguous_landed: AtomicU64,
    pub ambiguous_lost: AtomicU64,
    pub delayed: AtomicU64,
}

pub struct FaultyStore {
    inner: Arc<dyn EventStore>,
    windows: Vec<StoreWindow>,
    base_latency: Duration,
    rng: Mutex<Xoshiro256PlusPlus>,
    trace: Trace,
    pub injected: Injected,
}

/// The faults one store call suffers.
#[derive(Default)]
struct Hits {
    latency: Duration,
    unavailable: bool,
    ambiguous_landed: bool,
    ambiguous_lost: bool,
}

impl FaultyStore {
    pub fn new(
        inner: Arc<dyn EventStore>,
        windows: Vec<StoreWindow>,
        base_latency: Duration,
        seed: u64,
        trace: Trace,
    ) -> Arc<Decorated<FaultyStore>> {
        Arc::new(Decorated(FaultyStore {
            inner,
            windows,
            base_latency,
            rng: Mutex::new(Xoshiro256PlusPlus::seed_from_u64(mix(seed, 4, 0))),
            trace,
            injected: Injected::default(),
        }))
    }

    /// Draws the faults for a call made now. Calls are made in a
    /// deterministic order (turmoil runs everything on one thread), so the
    /// draws are too.
    fn hits(&self) -> Hits {
        let now_ms = turmoil::sim_elapsed().unwrap_or_default().as_millis() as u64;
        let mut hits = Hits {
            latency: self.base_latency,
            ..Hits::default()
        };
        let mut rng = self.rng.lock().unwrap_or_else(|p| p.into_inner());
        for window in &self.windows {
            let active = (window.start_ms..window.start_ms + window.duration_ms).contains(&now_ms);
            if !active || rng.next_u64() % 1_000 >= window.permille {
                continue;
            }
            match window.kind {
                StoreFaultKind::Latency { ms } => {
                    self.injected.delayed.fetch_add(1, Ordering::Relaxed);
                    hits.latency = hits.latency.max(Duration::from_millis(ms));
                }
                StoreFaultKind::Unavailable => hits.unavailable = true,
                StoreFaultKind::AmbiguousLanded => hits.ambiguous_landed = true,
                StoreFaultKind::AmbiguousLost => hits.ambiguous_lost = true,
            }
        }
        hits
    }

    async fn delay(&self, latency: Duration) {
        if !latency.is_zero() {
            tokio::time::sleep(latency).await;
        }
    }

    fn unavailable(&self, call: &str) -> StoreError {
        self.injected.unavailable.fetch_add(1, Ordering::Relaxed);
        self.trace.log(|| format!("store: {call} fails (injected)"));
        StoreError::Unavailable("injected fault".to_owned())
    }
}

fn describe(commits: &[Commit]) -> String {
    let events: Vec<String> = commits
        .iter()
        .map(|commit| {
            let events: Vec<String> = commit
                .events
                .iter()
                .map(|e| format!("{}#{}", short(&e.account_id), e.sequence_number))
                .collect();
            events.join(" ")
        })
        .collect();
    events.join(" | ")
}

/// The first 8 hex digits of an id, enough to tell a run's ids apart.
pub fn short(id: &impl std::fmt::Display) -> String {
    id.to_string().chars().take(8).collect()
}

#[async_trait]
impl Decorator for FaultyStore {
    fn inner(&self) -> &dyn EventStore {
        &*self.inner
    }

    /// Every read but a ping suffers the latency and errors of the windows
    /// it falls in.
    async fn before_read(&self, read: Read) -> Result<(), StoreError> {
        if read == Read::Ping {
            return Ok(());
        }
        let hits = self.hits();
        self.delay(hits.latency).await;
        if hits.unavailable {
            return Err(self.unavailable(read.name()));
        }
        Ok(())
    }

    /// One draw of faults per batch, as one database transaction suffers
    /// them: lost before COMMIT or after, for every member that was to be
    /// written.
    async fn append_batch(&self, commits: &[Commit]) -> Vec<Result<(), AppendError>> {
        let hits = self.hits();
        // Half the latency on each side of the write: a caller's timeout can
        // fire before the commit lands (nothing written) or after (written,
        // outcome unknown to the caller).
        self.delay(hits.latency / 2).await;
        if hits.unavailable {
            let error = AppendError::from(self.unavailable("append"));
            return vec![Err(error); commits.len()];
        }
        if hits.ambiguous_lost {
            self.injected.ambiguous_lost.fetch_add(1, Ordering::Relaxed);
            self.trace.log(|| {
                format!(
                    "store: append {} lost, reported ambiguous (injected)",
                    describe(commits)
                )
            });
            let error = AppendError::Ambiguous("injected: the commit was lost".to_owned());
            return vec![Err(error); commits.len()];
        }
        let mut results = self.inner.append_batch(commits).await;
        self.trace
            .log(|| format!("store: append {} -> {:?}", describe(commits), results));
        self.delay(hits.latency - hits.latency / 2).await;
        if hits.ambiguous_landed && results.iter().any(Result::is_ok) {
            self.injected
                .ambiguous_landed
                .fetch_add(1, Ordering::Relaxed);
            self.trace.log(|| {
                format!(
                    "store: append {} landed, reported ambiguous (injected)",
                    describe(commits)
                )
            });
            for result in &mut results {
                if result.is_ok() {
                    *result = Err(AppendError::Ambiguous(
                        "injected: the reply was lost".to_owned(),
                    ));
                }
            }
        }
        results
    }
}
