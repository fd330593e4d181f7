//! Live mode: the simulation's plans and checker against real processes on
//! a real database. A run starts the plan's 2–3 release `accounts` binaries
//! on a fresh database (a temporary SQLite file, or a database created on a
//! PostgreSQL or MariaDB server and dropped afterwards), plays the plan's
//! clients in wall-clock time over loopback sockets, applies its faults as
//! real ones (see [`faults`]), reads every account's stream back through
//! the API and judges the whole with the simulation's checker
//! ([`history`]). Timing is the machine's, so a run is not reproducible;
//! a failure prints its seed, its plan and the instances' last log lines.

pub mod client;
pub mod faults;
pub mod history;

use std::net::SocketAddr;
use std::ops::Range;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use accounts::domain::AccountId;
use accounts::http::EventBody;
use testkit::database::{Backend, Killer, TempFile, TestDatabase, test_options};
use testkit::process::Service;
use testkit::{ApiRequest, Client as ApiClient, Socket};

use crate::plan::{FAULT_PHASE_MS, Fault, FaultKind, Plan, Who, mix};
use client::{Addresses, LiveBug, LiveClient, LiveRecord, Shared, live_bug_name};
use faults::{Change, KillWindow};
use history::{Observed, ObservedAccount};

/// A seed's plan as live mode plays it: the binaries run without
/// authentication, so every request is sent by anyone (the owner rules are
/// the simulation's and the socket tests' to judge), and the simulated
/// database host's faults have no live form (the store's fault windows
/// become connections killed by the server instead).
///
/// The faults are also moved to where the clients are: a live client spends
/// little more than its think times, so most are done well before the end
/// of the simulation's fault phase, and a fault due after the clients are
/// done is never applied. The schedule is compressed into the busiest
/// client's think time, in the same order, and a plan with neither a crash
/// nor a partition gets a crash, so that every live run suffers at least one
/// real fault while requests are in flight.
pub fn live_plan(seed: u64) -> Plan {
    let mut plan = Plan::from_seed(seed);
    plan.auth = false;
    plan.db_faults.clear();
    for op in plan.clients.iter_mut().flatten() {
        op.caller = Who::Anyone;
    }
    let span = plan
        .clients
        .iter()
        .map(|ops| ops.iter().map(|op| op.think_ms).sum::<u64>())
        .max()
        .unwrap_or(0)
        .clamp(1, FAULT_PHASE_MS);
    let within = |at: u64| at * span / FAULT_PHASE_MS;
    for fault in &mut plan.faults {
        fault.start_ms = within(fault.start_ms);
    }
    for window in &mut plan.store_windows {
        window.start_ms = within(window.start_ms);
    }
    if plan.faults.is_empty() {
        plan.faults.push(Fault {
            start_ms: mix(seed, LIVE_CRASH, 0) % span,
            duration_ms: mix(seed, LIVE_CRASH, 1) % 1_000,
            kind: FaultKind::Crash {
                instance: (mix(seed, LIVE_CRASH, 2) % plan.instances as u64) as usize,
            },
        });
    }
    plan
}

/// `mix`'s purpose for the crash a live plan without faults is given.
const LIVE_CRASH: u64 = 0x11FE;

/// Where the runs' databases are made.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    /// A temporary file per run.
    Sqlite,
    /// A fresh database per run on this server (the URL names a database
    /// there that may create others).
    Server { backend: Backend, admin_url: String },
}

impl Target {
    pub fn parse(url: &str) -> Result<Target, String> {
        let scheme = url.split(':').next().unwrap_or_default();
        let server = |backend| Target::Server {
            backend,
            admin_url: url.to_owned(),
        };
        match scheme {
            "sqlite" => Ok(Target::Sqlite),
            "postgres" | "postgresql" => Ok(server(Backend::Postgres)),
            "mysql" | "mariadb" => Ok(server(Backend::Mysql)),
            _ => Err(format!(
                "--database-url must be sqlite:, postgres://… or mysql://…, not {url:?}"
            )),
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            Target::Sqlite => "sqlite",
            Target::Server {
                backend: Backend::Postgres,
                ..
            } => "postgres",
            Target::Server { .. } => "mariadb",
        }
    }
}

#[derive(Clone, Debug)]
pub struct LiveConfig {
    pub target: Target,
    pub binary: PathBuf,
    pub bug: Option<LiveBug>,
}

/// What one run did, for the report line.
#[derive(Clone, Debug, Default)]
pub struct LiveSummary {
    pub instances: usize,
    pub requests: usize,
    pub lost_replies: usize,
    pub events: usize,
    pub kills: usize,
    pub pauses: usize,
    pub connections_killed: usize,
    /// Starts that failed and were tried again (a connection killed while
    /// the binary migrated the database).
    pub failed_starts: usize,
    /// Store windows of the plan without a live form.
    pub skipped_windows: usize,
    /// Read from the instances' /metrics before each kill and at the end:
    /// lower bounds (a paused instance is not asked).
    pub conflicts: u64,
    pub ambiguous_commits: u64,
}

pub struct LiveOutcome {
    pub violations: Vec<String>,
    pub summary: LiveSummary,
    pub records: Vec<LiveRecord>,
    /// The last log lines of every boot of every instance.
    pub logs: Vec<String>,
    pub elapsed: Duration,
}

impl LiveOutcome {
    pub fn passed(&self) -> bool {
        self.violations.is_empty()
    }
}

/// Engine and server settings of the instances: the simulation's (a store
/// timeout short enough that stalls become ambiguous commits), except the
/// pool, kept small so that three instances leave the server room.
fn service_args(url: &str, plan: &Plan) -> Vec<String> {
    [
        "--database-url",
        url,
        "--snapshot-every",
        &plan.snapshot_every.to_string(),
        "--db-pool-size",
        "4",
        "--store-timeout-ms",
        "500",
        "--request-timeout-ms",
        "2000",
        "--header-read-timeout-ms",
        "2000",
    ]
    .map(str::to_owned)
    .to_vec()
}

/// Runs one plan live and judges it. A failure of the harness itself (the
/// binary does not start, the database cannot be made) is a failed run.
pub fn run(plan: &Plan, config: &LiveConfig) -> LiveOutcome {
    let started = Instant::now();
    let result = catch_unwind(AssertUnwindSafe(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime")
            .block_on(run_async(plan, config))
    }));
    result.unwrap_or_else(|panic| {
        let message = crate::world::panic_message(&*panic);
        LiveOutcome {
            violations: vec![format!("the live run failed: {message}")],
            summary: LiveSummary::default(),
            records: Vec::new(),
            logs: Vec::new(),
            elapsed: started.elapsed(),
        }
    })
}

/// The run's database, removed when dropped.
enum RunDatabase {
    File(TempFile),
    Server(TestDatabase),
}

impl RunDatabase {
    async fn create(target: &Target) -> RunDatabase {
        match target {
            Target::Sqlite => RunDatabase::File(TempFile::new("db")),
            Target::Server { backend, admin_url } => {
                RunDatabase::Server(TestDatabase::create_on(*backend, admin_url.clone()).await)
            }
        }
    }

    fn url(&self) -> String {
        match self {
            RunDatabase::File(file) => file.sqlite_url(),
            RunDatabase::Server(database) => database.url.clone(),
        }
    }
}

/// The plan's instances as processes, changed by the fault schedule.
struct Cluster {
    binary: PathBuf,
    args: Vec<String>,
    services: Vec<Option<Service>>,
    /// Nesting depth of each instance's pauses.
    paused: Vec<u32>,
    addresses: Addresses,
    /// Log lines of the boots that were killed.
    logs: Vec<String>,
    summary: LiveSummary,
}

/// Starts of one instance tried before the run gives up on it.
const START_ATTEMPTS: usize = 20;

/// Starts the binary as a supervisor would: a start that fails (the
/// database killed the connection running the migrations) is tried again.
/// Returns the service and how many starts failed.
async fn start(binary: &Path, args: &[String]) -> (Service, usize) {
    let mut last_log = String::new();
    for failed in 0..START_ATTEMPTS {
        let (binary, args) = (binary.to_owned(), args.to_owned());
        let started = tokio::task::spawn_blocking(move || {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            Service::try_start_with(binary, &args, &[])
        })
        .await
        .unwrap_or_else(|error| panic!("starting an instance: {error}"));
        match started {
            Ok(service) => return (service, failed),
            Err(log) => last_log = log,
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("an instance failed to start {START_ATTEMPTS} times; its last log:\n{last_log}");
}

impl Cluster {
    async fn start(binary: PathBuf, args: Vec<String>, instances: usize) -> Cluster {
        let mut cluster = Cluster {
            binary,
            args,
            services: Vec::new(),
            paused: vec![0; instances],
            addresses: Addresses::default(),
            logs: Vec::new(),
            summary: LiveSummary {
                instances,
                ..LiveSummary::default()
            },
        };
        // One after another: the first one migrates the fresh database.
        for instance in 0..instances {
            let (service, failed) = start(&cluster.binary, &cluster.args).await;
            cluster.summary.failed_starts += failed;
            cluster.addresses.set(instance, service.address);
            cluster.services.push(Some(service));
        }
        cluster
    }

    async fn apply(&mut self, change: Change) {
        match change {
            Change::Kill(instance) => {
                if let Some(service) = self.services[instance].take() {
                    if self.paused[instance] == 0 {
                        self.scrape(service.address).await;
                    }
                    self.keep_log(instance, &service);
                    service.crash();
                    self.summary.kills += 1;
                }
            }
            Change::Restart(instance) => self.restart(instance).await,
            Change::Pause(instance) => {
                self.paused[instance] += 1;
                self.summary.pauses += 1;
                if let (1, Some(service)) = (self.paused[instance], &self.services[instance]) {
                    service.pause();
                }
            }
            Change::Resume(instance) => {
                self.paused[instance] = self.paused[instance].saturating_sub(1);
                if let (0, Some(service)) = (self.paused[instance], &self.services[instance]) {
                    service.resume();
                }
            }
            Change::HealAll => {
                for instance in 0..self.services.len() {
                    if std::mem::take(&mut self.paused[instance]) > 0
                        && let Some(service) = &self.services[instance]
                    {
                        service.resume();
                    }
                    self.restart(instance).await;
                }
            }
        }
    }

    async fn restart(&mut self, instance: usize) {
        if self.services[instance].is_some() {
            return;
        }
        let (service, failed) = start(&self.binary, &self.args).await;
        self.summary.failed_starts += failed;
        // A restart inside a pause window comes back paused: the window is
        // the plan's, not the process's.
        if self.paused[instance] > 0 {
            service.pause();
        }
        self.addresses.set(instance, service.address);
        self.services[instance] = Some(service);
    }

    fn keep_log(&mut self, instance: usize, service: &Service) {
        let log = service.log();
        self.logs.extend(
            log.into_iter()
                .map(|line| format!("instance-{instance} (pid {}): {line}", service.pid())),
        );
    }

    /// Adds the instance's conflict and ambiguous-commit counters.
    async fn scrape(&mut self, address: SocketAddr) {
        let api = ApiClient::new(Socket::at(address)).with_timeout(Duration::from_millis(500));
        let Ok(answer) = api.metrics().reply().await else {
            return;
        };
        let counter = |name: &str| -> u64 {
            answer
                .body
                .lines()
                .filter(|line| line.starts_with(name))
                .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
                .map(|value| value as u64)
                .sum()
        };
        self.summary.conflicts += counter("accounts_conflicts_total");
        self.summary.ambiguous_commits += counter("accounts_ambiguous_commits_total");
    }

    /// Stops every instance, keeping their logs.
    async fn stop(mut self) -> (Vec<String>, LiveSummary) {
        for instance in 0..self.services.len() {
            if let Some(service) = self.services[instance].take() {
                self.scrape(service.address).await;
                self.keep_log(instance, &service);
                service.crash();
            }
        }
        (self.logs, self.summary)
    }
}

/// Kills the run's database connections throughout a window.
async fn storm(
    mut killer: Killer,
    window: KillWindow,
    started: Instant,
    stop: Arc<AtomicBool>,
) -> usize {
    tokio::time::sleep_until((started + window.start).into()).await;
    let mut killed = 0;
    while started.elapsed() < window.end && !stop.load(Ordering::SeqCst) {
        killed += killer.kill(window.which).await;
        tokio::time::sleep(window.every).await;
    }
    killed
}

/// How long the read-back may keep retrying (instances still reconnecting
/// to the database after the kills).
const READ_BACK_BOUND: Duration = Duration::from_secs(30);

/// An account's whole stream through the API, following `Link`, from any
/// instance that answers.
async fn read_stream(addresses: &Addresses, id: AccountId) -> Result<Vec<EventBody>, String> {
    let deadline = Instant::now() + READ_BACK_BOUND;
    let mut attempt = 0;
    let mut last_error;
    loop {
        let address = addresses.get(attempt % addresses.len());
        let api = ApiClient::new(Socket::at(address)).with_timeout(Duration::from_secs(5));
        match read_pages(&api, id).await {
            Ok(events) => return Ok(events),
            Err(error) => last_error = error,
        }
        attempt += 1;
        if Instant::now() >= deadline {
            return Err(format!("reading the events of {id}: {last_error}"));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn read_pages(api: &ApiClient<Socket>, id: AccountId) -> Result<Vec<EventBody>, String> {
    let mut events = Vec::new();
    let mut target = ApiRequest::events_page(id, None, Some(10_000)).target;
    loop {
        let answer = api
            .get(target.clone())
            .reply()
            .await
            .map_err(|e| e.to_string())?;
        if answer.status != 200 {
            return Err(format!("{} {}", answer.status, answer.body));
        }
        let page: Vec<EventBody> =
            serde_json::from_str(&answer.body).map_err(|e| format!("{e}: {}", answer.body))?;
        events.extend(page);
        match answer
            .header("link")
            .and_then(|link| link.strip_prefix('<')?.split_once('>'))
        {
            Some((next, _)) => target = next.to_owned(),
            None => return Ok(events),
        }
    }
}

async fn run_async(plan: &Plan, config: &LiveConfig) -> LiveOutcome {
    let began = Instant::now();
    let database = RunDatabase::create(&config.target).await;
    let url = database.url();
    let schedule = faults::schedule(plan, matches!(database, RunDatabase::Server(_)));
    let mut killers = Vec::new();
    if let RunDatabase::Server(server) = &database {
        for _ in &schedule.kill_windows {
            killers.push(server.killer().await);
        }
    }
    let mut cluster = Cluster::start(
        config.binary.clone(),
        service_args(&url, plan),
        plan.instances,
    )
    .await;
    cluster.summary.skipped_windows = schedule.skipped_windows;
    let addresses = cluster.addresses.clone();

    // The plan's time starts once every instance is up.
    let started = Instant::now();
    let started_unix_ms = unix_millis_now();
    let shared = Shared {
        started,
        started_unix_ms,
        addresses: addresses.clone(),
        bug: config.bug,
        fired: Arc::new(AtomicBool::new(false)),
        heal_at: Duration::from_millis(plan.heal_at_ms()),
    };
    let (cluster, records, connections_killed) =
        play(plan, cluster, &schedule, killers, shared).await;

    let mut observed = Observed {
        records,
        started_unix_ms,
        ..Observed::default()
    };
    read_back(plan, &url, &addresses, &mut observed).await;
    let (logs, mut summary) = cluster.stop().await;
    drop(database);
    observed.panics = logs
        .iter()
        .filter(|line| line.contains("panicked"))
        .cloned()
        .collect();

    let violations = history::judge(plan, &observed);
    summary.connections_killed = connections_killed;
    summary.requests = observed.records.iter().map(|r| r.attempts.len()).sum();
    summary.lost_replies = observed
        .records
        .iter()
        .flat_map(|r| &r.attempts)
        .filter(|a| a.reply.is_err())
        .count();
    summary.events = observed.accounts.iter().map(|a| a.events.len()).sum();
    LiveOutcome {
        violations,
        summary,
        records: observed.records,
        logs,
        elapsed: began.elapsed(),
    }
}

/// The plan played from `shared.started` on: the clients, the fault
/// schedule (healed at once when the clients are done) and the connection
/// kill storms, all at once. Gives back the cluster, the clients' records
/// and how many connections the storms killed.
async fn play(
    plan: &Plan,
    mut cluster: Cluster,
    schedule: &faults::Schedule,
    killers: Vec<Killer>,
    shared: Shared,
) -> (Cluster, Vec<LiveRecord>, usize) {
    let started = shared.started;
    let stop_storms = Arc::new(AtomicBool::new(false));
    let storms: Vec<_> = killers
        .into_iter()
        .zip(&schedule.kill_windows)
        .map(|(killer, window)| tokio::spawn(storm(killer, *window, started, stop_storms.clone())))
        .collect();
    let changes = schedule.changes.clone();
    let (clients_done, mut until_clients_done) = tokio::sync::oneshot::channel::<()>();
    let faults = tokio::spawn(async move {
        // Once the clients are done, the rest of the schedule only delays
        // the read-back: heal at once.
        let mut rest = changes.into_iter();
        for (at, change) in rest.by_ref() {
            tokio::select! {
                _ = tokio::time::sleep_until((started + at).into()) => cluster.apply(change).await,
                _ = &mut until_clients_done => break,
            }
        }
        cluster.apply(Change::HealAll).await;
        cluster
    });
    let mut records = Vec::new();
    let mut clients = Vec::new();
    for index in 0..plan.clients.len() {
        let client = LiveClient::new(plan, index, shared.clone());
        records.push(client.records.clone());
        clients.push(tokio::spawn(client.run()));
    }
    for client in clients {
        client.await.expect("a client does not panic");
    }
    let _ = clients_done.send(());
    stop_storms.store(true, Ordering::SeqCst);
    let cluster = faults.await.expect("the fault schedule does not panic");
    let mut connections_killed = 0;
    for storm in storms {
        connections_killed += storm.await.expect("a storm does not panic");
    }
    let records = records
        .iter()
        .flat_map(|r| r.lock().unwrap_or_else(|p| p.into_inner()).clone())
        .collect();
    (cluster, records, connections_killed)
}

/// Every account read back after the run: its stream through the API, and
/// its events and load straight from the database. What cannot be read is
/// noted in `observed.incomplete`.
async fn read_back(plan: &Plan, url: &str, addresses: &Addresses, observed: &mut Observed) {
    let opened = accounts::store::open(url, &test_options()).await;
    for index in 0..plan.accounts {
        let id = plan.account_id(index);
        let events = read_stream(addresses, id).await.unwrap_or_else(|error| {
            observed.incomplete.push(error);
            Vec::new()
        });
        let (mut stored, mut loaded) = (None, None);
        match &opened {
            Ok(opened) => {
                match opened.store.events(id, 1, usize::MAX).await {
                    Ok(events) => stored = Some(events),
                    Err(error) => observed
                        .incomplete
                        .push(format!("events of a{index}: {error}")),
                }
                match opened.store.load(id, None).await {
                    Ok(load) => loaded = Some(load),
                    Err(error) => observed
                        .incomplete
                        .push(format!("load of a{index}: {error}")),
                }
            }
            Err(error) => observed
                .incomplete
                .push(format!("opening the database: {error}")),
        }
        observed.accounts.push(ObservedAccount {
            id,
            events,
            stored,
            loaded,
        });
    }
}

/// How a run is invoked from the command line.
#[derive(Clone, Debug)]
pub struct LiveCli {
    pub database_url: String,
    pub binary: Option<PathBuf>,
    pub bug: Option<LiveBug>,
}

/// Plans each planted bug may take before it counts as not caught.
pub const LIVE_SELF_TEST_PLANS: u64 = 12;

impl LiveCli {
    fn config(&self, bug: Option<LiveBug>) -> Result<LiveConfig, String> {
        let target = Target::parse(&self.database_url)?;
        let binary = match &self.binary {
            Some(binary) => binary.clone(),
            None => std::env::current_exe()
                .map_err(|e| format!("locating sim: {e}"))?
                .with_file_name("accounts"),
        };
        if !binary.is_file() {
            return Err(format!(
                "no accounts binary at {} (build it with `cargo build --release --bin accounts`, or pass --binary)",
                binary.display()
            ));
        }
        Ok(LiveConfig {
            target,
            binary,
            bug,
        })
    }

    fn replay_command(&self, seed: u64, bug: Option<LiveBug>) -> String {
        let bug = bug.map_or_else(String::new, |bug| {
            format!(" --live-bug {}", live_bug_name(bug))
        });
        format!(
            "cargo build --release -p accounts -p sim --bins && target/release/sim --live --database-url '{}' --seed {seed}{bug} --trace",
            redact(&self.database_url)
        )
    }

    /// Runs `seeds` one after another (the machine's cores go to the
    /// instances and the database); fails if any plan fails.
    pub fn sweep(&self, seeds: Range<u64>) -> ExitCode {
        let config = match self.config(self.bug) {
            Ok(config) => config,
            Err(error) => return usage(&error),
        };
        let started = Instant::now();
        let mut failures = Vec::new();
        let mut totals = LiveSummary::default();
        let mut saw = [0u64; 5];
        for seed in seeds.clone() {
            let plan = live_plan(seed);
            let outcome = run(&plan, &config);
            println!("{}", describe(seed, &config, &outcome));
            let s = &outcome.summary;
            for (count, hit) in saw.iter_mut().zip([
                s.kills > 0,
                s.pauses > 0,
                s.connections_killed > 0,
                s.conflicts > 0,
                s.ambiguous_commits > 0,
            ]) {
                *count += u64::from(hit);
            }
            totals.requests += s.requests;
            totals.events += s.events;
            if !outcome.passed() {
                self.report_failure(&plan, &outcome, self.bug);
                failures.push(seed);
            }
        }
        let ran = seeds.end - seeds.start;
        let share = |n: u64| 100.0 * n as f64 / ran.max(1) as f64;
        println!(
            "live coverage on {}: plans with kills {:.0}%, pauses {:.0}%, connections killed {:.0}%, write conflicts {:.0}%, ambiguous commits {:.0}% (the last two as far as the instances' metrics tell)",
            config.target.name(),
            share(saw[0]),
            share(saw[1]),
            share(saw[2]),
            share(saw[3]),
            share(saw[4]),
        );
        println!(
            "live: {ran} plans on {} in {:.1} s, {} requests, {} events, {} failing{}",
            config.target.name(),
            started.elapsed().as_secs_f64(),
            totals.requests,
            totals.events,
            failures.len(),
            if failures.is_empty() {
                String::new()
            } else {
                format!(" (seeds {failures:?})")
            }
        );
        if failures.is_empty() {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        }
    }

    /// One plan, with every exchange when `trace` is set.
    pub fn replay(&self, seed: u64, trace: bool) -> ExitCode {
        let config = match self.config(self.bug) {
            Ok(config) => config,
            Err(error) => return usage(&error),
        };
        let plan = live_plan(seed);
        if trace {
            print!("{plan}");
        }
        let outcome = run(&plan, &config);
        if trace {
            for line in exchanges(&outcome.records) {
                println!("{line}");
            }
        }
        println!("{}", describe(seed, &config, &outcome));
        if outcome.passed() {
            ExitCode::SUCCESS
        } else {
            self.report_failure(&plan, &outcome, self.bug);
            ExitCode::FAILURE
        }
    }

    /// Every live planted bug must be caught within a few plans.
    pub fn self_test(&self) -> ExitCode {
        let mut survivors = 0;
        for (bug, name) in client::LIVE_BUG_NAMES {
            let config = match self.config(Some(bug)) {
                Ok(config) => config,
                Err(error) => return usage(&error),
            };
            let caught = (0..LIVE_SELF_TEST_PLANS).find_map(|seed| {
                let outcome = run(&live_plan(seed), &config);
                (!outcome.passed()).then_some((seed, outcome))
            });
            match caught {
                Some((seed, outcome)) => {
                    println!(
                        "caught {name:<24} on {} with seed {seed}: {}",
                        config.target.name(),
                        outcome.violations[0]
                    );
                    println!("  replay: {}", self.replay_command(seed, Some(bug)));
                }
                None => {
                    survivors += 1;
                    println!("SURVIVED {name}: no violation in {LIVE_SELF_TEST_PLANS} plans");
                }
            }
        }
        let total = client::LIVE_BUG_NAMES.len();
        println!(
            "live self-test: {} of {total} planted bugs caught",
            total - survivors
        );
        if survivors == 0 {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        }
    }

    fn report_failure(&self, plan: &Plan, outcome: &LiveOutcome, bug: Option<LiveBug>) {
        println!("FAILED seed {} (live):", plan.seed);
        for violation in outcome.violations.iter().take(10) {
            println!("  {violation}");
        }
        if outcome.violations.len() > 10 {
            println!("  … and {} more", outcome.violations.len() - 10);
        }
        print!("{plan}");
        let tail = outcome.logs.len().saturating_sub(20);
        if tail < outcome.logs.len() {
            println!("  the instances' last log lines:");
            for line in &outcome.logs[tail..] {
                println!("    {line}");
            }
        }
        println!("  replay: {}", self.replay_command(plan.seed, bug));
    }
}

fn usage(error: &str) -> ExitCode {
    eprintln!("sim --live: {error}");
    ExitCode::from(2)
}

/// A server URL without its password, for printing.
fn redact(url: &str) -> String {
    match url.split_once("://") {
        Some((scheme, rest)) => match rest.split_once('@') {
            Some((user, host)) if user.contains(':') => {
                let name = user.split(':').next().unwrap_or_default();
                format!("{scheme}://{name}:***@{host}")
            }
            _ => url.to_owned(),
        },
        None => url.to_owned(),
    }
}

fn describe(seed: u64, config: &LiveConfig, outcome: &LiveOutcome) -> String {
    let s = &outcome.summary;
    format!(
        "live seed {seed} on {}: {} in {:.1} s: {} instances, {} requests ({} unanswered), {} events, {} kills, {} pauses, {} connections killed{}, {} failed starts, ≥{} conflicts, ≥{} ambiguous commits",
        config.target.name(),
        if outcome.passed() { "ok" } else { "FAILED" },
        outcome.elapsed.as_secs_f64(),
        s.instances,
        s.requests,
        s.lost_replies,
        s.events,
        s.kills,
        s.pauses,
        s.connections_killed,
        if s.skipped_windows > 0 {
            format!(" ({} store windows without a live form)", s.skipped_windows)
        } else {
            String::new()
        },
        s.failed_starts,
        s.conflicts,
        s.ambiguous_commits,
    )
}

/// Every exchange in the order it was sent.
fn exchanges(records: &[LiveRecord]) -> Vec<String> {
    let mut lines: Vec<(Duration, String)> = records
        .iter()
        .flat_map(|record| {
            record.attempts.iter().map(move |a| {
                let reply = match &a.reply {
                    Ok(answer) if answer.body.is_empty() => answer.status.as_u16().to_string(),
                    Ok(answer) => format!("{} {}", answer.status.as_u16(), answer.body),
                    Err(no_answer) => no_answer.to_string(),
                };
                (
                    a.sent,
                    format!(
                        "{:>7.3}–{:.3} s  client-{} #{} {:?} via instance-{}: {} -> {reply}",
                        a.sent.as_secs_f64(),
                        a.answered.as_secs_f64(),
                        record.client,
                        record.index,
                        a.phase,
                        a.instance,
                        record.action,
                    ),
                )
            })
        })
        .collect();
    lines.sort_by_key(|(at, _)| *at);
    lines.into_iter().map(|(_, line)| line).collect()
}

/// The wall clock, as the binaries stamp `recordedAt`.
fn unix_millis_now() -> i64 {
    let since = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    i64::try_from(since.as_millis()).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_live_plan_has_a_fault_while_its_clients_run() {
        for seed in 0..200 {
            let plan = live_plan(seed);
            let span: u64 = plan
                .clients
                .iter()
                .map(|ops| ops.iter().map(|op| op.think_ms).sum())
                .max()
                .unwrap_or(0);
            assert!(
                !plan.faults.is_empty(),
                "seed {seed}: no crash or partition"
            );
            for start in plan
                .faults
                .iter()
                .map(|f| f.start_ms)
                .chain(plan.store_windows.iter().map(|w| w.start_ms))
            {
                assert!(
                    start <= span.max(1),
                    "seed {seed}: a fault at {start} ms, the clients think for {span} ms"
                );
            }
            assert!(plan.faults.is_sorted_by_key(|f| f.start_ms), "seed {seed}");
            assert_eq!(live_plan(seed), plan, "seed {seed}: not deterministic");
        }
    }

    #[test]
    fn database_urls_name_their_target() {
        assert_eq!(Target::parse("sqlite:"), Ok(Target::Sqlite));
        assert_eq!(
            Target::parse("postgres://postgres@127.0.0.1:5432/postgres"),
            Ok(Target::Server {
                backend: Backend::Postgres,
                admin_url: "postgres://postgres@127.0.0.1:5432/postgres".to_owned()
            })
        );
        assert_eq!(
            Target::parse("mysql://root@127.0.0.1:3306/mysql")
                .map(|t| t.name())
                .as_deref(),
            Ok("mariadb")
        );
        assert!(Target::parse("memory:").is_err());
        assert_eq!(
            redact("postgres://me:secret@db:5432/postgres"),
            "postgres://me:***@db:5432/postgres"
        );
    }
}
