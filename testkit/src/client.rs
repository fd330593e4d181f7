//! One typed client of the API over pluggable transports: in-process
//! ([`InProcess`]: the router called as a tower service), a real socket
//! ([`Socket`]: reqwest over TCP) — and, in `sim/`, turmoil's simulated TCP,
//! which implements [`Transport`] there so that turmoil stays out of the kit.
//!
//! Every operation returns a [`Call`]: `.await` it for the [`Answer`]
//! (a missing answer fails the test), or `.reply().await` for a [`Reply`]
//! when a lost answer is part of the test.

use std::fmt::Display;
use std::future::{Future, IntoFuture};
use std::net::SocketAddr;
use std::pin::Pin;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{Method, StatusCode};
use http_body_util::BodyExt;
use serde_json::Value;
use tower::ServiceExt;

use accounts::follow::{SseItem, SseParser};

use crate::answer::{Answer, NoAnswer, Reply};
use crate::api::{ApiRequest, Style};

/// Carries one request to the service and its answer back.
pub trait Transport: Clone + Send + Sync + 'static {
    fn send(&self, request: ApiRequest) -> impl Future<Output = Reply> + Send;
}

/// The real router, called in-process without sockets.
#[derive(Clone)]
pub struct InProcess {
    router: Router,
}

impl InProcess {
    pub fn new(router: Router) -> InProcess {
        InProcess { router }
    }
}

impl Transport for InProcess {
    async fn send(&self, request: ApiRequest) -> Reply {
        let mut builder = axum::http::Request::builder()
            .method(request.method)
            .uri(&request.target);
        for (name, value) in &request.headers {
            builder = builder.header(name, value);
        }
        let request = builder
            .body(Body::from(request.body))
            .map_err(|error| NoAnswer::Failed(format!("not a request: {error}")))?;
        let response = self
            .router
            .clone()
            .oneshot(request)
            .await
            .expect("the router is infallible");
        let (parts, body) = response.into_parts();
        let body = body
            .collect()
            .await
            .map_err(|error| NoAnswer::Failed(format!("body: {error}")))?
            .to_bytes();
        Ok(Answer::new(parts.status, parts.headers, &body))
    }
}

/// HTTP over real TCP (reqwest), to an in-process server on a loopback
/// port, a spawned binary, or Envoy.
#[derive(Clone)]
pub struct Socket {
    base: String,
    http: reqwest::Client,
}

impl Socket {
    /// `base` is `http://host:port`; connections are kept alive and reused.
    pub fn new(base: impl Into<String>) -> Socket {
        Socket::with(base, reqwest::Client::builder())
    }

    pub fn at(address: SocketAddr) -> Socket {
        Socket::new(format!("http://{address}"))
    }

    /// A fresh connection for every request: what a test needs that must
    /// see a closed listener, not a kept-alive connection.
    pub fn fresh_connections(self) -> Socket {
        Socket::with(
            self.base,
            reqwest::Client::builder().pool_max_idle_per_host(0),
        )
    }

    fn with(base: impl Into<String>, builder: reqwest::ClientBuilder) -> Socket {
        Socket {
            base: base.into(),
            http: builder.build().expect("an HTTP client"),
        }
    }

    pub fn base(&self) -> &str {
        &self.base
    }
}

impl Transport for Socket {
    async fn send(&self, request: ApiRequest) -> Reply {
        let url = format!("{}{}", self.base, request.target);
        let sent = self
            .http
            .request(request.method, url)
            .headers(request.headers)
            .body(request.body)
            .send()
            .await;
        let response = sent.map_err(no_answer)?;
        let (status, headers) = (response.status(), response.headers().clone());
        let body = response.bytes().await.map_err(no_answer)?;
        Ok(Answer::new(status, headers, &body))
    }
}

/// reqwest's error with its causes ("error sending request" alone hides
/// whether the connection was refused or reset).
fn no_answer(error: reqwest::Error) -> NoAnswer {
    if error.is_timeout() {
        return NoAnswer::Timeout;
    }
    let mut text = error.to_string();
    let mut source = std::error::Error::source(&error);
    while let Some(cause) = source {
        text.push_str(&format!(": {cause}"));
        source = cause.source();
    }
    NoAnswer::Failed(text)
}

/// The typed client: every operation of docs/API.md in both URL styles (the
/// style is the client's, see [`Client::with_style`]), the read side, and
/// raw requests. A bearer token, when set, goes on every `/api/…` request.
#[derive(Clone)]
pub struct Client<T> {
    transport: T,
    style: Style,
    token: Option<String>,
    timeout: Option<Duration>,
}

impl<T: Transport> Client<T> {
    /// A path-style client without token or timeout.
    pub fn new(transport: T) -> Client<T> {
        Client {
            transport,
            style: Style::Path,
            token: None,
            timeout: None,
        }
    }

    pub fn with_style(&self, style: Style) -> Client<T> {
        Client {
            style,
            ..self.clone()
        }
    }

    pub fn with_token(&self, token: impl Into<String>) -> Client<T> {
        Client {
            token: Some(token.into()),
            ..self.clone()
        }
    }

    /// Every request gives up after `timeout` (`NoAnswer::Timeout`).
    pub fn with_timeout(&self, timeout: Duration) -> Client<T> {
        Client {
            timeout: Some(timeout),
            ..self.clone()
        }
    }

    pub fn style(&self) -> Style {
        self.style
    }

    pub fn transport(&self) -> &T {
        &self.transport
    }

    /// Any request, with the client's token and timeout.
    pub fn call(&self, mut request: ApiRequest) -> Call<'_, T> {
        if let (Some(token), true) = (&self.token, request.is_api()) {
            request = request.header("authorization", &format!("Bearer {token}"));
        }
        Call {
            client: self,
            request,
            timeout: self.timeout,
        }
    }

    /// A raw request: any method and request target.
    pub fn send(&self, method: Method, target: impl Into<String>) -> Call<'_, T> {
        self.call(ApiRequest::new(method, target))
    }

    pub fn get(&self, target: impl Into<String>) -> Call<'_, T> {
        self.send(Method::GET, target)
    }

    pub fn put(&self, target: impl Into<String>) -> Call<'_, T> {
        self.send(Method::PUT, target)
    }

    pub fn post(&self, target: impl Into<String>) -> Call<'_, T> {
        self.send(Method::POST, target)
    }

    pub fn delete(&self, target: impl Into<String>) -> Call<'_, T> {
        self.send(Method::DELETE, target)
    }

    pub fn open(&self, account: impl Display, owner: impl Display) -> Call<'_, T> {
        self.call(ApiRequest::open(account, owner))
    }

    pub fn state(&self, account: impl Display) -> Call<'_, T> {
        self.call(ApiRequest::state(account))
    }

    pub fn state_at_version(&self, account: impl Display, version: u64) -> Call<'_, T> {
        self.call(ApiRequest::state_at_version(account, version))
    }

    pub fn state_at_time(&self, account: impl Display, at: impl Display) -> Call<'_, T> {
        self.call(ApiRequest::state_at_time(account, at))
    }

    pub fn deposit(
        &self,
        account: impl Display,
        amount: impl Display,
        transaction: impl Display,
    ) -> Call<'_, T> {
        self.call(ApiRequest::deposit(
            self.style,
            account,
            amount,
            transaction,
        ))
    }

    pub fn withdraw(
        &self,
        account: impl Display,
        amount: impl Display,
        transaction: impl Display,
    ) -> Call<'_, T> {
        self.call(ApiRequest::withdraw(
            self.style,
            account,
            amount,
            transaction,
        ))
    }

    pub fn transfer(
        &self,
        from: impl Display,
        to: impl Display,
        amount: impl Display,
        transaction: impl Display,
    ) -> Call<'_, T> {
        self.call(ApiRequest::transfer(
            self.style,
            from,
            to,
            amount,
            transaction,
        ))
    }

    pub fn close(&self, account: impl Display) -> Call<'_, T> {
        self.call(ApiRequest::close(account))
    }

    pub fn close_with(&self, account: impl Display, transaction: impl Display) -> Call<'_, T> {
        self.call(ApiRequest::close_with(account, transaction))
    }

    pub fn events(&self, account: impl Display) -> Call<'_, T> {
        self.call(ApiRequest::events(account))
    }

    pub fn events_page(
        &self,
        account: impl Display,
        from: Option<u64>,
        limit: Option<u64>,
    ) -> Call<'_, T> {
        self.call(ApiRequest::events_page(account, from, limit))
    }

    pub fn feed(
        &self,
        after: Option<u64>,
        limit: Option<u64>,
        wait_ms: Option<u64>,
    ) -> Call<'_, T> {
        self.call(ApiRequest::feed(after, limit, wait_ms))
    }

    pub fn feed_stream(&self, after: Option<u64>, last_event_id: Option<u64>) -> Call<'_, T> {
        self.call(ApiRequest::feed_stream(after, last_event_id))
    }

    pub fn ping(&self) -> Call<'_, T> {
        self.call(ApiRequest::ping())
    }

    pub fn ready(&self) -> Call<'_, T> {
        self.call(ApiRequest::ready())
    }

    pub fn metrics(&self) -> Call<'_, T> {
        self.call(ApiRequest::metrics())
    }

    pub fn openapi(&self) -> Call<'_, T> {
        self.call(ApiRequest::openapi())
    }

    /// Opens `account` for `owner`, asserting 201.
    pub async fn open_ok(&self, account: impl Display, owner: impl Display) {
        self.open(account, owner)
            .await
            .assert_status(StatusCode::CREATED);
    }

    /// Opens `account` for `owner` and deposits `amount` (if not zero),
    /// asserting success.
    pub async fn open_funded(
        &self,
        account: impl Display,
        owner: impl Display,
        amount: i64,
        transaction: impl Display,
    ) {
        self.open_ok(&account, owner).await;
        if amount != 0 {
            self.deposit(&account, amount, transaction)
                .await
                .assert_status(StatusCode::NO_CONTENT);
        }
    }

    /// The balance of an account, asserting a 200 state answer.
    pub async fn balance(&self, account: impl Display) -> i64 {
        let answer = self.state(account).await;
        answer.assert_status(StatusCode::OK);
        answer.json()["balance"].as_i64().expect("a balance")
    }

    /// The events of one default page, asserting 200.
    pub async fn event_list(&self, account: impl Display) -> Vec<Value> {
        let answer = self.events(account).await;
        answer.assert_status(StatusCode::OK);
        answer.json().as_array().expect("an array").clone()
    }

    /// What a client can observe of an account: its state answer's body
    /// and its whole event stream's, to compare before and after a request
    /// that must change nothing.
    pub async fn observe(&self, account: impl Display) -> (String, String) {
        let state = self.state(&account).await.body;
        let events = self.events_page(&account, None, Some(10_000)).await.body;
        (state, events)
    }

    /// The whole event stream, following `Link: <…>; rel="next"`.
    pub async fn all_events(&self, account: impl Display) -> Vec<Value> {
        let mut events = Vec::new();
        let mut target = ApiRequest::events_page(account, None, Some(10_000)).target;
        loop {
            let answer = self.get(target.clone()).await;
            answer.assert_status(StatusCode::OK);
            events.extend(answer.json().as_array().expect("an array").clone());
            let next = answer
                .header("link")
                .and_then(|link| link.strip_prefix('<')?.split_once('>'))
                .map(|(next, _)| next.to_owned());
            match next {
                Some(next) => target = next,
                None => return events,
            }
        }
    }
}

/// One request, ready to go: `.await` it for the [`Answer`], or
/// [`Call::reply`] to see a missing one.
pub struct Call<'a, T> {
    client: &'a Client<T>,
    request: ApiRequest,
    timeout: Option<Duration>,
}

impl<T: Transport> Call<'_, T> {
    pub fn request(&self) -> &ApiRequest {
        &self.request
    }

    /// This request gives up after `timeout`.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.request = self.request.header(name, value);
        self
    }

    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.request = self.request.body(body);
        self
    }

    /// The answer, or why there was none.
    pub async fn reply(self) -> Reply {
        let sent = self.client.transport.send(self.request);
        match self.timeout {
            Some(timeout) => tokio::time::timeout(timeout, sent)
                .await
                .unwrap_or(Err(NoAnswer::Timeout)),
            None => sent.await,
        }
    }
}

impl<'a, T: Transport> IntoFuture for Call<'a, T> {
    type Output = Answer;
    type IntoFuture = Pin<Box<dyn Future<Output = Answer> + Send + 'a>>;

    fn into_future(self) -> Self::IntoFuture {
        let (method, target) = (self.request.method.clone(), self.request.target.clone());
        Box::pin(async move {
            self.reply()
                .await
                .unwrap_or_else(|error| panic!("{method} {target}: {error}"))
        })
    }
}

/// Where an [`EventStream`] reads its bytes from.
enum StreamBody {
    Socket(reqwest::Response),
    InProcess(Body),
}

/// A Server-Sent Events answer (the feed's stream), read as it arrives.
pub struct EventStream {
    pub status: StatusCode,
    body: StreamBody,
    parser: SseParser,
    queued: std::collections::VecDeque<SseItem>,
}

/// One message of the feed's stream: its `id`, `event` and parsed `data`.
#[derive(Clone, Debug, PartialEq)]
pub struct FeedMessage {
    pub id: u64,
    pub event: String,
    pub data: Value,
}

impl EventStream {
    /// The next item (message or comment); `None` once the stream ended.
    pub async fn next_item(&mut self) -> Option<SseItem> {
        loop {
            if let Some(item) = self.queued.pop_front() {
                return Some(item);
            }
            let chunk = match &mut self.body {
                StreamBody::Socket(response) => response.chunk().await.ok()??.to_vec(),
                StreamBody::InProcess(body) => match body.frame().await? {
                    Ok(frame) => match frame.into_data() {
                        Ok(data) => data.to_vec(),
                        Err(_) => continue,
                    },
                    Err(_) => return None,
                },
            };
            // A line past the bound ends the stream, as for the real client.
            self.queued.extend(self.parser.push(&chunk).ok()?);
        }
    }

    /// The next message, skipping comments; `None` once the stream ended.
    pub async fn next_message(&mut self) -> Option<FeedMessage> {
        loop {
            if let SseItem::Message { id, event, data } = self.next_item().await? {
                return Some(FeedMessage {
                    id: id.and_then(|id| id.parse().ok()).expect("a numeric id"),
                    event: event.expect("an event type"),
                    data: serde_json::from_str(&data).expect("data is JSON"),
                });
            }
        }
    }

    /// The next `n` messages, failing the test if the stream ends first.
    pub async fn messages(&mut self, n: usize) -> Vec<FeedMessage> {
        let mut messages = Vec::with_capacity(n);
        while messages.len() < n {
            let message = self.next_message().await;
            messages.push(message.unwrap_or_else(|| {
                panic!("the stream ended after {} of {n} messages", messages.len())
            }));
        }
        messages
    }
}

/// Opens a streamed answer: the transports that can keep reading a body
/// after its head arrived.
pub trait Streaming: Transport {
    fn open_stream(&self, request: ApiRequest) -> impl Future<Output = EventStream> + Send;
}

impl Streaming for InProcess {
    async fn open_stream(&self, request: ApiRequest) -> EventStream {
        let mut builder = axum::http::Request::builder()
            .method(request.method)
            .uri(&request.target);
        for (name, value) in &request.headers {
            builder = builder.header(name, value);
        }
        let request = builder.body(Body::from(request.body)).expect("a request");
        let response = self
            .router
            .clone()
            .oneshot(request)
            .await
            .expect("the router is infallible");
        let (parts, body) = response.into_parts();
        EventStream {
            status: parts.status,
            body: StreamBody::InProcess(body),
            parser: SseParser::new(),
            queued: Default::default(),
        }
    }
}

impl Streaming for Socket {
    async fn open_stream(&self, request: ApiRequest) -> EventStream {
        self.try_open_stream(request)
            .await
            .unwrap_or_else(|error| panic!("opening the stream: {error}"))
    }
}

impl Socket {
    /// [`Streaming::open_stream`], or why there was no answer: what a
    /// consumer that reconnects needs.
    pub async fn try_open_stream(&self, request: ApiRequest) -> Result<EventStream, NoAnswer> {
        let url = format!("{}{}", self.base, request.target);
        let response = self
            .http
            .request(request.method, url)
            .headers(request.headers)
            .send()
            .await
            .map_err(no_answer)?;
        Ok(EventStream {
            status: response.status(),
            body: StreamBody::Socket(response),
            parser: SseParser::new(),
            queued: Default::default(),
        })
    }
}

impl<T: Streaming> Client<T> {
    /// The feed's stream (with the client's token), asserting 200.
    pub async fn follow(&self, after: Option<u64>, last_event_id: Option<u64>) -> EventStream {
        let request = self.feed_stream(after, last_event_id).request;
        let stream = self.transport.open_stream(request).await;
        assert_eq!(stream.status, StatusCode::OK, "the feed stream opens");
        stream
    }
}

impl<T: Transport> Client<T> {
    /// One page of the feed, asserting 200.
    pub async fn feed_page(&self, after: u64, limit: u64) -> Vec<Value> {
        let answer = self.feed(Some(after), Some(limit), None).await;
        answer.assert_status(StatusCode::OK);
        answer.json().as_array().expect("an array").clone()
    }

    /// The whole feed from the start, in pages of `limit`, resuming each
    /// page after the last position given.
    pub async fn whole_feed(&self, limit: u64) -> Vec<Value> {
        let mut feed: Vec<Value> = Vec::new();
        loop {
            let after = feed.last().map_or(0, position);
            let page = self.feed_page(after, limit).await;
            if page.is_empty() {
                return feed;
            }
            feed.extend(page);
        }
    }
}

/// The `position` of a feed object.
pub fn position(event: &Value) -> u64 {
    event["position"].as_u64().expect("a position")
}
