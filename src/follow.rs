//! `accounts feed [--after P] [URL]`: the smallest useful consumer of the
//! feed. It prints every event after position P as one JSON line and
//! follows the feed live over Server-Sent Events; when the connection ends
//! (the instance restarts, a proxy times out, the consumer was too slow) it
//! reconnects, so nothing is skipped or printed twice.
//!
//! A reconnection resumes one position early and checks that the event at
//! the last printed position is still the one printed: a database failover
//! that lost committed events hands their positions to new events, and a
//! reader resuming after them would skip those silently. Rather than skip,
//! `accounts feed` stops with an error naming the position.

use std::io::Write;
use std::time::Duration;

use http_body_util::{BodyExt, Empty};
use hyper::body::{Bytes, Incoming};
use hyper::header::{ACCEPT, AUTHORIZATION, HeaderValue};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;

use crate::http::REWIND_EVENT;

/// Wait between reconnection attempts: short enough that a restarting
/// instance is picked up quickly, long enough not to hammer a dead one.
pub const RECONNECT_MS: u64 = 500;

/// The longest line the client keeps while waiting for its end. A feed
/// event is well under a kilobyte; a peer that sends more without a line
/// break is broken, and the connection is dropped and made again.
pub const SSE_LINE_BYTES_MAX: usize = 1 << 20;

/// One item of a Server-Sent Events stream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SseItem {
    /// A message: its `id`, `event` and `data` fields (data lines joined
    /// with `\n`, as the SSE specification says).
    Message {
        id: Option<String>,
        event: Option<String>,
        data: String,
    },
    /// A comment line (`: …`), as keep-alives are sent.
    Comment(String),
}

/// A line longer than [`SSE_LINE_BYTES_MAX`].
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[error("a Server-Sent Events line is longer than {SSE_LINE_BYTES_MAX} bytes")]
pub struct LineTooLong;

/// Splits a Server-Sent Events byte stream into items, whatever the chunk
/// boundaries (a line or a UTF-8 character may be split across chunks).
/// Lines end with CRLF, LF or a lone CR, as the specification allows.
#[derive(Debug, Default)]
pub struct SseParser {
    pending: Vec<u8>,
    /// The last chunk ended with CR: an LF starting the next one belongs
    /// to that line end.
    after_cr: bool,
    id: Option<String>,
    event: Option<String>,
    data: Option<String>,
}

impl SseParser {
    pub fn new() -> SseParser {
        SseParser::default()
    }

    /// The items completed by `chunk`.
    pub fn push(&mut self, mut chunk: &[u8]) -> Result<Vec<SseItem>, LineTooLong> {
        if std::mem::take(&mut self.after_cr) && chunk.first() == Some(&b'\n') {
            chunk = &chunk[1..];
        }
        let mut pending = std::mem::take(&mut self.pending);
        pending.extend_from_slice(chunk);
        let mut items = Vec::new();
        let mut start = 0;
        while let Some(length) = pending[start..]
            .iter()
            .position(|&b| b == b'\n' || b == b'\r')
        {
            let end = start + length;
            let line = String::from_utf8_lossy(&pending[start..end]);
            if let Some(item) = self.line(&line) {
                items.push(item);
            }
            start = end + 1;
            if pending[end] == b'\r' {
                match pending.get(start) {
                    Some(b'\n') => start += 1,
                    Some(_) => {}
                    None => self.after_cr = true,
                }
            }
        }
        // Only the unfinished line is kept: one copy per chunk, not per line.
        pending.drain(..start);
        if pending.len() > SSE_LINE_BYTES_MAX {
            return Err(LineTooLong);
        }
        self.pending = pending;
        Ok(items)
    }

    fn line(&mut self, line: &str) -> Option<SseItem> {
        if line.is_empty() {
            let data = self.data.take();
            let (id, event) = (self.id.take(), self.event.take());
            return data.map(|data| SseItem::Message { id, event, data });
        }
        if let Some(comment) = line.strip_prefix(':') {
            return Some(SseItem::Comment(comment.trim_start().to_owned()));
        }
        let (field, value) = line.split_once(':').unwrap_or((line, ""));
        let value = value.strip_prefix(' ').unwrap_or(value).to_owned();
        match field {
            "id" => self.id = Some(value),
            "event" => self.event = Some(value),
            "data" => match &mut self.data {
                Some(data) => {
                    data.push('\n');
                    data.push_str(&value);
                }
                None => self.data = Some(value),
            },
            _ => {}
        }
        None
    }
}

/// Why following stopped for good.
#[derive(Debug, thiserror::Error)]
pub enum FollowError {
    #[error("invalid URL {0:?}: {1}")]
    Url(String, String),
    /// A 4xx: retrying cannot help (a bad token, not an admin, a bad position).
    #[error("{url}: {status}: {body}")]
    Refused {
        url: String,
        status: u16,
        body: String,
    },
    /// The feed no longer holds, at a position already printed, the event
    /// printed there: going on would skip or repeat events.
    #[error(
        "the feed's history changed at position {position} ({detail}): committed events were \
         lost, as after a failover to a database that lacked them; stopping rather than skip \
         any (resume with --after once the loss is understood)"
    )]
    Rewound { position: u64, detail: String },
    #[error("writing the output: {0}")]
    Output(#[from] std::io::Error),
}

/// Where the reader is: the last event printed, which the feed must go on
/// holding at its position.
#[derive(Debug)]
pub struct Cursor {
    after: u64,
    last: Option<Value>,
    /// A reconnection asked for the last printed event again; the next
    /// message must be it.
    overlap: bool,
}

/// What to do with one message.
#[derive(Debug, PartialEq)]
pub enum Step {
    Print(String),
    /// The repeated last event, as expected.
    Skip,
}

impl Cursor {
    pub fn new(after: u64) -> Cursor {
        Cursor {
            after,
            last: None,
            overlap: false,
        }
    }

    /// The position to resume after: one early once an event was printed,
    /// so that it comes again and can be compared.
    pub fn resume_after(&mut self) -> u64 {
        self.overlap = self.last.is_some() && self.after > 0;
        if self.overlap {
            self.after - 1
        } else {
            self.after
        }
    }

    pub fn accept(
        &mut self,
        id: Option<&str>,
        event: Option<&str>,
        data: String,
    ) -> Result<Step, FollowError> {
        if event == Some(REWIND_EVENT) {
            return Err(self.rewound(format!("the service says: {data}")));
        }
        let position: Option<u64> = id.and_then(|id| id.parse().ok());
        let value = serde_json::from_str(&data).unwrap_or_else(|_| Value::String(data.clone()));
        if std::mem::take(&mut self.overlap) {
            if position == Some(self.after) && self.last.as_ref() == Some(&value) {
                return Ok(Step::Skip);
            }
            let printed = self.last.as_ref().map(Value::to_string).unwrap_or_default();
            return Err(self.rewound(format!(
                "printed there: {printed}; the feed now gives {data} at {}",
                id.unwrap_or("no position")
            )));
        }
        if let Some(position) = position {
            if position <= self.after {
                return Err(self.rewound(format!("the feed gives position {position} again")));
            }
            self.after = position;
            self.last = Some(value);
        }
        Ok(Step::Print(data))
    }

    fn rewound(&self, detail: String) -> FollowError {
        FollowError::Rewound {
            position: self.after,
            detail,
        }
    }
}

/// Prints the feed of the instance at `base_url` after position `after` to
/// `out`, one JSON object per line, and follows it for ever (until an error
/// retrying cannot cure). `token` is sent as a bearer token.
pub async fn follow(
    base_url: &str,
    after: u64,
    token: Option<&str>,
    out: &mut (impl Write + Send),
) -> Result<(), FollowError> {
    let url = format!("{}/api/events/stream", base_url.trim_end_matches('/'));
    let uri: hyper::Uri = url
        .parse()
        .map_err(|e: hyper::http::uri::InvalidUri| FollowError::Url(url.clone(), e.to_string()))?;
    if uri.scheme_str() != Some("http") {
        return Err(FollowError::Url(url, "only http:// is supported".into()));
    }
    let authorization = token
        .map(|token| HeaderValue::from_str(&format!("Bearer {token}")))
        .transpose()
        .map_err(|_| FollowError::Url(url.clone(), "the token is not header text".into()))?;
    let client = Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
    let mut cursor = Cursor::new(after);
    loop {
        let mut request = hyper::Request::get(uri.clone())
            .header(ACCEPT, "text/event-stream")
            .header("last-event-id", cursor.resume_after().to_string())
            .body(Empty::new())
            .expect("a valid request");
        if let Some(authorization) = &authorization {
            request
                .headers_mut()
                .insert(AUTHORIZATION, authorization.clone());
        }
        match client.request(request).await {
            Ok(response) if response.status().is_success() => {
                print_stream(response.into_body(), &mut cursor, out).await?;
            }
            Ok(response) if response.status().is_client_error() => {
                let status = response.status().as_u16();
                let body = match response.into_body().collect().await {
                    Ok(body) => String::from_utf8_lossy(&body.to_bytes()).into_owned(),
                    Err(_) => String::new(),
                };
                return Err(FollowError::Refused { url, status, body });
            }
            Ok(response) => {
                tracing::warn!(status = %response.status(), "feed: retrying");
            }
            Err(error) => tracing::warn!(%error, "feed: cannot connect; retrying"),
        }
        tokio::time::sleep(Duration::from_millis(RECONNECT_MS)).await;
    }
}

/// Prints one stream's messages until it ends or breaks (then the caller
/// reconnects), or the history it resumed from changed.
async fn print_stream(
    mut body: Incoming,
    cursor: &mut Cursor,
    out: &mut (impl Write + Send),
) -> Result<(), FollowError> {
    let mut parser = SseParser::new();
    while let Some(Ok(frame)) = body.frame().await {
        let Some(chunk) = frame.data_ref() else {
            continue;
        };
        let items = match parser.push(chunk) {
            Ok(items) => items,
            Err(error) => {
                tracing::warn!(%error, "feed: reconnecting");
                return Ok(());
            }
        };
        for item in items {
            if let SseItem::Message { id, event, data } = item
                && let Step::Print(data) = cursor.accept(id.as_deref(), event.as_deref(), data)?
            {
                writeln!(out, "{data}")?;
                out.flush()?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_and_comments_split_anywhere() {
        let text = b": keep-alive\n\nid: 7\nevent: MoneyDeposited\ndata: {\"a\":\"\xc3\xa9\"}\n\r\nid:8\ndata: x\ndata: y\n\n";
        for cut in 0..text.len() {
            let mut parser = SseParser::new();
            let mut items = parser.push(&text[..cut]).unwrap();
            items.extend(parser.push(&text[cut..]).unwrap());
            assert_eq!(
                items,
                vec![
                    SseItem::Comment("keep-alive".into()),
                    SseItem::Message {
                        id: Some("7".into()),
                        event: Some("MoneyDeposited".into()),
                        data: "{\"a\":\"é\"}".into()
                    },
                    SseItem::Message {
                        id: Some("8".into()),
                        event: None,
                        data: "x\ny".into()
                    },
                ],
                "cut at {cut}"
            );
        }
    }

    #[test]
    fn lone_cr_and_crlf_end_lines_whatever_the_cut() {
        let text = b"id: 1\rdata: a\r\rid: 2\r\ndata: b\r\n\r\nid: 3\ndata: c\n\n";
        let expected: Vec<SseItem> = [("1", "a"), ("2", "b"), ("3", "c")]
            .map(|(id, data)| SseItem::Message {
                id: Some(id.into()),
                event: None,
                data: data.into(),
            })
            .into();
        for cut in 0..text.len() {
            let mut parser = SseParser::new();
            let mut items = parser.push(&text[..cut]).unwrap();
            items.extend(parser.push(&text[cut..]).unwrap());
            assert_eq!(items, expected, "cut at {cut}");
        }
    }

    #[test]
    fn a_line_past_the_bound_is_refused_not_kept() {
        let mut parser = SseParser::new();
        let long = vec![b'x'; SSE_LINE_BYTES_MAX];
        assert_eq!(parser.push(&long), Ok(Vec::new()));
        assert_eq!(parser.push(b"x"), Err(LineTooLong));
        let mut parser = SseParser::new();
        let mut line = long.clone();
        line.push(b'\n');
        assert_eq!(
            parser.push(&line),
            Ok(Vec::new()),
            "a line at the bound is fine"
        );
    }

    fn event(position: u64, amount: u64) -> (String, String) {
        let data = format!("{{\"position\":{position},\"amount\":{amount}}}");
        (position.to_string(), data)
    }

    #[test]
    fn a_reconnection_skips_the_repeated_last_event_and_prints_on() {
        let mut cursor = Cursor::new(0);
        assert_eq!(cursor.resume_after(), 0, "nothing printed: no overlap");
        for position in [3, 5] {
            let (id, data) = event(position, 1);
            let step = cursor.accept(Some(&id), Some("MoneyDeposited"), data.clone());
            assert_eq!(step.unwrap(), Step::Print(data));
        }
        assert_eq!(cursor.resume_after(), 4, "one early, so 5 comes again");
        // The same event, serialized with other spacing, is the same event.
        let again = "{ \"amount\": 1, \"position\": 5 }".to_owned();
        assert_eq!(cursor.accept(Some("5"), None, again).unwrap(), Step::Skip);
        let (id, data) = event(6, 1);
        assert_eq!(
            cursor.accept(Some(&id), None, data.clone()).unwrap(),
            Step::Print(data)
        );
    }

    #[test]
    fn a_changed_or_missing_event_at_the_resume_position_is_a_rewind() {
        let printed = |cursor: &mut Cursor| {
            let (id, data) = event(5, 1);
            cursor.accept(Some(&id), None, data).unwrap();
            cursor.resume_after();
        };
        // Another event now holds position 5.
        let mut cursor = Cursor::new(0);
        printed(&mut cursor);
        let (id, data) = event(5, 2);
        let error = cursor.accept(Some(&id), None, data).unwrap_err();
        assert!(
            matches!(error, FollowError::Rewound { position: 5, .. }),
            "{error}"
        );
        // Position 5 is gone: the feed goes on at 6.
        let mut cursor = Cursor::new(0);
        printed(&mut cursor);
        let (id, data) = event(6, 1);
        assert!(cursor.accept(Some(&id), None, data).is_err());
        // The service itself says so.
        let mut cursor = Cursor::new(0);
        let step = cursor.accept(None, Some(REWIND_EVENT), "{}".into());
        assert!(matches!(step, Err(FollowError::Rewound { .. })));
        // A position at or below one printed, on the same connection.
        let mut cursor = Cursor::new(0);
        let (id, data) = event(5, 1);
        cursor.accept(Some(&id), None, data).unwrap();
        let (id, data) = event(4, 1);
        assert!(cursor.accept(Some(&id), None, data).is_err());
    }

    #[test]
    fn a_start_position_alone_is_no_overlap() {
        let mut cursor = Cursor::new(9);
        assert_eq!(
            cursor.resume_after(),
            9,
            "nothing printed, nothing to compare"
        );
        let (id, data) = event(10, 1);
        assert_eq!(
            cursor.accept(Some(&id), None, data.clone()).unwrap(),
            Step::Print(data)
        );
    }
}
