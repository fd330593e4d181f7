//! proptest over whole plans: histories and fault schedules as explicit
//! generated data (operations with think times, partitions, crashes and
//! store-fault windows at given times), so a failure shrinks to a minimal
//! plan, printed readably. No random message loss here: it shrinks poorly.

use crate::bugs::PlantedBug;
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::test_runner::{Config, RngAlgorithm, TestError, TestRng, TestRunner};

use crate::plan::{
    Action, CLIENTS, FAULT_PHASE_MS, Fault, FaultKind, OWNERS, Op, Past, Plan, StoreFaultKind,
    StoreWindow, Style, Who,
};
use crate::trace::Trace;
use crate::world;

fn action(accounts: usize) -> impl Strategy<Value = Action> {
    let account = 0..accounts;
    let amount = 0..40i64;
    prop_oneof![
        3 => (account.clone(), amount.clone()).prop_map(|(account, amount)| Action::Deposit { account, amount }),
        2 => (account.clone(), amount.clone()).prop_map(|(account, amount)| Action::Withdraw { account, amount }),
        3 => (account.clone(), 0..accounts, amount).prop_map(move |(from, offset, amount)| Action::Transfer {
            from,
            to: (from + offset) % accounts,
            amount,
        }),
        2 => (account.clone(), 0..OWNERS).prop_map(move |(account, owner)| Action::Open {
            account,
            owner: if owner < accounts { account } else { owner },
        }),
        1 => account.clone().prop_map(|account| Action::Close { account }),
        1 => account.clone().prop_map(|account| Action::GetState { account }),
        1 => (account.clone(), past()).prop_map(|(account, point)| Action::GetStateAt { account, point }),
        1 => (account, 1..4u64, prop::option::of(1..4u64))
            .prop_map(|(account, from, limit)| Action::GetEvents { account, from, limit }),
    ]
}

/// A past-state read's point, inside and outside the history.
fn past() -> impl Strategy<Value = Past> {
    prop_oneof![
        (1..12u64).prop_map(Past::Version),
        (-1_000..FAULT_PHASE_MS as i64 + 1_000).prop_map(Past::At),
    ]
}

fn op(instances: usize, accounts: usize) -> impl Strategy<Value = Op> {
    (
        0..200u64,
        action(accounts),
        any::<bool>(),
        0..instances,
        prop::bool::weighted(0.2),
        prop::bool::weighted(0.15),
    )
        .prop_map(|(think_ms, action, path, instance, resend, overlap)| Op {
            think_ms,
            action,
            style: if path { Style::Path } else { Style::Query },
            instance,
            resend,
            reuse: None,
            caller: Who::Anyone,
            overlap,
        })
}

fn fault(clients: usize, instances: usize) -> impl Strategy<Value = Fault> {
    let kind = prop_oneof![
        (0..clients, 0..instances)
            .prop_map(|(client, instance)| FaultKind::Partition { client, instance }),
        (0..instances).prop_map(|instance| FaultKind::Crash { instance }),
    ];
    (0..FAULT_PHASE_MS, 0..1_500u64, kind).prop_map(|(start_ms, duration_ms, kind)| Fault {
        start_ms,
        duration_ms,
        kind,
    })
}

fn store_window() -> impl Strategy<Value = StoreWindow> {
    let kind = prop_oneof![
        (10..800u64).prop_map(|ms| StoreFaultKind::Latency { ms }),
        Just(StoreFaultKind::Unavailable),
        Just(StoreFaultKind::AmbiguousLanded),
        Just(StoreFaultKind::AmbiguousLost),
    ];
    (0..FAULT_PHASE_MS, 50..1_500u64, kind, 200..=1_000u64).prop_map(
        |(start_ms, duration_ms, kind, permille)| StoreWindow {
            start_ms,
            duration_ms,
            kind,
            permille,
        },
    )
}

/// Plans of every size the sweep uses, with a planted bug (or none).
pub fn plans(bug: Option<PlantedBug>) -> impl Strategy<Value = Plan> {
    (0..1_000u64, 2..=3usize, 2..=4usize, 2..=CLIENTS.len()).prop_flat_map(
        move |(seed, instances, accounts, clients)| {
            (
                vec(vec(op(instances, accounts), 1..10), clients),
                vec(fault(clients, instances), 0..4),
                vec(store_window(), 0..4),
                1..40u64,
                0..6u64,
                prop::sample::select(vec![2u64, 3, 5, 50]),
                crate::dbfaults::plan::strategy(instances),
            )
                .prop_map(
                    move |(
                        clients,
                        mut faults,
                        mut store_windows,
                        latency_max_ms,
                        store_latency_ms,
                        snapshot_every,
                        db_faults,
                    )| {
                        faults.sort_by_key(|f| f.start_ms);
                        store_windows.sort_by_key(|w| w.start_ms);
                        Plan {
                            faults,
                            store_windows,
                            latency_max_ms,
                            store_latency_ms,
                            snapshot_every,
                            bug,
                            db_faults,
                            ..Plan::quiet(seed, instances, accounts, clients)
                        }
                    },
                )
        },
    )
}

/// A failing plan after shrinking, with what the checker said about it.
pub struct Counterexample {
    pub plan: Plan,
    pub reason: String,
}

/// Runs `cases` generated plans with a fixed proptest rng (the same cases on
/// every run, no persistence files) and shrinks the first failure for at
/// most `shrink_iterations` runs.
pub fn explore(
    cases: u32,
    bug: Option<PlantedBug>,
    shrink_iterations: u32,
) -> Result<(), Box<Counterexample>> {
    let config = Config {
        cases,
        failure_persistence: None,
        max_shrink_iters: shrink_iterations,
        ..Config::default()
    };
    let mut runner =
        TestRunner::new_with_rng(config, TestRng::deterministic_rng(RngAlgorithm::ChaCha));
    let result = runner.run(&plans(bug), |plan| {
        let outcome = world::run(&plan, Trace::disabled());
        if outcome.passed() {
            Ok(())
        } else {
            Err(TestCaseError::fail(outcome.violations.join("\n")))
        }
    });
    match result {
        Ok(()) => Ok(()),
        Err(TestError::Fail(reason, plan)) => Err(Box::new(Counterexample {
            plan,
            reason: reason.to_string(),
        })),
        Err(TestError::Abort(reason)) => panic!("proptest aborted: {reason}"),
    }
}
