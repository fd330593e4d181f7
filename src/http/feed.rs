//! The read side's feed: every committed event of every account, in commit
//! order, paged (`GET /api/events`, with long-poll) and live over
//! Server-Sent Events (`GET /api/events/stream`). The guarantee that no
//! reader ever skips an event is the store's (`EventStore::feed`); this
//! module only decides when to ask the store again. Both handlers carry
//! their OpenAPI description (the stream's messages: `openapi::StreamMessage`).

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use tokio::sync::{OwnedSemaphorePermit, mpsc, watch};
use tokio::time::Instant;
use utoipa::IntoParams;

use super::AppState;
use super::body::FeedEventBody;
use super::error::{ApiError, ErrorBody, ErrorCode};
use super::openapi::{FEED_FORBIDDEN, StreamMessage};
use super::params::{self, Query};
use crate::domain::{self, Caller};
use crate::engine::{Engine, EngineError};
use crate::metrics::Metrics;
use crate::store::FeedEvent;

/// Default and maximum page sizes of the feed.
pub const FEED_LIMIT_DEFAULT: u64 = 1000;
pub const FEED_LIMIT_MAX: u64 = 10_000;

/// The longest a client may ask a feed request to wait for an event.
pub const FEED_WAIT_MS_MAX: u64 = 30_000;

/// How often a waiting reader asks the store again. Commits made through this
/// instance wake readers at once; commits made through another instance are
/// seen within this interval (plus one store round trip).
pub const FEED_POLL_MS: u64 = 250;

/// Events a stream consumer may have queued but not yet taken. Bounded, so
/// the instance's memory never grows with a slow reader.
pub const STREAM_BUFFER_EVENTS: usize = 256;

/// A stream consumer whose buffer stays full this long is disconnected; it
/// reconnects with `Last-Event-ID` and loses nothing.
pub const STREAM_STALL_MS: u64 = 1_000;

/// An idle stream gets a comment line this often, so proxies and clients do
/// not take it for dead.
pub const STREAM_KEEP_ALIVE_MS: u64 = 15_000;

/// The SSE event type sent, before a stream ends, when the history at the
/// stream's position changed.
pub const REWIND_EVENT: &str = "rewind";

/// Events read from the store at once for a stream consumer.
const STREAM_PAGE: usize = 100;

/// Positions, like every JSON number of the API, stay within i64.
const POSITION_MAX: u64 = i64::MAX as u64;

/// `?after=…&limit=…&waitMs=…`, all optional.
#[derive(Deserialize, IntoParams)]
#[serde(rename_all = "camelCase")]
#[into_params(parameter_in = Query)]
pub struct FeedParams {
    /// Return events after this position (default 0: from the start).
    #[param(value_type = Option<i64>, minimum = 0)]
    after: Option<String>,
    /// Most events to return.
    // The defaults and maxima of limit and waitMs come from the constants
    // (openapi::BOUNDS).
    #[param(value_type = Option<i64>, minimum = 1)]
    limit: Option<String>,
    /// When nothing follows `after`, hold the request until an event commits
    /// (through any instance) or this many milliseconds pass.
    #[param(value_type = Option<i64>, minimum = 0)]
    wait_ms: Option<String>,
}

/// Every committed event of every account, in commit order
///
/// A reader that starts at after=0 and always resumes from the last position
/// it was given sees every committed event exactly once, never an uncommitted
/// one, and never misses one. Per account the order is the sequence order;
/// the two legs of a transfer are adjacent. Admins only when authentication
/// is on.
#[utoipa::path(
    get,
    path = "/api/events",
    operation_id = "feed",
    tag = "accounts",
    params(FeedParams),
    responses(
        (status = 200, description = "The events after `after` (`[]` if none came within waitMs).", body = Vec<FeedEventBody>,
            headers(("Link" = String, description = "`</api/events?after=P&limit=L>; rel=\"next\"` on a full page."))),
        (status = 400, description = "after, limit or waitMs not an integer in range, or repeated.", body = ErrorBody),
        (status = 403, description = FEED_FORBIDDEN, body = ErrorBody),
    )
)]
pub async fn feed(
    caller: Caller,
    State(app): State<AppState>,
    Query(query): Query<FeedParams>,
) -> Result<Response, ApiError> {
    let after = params::bounded(&query.after, "after", 0, 0, POSITION_MAX)?;
    let limit = params::bounded(&query.limit, "limit", FEED_LIMIT_DEFAULT, 1, FEED_LIMIT_MAX)?;
    let wait = params::bounded(&query.wait_ms, "waitMs", 0, 0, FEED_WAIT_MS_MAX)?;
    authorize(caller)?;
    let page = usize::try_from(limit).unwrap_or(usize::MAX);
    let events = wait_for_events(app.engine(), after, page, Duration::from_millis(wait))
        .await
        .map_err(store_unavailable)?;
    let next = events.last().map(|event| event.position);
    let body: Vec<FeedEventBody> = events.iter().map(FeedEventBody::from).collect();
    let mut response = Json(body).into_response();
    if let (true, Some(next)) = (events.len() == page, next) {
        let link = format!("</api/events?after={next}&limit={limit}>; rel=\"next\"");
        let link = HeaderValue::from_str(&link).expect("numbers are valid header text");
        response.headers_mut().insert(header::LINK, link);
    }
    Ok(response)
}

/// The events after `after`; when there are none, waits up to `wait` for a
/// commit — woken at once by this instance's, by polling for others'.
async fn wait_for_events(
    engine: &Engine,
    after: u64,
    page: usize,
    wait: Duration,
) -> Result<Vec<FeedEvent>, EngineError> {
    let deadline = Instant::now() + wait;
    // Subscribed before the first read, so a commit between the read and
    // the wait still wakes us.
    let mut commits = engine.commits();
    loop {
        commits.borrow_and_update();
        let events = engine.feed(after, page).await?;
        let now = Instant::now();
        if !events.is_empty() || now >= deadline {
            return Ok(events);
        }
        let poll = (now + Duration::from_millis(FEED_POLL_MS)).min(deadline);
        wait_for_commit(&mut commits, poll).await;
    }
}

/// Until this instance commits or `until`, whichever comes first.
async fn wait_for_commit(commits: &mut watch::Receiver<u64>, until: Instant) {
    tokio::select! {
        changed = commits.changed() => {
            if changed.is_err() {
                // The engine is gone: no signal will come, poll only.
                tokio::time::sleep_until(until).await;
            }
        }
        () = tokio::time::sleep_until(until) => {}
    }
}

/// `?after=…`, optional; the `Last-Event-ID` header wins over it.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct StreamParams {
    /// Start after this position (default 0).
    #[param(value_type = Option<i64>, minimum = 0)]
    after: Option<String>,
}

/// The feed, live, as Server-Sent Events
///
/// One message per event: `id: <position>`, `event: <type>`, `data: <the
/// feed object>`, starting after `after`, or after the `Last-Event-ID` header
/// when present (it wins). A comment line at least every 15 s keeps idle
/// connections alive. A consumer whose bounded buffer stays full is
/// disconnected; it reconnects with Last-Event-ID and loses nothing. An
/// instance serves at most --feed-streams-max streams at once: beyond, 503
/// overloaded with Retry-After. If the event last sent at its position is no
/// longer in the store (a database failover lost committed events), the
/// stream sends one `event: rewind` message without an id, data
/// `{"position":P,"message":…}`, and ends. Admins only when authentication
/// is on.
#[utoipa::path(
    get,
    path = "/api/events/stream",
    operation_id = "feedStream",
    tag = "accounts",
    params(
        StreamParams,
        ("Last-Event-ID" = Option<i64>, Header, minimum = 0, description = "The last position received; wins over `after`."),
    ),
    responses(
        // Message by message (`itemSchema`): the stream as a whole never ends.
        (status = 200, description = "An endless stream of events.", content_type = "text/event-stream", item_schema = inline(StreamMessage)),
        (status = 400, description = "after or Last-Event-ID not an integer in range, or repeated.", body = ErrorBody),
        (status = 403, description = FEED_FORBIDDEN, body = ErrorBody),
    )
)]
pub async fn stream(
    caller: Caller,
    State(app): State<AppState>,
    headers: HeaderMap,
    Query(query): Query<StreamParams>,
) -> Result<Response, ApiError> {
    let after = params::bounded(&query.after, "after", 0, 0, POSITION_MAX)?;
    // A reconnecting EventSource sends the last id it saw: it wins.
    let last_event_id = match headers.get_all("last-event-id").iter().collect::<Vec<_>>()[..] {
        [] => None,
        [value] => Some(value.to_str().map(str::to_owned).map_err(|_| {
            ApiError::bad_parameter("the Last-Event-ID header is not text".to_owned())
        })?),
        _ => {
            return Err(ApiError::bad_parameter(
                "the Last-Event-ID header is given more than once".to_owned(),
            ));
        }
    };
    let after = match last_event_id {
        Some(text) => params::bounded(&Some(text), "Last-Event-ID", 0, 0, POSITION_MAX)?,
        None => after,
    };
    authorize(caller)?;
    // Held by the producing task and by the response body alike, so a
    // stream counts against the limit for as long as either lives.
    let permit = Arc::new(app.feed_stream_permit().ok_or_else(|| {
        ApiError::new(
            ErrorCode::Overloaded,
            "this instance serves as many feed streams as it may; retry later",
        )
    })?);
    let (sender, receiver) = mpsc::channel(STREAM_BUFFER_EVENTS);
    let buffer = Buffer {
        receiver,
        metrics: app.metrics().clone(),
        _permit: permit.clone(),
    };
    tokio::spawn(produce(app, after, sender, permit));
    let messages = futures_util::stream::unfold(buffer, |mut buffer| async move {
        let message = buffer.receiver.recv().await?;
        buffer.metrics.feed_stream_buffered.dec();
        Some((Ok::<_, Infallible>(message), buffer))
    });
    let keep_alive = KeepAlive::new().interval(Duration::from_millis(STREAM_KEEP_ALIVE_MS));
    Ok(Sse::new(messages).keep_alive(keep_alive).into_response())
}

/// Feeds one stream consumer's bounded buffer from the store, from `after`
/// on, until the consumer goes away, stays full for `STREAM_STALL_MS`, the
/// instance drains, or the history at the stream's position changes. Ending
/// drops the sender: the response ends once the consumer has taken what is
/// queued.
async fn produce(
    app: AppState,
    after: u64,
    buffer: mpsc::Sender<SseEvent>,
    _permit: Arc<OwnedSemaphorePermit>,
) {
    let _connected = Connected::new(app.metrics().clone());
    let engine = app.engine();
    let mut commits = engine.commits();
    let mut draining = app.draining();
    let mut resume = Resume::new(after);
    while !*draining.borrow() {
        commits.borrow_and_update();
        let events = match engine.feed(resume.read_after(), STREAM_PAGE).await {
            Ok(events) => events,
            Err(error) => {
                // A store outage: keep the consumer and try again; it loses
                // nothing, as positions resume where they were.
                tracing::warn!(%error, "feed stream: store call failed");
                Vec::new()
            }
        };
        let Some(events) = resume.check(events) else {
            rewound(&app, &buffer, resume.after).await;
            return;
        };
        if events.is_empty() {
            let poll = Instant::now() + Duration::from_millis(FEED_POLL_MS);
            tokio::select! {
                () = wait_for_commit(&mut commits, poll) => {}
                () = buffer.closed() => return,
                _ = draining.wait_for(|draining| *draining) => return,
            }
            continue;
        }
        for event in events {
            if !send(&app, &buffer, &event).await {
                return;
            }
            resume.sent(event);
        }
    }
}

/// Where a stream is, and the last event it sent: each read starts one
/// position early, so the store shows that event again. A database that
/// failed over without it has given its position to another event, and a
/// stream going on after it would skip the events now below it.
struct Resume {
    after: u64,
    last: Option<FeedEvent>,
}

impl Resume {
    fn new(after: u64) -> Resume {
        Resume { after, last: None }
    }

    fn read_after(&self) -> u64 {
        match self.last {
            Some(_) => self.after - 1,
            None => self.after,
        }
    }

    /// The events after the last one sent; `None` if the store no longer
    /// holds that one first.
    fn check(&self, mut events: Vec<FeedEvent>) -> Option<Vec<FeedEvent>> {
        let Some(last) = &self.last else {
            return Some(events);
        };
        match events.first() {
            Some(first) if first == last => {
                events.remove(0);
                Some(events)
            }
            // Nothing at or after the last position (a store outage reads
            // as nothing too): nothing to judge yet.
            None => Some(events),
            Some(_) => None,
        }
    }

    fn sent(&mut self, event: FeedEvent) {
        self.after = event.position;
        self.last = Some(event);
    }
}

/// Queues one event, waiting at most `STREAM_STALL_MS` for room; `false`
/// when the consumer is gone or too slow (and the stream ends).
async fn send(app: &AppState, buffer: &mpsc::Sender<SseEvent>, event: &FeedEvent) -> bool {
    let stall = Duration::from_millis(STREAM_STALL_MS);
    // Counted before it is queued, so the consumer's end never takes away
    // what was not yet added.
    let buffered = &app.metrics().feed_stream_buffered;
    buffered.inc();
    match tokio::time::timeout(stall, buffer.send(message(event))).await {
        Ok(Ok(())) => true,
        // The consumer hung up.
        Ok(Err(_)) => {
            buffered.dec();
            false
        }
        Err(_) => {
            buffered.dec();
            app.metrics().feed_stream_slow_disconnects.inc();
            tracing::info!(
                position = event.position,
                "feed stream: consumer too slow, disconnected"
            );
            false
        }
    }
}

/// Tells the consumer, in a `rewind` message without an id, that the
/// event it was given at `position` is no longer there; the stream ends.
async fn rewound(app: &AppState, buffer: &mpsc::Sender<SseEvent>, position: u64) {
    app.metrics().feed_stream_rewinds.inc();
    tracing::error!(
        position,
        "feed stream: the event sent at this position is no longer in the store; \
         committed events were lost (a database failover?); ending the stream"
    );
    let data = serde_json::json!({
        "position": position,
        "message": "the event given at this position is no longer in the store: committed \
                    events were lost; do not resume past it",
    });
    let message = SseEvent::default()
        .event(REWIND_EVENT)
        .data(data.to_string());
    app.metrics().feed_stream_buffered.inc();
    let stall = Duration::from_millis(STREAM_STALL_MS);
    if !matches!(
        tokio::time::timeout(stall, buffer.send(message)).await,
        Ok(Ok(()))
    ) {
        app.metrics().feed_stream_buffered.dec();
    }
}

/// One SSE message: `id: <position>`, `event: <type>`, `data: <feed object>`.
fn message(event: &FeedEvent) -> SseEvent {
    let body = FeedEventBody::from(event);
    let data = serde_json::to_string(&body).expect("a feed event serializes");
    SseEvent::default()
        .id(event.position.to_string())
        .event(event.event.event.type_name())
        .data(data)
}

/// The feed is admins' (and anyone's while authentication is off).
fn authorize(caller: Caller) -> Result<(), ApiError> {
    domain::authorize_feed(caller)
        .map_err(|refusal| ApiError::new(ErrorCode::Forbidden, refusal.to_string()))
}

fn store_unavailable(error: EngineError) -> ApiError {
    tracing::warn!(%error, "feed: store call failed");
    ApiError::new(
        ErrorCode::Unavailable,
        "the account store is unavailable; retry later",
    )
}

/// A stream consumer's end of its bounded buffer; what is still queued
/// when it goes away leaves `accounts_feed_stream_buffered_events` too.
struct Buffer {
    receiver: mpsc::Receiver<SseEvent>,
    metrics: Metrics,
    _permit: Arc<OwnedSemaphorePermit>,
}

impl Drop for Buffer {
    fn drop(&mut self) {
        let queued = i64::try_from(self.receiver.len()).unwrap_or(i64::MAX);
        self.metrics.feed_stream_buffered.sub(queued);
    }
}

/// Counts a stream consumer in `accounts_feed_streams` while it lives,
/// however its task ends.
struct Connected(Metrics);

impl Connected {
    fn new(metrics: Metrics) -> Connected {
        metrics.feed_streams.inc();
        Connected(metrics)
    }
}

impl Drop for Connected {
    fn drop(&mut self) {
        self.0.feed_streams.dec();
    }
}
