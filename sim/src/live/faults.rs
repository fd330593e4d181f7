//! A plan's fault schedule as faults real processes and databases can
//! suffer: crashes become SIGKILL and a restart of the binary, partitions
//! become SIGSTOP/SIGCONT pauses of the instance (every client loses it, and
//! it keeps its database connections and open transactions while frozen),
//! and the store's error windows become connections killed from the
//! database server's side. Plain data, so the mapping is tested without
//! processes.

use std::time::Duration;

use testkit::database::Connections;

use crate::plan::{FaultKind, Plan, StoreFaultKind};

/// A change to the running processes at a time of the plan.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Change {
    /// SIGKILL: in-flight requests die with the process.
    Kill(usize),
    /// Starts the binary again (a no-op when it is running).
    Restart(usize),
    /// SIGSTOP; pauses nest, the last resume continues the process.
    Pause(usize),
    Resume(usize),
    /// The faults are over: every instance running and continued.
    HealAll,
}

/// Connections to the run's database killed again and again in a window.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KillWindow {
    pub start: Duration,
    pub end: Duration,
    pub which: Connections,
    pub every: Duration,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Schedule {
    /// In time order (stable: at equal times, the plan's order).
    pub changes: Vec<(Duration, Change)>,
    pub kill_windows: Vec<KillWindow>,
    /// Store windows without a live counterpart (latency; every window on
    /// SQLite, whose connections no server can kill).
    pub skipped_windows: usize,
}

/// How often the kills of the committing connections poll: an append is in
/// its commit for a few milliseconds, so only a fast poll meets one.
const COMMITTING_POLL: Duration = Duration::from_millis(10);

/// The live form of `plan`'s faults; `server` says whether the database is
/// a server whose connections can be killed.
pub fn schedule(plan: &Plan, server: bool) -> Schedule {
    let ms = Duration::from_millis;
    let mut changes = Vec::new();
    for fault in &plan.faults {
        let (start, end) = (ms(fault.start_ms), ms(fault.start_ms + fault.duration_ms));
        match fault.kind {
            FaultKind::Crash { instance } => {
                changes.push((start, Change::Kill(instance)));
                changes.push((end, Change::Restart(instance)));
            }
            FaultKind::Partition { instance, .. } => {
                changes.push((start, Change::Pause(instance)));
                changes.push((end, Change::Resume(instance)));
            }
        }
    }
    changes.push((ms(plan.heal_at_ms()), Change::HealAll));
    changes.sort_by_key(|(at, _)| *at);
    let mut kill_windows = Vec::new();
    let mut skipped_windows = 0;
    for window in &plan.store_windows {
        let which = match window.kind {
            StoreFaultKind::Latency { .. } => None,
            StoreFaultKind::Unavailable => Some(Connections::All),
            StoreFaultKind::AmbiguousLanded | StoreFaultKind::AmbiguousLost => {
                Some(Connections::Committing)
            }
        };
        let Some(which) = which.filter(|_| server) else {
            skipped_windows += 1;
            continue;
        };
        // The plan's share of calls hit becomes the kill rate: every 100 ms
        // at 1000‰, every 500 ms at 200‰.
        let every = match which {
            Connections::All => ms(100_000 / window.permille.max(1)),
            Connections::Committing => COMMITTING_POLL,
        };
        kill_windows.push(KillWindow {
            start: ms(window.start_ms),
            end: ms(window.start_ms + window.duration_ms),
            which,
            every,
        });
    }
    Schedule {
        changes,
        kill_windows,
        skipped_windows,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::{Fault, StoreWindow};

    fn plan() -> Plan {
        let mut plan = Plan::from_seed(7);
        // The database host's faults have no live form; only the heal time
        // would see them.
        plan.db_faults.clear();
        plan.faults = vec![
            Fault {
                start_ms: 100,
                duration_ms: 400,
                kind: FaultKind::Partition {
                    client: 1,
                    instance: 0,
                },
            },
            Fault {
                start_ms: 200,
                duration_ms: 0,
                kind: FaultKind::Crash { instance: 1 },
            },
        ];
        plan.store_windows = vec![
            StoreWindow {
                start_ms: 50,
                duration_ms: 1_000,
                kind: StoreFaultKind::Unavailable,
                permille: 500,
            },
            StoreWindow {
                start_ms: 60,
                duration_ms: 100,
                kind: StoreFaultKind::AmbiguousLost,
                permille: 300,
            },
            StoreWindow {
                start_ms: 70,
                duration_ms: 100,
                kind: StoreFaultKind::Latency { ms: 40 },
                permille: 300,
            },
        ];
        plan.fail_rate = 0.0;
        plan
    }

    #[test]
    fn crashes_become_kills_and_restarts_partitions_pauses_and_healing_comes_last() {
        let schedule = schedule(&plan(), true);
        let ms = Duration::from_millis;
        assert_eq!(
            schedule.changes,
            vec![
                (ms(100), Change::Pause(0)),
                (ms(200), Change::Kill(1)),
                (ms(200), Change::Restart(1)),
                (ms(500), Change::Resume(0)),
                (ms(1_050), Change::HealAll),
            ]
        );
    }

    #[test]
    fn store_errors_become_connection_kills_on_a_server_and_nothing_on_sqlite() {
        let ms = Duration::from_millis;
        let server = schedule(&plan(), true);
        assert_eq!(
            server.kill_windows,
            vec![
                KillWindow {
                    start: ms(50),
                    end: ms(1_050),
                    which: Connections::All,
                    every: ms(200),
                },
                KillWindow {
                    start: ms(60),
                    end: ms(160),
                    which: Connections::Committing,
                    every: COMMITTING_POLL,
                },
            ]
        );
        assert_eq!(server.skipped_windows, 1, "latency has no live form");
        let sqlite = schedule(&plan(), false);
        assert!(sqlite.kill_windows.is_empty());
        assert_eq!(sqlite.skipped_windows, 3);
        assert_eq!(sqlite.changes, server.changes);
    }
}
