//! The database host's faults, as plan data: partitions between an instance
//! and the database, its replies dropped or held back, crashes of the
//! database host, and failovers from its primary to its standby. They are drawn from their own rng stream, so adding them
//! did not move any other part of a seed's plan.

use std::fmt;

use proptest::prelude::*;
use rand_core::{RngCore, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;

use crate::plan::{FAULT_PHASE_MS, mix};

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum DbFaultKind {
    /// No messages either way between the instance and the database: calls
    /// in flight and new connections hang until their timeout.
    Partition { instance: usize },
    /// The database's messages to the instance are lost while the instance's
    /// still arrive: commits land and their replies never come back.
    DropReplies { instance: usize },
    /// Messages either way are held back and delivered when the window
    /// ends: requests the instance stopped waiting for land late (zombie
    /// commits), replies arrive to nobody.
    Hold { instance: usize },
    /// The database is slow to commit (a stalled disk, a lock wait): each
    /// append waits this long before it is applied, while reads stay fast.
    /// Longer than the store timeouts, so the engine, having loaded in
    /// time, gives up on appends that then land: zombie commits.
    SlowCommits { ms: u64 },
    /// The database host dies (in-flight calls with it; what it committed
    /// survives) and restarts after the duration (0: a bounce).
    Crash,
    /// The primary is lost and its standby promoted when the window ends
    /// (see `replica`). `zombie`: the old primary stays up, fenced, and
    /// refuses every call, also on the connections made to it before the
    /// promotion; otherwise it dies with its calls in flight, like a crash.
    Failover { zombie: bool },
}

impl DbFaultKind {
    /// The instance whose link the fault cuts, if it cuts one.
    pub fn instance(self) -> Option<usize> {
        match self {
            DbFaultKind::Partition { instance }
            | DbFaultKind::DropReplies { instance }
            | DbFaultKind::Hold { instance } => Some(instance),
            DbFaultKind::SlowCommits { .. } | DbFaultKind::Crash | DbFaultKind::Failover { .. } => {
                None
            }
        }
    }

    /// Whether the database host is down while the fault is in force.
    pub fn host_down(self) -> bool {
        matches!(
            self,
            DbFaultKind::Crash | DbFaultKind::Failover { zombie: false }
        )
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DbFault {
    pub start_ms: u64,
    pub duration_ms: u64,
    pub kind: DbFaultKind,
}

impl DbFault {
    pub fn end_ms(&self) -> u64 {
        self.start_ms + self.duration_ms
    }
}

impl fmt::Display for DbFault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = match self.kind {
            DbFaultKind::Partition { instance } => format!("partition instance-{instance} | db"),
            DbFaultKind::DropReplies { instance } => {
                format!("drop db replies to instance-{instance}")
            }
            DbFaultKind::Hold { instance } => format!("hold instance-{instance} <-> db"),
            DbFaultKind::SlowCommits { ms } => format!("db commits take {ms} ms"),
            DbFaultKind::Crash => "crash db".to_owned(),
            DbFaultKind::Failover { zombie: true } => {
                "failover: the primary fenced, a zombie; the standby promoted at the end".to_owned()
            }
            DbFaultKind::Failover { zombie: false } => {
                "failover: the primary dies; the standby promoted at the end".to_owned()
            }
        };
        write!(
            f,
            "  db     at {:>5} ms for {:>5} ms: {what}",
            self.start_ms, self.duration_ms
        )
    }
}

/// The database faults of a seed's plan: none in about a quarter of seeds
/// (so the sweep keeps runs where only the instances fail), up to four
/// otherwise.
pub fn draw(seed: u64, instances: usize) -> Vec<DbFault> {
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(mix(seed, 7, 0));
    let mut below = |bound: u64| rng.next_u64() % bound.max(1);
    let count = [0, 1, 1, 2, 2, 3, 4, 4][below(8) as usize];
    let mut faults: Vec<DbFault> = (0..count)
        .map(|_| {
            let instance = below(instances as u64) as usize;
            let (kind, duration_ms) = match below(5) {
                0 => (DbFaultKind::Partition { instance }, 100 + below(1_200)),
                1 => (DbFaultKind::DropReplies { instance }, 50 + below(800)),
                // Longer than the engine's store timeout, so that what was
                // held lands after the engine gave up on it.
                2 => (DbFaultKind::Hold { instance }, 300 + below(900)),
                3 => (
                    DbFaultKind::SlowCommits {
                        ms: 300 + below(700),
                    },
                    200 + below(1_000),
                ),
                _ => (
                    DbFaultKind::Crash,
                    if below(3) == 0 { 0 } else { below(800) },
                ),
            };
            DbFault {
                start_ms: below(FAULT_PHASE_MS),
                duration_ms,
                kind,
            }
        })
        .collect();
    faults.extend(failovers(seed));
    faults.sort_by_key(|f| f.start_ms);
    faults
}

/// The failovers of a seed's plan: none in half of the seeds, one or two
/// otherwise. Drawn from their own stream, so that the rest of a seed's
/// database faults are what they were before the database had a standby.
fn failovers(seed: u64) -> Vec<DbFault> {
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(mix(seed, 11, 0));
    let mut below = |bound: u64| rng.next_u64() % bound.max(1);
    let count = [0, 0, 0, 1, 1, 2][below(6) as usize];
    (0..count)
        .map(|_| DbFault {
            start_ms: below(FAULT_PHASE_MS),
            duration_ms: below(600),
            kind: DbFaultKind::Failover {
                zombie: below(2) == 0,
            },
        })
        .collect()
}

/// Database faults as explicit generated data, for proptest plans.
pub fn strategy(instances: usize) -> impl Strategy<Value = Vec<DbFault>> {
    let kind = prop_oneof![
        (0..instances).prop_map(|instance| DbFaultKind::Partition { instance }),
        (0..instances).prop_map(|instance| DbFaultKind::DropReplies { instance }),
        (0..instances).prop_map(|instance| DbFaultKind::Hold { instance }),
        (300..1_000u64).prop_map(|ms| DbFaultKind::SlowCommits { ms }),
        Just(DbFaultKind::Crash),
        any::<bool>().prop_map(|zombie| DbFaultKind::Failover { zombie }),
    ];
    let fault =
        (0..FAULT_PHASE_MS, 0..1_200u64, kind).prop_map(|(start_ms, duration_ms, kind)| DbFault {
            start_ms,
            duration_ms,
            kind,
        });
    proptest::collection::vec(fault, 0..3).prop_map(|mut faults| {
        faults.sort_by_key(|f| f.start_ms);
        faults
    })
}
