//! An instance for a test, wired by the library's own `InstanceBuilder`
//! with deterministic inputs by default: a fixed clock at [`START`] that the
//! test moves, and entropy from a fixed seed. Call it in-process
//! ([`TestInstance::client`]) or serve it on a real loopback socket
//! ([`TestInstance::serve`]).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use accounts::app::InstanceBuilder;
use accounts::auth::{AuthConfig, Verifier};
use accounts::domain::Timestamp;
use accounts::engine::{Engine, EngineConfig, Entropy, FixedClock};
use accounts::http::{AppState, Limits, ServeConfig, serve};
use accounts::metrics::Metrics;
use accounts::store::EventStore;
use axum::Router;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::auth::{self, Tokens};
use crate::client::{Client, InProcess, Socket};
use crate::stores::{Instrumented, InstrumentedStore};

/// 2026-11-26T10:00:00.000Z: where every test instance's clock starts.
pub const START_MILLIS: i64 = 1_795_687_200_000;
pub const START: Timestamp = Timestamp::from_unix_millis(START_MILLIS);

/// The default entropy seed: generated ids and retry waits replay exactly.
pub const SEED: u64 = 7;

/// How long a served test instance lets in-flight requests finish when it
/// is stopped: a test that leaves connections open (slow or abusive
/// clients) must not wait the production grace of 10 s for them.
pub const SHUTDOWN_GRACE: Duration = Duration::from_millis(200);

/// Builds a [`TestInstance`]; every part has the default described in the
/// module documentation, or the library's own.
pub struct TestBuilder {
    builder: InstanceBuilder,
    clock: Arc<FixedClock>,
    metrics: Metrics,
    serve_config: ServeConfig,
    auth: Option<AuthConfig>,
}

impl Default for TestBuilder {
    fn default() -> Self {
        let clock = Arc::new(FixedClock::new(START));
        let metrics = Metrics::new();
        TestBuilder {
            builder: InstanceBuilder::new()
                .clock(clock.clone())
                .seed(SEED)
                .metrics(metrics.clone()),
            clock,
            metrics,
            serve_config: ServeConfig {
                shutdown_grace: SHUTDOWN_GRACE,
                ..ServeConfig::default()
            },
            auth: None,
        }
    }
}

impl TestBuilder {
    pub fn store(mut self, store: Arc<dyn EventStore>) -> Self {
        self.builder = self.builder.store(store);
        self
    }

    pub fn seed(mut self, seed: u64) -> Self {
        self.builder = self.builder.seed(seed);
        self
    }

    pub fn entropy(mut self, entropy: Arc<dyn Entropy>) -> Self {
        self.builder = self.builder.entropy(entropy);
        self
    }

    pub fn engine_config(mut self, config: EngineConfig) -> Self {
        self.builder = self.builder.engine_config(config);
        self
    }

    pub fn limits(mut self, limits: Limits) -> Self {
        self.builder = self.builder.limits(limits);
        self
    }

    pub fn serve_config(mut self, config: ServeConfig) -> Self {
        self.serve_config = config.clone();
        self.builder = self.builder.serve_config(config);
        self
    }

    /// Authentication on, as `config` says, judged by the test clock.
    pub fn auth(mut self, config: AuthConfig) -> Self {
        let verifier = Verifier::new(&config).expect("a usable auth configuration");
        self.builder = self.builder.auth(verifier);
        self.auth = Some(config);
        self
    }

    /// The fixed clock the instance will read, to set or move from outside
    /// (also for an engine from [`TestBuilder::build_engine`]).
    pub fn clock(&self) -> Arc<FixedClock> {
        self.clock.clone()
    }

    /// The metrics the instance will export, to read from outside.
    pub fn metrics(&self) -> Metrics {
        self.metrics.clone()
    }

    /// Builds over a fresh [`InstrumentedStore`] (over memory), returned
    /// too so the test can turn its knobs and read its counts.
    pub fn instrumented(self) -> (Instrumented, TestInstance) {
        let store = InstrumentedStore::new();
        (store.clone(), self.store(store).build())
    }

    pub fn build(self) -> TestInstance {
        let instance = self.builder.build();
        TestInstance {
            state: instance.state,
            router: instance.router,
            clock: self.clock,
            metrics: self.metrics,
            serve_config: self.serve_config,
            auth: self.auth,
        }
    }

    /// Only the engine, wired as [`TestBuilder::build`] wires it.
    pub fn build_engine(self) -> Engine {
        self.builder.build_engine()
    }
}

/// A wired instance: its state, router, clock and metrics.
pub struct TestInstance {
    pub state: AppState,
    pub router: Router,
    pub clock: Arc<FixedClock>,
    pub metrics: Metrics,
    serve_config: ServeConfig,
    auth: Option<AuthConfig>,
}

impl Default for TestInstance {
    fn default() -> Self {
        TestInstance::builder().build()
    }
}

impl TestInstance {
    pub fn builder() -> TestBuilder {
        TestBuilder::default()
    }

    /// An instance over the memory store, with every default.
    pub fn new() -> TestInstance {
        TestInstance::default()
    }

    /// An instance over a fresh [`InstrumentedStore`], otherwise with
    /// every default.
    pub fn instrumented() -> (Instrumented, TestInstance) {
        TestInstance::builder().instrumented()
    }

    /// An instance with authentication on (HS256 with [`auth::SECRET`])
    /// over the memory store, otherwise with every default.
    pub fn with_auth() -> TestInstance {
        TestInstance::builder().auth(auth::hs256()).build()
    }

    /// An instance over `store`, otherwise with every default.
    pub fn over(store: Arc<dyn EventStore>) -> TestInstance {
        TestInstance::builder().store(store).build()
    }

    pub fn engine(&self) -> &Engine {
        self.state.engine()
    }

    /// Tokens this instance accepts; fails the test if authentication is
    /// off.
    pub fn tokens(&self) -> Tokens {
        let config = self.auth.as_ref().expect("an instance with auth on");
        Tokens::for_config(config)
    }

    /// A client calling the router in-process.
    pub fn client(&self) -> Client<InProcess> {
        Client::new(InProcess::new(self.router.clone()))
    }

    /// Sets the clock `millis` after [`START`].
    pub fn set_clock(&self, millis: i64) {
        self.clock
            .set(Timestamp::from_unix_millis(START_MILLIS + millis));
    }

    /// Serves on a free loopback port until [`Served::stop`].
    pub async fn serve(&self) -> Served {
        let (stop, stopped) = oneshot::channel::<()>();
        let mut served = self
            .serve_until(async move {
                let _ = stopped.await;
            })
            .await;
        served.stop = Some(stop);
        served
    }

    /// Serves on a free loopback port until `shutdown` completes (e.g.
    /// `accounts::app::drain_after`), then finishes in-flight requests.
    pub async fn serve_until(&self, shutdown: impl Future<Output = ()> + Send + 'static) -> Served {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind a loopback port");
        self.serve_on(listener, shutdown)
    }

    /// Serves on `listener` (e.g. one whose socket options a test chose)
    /// until `shutdown` completes.
    pub fn serve_on(
        &self,
        listener: tokio::net::TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Served {
        let address = listener.local_addr().expect("a bound address");
        let task = tokio::spawn(serve(
            listener,
            self.router.clone(),
            self.serve_config.clone(),
            shutdown,
        ));
        Served {
            address,
            stop: None,
            task: Some(task),
        }
    }
}

/// A test instance serving on a loopback socket; the serve loop is aborted
/// if this is dropped without [`Served::stop`].
pub struct Served {
    pub address: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl Served {
    /// A client over real TCP to this server.
    pub fn client(&self) -> Client<Socket> {
        Client::new(Socket::at(self.address))
    }

    /// Stops accepting, lets in-flight requests finish and waits for the
    /// serve loop to return.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        self.finished().await;
    }

    /// Waits for the serve loop to return by itself (its shutdown future
    /// completed), failing the test if it panicked.
    pub async fn finished(mut self) {
        if let Some(task) = self.task.take() {
            task.await.expect("the serve loop does not panic");
        }
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        if let Some(task) = &self.task {
            task.abort();
        }
    }
}
