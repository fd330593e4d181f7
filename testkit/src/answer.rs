//! What a request got back: an [`Answer`] (status, headers, body) with the
//! assertions docs/API.md asks of it, or [`NoAnswer`] at all.

use std::fmt;

use accounts::http::{ErrorBody, ErrorCode, WWW_AUTHENTICATE_BEARER};
use axum::http::{HeaderMap, StatusCode};
use serde_json::Value;

/// One HTTP answer, whichever transport carried it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    /// The body as text (every body the service sends is UTF-8; anything
    /// else is kept lossily, so assertions on it fail readably).
    pub body: String,
}

/// A request that got no HTTP answer: the outcome is unknown to the client.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NoAnswer {
    /// Nothing within the client's timeout.
    Timeout,
    /// Refused, reset, or closed before a whole answer came.
    Failed(String),
}

impl fmt::Display for NoAnswer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NoAnswer::Timeout => write!(f, "no answer in time"),
            NoAnswer::Failed(error) => write!(f, "failed: {error}"),
        }
    }
}

/// What a client records of one exchange.
pub type Reply = Result<Answer, NoAnswer>;

impl Answer {
    pub fn new(status: StatusCode, headers: HeaderMap, body: &[u8]) -> Answer {
        Answer {
            status,
            headers,
            body: String::from_utf8_lossy(body).into_owned(),
        }
    }

    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("body is not JSON ({e}): {:?}", self.body))
    }

    /// The `sequenceNumber`s of an event-stream page, in order.
    pub fn sequence_numbers(&self) -> Vec<u64> {
        let events = self.json();
        let events = events.as_array().expect("an event stream is an array");
        events
            .iter()
            .map(|e| e["sequenceNumber"].as_u64().expect("a sequence number"))
            .collect()
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .get(name)
            .map(|v| v.to_str().expect("header is text"))
    }

    /// The machine-readable code of an error body, if the body is one.
    pub fn error_code(&self) -> Option<ErrorCode> {
        serde_json::from_str::<ErrorBody>(&self.body)
            .ok()
            .map(|error| error.code)
    }

    pub fn assert_status(&self, status: StatusCode) -> &Answer {
        assert_eq!(self.status, status, "body: {}", self.body);
        self
    }

    /// An error answer of docs/API.md, whatever its code: a JSON content
    /// type and a `{"code": …, "message": …}` body (keys in that order, a
    /// non-empty message) whose code belongs to the answer's status.
    pub fn assert_json_error(&self) -> ErrorBody {
        assert_eq!(
            self.header("content-type"),
            Some("application/json"),
            "status {}: {}",
            self.status,
            self.body
        );
        let body: ErrorBody = serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("not an error body ({e}): {:?}", self.body));
        assert_eq!(
            serde_json::to_string(&body).expect("serializes"),
            self.body,
            "exactly code, then message"
        );
        assert_eq!(body.code.status(), self.status, "the code's own status");
        assert!(!body.message.is_empty(), "an error names its problem");
        body
    }

    /// [`Answer::assert_json_error`] with this status and code, and a
    /// message containing `needle`.
    pub fn assert_error(&self, status: StatusCode, code: &str, needle: &str) {
        assert_eq!(self.status, status, "body: {}", self.body);
        let body = self.assert_json_error();
        assert_eq!(body.code.as_str(), code, "body: {}", self.body);
        assert!(
            body.message.contains(needle),
            "message {:?} should mention {needle:?}",
            body.message
        );
    }

    /// [`Answer::assert_json_error`] with this code (and so its status).
    pub fn assert_error_code(&self, code: &str) -> ErrorBody {
        let body = self.assert_json_error();
        assert_eq!(body.code.as_str(), code, "{}", self.body);
        body
    }

    /// The 401 of docs/API.md: the `unauthorized` error body and the bearer
    /// challenge of RFC 6750.
    pub fn assert_unauthorized(&self) -> ErrorBody {
        let body = self.assert_error_code("unauthorized");
        assert_eq!(
            self.header("www-authenticate"),
            Some(WWW_AUTHENTICATE_BEARER),
            "{self:?}"
        );
        body
    }
}
