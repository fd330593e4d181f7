//! Wiring: the one way to put an instance together ([`InstanceBuilder`]),
//! and from parsed flags to a serving instance ([`run`]), which is all
//! `main` calls.

use std::io::IsTerminal;
use std::sync::Arc;
use std::time::Duration;

use tracing_subscriber::EnvFilter;

use axum::Router;

use crate::auth::Verifier;
use crate::config::{LogFormat, ServeArgs};
use crate::engine::{Clock, Engine, EngineConfig, Entropy, SeededEntropy, StateCache, SystemClock};
use crate::http::{AppState, Authenticator, Limits, ServeConfig, router, serve};
use crate::metrics::Metrics;
use crate::store::{self, EventStore, MemoryStore};

pub fn init_logging(format: LogFormat) {
    // PostgreSQL's notices (e.g. "relation _sqlx_migrations already exists,
    // skipping" on every restart) are not news to an operator.
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("info,sqlx::postgres::notice=warn"));
    // Colours only on a terminal: container logs and files stay plain text.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().flatten_event(true).init(),
    }
}

/// Everything one instance of the service is made of, with a default for
/// each part: the in-memory store, the wall clock, entropy seeded from the
/// operating system, no authentication, and the `Default` of every config.
/// The binary, the tests, the simulation and the fuzz target all wire
/// instances through this one builder.
#[derive(Default)]
pub struct InstanceBuilder {
    store: Option<Arc<dyn EventStore>>,
    clock: Option<Arc<dyn Clock>>,
    entropy: Option<Arc<dyn Entropy>>,
    metrics: Option<Metrics>,
    verifier: Option<Arc<Verifier>>,
    cache: Option<Arc<dyn StateCache>>,
    engine_config: EngineConfig,
    limits: Limits,
    serve_config: ServeConfig,
}

impl InstanceBuilder {
    pub fn new() -> InstanceBuilder {
        InstanceBuilder::default()
    }

    pub fn store(mut self, store: Arc<dyn EventStore>) -> Self {
        self.store = Some(store);
        self
    }

    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = Some(clock);
        self
    }

    pub fn entropy(mut self, entropy: Arc<dyn Entropy>) -> Self {
        self.entropy = Some(entropy);
        self
    }

    /// Entropy from a fixed seed, so ids and retry jitter replay exactly.
    pub fn seed(self, seed: u64) -> Self {
        self.entropy(Arc::new(SeededEntropy::new(seed)))
    }

    /// The metrics to export (by default a fresh registry); pass a clone to
    /// read them from outside, or to share them across restarts.
    pub fn metrics(mut self, metrics: Metrics) -> Self {
        self.metrics = Some(metrics);
        self
    }

    /// Requires bearer tokens on `/api/…`, checked by `verifier` against the
    /// instance's clock; without this, authentication is off.
    pub fn auth(mut self, verifier: Verifier) -> Self {
        self.verifier = Some(Arc::new(verifier));
        self
    }

    pub fn engine_config(mut self, config: EngineConfig) -> Self {
        self.engine_config = config;
        self
    }

    /// The engine's state cache, instead of the LRU of
    /// `EngineConfig::cache_accounts` accounts.
    pub fn cache(mut self, cache: Arc<dyn StateCache>) -> Self {
        self.cache = Some(cache);
        self
    }

    pub fn limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    pub fn serve_config(mut self, config: ServeConfig) -> Self {
        self.serve_config = config;
        self
    }

    /// Wires the engine, the app state and the router.
    pub fn build(self) -> Instance {
        let (limits, serve_config) = (self.limits.clone(), self.serve_config.clone());
        let verifier = self.verifier.clone();
        let Wired {
            engine,
            entropy,
            clock,
            metrics,
        } = self.wire_engine();
        let authenticator = verifier.map(|verifier| Authenticator::new(verifier, clock));
        let state = AppState::new(engine, entropy, metrics, limits, authenticator);
        Instance {
            router: router(state.clone()),
            state,
            serve_config,
        }
    }

    /// Only the engine, for callers that drive it without HTTP (the store
    /// suites); wired exactly as [`InstanceBuilder::build`] wires it.
    pub fn build_engine(self) -> Engine {
        self.wire_engine().engine
    }

    fn wire_engine(self) -> Wired {
        let store = self.store.unwrap_or_else(|| Arc::new(MemoryStore::new()));
        let clock = self.clock.unwrap_or_else(|| Arc::new(SystemClock));
        let entropy = self
            .entropy
            .unwrap_or_else(|| Arc::new(SeededEntropy::from_os()));
        let metrics = self.metrics.unwrap_or_default();
        if let Some(histogram) = store.pool_acquire_seconds() {
            metrics.export_pool_acquire(histogram);
        }
        let mut engine = Engine::new(
            store,
            clock.clone(),
            entropy.clone(),
            self.engine_config,
            metrics.engine.clone(),
        );
        if let Some(cache) = self.cache {
            engine = engine.with_cache(cache);
        }
        Wired {
            engine,
            entropy,
            clock,
            metrics,
        }
    }
}

/// The engine and the parts the app state shares with it.
struct Wired {
    engine: Engine,
    entropy: Arc<dyn Entropy>,
    clock: Arc<dyn Clock>,
    metrics: Metrics,
}

/// A wired instance, ready to serve on any listener.
pub struct Instance {
    pub state: AppState,
    pub router: Router,
    pub serve_config: ServeConfig,
}

impl Instance {
    pub fn engine(&self) -> &Engine {
        self.state.engine()
    }

    /// Serves on `listener` (tokio TCP, turmoil TCP, …) until `shutdown`
    /// completes, then finishes in-flight requests within the grace period.
    pub async fn serve<L>(self, listener: L, shutdown: impl Future<Output = ()>)
    where
        L: axum::serve::Listener,
    {
        serve(listener, self.router, self.serve_config, shutdown).await
    }
}

/// Opens the store, binds the listener and serves until SIGINT/SIGTERM, then
/// drains. An error is one line for the operator.
pub async fn run(args: ServeArgs) -> Result<(), String> {
    // Before the store: a bad key stops start-up without touching the database.
    let verifier = args.auth.verifier().map_err(|e| e.to_string())?;
    args.protected_mode(verifier.is_some())?;
    let opened = store::open(&args.database_url, &args.store_options())
        .await
        .map_err(|e| e.to_string())?;
    if opened.durable {
        tracing::info!(store = %opened.description, "store opened");
    } else {
        tracing::warn!("in-memory store: data is lost on exit");
    }
    args.durability_guard(&opened.durability)?;
    if opened.durability.synchronous_standby == Some(false) {
        tracing::warn!(
            "the database acknowledges commits without a synchronous standby: a failover to \
             a standby may lose the last acknowledged commits"
        );
    }
    let synchronous_standby = opened.durability.synchronous_standby == Some(true);
    let mut builder = InstanceBuilder::new()
        .store(opened.store)
        .engine_config(args.engine_config())
        .limits(args.limits())
        .serve_config(args.serve_config());
    let algorithm = verifier.as_ref().map(Verifier::algorithm);
    if let Some(verifier) = verifier {
        builder = builder.auth(verifier);
    }
    let instance = builder.build();
    (instance.state.metrics().store_synchronous_standby).set(i64::from(synchronous_standby));
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", args.listen))?;
    let address = listener.local_addr().map_err(|e| e.to_string())?;
    tracing::info!("listening on {address}");
    match algorithm {
        Some(algorithm) => tracing::info!(
            ?algorithm,
            "authentication on: /api/ requests need a bearer token"
        ),
        None => tracing::info!("authentication off: /api/ requests need no token"),
    }
    let drain_delay = Duration::from_millis(args.drain_delay_ms);
    let shutdown = drain_on_signal(instance.state.clone(), drain_delay);
    instance.serve(listener, shutdown).await;
    tracing::info!("stopped");
    Ok(())
}

/// Completes `drain_delay` after the first SIGINT or SIGTERM; meanwhile
/// `/ready` answers 503 and requests are still served.
async fn drain_on_signal(state: AppState, drain_delay: Duration) {
    drain_after(shutdown_signal(), state, drain_delay).await
}

/// The shutdown future for [`serve`]: once `trigger` completes, `/ready`
/// answers 503 at once, and serving goes on for `drain_delay` so a load
/// balancer's health check moves traffic away before the listener closes.
pub async fn drain_after(
    trigger: impl Future<Output = ()>,
    state: AppState,
    drain_delay: Duration,
) {
    trigger.await;
    state.begin_drain();
    tracing::info!(
        drain_delay_ms = drain_delay.as_millis() as u64,
        "shutting down: draining"
    );
    tokio::time::sleep(drain_delay).await;
    tracing::info!("closing the listener; finishing in-flight requests");
}

async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut terminate =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                .expect("installing a SIGTERM handler cannot fail on unix");
        tokio::select! {
            _ = interrupt => {}
            _ = terminate.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = interrupt.await;
}
