//! The command line of ../shared/API.md ("Running"): flags with environment
//! fallbacks. `--help` never prints environment values: the database URL
//! holds a password.

use std::net::SocketAddr;

use clap::{Args, Parser, Subcommand, ValueEnum};

#[derive(Debug, Parser)]
#[command(
    name = "accounts",
    version,
    about = "Event-sourced bank accounts over HTTP"
)]
#[command(args_conflicts_with_subcommands = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Subcommands>,
    #[command(flatten)]
    pub serve: ServeArgs,
}

#[derive(Debug, Subcommand)]
pub enum Subcommands {
    /// GET /ready of a running instance; exit 0 when it is ready, 1 otherwise
    /// (for container health checks, where the image has no HTTP client).
    Probe {
        /// Base URL of the instance.
        #[arg(default_value = "http://127.0.0.1:8080")]
        url: String,
        /// Give up after this many milliseconds.
        #[arg(long, default_value_t = 2000)]
        timeout_ms: u64,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// A count of at least one. Zero would not mean "no limit" but a broken
/// instance: no pool connection (a panic in the pool), no request served
/// (all shed with 503), or no connection ever accepted (a silent hang).
fn at_least_one(text: &str) -> Result<usize, String> {
    match text.parse::<usize>() {
        Ok(0) => Err("must be at least 1".to_owned()),
        Ok(value) => Ok(value),
        Err(error) => Err(error.to_string()),
    }
}

#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// Address to serve on (`127.0.0.1:0` picks a free port).
    #[arg(
        long,
        env = "ACCOUNTS_LISTEN",
        default_value = "0.0.0.0:8080",
        hide_env_values = true
    )]
    pub listen: SocketAddr,

    /// Event store: `memory:`, `sqlite:PATH` (created if missing),
    /// `postgres://…` or `mysql://…` (MariaDB too).
    #[arg(
        long,
        env = "DATABASE_URL",
        default_value = "memory:",
        hide_env_values = true
    )]
    pub database_url: String,

    /// Events between snapshots (0: never).
    #[arg(
        long,
        env = "ACCOUNTS_SNAPSHOT_EVERY",
        default_value_t = 50,
        hide_env_values = true
    )]
    pub snapshot_every: u64,

    /// Database pool size.
    #[arg(
        long,
        env = "ACCOUNTS_MAX_CONNECTIONS",
        default_value_t = 10,
        value_parser = clap::value_parser!(u32).range(1..),
        hide_env_values = true
    )]
    pub max_connections: u32,

    /// Log format; levels via RUST_LOG (default info).
    #[arg(long, env = "ACCOUNTS_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text, hide_env_values = true)]
    pub log_format: LogFormat,

    /// After SIGTERM/SIGINT, keep serving this long with /ready answering 503,
    /// so a load balancer's health check moves traffic away first.
    #[arg(
        long,
        env = "ACCOUNTS_DRAIN_DELAY_MS",
        default_value_t = 2000,
        hide_env_values = true
    )]
    pub drain_delay_ms: u64,

    /// Then give in-flight requests this long to finish.
    #[arg(
        long,
        env = "ACCOUNTS_SHUTDOWN_GRACE_MS",
        default_value_t = 10_000,
        hide_env_values = true
    )]
    pub shutdown_grace_ms: u64,

    /// A request not answered within this gets 408.
    #[arg(
        long,
        env = "ACCOUNTS_REQUEST_TIMEOUT_MS",
        default_value_t = 10_000,
        hide_env_values = true
    )]
    pub request_timeout_ms: u64,

    /// A connection whose request headers have not arrived within this is closed.
    #[arg(
        long,
        env = "ACCOUNTS_HEADER_READ_TIMEOUT_MS",
        default_value_t = 5_000,
        hide_env_values = true
    )]
    pub header_read_timeout_ms: u64,

    /// A store call that takes longer counts as the store being unavailable (503).
    #[arg(
        long,
        env = "ACCOUNTS_STORE_TIMEOUT_MS",
        default_value_t = 5_000,
        hide_env_values = true
    )]
    pub store_timeout_ms: u64,

    /// Requests in flight at once; more are shed with 503 and Retry-After.
    #[arg(
        long,
        env = "ACCOUNTS_CONCURRENCY_MAX",
        default_value_t = 1024,
        value_parser = at_least_one,
        hide_env_values = true
    )]
    pub concurrency_max: usize,

    /// Open client connections at once; more wait to be accepted.
    #[arg(
        long,
        env = "ACCOUNTS_CONNECTIONS_MAX",
        default_value_t = 4096,
        value_parser = at_least_one,
        hide_env_values = true
    )]
    pub connections_max: usize,

    /// Largest request body accepted (413 beyond); no operation takes a body.
    #[arg(long, env = "ACCOUNTS_BODY_BYTES_MAX", default_value_t = 16 * 1024, hide_env_values = true)]
    pub body_bytes_max: usize,

    /// Longest URL (path and query) accepted; longer ones get 414.
    #[arg(long, env = "ACCOUNTS_URL_BYTES_MAX", default_value_t = crate::http::URL_BYTES_MAX, hide_env_values = true)]
    pub url_bytes_max: usize,

    /// Largest request head (request line and headers); larger ones get 431
    /// and the connection is closed.
    #[arg(long, env = "ACCOUNTS_HEADER_BYTES_MAX", default_value_t = crate::http::HEADER_BYTES_MAX, hide_env_values = true)]
    pub header_bytes_max: usize,

    /// Reload-and-retry rounds after optimistic-concurrency conflicts before
    /// answering 409.
    #[arg(long, env = "ACCOUNTS_RETRIES_MAX", default_value_t = crate::engine::RETRIES_MAX, hide_env_values = true)]
    pub retries_max: u32,

    /// How long start-up waits for the database before giving up.
    #[arg(
        long,
        env = "ACCOUNTS_CONNECT_TIMEOUT_MS",
        default_value_t = 10_000,
        hide_env_values = true
    )]
    pub connect_timeout_ms: u64,

    /// How long a store call waits for a free database connection (and, on
    /// SQLite, for the write lock) before answering 503.
    #[arg(
        long,
        env = "ACCOUNTS_ACQUIRE_TIMEOUT_MS",
        default_value_t = 2_000,
        hide_env_values = true
    )]
    pub acquire_timeout_ms: u64,
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::Cli;

    #[test]
    fn pool_concurrency_and_connection_limits_of_zero_are_refused() {
        for flag in [
            "--max-connections",
            "--concurrency-max",
            "--connections-max",
        ] {
            let refused = Cli::try_parse_from(["accounts", flag, "0"]);
            assert!(refused.is_err(), "{flag} 0 must be refused");
            let accepted = Cli::try_parse_from(["accounts", flag, "1"]);
            assert!(accepted.is_ok(), "{flag} 1 is fine");
        }
    }
}
