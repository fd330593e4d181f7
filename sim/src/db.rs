//! The database as a host: a small request/response protocol over turmoil
//! TCP (one JSON frame each way, prefixed with its length), a `RemoteStore`
//! the instances use as their `EventStore`, and the database host serving a
//! `MemoryStore` whose data lives outside the host, so a crash loses the
//! calls in flight but never an acknowledged commit.
//!
//! The `RemoteStore` keeps the store contract's promises about failures: a
//! call that cannot be sent, or breaks before its request went out, answers
//! `Unavailable`; an append whose request went out and whose reply never
//! came (timeout, broken connection, the database crashed) answers
//! `Ambiguous`, because it may have landed. Lost replies after COMMIT and
//! commits landing after the engine stopped waiting ("zombies") then happen
//! by themselves; the `Ledger` only counts them.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use accounts::domain::{AccountId, TransactionId};
use accounts::store::{
    AppendError, Commit, EventStore, FeedEvent, Loaded, PointInTime, RecordedEvent, StoreError,
};
use async_trait::async_trait;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use turmoil::net::{TcpListener, TcpStream};

use crate::dbfaults::draw::{Hits, StoreFaults};
use crate::replica::Cluster;

/// The database host's name; a constant, as turmoil panics on unknown names.
pub const DB: &str = "db";
pub const DB_PORT: u16 = 5432;
/// A frame longer than this is a broken peer, not a reply to wait for.
const FRAME_MAX: u32 = 64 << 20;

/// One store call, as sent.
#[derive(Debug, Serialize, Deserialize)]
enum Call {
    Load {
        account: AccountId,
        transaction: Option<TransactionId>,
    },
    LoadAt {
        account: AccountId,
        at: PointInTime,
    },
    Events {
        account: AccountId,
        from: u64,
        limit: u64,
    },
    Feed {
        after: u64,
        limit: u64,
    },
    AppendBatch {
        commits: Vec<Commit>,
    },
    Ping,
}

#[derive(Debug, Serialize, Deserialize)]
struct Request {
    /// Unique in the run: lets the ledger match a commit with its caller.
    id: u64,
    call: Call,
}

#[derive(Debug, Serialize, Deserialize)]
enum Reply {
    Loaded(Result<Loaded, StoreError>),
    Events(Result<Vec<RecordedEvent>, StoreError>),
    Feed(Result<Vec<FeedEvent>, StoreError>),
    Appended(Vec<Result<(), AppendError>>),
    Pong(Result<(), StoreError>),
}

async fn write_frame(stream: &mut TcpStream, message: &impl Serialize) -> Result<(), String> {
    let body = serde_json::to_vec(message).map_err(|e| format!("encode: {e}"))?;
    let length = u32::try_from(body.len()).map_err(|_| "frame too long".to_owned())?;
    // One write per frame: one simulated message, not two.
    let mut frame = Vec::with_capacity(4 + body.len());
    frame.extend_from_slice(&length.to_be_bytes());
    frame.extend_from_slice(&body);
    stream
        .write_all(&frame)
        .await
        .map_err(|e| format!("write: {e}"))
}

async fn read_frame<T: DeserializeOwned>(stream: &mut TcpStream) -> Result<T, String> {
    let length = stream.read_u32().await.map_err(|e| format!("read: {e}"))?;
    if length > FRAME_MAX {
        return Err(format!("frame of {length} bytes"));
    }
    let mut body = vec![0; length as usize];
    stream
        .read_exact(&mut body)
        .await
        .map_err(|e| format!("read: {e}"))?;
    serde_json::from_slice(&body).map_err(|e| format!("decode: {e}"))
}

/// What happened to each append sent over the network, for the coverage
/// figures. Shared by every host of the run (and outside them all), like
/// an observer who sees both ends of every connection.
#[derive(Default)]
pub struct Ledger(Mutex<LedgerState>);

#[derive(Default)]
struct LedgerState {
    next_id: u64,
    appends: BTreeMap<u64, Fate>,
    /// Write requests the instances are serving (their handlers alive).
    writes_open: u64,
    /// Append calls the instances have made and not finished.
    appends_open: u64,
    /// Appends the database has read and not finished with.
    appends_serving: u64,
    /// When the last append request went out (virtual time).
    last_append_sent: Duration,
}

#[derive(Default)]
struct Fate {
    /// The caller stopped waiting after its request went out.
    abandoned: bool,
    /// The database applied at least one member of the batch.
    landed: bool,
    /// … after the caller had stopped waiting.
    zombie: bool,
}

/// The ledger's totals.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Fates {
    /// Commits applied whose caller never got the reply.
    pub lost_replies: u64,
    /// Of those, commits applied after the caller had stopped waiting.
    pub zombies: u64,
    /// Appends sent, given up on, and never applied.
    pub lost_commits: u64,
}

impl Ledger {
    fn with<T>(&self, f: impl FnOnce(&mut LedgerState) -> T) -> T {
        f(&mut self.0.lock().unwrap_or_else(|p| p.into_inner()))
    }

    fn next_id(&self) -> u64 {
        self.with(|state| {
            state.next_id += 1;
            state.next_id
        })
    }

    fn abandoned(&self, id: u64) {
        self.with(|state| state.appends.entry(id).or_default().abandoned = true);
    }

    /// Returns whether the caller had already given up: a zombie commit.
    fn landed(&self, id: u64) -> bool {
        self.with(|state| {
            let fate = state.appends.entry(id).or_default();
            fate.landed = true;
            fate.zombie = fate.abandoned;
            fate.zombie
        })
    }

    /// Whether no commit can land any more unless a new write request
    /// arrives: no instance serves a write, no append call is open, the
    /// database serves no append, and any append request still on the
    /// network (sent before `since`, or held until then) has had
    /// `latency_max` to arrive. What a feed reader needs to know that the
    /// log is final, without waiting a fixed time after the writers.
    pub fn quiet(&self, now: Duration, since: Duration, latency_max: Duration) -> bool {
        self.with(|state| {
            state.writes_open == 0
                && state.appends_open == 0
                && state.appends_serving == 0
                && now >= state.last_append_sent.max(since) + latency_max
        })
    }

    /// Counts a write request being served until the guard drops.
    pub fn write_opened(self: &Arc<Self>) -> Open {
        self.open(|state| &mut state.writes_open)
    }

    fn open(self: &Arc<Self>, counter: fn(&mut LedgerState) -> &mut u64) -> Open {
        self.with(|state| *counter(state) += 1);
        Open {
            ledger: self.clone(),
            counter,
        }
    }

    pub fn fates(&self) -> Fates {
        self.with(|state| {
            let mut fates = Fates::default();
            for fate in state.appends.values() {
                if fate.abandoned && fate.landed {
                    fates.lost_replies += 1;
                }
                if fate.zombie {
                    fates.zombies += 1;
                }
                if fate.abandoned && !fate.landed {
                    fates.lost_commits += 1;
                }
            }
            fates
        })
    }
}

/// Something the ledger counts as open until it is dropped (finished,
/// cancelled, or lost with its host).
pub struct Open {
    ledger: Arc<Ledger>,
    counter: fn(&mut LedgerState) -> &mut u64,
}

impl Drop for Open {
    fn drop(&mut self) {
        self.ledger.with(|state| *(self.counter)(state) -= 1);
    }
}

/// A call on its way. For an append, once its request is sent, dropping it
/// unanswered (a timeout here, the engine's own timeout, a broken
/// connection) tells the ledger that its caller gave up.
struct InFlight<'a> {
    ledger: &'a Arc<Ledger>,
    id: u64,
    /// For an append: open in the ledger until the call ends.
    append: Option<Open>,
    sent: bool,
    answered: bool,
}

impl<'a> InFlight<'a> {
    fn new(ledger: &'a Arc<Ledger>, append: bool) -> InFlight<'a> {
        InFlight {
            ledger,
            id: ledger.next_id(),
            append: append.then(|| ledger.open(|state| &mut state.appends_open)),
            sent: false,
            answered: false,
        }
    }

    fn sent(&mut self) {
        self.sent = true;
        if self.append.is_some() {
            let now = turmoil::sim_elapsed().unwrap_or_default();
            self.ledger.with(|state| state.last_append_sent = now);
        }
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        if self.append.is_some() && self.sent && !self.answered {
            self.ledger.abandoned(self.id);
        }
    }
}

/// Why a call got no reply.
enum NoReply {
    /// Before the request went out: the database cannot have acted on it.
    NotSent(String),
    /// After: it may have.
    Sent(String),
}

/// Idle connections an instance keeps, like a driver's pool.
const IDLE_MAX: usize = 8;

/// The instances' store: one request and one reply at a time on a
/// connection to the database host, connections reused like a driver's
/// pool. Build one per boot of an instance: its connections die with it.
pub struct RemoteStore {
    host: &'static str,
    timeout: Duration,
    ledger: Arc<Ledger>,
    idle: Mutex<Vec<TcpStream>>,
}

impl RemoteStore {
    /// `timeout` is like a driver's statement timeout: without it a lost
    /// message would leave the call hanging (turmoil TCP has no
    /// retransmission).
    pub fn new(host: &'static str, timeout: Duration, ledger: Arc<Ledger>) -> RemoteStore {
        RemoteStore {
            host,
            timeout,
            ledger,
            idle: Mutex::default(),
        }
    }

    /// A pooled connection, or a new one. A pooled connection may have died
    /// with a database restart: the call on it then fails like any call
    /// whose connection breaks (as with a real pool that does not test
    /// connections before use).
    async fn connection(&self) -> Result<TcpStream, String> {
        let pooled = self.idle.lock().unwrap_or_else(|p| p.into_inner()).pop();
        match pooled {
            Some(stream) => Ok(stream),
            None => TcpStream::connect((self.host, DB_PORT))
                .await
                .map_err(|e| format!("connect: {e}")),
        }
    }

    async fn exchange(&self, call: Call, in_flight: &mut InFlight<'_>) -> Result<Reply, String> {
        let mut stream = self.connection().await?;
        let request = Request {
            id: in_flight.id,
            call,
        };
        write_frame(&mut stream, &request).await?;
        in_flight.sent();
        let reply = read_frame(&mut stream).await?;
        in_flight.answered = true;
        // Only a connection that completed its exchange is clean enough to
        // reuse: one dropped mid-call may still get the old reply.
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        if idle.len() < IDLE_MAX {
            idle.push(stream);
        }
        Ok(reply)
    }

    async fn call(&self, call: Call, in_flight: &mut InFlight<'_>) -> Result<Reply, NoReply> {
        let result = tokio::time::timeout(self.timeout, self.exchange(call, in_flight)).await;
        let error = match result {
            Ok(Ok(reply)) => return Ok(reply),
            Ok(Err(error)) => error,
            Err(_) => format!("no reply within {} ms", self.timeout.as_millis()),
        };
        Err(if in_flight.sent {
            NoReply::Sent(error)
        } else {
            NoReply::NotSent(error)
        })
    }

    /// A read: whatever went wrong, nothing was changed.
    async fn read(&self, call: Call) -> Result<Reply, StoreError> {
        let mut in_flight = InFlight::new(&self.ledger, false);
        self.call(call, &mut in_flight).await.map_err(
            |(NoReply::NotSent(error) | NoReply::Sent(error))| {
                StoreError::Unavailable(format!("database: {error}"))
            },
        )
    }
}

fn unexpected(reply: &Reply) -> StoreError {
    StoreError::Corrupt(format!("the database answered out of turn: {reply:?}"))
}

#[async_trait]
impl EventStore for RemoteStore {
    async fn load(
        &self,
        account: AccountId,
        transaction: Option<TransactionId>,
    ) -> Result<Loaded, StoreError> {
        match self
            .read(Call::Load {
                account,
                transaction,
            })
            .await?
        {
            Reply::Loaded(result) => result,
            other => Err(unexpected(&other)),
        }
    }

    async fn load_at(&self, account: AccountId, at: PointInTime) -> Result<Loaded, StoreError> {
        match self.read(Call::LoadAt { account, at }).await? {
            Reply::Loaded(result) => result,
            other => Err(unexpected(&other)),
        }
    }

    async fn events(
        &self,
        account: AccountId,
        from: u64,
        limit: usize,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        let limit = u64::try_from(limit).unwrap_or(u64::MAX);
        match self
            .read(Call::Events {
                account,
                from,
                limit,
            })
            .await?
        {
            Reply::Events(result) => result,
            other => Err(unexpected(&other)),
        }
    }

    async fn feed(&self, after: u64, limit: usize) -> Result<Vec<FeedEvent>, StoreError> {
        let limit = u64::try_from(limit).unwrap_or(u64::MAX);
        match self.read(Call::Feed { after, limit }).await? {
            Reply::Feed(result) => result,
            other => Err(unexpected(&other)),
        }
    }

    async fn append_batch(&self, commits: &[Commit]) -> Vec<Result<(), AppendError>> {
        let mut in_flight = InFlight::new(&self.ledger, true);
        let call = Call::AppendBatch {
            commits: commits.to_vec(),
        };
        let error = match self.call(call, &mut in_flight).await {
            Ok(Reply::Appended(results)) if results.len() == commits.len() => return results,
            Ok(other) => AppendError::Store(unexpected(&other)),
            Err(NoReply::NotSent(error)) => {
                AppendError::Store(StoreError::Unavailable(format!("database: {error}")))
            }
            Err(NoReply::Sent(error)) => {
                AppendError::Ambiguous(format!("database: {error} after the commit was sent"))
            }
        };
        vec![Err(error); commits.len()]
    }

    async fn ping(&self) -> Result<(), StoreError> {
        match self.read(Call::Ping).await? {
            Reply::Pong(result) => result,
            other => Err(unexpected(&other)),
        }
    }
}

/// What the database host is given on every boot; all of it outlives the
/// host.
#[derive(Clone)]
pub struct Database {
    /// The durable data: acknowledged commits survive a crash of the host.
    pub data: Arc<dyn EventStore>,
    /// When the data is a primary with a standby: which connections still
    /// reach a primary that takes calls (see `replica`).
    pub cluster: Option<Arc<Cluster>>,
    pub faults: Arc<StoreFaults>,
    pub ledger: Arc<Ledger>,
    /// How long each append currently waits before it is applied, in ms:
    /// set by the world while a slow-commit fault is in force.
    pub commit_stall_ms: Arc<AtomicU64>,
}

impl Database {
    pub fn new(data: Arc<dyn EventStore>, faults: StoreFaults) -> Database {
        Database {
            data,
            cluster: None,
            faults: Arc::new(faults),
            ledger: Arc::default(),
            commit_stall_ms: Arc::default(),
        }
    }

    /// A database whose data is `cluster`, seen through `data` (the
    /// cluster, or a decorator around it).
    pub fn replicated(
        cluster: Arc<Cluster>,
        data: Arc<dyn EventStore>,
        faults: StoreFaults,
    ) -> Database {
        Database {
            cluster: Some(cluster),
            ..Database::new(data, faults)
        }
    }

    /// One boot of the database host: serves until it crashes.
    pub async fn serve(self) -> turmoil::Result {
        let listener = TcpListener::bind((Ipv4Addr::UNSPECIFIED, DB_PORT)).await?;
        loop {
            match listener.accept().await {
                Ok((stream, _)) => {
                    tokio::spawn(self.clone().connection(stream));
                }
                // The peer's problem: go on accepting.
                Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
            }
        }
    }

    /// The node a connection made now reaches, by its epoch (see
    /// `Cluster::epoch`).
    fn epoch(&self) -> u64 {
        self.cluster.as_ref().map_or(0, |cluster| cluster.epoch())
    }

    /// Whether a connection made in `epoch` still reaches a primary that
    /// takes calls.
    fn serves(&self, epoch: u64) -> bool {
        self.cluster
            .as_ref()
            .is_none_or(|cluster| cluster.serves(epoch))
    }

    /// Serves requests on one connection until the peer closes it, or until
    /// a fault kills it. A demoted node answers and then closes it, so that
    /// a pool does not keep handing out a connection that only refuses.
    async fn connection(self, mut stream: TcpStream) {
        let epoch = self.epoch();
        while let Ok(request) = read_frame::<Request>(&mut stream).await {
            // Dropped when the append is done with, or with the host.
            let _serving = matches!(request.call, Call::AppendBatch { .. })
                .then(|| self.ledger.open(|state| &mut state.appends_serving));
            let Some(reply) = self.handle(request, epoch).await else {
                return;
            };
            if write_frame(&mut stream, &reply).await.is_err() || !self.serves(epoch) {
                return;
            }
        }
    }

    /// The reply to one request; `None` when the connection dies instead.
    async fn handle(&self, request: Request, epoch: u64) -> Option<Reply> {
        let hits = self.faults.hits();
        // Half the latency on each side of the write: a caller's timeout can
        // fire before the commit lands (nothing written) or after (written,
        // the reply lost).
        sleep(hits.latency / 2).await;
        let reply = match request.call {
            Call::AppendBatch { commits } => self.append(request.id, commits, &hits, epoch).await?,
            call if hits.unavailable => refused(&call, self.faults.unavailable("read")),
            call if !self.serves(epoch) => refused(&call, self.read_only("read")),
            call => self.read(call).await,
        };
        sleep(hits.latency - hits.latency / 2).await;
        Some(reply)
    }

    /// A demoted or fenced primary's refusal: read-only, as SQLSTATE 25006,
    /// which the real stores answer as unavailable. Its reads are refused
    /// too: they would be stale.
    fn read_only(&self, call: &str) -> StoreError {
        self.faults
            .trace
            .log(|| format!("db: {call} refused: a demoted or fenced primary is read-only"));
        StoreError::Unavailable("the database is read-only (a demoted primary)".to_owned())
    }

    async fn append(
        &self,
        id: u64,
        commits: Vec<Commit>,
        hits: &Hits,
        epoch: u64,
    ) -> Option<Reply> {
        let refuse = |error: StoreError| Reply::Appended(vec![Err(error.into()); commits.len()]);
        if hits.unavailable {
            return Some(refuse(self.faults.unavailable("append")));
        }
        if hits.kill_before_commit {
            self.faults.trace.log(|| {
                format!(
                    "db: connection killed before COMMIT of {} (injected)",
                    describe(&commits)
                )
            });
            return None;
        }
        sleep(Duration::from_millis(
            self.commit_stall_ms.load(Ordering::Relaxed),
        ))
        .await;
        // Asked again after the stall: a failover may have begun meanwhile.
        if !self.serves(epoch) {
            return Some(refuse(self.read_only("append")));
        }
        let results = self.data.append_batch(&commits).await;
        self.landed(id, &commits, &results);
        if hits.kill_after_commit && results.iter().any(Result::is_ok) {
            self.faults.trace.log(|| {
                format!(
                    "db: connection killed after COMMIT of {} (injected)",
                    describe(&commits)
                )
            });
            return None;
        }
        Some(Reply::Appended(results))
    }

    async fn read(&self, call: Call) -> Reply {
        let data = &self.data;
        match call {
            Call::Load {
                account,
                transaction,
            } => Reply::Loaded(data.load(account, transaction).await),
            Call::LoadAt { account, at } => Reply::Loaded(data.load_at(account, at).await),
            Call::Events {
                account,
                from,
                limit,
            } => Reply::Events(data.events(account, from, usize_of(limit)).await),
            Call::Feed { after, limit } => Reply::Feed(data.feed(after, usize_of(limit)).await),
            Call::Ping => Reply::Pong(data.ping().await),
            Call::AppendBatch { .. } => unreachable!("appends are served by `append`"),
        }
    }

    fn landed(&self, id: u64, commits: &[Commit], results: &[Result<(), AppendError>]) {
        let trace = &self.faults.trace;
        trace.log(|| format!("db: append {} -> {results:?}", describe(commits)));
        if results.iter().any(Result::is_ok) && self.ledger.landed(id) {
            trace.log(|| {
                format!(
                    "db: zombie commit: {} landed after its caller gave up",
                    describe(commits)
                )
            });
        }
    }
}

/// A call answered with `error`, in the reply its kind expects.
fn refused(call: &Call, error: StoreError) -> Reply {
    match call {
        Call::Load { .. } | Call::LoadAt { .. } => Reply::Loaded(Err(error)),
        Call::Events { .. } => Reply::Events(Err(error)),
        Call::Feed { .. } => Reply::Feed(Err(error)),
        Call::AppendBatch { commits } => {
            Reply::Appended(vec![Err(AppendError::from(error)); commits.len()])
        }
        Call::Ping => Reply::Pong(Err(error)),
    }
}

fn usize_of(limit: u64) -> usize {
    usize::try_from(limit).unwrap_or(usize::MAX)
}

async fn sleep(duration: Duration) {
    if !duration.is_zero() {
        tokio::time::sleep(duration).await;
    }
}

/// Commits as the trace names them: each one's events, `account#sequence`.
fn describe(commits: &[Commit]) -> String {
    let events: Vec<String> = commits
        .iter()
        .map(|commit| {
            let events: Vec<String> = commit
                .events
                .iter()
                .map(|e| format!("{}#{}", short(&e.account_id), e.sequence_number))
                .collect();
            events.join(" ")
        })
        .collect();
    events.join(" | ")
}

/// The first 8 hex digits of an id, enough to tell a run's ids apart.
fn short(id: &impl std::fmt::Display) -> String {
    id.to_string().chars().take(8).collect()
}
