//! The web console (docs/console.md): a page at `/console` and its assets
//! at `/console/{asset}`, embedded in the binary at compile time, so a
//! fresh clone serves it with no build step and no Node. Both handlers are
//! in the route table and the OpenAPI document like every other route.
//!
//! The page is public: it holds nothing but code, and it reads accounts
//! only through the documented API with the token the user types into it,
//! so it can never show more than that token allows. Every answer of these
//! routes, errors and 405s included, carries a strict Content-Security-Policy
//! ([`headers`], a layer of the whole router that looks at the path, so no
//! answer under `/console` escapes it): the page may talk to its own origin
//! only and runs no inline code.

use axum::extract::{Path, Request};
use axum::http::{HeaderValue, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::error::{ApiError, ErrorBody, ErrorCode};

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
#[utoipa::path(
    get,
    path = "/console",
    operation_id = "console",
    tag = "console",
    summary = "The web console (docs/console.md)",
    description = "An HTML page that reads accounts, their events, past states and the live feed through this API, with the bearer token typed into it. Needs no token itself. Every console answer carries a strict Content-Security-Policy (self only, nothing inline).",
    responses((status = 200, description = "The page.", body = String, content_type = "text/html",
        headers(("Content-Security-Policy" = String, description = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; …"))))
)]
pub(super) async fn index() -> Response {
    (
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        INDEX_HTML,
    )
        .into_response()
}

/// `GET /console/{asset}`: its scripts and styles.
#[utoipa::path(
    get,
    path = "/console/{asset}",
    operation_id = "consoleAsset",
    tag = "console",
    summary = "The console's scripts and styles",
    params(("asset" = String, Path, example = "console.js", description = "console.js, sse.js, console.css, uPlot.iife.min.js or uPlot.min.css.")),
    responses(
        (status = 200, description = "The asset.", content(
            (String = "text/javascript"),
            (String = "text/css"),
        ), headers(("Content-Security-Policy" = String))),
        (status = 404, description = "No such asset.", body = ErrorBody),
    )
)]
pub(super) async fn asset(Path(name): Path<String>) -> Response {
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
pub(super) async fn headers(request: Request, next: Next) -> Response {
    let path = request.uri().path();
    let console = path == "/console" || path.starts_with("/console/");
    let mut response = next.run(request).await;
    if !console {
        return response;
    }
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
