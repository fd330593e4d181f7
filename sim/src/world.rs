//! One simulation run: service instances (the real router and engine, served
//! by the service's own serve loop over turmoil TCP) sharing one faulty
//! store, client hosts running the plan's workload, and the fault schedule
//! applied at its exact virtual times. Then the checker reads the store.

use std::cell::{Cell, RefCell};
use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime};

use accounts::app::InstanceBuilder;
use accounts::domain::Timestamp;
use accounts::engine::{Clock, EngineConfig};
use accounts::http::{Limits, ServeConfig};
use accounts::metrics::Metrics;
use accounts::store::{EventStore, MemoryStore};
use sha2::{Digest, Sha256};

use crate::bugs::{self, PlantedBug};
use crate::check::{self, History, Log};
use crate::client::{self as clients, Client, LIVENESS_BOUND, OpRecord};
use crate::landing::{Landings, Stamped};
use crate::net::{PORT, SimListener};
use crate::plan::{CLIENTS, FaultKind, INSTANCES, Plan, mix};
use crate::store::FaultyStore;
use crate::trace::Trace;

/// Virtual time starts here on every run (2026-01-01T00:00:00Z), so
/// `recordedAt` never depends on when the run happens.
pub const EPOCH_SECONDS: u64 = 1_767_225_600;
/// turmoil advances in fixed ticks; idle ticks cost CPU, so a coarse tick
/// is much faster, at the price of coarser timing.
pub const TICK: Duration = Duration::from_millis(2);
/// Room after the liveness bound for slow clients to finish their
/// fault-phase operations; past it the run fails as stuck.
const DURATION_SLACK: Duration = Duration::from_secs(90);

/// The engine's clock: the host's virtual time.
struct SimClock;

impl Clock for SimClock {
    fn now(&self) -> Timestamp {
        let since_epoch = turmoil::since_epoch().unwrap_or_default();
        Timestamp::from_unix_millis(since_epoch.as_millis() as i64)
    }
}

#[derive(Clone, Debug, Default)]
pub struct Summary {
    pub requests: usize,
    pub events: usize,
    pub virtual_ms: u64,
    pub crashes: usize,
    pub partitions: usize,
    pub store_unavailable: u64,
    pub ambiguous_landed: u64,
    pub ambiguous_lost: u64,
    /// Appends the engine lost to another writer (then reloaded and retried).
    pub conflicts: u64,
    /// Appends whose outcome the engine did not learn (injected or timed out).
    pub ambiguous_seen: u64,
    /// Replies clients never got (timeouts, broken connections).
    pub lost_replies: usize,
    /// The contract's branches the run reached (`check::BRANCHES`).
    pub branches: std::collections::BTreeSet<&'static str>,
}

pub struct Outcome {
    /// A hash of the final event log and every reply the clients saw.
    pub digest: String,
    /// Everything the checker found wrong; empty when the run passed.
    pub violations: Vec<String>,
    pub summary: Summary,
    pub trace: Vec<String>,
}

impl Outcome {
    pub fn passed(&self) -> bool {
        self.violations.is_empty()
    }
}

/// Runs a plan and checks it. A panic anywhere (handlers included: the
/// workspace builds with `--cfg tokio_unstable`, so turmoil surfaces them)
/// is a failed run, not a crash of the caller.
pub fn run(plan: &Plan, trace: Trace) -> Outcome {
    let result = catch_unwind(AssertUnwindSafe(|| run_unchecked(plan, trace.clone())));
    result.unwrap_or_else(|panic| {
        let message = panic
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
            .unwrap_or_else(|| "a panic without a message".to_owned());
        Outcome {
            digest: "panicked".to_owned(),
            violations: vec![format!("panic: {message}")],
            summary: Summary::default(),
            trace: trace.lines(),
        }
    })
}

fn engine_config(plan: &Plan) -> EngineConfig {
    EngineConfig {
        snapshot_every: plan.snapshot_every,
        // Short enough that store latency windows produce timeouts, and so
        // ambiguous appends, from the engine's side.
        store_timeout: Duration::from_millis(400),
        ..EngineConfig::default()
    }
}

/// One boot of one service instance: the real router and engine over the
/// shared store (seen through the plan's planted bug, if any), served by the
/// production serve loop on turmoil TCP until the host crashes.
async fn instance(
    store: Arc<dyn EventStore>,
    bug: Option<PlantedBug>,
    auth: bool,
    config: EngineConfig,
    entropy_seed: u64,
    metrics: Metrics,
) -> turmoil::Result {
    // The store as it is, for bugs planted in the router that look at it.
    let store_for_bugs = store.clone();
    let store = match bug {
        Some(bug) => bugs::plant(bug, store),
        None => store,
    };
    let mut builder = InstanceBuilder::new();
    if auth {
        let verifier = accounts::auth::Verifier::new(&testkit::auth::hs256())
            .expect("the kit's secret is a usable key");
        builder = builder.auth(verifier);
    }
    let mut instance = builder
        .store(store)
        .clock(Arc::new(SimClock))
        .seed(entropy_seed)
        .metrics(metrics)
        .engine_config(config)
        .limits(Limits {
            request_timeout: Duration::from_secs(2),
            concurrency_max: 64,
            ..Limits::default()
        })
        .serve_config(ServeConfig {
            header_read_timeout: Duration::from_secs(2),
            connections_max: 64,
            date_header: false,
            shutdown_grace: Duration::from_secs(1),
            ..ServeConfig::default()
        })
        .build();
    if let Some(bug) = bug {
        let admin = clients::tokens(EPOCH_SECONDS as i64 * 1_000).admin();
        instance.router = bugs::wrap_router(bug, instance.router, store_for_bugs, admin);
    }
    let listener = turmoil::net::TcpListener::bind((Ipv4Addr::UNSPECIFIED, PORT)).await?;
    instance
        .serve(SimListener(listener), std::future::pending())
        .await;
    Ok(())
}

/// A scheduled change to the world.
enum Change {
    Partition(usize, usize),
    Repair(usize, usize),
    Crash(usize),
    Restart(usize),
    HealAll,
}

fn schedule(plan: &Plan) -> Vec<(u64, Change)> {
    let mut changes = Vec::new();
    for fault in &plan.faults {
        let end = fault.start_ms + fault.duration_ms;
        match fault.kind {
            FaultKind::Partition { client, instance } => {
                changes.push((fault.start_ms, Change::Partition(client, instance)));
                changes.push((end, Change::Repair(client, instance)));
            }
            FaultKind::Crash { instance } => {
                changes.push((fault.start_ms, Change::Crash(instance)));
                changes.push((end, Change::Restart(instance)));
            }
        }
    }
    changes.push((plan.heal_at_ms(), Change::HealAll));
    // Stable: at equal times, the plan's order.
    changes.sort_by_key(|(at, _)| *at);
    changes
}

fn run_unchecked(plan: &Plan, trace: Trace) -> Outcome {
    let memory = Arc::new(MemoryStore::new());
    let landings = Landings::default();
    let store = FaultyStore::new(
        Stamped::wrap(memory.clone(), landings.clone()),
        plan.store_windows.clone(),
        Duration::from_millis(plan.store_latency_ms),
        plan.seed,
        trace.clone(),
    );
    let heal_at = Duration::from_millis(plan.heal_at_ms());
    let mut sim = turmoil::Builder::new()
        .rng_seed(plan.seed)
        .epoch(SystemTime::UNIX_EPOCH + Duration::from_secs(EPOCH_SECONDS))
        .tick_duration(TICK)
        .simulation_duration(heal_at + LIVENESS_BOUND + DURATION_SLACK)
        .min_message_latency(Duration::ZERO)
        .max_message_latency(Duration::from_millis(plan.latency_max_ms))
        .fail_rate(plan.fail_rate)
        .repair_rate(1.0)
        .enable_random_order()
        .build();

    let mut engine_metrics = Vec::new();
    for (index, name) in INSTANCES.iter().enumerate().take(plan.instances) {
        let store: Arc<dyn EventStore> = store.clone();
        let config = engine_config(plan);
        let bug = plan.bug;
        let auth = plan.auth;
        let boots = Cell::new(0u64);
        let seed = plan.seed;
        // Shared by the instance's every boot, so the run's totals survive
        // crashes (the coverage figures of a sweep).
        let metrics = Metrics::new();
        engine_metrics.push(metrics.engine.clone());
        // Called again on every restart: a new process with fresh state and
        // its own entropy stream, from (seed, instance, boot).
        sim.host(*name, move || {
            let boot = boots.get();
            boots.set(boot + 1);
            instance(
                store.clone(),
                bug,
                auth,
                config.clone(),
                mix(seed, 5, ((index as u64) << 32) | boot),
                metrics.clone(),
            )
        });
    }
    let mut records: Vec<Rc<RefCell<Vec<OpRecord>>>> = Vec::new();
    let tokens = clients::tokens(EPOCH_SECONDS as i64 * 1_000);
    for (index, name) in CLIENTS.iter().enumerate().take(plan.clients.len()) {
        let client = Client::new(plan, index, &tokens, trace.clone());
        records.push(client.records.clone());
        sim.client(*name, client.run());
    }

    let mut summary = Summary::default();
    let mut faults = Faults {
        crashed: vec![false; plan.instances],
        partitioned: BTreeSet::new(),
        healed: false,
    };
    let mut changes = schedule(plan).into_iter().peekable();
    let mut stuck = None;
    loop {
        let now = sim.elapsed();
        while let Some((_, change)) = changes.next_if(|(at, _)| Duration::from_millis(*at) <= now) {
            apply(&mut sim, change, &mut faults, &mut summary, &trace, plan);
        }
        match sim.step() {
            Ok(true) => break,
            Ok(false) => {}
            Err(error) => {
                stuck = Some(error.to_string());
                break;
            }
        }
    }
    summary.virtual_ms = sim.elapsed().as_millis() as u64;
    drop(sim);

    let records: Vec<OpRecord> = records.iter().flat_map(|r| r.borrow().clone()).collect();
    let account_ids: Vec<_> = (0..plan.accounts).map(|a| plan.account_id(a)).collect();
    let log = Log::read(&memory, &account_ids, &landings);
    let owners = plan.owner_ids();
    let mut violations = check::check(&History {
        log: &log,
        owners: &owners,
        records: &records,
        skew: 2 * TICK,
    });
    if let Some(error) = stuck {
        violations.insert(0, format!("the simulation did not finish: {error}"));
    }
    summary.requests = records.iter().map(|r| r.attempts.len()).sum();
    summary.events = log.event_count();
    summary.branches = check::branches(&records);
    summary.store_unavailable = store.injected.unavailable.load(Ordering::Relaxed);
    summary.ambiguous_landed = store.injected.ambiguous_landed.load(Ordering::Relaxed);
    summary.ambiguous_lost = store.injected.ambiguous_lost.load(Ordering::Relaxed);
    summary.conflicts = engine_metrics.iter().map(|m| m.conflicts.get()).sum();
    summary.ambiguous_seen = engine_metrics
        .iter()
        .map(|m| m.ambiguous_commits.get())
        .sum();
    summary.lost_replies = records
        .iter()
        .flat_map(|r| &r.attempts)
        .filter(|a| a.reply.is_err())
        .count();
    Outcome {
        digest: digest(&log, &records),
        violations,
        summary,
        trace: trace.lines(),
    }
}

fn apply(
    sim: &mut turmoil::Sim<'_>,
    change: Change,
    faults: &mut Faults,
    summary: &mut Summary,
    trace: &Trace,
    plan: &Plan,
) {
    let now = sim.elapsed();
    match change {
        Change::Partition(client, instance) => {
            summary.partitions += 1;
            trace.log_at(now, || {
                format!(
                    "fault: partition {} | {}",
                    CLIENTS[client], INSTANCES[instance]
                )
            });
            sim.partition(CLIENTS[client], INSTANCES[instance]);
            faults.partitioned.insert((client, instance));
        }
        Change::Repair(client, instance) => {
            faults.partitioned.remove(&(client, instance));
            trace.log_at(now, || {
                format!(
                    "fault: repair {} | {}",
                    CLIENTS[client], INSTANCES[instance]
                )
            });
            sim.repair(CLIENTS[client], INSTANCES[instance]);
        }
        Change::Crash(instance) => {
            summary.crashes += 1;
            trace.log_at(now, || format!("fault: crash {}", INSTANCES[instance]));
            crash(sim, instance, plan, faults);
        }
        Change::Restart(instance) => restart(sim, instance, &mut faults.crashed, trace),
        Change::HealAll => {
            trace.log_at(now, || "heal: faults over, liveness phase".to_owned());
            faults.healed = true;
            faults.partitioned.clear();
            sim.set_fail_rate(0.0);
            for client in CLIENTS.iter().take(plan.clients.len()) {
                for instance in INSTANCES.iter().take(plan.instances) {
                    sim.repair(*client, *instance);
                }
            }
            for instance in 0..plan.instances {
                restart(sim, instance, &mut faults.crashed, trace);
            }
        }
    }
}

/// The faults in force.
struct Faults {
    crashed: Vec<bool>,
    partitioned: BTreeSet<(usize, usize)>,
    healed: bool,
}

/// Crashes an instance so that the run stays a function of the seed. Dropping
/// the host's runtime drops its connection tasks in an order that depends on
/// tokio's process-wide task ids (so on whatever else the process runs); each
/// dropped socket sends a FIN or RST that draws a latency from turmoil's rng,
/// so that order would leak into the rest of the run. A crashed machine sends
/// nothing anyway: cut its links first, so those messages are dropped
/// without drawing, then restore the links that no partition holds.
fn crash(sim: &mut turmoil::Sim<'_>, instance: usize, plan: &Plan, faults: &mut Faults) {
    sim.set_fail_rate(0.0);
    for client in CLIENTS.iter().take(plan.clients.len()) {
        sim.partition(*client, INSTANCES[instance]);
    }
    sim.crash(INSTANCES[instance]);
    faults.crashed[instance] = true;
    for (index, client) in CLIENTS.iter().enumerate().take(plan.clients.len()) {
        if !faults.partitioned.contains(&(index, instance)) {
            sim.repair(*client, INSTANCES[instance]);
        }
    }
    if !faults.healed {
        sim.set_fail_rate(plan.fail_rate);
    }
}

fn restart(sim: &mut turmoil::Sim<'_>, instance: usize, crashed: &mut [bool], trace: &Trace) {
    if std::mem::take(&mut crashed[instance]) {
        trace.log_at(sim.elapsed(), || {
            format!("fault: restart {}", INSTANCES[instance])
        });
        sim.bounce(INSTANCES[instance]);
    }
}

/// The final event log and every reply, hashed: equal digests mean equal runs.
fn digest(log: &Log, records: &[OpRecord]) -> String {
    let mut hasher = Sha256::new();
    for line in log.lines() {
        hasher.update(line.as_bytes());
        hasher.update(b"\n");
    }
    for record in records {
        hasher.update(format!("{record:?}\n").as_bytes());
    }
    let hash = hasher.finalize();
    hash.iter().take(16).map(|b| format!("{b:02x}")).collect()
}
