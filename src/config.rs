//! The command line (README, "Configuration"): flags with environment
//! fallbacks. `--help` never prints environment values: the database URL
//! holds a password. Every default is a named constant of the module whose
//! `Default` it also is, so the CLI and the library cannot drift (a test
//! below checks it).

use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use clap::error::ErrorKind;
use clap::parser::ValueSource;
use clap::{ArgMatches, Args, CommandFactory, FromArgMatches, Parser, Subcommand, ValueEnum};

use jsonwebtoken::Algorithm;

use crate::auth::{self, AuthConfig, AuthSetupError, Secret, TokenSpec, Verifier, VerifyingKey};
use crate::domain::{OwnerId, Timestamp};
use crate::engine::{self, EngineConfig};
use crate::http::{self, Limits, ServeConfig};
use crate::store::{self, Durability, StoreOptions};

/// Default address: this machine only, the port containers conventionally
/// publish. Serving other interfaces is a choice the operator makes (with
/// authentication on, or `--allow-anonymous`): see [`ServeArgs::protected_mode`].
pub const LISTEN: &str = "127.0.0.1:8080";

/// Default store: in memory, so `cargo run` works on a fresh machine (and
/// says loudly that data is lost on exit).
pub const DATABASE_URL: &str = "memory:";

/// Default drain delay: two health-check intervals of a typical load
/// balancer (Envoy's here checks every second), so traffic has moved away
/// before the listener closes.
pub const DRAIN_DELAY_MS: u64 = 2_000;

/// Default instance `accounts probe` asks: the default address, seen from
/// the same machine or container.
pub const PROBE_URL: &str = "http://127.0.0.1:8080";

/// Default patience of `accounts probe`: below a container health check's
/// usual timeout, far above a healthy instance's answer.
pub const PROBE_TIMEOUT_MS: u64 = 2_000;

/// Renamed flags whose old environment variable is still read, as
/// (argument id, old variable). clap has no environment-variable aliases,
/// so [`Cli::try_parse_with`] reads these when neither a flag nor the new
/// variable gave a value. (The old flag names are clap aliases.)
pub const LEGACY_ENV: [(&str, &str); 2] = [
    ("db_pool_size", "ACCOUNTS_MAX_CONNECTIONS"),
    ("http_connections_max", "ACCOUNTS_CONNECTIONS_MAX"),
];

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
        #[arg(default_value = PROBE_URL)]
        url: String,
        /// Give up after this many milliseconds.
        #[arg(long, default_value_t = PROBE_TIMEOUT_MS)]
        timeout_ms: u64,
    },
    /// Print an HS256 bearer token signed with the secret the service
    /// verifies with (--auth-jwt-secret), for trying the service and tests.
    Token(TokenArgs),
    /// Print the feed (every committed event of every account, in commit
    /// order) as JSON lines and follow it live; reconnects by itself and
    /// resumes where it stopped, skipping nothing.
    Feed {
        /// Start after this feed position (0: from the first event).
        #[arg(long, value_name = "P", default_value_t = 0)]
        after: u64,
        /// A bearer token (an admin's), when the instance requires tokens.
        #[arg(
            long,
            env = "ACCOUNTS_TOKEN",
            value_name = "JWT",
            hide_env_values = true
        )]
        token: Option<String>,
        /// Base URL of the instance.
        #[arg(default_value = PROBE_URL)]
        url: String,
    },
}

/// `accounts token`: what the minted token says and what signs it.
#[derive(Debug, Clone, Args)]
pub struct TokenArgs {
    /// The token's subject: the ownerId it speaks for.
    #[arg(long, value_name = "UUID", value_parser = parse_owner)]
    pub sub: OwnerId,

    /// Add the `accounts:admin` scope: the token may do everything.
    #[arg(long)]
    pub admin: bool,

    /// How long the token is valid, e.g. `30m`, `1h`, `7d`.
    #[arg(long, value_name = "DURATION", default_value = auth::TOKEN_TTL, value_parser = parse_ttl)]
    pub ttl: Duration,

    /// The shared secret the service verifies with (at least 32 bytes).
    #[arg(
        long,
        env = "ACCOUNTS_AUTH_JWT_SECRET",
        value_name = "SECRET",
        hide_env_values = true
    )]
    pub auth_jwt_secret: Secret,

    /// Put this issuer in the token (`iss`), as the service requires it.
    #[arg(
        long,
        env = "ACCOUNTS_AUTH_ISSUER",
        value_name = "ISSUER",
        hide_env_values = true
    )]
    pub auth_issuer: Option<String>,

    /// Put this audience in the token (`aud`), as the service requires it.
    #[arg(
        long,
        env = "ACCOUNTS_AUTH_AUDIENCE",
        value_name = "AUDIENCE",
        hide_env_values = true
    )]
    pub auth_audience: Option<String>,
}

impl TokenArgs {
    /// The token, issued at `now`.
    pub fn mint(&self, now: Timestamp) -> Result<String, AuthSetupError> {
        let spec = TokenSpec {
            subject: self.sub,
            admin: self.admin,
            issued_at: now,
            ttl: self.ttl,
            issuer: self.auth_issuer.clone(),
            audience: self.auth_audience.clone(),
        };
        auth::mint(&self.auth_jwt_secret, &spec)
    }
}

fn parse_owner(text: &str) -> Result<OwnerId, String> {
    OwnerId::parse(text).map_err(|error| error.to_string())
}

fn parse_ttl(text: &str) -> Result<Duration, String> {
    match humantime::parse_duration(text) {
        Ok(ttl) if ttl.as_secs() == 0 => Err("must be at least one second".to_owned()),
        Ok(ttl) => Ok(ttl),
        Err(error) => Err(error.to_string()),
    }
}

fn parse_algorithm(text: &str) -> Result<Algorithm, String> {
    text.parse().map_err(|_| {
        "one of HS256, HS384, HS512, RS256, RS384, RS512, PS256, PS384, PS512, ES256, ES384, EdDSA"
            .to_owned()
    })
}

/// Authentication (README, "Authentication"): off unless a key is given.
/// No value here is ever printed: `--help` hides the environment's, and a
/// secret's `Debug` is a placeholder.
#[derive(Debug, Clone, Default, Args)]
pub struct AuthArgs {
    /// Require HS256 bearer tokens signed with this shared secret (at least
    /// 32 bytes) on /api/. Prefer the environment variable: a flag's value
    /// shows in the process list.
    #[arg(
        long,
        env = "ACCOUNTS_AUTH_JWT_SECRET",
        value_name = "SECRET",
        hide_env_values = true,
        conflicts_with = "auth_jwt_public_key"
    )]
    pub auth_jwt_secret: Option<Secret>,

    /// Require bearer tokens signed by the private half of this PEM public
    /// key on /api/: RSA (RS256), EC (ES256) or Ed25519 (EdDSA).
    #[arg(
        long,
        env = "ACCOUNTS_AUTH_JWT_PUBLIC_KEY",
        value_name = "PEM-FILE",
        hide_env_values = true
    )]
    pub auth_jwt_public_key: Option<PathBuf>,

    /// The one signature algorithm accepted (default: follows from the key;
    /// a token's own alg header never chooses it).
    #[arg(
        long,
        env = "ACCOUNTS_AUTH_JWT_ALGORITHM",
        value_name = "ALG",
        value_parser = parse_algorithm,
        hide_env_values = true
    )]
    pub auth_jwt_algorithm: Option<Algorithm>,

    /// Require this issuer (`iss`) in every token.
    #[arg(
        long,
        env = "ACCOUNTS_AUTH_ISSUER",
        value_name = "ISSUER",
        hide_env_values = true
    )]
    pub auth_issuer: Option<String>,

    /// Require this audience in every token's `aud`.
    #[arg(
        long,
        env = "ACCOUNTS_AUTH_AUDIENCE",
        value_name = "AUDIENCE",
        hide_env_values = true
    )]
    pub auth_audience: Option<String>,
}

impl AuthArgs {
    /// The configuration, `None` when authentication is off. Reads the
    /// public key file.
    pub fn config(&self) -> Result<Option<AuthConfig>, AuthSetupError> {
        let key = match (&self.auth_jwt_secret, &self.auth_jwt_public_key) {
            (Some(secret), _) => VerifyingKey::Secret(secret.clone()),
            (None, Some(path)) => {
                VerifyingKey::PublicKeyPem(std::fs::read(path).map_err(|error| {
                    AuthSetupError(format!(
                        "cannot read the JWT public key {}: {error}",
                        path.display()
                    ))
                })?)
            }
            (None, None) => return self.nothing_without_a_key().map(|()| None),
        };
        Ok(Some(AuthConfig {
            key,
            algorithm: self.auth_jwt_algorithm,
            issuer: self.auth_issuer.clone(),
            audience: self.auth_audience.clone(),
        }))
    }

    /// The verifier, `None` when authentication is off.
    pub fn verifier(&self) -> Result<Option<Verifier>, AuthSetupError> {
        self.config()?
            .map(|config| Verifier::new(&config))
            .transpose()
    }

    /// An issuer, audience or algorithm without a key would be silently
    /// ignored, leaving the API open while the operator believes it closed.
    fn nothing_without_a_key(&self) -> Result<(), AuthSetupError> {
        let given = [
            ("--auth-jwt-algorithm", self.auth_jwt_algorithm.is_some()),
            ("--auth-issuer", self.auth_issuer.is_some()),
            ("--auth-audience", self.auth_audience.is_some()),
        ];
        match given.iter().find(|(_, given)| *given) {
            Some((flag, _)) => Err(AuthSetupError(format!(
                "{flag} needs --auth-jwt-secret or --auth-jwt-public-key (authentication is off)"
            ))),
            None => Ok(()),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// A count of at least one. Zero would not mean "no limit" but a broken
/// instance: no pool connection (a panic in the pool), no request served
/// (all shed with 503), or no connection ever accepted (a silent hang).
fn at_least_one<T>(text: &str) -> Result<T, String>
where
    T: FromStr + PartialEq + From<u8>,
    T::Err: std::fmt::Display,
{
    match text.parse::<T>() {
        Ok(value) if value == T::from(0) => Err("must be at least 1".to_owned()),
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
        default_value = LISTEN,
        hide_env_values = true
    )]
    pub listen: SocketAddr,

    /// Event store: `memory:`, `sqlite:PATH` (created if missing),
    /// `postgres://…` or `mysql://…` (MariaDB too).
    #[arg(
        long,
        env = "DATABASE_URL",
        default_value = DATABASE_URL,
        hide_env_values = true
    )]
    pub database_url: String,

    /// Events between snapshots (0: never).
    #[arg(
        long,
        env = "ACCOUNTS_SNAPSHOT_EVERY",
        default_value_t = engine::SNAPSHOT_EVERY,
        hide_env_values = true
    )]
    pub snapshot_every: u64,

    /// Database connection pool size (formerly --max-connections /
    /// ACCOUNTS_MAX_CONNECTIONS, still accepted).
    #[arg(
        long,
        alias = "max-connections",
        env = "ACCOUNTS_DB_POOL_SIZE",
        default_value_t = store::DB_POOL_SIZE,
        value_parser = at_least_one::<u32>,
        hide_env_values = true
    )]
    pub db_pool_size: u32,

    /// Log format; levels via RUST_LOG (default info).
    #[arg(long, env = "ACCOUNTS_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text, hide_env_values = true)]
    pub log_format: LogFormat,

    /// After SIGTERM/SIGINT, keep serving this long with /ready answering 503,
    /// so a load balancer's health check moves traffic away first.
    #[arg(
        long,
        env = "ACCOUNTS_DRAIN_DELAY_MS",
        default_value_t = DRAIN_DELAY_MS,
        hide_env_values = true
    )]
    pub drain_delay_ms: u64,

    /// Then give in-flight requests this long to finish.
    #[arg(
        long,
        env = "ACCOUNTS_SHUTDOWN_GRACE_MS",
        default_value_t = http::SHUTDOWN_GRACE_MS,
        hide_env_values = true
    )]
    pub shutdown_grace_ms: u64,

    /// A request not answered within this gets 408.
    #[arg(
        long,
        env = "ACCOUNTS_REQUEST_TIMEOUT_MS",
        default_value_t = http::REQUEST_TIMEOUT_MS,
        hide_env_values = true
    )]
    pub request_timeout_ms: u64,

    /// A connection whose request headers have not arrived within this is closed.
    #[arg(
        long,
        env = "ACCOUNTS_HEADER_READ_TIMEOUT_MS",
        default_value_t = http::HEADER_READ_TIMEOUT_MS,
        hide_env_values = true
    )]
    pub header_read_timeout_ms: u64,

    /// A store call that takes longer counts as the store being unavailable (503).
    #[arg(
        long,
        env = "ACCOUNTS_STORE_TIMEOUT_MS",
        default_value_t = engine::STORE_TIMEOUT_MS,
        hide_env_values = true
    )]
    pub store_timeout_ms: u64,

    /// Requests in flight at once; more are shed with 503 and Retry-After.
    #[arg(
        long,
        env = "ACCOUNTS_CONCURRENCY_MAX",
        default_value_t = http::CONCURRENCY_MAX,
        value_parser = at_least_one::<usize>,
        hide_env_values = true
    )]
    pub concurrency_max: usize,

    /// Server-Sent Event streams (/api/events/stream) open at once; more
    /// are refused with 503 and Retry-After. Each holds a connection and a
    /// task for as long as its reader stays.
    #[arg(
        long,
        env = "ACCOUNTS_FEED_STREAMS_MAX",
        default_value_t = http::FEED_STREAMS_MAX,
        value_parser = at_least_one::<usize>,
        hide_env_values = true
    )]
    pub feed_streams_max: usize,

    /// Open HTTP client connections at once; more wait to be accepted
    /// (formerly --connections-max / ACCOUNTS_CONNECTIONS_MAX, still accepted).
    #[arg(
        long,
        alias = "connections-max",
        env = "ACCOUNTS_HTTP_CONNECTIONS_MAX",
        default_value_t = http::HTTP_CONNECTIONS_MAX,
        value_parser = at_least_one::<usize>,
        hide_env_values = true
    )]
    pub http_connections_max: usize,

    /// Largest request body accepted (413 beyond); no operation takes a body.
    #[arg(long, env = "ACCOUNTS_BODY_BYTES_MAX", default_value_t = http::BODY_BYTES_MAX, hide_env_values = true)]
    pub body_bytes_max: usize,

    /// Longest URL (path and query) accepted; longer ones get 414.
    #[arg(long, env = "ACCOUNTS_URL_BYTES_MAX", default_value_t = http::URL_BYTES_MAX, hide_env_values = true)]
    pub url_bytes_max: usize,

    /// Largest request head (request line and headers); larger ones get 431
    /// and the connection is closed.
    #[arg(long, env = "ACCOUNTS_HEADER_BYTES_MAX", default_value_t = http::HEADER_BYTES_MAX, hide_env_values = true)]
    pub header_bytes_max: usize,

    /// Reload-and-retry rounds after optimistic-concurrency conflicts before
    /// answering 409.
    #[arg(long, env = "ACCOUNTS_RETRIES_MAX", default_value_t = engine::RETRIES_MAX, hide_env_values = true)]
    pub retries_max: u32,

    /// Accounts whose latest state the instance keeps in memory, so that a
    /// command on one skips the load (0: none). The store stays the only
    /// authority: a command decided on a stale entry is refused by it and
    /// decided again on a load.
    #[arg(
        long,
        env = "ACCOUNTS_CACHE_ACCOUNTS",
        default_value_t = engine::CACHE_ACCOUNTS,
        hide_env_values = true
    )]
    pub cache_accounts: usize,

    /// How long start-up waits for the database before giving up.
    #[arg(
        long,
        env = "ACCOUNTS_CONNECT_TIMEOUT_MS",
        default_value_t = store::CONNECT_TIMEOUT_MS,
        hide_env_values = true
    )]
    pub connect_timeout_ms: u64,

    /// How long a store call waits for a free database connection (and, on
    /// SQLite, for the write lock) before answering 503.
    #[arg(
        long,
        env = "ACCOUNTS_ACQUIRE_TIMEOUT_MS",
        default_value_t = store::ACQUIRE_TIMEOUT_MS,
        hide_env_values = true
    )]
    pub acquire_timeout_ms: u64,

    #[command(flatten)]
    pub auth: AuthArgs,

    /// Serve an address other than loopback with authentication off:
    /// anyone who reaches it may move any account's money. Without this
    /// (or authentication), start-up refuses such an address.
    #[arg(
        long,
        env = "ACCOUNTS_ALLOW_ANONYMOUS",
        value_parser = clap::builder::BoolishValueParser::new(),
        action = clap::ArgAction::SetTrue,
        hide_env_values = true
    )]
    pub allow_anonymous: bool,

    /// Start although the database can lose commits it acknowledges
    /// (`fsync=off`, `synchronous_commit=off|local`, `full_page_writes=off`,
    /// `innodb_flush_log_at_trx_commit≠1`, `sync_binlog≠1` with the binary
    /// log on). Without this, start-up refuses such a database.
    #[arg(
        long,
        env = "ACCOUNTS_ALLOW_UNSAFE_DURABILITY",
        value_parser = clap::builder::BoolishValueParser::new(),
        action = clap::ArgAction::SetTrue,
        hide_env_values = true
    )]
    pub allow_unsafe_durability: bool,
}

impl Cli {
    /// Parses the process's arguments and environment like `Cli::parse`,
    /// plus the old environment variables of renamed flags ([`LEGACY_ENV`]);
    /// exits with clap's message on an error.
    pub fn parse_with_legacy_env() -> Cli {
        Cli::try_parse_with(std::env::args_os(), |name| std::env::var_os(name))
            .unwrap_or_else(|error| error.exit())
    }

    /// [`Cli::parse_with_legacy_env`] over given arguments, with `legacy_env`
    /// looking up the old variables (the new ones clap reads itself).
    pub fn try_parse_with<I, T>(
        args: I,
        legacy_env: impl Fn(&str) -> Option<OsString>,
    ) -> Result<Cli, clap::Error>
    where
        I: IntoIterator<Item = T>,
        T: Into<OsString> + Clone,
    {
        let matches = Cli::command().try_get_matches_from(args)?;
        let mut cli = Cli::from_arg_matches(&matches)?;
        cli.serve.apply_legacy_env(&matches, legacy_env)?;
        Ok(cli)
    }
}

impl ServeArgs {
    /// An old variable counts only where the value is still the default:
    /// a flag or the new variable wins.
    fn apply_legacy_env(
        &mut self,
        matches: &ArgMatches,
        legacy_env: impl Fn(&str) -> Option<OsString>,
    ) -> Result<(), clap::Error> {
        for (id, variable) in LEGACY_ENV {
            if matches.value_source(id) != Some(ValueSource::DefaultValue) {
                continue;
            }
            let Some(value) = legacy_env(variable) else {
                continue;
            };
            let text = value.to_str().unwrap_or_default();
            let invalid = |reason: String| {
                clap::Error::raw(
                    ErrorKind::ValueValidation,
                    format!("invalid value {text:?} for {variable}: {reason}\n"),
                )
            };
            match id {
                "db_pool_size" => self.db_pool_size = at_least_one(text).map_err(invalid)?,
                _ => self.http_connections_max = at_least_one(text).map_err(invalid)?,
            }
        }
        Ok(())
    }

    /// Protected mode: with authentication off, only a loopback address is
    /// served unless the operator accepted anonymous access explicitly — a
    /// careless deployment must not be an open bank. One line, for the
    /// operator, naming what to change.
    pub fn protected_mode(&self, authentication_on: bool) -> Result<(), String> {
        if authentication_on || self.allow_anonymous || self.listen.ip().is_loopback() {
            return Ok(());
        }
        Err(format!(
            "refusing to serve {} with authentication off: anyone who reaches it could move any \
             account's money; turn authentication on (--auth-jwt-secret or --auth-jwt-public-key), \
             listen on a loopback address, or pass --allow-anonymous (ACCOUNTS_ALLOW_ANONYMOUS=true) \
             to accept it",
            self.listen
        ))
    }

    /// The durability guard: a database that can lose acknowledged commits
    /// stops start-up (one line, naming the setting) unless the operator
    /// accepted it; accepted, each such setting is still logged.
    pub fn durability_guard(&self, durability: &Durability) -> Result<(), String> {
        let Some(refusal) = durability.refusal() else {
            return Ok(());
        };
        if !self.allow_unsafe_durability {
            return Err(refusal);
        }
        for setting in &durability.unsafe_settings {
            tracing::warn!(%setting, "accepted (--allow-unsafe-durability): acknowledged commits may be lost");
        }
        Ok(())
    }

    pub fn store_options(&self) -> StoreOptions {
        StoreOptions {
            pool_size: self.db_pool_size,
            connect_timeout: Duration::from_millis(self.connect_timeout_ms),
            acquire_timeout: Duration::from_millis(self.acquire_timeout_ms),
        }
    }

    pub fn engine_config(&self) -> EngineConfig {
        EngineConfig {
            snapshot_every: self.snapshot_every,
            retries_max: self.retries_max,
            store_timeout: Duration::from_millis(self.store_timeout_ms),
            cache_accounts: self.cache_accounts,
            ..EngineConfig::default()
        }
    }

    pub fn limits(&self) -> Limits {
        Limits {
            body_bytes_max: self.body_bytes_max,
            request_timeout: Duration::from_millis(self.request_timeout_ms),
            concurrency_max: self.concurrency_max,
            url_bytes_max: self.url_bytes_max,
            feed_streams_max: self.feed_streams_max,
        }
    }

    pub fn serve_config(&self) -> ServeConfig {
        ServeConfig {
            header_read_timeout: Duration::from_millis(self.header_read_timeout_ms),
            header_bytes_max: self.header_bytes_max,
            connections_max: self.http_connections_max,
            date_header: true,
            shutdown_grace: Duration::from_millis(self.shutdown_grace_ms),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::ffi::OsString;

    use clap::{CommandFactory, FromArgMatches};

    use super::*;

    /// Parses `args` with no environment at all (the test process's own
    /// variables must not leak in), old variables from `legacy`.
    fn parse(args: &[&str], legacy: &[(&str, &str)]) -> Result<ServeArgs, clap::Error> {
        let command = Cli::command().mut_args(|arg| arg.env(None));
        let matches = command.try_get_matches_from(args)?;
        let mut cli = Cli::from_arg_matches(&matches)?;
        let lookup = |name: &str| {
            legacy
                .iter()
                .find(|(variable, _)| *variable == name)
                .map(|(_, value)| OsString::from(value))
        };
        cli.serve.apply_legacy_env(&matches, lookup)?;
        Ok(cli.serve)
    }

    #[test]
    fn the_defaults_of_the_command_line_are_the_constants_and_default_impls() {
        let args = parse(&["accounts"], &[]).unwrap();
        assert_eq!(args.store_options(), StoreOptions::default());
        assert_eq!(args.engine_config(), EngineConfig::default());
        assert_eq!(args.limits(), Limits::default());
        assert_eq!(args.serve_config(), ServeConfig::default());
        // Destructured, so a new flag fails to compile here until it is checked.
        let ServeArgs {
            listen,
            database_url,
            snapshot_every,
            db_pool_size,
            log_format,
            drain_delay_ms,
            shutdown_grace_ms,
            request_timeout_ms,
            header_read_timeout_ms,
            store_timeout_ms,
            concurrency_max,
            http_connections_max,
            body_bytes_max,
            url_bytes_max,
            header_bytes_max,
            retries_max,
            cache_accounts,
            connect_timeout_ms,
            acquire_timeout_ms,
            feed_streams_max,
            auth,
            allow_anonymous,
            allow_unsafe_durability,
        } = args;
        assert_eq!(listen, LISTEN.parse().unwrap());
        assert_eq!(database_url, DATABASE_URL);
        assert_eq!(snapshot_every, engine::SNAPSHOT_EVERY);
        assert_eq!(db_pool_size, store::DB_POOL_SIZE);
        assert_eq!(log_format, LogFormat::Text);
        assert_eq!(drain_delay_ms, DRAIN_DELAY_MS);
        assert_eq!(shutdown_grace_ms, http::SHUTDOWN_GRACE_MS);
        assert_eq!(request_timeout_ms, http::REQUEST_TIMEOUT_MS);
        assert_eq!(header_read_timeout_ms, http::HEADER_READ_TIMEOUT_MS);
        assert_eq!(store_timeout_ms, engine::STORE_TIMEOUT_MS);
        assert_eq!(concurrency_max, http::CONCURRENCY_MAX);
        assert_eq!(http_connections_max, http::HTTP_CONNECTIONS_MAX);
        assert_eq!(body_bytes_max, http::BODY_BYTES_MAX);
        assert_eq!(url_bytes_max, http::URL_BYTES_MAX);
        assert_eq!(header_bytes_max, http::HEADER_BYTES_MAX);
        assert_eq!(retries_max, engine::RETRIES_MAX);
        assert_eq!(cache_accounts, engine::CACHE_ACCOUNTS);
        assert_eq!(connect_timeout_ms, store::CONNECT_TIMEOUT_MS);
        assert_eq!(acquire_timeout_ms, store::ACQUIRE_TIMEOUT_MS);
        assert_eq!(auth.config(), Ok(None), "authentication is off by default");
        assert_eq!(feed_streams_max, http::FEED_STREAMS_MAX);
        assert!(
            !allow_anonymous,
            "anonymous access is not accepted by default"
        );
        assert!(
            listen.ip().is_loopback(),
            "the default serves this machine only"
        );
        assert!(
            !allow_unsafe_durability,
            "a database that can lose commits is refused by default"
        );
    }

    #[test]
    fn the_durability_guard_refuses_unless_accepted() {
        let unsafe_database = Durability {
            unsafe_settings: vec![store::durability::UnsafeSetting {
                setting: "fsync",
                value: "off".to_owned(),
                why: "test",
            }],
            synchronous_standby: Some(false),
        };
        let strict = parse(&["accounts"], &[]).unwrap();
        let refused = strict.durability_guard(&unsafe_database).unwrap_err();
        assert!(refused.contains("fsync=off"), "{refused}");
        assert_eq!(strict.durability_guard(&Durability::default()), Ok(()));
        let flag = parse(&["accounts", "--allow-unsafe-durability"], &[]).unwrap();
        assert_eq!(flag.durability_guard(&unsafe_database), Ok(()));
    }

    #[test]
    fn protected_mode_refuses_other_interfaces_without_authentication() {
        let wide = parse(&["accounts", "--listen", "0.0.0.0:8080"], &[]).unwrap();
        let refused = wide.protected_mode(false).unwrap_err();
        assert!(
            refused.starts_with("refusing to serve 0.0.0.0:8080 with authentication off"),
            "{refused}"
        );
        assert!(refused.contains("--allow-anonymous (ACCOUNTS_ALLOW_ANONYMOUS=true)"));
        assert!(!refused.contains('\n'), "one line: {refused}");
        assert_eq!(wide.protected_mode(true), Ok(()), "authentication on");
        for listen in ["127.0.0.1:0", "[::1]:8080", "127.1.2.3:80"] {
            let local = parse(&["accounts", "--listen", listen], &[]).unwrap();
            assert_eq!(local.protected_mode(false), Ok(()), "{listen}");
        }
        for listen in ["[::]:8080", "192.168.1.5:8080"] {
            let args = parse(&["accounts", "--listen", listen], &[]).unwrap();
            assert!(args.protected_mode(false).is_err(), "{listen}");
        }
        let allowed = parse(
            &["accounts", "--listen", "0.0.0.0:8080", "--allow-anonymous"],
            &[],
        )
        .unwrap();
        assert_eq!(allowed.protected_mode(false), Ok(()));
    }

    #[test]
    fn the_probe_defaults_are_the_constants() {
        let cli = Cli::try_parse_with(["accounts", "probe"], |_| None).unwrap();
        match cli.command {
            Some(Subcommands::Probe { url, timeout_ms }) => {
                assert_eq!((url.as_str(), timeout_ms), (PROBE_URL, PROBE_TIMEOUT_MS));
            }
            _ => panic!("probe is a subcommand"),
        }
    }

    #[test]
    fn pool_concurrency_and_connection_limits_of_zero_are_refused() {
        for flag in [
            "--db-pool-size",
            "--max-connections",
            "--concurrency-max",
            "--http-connections-max",
            "--connections-max",
        ] {
            assert!(parse(&["accounts", flag, "0"], &[]).is_err(), "{flag} 0");
            assert!(parse(&["accounts", flag, "1"], &[]).is_ok(), "{flag} 1");
        }
    }

    #[test]
    fn the_old_names_of_the_connection_limits_still_work() {
        let args = parse(
            &[
                "accounts",
                "--max-connections",
                "3",
                "--connections-max",
                "4",
            ],
            &[],
        )
        .unwrap();
        assert_eq!((args.db_pool_size, args.http_connections_max), (3, 4));
        let legacy = [
            ("ACCOUNTS_MAX_CONNECTIONS", "5"),
            ("ACCOUNTS_CONNECTIONS_MAX", "6"),
        ];
        let args = parse(&["accounts"], &legacy).unwrap();
        assert_eq!((args.db_pool_size, args.http_connections_max), (5, 6));
        // A flag (old or new name) wins over an old variable.
        let args = parse(
            &["accounts", "--db-pool-size", "7", "--connections-max", "8"],
            &legacy,
        )
        .unwrap();
        assert_eq!((args.db_pool_size, args.http_connections_max), (7, 8));
        let zero = parse(&["accounts"], &[("ACCOUNTS_MAX_CONNECTIONS", "0")]).unwrap_err();
        assert!(
            zero.to_string().contains("ACCOUNTS_MAX_CONNECTIONS"),
            "{zero}"
        );
    }
}
