//! What one simulation run does, as plain data: the world's size, each
//! client's operations with their think times, and the fault schedule with
//! explicit times. A run is a pure function of its plan, so a plan can come
//! from a seed (`sim --seed S`) or from proptest (which then shrinks it).

use std::fmt;

use crate::bugs::PlantedBug;
use crate::dbfaults::plan::DbFault;
use accounts::domain::{AccountId, OwnerId, TransactionId};
use rand_core::{RngCore, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;
use uuid::Uuid;

/// Host names are constants: turmoil panics on a name it does not know.
pub const INSTANCES: [&str; 3] = ["instance-0", "instance-1", "instance-2"];
pub const CLIENTS: [&str; 4] = ["client-0", "client-1", "client-2", "client-3"];
/// Feed readers: clients that page the store-wide feed (`GET /api/events`).
pub const READERS: [&str; 2] = ["reader-0", "reader-1"];
pub const ACCOUNTS_MAX: usize = 4;
/// Owner indexes: each account `a` has its natural owner `a`; the indexes
/// from `ACCOUNTS_MAX` on are strangers who own nothing until they open
/// an account someone else meant to open.
pub const OWNERS: usize = ACCOUNTS_MAX + 2;

/// Faults start within this window; after the last one ends, everything
/// heals and the liveness phase begins.
pub const FAULT_PHASE_MS: u64 = 3_000;

/// The URL style an operation is sent in.
pub use testkit::Style;

/// Who sends a request: with authentication off everyone is `Anyone`;
/// with it on, a request carries a token for an owner (by index) or the
/// admin scope.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Who {
    Anyone,
    Owner(usize),
    Admin,
}

/// One client operation; accounts and owners are indexes into the plan's.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    Open {
        account: usize,
        owner: usize,
    },
    Deposit {
        account: usize,
        amount: i64,
    },
    Withdraw {
        account: usize,
        amount: i64,
    },
    Transfer {
        from: usize,
        to: usize,
        amount: i64,
    },
    Close {
        account: usize,
    },
    GetState {
        account: usize,
    },
    /// A past state: `?version=` or `?at=`.
    GetStateAt {
        account: usize,
        point: Past,
    },
    /// One page of the event stream: `from` (≥ 1) and `limit` (`None`: the
    /// service's default).
    GetEvents {
        account: usize,
        from: u64,
        limit: Option<u64>,
    },
}

impl Action {
    /// Whether the action changes state (and so must reach a definitive
    /// answer in the liveness phase).
    pub fn is_write(&self) -> bool {
        !matches!(
            self,
            Action::GetState { .. } | Action::GetStateAt { .. } | Action::GetEvents { .. }
        )
    }

    /// Writes the client identifies with a transactionId (all but open).
    pub fn has_transaction(&self) -> bool {
        self.is_write() && !matches!(self, Action::Open { .. })
    }

    pub fn account(&self) -> usize {
        match *self {
            Action::Open { account, .. }
            | Action::Deposit { account, .. }
            | Action::Withdraw { account, .. }
            | Action::Close { account }
            | Action::GetState { account }
            | Action::GetStateAt { account, .. }
            | Action::GetEvents { account, .. } => account,
            Action::Transfer { from, .. } => from,
        }
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Action::Open { account, owner } if *owner == *account => write!(f, "open a{account}"),
            Action::Open { account, owner } => write!(f, "open a{account} for owner o{owner}"),
            Action::Deposit { account, amount } => write!(f, "deposit {amount} to a{account}"),
            Action::Withdraw { account, amount } => {
                write!(f, "withdraw {amount} from a{account}")
            }
            Action::Transfer { from, to, amount } => {
                write!(f, "transfer {amount} from a{from} to a{to}")
            }
            Action::Close { account } => write!(f, "close a{account}"),
            Action::GetState { account } => write!(f, "read state of a{account}"),
            Action::GetStateAt {
                account,
                point: Past::Version(version),
            } => write!(f, "read state of a{account} at version {version}"),
            Action::GetStateAt {
                account,
                point: Past::At(ms),
            } => write!(f, "read state of a{account} at {ms} ms"),
            Action::GetEvents {
                account,
                from,
                limit,
            } => write!(f, "read events of a{account} from #{from}, limit {limit:?}"),
        }
    }
}

/// Where a past-state read points: a version, or a time in milliseconds
/// since the run's clock read zero (negative: before anything happened).
/// Relative, so that live runs, whose clock starts when they start, point
/// into their own history as simulated ones do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Past {
    Version(u64),
    At(i64),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Op {
    /// Pause before sending, in virtual milliseconds.
    pub think_ms: u64,
    pub action: Action,
    pub style: Style,
    /// The instance tried first; retries move on to the next one.
    pub instance: usize,
    /// After a success, send the identical request again: it must answer
    /// the same and record nothing.
    pub resend: bool,
    /// Send under the transactionId of this earlier operation of the same
    /// client (a reuse for another operation: 422 where it was recorded).
    pub reuse: Option<usize>,
    /// Who sends it (the token it carries when authentication is on).
    pub caller: Who,
    /// Do not wait for this operation's answer before starting the next
    /// one: two requests of the client in flight at once.
    pub overlap: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FaultKind {
    /// No messages between a client and an instance, then repaired.
    Partition { client: usize, instance: usize },
    /// The instance's process dies (in-flight requests with it) and is
    /// restarted after the duration (0: a bounce).
    Crash { instance: usize },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fault {
    pub start_ms: u64,
    pub duration_ms: u64,
    pub kind: FaultKind,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StoreFaultKind {
    /// Each call takes this long (half before, half after the write, so a
    /// timeout can hit either side of an append).
    Latency { ms: u64 },
    /// The call fails before touching anything.
    Unavailable,
    /// The append lands, but its caller is told the outcome is unknown.
    AmbiguousLanded,
    /// The append never lands, and its caller is told the outcome is unknown.
    AmbiguousLost,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoreWindow {
    pub start_ms: u64,
    pub duration_ms: u64,
    pub kind: StoreFaultKind,
    /// The share of calls in the window that are hit, per mille.
    pub permille: u64,
}

/// A client that reads the store-wide feed from position 0, page by page,
/// resuming after the last position it was given, until it has caught up
/// with the final log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FeedReader {
    /// Pause before the first page and between pages, in virtual ms.
    pub think_ms: u64,
    /// Events per page: small, so a run takes many pages.
    pub limit: u64,
    /// `waitMs` of each request (0: none): a long poll when the reader is
    /// at the head of the feed.
    pub wait_ms: u64,
    /// The instance tried first; errors move the reader to the next one.
    pub instance: usize,
}

#[derive(Clone, PartialEq)]
pub struct Plan {
    /// Seeds turmoil (latency, message loss, tokio's scheduling) and the
    /// store's fault draws; also the base of every generated id.
    pub seed: u64,
    pub instances: usize,
    pub accounts: usize,
    pub clients: Vec<Vec<Op>>,
    pub faults: Vec<Fault>,
    pub store_windows: Vec<StoreWindow>,
    pub latency_max_ms: u64,
    /// Every store call takes this long, like a database round trip; it is
    /// what lets requests on different instances interleave between load
    /// and append, and so conflict.
    pub store_latency_ms: u64,
    /// turmoil's random message loss; only seed sweeps use it, as it shrinks
    /// poorly (one removed message shifts the whole random stream).
    pub fail_rate: f64,
    pub snapshot_every: u64,
    /// Bearer tokens required: requests carry their caller's token.
    pub auth: bool,
    pub bug: Option<PlantedBug>,
    /// Faults of the database host and its links (see `dbfaults`).
    pub db_faults: Vec<DbFault>,
    /// Feed readers (at most `READERS.len()`).
    pub readers: Vec<FeedReader>,
}

impl Plan {
    /// When every fault has ended: partitions are repaired, crashed
    /// instances restarted, store faults over.
    pub fn heal_at_ms(&self) -> u64 {
        let faults = self.faults.iter().map(|f| f.start_ms + f.duration_ms);
        let windows = self
            .store_windows
            .iter()
            .map(|w| w.start_ms + w.duration_ms);
        let loss = if self.fail_rate > 0.0 {
            FAULT_PHASE_MS
        } else {
            0
        };
        let db = self.db_faults.iter().map(DbFault::end_ms);
        faults.chain(windows).chain(db).fold(loss, u64::max)
    }

    pub fn account_id(&self, account: usize) -> AccountId {
        AccountId::from_uuid(derived_uuid(self.seed, 1, account as u64))
    }

    /// Owner `owner` (an index, see [`OWNERS`]); account `a`'s own owner is `a`.
    pub fn owner_id(&self, owner: usize) -> OwnerId {
        OwnerId::from_uuid(derived_uuid(self.seed, 2, owner as u64))
    }

    /// Every owner id, by index.
    pub fn owner_ids(&self) -> Vec<OwnerId> {
        (0..OWNERS).map(|owner| self.owner_id(owner)).collect()
    }

    pub fn transaction_id(&self, client: usize, op: usize) -> TransactionId {
        let index = ((client as u64) << 32) | op as u64;
        TransactionId::from_uuid(derived_uuid(self.seed, 3, index))
    }

    /// A plan drawn from a seed: the sweep's distribution of worlds.
    pub fn from_seed(seed: u64) -> Plan {
        let mut rng = Draw(Xoshiro256PlusPlus::seed_from_u64(seed));
        let instances = 2 + rng.below(2) as usize;
        let accounts = 2 + rng.below(2) as usize;
        let client_count = 3 + rng.below(2) as usize;
        let auth = rng.below(3) == 0;
        let world = World {
            instances,
            accounts,
            auth,
        };
        let mut clients: Vec<Vec<Op>> = (0..client_count)
            .map(|client| client_ops(&mut rng, client, &world))
            .collect();
        past_reads(seed, &mut clients);
        let faults = instance_faults(&mut rng, client_count, instances);
        let store_windows = store_windows(&mut rng);
        let fail_rate = if rng.below(3) == 0 {
            (1 + rng.below(20)) as f64 / 1_000.0
        } else {
            0.0
        };
        Plan {
            faults,
            store_windows,
            latency_max_ms: 1 + rng.below(40),
            store_latency_ms: 1 + rng.below(20),
            fail_rate,
            snapshot_every: [2, 3, 5, 50][rng.below(4) as usize],
            auth,
            db_faults: crate::dbfaults::plan::draw(seed, instances),
            readers: readers(seed, instances),
            ..Plan::quiet(seed, instances, accounts, clients)
        }
    }

    /// A plan of `clients`' operations in a world of this size and nothing
    /// else: no faults, no message loss, the shortest latencies, rare
    /// snapshots, no authentication, no bug, no feed readers. What the
    /// generators start from and override.
    pub fn quiet(seed: u64, instances: usize, accounts: usize, clients: Vec<Vec<Op>>) -> Plan {
        Plan {
            seed,
            instances,
            accounts,
            clients,
            faults: Vec::new(),
            store_windows: Vec::new(),
            latency_max_ms: 1,
            store_latency_ms: 1,
            fail_rate: 0.0,
            snapshot_every: 50,
            auth: false,
            bug: None,
            db_faults: Vec::new(),
            readers: Vec::new(),
        }
    }
}

/// The service instances' faults of a seed's plan: partitions between a
/// client and an instance, and instance crashes, by start time.
fn instance_faults(rng: &mut Draw, client_count: usize, instances: usize) -> Vec<Fault> {
    let mut faults = Vec::new();
    for _ in 0..rng.below(4) {
        faults.push(Fault {
            start_ms: rng.below(FAULT_PHASE_MS),
            duration_ms: 100 + rng.below(1_500),
            kind: FaultKind::Partition {
                client: rng.below(client_count as u64) as usize,
                instance: rng.below(instances as u64) as usize,
            },
        });
    }
    for _ in 0..rng.below(3) {
        faults.push(Fault {
            start_ms: rng.below(FAULT_PHASE_MS),
            duration_ms: if rng.below(3) == 0 {
                0
            } else {
                rng.below(1_000)
            },
            kind: FaultKind::Crash {
                instance: rng.below(instances as u64) as usize,
            },
        });
    }
    faults.sort_by_key(|f| f.start_ms);
    faults
}

/// The store's fault windows of a seed's plan, by start time.
fn store_windows(rng: &mut Draw) -> Vec<StoreWindow> {
    let mut store_windows = Vec::new();
    for _ in 0..rng.below(5) {
        let kind = match rng.below(4) {
            0 => StoreFaultKind::Latency {
                ms: 10 + rng.below(800),
            },
            1 => StoreFaultKind::Unavailable,
            2 => StoreFaultKind::AmbiguousLanded,
            _ => StoreFaultKind::AmbiguousLost,
        };
        store_windows.push(StoreWindow {
            start_ms: rng.below(FAULT_PHASE_MS),
            duration_ms: 100 + rng.below(1_500),
            kind,
            permille: 200 + rng.below(801),
        });
    }
    store_windows.sort_by_key(|w| w.start_ms);
    store_windows
}

/// The feed readers of a seed's world: none in about half of the seeds, else
/// one or two. Drawn from their own stream, so that the rest of a seed's
/// plan is what it was before readers existed.
pub fn readers(seed: u64, instances: usize) -> Vec<FeedReader> {
    let mut rng = Draw(Xoshiro256PlusPlus::seed_from_u64(mix(seed, 9, 0)));
    let count = [0, 0, 1, 2][rng.below(4) as usize];
    (0..count)
        .map(|_| FeedReader {
            think_ms: rng.below(200),
            limit: 1 + rng.below(5),
            wait_ms: [0, 0, 100, 400][rng.below(4) as usize],
            instance: rng.below(instances as u64) as usize,
        })
        .collect()
}

/// Turns about half of the state reads into past-state reads, inside and
/// outside the history: a version (beyond the last: 404), or a time before
/// anything was recorded (404), inside the run, or long after it (the
/// current state). Drawn from their own stream, so that the rest of a
/// seed's plan is what it was before past reads existed.
fn past_reads(seed: u64, clients: &mut [Vec<Op>]) {
    let mut rng = Draw(Xoshiro256PlusPlus::seed_from_u64(mix(seed, 10, 0)));
    for op in clients.iter_mut().flatten() {
        let Action::GetState { account } = op.action else {
            continue;
        };
        let point = match rng.below(8) {
            0..4 => continue,
            4 | 5 => Past::Version(1 + rng.below(12)),
            6 => Past::At(rng.below(FAULT_PHASE_MS + 1_000) as i64),
            _ => Past::At(if rng.below(2) == 0 {
                -1 - rng.below(1_000) as i64
            } else {
                3_600_000
            }),
        };
        op.action = Action::GetStateAt { account, point };
    }
}

/// What operations are drawn against.
struct World {
    instances: usize,
    accounts: usize,
    auth: bool,
}

fn client_ops(rng: &mut Draw, client: usize, world: &World) -> Vec<Op> {
    let count = 6 + rng.below(12) as usize;
    let mut ops: Vec<Op> = Vec::with_capacity(count + 1);
    // Every client starts by opening an account, so money has somewhere to go
    // early and opens race each other.
    let mut first = random_op(rng, world);
    let account = client % world.accounts;
    first.action = Action::Open {
        account,
        owner: account,
    };
    first.caller = caller_for(rng, world, &first.action);
    ops.push(first);
    for _ in 0..count {
        let mut op = random_op(rng, world);
        if rng.below(8) == 0 {
            reuse_transaction(rng, &mut op, &ops);
        }
        op.caller = caller_for(rng, world, &op.action);
        ops.push(op);
    }
    ops
}

/// Turns `op` into another operation sent under the transactionId of an
/// earlier one, on an account that operation touched (either side of a
/// transfer), so that only a record on that account tells them apart.
fn reuse_transaction(rng: &mut Draw, op: &mut Op, earlier: &[Op]) {
    let candidates: Vec<usize> = (0..earlier.len())
        // At most one reuse per transactionId: two reuses could be the
        // identical operation, which is one operation to the service.
        .filter(|&i| {
            earlier[i].reuse.is_none()
                && earlier[i].action.has_transaction()
                && !earlier.iter().any(|op| op.reuse == Some(i))
        })
        .collect();
    if candidates.is_empty() {
        return;
    }
    let index = candidates[rng.below(candidates.len() as u64) as usize];
    let account = match earlier[index].action {
        Action::Transfer { from, to, .. } => {
            if rng.below(2) == 0 {
                from
            } else {
                to
            }
        }
        ref action => action.account(),
    };
    let amount = 1 + rng.below(10) as i64;
    let action = match rng.below(3) {
        0 => Action::Deposit { account, amount },
        1 => Action::Withdraw { account, amount },
        _ => Action::Close { account },
    };
    // Another operation, never the identical one (which would be a replay).
    if action != earlier[index].action {
        op.action = action;
        op.reuse = Some(index);
    }
}

/// With authentication on: mostly the account's own owner, sometimes
/// someone else (refused as if the account did not exist), sometimes an
/// admin.
fn caller_for(rng: &mut Draw, world: &World, action: &Action) -> Who {
    if !world.auth {
        return Who::Anyone;
    }
    let own = match *action {
        Action::Open { owner, .. } => owner,
        ref action => action.account(),
    };
    match rng.below(10) {
        0 => Who::Admin,
        1 => Who::Owner((own + 1 + rng.below(OWNERS as u64 - 1) as usize) % OWNERS),
        _ => Who::Owner(own),
    }
}

/// An amount: mostly small, sometimes zero, sometimes near the i64 limit
/// (so balances overflow).
fn amount(rng: &mut Draw) -> i64 {
    match rng.below(40) {
        0 | 1 => 0,
        2..=4 => i64::MAX - rng.below(50) as i64,
        _ => 1 + rng.below(30) as i64,
    }
}

fn random_op(rng: &mut Draw, world: &World) -> Op {
    let accounts = world.accounts;
    let account = rng.below(accounts as u64) as usize;
    let amount = amount(rng);
    let action = match rng.below(100) {
        0..27 => Action::Deposit { account, amount },
        27..40 => Action::Withdraw {
            account,
            amount: amount.saturating_add(rng.below(10) as i64),
        },
        40..43 => Action::Transfer {
            from: account,
            to: account,
            amount,
        },
        43..63 => Action::Transfer {
            from: account,
            to: (account + 1 + rng.below(accounts as u64 - 1) as usize) % accounts,
            amount,
        },
        63..66 => Action::Open {
            account,
            owner: account,
        },
        66..69 => Action::Open {
            account,
            owner: (account + 1 + rng.below(OWNERS as u64 - 1) as usize) % OWNERS,
        },
        69..76 => Action::Close { account },
        76..88 => Action::GetState { account },
        _ => Action::GetEvents {
            account,
            from: 1 + rng.below(3),
            limit: match rng.below(3) {
                0 => None,
                _ => Some(1 + rng.below(4)),
            },
        },
    };
    Op {
        think_ms: if rng.below(3) == 0 { 0 } else { rng.below(150) },
        action,
        style: if rng.below(2) == 0 {
            Style::Query
        } else {
            Style::Path
        },
        instance: rng.below(world.instances as u64) as usize,
        resend: rng.below(6) == 0,
        reuse: None,
        caller: Who::Anyone,
        overlap: rng.below(4) == 0,
    }
}

/// The seeded rng of plan generation.
struct Draw(Xoshiro256PlusPlus);

impl Draw {
    /// A number in `0..bound`.
    fn below(&mut self, bound: u64) -> u64 {
        self.0.next_u64() % bound.max(1)
    }
}

/// splitmix64: spreads (seed, purpose, index) into independent rng seeds.
pub fn mix(seed: u64, purpose: u64, index: u64) -> u64 {
    let mut z = seed
        .wrapping_add(purpose.wrapping_mul(0x9E37_79B9_7F4A_7C15))
        .wrapping_add(index.wrapping_mul(0xBF58_476D_1CE4_E5B9));
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn derived_uuid(seed: u64, purpose: u64, index: u64) -> Uuid {
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(mix(seed, purpose, index));
    let mut bytes = [0u8; 16];
    rng.fill_bytes(&mut bytes);
    uuid::Builder::from_random_bytes(bytes).into_uuid()
}

impl fmt::Display for Plan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "plan (seed {}): {} instances, {} accounts, message latency ≤ {} ms, store latency {} ms, loss {}, snapshot every {}, auth {}, heal at {} ms, planted bug {:?}",
            self.seed,
            self.instances,
            self.accounts,
            self.latency_max_ms,
            self.store_latency_ms,
            self.fail_rate,
            self.snapshot_every,
            if self.auth { "on" } else { "off" },
            self.heal_at_ms(),
            self.bug
        )?;
        self.write_faults(f)?;
        for (reader, r) in self.readers.iter().enumerate() {
            writeln!(
                f,
                "  reader-{reader}: the feed in pages of {} every {} ms via instance-{}, waitMs {}",
                r.limit, r.think_ms, r.instance, r.wait_ms
            )?;
        }
        for (client, ops) in self.clients.iter().enumerate() {
            writeln!(f, "  client-{client}:")?;
            for (index, op) in ops.iter().enumerate() {
                write_op(f, index, op)?;
            }
        }
        Ok(())
    }
}

impl Plan {
    /// The fault schedule, a line a fault: the instances', the database
    /// host's, then the store's windows.
    fn write_faults(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for fault in &self.faults {
            let what = match fault.kind {
                FaultKind::Partition { client, instance } => {
                    format!("partition client-{client} | instance-{instance}")
                }
                FaultKind::Crash { instance } => format!("crash instance-{instance}"),
            };
            writeln!(
                f,
                "  fault  at {:>5} ms for {:>5} ms: {what}",
                fault.start_ms, fault.duration_ms
            )?;
        }
        for fault in &self.db_faults {
            writeln!(f, "{fault}")?;
        }
        for window in &self.store_windows {
            writeln!(
                f,
                "  store  at {:>5} ms for {:>5} ms: {:?} on {}‰ of calls",
                window.start_ms, window.duration_ms, window.kind, window.permille
            )?;
        }
        Ok(())
    }
}

/// One client's operation `index`, on a line of its own.
fn write_op(f: &mut fmt::Formatter<'_>, index: usize, op: &Op) -> fmt::Result {
    let reuse = op
        .reuse
        .map_or_else(String::new, |i| format!(" under #{i}'s transactionId"));
    let caller = match op.caller {
        Who::Anyone => String::new(),
        Who::Owner(owner) => format!(" as o{owner}"),
        Who::Admin => " as admin".to_owned(),
    };
    writeln!(
        f,
        "    #{index:<2} after {:>3} ms via instance-{} ({:?} style): {}{reuse}{caller}{}{}",
        op.think_ms,
        op.instance,
        op.style,
        op.action,
        if op.resend { ", then resend" } else { "" },
        if op.overlap {
            ", next one not waiting"
        } else {
            ""
        }
    )
}

/// proptest prints a failing input with Debug: make it the readable form.
impl fmt::Debug for Plan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}
