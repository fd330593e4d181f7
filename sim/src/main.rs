//! `sim`: the deterministic simulation of the accounts service.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{ArgGroup, Parser};
use sim::bugs::PlantedBug;
use sim::histories;
use sim::live::LiveCli;
use sim::live::client::{LiveBug, live_bug_from_name};
use sim::sweep::{self, Sweep, bug_from_name, bug_name, replay_command};
use sim::trace::Trace;

#[derive(Parser, Debug)]
#[command(
    name = "sim",
    version,
    about = "Deterministic simulation of the accounts service: real router and engine in turmoil worlds with faults, checked for money conservation and exactly-once",
    group(ArgGroup::new("mode").required(true).args(["seeds", "seed", "self_test", "histories"]))
)]
struct Cli {
    /// Run N seeds (from --first-seed on), one simulation per thread.
    #[arg(long, value_name = "N")]
    seeds: Option<u64>,
    /// The first seed of --seeds.
    #[arg(long, value_name = "S", default_value_t = 0)]
    first_seed: u64,
    /// Replay one seed: print its plan summary, digest and verdict.
    #[arg(long, value_name = "S")]
    seed: Option<u64>,
    /// With --seed: print the plan and a readable trace of the run.
    #[arg(long, requires = "seed")]
    trace: bool,
    /// Run every planted bug until a seed catches it; fails if one survives.
    #[arg(long)]
    self_test: bool,
    /// Run N proptest-generated plans (fixed rng), shrinking any failure.
    #[arg(long, value_name = "N")]
    histories: Option<u32>,
    /// Plant a bug: a decorator around the instances' store, see
    /// `sim/src/bugs.rs` (for replaying what the self-test found).
    #[arg(long, value_parser = bug_from_name)]
    bug: Option<PlantedBug>,
    /// Threads for --seeds and --self-test (default: all cores).
    #[arg(long)]
    threads: Option<usize>,
    /// Live mode: play the plans of --seeds, --seed or --self-test against
    /// real `accounts` processes on a real database (see `sim/src/live/`).
    #[arg(long, requires = "database_url", conflicts_with_all = ["histories", "bug"])]
    live: bool,
    /// With --live: `sqlite:` (a temporary file per plan), or a PostgreSQL
    /// or MariaDB server URL on which each plan gets a fresh database.
    #[arg(long, value_name = "URL", requires = "live")]
    database_url: Option<String>,
    /// With --live: the `accounts` binary to start (default: next to `sim`).
    #[arg(long, value_name = "PATH", requires = "live")]
    binary: Option<PathBuf>,
    /// With --live: plant a bug between the clients and the service, see
    /// `sim/src/live/client.rs`.
    #[arg(long, value_name = "NAME", value_parser = live_bug_from_name, requires = "live")]
    live_bug: Option<LiveBug>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if cli.live {
        let live = LiveCli {
            database_url: cli.database_url.unwrap_or_default(),
            binary: cli.binary,
            bug: cli.live_bug,
        };
        return match (cli.seed, cli.seeds) {
            (Some(seed), _) => live.replay(seed, cli.trace),
            (None, Some(count)) => live.sweep(cli.first_seed..cli.first_seed.saturating_add(count)),
            (None, None) => live.self_test(),
        };
    }
    let threads = cli.threads.unwrap_or_else(sweep::threads_default);
    if let Some(seed) = cli.seed {
        replay(seed, cli.bug, cli.trace)
    } else if let Some(count) = cli.seeds {
        seeds(
            cli.first_seed..cli.first_seed.saturating_add(count),
            cli.bug,
            threads,
        )
    } else if let Some(cases) = cli.histories {
        explore(cases, cli.bug)
    } else {
        self_test(threads)
    }
}

fn replay(seed: u64, bug: Option<PlantedBug>, trace: bool) -> ExitCode {
    let mut plan = sim::plan::Plan::from_seed(seed);
    plan.bug = bug;
    if trace {
        print!("{plan}");
    }
    let outcome = sim::world::run(
        &plan,
        if trace {
            Trace::enabled()
        } else {
            Trace::disabled()
        },
    );
    for line in &outcome.trace {
        println!("{line}");
    }
    let s = &outcome.summary;
    println!(
        "seed {seed}: {} requests ({} unanswered), {} events, {} ms virtual, {} partitions, {} crashes, store faults: {} refused, replies lost after commit {}, commits lost {}; engine: {} conflicts, {} ambiguous appends; database: {} crashes, {} partitions, {} reply faults, {} slow-commit windows, {} zombie commits, {} failovers ({} acknowledged commits lost); cache: {} stale entries, {} commits batched behind another",
        s.requests,
        s.lost_replies,
        s.events,
        s.virtual_ms,
        s.partitions,
        s.crashes,
        s.store_unavailable,
        s.ambiguous_landed,
        s.ambiguous_lost,
        s.conflicts,
        s.ambiguous_seen,
        s.db_crashes,
        s.db_partitions,
        s.db_reply_faults,
        s.db_slow_commits,
        s.zombie_commits,
        s.db_failovers,
        s.failover_lost_commits,
        s.cache_stale,
        s.batched_members
    );
    println!("digest {}", outcome.digest);
    if outcome.passed() {
        println!("seed {seed}: ok");
        ExitCode::SUCCESS
    } else {
        report_failure(seed, bug, &outcome.violations);
        ExitCode::FAILURE
    }
}

fn report_failure(seed: u64, bug: Option<PlantedBug>, violations: &[String]) {
    println!("FAILED seed {seed}:");
    for violation in violations.iter().take(10) {
        println!("  {violation}");
    }
    if violations.len() > 10 {
        println!("  … and {} more", violations.len() - 10);
    }
    println!("  replay: {}", replay_command(seed, bug));
}

fn seeds(seeds: std::ops::Range<u64>, bug: Option<PlantedBug>, threads: usize) -> ExitCode {
    let total = seeds.end - seeds.start;
    let started = std::time::Instant::now();
    let report = Sweep {
        seeds,
        bug,
        threads,
        stop_at_first_failure: false,
    }
    .run(|done, failures| {
        let rate = done as f64 / started.elapsed().as_secs_f64().max(1e-9);
        eprintln!("  {done}/{total} seeds, {failures} failures, {rate:.0} seeds/s");
    });
    for failure in &report.failures {
        report_failure(failure.seed, bug, &failure.violations);
    }
    println!("coverage: {}", report.coverage.describe(report.ran));
    println!(
        "ran {} seeds, {} failures, {:.1} seeds/s on {threads} threads ({:.1} s)",
        report.ran,
        report.failures.len(),
        report.seeds_per_second(),
        report.elapsed.as_secs_f64()
    );
    if report.failures.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn self_test(threads: usize) -> ExitCode {
    println!(
        "{:<32} {:<12} {:>5}  first violation",
        "planted bug", "layer", "seed"
    );
    let mut replays = Vec::new();
    let catches = sweep::self_test(threads, |catch| match &catch.caught {
        Some(failure) => {
            println!(
                "{:<32} {:<12} {:>5}  {}",
                bug_name(catch.bug),
                format!("{:?}", catch.bug.layer()),
                failure.seed,
                failure.violations[0]
            );
            replays.push(replay_command(failure.seed, Some(catch.bug)));
        }
        None => println!(
            "{:<32} {:<12} {:>5}  SURVIVED: no violation in {} seeds",
            bug_name(catch.bug),
            format!("{:?}", catch.bug.layer()),
            "-",
            catch.seeds_run
        ),
    });
    println!("replay any of them:");
    for replay in &replays {
        println!("  {replay}");
    }
    let survivors = catches.iter().filter(|c| c.caught.is_none()).count();
    println!(
        "self-test: {} of {} planted bugs caught",
        catches.len() - survivors,
        catches.len()
    );
    if survivors == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// Each shrinking step is one simulation (~10 ms).
const SHRINK_ITERATIONS: u32 = 2_000;

fn explore(cases: u32, bug: Option<PlantedBug>) -> ExitCode {
    match histories::explore(cases, bug, SHRINK_ITERATIONS) {
        Ok(()) => {
            println!("{cases} generated histories passed");
            ExitCode::SUCCESS
        }
        Err(counterexample) => {
            println!("minimal failing history:\n{}", counterexample.plan);
            println!("what the checker found:\n{}", counterexample.reason);
            ExitCode::FAILURE
        }
    }
}
