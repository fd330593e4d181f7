//! The web console (docs/console.md): a page at `/console` and its assets
//! at `/console/{asset}`, embedded in the binary at compile time, so a
//! fresh clone serves it with no build step and no Node.
//!
//! The page is public: it holds nothing but code, and it reads accounts
//! only through the documented API with the token the user types into it,
//! so it can never show more than that token allows. Every answer of these
//! routes, errors and 405s included, carries a strict Content-Security-Policy:
//! the page may talk to its own origin only and runs no inline code.

use axum::extract::{Path, Request};
use axum::http::{HeaderValue, header};
use axum::middleware::{Next, from_fn};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, get};

use super::AppState;
use super::error::{ApiError, ErrorCode};

/// The policy on every console answer. Nothing inline, nothing from another
/// origin; `data:` images because uPlot draws nothing that way but the
/// browser's own form controls may; no framing, no form posts, no `<base>`.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self'; img-src 'self' data:; connect-src 'self'; base-uri 'none'; \
     form-action 'none'; frame-ancestors 'none'";

/// The assets by the name they are served under, with their content type.
/// uPlot is vendored from npm with its licence (console/vendor/).
const ASSETS: [(&str, &str, &str); 5] = [
    (
        "console.js",
        "text/javascript; charset=utf-8",
        include_str!("../../console/console.js"),
    ),
    (
        "sse.js",
        "text/javascript; charset=utf-8",
        include_str!("../../console/sse.js"),
    ),
    (
        "console.css",
        "text/css; charset=utf-8",
        include_str!("../../console/console.css"),
    ),
    (
        "uPlot.iife.min.js",
        "text/javascript; charset=utf-8",
        include_str!("../../console/vendor/uPlot.iife.min.js"),
    ),
    (
        "uPlot.min.css",
        "text/css; charset=utf-8",
        include_str!("../../console/vendor/uPlot.min.css"),
    ),
];

const INDEX_HTML: &str = include_str!("../../console/index.html");

/// `GET /console`: the page.
pub fn page() -> MethodRouter<AppState> {
    get(index).layer(from_fn(console_headers))
}

/// `GET /console/{*asset}`: its scripts and styles. A wildcard, so that any
/// deeper path under `/console/` is this route's 404, with the policy too.
pub fn assets() -> MethodRouter<AppState> {
    get(asset).layer(from_fn(console_headers))
}

async fn index() -> Response {
    (
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        INDEX_HTML,
    )
        .into_response()
}

async fn asset(Path(name): Path<String>) -> Response {
    match ASSETS.iter().find(|(known, _, _)| *known == name) {
        Some((_, content_type, body)) => {
            ([(header::CONTENT_TYPE, *content_type)], *body).into_response()
        }
        None => ApiError::new(
            ErrorCode::RouteNotFound,
            format!("no console asset {name:?}"),
        )
        .into_response(),
    }
}

/// The policy, and the headers that keep the browser from second-guessing
/// the content types or leaking the page's address. `no-cache`: the assets
/// change with the binary and carry no version in their names, so the
/// browser revalidates rather than running an older console against a newer
/// API.
async fn console_headers(request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    let fixed = [
        (header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::REFERRER_POLICY, "no-referrer"),
        (header::CACHE_CONTROL, "no-cache"),
    ];
    for (name, value) in fixed {
        headers.insert(name, HeaderValue::from_static(value));
    }
    response
}
