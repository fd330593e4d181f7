//! The OpenAPI 3.1 description of the API (docs/API.md), served at
//! `/openapi.json`.
//!
//! The body schemas are derived from the body types themselves (`AccountBody`,
//! `EventBody` with its flattened `EventDetails`, `ErrorBody` with its
//! `ErrorCode`), and the limits come from the constants the service enforces,
//! so the document cannot drift from what is served. The operations are
//! described on bodiless stand-in functions here rather than on the handlers,
//! so the handlers stay readable; `tests/openapi.rs` checks that the described
//! paths and methods are exactly the router's and that real bodies fit the
//! schemas, and Schemathesis (`just fuzz-api`) checks the live answers.
//!
//! Authentication is optional per instance: every document describes the
//! bearer scheme and the 401/403 answers; an instance that requires tokens
//! serves a document whose `/api/…` operations require the scheme.

use utoipa::openapi::path::{Operation, Parameter};
use utoipa::openapi::response::ResponseBuilder;
use utoipa::openapi::schema::{KnownFormat, ObjectBuilder, Schema, SchemaFormat, Type};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{ContentBuilder, HeaderBuilder, OpenApi as Document, Ref, RefOr};
use utoipa::{Modify, OpenApi, ToSchema};

use super::body::{AccountBody, EventBody, FeedEventBody};
use super::error::{ErrorBody, ErrorCode, RETRY_AFTER_SECONDS, WWW_AUTHENTICATE_BEARER};
use super::feed::{FEED_LIMIT_DEFAULT, FEED_LIMIT_MAX};
use super::handlers::{EVENTS_LIMIT_DEFAULT, EVENTS_LIMIT_MAX};
use crate::domain::{AccountId, OwnerId, Timestamp, TransactionId};

const ID_FORMS: &str = "A UUID in any form the Rust uuid crate parses (hyphenated in any letter case, simple, braced, urn); answers use the lower-case hyphenated form.";

#[derive(OpenApi)]
#[openapi(
    info(
        title = "accounts",
        description = "Event-sourced bank accounts. Both URL styles are served: the query style and the path style; every operation works identically in both. Amounts are integers in minor units (cents), within i64; a `+` sign must be sent as `%2B`. A parameter given twice is 400; parameters an operation does not use are ignored. Every error answer is JSON `{\"code\": …, \"message\": …}`; clients branch on `code` (see the Error schema), never on the message.",
    ),
    paths(
        open,
        state,
        query_style_put,
        close,
        deposit,
        withdraw,
        transfer,
        events,
        feed,
        feed_stream,
        ping,
        ready,
        metrics,
        openapi_json,
        console,
        console_asset
    ),
    components(schemas(ErrorBody, ErrorCode, AccountBody, EventBody, FeedEventBody)),
    modifiers(&LimitResponses, &EventPageLimits, &BearerScheme),
    tags((name = "accounts", description = "Accounts and their money"), (name = "operations", description = "Health and metrics"))
)]
struct ApiDoc;

/// The document an instance without authentication serves at `/openapi.json`.
pub fn document() -> Document {
    document_for(false)
}

/// The document served at `/openapi.json`; with `tokens_required`, every
/// `/api/…` operation requires the bearer scheme.
pub fn document_for(tokens_required: bool) -> Document {
    let mut document = ApiDoc::openapi();
    if tokens_required {
        require_bearer_tokens(&mut document);
    }
    document
}

/// The name of the bearer scheme in `components.securitySchemes`.
pub const BEARER_SCHEME: &str = "bearerAuth";

/// The routes that need a token when authentication is on.
fn is_api(path: &str) -> bool {
    path.starts_with("/api/")
}

/// The bearer scheme, and on every `/api/…` operation the 401 any of them
/// answers to a missing or invalid token (while authentication is on).
struct BearerScheme;

impl Modify for BearerScheme {
    fn modify(&self, openapi: &mut Document) {
        let scheme = HttpBuilder::new()
            .scheme(HttpAuthScheme::Bearer)
            .bearer_format("JWT")
            .description(Some(
                "Optional, off by default. When the instance is started with --auth-jwt-secret (HS256) or --auth-jwt-public-key (RS256/ES256/EdDSA), every /api/ request needs `Authorization: Bearer <JWT>` with an `exp`, a UUID `sub` (the caller's ownerId) and, for an admin, `accounts:admin` in `scope`. An owner reaches only their own accounts; someone else's account answers as an unknown one (404).",
            ))
            .build();
        openapi
            .components
            .get_or_insert_with(Default::default)
            .add_security_scheme(BEARER_SCHEME, SecurityScheme::Http(scheme));
        for (path, item) in openapi.paths.paths.iter_mut() {
            if !is_api(path) {
                continue;
            }
            let operations = [
                &mut item.get,
                &mut item.put,
                &mut item.post,
                &mut item.delete,
            ];
            for operation in operations.into_iter().flatten() {
                add_unauthorized_response(operation);
            }
        }
    }
}

fn add_unauthorized_response(operation: &mut Operation) {
    let challenge = HeaderBuilder::new()
        .schema(Some(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .examples([WWW_AUTHENTICATE_BEARER]),
        ))
        .description(Some("The scheme and error of RFC 6750."))
        .build();
    let unauthorized = ResponseBuilder::new()
        .description("Authentication is on and the request has no valid bearer token (missing, malformed, badly signed, expired or not yet valid, wrong issuer or audience, or a sub that is not a UUID).")
        .header("WWW-Authenticate", challenge)
        .content(
            "application/json",
            ContentBuilder::new()
                .schema(Some(Ref::from_schema_name("Error")))
                .build(),
        )
        .build();
    operation
        .responses
        .responses
        .entry("401".to_owned())
        .or_insert(RefOr::T(unauthorized));
}

fn require_bearer_tokens(document: &mut Document) {
    for (path, item) in document.paths.paths.iter_mut() {
        if !is_api(path) {
            continue;
        }
        let operations = [
            &mut item.get,
            &mut item.put,
            &mut item.post,
            &mut item.delete,
        ];
        for operation in operations.into_iter().flatten() {
            operation.security = Some(vec![SecurityRequirement::new(
                BEARER_SCHEME,
                Vec::<String>::new(),
            )]);
        }
    }
}

/// The answers any API request may get from the limits in front of every
/// route (docs/API.md, rules 0 and 7), added to every operation rather
/// than repeated on each.
struct LimitResponses;

impl Modify for LimitResponses {
    fn modify(&self, openapi: &mut Document) {
        for item in openapi.paths.paths.values_mut() {
            let operations = [
                &mut item.get,
                &mut item.put,
                &mut item.post,
                &mut item.delete,
            ];
            for operation in operations.into_iter().flatten() {
                add_limit_responses(operation);
            }
        }
    }
}

fn add_limit_responses(operation: &mut Operation) {
    let error = || {
        ContentBuilder::new()
            .schema(Some(Ref::from_schema_name("Error")))
            .build()
    };
    let limits = [
        (
            "408",
            "The request did not complete within the request timeout.",
        ),
        (
            "413",
            "The request body is larger than the body limit (no operation takes a body).",
        ),
        ("414", "The URL is longer than the URL limit."),
    ];
    for (status, description) in limits {
        let response = ResponseBuilder::new()
            .description(description)
            .content("application/json", error())
            .build();
        operation
            .responses
            .responses
            .entry(status.to_owned())
            .or_insert(RefOr::T(response));
    }
    let seconds = ObjectBuilder::new()
        .schema_type(Type::Integer)
        .minimum(Some(RETRY_AFTER_SECONDS));
    let retry_after = HeaderBuilder::new()
        .schema(Some(seconds))
        .description(Some("Seconds to wait before retrying."))
        .build();
    let unavailable = ResponseBuilder::new()
        .description("The store is unreachable or too slow, or this instance is over its concurrency limit; retry after Retry-After seconds.")
        .header("Retry-After", retry_after)
        .content("application/json", error())
        .build();
    operation
        .responses
        .responses
        .entry("503".to_owned())
        .or_insert(RefOr::T(unavailable));
}

/// The event stream's page size, from the constants the handler enforces.
struct EventPageLimits;

impl Modify for EventPageLimits {
    fn modify(&self, openapi: &mut Document) {
        let pages = [
            (
                "/api/account/{accountId}/events",
                EVENTS_LIMIT_DEFAULT,
                EVENTS_LIMIT_MAX,
            ),
            ("/api/events", FEED_LIMIT_DEFAULT, FEED_LIMIT_MAX),
        ];
        for (path, default, max) in pages {
            let operation = openapi
                .paths
                .paths
                .get_mut(path)
                .and_then(|item| item.get.as_mut());
            let parameters = operation.and_then(|operation| operation.parameters.as_mut());
            let limit = parameters.and_then(|parameters| {
                parameters.iter_mut().find_map(|parameter| match parameter {
                    RefOr::T(parameter) if parameter.name == "limit" => Some(parameter),
                    _ => None,
                })
            });
            if let Some(limit) = limit {
                describe_page_limit(limit, default, max);
            }
        }
    }
}

fn describe_page_limit(limit: &mut Parameter, default: u64, max: u64) {
    limit.description = Some(format!(
        "Most events to return (default {default}, at most {max})."
    ));
    if let Some(RefOr::T(Schema::Object(schema))) = limit.schema.as_mut() {
        schema.maximum = Some(max.into());
        schema.default = Some(default.into());
    }
}

// The stand-ins. Their parameters and answers are those of docs/API.md.

#[utoipa::path(
    post,
    path = "/api/account/{accountId}",
    operation_id = "open",
    tag = "accounts",
    summary = "Open an account",
    description = "Opening an id that exists with the same owner and still open answers 201 again and records nothing (a lost 201 is safe to retry); any other existing id is 409.",
    params(
        ("accountId" = Uuid, Path, description = ID_FORMS),
        ("owner" = Uuid, Query, description = "The owner's id. Same forms as the account id."),
    ),
    responses(
        (status = 201, description = "Opened (or already open with this owner).", headers(("Location" = String, description = "/api/account/{accountId}")),
            links(
                ("State" = (operation_id = "state", parameters(("accountId" = "$request.path.accountId")))),
                ("Deposit" = (operation_id = "deposit", parameters(("accountId" = "$request.path.accountId")))),
                ("Withdraw" = (operation_id = "withdraw", parameters(("accountId" = "$request.path.accountId")))),
                ("QueryStylePut" = (operation_id = "queryStylePut", parameters(("accountId" = "$request.path.accountId")))),
                ("TransferIn" = (operation_id = "transfer", parameters(("targetAccount" = "$request.path.accountId")))),
                ("Events" = (operation_id = "events", parameters(("accountId" = "$request.path.accountId")))),
                ("Close" = (operation_id = "close", parameters(("accountId" = "$request.path.accountId")))),
            )),
        (status = 400, description = "Malformed or missing id.", body = ErrorBody),
        (status = 403, description = "Authentication is on and the token's subject is not `owner` (only admins open accounts for others).", body = ErrorBody),
        (status = 409, description = "The account already exists (another owner, or closed).", body = ErrorBody),
    )
)]
#[allow(dead_code)]
fn open() {}

#[utoipa::path(
    get,
    path = "/api/account/{accountId}",
    operation_id = "state",
    tag = "accounts",
    summary = "An account's state, now or in the past",
    description = "Without parameters, the current state. `version` or `at` (not both) answer a past state from the nearest kept snapshot at or before it plus the events after it, so the cost is bounded by the snapshot interval.",
    params(
        ("accountId" = Uuid, Path, description = ID_FORMS),
        ("version" = Option<i64>, Query, minimum = 1, description = "The state right after the event with this sequence number."),
        ("at" = Option<String>, Query, format = DateTime, description = "The state after the longest prefix of the stream whose events all have recordedAt at or before this RFC 3339 time (a `+` offset sent as `%2B`)."),
    ),
    responses(
        (status = 200, description = "The account, open or closed.", body = AccountBody,
            headers(("ETag" = String, description = "`\"<n>\"`: n is the sequence number of the last event folded into this state."))),
        (status = 400, description = "Malformed id, version or at; both version and at; a repeated parameter.", body = ErrorBody),
        (status = 404, description = "No such account, no such version (beyond the last event), or not opened yet at that time (with authentication on, also someone else's: ids cannot be probed).", body = ErrorBody),
    )
)]
#[allow(dead_code)]
fn state() {}

#[utoipa::path(
    put,
    path = "/api/account/{accountId}",
    operation_id = "queryStylePut",
    tag = "accounts",
    summary = "Deposit, withdraw or transfer (query style)",
    description = "Exactly one of `deposit`, `withdraw` and `transfer` names the operation: `?deposit={amount}`, `?withdraw={amount}` or `?transfer={targetAccountId}&amount={amount}`, always with `transactionId`. None or more than one is 400. The transactionId makes the operation exactly-once per account: the identical operation answers 204 again and records nothing; a different one is 422.",
    params(
        ("accountId" = Uuid, Path, description = ID_FORMS),
        ("deposit" = Option<i64>, Query, minimum = 0, description = "Deposit this amount (minor units)."),
        ("withdraw" = Option<i64>, Query, minimum = 0, description = "Withdraw this amount (minor units)."),
        ("transfer" = Option<Uuid>, Query, description = "Transfer `amount` to this account."),
        ("amount" = Option<i64>, Query, minimum = 1, description = "The amount of a transfer (minor units, at least 1: a zero transfer is 400); ignored otherwise."),
        ("transactionId" = Uuid, Query, description = "The client's id for this operation (idempotency key)."),
    ),
    responses(
        (status = 204, description = "Applied, changed nothing (a zero amount), or already applied with this transactionId."),
        (status = 400, description = "A malformed, missing or repeated parameter; none or several operations; or a business rule refused it (insufficient balance, closed account, transfer to itself, overflow).", body = ErrorBody),
        (status = 404, description = "The account or the transfer target does not exist (with authentication on, the account is also 404 when it is someone else's).", body = ErrorBody),
        (status = 409, description = "Still conflicting with concurrent writes after the server's retries; retrying can succeed.", body = ErrorBody),
        (status = 422, description = "The transactionId was already used on this account (or a transfer's target) for another operation; on an account the caller may not read, the message says only that it is taken.", body = ErrorBody),
    )
)]
#[allow(dead_code)]
fn query_style_put() {}

#[utoipa::path(
    delete,
    path = "/api/account/{accountId}",
    operation_id = "close",
    tag = "accounts",
    summary = "Close an account",
    description = "Closing an already closed account answers 204 and records nothing, unless its transactionId was used on this account for another operation (422).",
    params(
        ("accountId" = Uuid, Path, description = ID_FORMS),
        ("transactionId" = Option<Uuid>, Query, description = "Optional idempotency key; generated when absent."),
    ),
    responses(
        (status = 204, description = "Closed (or already closed)."),
        (status = 400, description = "Malformed parameter, or the balance is not zero.", body = ErrorBody),
        (status = 404, description = "No such account (with authentication on, also someone else's: ids cannot be probed).", body = ErrorBody),
        (status = 409, description = "Still conflicting after the server's retries.", body = ErrorBody),
        (status = 422, description = "The transactionId was already used on this account (or a transfer's target) for another operation; on an account the caller may not read, the message says only that it is taken.", body = ErrorBody),
    )
)]
#[allow(dead_code)]
fn close() {}

#[utoipa::path(
    put,
    path = "/api/account/{accountId}/deposit",
    operation_id = "deposit",
    tag = "accounts",
    summary = "Deposit (path style)",
    params(
        ("accountId" = Uuid, Path, description = ID_FORMS),
        ("amount" = i64, Query, minimum = 0, description = "Minor units."),
        ("transactionId" = Uuid, Query, description = "Idempotency key."),
    ),
    responses(
        (status = 204, description = "Applied, changed nothing (zero), or already applied."),
        (status = 400, description = "A malformed, missing or repeated parameter, or a business rule refused it.", body = ErrorBody),
        (status = 404, description = "No such account (with authentication on, also someone else's: ids cannot be probed).", body = ErrorBody),
        (status = 409, description = "Still conflicting after the server's retries.", body = ErrorBody),
        (status = 422, description = "The transactionId was already used on this account (or a transfer's target) for another operation; on an account the caller may not read, the message says only that it is taken.", body = ErrorBody),
    )
)]
#[allow(dead_code)]
fn deposit() {}

#[utoipa::path(
    put,
    path = "/api/account/{accountId}/withdraw",
    operation_id = "withdraw",
    tag = "accounts",
    summary = "Withdraw (path style)",
    params(
        ("accountId" = Uuid, Path, description = ID_FORMS),
        ("amount" = i64, Query, minimum = 0, description = "Minor units."),
        ("transactionId" = Uuid, Query, description = "Idempotency key."),
    ),
    responses(
        (status = 204, description = "Applied, changed nothing (zero), or already applied."),
        (status = 400, description = "A malformed, missing or repeated parameter, or a business rule refused it (insufficient balance, closed).", body = ErrorBody),
        (status = 404, description = "No such account (with authentication on, also someone else's: ids cannot be probed).", body = ErrorBody),
        (status = 409, description = "Still conflicting after the server's retries.", body = ErrorBody),
        (status = 422, description = "The transactionId was already used on this account (or a transfer's target) for another operation; on an account the caller may not read, the message says only that it is taken.", body = ErrorBody),
    )
)]
#[allow(dead_code)]
fn withdraw() {}

#[utoipa::path(
    put,
    path = "/api/account/{accountId}/transfer",
    operation_id = "transfer",
    tag = "accounts",
    summary = "Transfer (path style)",
    description = "Both halves are appended in one atomic store transaction; the transactionId is recorded on both accounts.",
    params(
        ("accountId" = Uuid, Path, description = ID_FORMS),
        ("targetAccount" = Uuid, Query, description = "The receiving account."),
        ("amount" = i64, Query, minimum = 1, description = "Minor units, at least 1: a zero transfer is 400, decided before any account is looked at."),
        ("transactionId" = Uuid, Query, description = "Idempotency key."),
    ),
    responses(
        (status = 204, description = "Applied, or already applied."),
        (status = 400, description = "A malformed, missing or repeated parameter (a zero amount included), or a business rule refused it.", body = ErrorBody),
        (status = 404, description = "The account or the target does not exist (with authentication on, the account is also 404 when it is someone else's; the target may be anyone's).", body = ErrorBody),
        (status = 409, description = "Still conflicting after the server's retries.", body = ErrorBody),
        (status = 422, description = "The transactionId was already used on this account (or a transfer's target) for another operation; on an account the caller may not read, the message says only that it is taken.", body = ErrorBody),
    )
)]
#[allow(dead_code)]
fn transfer() {}

#[utoipa::path(
    get,
    path = "/api/account/{accountId}/events",
    operation_id = "events",
    tag = "accounts",
    summary = "An account's event stream, oldest first",
    params(
        ("accountId" = Uuid, Path, description = ID_FORMS),
        ("from" = Option<i64>, Query, minimum = 1, description = "First sequence number to return (default 1)."),
        // Its maximum, default and description come from the constants (EventPageLimits).
        ("limit" = Option<i64>, Query, minimum = 1),
    ),
    responses(
        (status = 200, description = "The events (an unknown account has the empty stream; with authentication on, so has someone else's).", body = Vec<EventBody>,
            headers(("Link" = String, description = "`</api/account/{id}/events?from=N&limit=L>; rel=\"next\"` when more events follow."))),
        (status = 400, description = "Malformed id, or from/limit not an integer in range.", body = ErrorBody),
    )
)]
#[allow(dead_code)]
fn events() {}

#[utoipa::path(
    get,
    path = "/api/events",
    operation_id = "feed",
    tag = "accounts",
    summary = "Every committed event of every account, in commit order",
    description = "A reader that starts at after=0 and always resumes from the last position it was given sees every committed event exactly once, never an uncommitted one, and never misses one. Per account the order is the sequence order; the two legs of a transfer are adjacent. Admins only when authentication is on.",
    params(
        ("after" = Option<i64>, Query, minimum = 0, description = "Return events after this position (default 0: from the start)."),
        // Its maximum, default and description come from the constants (EventPageLimits).
        ("limit" = Option<i64>, Query, minimum = 1),
        ("waitMs" = Option<i64>, Query, minimum = 0, maximum = 30000, description = "When nothing follows `after`, hold the request until an event commits (through any instance) or this many milliseconds pass (default 0)."),
    ),
    responses(
        (status = 200, description = "The events after `after` (`[]` if none came within waitMs).", body = Vec<FeedEventBody>,
            headers(("Link" = String, description = "`</api/events?after=P&limit=L>; rel=\"next\"` on a full page."))),
        (status = 400, description = "after, limit or waitMs not an integer in range, or repeated.", body = ErrorBody),
        (status = 403, description = "Authentication is on and the token is not an admin's.", body = ErrorBody),
    )
)]
#[allow(dead_code)]
fn feed() {}

#[utoipa::path(
    get,
    path = "/api/events/stream",
    operation_id = "feedStream",
    tag = "accounts",
    summary = "The feed, live, as Server-Sent Events",
    description = "One message per event: `id: <position>`, `event: <type>`, `data: <the feed object>`, starting after `after`, or after the `Last-Event-ID` header when present (it wins). A comment line at least every 15 s keeps idle connections alive. A consumer whose bounded buffer stays full is disconnected; it reconnects with Last-Event-ID and loses nothing. An instance serves at most --feed-streams-max streams at once: beyond, 503 overloaded with Retry-After. If the event last sent at its position is no longer in the store (a database failover lost committed events), the stream sends one `event: rewind` message without an id, data `{\"position\":P,\"message\":…}`, and ends. Admins only when authentication is on.",
    params(
        ("after" = Option<i64>, Query, minimum = 0, description = "Start after this position (default 0)."),
        ("Last-Event-ID" = Option<i64>, Header, minimum = 0, description = "The last position received; wins over `after`."),
    ),
    responses(
        (status = 200, description = "An endless stream of events.", body = String, content_type = "text/event-stream"),
        (status = 400, description = "after or Last-Event-ID not an integer in range, or repeated.", body = ErrorBody),
        (status = 403, description = "Authentication is on and the token is not an admin's.", body = ErrorBody),
    )
)]
#[allow(dead_code)]
fn feed_stream() {}

#[utoipa::path(
    get,
    path = "/ping",
    operation_id = "ping",
    tag = "operations",
    summary = "Liveness",
    responses((status = 200, description = "Alive.", body = String, content_type = "text/plain", example = "pong"))
)]
#[allow(dead_code)]
fn ping() {}

#[utoipa::path(
    get,
    path = "/ready",
    operation_id = "ready",
    tag = "operations",
    summary = "Readiness",
    responses(
        (status = 200, description = "The store answers and the instance is not draining.", body = String, content_type = "text/plain"),
        (status = 503, description = "Draining, or the store does not answer.", body = ErrorBody,
            headers(("Retry-After" = u32, description = "Seconds to wait before retrying."))),
    )
)]
#[allow(dead_code)]
fn ready() {}

#[utoipa::path(
    get,
    path = "/metrics",
    operation_id = "metrics",
    tag = "operations",
    summary = "Prometheus metrics",
    responses((status = 200, description = "Prometheus text exposition format.", body = String, content_type = "text/plain"))
)]
#[allow(dead_code)]
fn metrics() {}

#[utoipa::path(
    get,
    path = "/openapi.json",
    operation_id = "openapi",
    tag = "operations",
    summary = "This document",
    responses((status = 200, description = "OpenAPI 3.1 description of the API.", body = Object, content_type = "application/json"))
)]
#[allow(dead_code)]
fn openapi_json() {}

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
#[allow(dead_code)]
fn console() {}

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
#[allow(dead_code)]
fn console_asset() {}

/// The ids of the API as they appear in bodies: always the lower-case
/// hyphenated form.
macro_rules! uuid_schema {
    ($($id:ty => $description:literal),* $(,)?) => {$(
        impl utoipa::PartialSchema for $id {
            fn schema() -> RefOr<utoipa::openapi::schema::Schema> {
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .format(Some(SchemaFormat::KnownFormat(KnownFormat::Uuid)))
                    .description(Some($description))
                    .into()
            }
        }
        impl ToSchema for $id {}
    )*};
}

uuid_schema!(
    AccountId => "An account id, lower-case hyphenated.",
    OwnerId => "An owner id, lower-case hyphenated.",
    TransactionId => "A transaction id (the idempotency key), lower-case hyphenated.",
);

impl utoipa::PartialSchema for Timestamp {
    fn schema() -> RefOr<utoipa::openapi::schema::Schema> {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .format(Some(SchemaFormat::KnownFormat(KnownFormat::DateTime)))
            .description(Some(
                "RFC 3339 in UTC with milliseconds, e.g. 2026-11-26T10:00:00.123Z.",
            ))
            .into()
    }
}

impl ToSchema for Timestamp {}
