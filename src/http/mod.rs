//! The REST API of docs/API.md: `router(state)` builds the whole app, so
//! tests and the simulation serve the very same thing on any socket.
//!
//! The route table ([`routes`]) registers each handler with utoipa-axum's
//! `routes!`, which takes its path and methods from the handler's own
//! `#[utoipa::path]`: the router serves, and `/openapi.json` describes
//! (`openapi::document_for` completes it), the very same routes.

mod auth;
mod body;
mod console;
mod error;
mod feed;
mod handlers;
mod middleware;
mod openapi;
mod params;
mod serve;

pub use auth::Authenticator;
pub use body::{AccountBody, EventBody, FeedEventBody};
pub use error::{ApiError, ErrorBody, ErrorCode, RETRY_AFTER_SECONDS, WWW_AUTHENTICATE_BEARER};
pub use feed::{
    FEED_LIMIT_DEFAULT, FEED_LIMIT_MAX, FEED_POLL_MS, FEED_WAIT_MS_MAX, REWIND_EVENT,
    STREAM_BUFFER_EVENTS, STREAM_KEEP_ALIVE_MS, STREAM_STALL_MS,
};
pub use handlers::{EVENTS_LIMIT_DEFAULT, EVENTS_LIMIT_MAX};
pub use openapi::document as openapi_document;
pub use serve::{
    HEADER_BYTES_MAX, HEADER_READ_TIMEOUT_MS, HTTP_CONNECTIONS_MAX, SHUTDOWN_GRACE_MS, ServeConfig,
    serve,
};

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::error_handling::HandleErrorLayer;
use axum::http::{HeaderName, Request, StatusCode};
use tower::ServiceBuilder;
use tower::limit::GlobalConcurrencyLimitLayer;
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::request_id::{PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::{DefaultOnFailure, TraceLayer};
use tracing::Level;
use utoipa_axum::router::OpenApiRouter;

use uuid::Uuid;

use crate::engine::{Engine, Entropy};
use crate::metrics::Metrics;
use crate::store::PoolStatus;

/// Limits on what one request may cost. Each has a reason:
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limits {
    /// No operation takes a body; anything beyond a small one is abuse (413).
    pub body_bytes_max: usize,
    /// A request that is not answered within this is answered 408, so a slow
    /// store cannot pile up requests without bound.
    pub request_timeout: Duration,
    /// Requests in flight at once; past it, 503 with Retry-After at once
    /// (load shedding) rather than an unbounded queue.
    pub concurrency_max: usize,
    /// Longest path and query accepted (414 beyond). The longest valid
    /// request (a transfer with urn-form ids) is under 300 bytes; 8 KiB is
    /// the common limit of proxies, so no client that works behind one breaks.
    pub url_bytes_max: usize,
    /// Server-Sent Event streams open at once; past it, 503 with
    /// Retry-After. A stream outlives its request (its body never ends), so
    /// the concurrency limit does not see it: without this bound one client
    /// could hold every connection, `/ready`'s included.
    pub feed_streams_max: usize,
}

/// Default of `Limits::body_bytes_max`: no operation takes a body, 16 KiB
/// leaves room for clients that send a small one anyway.
pub const BODY_BYTES_MAX: usize = 16 * 1024;

/// Default of `Limits::request_timeout`: above the store timeout plus the
/// engine's retries, so a request normally ends in its own answer, not 408.
pub const REQUEST_TIMEOUT_MS: u64 = 10_000;

/// Default of `Limits::concurrency_max`: far above what one instance
/// serves well at once, low enough that a flood is shed, not queued.
pub const CONCURRENCY_MAX: usize = 1024;

// Requests in flight at the default limit fit the engine's batch queues (a
// transfer loads two accounts), so the limit sheds before a queue is full.
const _: () = assert!(2 * CONCURRENCY_MAX <= crate::engine::QUEUE_MAX);

/// Default of `Limits::url_bytes_max` (see there).
pub const URL_BYTES_MAX: usize = 8 * 1024;

/// Default of `Limits::feed_streams_max`: a few readers per downstream
/// system is the expected use; far below the connection limit.
pub const FEED_STREAMS_MAX: usize = 256;

impl Default for Limits {
    fn default() -> Self {
        Limits {
            body_bytes_max: BODY_BYTES_MAX,
            request_timeout: Duration::from_millis(REQUEST_TIMEOUT_MS),
            concurrency_max: CONCURRENCY_MAX,
            url_bytes_max: URL_BYTES_MAX,
            feed_streams_max: FEED_STREAMS_MAX,
        }
    }
}

/// What every handler shares. Owned per instance: nothing global.
#[derive(Clone)]
pub struct AppState(Arc<Inner>);

struct Inner {
    engine: Engine,
    /// The engine's own source (see `InstanceBuilder`), for request ids, so
    /// a simulation replays them too.
    entropy: Arc<dyn Entropy>,
    metrics: Metrics,
    limits: Limits,
    /// `None` while authentication is off: every caller is `Caller::Anyone`.
    authenticator: Option<Authenticator>,
    /// `true` once draining: `/ready` answers 503 and feed streams end.
    draining: tokio::sync::watch::Sender<bool>,
    /// `/openapi.json`, serialized once per instance.
    openapi_json: String,
    /// One permit per open feed stream (`Limits::feed_streams_max`).
    feed_streams: Arc<tokio::sync::Semaphore>,
}

impl AppState {
    /// Use `app::InstanceBuilder`, which hands the engine and the state the
    /// same entropy.
    pub fn new(
        engine: Engine,
        entropy: Arc<dyn Entropy>,
        metrics: Metrics,
        limits: Limits,
        authenticator: Option<Authenticator>,
    ) -> AppState {
        let openapi_json = openapi::document_for(authenticator.is_some())
            .to_json()
            .expect("the OpenAPI document serializes");
        AppState(Arc::new(Inner {
            engine,
            entropy,
            metrics,
            authenticator,
            draining: tokio::sync::watch::Sender::new(false),
            openapi_json,
            feed_streams: Arc::new(tokio::sync::Semaphore::new(limits.feed_streams_max)),
            limits,
        }))
    }

    /// How requests are authenticated; `None` while authentication is off.
    pub fn authenticator(&self) -> Option<&Authenticator> {
        self.0.authenticator.as_ref()
    }

    pub fn engine(&self) -> &Engine {
        &self.0.engine
    }

    /// A place for one more feed stream, `None` when all are taken.
    pub fn feed_stream_permit(&self) -> Option<tokio::sync::OwnedSemaphorePermit> {
        self.0.feed_streams.clone().try_acquire_owned().ok()
    }

    pub fn metrics(&self) -> &Metrics {
        &self.0.metrics
    }

    /// A fresh id for a request that came without one.
    pub fn new_request_id(&self) -> Uuid {
        self.0.entropy.uuid()
    }

    /// The store's connection pool use, for the pool gauges.
    pub fn pool_status(&self) -> Option<PoolStatus> {
        self.0.engine.pool_status()
    }

    /// From now on `/ready` answers 503, so a load balancer moves traffic
    /// away while requests are still served.
    pub fn begin_drain(&self) {
        self.0.draining.send_replace(true);
    }

    pub fn openapi_json(&self) -> &str {
        &self.0.openapi_json
    }

    pub fn is_draining(&self) -> bool {
        *self.0.draining.borrow()
    }

    /// Turns `true` when draining begins, so long-lived answers end and a
    /// graceful shutdown need not wait for them.
    pub fn draining(&self) -> tokio::sync::watch::Receiver<bool> {
        self.0.draining.subscribe()
    }
}

const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Every route, each handler registered with its description: the timed
/// routes, then the long-lived ones (the feed), which are exempt from the
/// request timeout (see `router`).
fn routes() -> (OpenApiRouter<AppState>, OpenApiRouter<AppState>) {
    let timed = OpenApiRouter::default()
        .routes(utoipa_axum::routes!(
            handlers::state,
            handlers::open,
            handlers::query_style,
            handlers::close
        ))
        .routes(utoipa_axum::routes!(handlers::deposit))
        .routes(utoipa_axum::routes!(handlers::withdraw))
        .routes(utoipa_axum::routes!(handlers::transfer))
        .routes(utoipa_axum::routes!(handlers::events))
        .routes(utoipa_axum::routes!(handlers::ping))
        .routes(utoipa_axum::routes!(handlers::ready))
        .routes(utoipa_axum::routes!(handlers::metrics))
        .routes(utoipa_axum::routes!(handlers::openapi))
        .routes(utoipa_axum::routes!(console::index))
        .routes(utoipa_axum::routes!(console::asset));
    let long_lived = OpenApiRouter::default()
        .routes(utoipa_axum::routes!(feed::feed))
        .routes(utoipa_axum::routes!(feed::stream));
    (timed, long_lived)
}

/// The operations of the route table, as `openapi::document_for` completes them.
fn route_table_document() -> utoipa::openapi::OpenApi {
    let (timed, long_lived) = routes();
    timed.merge(long_lived).into_openapi()
}

/// The path templates the router serves (`{name}` marks a parameter).
pub fn route_paths() -> Vec<String> {
    route_table_document().paths.paths.into_keys().collect()
}

pub fn router(state: AppState) -> Router {
    let limits = state.0.limits.clone();
    // The document is the instance's (`AppState::openapi_json`).
    let (timed, long_lived) = routes();
    let (timed, long_lived) = (timed.split_for_parts().0, long_lived.split_for_parts().0);
    // The feed may hold a request up to its waitMs (beyond the request
    // timeout) and the stream answers at once with an endless body; the
    // request timeout covers every other route. `Router::layer` wraps only
    // the routes added before it, so the long-lived ones are merged after.
    let api = timed
        .fallback(handlers::unknown_route)
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            limits.request_timeout,
        ))
        .merge(long_lived)
        .with_state(state.clone());
    // Router::layer wraps every route (and the fallback) separately, so the
    // concurrency limit must be the global one: one semaphore for all routes.
    // Each layer wraps the ones above it: the last is the outermost.
    api.layer(RequestBodyLimitLayer::new(limits.body_bytes_max))
        .layer(
            ServiceBuilder::new()
                .layer(HandleErrorLayer::new(|_: tower::BoxError| async {
                    error::json_error(
                        ErrorCode::Overloaded,
                        "this instance is over its concurrency limit; retry later",
                    )
                }))
                .load_shed()
                .layer(GlobalConcurrencyLimitLayer::new(limits.concurrency_max)),
        )
        .layer(axum::middleware::from_fn_with_state(
            limits.url_bytes_max,
            middleware::url_limit,
        ))
        .layer(axum::middleware::from_fn(middleware::json_errors))
        // Outside the JSON errors, so that every answer under /console
        // (its 404s and 405s too) carries the console's policy.
        .layer(axum::middleware::from_fn(console::headers))
        .layer(axum::middleware::from_fn_with_state(state.clone(), middleware::track))
        .layer(PropagateRequestIdLayer::new(REQUEST_ID))
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(|request: &Request<_>| {
                    let id = request.headers().get(REQUEST_ID).and_then(|v| v.to_str().ok()).unwrap_or("");
                    tracing::info_span!("request", method = %request.method(), path = %request.uri().path(), request_id = %id)
                })
                // A 503 is an expected answer here (draining, shedding, a
                // store outage, which the engine already logs at WARN): at
                // ERROR, a draining instance's health checks would flood logs.
                .on_failure(DefaultOnFailure::new().level(Level::DEBUG)),
        )
        .layer(SetRequestIdLayer::new(REQUEST_ID, middleware::EntropyRequestId(state)))
}
