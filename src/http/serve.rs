//! The one serve loop, for production (tokio TCP) and the simulation (turmoil
//! TCP) alike: accept from any `axum::serve::Listener` and serve each
//! connection with hyper, which — unlike `axum::serve` — takes a timer for
//! header-read timeouts, and lets us bound connections and drain gracefully.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::sync::Semaphore;

/// The default of `ServeConfig::header_bytes_max`: room for an 8 KiB URL
/// (`Limits::url_bytes_max`, answered 414 with a JSON body) plus headers.
pub const HEADER_BYTES_MAX: usize = 32 * 1024;

/// Default of `ServeConfig::header_read_timeout`: any real client sends its
/// head in well under a second; a slowloris holds a connection at most this.
pub const HEADER_READ_TIMEOUT_MS: u64 = 5_000;

/// Default of `ServeConfig::connections_max`: well under a container's
/// usual file-descriptor limit (65536), far above what a load balancer keeps
/// open to one instance.
pub const HTTP_CONNECTIONS_MAX: usize = 4096;

/// Default of `ServeConfig::shutdown_grace`: the request timeout, so every
/// request in flight at shutdown can finish.
pub const SHUTDOWN_GRACE_MS: u64 = 10_000;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServeConfig {
    /// A client that has not sent its whole header by then is disconnected
    /// (slowloris defence).
    pub header_read_timeout: Duration,
    /// Largest request head (request line and headers) hyper reads; beyond
    /// it hyper answers 431 and closes. Without it, a client could make every
    /// connection buffer ~400 KB of header before anything looks at it.
    pub header_bytes_max: usize,
    /// Open connections at once; past it, accepting waits (the kernel's
    /// backlog queues, then refuses) instead of exhausting file descriptors.
    pub connections_max: usize,
    /// hyper's automatic `Date` header reads the real clock; the simulation
    /// turns it off to stay deterministic.
    pub date_header: bool,
    /// How long in-flight requests may take to finish after the listener has
    /// closed, before the remaining connections are dropped.
    pub shutdown_grace: Duration,
}

impl Default for ServeConfig {
    fn default() -> Self {
        ServeConfig {
            header_read_timeout: Duration::from_millis(HEADER_READ_TIMEOUT_MS),
            header_bytes_max: HEADER_BYTES_MAX,
            connections_max: HTTP_CONNECTIONS_MAX,
            date_header: true,
            shutdown_grace: Duration::from_millis(SHUTDOWN_GRACE_MS),
        }
    }
}

/// Serves `app` on `listener` until `shutdown` completes; then stops
/// accepting, lets in-flight requests finish (within the grace period) and
/// returns.
pub async fn serve<L>(
    mut listener: L,
    app: Router,
    config: ServeConfig,
    shutdown: impl Future<Output = ()>,
) where
    L: axum::serve::Listener,
{
    let graceful = GracefulShutdown::new();
    let connections = Arc::new(Semaphore::new(config.connections_max));
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            permit = connections.clone().acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => break,
            },
            () = &mut shutdown => break,
        };
        let io = tokio::select! {
            (io, _address) = listener.accept() => io,
            () = &mut shutdown => break,
        };
        let mut builder = http1::Builder::new();
        builder
            .timer(TokioTimer::new())
            .header_read_timeout(config.header_read_timeout)
            .max_header_size(config.header_bytes_max)
            .auto_date_header(config.date_header);
        let connection =
            builder.serve_connection(TokioIo::new(io), TowerToHyperService::new(app.clone()));
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            // Errors here are the client's (a reset, a malformed request):
            // hyper has already answered what it could.
            if let Err(error) = connection.await {
                tracing::debug!(%error, "connection ended with an error");
            }
            drop(permit);
        });
    }
    drop(listener);
    if tokio::time::timeout(config.shutdown_grace, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("connections still open after the shutdown grace period; dropping them");
    }
}
