//! Wiring: from parsed flags to a serving instance. `main` only calls this.

use std::io::IsTerminal;
use std::sync::Arc;
use std::time::Duration;

use tracing_subscriber::EnvFilter;

use crate::config::{LogFormat, ServeArgs};
use crate::engine::{Engine, EngineConfig, SeededEntropy, SystemClock};
use crate::http::{AppState, Limits, ServeConfig, router, serve};
use crate::metrics::Metrics;
use crate::store::{self, StoreOptions};

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

fn millis(value: u64) -> Duration {
    Duration::from_millis(value)
}

/// Opens the store, binds the listener and serves until SIGINT/SIGTERM, then
/// drains. An error is one line for the operator.
pub async fn run(args: ServeArgs) -> Result<(), String> {
    let options = StoreOptions {
        max_connections: args.max_connections,
        connect_timeout: millis(args.connect_timeout_ms),
        acquire_timeout: millis(args.acquire_timeout_ms),
    };
    let opened = store::open(&args.database_url, &options)
        .await
        .map_err(|e| e.to_string())?;
    if opened.durable {
        tracing::info!(store = %opened.description, "store opened");
    } else {
        tracing::warn!("in-memory store: data is lost on exit");
    }
    let metrics = Metrics::new();
    let engine = Engine::new(
        opened.store,
        Arc::new(SystemClock),
        Arc::new(SeededEntropy::from_os()),
        EngineConfig {
            snapshot_every: args.snapshot_every,
            retries_max: args.retries_max,
            store_timeout: millis(args.store_timeout_ms),
            ..EngineConfig::default()
        },
        metrics.engine.clone(),
    );
    let limits = Limits {
        body_bytes_max: args.body_bytes_max,
        request_timeout: millis(args.request_timeout_ms),
        concurrency_max: args.concurrency_max,
        url_bytes_max: args.url_bytes_max,
    };
    let state = AppState::new(engine, metrics, limits);
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", args.listen))?;
    let address = listener.local_addr().map_err(|e| e.to_string())?;
    tracing::info!("listening on {address}");
    let config = ServeConfig {
        header_read_timeout: millis(args.header_read_timeout_ms),
        header_bytes_max: args.header_bytes_max,
        connections_max: args.connections_max,
        date_header: true,
        shutdown_grace: millis(args.shutdown_grace_ms),
    };
    let drain_delay = millis(args.drain_delay_ms);
    serve(
        listener,
        router(state.clone()),
        config,
        drain_on_signal(state, drain_delay),
    )
    .await;
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
