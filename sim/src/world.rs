//! One simulation run: service instances (the real router and engine, served
//! by the service's own serve loop over turmoil TCP) reaching one database
//! host over the simulated network, client hosts running the plan's
//! workload, and the fault schedule applied at its exact virtual times.
//! Then the checker reads the database's durable data.

use std::cell::{Cell, RefCell};
use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use accounts::app::InstanceBuilder;
use accounts::domain::Timestamp;
use accounts::engine::{Clock, EngineConfig};
use accounts::http::{Limits, ServeConfig};
use accounts::metrics::{EngineMetrics, Metrics};
use accounts::store::EventStore;
use sha2::{Digest, Sha256};

use crate::bugs::{self, PlantedBug};
use crate::check::{self, History, Log};
use crate::client::{self as clients, Client, LIVENESS_BOUND, OpRecord, Reader, ReaderRecord};
use crate::db::{DB, Database, Ledger, RemoteStore};
use crate::dbfaults::draw::StoreFaults;
use crate::dbfaults::plan::DbFaultKind;
use crate::landing::{Landings, Stamped};
use crate::net::{PORT, SimListener};
use crate::plan::{CLIENTS, FaultKind, INSTANCES, Plan, READERS, Who, mix};
use crate::replica::Cluster;
use crate::trace::Trace;

/// Virtual time starts here on every run (2026-01-01T00:00:00Z), so
/// `recordedAt` never depends on when the run happens.
pub const EPOCH_SECONDS: u64 = 1_767_225_600;
/// The run's clock zero in unix ms: what `?at=` offsets are relative to.
pub const CLOCK_ZERO_MS: i64 = EPOCH_SECONDS as i64 * 1_000;
/// turmoil advances in fixed ticks; idle ticks cost CPU, so a coarse tick
/// is much faster, at the price of coarser timing.
pub const TICK: Duration = Duration::from_millis(4);
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
    pub db_crashes: usize,
    /// Partitions between an instance and the database.
    pub db_partitions: usize,
    /// Windows in which the database's replies were dropped or held back.
    pub db_reply_faults: usize,
    /// Windows in which the database was slow to commit.
    pub db_slow_commits: usize,
    /// Commits that landed after their caller had stopped waiting.
    pub zombie_commits: u64,
    /// Failovers: the database's standby promoted.
    pub db_failovers: usize,
    /// Acknowledged commits the promoted standby never got (only with
    /// asynchronous replication, a planted bug).
    pub failover_lost_commits: usize,
    /// Commands decided on a cached state that the store refused as stale.
    pub cache_stale: u64,
    /// Commits written in a batch after its first member.
    pub batched_members: u64,
    /// Feed readers in the world, and how many caught up with the final log.
    pub feed_readers: usize,
    pub feed_caught_up: usize,
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

/// What a caught panic said (its payload is a `String` or a `&str` when it
/// says anything).
pub fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
        .unwrap_or_else(|| "a panic without a message".to_owned())
}

/// Runs a plan and checks it. A panic anywhere (handlers included: the
/// workspace builds with `--cfg tokio_unstable`, so turmoil surfaces them)
/// is a failed run, not a crash of the caller.
pub fn run(plan: &Plan, trace: Trace) -> Outcome {
    let result = catch_unwind(AssertUnwindSafe(|| run_unchecked(plan, trace.clone())));
    result.unwrap_or_else(|panic| {
        let message = panic_message(&*panic);
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

/// The instance's database driver timeout: on some instances shorter than
/// the engine's store timeout, so that the driver's own verdict (unavailable
/// or ambiguous) is what the engine sees, on others longer, so that the
/// engine's timeout cuts the call short.
fn driver_timeout(seed: u64, instance: usize) -> Duration {
    if mix(seed, 8, instance as u64).is_multiple_of(2) {
        Duration::from_millis(300)
    } else {
        Duration::from_secs(1)
    }
}

/// One boot of one service instance: the real router and engine over the
/// database host (seen through the plan's planted bug, if any), served by
/// the production serve loop on turmoil TCP until the host crashes.
async fn instance(
    store: Arc<dyn EventStore>,
    bug: Option<PlantedBug>,
    auth: bool,
    config: EngineConfig,
    entropy_seed: u64,
    metrics: Metrics,
    ledger: Arc<Ledger>,
) -> turmoil::Result {
    // The store as it is, for bugs planted in the router that look at it.
    let store_for_bugs = store.clone();
    let store = match bug {
        Some(bug) => bugs::plant(bug, store),
        None => store,
    };
    let mut builder = InstanceBuilder::new();
    if let Some(cache) = bug.and_then(|bug| bugs::plant_cache(bug, config.cache_accounts)) {
        builder = builder.cache(cache);
    }
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
    instance.router = count_writes(instance.router, ledger);
    let listener = turmoil::net::TcpListener::bind((Ipv4Addr::UNSPECIFIED, PORT)).await?;
    instance
        .serve(SimListener(listener), std::future::pending())
        .await;
    Ok(())
}

/// Counts the write requests the instance is serving in the ledger, so that
/// feed readers know when no commit can land any more: a handler still
/// alive (its client gone or not) may yet load, decide and append. Reads
/// never commit, so that readers do not hold one another up.
fn count_writes(router: axum::Router, ledger: Arc<Ledger>) -> axum::Router {
    router.layer(axum::middleware::from_fn(
        move |request: axum::extract::Request, next: axum::middleware::Next| {
            let write = !matches!(
                *request.method(),
                axum::http::Method::GET | axum::http::Method::HEAD
            );
            let open = write.then(|| ledger.write_opened());
            async move {
                let response = next.run(request).await;
                drop(open);
                response
            }
        },
    ))
}

/// A scheduled change to the world.
enum Change {
    Partition(usize, usize),
    Repair(usize, usize),
    Crash(usize),
    Restart(usize),
    /// The plan's database fault with this index starts or ends.
    DbFault(usize, bool),
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
    for (index, fault) in plan.db_faults.iter().enumerate() {
        changes.push((fault.start_ms, Change::DbFault(index, true)));
        changes.push((fault.end_ms(), Change::DbFault(index, false)));
    }
    changes.push((plan.heal_at_ms(), Change::HealAll));
    // Stable: at equal times, the plan's order.
    changes.sort_by_key(|(at, _)| *at);
    changes
}

/// The database host's data: a primary with a standby, every commit
/// stamped with its landing time.
fn database(plan: &Plan, landings: &Landings, trace: &Trace) -> (Arc<Cluster>, Database) {
    let replication = bugs::replication(plan.bug, plan.seed);
    let cluster = Arc::new(Cluster::new(replication, trace.clone()));
    let database = Database::replicated(
        cluster.clone(),
        Stamped::wrap(cluster.clone(), landings.clone()),
        StoreFaults::new(plan.store_windows.clone(), plan.seed, trace.clone()),
    );
    (cluster, database)
}

fn run_unchecked(plan: &Plan, trace: Trace) -> Outcome {
    let landings = Landings::default();
    let (cluster, database) = database(plan, &landings, &trace);
    let heal_at = Duration::from_millis(plan.heal_at_ms());
    let mut sim = simulation(plan, heal_at);
    let host_database = database.clone();
    sim.host(DB, move || host_database.clone().serve());
    let engine_metrics = host_instances(&mut sim, plan, &database);
    let tokens = clients::tokens(EPOCH_SECONDS as i64 * 1_000);
    let writers_done = Rc::new(Cell::new(0usize));
    let records = host_clients(&mut sim, plan, &tokens, &writers_done, &trace);
    let reader_records = host_readers(
        &mut sim,
        plan,
        &tokens,
        Progress {
            heal_at,
            writers_done,
            ledger: database.ledger.clone(),
        },
        &trace,
    );
    let mut summary = Summary::default();
    let faults = Faults::none(plan, &database, &cluster);
    let stuck = drive(&mut sim, faults, &mut summary, &trace, plan);
    summary.virtual_ms = sim.elapsed().as_millis() as u64;
    drop(sim);

    let records: Vec<OpRecord> = records.iter().flat_map(|r| r.borrow().clone()).collect();
    let readers: Vec<ReaderRecord> = reader_records.iter().map(|r| r.borrow().clone()).collect();
    let account_ids: Vec<_> = (0..plan.accounts).map(|a| plan.account_id(a)).collect();
    let log = Log::read(&cluster.primary(), &account_ids, &landings);
    let owners = plan.owner_ids();
    let mut violations = check::check(&History {
        log: &log,
        owners: &owners,
        records: &records,
        readers: &readers,
        skew: 2 * TICK,
        clock_zero_ms: CLOCK_ZERO_MS,
    });
    if let Some(error) = stuck {
        violations.insert(0, format!("the simulation did not finish: {error}"));
    }
    summarize(
        &mut summary,
        &log,
        &records,
        &readers,
        &database,
        &engine_metrics,
    );
    Outcome {
        digest: digest(&log, &records, &readers),
        violations,
        summary,
        trace: trace.lines(),
    }
}

/// The turmoil world for a plan: its seed, virtual epoch, tick, network
/// latency and flakiness, and room to run until the liveness bound.
fn simulation<'a>(plan: &Plan, heal_at: Duration) -> turmoil::Sim<'a> {
    turmoil::Builder::new()
        .rng_seed(plan.seed)
        .epoch(SystemTime::UNIX_EPOCH + Duration::from_secs(EPOCH_SECONDS))
        .tick_duration(TICK)
        .simulation_duration(heal_at + LIVENESS_BOUND + DURATION_SLACK)
        .min_message_latency(Duration::ZERO)
        .max_message_latency(Duration::from_millis(plan.latency_max_ms))
        .fail_rate(plan.fail_rate)
        .repair_rate(1.0)
        .enable_random_order()
        .build()
}

/// The plan's service instances as hosts, each over its own link to the
/// database; the engine metrics of each, for the summary.
fn host_instances(
    sim: &mut turmoil::Sim<'_>,
    plan: &Plan,
    database: &Database,
) -> Vec<EngineMetrics> {
    let mut engine_metrics = Vec::new();
    for (index, name) in INSTANCES.iter().enumerate().take(plan.instances) {
        let ledger = database.ledger.clone();
        let timeout = driver_timeout(plan.seed, index);
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
            // A new process, a new connection pool.
            let store = Arc::new(RemoteStore::new(DB, timeout, ledger.clone()));
            instance(
                store,
                bug,
                auth,
                config.clone(),
                mix(seed, 5, ((index as u64) << 32) | boot),
                metrics.clone(),
                ledger.clone(),
            )
        });
    }
    for name in INSTANCES.iter().take(plan.instances) {
        // A database round trip: what lets requests on different instances
        // interleave between load and append, and so conflict.
        sim.set_link_max_message_latency(*name, DB, Duration::from_millis(plan.store_latency_ms));
    }
    engine_metrics
}

/// The plan's writer clients as hosts; their records, filled as they run.
fn host_clients(
    sim: &mut turmoil::Sim<'_>,
    plan: &Plan,
    tokens: &testkit::Tokens,
    writers_done: &Rc<Cell<usize>>,
    trace: &Trace,
) -> Vec<Rc<RefCell<Vec<OpRecord>>>> {
    let mut records = Vec::new();
    for (index, name) in CLIENTS.iter().enumerate().take(plan.clients.len()) {
        let client = Client::new(plan, index, tokens, CLOCK_ZERO_MS, trace.clone());
        records.push(client.records.clone());
        let done = writers_done.clone();
        sim.client(*name, async move {
            let result = client.run().await;
            done.set(done.get() + 1);
            result
        });
    }
    records
}

/// What tells a feed reader the log may be final: the heal, the writers
/// done, and the ledger of commits still in flight.
struct Progress {
    heal_at: Duration,
    writers_done: Rc<Cell<usize>>,
    ledger: Arc<Ledger>,
}

/// The plan's feed readers as hosts; their records, filled as they run.
fn host_readers(
    sim: &mut turmoil::Sim<'_>,
    plan: &Plan,
    tokens: &testkit::Tokens,
    progress: Progress,
    trace: &Trace,
) -> Vec<Rc<RefCell<ReaderRecord>>> {
    let mut reader_records = Vec::new();
    for (index, name) in READERS.iter().enumerate().take(plan.readers.len()) {
        let record = Rc::new(RefCell::new(ReaderRecord {
            reader: index,
            attempts: Vec::new(),
            caught_up: false,
            as_owner: None,
            past_state_as_owner: None,
        }));
        reader_records.push(record.clone());
        let reader = Reader {
            reader: index,
            plan: plan.readers[index].clone(),
            // With authentication on, the feed is the admin's.
            token: clients::token(plan, tokens, Who::Admin),
            owner_token: clients::token(plan, tokens, Who::Owner(index)),
            // Account `index + 1`'s natural owner is another one.
            past_state_probe: (
                plan.owner_id(index),
                plan.account_id((index + 1) % plan.accounts),
            ),
            instances: plan.instances,
            heal_at: progress.heal_at,
            writers_done: progress.writers_done.clone(),
            writers: plan.clients.len(),
            ledger: progress.ledger.clone(),
            // A few ticks more: a message is delivered, and its reader
            // polled, on a tick.
            latency_max: Duration::from_millis(plan.latency_max_ms.max(plan.store_latency_ms))
                + 4 * TICK,
            trace: trace.clone(),
            record,
        };
        sim.client(*name, reader.run());
    }
    reader_records
}

/// Steps the world to its end, applying the fault schedule at its times;
/// why it did not finish, if it did not.
fn drive(
    sim: &mut turmoil::Sim<'_>,
    mut faults: Faults,
    summary: &mut Summary,
    trace: &Trace,
    plan: &Plan,
) -> Option<String> {
    let mut changes = schedule(plan).into_iter().peekable();
    loop {
        let now = sim.elapsed();
        while let Some((_, change)) = changes.next_if(|(at, _)| Duration::from_millis(*at) <= now) {
            apply(sim, change, &mut faults, summary, trace, plan);
        }
        match sim.step() {
            Ok(true) => return None,
            Ok(false) => {}
            Err(error) => return Some(error.to_string()),
        }
    }
}

/// The summary's figures from the run's records, the database's ledger and
/// fault counts, and the instances' engine metrics.
fn summarize(
    summary: &mut Summary,
    log: &Log,
    records: &[OpRecord],
    readers: &[ReaderRecord],
    database: &Database,
    engine_metrics: &[EngineMetrics],
) {
    summary.requests = records.iter().map(|r| r.attempts.len()).sum();
    summary.events = log.event_count();
    summary.branches = check::branches(records);
    summary.feed_readers = readers.len();
    summary.feed_caught_up = readers.iter().filter(|r| r.caught_up).count();
    let fates = database.ledger.fates();
    summary.store_unavailable = database.faults.injected.unavailable.load(Ordering::Relaxed);
    summary.ambiguous_landed = fates.lost_replies;
    summary.ambiguous_lost = fates.lost_commits;
    summary.zombie_commits = fates.zombies;
    summary.conflicts = engine_metrics.iter().map(|m| m.conflicts.get()).sum();
    summary.ambiguous_seen = engine_metrics
        .iter()
        .map(|m| m.ambiguous_commits.get())
        .sum();
    summary.cache_stale = engine_metrics.iter().map(|m| m.cache_stale.get()).sum();
    // Members beyond the first of each batch: above 0 when commits shared one.
    summary.batched_members = engine_metrics
        .iter()
        .map(|m| m.batch_size.get_sample_sum() as u64 - m.batch_size.get_sample_count())
        .sum();
    summary.lost_replies = records
        .iter()
        .flat_map(|r| &r.attempts)
        .filter(|a| a.reply.is_err())
        .count();
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
        Change::Restart(instance) => {
            restart(sim, instance, &mut faults.crashed, trace);
            settle_db_links(sim, faults, plan);
        }
        Change::DbFault(index, start) => db_fault(sim, index, start, faults, summary, trace, plan),
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
            faults.db_active.fill(false);
            restart_db(sim, faults, trace);
            settle_db_links(sim, faults, plan);
        }
    }
}

/// The faults in force.
struct Faults {
    crashed: Vec<bool>,
    partitioned: BTreeSet<(usize, usize)>,
    healed: bool,
    /// Which of the plan's database faults are in force.
    db_active: Vec<bool>,
    db_crashed: bool,
    /// Per instance, the state its link to the database is in.
    db_links: Vec<DbLink>,
    /// The database host's current commit stall.
    commit_stall_ms: Arc<AtomicU64>,
    /// The database's primary and standby, for failovers.
    cluster: Arc<Cluster>,
}

/// The states of a link between an instance and the database, by
/// precedence when several faults hold it at once.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum DbLink {
    Healthy,
    Held,
    DropReplies,
    Partitioned,
}

impl Faults {
    /// The world before the first fault: nothing crashed, cut or active.
    fn none(plan: &Plan, database: &Database, cluster: &Arc<Cluster>) -> Faults {
        Faults {
            crashed: vec![false; plan.instances],
            partitioned: BTreeSet::new(),
            healed: false,
            db_active: vec![false; plan.db_faults.len()],
            db_crashed: false,
            db_links: vec![DbLink::Healthy; plan.instances],
            commit_stall_ms: database.commit_stall_ms.clone(),
            cluster: cluster.clone(),
        }
    }

    /// What the database faults in force make of an instance's link. A
    /// crashed database is silent, like a dead machine: its links are cut,
    /// so that connects time out instead of queueing for the next boot.
    fn db_link(&self, plan: &Plan, instance: usize) -> DbLink {
        if self.db_crashed || self.crashed[instance] {
            return DbLink::Partitioned;
        }
        let active = plan.db_faults.iter().zip(&self.db_active);
        active
            .filter(|(fault, on)| **on && fault.kind.instance() == Some(instance))
            .filter_map(|(fault, _)| match fault.kind {
                DbFaultKind::Partition { .. } => Some(DbLink::Partitioned),
                DbFaultKind::DropReplies { .. } => Some(DbLink::DropReplies),
                DbFaultKind::Hold { .. } => Some(DbLink::Held),
                DbFaultKind::SlowCommits { .. }
                | DbFaultKind::Crash
                | DbFaultKind::Failover { .. } => None,
            })
            .max()
            .unwrap_or(DbLink::Healthy)
    }
}

/// Moves an instance's link to the database into a state, by way of healthy
/// (turmoil does not combine a hold with a one-way partition). Leaving a
/// hold delivers what it held, unless the link is cut instead.
fn set_db_link(sim: &mut turmoil::Sim<'_>, instance: usize, to: DbLink, faults: &mut Faults) {
    let from = std::mem::replace(&mut faults.db_links[instance], to);
    if from == to {
        return;
    }
    let name = INSTANCES[instance];
    match from {
        DbLink::Healthy => {}
        DbLink::Held if to == DbLink::Partitioned => {}
        DbLink::Held => sim.release(name, DB),
        DbLink::DropReplies => sim.repair_oneway(DB, name),
        DbLink::Partitioned => sim.repair(name, DB),
    }
    match to {
        DbLink::Healthy => {}
        DbLink::Held => sim.hold(name, DB),
        DbLink::DropReplies => sim.partition_oneway(DB, name),
        DbLink::Partitioned => sim.partition(name, DB),
    }
}

/// Puts every instance's link to the database in the state the faults in
/// force call for.
fn settle_db_links(sim: &mut turmoil::Sim<'_>, faults: &mut Faults, plan: &Plan) {
    let stall = commit_stall_ms(plan, &faults.db_active);
    faults.commit_stall_ms.store(stall, Ordering::Relaxed);
    for instance in 0..plan.instances {
        let to = faults.db_link(plan, instance);
        set_db_link(sim, instance, to, faults);
    }
}

fn db_fault(
    sim: &mut turmoil::Sim<'_>,
    index: usize,
    start: bool,
    faults: &mut Faults,
    summary: &mut Summary,
    trace: &Trace,
    plan: &Plan,
) {
    let fault = &plan.db_faults[index];
    if faults.healed {
        return;
    }
    faults.db_active[index] = start;
    let now = sim.elapsed();
    match (fault.kind, start) {
        (DbFaultKind::Crash, true) => {
            if crash_db(sim, faults, trace, plan) {
                summary.db_crashes += 1;
            }
        }
        (DbFaultKind::Failover { zombie: false }, true) => {
            trace.log_at(now, || {
                "fault: failover begins: the primary dies".to_owned()
            });
            crash_db(sim, faults, trace, plan);
        }
        (DbFaultKind::Failover { zombie: true }, true) => {
            trace.log_at(now, || {
                "fault: failover begins: the primary is fenced (a zombie)".to_owned()
            });
            faults.cluster.fence();
        }
        (DbFaultKind::Failover { .. }, false) => {
            let promotion = faults.cluster.promote(now);
            summary.db_failovers += 1;
            summary.failover_lost_commits += promotion.lost_commits;
            trace.log_at(now, || {
                format!(
                    "fault: failover: the standby promoted; {} acknowledged commit(s) never reached it",
                    promotion.lost_commits
                )
            });
            restart_db_unless_down(sim, faults, trace, plan);
        }
        (DbFaultKind::Crash, false) => restart_db_unless_down(sim, faults, trace, plan),
        (kind, start) => {
            if start {
                match kind {
                    DbFaultKind::Partition { .. } => summary.db_partitions += 1,
                    DbFaultKind::SlowCommits { .. } => summary.db_slow_commits += 1,
                    _ => summary.db_reply_faults += 1,
                }
            }
            trace.log_at(now, || {
                format!("fault: {} {fault}", if start { "start" } else { "end" })
            });
        }
    }
    settle_db_links(sim, faults, plan);
}

/// Crashes the database host unless it is down already; whether it crashed.
fn crash_db(sim: &mut turmoil::Sim<'_>, faults: &mut Faults, trace: &Trace, plan: &Plan) -> bool {
    if faults.db_crashed {
        return false;
    }
    trace.log_at(sim.elapsed(), || "fault: crash db".to_owned());
    // As for an instance: cut its links first, so that the sockets its
    // death closes send nothing that draws from turmoil's rng.
    sim.set_fail_rate(0.0);
    faults.db_crashed = true;
    settle_db_links(sim, faults, plan);
    sim.crash(DB);
    sim.set_fail_rate(plan.fail_rate);
    true
}

/// Restarts the database host unless a fault in force keeps it down.
fn restart_db_unless_down(
    sim: &mut turmoil::Sim<'_>,
    faults: &mut Faults,
    trace: &Trace,
    plan: &Plan,
) {
    let down = plan.db_faults.iter().zip(&faults.db_active);
    if !down.into_iter().any(|(f, on)| *on && f.kind.host_down()) {
        restart_db(sim, faults, trace);
    }
}

/// The slowest commit stall in force (0: none).
fn commit_stall_ms(plan: &Plan, active: &[bool]) -> u64 {
    let faults = plan.db_faults.iter().zip(active);
    faults
        .filter(|(_, on)| **on)
        .filter_map(|(fault, _)| match fault.kind {
            DbFaultKind::SlowCommits { ms } => Some(ms),
            _ => None,
        })
        .max()
        .unwrap_or(0)
}

fn restart_db(sim: &mut turmoil::Sim<'_>, faults: &mut Faults, trace: &Trace) {
    if std::mem::take(&mut faults.db_crashed) {
        trace.log_at(sim.elapsed(), || "fault: restart db".to_owned());
        sim.bounce(DB);
    }
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
    for reader in READERS.iter().take(plan.readers.len()) {
        sim.partition(*reader, INSTANCES[instance]);
    }
    faults.crashed[instance] = true;
    set_db_link(sim, instance, DbLink::Partitioned, faults);
    sim.crash(INSTANCES[instance]);
    for (index, client) in CLIENTS.iter().enumerate().take(plan.clients.len()) {
        if !faults.partitioned.contains(&(index, instance)) {
            sim.repair(*client, INSTANCES[instance]);
        }
    }
    // The plan never partitions a reader: only the crash cut its links.
    for reader in READERS.iter().take(plan.readers.len()) {
        sim.repair(*reader, INSTANCES[instance]);
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
fn digest(log: &Log, records: &[OpRecord], readers: &[ReaderRecord]) -> String {
    let mut hasher = Sha256::new();
    for line in log.lines() {
        hasher.update(line.as_bytes());
        hasher.update(b"\n");
    }
    for record in records {
        hasher.update(format!("{record:?}\n").as_bytes());
    }
    for reader in readers {
        hasher.update(format!("{reader:?}\n").as_bytes());
    }
    let hash = hasher.finalize();
    hash.iter().take(16).map(|b| format!("{b:02x}")).collect()
}
