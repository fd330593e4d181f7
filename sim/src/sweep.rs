//! Many seeds at once: one simulation per thread (a turmoil `Sim` cannot
//! move between threads), seeds handed out in order, results reported in a
//! deterministic way whatever the threads' timing.

use std::collections::BTreeMap;
use std::ops::Range;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::bugs::PlantedBug;

use crate::plan::Plan;
use crate::trace::Trace;
use crate::world;

/// Seeds the self-test may spend on one planted bug before declaring that
/// it survived.
pub const SELF_TEST_SEEDS: u64 = 300;

pub const BUG_NAMES: [(PlantedBug, &str); 28] = [
    (PlantedBug::TransferAsTwoAppends, "transfer-as-two-appends"),
    (PlantedBug::SkipIdempotencyCheck, "skip-idempotency-check"),
    (PlantedBug::RetryWithoutReload, "retry-without-reload"),
    (PlantedBug::StaleSnapshot, "stale-snapshot"),
    (
        PlantedBug::SuccessOnAmbiguousCommit,
        "success-on-ambiguous-commit",
    ),
    (
        PlantedBug::CacheKeepsRefusedCommit,
        "cache-keeps-refused-commit",
    ),
    (
        PlantedBug::AppendWithoutSequenceCheck,
        "append-without-sequence-check",
    ),
    (PlantedBug::RecordOnSourceOnly, "record-on-source-only"),
    (PlantedBug::AckBeforeCommit, "ack-before-commit"),
    (
        PlantedBug::InsufficientAtExactBalance,
        "insufficient-at-exact-balance",
    ),
    (PlantedBug::ZeroTransferAccepted, "zero-transfer-accepted"),
    (PlantedBug::StaleStateRead, "stale-state-read"),
    (
        PlantedBug::EventsPageMissesNewest,
        "events-page-misses-newest",
    ),
    (PlantedBug::FeedSkips, "feed-skips"),
    (PlantedBug::RefusalAsSuccess, "refusal-as-success"),
    (PlantedBug::ClosedAsNotFound, "closed-as-not-found"),
    (
        PlantedBug::DepositSkipsOwnerCheck,
        "deposit-skips-owner-check",
    ),
    (PlantedBug::OpenSkipsOwnerCheck, "open-skips-owner-check"),
    (PlantedBug::StateSkipsOwnerCheck, "state-skips-owner-check"),
    (
        PlantedBug::EventsSkipsOwnerCheck,
        "events-skips-owner-check",
    ),
    (
        PlantedBug::WithdrawSkipsOwnerCheck,
        "withdraw-skips-owner-check",
    ),
    (
        PlantedBug::TransferSkipsOwnerCheck,
        "transfer-skips-owner-check",
    ),
    (PlantedBug::CloseSkipsOwnerCheck, "close-skips-owner-check"),
    (PlantedBug::FeedSkipsOwnerCheck, "feed-skips-owner-check"),
    (
        PlantedBug::StateAtSkipsOwnerCheck,
        "state-at-version-skips-owner-check",
    ),
    (
        PlantedBug::BatchAnswersMisaligned,
        "batch-answers-misaligned",
    ),
    (PlantedBug::PastStateOneShort, "past-state-one-short"),
    (PlantedBug::AsyncReplication, "async-replication"),
];

pub fn bug_name(bug: PlantedBug) -> &'static str {
    BUG_NAMES
        .iter()
        .find(|(b, _)| *b == bug)
        .map_or("unknown", |(_, name)| name)
}

pub fn bug_from_name(name: &str) -> Result<PlantedBug, String> {
    BUG_NAMES
        .iter()
        .find(|(_, n)| *n == name)
        .map(|(bug, _)| *bug)
        .ok_or_else(|| {
            let names: Vec<&str> = BUG_NAMES.iter().map(|(_, n)| *n).collect();
            format!("unknown planted bug {name:?}; one of: {}", names.join(", "))
        })
}

/// The one command that replays a seed.
pub fn replay_command(seed: u64, bug: Option<PlantedBug>) -> String {
    let bug = bug.map_or_else(String::new, |bug| format!(" --bug {}", bug_name(bug)));
    format!("cargo run --release -p sim -- --seed {seed}{bug} --trace")
}

pub fn run_seed(seed: u64, bug: Option<PlantedBug>, trace: Trace) -> world::Outcome {
    let mut plan = Plan::from_seed(seed);
    plan.bug = bug;
    world::run(&plan, trace)
}

/// How many seeds exercised each fault and each recovery path: a sweep that
/// passes only counts if its runs went where the bugs hide.
#[derive(Clone, Debug, Default)]
pub struct Coverage {
    pub crashes: u64,
    pub partitions: u64,
    pub lost_replies: u64,
    pub store_unavailable: u64,
    pub ambiguous_landed: u64,
    pub ambiguous_lost: u64,
    pub conflicts: u64,
    pub ambiguous_seen: u64,
    /// The database host's faults (see `dbfaults::plan`) and what they caused.
    pub db_crashes: u64,
    pub db_partitions: u64,
    pub db_reply_faults: u64,
    pub db_slow_commits: u64,
    pub zombie_commits: u64,
    pub db_failovers: u64,
    pub cache_stale: u64,
    pub batched_members: u64,
    /// Seeds with a feed reader, and with one that caught up.
    pub feed_readers: u64,
    pub feed_caught_up: u64,
    /// Seeds that reached each of the contract's branches (`check::BRANCHES`).
    pub branches: BTreeMap<&'static str, u64>,
}

impl Coverage {
    fn add(&mut self, summary: &world::Summary) {
        let count = |hit: bool| u64::from(hit);
        self.crashes += count(summary.crashes > 0);
        self.partitions += count(summary.partitions > 0);
        self.lost_replies += count(summary.lost_replies > 0);
        self.store_unavailable += count(summary.store_unavailable > 0);
        self.ambiguous_landed += count(summary.ambiguous_landed > 0);
        self.ambiguous_lost += count(summary.ambiguous_lost > 0);
        self.conflicts += count(summary.conflicts > 0);
        self.ambiguous_seen += count(summary.ambiguous_seen > 0);
        self.db_crashes += count(summary.db_crashes > 0);
        self.db_partitions += count(summary.db_partitions > 0);
        self.db_reply_faults += count(summary.db_reply_faults > 0);
        self.db_slow_commits += count(summary.db_slow_commits > 0);
        self.zombie_commits += count(summary.zombie_commits > 0);
        self.db_failovers += count(summary.db_failovers > 0);
        self.cache_stale += count(summary.cache_stale > 0);
        self.batched_members += count(summary.batched_members > 0);
        self.feed_readers += count(summary.feed_readers > 0);
        self.feed_caught_up += count(summary.feed_caught_up > 0);
        for branch in &summary.branches {
            *self.branches.entry(branch).or_default() += 1;
        }
    }

    /// Every branch of `check::BRANCHES` with the seeds that reached it.
    pub fn branch_counts(&self) -> Vec<(&'static str, u64)> {
        crate::check::BRANCHES
            .iter()
            .map(|branch| (*branch, self.branches.get(branch).copied().unwrap_or(0)))
            .collect()
    }

    /// One line: the share of `ran` seeds that saw each.
    pub fn describe(&self, ran: u64) -> String {
        let share = |n: u64| 100.0 * n as f64 / ran.max(1) as f64;
        format!(
            "seeds with crashes {:.0}%, partitions {:.0}%, lost replies {:.0}%, store errors {:.0}%, ambiguous commits landed {:.0}% / lost {:.0}% (engine saw {:.0}%), write conflicts {:.0}%; database: crashes {:.0}%, partitions {:.0}%, replies dropped or held {:.0}%, slow commits {:.0}%, zombie commits {:.0}%, failovers {:.0}%; stale cache entries {:.0}%, batches of several commits {:.0}%; feed readers {:.0}% (caught up {:.0}%)",
            share(self.crashes),
            share(self.partitions),
            share(self.lost_replies),
            share(self.store_unavailable),
            share(self.ambiguous_landed),
            share(self.ambiguous_lost),
            share(self.ambiguous_seen),
            share(self.conflicts),
            share(self.db_crashes),
            share(self.db_partitions),
            share(self.db_reply_faults),
            share(self.db_slow_commits),
            share(self.zombie_commits),
            share(self.db_failovers),
            share(self.cache_stale),
            share(self.batched_members),
            share(self.feed_readers),
            share(self.feed_caught_up),
        ) + &self
            .branch_counts()
            .iter()
            .map(|(branch, seeds)| format!(", {branch} {:.0}%", share(*seeds)))
            .collect::<String>()
    }
}

pub struct Failure {
    pub seed: u64,
    pub violations: Vec<String>,
}

pub struct Report {
    pub ran: u64,
    pub coverage: Coverage,
    /// Every seed's digest, to compare runs across thread counts.
    pub digests: BTreeMap<u64, String>,
    /// In seed order.
    pub failures: Vec<Failure>,
    pub elapsed: Duration,
}

impl Report {
    pub fn seeds_per_second(&self) -> f64 {
        self.ran as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

pub struct Sweep {
    pub seeds: Range<u64>,
    pub bug: Option<PlantedBug>,
    pub threads: usize,
    /// Stop handing out seeds after the first failure (the self-test). The
    /// seeds already running finish, so the smallest failing seed is found
    /// whatever the timing.
    pub stop_at_first_failure: bool,
}

impl Sweep {
    /// Runs the sweep; `progress(done, failures)` is called from this thread
    /// about once a second.
    pub fn run(&self, mut progress: impl FnMut(u64, usize)) -> Report {
        let started = Instant::now();
        let next = AtomicU64::new(self.seeds.start);
        let stop = AtomicBool::new(false);
        let (sender, receiver) = mpsc::channel::<(u64, world::Outcome)>();
        let mut failures = Vec::new();
        let mut digests = BTreeMap::new();
        let mut coverage = Coverage::default();
        let mut ran = 0;
        std::thread::scope(|scope| {
            for _ in 0..self.threads.max(1) {
                let sender = sender.clone();
                let (next, stop) = (&next, &stop);
                scope.spawn(move || {
                    while !stop.load(Ordering::SeqCst) {
                        let seed = next.fetch_add(1, Ordering::SeqCst);
                        if seed >= self.seeds.end {
                            break;
                        }
                        let outcome = run_seed(seed, self.bug, Trace::disabled());
                        if !outcome.passed() && self.stop_at_first_failure {
                            stop.store(true, Ordering::SeqCst);
                        }
                        if sender.send((seed, outcome)).is_err() {
                            break;
                        }
                    }
                });
            }
            drop(sender);
            let mut last = Instant::now();
            loop {
                match receiver.recv_timeout(Duration::from_millis(200)) {
                    Ok((seed, outcome)) => {
                        ran += 1;
                        coverage.add(&outcome.summary);
                        digests.insert(seed, outcome.digest);
                        if !outcome.violations.is_empty() {
                            failures.push(Failure {
                                seed,
                                violations: outcome.violations,
                            });
                        }
                    }
                    Err(mpsc::RecvTimeoutError::Timeout) => {}
                    Err(mpsc::RecvTimeoutError::Disconnected) => break,
                }
                if last.elapsed() >= Duration::from_secs(1) {
                    last = Instant::now();
                    progress(ran, failures.len());
                }
            }
        });
        failures.sort_by_key(|f| f.seed);
        Report {
            ran,
            coverage,
            digests,
            failures,
            elapsed: started.elapsed(),
        }
    }
}

/// Which seed caught a planted bug, or none within the bound.
pub struct Catch {
    pub bug: PlantedBug,
    pub caught: Option<Failure>,
    pub seeds_run: u64,
}

/// Runs every planted bug until a seed catches it.
pub fn self_test(threads: usize, mut each: impl FnMut(&Catch)) -> Vec<Catch> {
    BUG_NAMES
        .iter()
        .map(|(bug, _)| {
            let report = Sweep {
                seeds: 0..SELF_TEST_SEEDS,
                bug: Some(*bug),
                threads,
                stop_at_first_failure: true,
            }
            .run(|_, _| {});
            let catch = Catch {
                bug: *bug,
                caught: report.failures.into_iter().next(),
                seeds_run: report.ran,
            };
            each(&catch);
            catch
        })
        .collect()
}

pub fn threads_default() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}
