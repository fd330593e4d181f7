//! The database's own faults, drawn inside the database host for each call
//! it serves, in the plan's store windows (`Plan::store_windows`): a slow database (latency inside
//! the host, half before and half after the write), a database that refuses
//! a call (an explicit error, answered at once), and a connection the
//! database kills just before or just after COMMIT. These are what the
//! network cannot do: it can lose and delay messages and cut links, but not
//! pick one call to answer with an error or one commit to die around. The
//! ambiguity of a killed connection is not fabricated here: the instance's
//! `RemoteStore` sees the connection break and concludes it by itself.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use accounts::store::StoreError;
use rand_core::{RngCore, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;

use crate::plan::{StoreFaultKind, StoreWindow, mix};
use crate::trace::Trace;

/// Counts of the faults injected, for the run's summary.
#[derive(Default)]
pub struct Injected {
    pub unavailable: AtomicU64,
    pub killed_after_commit: AtomicU64,
    pub killed_before_commit: AtomicU64,
    pub delayed: AtomicU64,
}

/// The faults one call suffers.
#[derive(Default)]
pub struct Hits {
    pub latency: Duration,
    pub unavailable: bool,
    /// An append's connection dies once its commit is applied.
    pub kill_after_commit: bool,
    /// An append's connection dies before anything is written.
    pub kill_before_commit: bool,
}

/// Lives outside the database host (in the world), so that its draws go on
/// across the host's restarts.
pub struct StoreFaults {
    windows: Vec<StoreWindow>,
    rng: Mutex<Xoshiro256PlusPlus>,
    pub trace: Trace,
    pub injected: Injected,
}

impl StoreFaults {
    pub fn new(windows: Vec<StoreWindow>, seed: u64, trace: Trace) -> StoreFaults {
        StoreFaults {
            windows,
            rng: Mutex::new(Xoshiro256PlusPlus::seed_from_u64(mix(seed, 4, 0))),
            trace,
            injected: Injected::default(),
        }
    }

    /// Draws the faults for a call served now. Calls are served in a
    /// deterministic order (turmoil runs everything on one thread), so the
    /// draws are too.
    pub fn hits(&self) -> Hits {
        let now_ms = turmoil::sim_elapsed().unwrap_or_default().as_millis() as u64;
        let mut hits = Hits::default();
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
                StoreFaultKind::AmbiguousLanded => hits.kill_after_commit = true,
                StoreFaultKind::AmbiguousLost => hits.kill_before_commit = true,
            }
        }
        hits
    }

    pub fn unavailable(&self, call: &str) -> StoreError {
        self.injected.unavailable.fetch_add(1, Ordering::Relaxed);
        self.trace.log(|| format!("db: {call} refused (injected)"));
        StoreError::Unavailable("injected fault".to_owned())
    }
}
