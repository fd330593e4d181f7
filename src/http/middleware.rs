//! Cross-cutting layers: metrics per request, request ids, and JSON bodies for
//! the errors that layers and the router produce without one.

use std::time::Instant;

use axum::body::Body;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::Response;
use tower_http::request_id::{MakeRequestId, RequestId};

use super::AppState;
use super::error::{ErrorCode, json_error, json_error_with_status};

/// The `route` label of a route template. The routes take their templates
/// from the OpenAPI descriptions (`{accountId}`); the label keeps the name
/// its series have always had (`{account_id}`), so dashboards and recorded
/// series go on matching.
fn route_label(template: &str) -> String {
    template.replace("{accountId}", "{account_id}")
}

/// Counts and times every request by its route template (never the raw path,
/// which would give every account its own time series).
pub async fn track(State(app): State<AppState>, request: Request, next: Next) -> Response {
    let started = Instant::now();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |path| route_label(path.as_str()));
    let method = method_label(request.method());
    let response = next.run(request).await;
    let metrics = app.metrics();
    metrics
        .http_requests
        .with_label_values(&[route.as_str(), method, response.status().as_str()])
        .inc();
    metrics
        .http_request_duration
        .with_label_values(&[route.as_str(), method])
        .observe(started.elapsed().as_secs_f64());
    response
}

fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        Method::PATCH => "PATCH",
        _ => "other",
    }
}

/// Every error answer has a JSON body `{"code": …, "message": …}`. The router's 405 and
/// the timeout's 408 come without a body, the body limit's 413 with a plain
/// text one; this replaces them and keeps their other headers (`Allow` on a
/// 405).
pub async fn json_errors(request: Request, next: Next) -> Response {
    let response = next.run(request).await;
    let status = response.status();
    let is_error = status.is_client_error() || status.is_server_error();
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|value| value.as_bytes() == b"application/json");
    if !is_error || is_json {
        return response;
    }
    let message = match status {
        StatusCode::METHOD_NOT_ALLOWED => "method not allowed on this route",
        StatusCode::REQUEST_TIMEOUT => "the request did not complete within the request timeout",
        StatusCode::PAYLOAD_TOO_LARGE => "the request body is too large",
        _ => status.canonical_reason().unwrap_or("error"),
    };
    let code = ErrorCode::for_layer_status(status);
    let (mut parts, _) = response.into_parts();
    // The length of the body being replaced.
    parts.headers.remove(header::CONTENT_LENGTH);
    let (json_parts, body) = json_error_with_status(status, code, message).into_parts();
    for (name, value) in &json_parts.headers {
        parts.headers.insert(name, value.clone());
    }
    Response::from_parts(parts, Body::new(body))
}

/// 414 for a path and query longer than `url_bytes_max`, before any parsing.
pub async fn url_limit(
    State(url_bytes_max): State<usize>,
    request: Request,
    next: Next,
) -> Response {
    let url_bytes = request
        .uri()
        .path_and_query()
        .map_or(0, |url| url.as_str().len());
    if url_bytes > url_bytes_max {
        return json_error(
            ErrorCode::UriTooLong,
            &format!("the URL is {url_bytes} bytes long; at most {url_bytes_max} are accepted"),
        );
    }
    next.run(request).await
}

/// Request ids drawn from the app's entropy, so a simulation replays them.
#[derive(Clone)]
pub struct EntropyRequestId(pub AppState);

impl MakeRequestId for EntropyRequestId {
    fn make_request_id<B>(&mut self, _request: &axum::http::Request<B>) -> Option<RequestId> {
        let id = self.0.new_request_id().hyphenated().to_string();
        HeaderValue::from_str(&id).ok().map(RequestId::new)
    }
}
