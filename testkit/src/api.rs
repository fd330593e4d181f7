//! Every request of the API (docs/API.md), built in one place for both URL
//! styles. Values go into the URL exactly as given, so a test can send a
//! malformed, pre-encoded or hostile one (`%2B5`, `banana`); ids may be any
//! `Display` (a `Uuid`, an `AccountId`, a `String`).

use std::fmt::Display;

use axum::http::header::{ACCEPT, HeaderName, HeaderValue};
use axum::http::{HeaderMap, Method};

/// The two URL styles every money operation is served in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Style {
    /// `PUT /api/account/{id}?deposit=…&transactionId=…`
    Query,
    /// `PUT /api/account/{id}/deposit?amount=…&transactionId=…`
    Path,
}

impl Style {
    pub const BOTH: [Style; 2] = [Style::Query, Style::Path];
}

/// One HTTP request, independent of how it travels: method, request target
/// (path and query), headers and body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiRequest {
    pub method: Method,
    pub target: String,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

fn account_path(account: impl Display) -> String {
    format!("/api/account/{account}")
}

/// A money operation's URL in either style: the query style names the
/// operation as the parameter that carries the amount (or the target), the
/// path style as a path segment; `parameters` start with that value.
fn money(
    style: Style,
    account: impl Display,
    operation: &str,
    parameters: &str,
    transaction: impl Display,
) -> ApiRequest {
    let base = account_path(account);
    let target = match style {
        Style::Query => format!("{base}?{operation}={parameters}&transactionId={transaction}"),
        Style::Path => format!("{base}/{operation}?{parameters}&transactionId={transaction}"),
    };
    ApiRequest::new(Method::PUT, target)
}

impl ApiRequest {
    /// Any method and request target: the raw request of hostile tests.
    pub fn new(method: Method, target: impl Into<String>) -> ApiRequest {
        ApiRequest {
            method,
            target: target.into(),
            headers: HeaderMap::new(),
            body: Vec::new(),
        }
    }

    /// Adds a header; panics on a name or value HTTP cannot carry (a test bug).
    pub fn header(mut self, name: &str, value: &str) -> ApiRequest {
        let name = HeaderName::try_from(name).expect("a valid header name");
        let value = HeaderValue::try_from(value).expect("a valid header value");
        self.headers.append(name, value);
        self
    }

    pub fn body(mut self, body: impl Into<Vec<u8>>) -> ApiRequest {
        self.body = body.into();
        self
    }

    /// Whether the request is for the API proper (`/api/…`), the part a
    /// bearer token guards; `/ping`, `/ready`, `/metrics` never need one.
    pub fn is_api(&self) -> bool {
        self.target.starts_with("/api/")
    }

    pub fn open(account: impl Display, owner: impl Display) -> ApiRequest {
        ApiRequest::new(
            Method::POST,
            format!("{}?owner={owner}", account_path(account)),
        )
    }

    pub fn state(account: impl Display) -> ApiRequest {
        ApiRequest::new(Method::GET, account_path(account))
    }

    /// The state right after event `version` (read side).
    pub fn state_at_version(account: impl Display, version: u64) -> ApiRequest {
        ApiRequest::new(
            Method::GET,
            format!("{}?version={version}", account_path(account)),
        )
    }

    /// The state as of an RFC 3339 time (read side); a `+` offset must come
    /// percent-encoded.
    pub fn state_at_time(account: impl Display, at: impl Display) -> ApiRequest {
        ApiRequest::new(Method::GET, format!("{}?at={at}", account_path(account)))
    }

    pub fn deposit(
        style: Style,
        account: impl Display,
        amount: impl Display,
        transaction: impl Display,
    ) -> ApiRequest {
        single_amount(style, account, "deposit", amount, transaction)
    }

    pub fn withdraw(
        style: Style,
        account: impl Display,
        amount: impl Display,
        transaction: impl Display,
    ) -> ApiRequest {
        single_amount(style, account, "withdraw", amount, transaction)
    }

    pub fn transfer(
        style: Style,
        from: impl Display,
        to: impl Display,
        amount: impl Display,
        transaction: impl Display,
    ) -> ApiRequest {
        let parameters = match style {
            Style::Query => format!("{to}&amount={amount}"),
            Style::Path => format!("targetAccount={to}&amount={amount}"),
        };
        money(style, from, "transfer", &parameters, transaction)
    }

    /// A close without a transactionId (the service generates one).
    pub fn close(account: impl Display) -> ApiRequest {
        ApiRequest::new(Method::DELETE, account_path(account))
    }

    pub fn close_with(account: impl Display, transaction: impl Display) -> ApiRequest {
        ApiRequest::new(
            Method::DELETE,
            format!("{}?transactionId={transaction}", account_path(account)),
        )
    }

    /// The event stream with the service's default paging.
    pub fn events(account: impl Display) -> ApiRequest {
        ApiRequest::new(Method::GET, format!("{}/events", account_path(account)))
    }

    /// One page of the event stream: from sequence number `from`, at most
    /// `limit` events (`None`: the service's default).
    pub fn events_page(account: impl Display, from: Option<u64>, limit: Option<u64>) -> ApiRequest {
        let query = query(&[("from", from), ("limit", limit)]);
        ApiRequest::new(
            Method::GET,
            format!("{}/events{query}", account_path(account)),
        )
    }

    /// The store-wide feed (read side): events after position `after`, at
    /// most `limit`, held up to `wait_ms` when nothing follows.
    pub fn feed(after: Option<u64>, limit: Option<u64>, wait_ms: Option<u64>) -> ApiRequest {
        let query = query(&[("after", after), ("limit", limit), ("waitMs", wait_ms)]);
        ApiRequest::new(Method::GET, format!("/api/events{query}"))
    }

    /// The feed as Server-Sent Events (read side), resuming after `after`
    /// or after `last_event_id` (the header wins).
    pub fn feed_stream(after: Option<u64>, last_event_id: Option<u64>) -> ApiRequest {
        let query = query(&[("after", after)]);
        let mut request = ApiRequest::new(Method::GET, format!("/api/events/stream{query}"));
        request
            .headers
            .insert(ACCEPT, HeaderValue::from_static("text/event-stream"));
        match last_event_id {
            Some(id) => request.header("last-event-id", &id.to_string()),
            None => request,
        }
    }

    pub fn ping() -> ApiRequest {
        ApiRequest::new(Method::GET, "/ping")
    }

    pub fn ready() -> ApiRequest {
        ApiRequest::new(Method::GET, "/ready")
    }

    pub fn metrics() -> ApiRequest {
        ApiRequest::new(Method::GET, "/metrics")
    }

    pub fn openapi() -> ApiRequest {
        ApiRequest::new(Method::GET, "/openapi.json")
    }
}

/// The amount of a deposit or withdrawal: the operation's own parameter in
/// the query style, `amount` in the path style.
/// A deposit or a withdrawal: the amount is the operation's own value in
/// the query style, `amount=` in the path style.
fn single_amount(
    style: Style,
    account: impl Display,
    operation: &str,
    amount: impl Display,
    transaction: impl Display,
) -> ApiRequest {
    let parameters = match style {
        Style::Query => amount.to_string(),
        Style::Path => format!("amount={amount}"),
    };
    money(style, account, operation, &parameters, transaction)
}

/// `?a=1&b=2` of the parameters that have a value, or nothing.
fn query(parameters: &[(&str, Option<u64>)]) -> String {
    let given: Vec<String> = parameters
        .iter()
        .filter_map(|(name, value)| value.map(|value| format!("{name}={value}")))
        .collect();
    if given.is_empty() {
        String::new()
    } else {
        format!("?{}", given.join("&"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn money_operations_in_both_styles() {
        let cases = [
            (
                ApiRequest::deposit(Style::Query, "a", 5, "t"),
                "/api/account/a?deposit=5&transactionId=t",
            ),
            (
                ApiRequest::deposit(Style::Path, "a", 5, "t"),
                "/api/account/a/deposit?amount=5&transactionId=t",
            ),
            (
                ApiRequest::withdraw(Style::Query, "a", "%2B5", "t"),
                "/api/account/a?withdraw=%2B5&transactionId=t",
            ),
            (
                ApiRequest::withdraw(Style::Path, "a", 5, "t"),
                "/api/account/a/withdraw?amount=5&transactionId=t",
            ),
            (
                ApiRequest::transfer(Style::Query, "a", "b", 5, "t"),
                "/api/account/a?transfer=b&amount=5&transactionId=t",
            ),
            (
                ApiRequest::transfer(Style::Path, "a", "b", 5, "t"),
                "/api/account/a/transfer?targetAccount=b&amount=5&transactionId=t",
            ),
        ];
        for (request, target) in cases {
            assert_eq!(request.method, Method::PUT);
            assert_eq!(request.target, target);
        }
    }

    #[test]
    fn optional_parameters_appear_only_when_given() {
        assert_eq!(
            ApiRequest::events_page("a", None, None).target,
            "/api/account/a/events"
        );
        assert_eq!(
            ApiRequest::events_page("a", Some(2), Some(3)).target,
            "/api/account/a/events?from=2&limit=3"
        );
        assert_eq!(
            ApiRequest::feed(Some(0), None, Some(100)).target,
            "/api/events?after=0&waitMs=100"
        );
        let stream = ApiRequest::feed_stream(None, Some(17));
        assert_eq!(stream.target, "/api/events/stream");
        assert_eq!(stream.headers["last-event-id"], "17");
        assert_eq!(stream.headers["accept"], "text/event-stream");
    }
}
