//! Opening a store from its URL: the scheme picks the backend, the options
//! size and bound its pool, and the URL is redacted wherever it is printed.
//! Kept apart from the contract in `store/mod.rs` because it is the one
//! place that knows every backend: the contract knows none. Opening also
//! reads what the database says about durability (`durability.rs`).

use std::sync::Arc;
use std::time::Duration;

use super::durability::{Durability, MysqlSettings, PostgresSettings};
use super::{EventStore, MemoryStore, MysqlStore, PostgresStore, SqliteStore};

/// Default database pool size: enough for a few hundred requests per
/// second at a few milliseconds each, small enough that several instances
/// fit within PostgreSQL's default of 100 connections.
pub const DB_POOL_SIZE: u32 = 10;

/// Default wait for the database at start-up: covers a database container
/// that starts alongside the service.
pub const CONNECT_TIMEOUT_MS: u64 = 10_000;

/// Default wait for a pooled connection: a pool exhausted for this long is
/// an overload better answered 503 than queued further.
pub const ACQUIRE_TIMEOUT_MS: u64 = 2_000;

/// How to reach a database store.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoreOptions {
    /// Connections of the database pool.
    pub pool_size: u32,
    /// How long start-up waits for the database to answer.
    pub connect_timeout: Duration,
    /// How long one store call waits for a pooled connection (and, on
    /// SQLite, for the write lock) before it counts as unavailable.
    pub acquire_timeout: Duration,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            pool_size: DB_POOL_SIZE,
            connect_timeout: Duration::from_millis(CONNECT_TIMEOUT_MS),
            acquire_timeout: Duration::from_millis(ACQUIRE_TIMEOUT_MS),
        }
    }
}

/// A store opened from a URL.
pub struct OpenedStore {
    pub store: Arc<dyn EventStore>,
    /// The URL without its password, for logs.
    pub description: String,
    pub durable: bool,
    /// What the database said about keeping acknowledged commits.
    pub durability: Durability,
}

/// A store URL that cannot be used, in one line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OpenError {
    #[error(
        "unsupported store URL scheme in {0:?}: use memory:, sqlite:PATH, postgres://… or mysql://…"
    )]
    UnknownScheme(String),
    #[error("invalid store URL {url:?}: {reason}")]
    Invalid { url: String, reason: String },
    #[error("cannot open store {url}: {reason}")]
    Unreachable { url: String, reason: String },
}

/// The URL with any password replaced by `***`, safe to log — also when
/// the URL is malformed, since that is when it gets printed (in the start-up
/// error). The credentials end at the *last* `@`: a password holding `/`, `?`
/// or `#` (which should have been percent-encoded) makes the URL unparseable,
/// and splitting at the first `/` would print it. Query parameters naming a
/// password (`?password=…`, which PostgreSQL accepts) are hidden too.
pub fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let rest = match rest.rsplit_once('@') {
        Some((credentials, host_and_path)) => {
            let user = credentials
                .split_once(':')
                .map_or(credentials, |(user, _)| user);
            format!("{user}:***@{host_and_path}")
        }
        None => rest.to_owned(),
    };
    format!("{scheme}://{}", redact_query_passwords(&rest))
}

/// `a=1&password=x&sslpassword=y` → `a=1&password=***&sslpassword=***`.
fn redact_query_passwords(text: &str) -> String {
    let Some((before, query)) = text.split_once('?') else {
        return text.to_owned();
    };
    let parameters: Vec<String> = query
        .split('&')
        .map(|parameter| match parameter.split_once('=') {
            Some((key, _)) if key.to_ascii_lowercase().contains("password") => {
                format!("{key}=***")
            }
            _ => parameter.to_owned(),
        })
        .collect();
    format!("{before}?{}", parameters.join("&"))
}

/// Opens the store a URL names, creating or migrating its schema. A URL
/// that cannot be parsed, a database that does not answer within
/// `connect_timeout` and an unknown scheme are one-line errors.
pub async fn open(url: &str, options: &StoreOptions) -> Result<OpenedStore, OpenError> {
    let scheme = url.split(':').next().unwrap_or_default();
    // The settings are read once the pool is up, on one of its connections:
    // what a role's or database's defaults make of them is what counts.
    let unreadable = |error: sqlx::Error| OpenError::Unreachable {
        url: redact(url),
        reason: format!("reading its durability settings: {error}"),
    };
    let (store, durable, durability): (Arc<dyn EventStore>, bool, Durability) = match scheme {
        "memory" => (Arc::new(MemoryStore::new()), false, Durability::default()),
        "sqlite" => {
            let store = SqliteStore::open(url, options).await?;
            let durable = !store.in_memory();
            (Arc::new(store), durable, Durability::default())
        }
        "postgres" | "postgresql" => {
            let store = PostgresStore::open(url, options).await?;
            let settings = PostgresSettings::read(store.pool()).await;
            let durability = settings.map_err(unreadable)?.judge();
            (Arc::new(store), true, durability)
        }
        "mysql" | "mariadb" => {
            let store = MysqlStore::open(url, options).await?;
            let settings = MysqlSettings::read(store.pool()).await;
            let durability = settings.map_err(unreadable)?.judge();
            (Arc::new(store), true, durability)
        }
        _ => return Err(OpenError::UnknownScheme(redact(url))),
    };
    Ok(OpenedStore {
        store,
        description: redact(url),
        durable,
        durability,
    })
}

#[cfg(test)]
mod tests {
    use super::redact;

    #[test]
    fn redact_hides_passwords_only() {
        assert_eq!(
            redact("postgres://u:secret@h:5432/db"),
            "postgres://u:***@h:5432/db"
        );
        assert_eq!(redact("mysql://root@h/db"), "mysql://root:***@h/db");
        assert_eq!(redact("postgres://h/db"), "postgres://h/db");
        assert_eq!(redact("sqlite:accounts.db"), "sqlite:accounts.db");
    }

    #[test]
    fn redact_hides_passwords_of_malformed_urls_and_in_the_query() {
        for (url, secret) in [
            ("postgres://u:sec/ret@h:5432/db", "sec/ret"),
            ("postgres://u:sec?ret@h/db", "sec?ret"),
            ("mysql://u:a@b@h/db", "a@b"),
            ("postgres://u:pw@h/db?application_name=x@y", "pw"),
            (
                "postgres://u@h/db?sslmode=disable&password=secret",
                "secret",
            ),
            ("postgres://h/db?PASSWORD=secret&user=u", "secret"),
        ] {
            let redacted = redact(url);
            assert!(!redacted.contains(secret), "{url} -> {redacted}");
            assert!(redacted.contains("***"), "{url} -> {redacted}");
        }
        assert_eq!(
            redact("postgres://u@h/db?sslmode=disable&password=secret"),
            "postgres://u:***@h/db?sslmode=disable&password=***"
        );
    }
}
