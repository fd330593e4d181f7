//! The connection pool of a SQL store: opening it (the first connection
//! awaited so that start-up reports the database's own error, then the
//! schema migrated), the settings every store shares, and [`Pooled`], the
//! pool with what every use of it shares (the wait measured, a dead
//! connection read past, a connection to a server that refuses writes
//! closed).

use std::time::{Duration, Instant};

use prometheus::{HistogramOpts, HistogramVec};
use sqlx::migrate::{Migrate, Migrator};
use sqlx::pool::{PoolConnection, PoolConnectionMetadata, PoolOptions};
use sqlx::{ConnectOptions, Connection, Database, Pool};

use super::errors::{connection_lost, not_writable};
use crate::store::{OpenError, PoolStatus, StoreOptions};

/// Waits until the database accepts a connection, retrying until
/// `connect_timeout` passes; the error is the last one seen (e.g.
/// "connection refused"), for a one-line start-up message. A direct
/// connection rather than the pool's, whose own retries hide the cause.
pub(in crate::store) async fn first_connection<C: sqlx::Connection>(
    options: &<C as sqlx::Connection>::Options,
    connect_timeout: Duration,
) -> Result<(), String> {
    let deadline = tokio::time::Instant::now() + connect_timeout;
    let mut last_error = None;
    loop {
        let remaining = deadline.saturating_duration_since(tokio::time::Instant::now());
        if remaining.is_zero() {
            break;
        }
        match tokio::time::timeout(remaining, C::connect_with(options)).await {
            Ok(Ok(connection)) => {
                let _ = connection.close().await;
                return Ok(());
            }
            Ok(Err(error)) if retryable_at_start(&error) => last_error = Some(error.to_string()),
            Ok(Err(error)) => return Err(error.to_string()),
            Err(_) => break,
        }
        tokio::time::sleep(Duration::from_millis(100).min(remaining)).await;
    }
    Err(format!(
        "no connection within {} ms{}",
        connect_timeout.as_millis(),
        last_error.map_or_else(String::new, |e| format!(" ({e})"))
    ))
}

/// Errors worth waiting out at start-up (the database still starting);
/// a wrong password or an unknown database is not.
fn retryable_at_start(error: &sqlx::Error) -> bool {
    matches!(
        error,
        sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut | sqlx::Error::Tls(_)
    )
}

/// A pooled connection idle for longer than this is pinged before it is
/// handed out; a younger one is used as it is. One second is far longer
/// than a busy pool leaves a connection idle (so the hot path costs no extra
/// round trip, where pinging on every acquire cost one per store call), and
/// short enough that a pool that sat idle through a database restart finds
/// out on its first acquire rather than on a request. A connection that died
/// less than a second ago is caught where it fails: reads, and appends that
/// cannot have committed, are retried once on a checked connection
/// ([`Pooled::read`], [`super::TransactionWrite::write_in_transaction`]).
pub(in crate::store) const PING_IDLE_AFTER: Duration = Duration::from_secs(1);

/// The pool settings every SQL store shares.
pub(in crate::store) fn pool_options<DB: sqlx::Database>(
    options: &StoreOptions,
) -> PoolOptions<DB> {
    PoolOptions::new()
        .max_connections(options.pool_size)
        .acquire_timeout(options.acquire_timeout)
        .test_before_acquire(false)
        .before_acquire(
            |connection: &mut DB::Connection, metadata: PoolConnectionMetadata| {
                Box::pin(async move {
                    if metadata.idle_for >= PING_IDLE_AFTER {
                        connection.ping().await?;
                    }
                    Ok(true)
                })
            },
        )
}

/// What a pooled connection is taken for, the label of the pool wait
/// histogram.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(in crate::store) enum Use {
    Read,
    Write,
}

impl Use {
    fn label(self) -> &'static str {
        match self {
            Use::Read => "read",
            Use::Write => "write",
        }
    }
}

/// A SQL store's connection pool with what every use of it shares: the
/// wait for a connection is measured, and a read that finds its connection
/// dead is tried once more on one known to answer.
pub(in crate::store) struct Pooled<DB: Database> {
    pool: Pool<DB>,
    acquire_seconds: HistogramVec,
}

impl<DB: Database> Pooled<DB> {
    pub fn new(pool: Pool<DB>) -> Pooled<DB> {
        Pooled {
            pool,
            acquire_seconds: acquire_histogram(),
        }
    }

    pub fn pool(&self) -> &Pool<DB> {
        &self.pool
    }

    /// The pool wait histogram, for the owner of a registry to export.
    pub fn acquire_seconds(&self) -> HistogramVec {
        self.acquire_seconds.clone()
    }

    /// A connection from the pool, its wait measured (also a wait that
    /// ends in a timeout: that is the wait an overloaded pool imposes).
    pub async fn acquire(&self, purpose: Use) -> Result<PoolConnection<DB>, sqlx::Error> {
        let started = Instant::now();
        let connection = self.pool.acquire().await;
        self.acquire_seconds
            .with_label_values(&[purpose.label()])
            .observe(started.elapsed().as_secs_f64());
        connection
    }

    /// A connection that has just answered a ping. After one connection
    /// was found dead, its idle neighbours likely died with it (a database
    /// restart, an administrator killing every session), so each is tried
    /// in turn — a dead one is dropped, which closes it — until one answers
    /// or the pool has opened a new one.
    pub async fn acquire_checked(&self, purpose: Use) -> Result<PoolConnection<DB>, sqlx::Error> {
        let mut attempts = self.pool.options().get_max_connections() + 1;
        loop {
            let mut connection = self.acquire(purpose).await?;
            match connection.ping().await {
                Ok(()) => return Ok(connection),
                Err(error) if attempts <= 1 || !connection_lost(&error) => return Err(error),
                Err(_) => {
                    connection.close_on_drop();
                    attempts -= 1;
                }
            }
        }
    }

    /// After `error` on `connection`: if the server refuses writes, the
    /// connection is closed instead of pooled again — the pool's ping on
    /// release succeeds on a read-only server, so it would stay — and so is
    /// every idle connection, which most likely leads to the same server.
    /// New connections go wherever the address leads now (behind a proxy
    /// that follows the leader: the new primary).
    pub fn discard_if_not_writable(
        &self,
        connection: &mut PoolConnection<DB>,
        error: &sqlx::Error,
    ) {
        if !not_writable(error) {
            return;
        }
        connection.close_on_drop();
        self.close_idle();
    }

    /// Closes every idle connection (new ones are opened on demand).
    pub fn close_idle(&self) {
        for _ in 0..self.pool.num_idle() {
            match self.pool.try_acquire() {
                Some(mut idle) => idle.close_on_drop(),
                None => break,
            }
        }
    }

    /// Runs a read on a pooled connection; if the connection turns out to
    /// be dead (see [`connection_lost`]), once more on a checked one — a
    /// read changes nothing, so running it twice is harmless.
    pub async fn read<T, Fut>(
        &self,
        run: impl Fn(PoolConnection<DB>) -> Fut,
    ) -> Result<T, sqlx::Error>
    where
        Fut: Future<Output = Result<T, sqlx::Error>>,
    {
        let connection = self.acquire(Use::Read).await?;
        match run(connection).await {
            Err(error) if connection_lost(&error) => {
                tracing::debug!(%error, "a pooled connection was dead; reading again");
                run(self.acquire_checked(Use::Read).await?).await
            }
            result => result,
        }
    }
}

/// `accounts_db_pool_acquire_seconds`: one per store, registered by the app
/// that serves it (see `Metrics::export_pool_acquire`).
fn acquire_histogram() -> HistogramVec {
    HistogramVec::new(
        HistogramOpts::new(
            "accounts_db_pool_acquire_seconds",
            "Time a store call waited for a pooled database connection, by use (read or write).",
        )
        .buckets(vec![
            0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
            0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
        ]),
        &["use"],
    )
    .expect("valid metric")
}

/// Parses a database URL into the backend's connection options.
pub(in crate::store) fn connect_options<Options: ConnectOptions>(
    url: &str,
) -> Result<Options, OpenError> {
    Options::from_str(url).map_err(|error| OpenError::Invalid {
        url: crate::store::redact(url),
        reason: error.to_string(),
    })
}

/// Opens a lazy pool with `pool_options` (usually [`pool_options`]'s),
/// waits for the first connection (so start-up reports the database's own
/// error) and brings the schema up to date.
pub(in crate::store) async fn open_pool<DB>(
    url: &str,
    connect: <DB::Connection as sqlx::Connection>::Options,
    pool_options: PoolOptions<DB>,
    options: &StoreOptions,
    migrator: &Migrator,
) -> Result<Pool<DB>, OpenError>
where
    DB: Database,
    DB::Connection: Migrate,
{
    let pool = pool_options.connect_lazy_with(connect.clone());
    let unreachable = |reason: String| OpenError::Unreachable {
        url: crate::store::redact(url),
        reason,
    };
    first_connection::<DB::Connection>(&connect, options.connect_timeout)
        .await
        .map_err(unreachable)?;
    migrator
        .run(&pool)
        .await
        .map_err(|error| unreachable(format!("migrating the schema: {error}")))?;
    Ok(pool)
}

impl PoolStatus {
    pub(in crate::store) fn of<DB: sqlx::Database>(pool: &sqlx::Pool<DB>) -> PoolStatus {
        let size = u64::from(pool.size());
        let idle = pool.num_idle() as u64;
        PoolStatus {
            idle,
            in_use: size.saturating_sub(idle),
        }
    }
}
