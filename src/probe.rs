//! `accounts probe [URL]`: GET /ready and exit 0 or 1.

use std::time::Duration;

use http_body_util::Empty;
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

/// Whether the instance at `base_url` answers `/ready` with 200.
pub async fn probe(base_url: &str, timeout: Duration) -> Result<(), String> {
    let url = format!("{}/ready", base_url.trim_end_matches('/'));
    let uri: hyper::Uri = url
        .parse()
        .map_err(|e| format!("invalid URL {url:?}: {e}"))?;
    if uri.scheme_str() != Some("http") {
        return Err(format!("invalid URL {url:?}: only http:// is supported"));
    }
    let client = Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
    let response = tokio::time::timeout(timeout, client.get(uri))
        .await
        .map_err(|_| format!("{url}: no answer within {} ms", timeout.as_millis()))?
        .map_err(|e| format!("{url}: {e}"))?;
    match response.status() {
        hyper::StatusCode::OK => Ok(()),
        status => Err(format!("{url}: {status}")),
    }
}
