//! Bytes on a real socket, for requests no HTTP client would send
//! (slowloris, malformed heads, oversized ones) and for reading exactly what
//! the server wrote back.

use std::net::SocketAddr;
use std::time::Duration;

use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::answer::Answer;

/// Sends `request` on a fresh connection and reads until the server closes
/// it or `wait` passes; returns whatever came.
pub async fn exchange(address: SocketAddr, request: &[u8], wait: Duration) -> Vec<u8> {
    let mut stream = connect(address).await;
    stream.write_all(request).await.expect("write");
    read_until_closed(&mut stream, wait).await.0
}

async fn connect(address: SocketAddr) -> TcpStream {
    TcpStream::connect(address).await.expect("connect")
}

/// What came until the server closed the connection or `wait` passed, and
/// whether it closed.
async fn read_until_closed(stream: &mut TcpStream, wait: Duration) -> (Vec<u8>, bool) {
    let mut answer = Vec::new();
    let closed = tokio::time::timeout(wait, stream.read_to_end(&mut answer))
        .await
        .is_ok();
    (answer, closed)
}

/// One request with these headers, their values sent byte for byte as given
/// (several of one name, opaque bytes, oversized ones), and `Connection:
/// close`, on a fresh connection: the answer, or `None` when the server
/// closed the connection without one. Fails the test when the server
/// neither answers nor closes within 20 s.
pub async fn request_with_headers(
    address: SocketAddr,
    method: &str,
    target: &str,
    headers: &[(&str, &[u8])],
) -> Option<Answer> {
    let mut request = format!("{method} {target} HTTP/1.1\r\nHost: test\r\n").into_bytes();
    for (name, value) in headers {
        request.extend_from_slice(name.as_bytes());
        request.extend_from_slice(b": ");
        request.extend_from_slice(value);
        request.extend_from_slice(b"\r\n");
    }
    request.extend_from_slice(b"Connection: close\r\n\r\n");
    let mut stream = connect(address).await;
    // A server that refuses an oversized head may close before reading all
    // of it; what it answered is still read below.
    let _ = stream.write_all(&request).await;
    let (answer, closed) = read_until_closed(&mut stream, Duration::from_secs(20)).await;
    assert!(closed, "no answer within 20 s to {method} {target}");
    parse(&answer)
}

/// One request with `Connection: close` (and `extra`, header lines each
/// ending in CRLF, possibly followed by a blank line and a body) on a fresh
/// connection; the whole answer, or a failed test.
pub async fn request(address: SocketAddr, method: &str, target: &str, extra: &str) -> Answer {
    let text =
        format!("{method} {target} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n{extra}\r\n");
    let bytes = exchange(address, text.as_bytes(), Duration::from_secs(30)).await;
    parse(&bytes).unwrap_or_else(|| panic!("no HTTP answer: {:?}", String::from_utf8_lossy(&bytes)))
}

/// The status code of a raw HTTP/1.1 answer.
pub fn status_of(answer: &[u8]) -> Option<u16> {
    let text = std::str::from_utf8(answer.get(..12)?).ok()?;
    text.strip_prefix("HTTP/1.1 ")?.parse().ok()
}

/// A raw HTTP/1.1 answer (with a `Content-Length` body or none) as an
/// [`Answer`]; `None` if the bytes are no answer.
pub fn parse(bytes: &[u8]) -> Option<Answer> {
    let status = StatusCode::from_u16(status_of(bytes)?).ok()?;
    let split = bytes.windows(4).position(|w| w == b"\r\n\r\n");
    let (head, body) = match split {
        Some(at) => (&bytes[..at], &bytes[at + 4..]),
        None => (bytes, &[][..]),
    };
    let head = std::str::from_utf8(head).ok()?;
    let mut headers = HeaderMap::new();
    for line in head.lines().skip(1) {
        let (name, value) = line.split_once(':')?;
        headers.append(
            HeaderName::try_from(name.trim()).ok()?,
            HeaderValue::try_from(value.trim()).ok()?,
        );
    }
    Some(Answer::new(status, headers, body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_an_answer_with_headers_and_body() {
        let bytes = b"HTTP/1.1 413 Payload Too Large\r\ncontent-type: application/json\r\nContent-Length: 2\r\n\r\n{}";
        let answer = parse(bytes).unwrap();
        assert_eq!(answer.status, 413);
        assert_eq!(answer.header("content-type"), Some("application/json"));
        assert_eq!(answer.header("content-length"), Some("2"));
        assert_eq!(answer.body, "{}");
        assert_eq!(parse(b"garbage"), None);
    }
}
