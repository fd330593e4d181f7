//! `accounts feed [--after P] [URL]`: the smallest useful consumer of the
//! feed. It prints every event after position P as one JSON line and
//! follows the feed live over Server-Sent Events; when the connection ends
//! (the instance restarts, a proxy times out, the consumer was too slow) it
//! reconnects with `Last-Event-ID`, so nothing is skipped or printed twice.

use std::io::Write;
use std::time::Duration;

use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper::header::{ACCEPT, AUTHORIZATION, HeaderValue};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

/// Wait between reconnection attempts: short enough that a restarting
/// instance is picked up quickly, long enough not to hammer a dead one.
pub const RECONNECT_MS: u64 = 500;

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

/// Splits a Server-Sent Events byte stream into items, whatever the chunk
/// boundaries (a line or a UTF-8 character may be split across chunks).
#[derive(Debug, Default)]
pub struct SseParser {
    pending: Vec<u8>,
    id: Option<String>,
    event: Option<String>,
    data: Option<String>,
}

impl SseParser {
    pub fn new() -> SseParser {
        SseParser::default()
    }

    /// The items completed by `chunk`.
    pub fn push(&mut self, chunk: &[u8]) -> Vec<SseItem> {
        let mut pending = std::mem::take(&mut self.pending);
        pending.extend_from_slice(chunk);
        let mut items = Vec::new();
        let mut start = 0;
        while let Some(length) = pending[start..].iter().position(|&b| b == b'\n') {
            let line = String::from_utf8_lossy(&pending[start..start + length]);
            if let Some(item) = self.line(line.trim_end_matches('\r')) {
                items.push(item);
            }
            start += length + 1;
        }
        // Only the unfinished line is kept: one copy per chunk, not per line.
        pending.drain(..start);
        self.pending = pending;
        items
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
    #[error("writing the output: {0}")]
    Output(#[from] std::io::Error),
}

/// Prints the feed of the instance at `base_url` after position `after` to
/// `out`, one JSON object per line, and follows it for ever (until an error
/// retrying cannot cure). `token` is sent as a bearer token.
pub async fn follow(
    base_url: &str,
    mut after: u64,
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
    loop {
        let mut request = hyper::Request::get(uri.clone())
            .header(ACCEPT, "text/event-stream")
            .header("last-event-id", after.to_string())
            .body(Empty::new())
            .expect("a valid request");
        if let Some(authorization) = &authorization {
            request
                .headers_mut()
                .insert(AUTHORIZATION, authorization.clone());
        }
        match client.request(request).await {
            Ok(response) if response.status().is_success() => {
                let mut body = response.into_body();
                let mut parser = SseParser::new();
                // Ends when the server ends the stream or the connection drops.
                while let Some(Ok(frame)) = body.frame().await {
                    let Some(chunk) = frame.data_ref() else {
                        continue;
                    };
                    for item in parser.push(chunk) {
                        if let SseItem::Message { id, data, .. } = item {
                            writeln!(out, "{data}")?;
                            out.flush()?;
                            if let Some(position) = id.and_then(|id| id.parse().ok()) {
                                after = position;
                            }
                        }
                    }
                }
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

#[cfg(test)]
mod tests {
    use super::{SseItem, SseParser};

    #[test]
    fn messages_and_comments_split_anywhere() {
        let text = b": keep-alive\n\nid: 7\nevent: MoneyDeposited\ndata: {\"a\":\"\xc3\xa9\"}\n\r\nid:8\ndata: x\ndata: y\n\n";
        for cut in 0..text.len() {
            let mut parser = SseParser::new();
            let mut items = parser.push(&text[..cut]);
            items.extend(parser.push(&text[cut..]));
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
}
