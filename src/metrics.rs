//! Prometheus metrics, owned by the app state (never a global registry), so
//! several instances can live in one process and each exports its own.

use std::sync::{Arc, Mutex};

use prometheus::core::Collector;
use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};

/// Counters the engine bumps. Cheap to clone: each is a handle.
#[derive(Clone)]
pub struct EngineMetrics {
    pub conflicts: IntCounter,
    pub retries: IntCounter,
    pub ambiguous_commits: IntCounter,
    pub events_appended: IntCounter,
    pub snapshots_written: IntCounter,
    pub snapshots_loaded: IntCounter,
    pub commands: IntCounterVec,
    /// State cache lookups, by result (hit or miss).
    pub cache_lookups: IntCounterVec,
    pub cache_stale: IntCounter,
    /// Members per batch the group committer wrote.
    pub batch_size: Histogram,
}

/// Everything one instance exports at `/metrics`.
#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    pub http_requests: IntCounterVec,
    pub http_request_duration: HistogramVec,
    pub pool_connections: IntGaugeVec,
    /// Server-Sent Events consumers of the feed being served now.
    pub feed_streams: IntGauge,
    /// Events queued in the stream consumers' buffers, all together.
    pub feed_stream_buffered: IntGauge,
    /// Feed consumers disconnected because their buffer stayed full.
    pub feed_stream_slow_disconnects: IntCounter,
    /// Feed streams ended because the history at their position changed.
    pub feed_stream_rewinds: IntCounter,
    /// 1 when the database said at start-up that its commits wait for a
    /// synchronous standby.
    pub store_synchronous_standby: IntGauge,
    pub engine: EngineMetrics,
    /// The store's pool wait histogram, once exported (see
    /// [`Metrics::export_pool_acquire`]).
    pool_acquire: Arc<Mutex<Option<HistogramVec>>>,
}

/// Registers `metric` with `registry` and returns it (a handle: the
/// registry keeps a clone). Names and help are constants of this module, so
/// an invalid or repeated one is a bug here, not an input.
fn registered<M: Collector + Clone + 'static>(registry: &Registry, metric: M) -> M {
    registry
        .register(Box::new(metric.clone()))
        .expect("metric names are unique");
    metric
}

fn counter(registry: &Registry, name: &str, help: &str) -> IntCounter {
    registered(registry, IntCounter::new(name, help).expect("valid metric"))
}

fn counter_vec(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let counter = IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric");
    registered(registry, counter)
}

fn gauge(registry: &Registry, name: &str, help: &str) -> IntGauge {
    registered(registry, IntGauge::new(name, help).expect("valid metric"))
}

impl EngineMetrics {
    pub fn new(registry: &Registry) -> EngineMetrics {
        EngineMetrics {
            conflicts: counter(
                registry,
                "accounts_conflicts_total",
                "Appends refused by optimistic concurrency (sequence or transactionId taken).",
            ),
            retries: counter(
                registry,
                "accounts_retries_total",
                "Commands reloaded and decided again after a conflict or an ambiguous commit.",
            ),
            ambiguous_commits: counter(
                registry,
                "accounts_ambiguous_commits_total",
                "Appends whose outcome was unknown and had to be read back.",
            ),
            events_appended: counter(
                registry,
                "accounts_events_appended_total",
                "Events written to the store.",
            ),
            snapshots_written: counter(
                registry,
                "accounts_snapshots_written_total",
                "Snapshots written together with events.",
            ),
            snapshots_loaded: counter(
                registry,
                "accounts_snapshots_loaded_total",
                "Account loads that started from a snapshot.",
            ),
            commands: counter_vec(
                registry,
                "accounts_commands_total",
                "Commands handled by the engine, by kind and outcome.",
                &["command", "outcome"],
            ),
            cache_lookups: counter_vec(
                registry,
                "accounts_cache_lookups_total",
                "State cache lookups of a command's accounts, by result (hit or miss).",
                &["result"],
            ),
            cache_stale: counter(
                registry,
                "accounts_cache_stale_total",
                "Commands decided on a cached state that the store refused as stale (then loaded and decided again).",
            ),
            batch_size: registered(
                registry,
                Histogram::with_opts(
                    HistogramOpts::new(
                        "accounts_batch_size",
                        "Commits written together in one group commit.",
                    )
                    .buckets(vec![1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0]),
                )
                .expect("valid metric"),
            ),
        }
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let registry = Registry::new();
        Metrics {
            http_requests: counter_vec(
                &registry,
                "accounts_http_requests_total",
                "HTTP requests answered, by route, method and status.",
                &["route", "method", "status"],
            ),
            http_request_duration: http_request_duration(&registry),
            pool_connections: registered(
                &registry,
                IntGaugeVec::new(
                    Opts::new(
                        "accounts_db_pool_connections",
                        "Database pool connections, by state (idle or in_use); absent for the memory store.",
                    ),
                    &["state"],
                )
                .expect("valid metric"),
            ),
            feed_streams: gauge(
                &registry,
                "accounts_feed_streams",
                "Server-Sent Events consumers of the feed connected now.",
            ),
            feed_stream_buffered: gauge(
                &registry,
                "accounts_feed_stream_buffered_events",
                "Events queued in the feed stream consumers' bounded buffers, all together.",
            ),
            feed_stream_slow_disconnects: counter(
                &registry,
                "accounts_feed_stream_slow_disconnects_total",
                "Feed stream consumers disconnected because their bounded buffer stayed full.",
            ),
            feed_stream_rewinds: counter(
                &registry,
                "accounts_feed_stream_rewinds_total",
                "Feed streams ended because the event at their resume position changed (a database \
                 failover lost committed events).",
            ),
            store_synchronous_standby: gauge(
                &registry,
                "accounts_store_synchronous_standby",
                "1 when the database said at start-up that commits wait for a synchronous standby \
                 (PostgreSQL synchronous_standby_names, MariaDB semi-sync after sync), else 0.",
            ),
            engine: EngineMetrics::new(&registry),
            pool_acquire: Arc::default(),
            registry,
        }
    }

    /// Exports the store's `accounts_db_pool_acquire_seconds` from now on.
    /// The store measures (it is the one that waits for connections) and
    /// the app exports, as with the pool gauges; an instance rebuilt on the
    /// same metrics with another store exports the new store's histogram
    /// instead of the old one's.
    pub fn export_pool_acquire(&self, histogram: HistogramVec) {
        let mut exported = self.pool_acquire.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(previous) = exported.take() {
            // Absent only if nobody registered it, which cannot happen here.
            let _ = self.registry.unregister(Box::new(previous));
        }
        *exported = Some(registered(&self.registry, histogram));
    }

    /// Sets the pool gauges; called when `/metrics` is scraped, so the
    /// numbers are those of the scrape and no background task is needed.
    pub fn observe_pool(&self, pool: crate::store::PoolStatus) {
        let gauge = |state: &str, value: u64| {
            self.pool_connections
                .with_label_values(&[state])
                .set(i64::try_from(value).unwrap_or(i64::MAX));
        };
        gauge("idle", pool.idle);
        gauge("in_use", pool.in_use);
    }

    /// The Prometheus text exposition of every metric of this instance.
    pub fn encode(&self) -> String {
        let mut buffer = Vec::new();
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut buffer)
            .expect("writing to a Vec cannot fail");
        String::from_utf8(buffer).expect("the text format is UTF-8")
    }
}

/// Request latency, in buckets from 100 µs to 10 s.
fn http_request_duration(registry: &Registry) -> HistogramVec {
    let opts = HistogramOpts::new(
        "accounts_http_request_duration_seconds",
        "Time from a request's arrival to its response, by route and method.",
    )
    .buckets(vec![
        0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
        5.0, 10.0,
    ]);
    registered(
        registry,
        HistogramVec::new(opts, &["route", "method"]).expect("valid metric"),
    )
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}
