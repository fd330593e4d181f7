//! The simulation as part of `cargo test --workspace`: a bounded number of
//! seeds and generated histories must pass, replays must be exact, and every
//! planted bug must be caught.

use sim::bugs::PlantedBug;
use sim::histories;
use sim::sweep::{self, Sweep, bug_name, replay_command};
use sim::trace::Trace;

/// Enough seeds to cover every kind of fault and branch of the contract,
/// few enough for a debug build.
const SEEDS: u64 = 300;

#[test]
fn a_bounded_sweep_of_seeds_passes_and_reaches_every_branch() {
    let report = Sweep {
        seeds: 0..SEEDS,
        bug: None,
        threads: 2,
        stop_at_first_failure: false,
    }
    .run(|_, _| {});
    assert_eq!(report.ran, SEEDS);
    // A passing sweep only counts if its runs went where the bugs hide.
    let coverage = &report.coverage;
    for (what, seeds) in [
        ("crashes", coverage.crashes),
        ("partitions", coverage.partitions),
        ("lost replies", coverage.lost_replies),
        ("store errors", coverage.store_unavailable),
        ("ambiguous commits that landed", coverage.ambiguous_landed),
        ("ambiguous commits that were lost", coverage.ambiguous_lost),
        ("write conflicts", coverage.conflicts),
        ("a feed reader that caught up", coverage.feed_caught_up),
    ] {
        assert!(
            seeds >= SEEDS / 20,
            "only {seeds} of {SEEDS} seeds saw {what}"
        );
    }
    // Conflicts are where the concurrency bugs hide: a third of the seeds.
    assert!(
        coverage.conflicts * 10 >= SEEDS * 3,
        "only {} of {SEEDS} seeds had a write conflict",
        coverage.conflicts
    );
    for (branch, seeds) in coverage.branch_counts() {
        assert!(
            seeds >= SEEDS / 20,
            "only {seeds} of {SEEDS} seeds reached the branch {branch:?}"
        );
    }
    let failures: Vec<String> = report
        .failures
        .iter()
        .map(|f| {
            format!(
                "{}\n  {}",
                replay_command(f.seed, None),
                f.violations.join("\n  ")
            )
        })
        .collect();
    assert!(
        failures.is_empty(),
        "failing seeds:\n{}",
        failures.join("\n")
    );
}

#[test]
fn the_same_seed_replays_to_the_same_digest_and_other_seeds_differ() {
    let first = sweep::run_seed(42, None, Trace::disabled());
    let second = sweep::run_seed(42, None, Trace::disabled());
    assert!(first.passed(), "{:?}", first.violations);
    assert_eq!(first.digest, second.digest);
    let others: Vec<String> = (43..48)
        .map(|seed| sweep::run_seed(seed, None, Trace::disabled()).digest)
        .collect();
    assert!(others.iter().all(|digest| *digest != first.digest));
    let mut distinct = others.clone();
    distinct.sort();
    distinct.dedup();
    assert_eq!(distinct.len(), others.len());
}

#[test]
fn runs_on_parallel_threads_replay_exactly_alone() {
    let sweep = |threads| {
        Sweep {
            seeds: 0..24,
            bug: None,
            threads,
            stop_at_first_failure: false,
        }
        .run(|_, _| {})
        .digests
    };
    let parallel = sweep(2);
    for (seed, digest) in &parallel {
        let alone = sweep::run_seed(*seed, None, Trace::disabled());
        assert_eq!(
            *digest, alone.digest,
            "seed {seed} ran differently in parallel"
        );
    }
    assert_eq!(parallel, sweep(2));
}

#[test]
fn a_trace_does_not_change_the_run() {
    let traced = sweep::run_seed(7, None, Trace::enabled());
    let silent = sweep::run_seed(7, None, Trace::disabled());
    assert_eq!(traced.digest, silent.digest);
    assert!(!traced.trace.is_empty());
}

#[test]
fn the_self_test_catches_every_planted_bug() {
    let catches = sweep::self_test(2, |_| {});
    assert_eq!(catches.len(), PlantedBug::ALL.len());
    let survivors: Vec<&str> = catches
        .iter()
        .filter(|c| c.caught.is_none())
        .map(|c| bug_name(c.bug))
        .collect();
    assert!(
        survivors.is_empty(),
        "planted bugs not caught: {survivors:?}"
    );
}

#[test]
fn asynchronous_replication_is_reported_as_lost_acknowledged_operations_and_a_feed_rewind() {
    let mut named: std::collections::BTreeSet<&str> = std::collections::BTreeSet::new();
    for seed in 0..sweep::SELF_TEST_SEEDS {
        let outcome = sweep::run_seed(seed, Some(PlantedBug::AsyncReplication), Trace::disabled());
        for violation in &outcome.violations {
            named.extend(
                sim::check::NAMED
                    .iter()
                    .copied()
                    .filter(|name| violation.starts_with(name)),
            );
        }
        if named.len() == sim::check::NAMED.len() {
            return;
        }
    }
    panic!("only {named:?} reported");
}

#[test]
fn generated_histories_pass() {
    if let Err(counterexample) = histories::explore(32, None, 500) {
        panic!(
            "minimal failing history:\n{}\n{}",
            counterexample.plan, counterexample.reason
        );
    }
}

#[test]
fn generated_histories_find_and_shrink_a_planted_bug() {
    let counterexample = histories::explore(200, Some(PlantedBug::SuccessOnAmbiguousCommit), 100)
        .expect_err("proptest must find the planted bug");
    assert!(!counterexample.reason.is_empty());
    let operations: usize = counterexample.plan.clients.iter().map(Vec::len).sum();
    assert!(operations < 40, "not shrunk:\n{}", counterexample.plan);
}
