//! The OpenAPI 3.1 description of the API (docs/API.md), served at
//! `/openapi.json`.
//!
//! Each operation is described on its handler (`#[utoipa::path]` on the
//! functions of `handlers.rs` and `feed.rs`, the query structs deriving
//! `IntoParams`), and `http::routes` registers every handler with
//! utoipa-axum's `routes!`, which hands the router and the document the same
//! paths and methods: the route table exists once. This module adds what no
//! single handler says: the document's info, tags and body schemas, the
//! answers of the limits in front of every route (408, 413, 414, 503), the
//! bearer scheme and its 401, the parameter bounds taken from the constants
//! the service enforces ([`BOUNDS`]), and the schema of one message of the
//! feed's event stream ([`StreamMessage`]). The body schemas are derived from
//! the body types themselves. `tests/openapi.rs` checks that the described
//! paths and methods are exactly the router's and that real bodies fit the
//! schemas, and Schemathesis (`just fuzz-api`) checks the live answers.
//!
//! Authentication is optional per instance: every document describes the
//! bearer scheme and the 401/403 answers; an instance that requires tokens
//! serves a document whose `/api/…` operations require the scheme.

use strum::VariantNames;
use utoipa::openapi::path::{Operation, PathItem};
use utoipa::openapi::response::ResponseBuilder;
use utoipa::openapi::schema::{
    KnownFormat, ObjectBuilder, OneOfBuilder, Schema, SchemaFormat, Type,
};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{ContentBuilder, HeaderBuilder, OpenApi as Document, Ref, RefOr};
use utoipa::{OpenApi, ToSchema};

use super::body::{AccountBody, EventBody, FeedEventBody};
use super::error::{ErrorBody, ErrorCode, RETRY_AFTER_SECONDS, WWW_AUTHENTICATE_BEARER};
use super::feed::{FEED_LIMIT_DEFAULT, FEED_LIMIT_MAX, FEED_WAIT_MS_MAX, REWIND_EVENT};
use super::handlers::{EVENTS_LIMIT_DEFAULT, EVENTS_LIMIT_MAX};
use crate::domain::{AccountId, Event, OwnerId, TRANSFER_AMOUNT_MIN, Timestamp, TransactionId};

// Descriptions several operations share.
pub(super) const ID_FORMS: &str = "A UUID in any form the Rust uuid crate parses (hyphenated in any letter case, simple, braced, urn); answers use the lower-case hyphenated form.";
pub(super) const NOT_FOUND: &str =
    "No such account (with authentication on, also someone else's: ids cannot be probed).";
pub(super) const CONFLICT: &str = "Still conflicting after the server's retries.";
pub(super) const TAKEN: &str = "The transactionId was already used on this account (or a transfer's target) for another operation; on an account the caller may not read, the message says only that it is taken.";
pub(super) const FEED_FORBIDDEN: &str = "Authentication is on and the token is not an admin's.";

#[derive(OpenApi)]
#[openapi(
    info(
        title = "accounts",
        description = "Event-sourced bank accounts. Both URL styles are served: the query style and the path style; every operation works identically in both. Amounts are integers in minor units (cents), within i64; a `+` sign must be sent as `%2B`. A parameter given twice is 400; parameters an operation does not use are ignored. Every error answer is JSON `{\"code\": …, \"message\": …}`; clients branch on `code` (see the Error schema), never on the message.",
    ),
    components(schemas(ErrorBody, ErrorCode, AccountBody, EventBody, FeedEventBody)),
    tags((name = "accounts", description = "Accounts and their money"), (name = "operations", description = "Health and metrics"))
)]
struct ApiDoc;

/// The document an instance without authentication serves at `/openapi.json`.
pub fn document() -> Document {
    document_for(false)
}

/// The document served at `/openapi.json`: the route table's operations,
/// completed here; with `tokens_required`, every `/api/…` operation
/// requires the bearer scheme.
pub fn document_for(tokens_required: bool) -> Document {
    let mut document = ApiDoc::openapi();
    document.merge(super::route_table_document());
    // Run after the merge: `#[openapi(modifiers(…))]` would run before the
    // operations are there.
    for (path, operation) in operations(&mut document) {
        unwrap_descriptions(operation);
        add_limit_responses(operation);
        bound_parameters(path, operation);
        if is_api(path) {
            add_unauthorized_response(operation);
            if tokens_required {
                operation.security = Some(vec![SecurityRequirement::new(
                    BEARER_SCHEME,
                    Vec::<String>::new(),
                )]);
            }
        }
    }
    add_bearer_scheme(&mut document);
    document
}

/// Every operation of the document, with its path.
fn operations(document: &mut Document) -> impl Iterator<Item = (&str, &mut Operation)> {
    document.paths.paths.iter_mut().flat_map(|(path, item)| {
        let PathItem {
            get,
            put,
            post,
            delete,
            ..
        } = item;
        [get, put, post, delete]
            .into_iter()
            .flatten()
            .map(move |operation| (path.as_str(), operation))
    })
}

/// Doc comments are wrapped for the source; the document carries each
/// paragraph on one line, as a Markdown reader joins them anyway.
fn unwrap_descriptions(operation: &mut Operation) {
    let parameters = operation.parameters.iter_mut().flatten();
    let parameters = parameters.filter_map(|parameter| match parameter {
        RefOr::T(parameter) => Some(&mut parameter.description),
        RefOr::Ref(_) => None,
    });
    for description in parameters.chain([&mut operation.description]).flatten() {
        let paragraphs: Vec<String> = description
            .split("\n\n")
            .map(|paragraph| paragraph.replace('\n', " "))
            .collect();
        *description = paragraphs.join("\n\n");
    }
}

/// The name of the bearer scheme in `components.securitySchemes`.
pub const BEARER_SCHEME: &str = "bearerAuth";

/// The routes that need a token when authentication is on.
fn is_api(path: &str) -> bool {
    path.starts_with("/api/")
}

fn add_bearer_scheme(document: &mut Document) {
    let scheme = HttpBuilder::new()
        .scheme(HttpAuthScheme::Bearer)
        .bearer_format("JWT")
        .description(Some(
            "Optional, off by default. When the instance is started with --auth-jwt-secret (HS256) or --auth-jwt-public-key (RS256/ES256/EdDSA), every /api/ request needs `Authorization: Bearer <JWT>` with an `exp`, a UUID `sub` (the caller's ownerId) and, for an admin, `accounts:admin` in `scope`. An owner reaches only their own accounts; someone else's account answers as an unknown one (404).",
        ))
        .build();
    document
        .components
        .get_or_insert_with(Default::default)
        .add_security_scheme(BEARER_SCHEME, SecurityScheme::Http(scheme));
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
        .content("application/json", error_content())
        .build();
    operation
        .responses
        .responses
        .entry("401".to_owned())
        .or_insert(RefOr::T(unauthorized));
}

fn error_content() -> utoipa::openapi::Content {
    ContentBuilder::new()
        .schema(Some(Ref::from_schema_name("Error")))
        .build()
}

/// The answers any API request may get from the limits in front of every
/// route (docs/API.md, rules 0 and 7), added to every operation rather
/// than repeated on each.
fn add_limit_responses(operation: &mut Operation) {
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
            .content("application/json", error_content())
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
        .content("application/json", error_content())
        .build();
    operation
        .responses
        .responses
        .entry("503".to_owned())
        .or_insert(RefOr::T(unavailable));
}

/// Bounds of a query parameter that a constant of the service decides.
struct Bound {
    path: &'static str,
    name: &'static str,
    minimum: Option<i64>,
    default: Option<u64>,
    maximum: Option<u64>,
}

impl Bound {
    const fn page(path: &'static str, name: &'static str, default: u64, maximum: u64) -> Bound {
        Bound {
            path,
            name,
            minimum: None,
            default: Some(default),
            maximum: Some(maximum),
        }
    }

    const fn transfer_amount(path: &'static str) -> Bound {
        Bound {
            path,
            name: "amount",
            minimum: Some(TRANSFER_AMOUNT_MIN),
            default: None,
            maximum: None,
        }
    }
}

/// The parameter bounds that come from the constants the handlers enforce:
/// utoipa's attributes take only literals for them.
const BOUNDS: [Bound; 5] = [
    Bound::page(
        "/api/account/{accountId}/events",
        "limit",
        EVENTS_LIMIT_DEFAULT,
        EVENTS_LIMIT_MAX,
    ),
    Bound::page("/api/events", "limit", FEED_LIMIT_DEFAULT, FEED_LIMIT_MAX),
    Bound::page("/api/events", "waitMs", 0, FEED_WAIT_MS_MAX),
    Bound::transfer_amount("/api/account/{accountId}"),
    Bound::transfer_amount("/api/account/{accountId}/transfer"),
];

/// Sets the [`BOUNDS`] of `operation`'s parameters in their schemas and
/// says them in their descriptions.
fn bound_parameters(path: &str, operation: &mut Operation) {
    let parameters = operation.parameters.iter_mut().flatten();
    for parameter in parameters {
        let RefOr::T(parameter) = parameter else {
            continue;
        };
        let Some(bound) = BOUNDS
            .iter()
            .find(|bound| bound.path == path && bound.name == parameter.name)
        else {
            continue;
        };
        if let Some(RefOr::T(Schema::Object(schema))) = parameter.schema.as_mut() {
            if let Some(minimum) = bound.minimum {
                schema.minimum = Some(minimum.into());
            }
            if let Some(maximum) = bound.maximum {
                schema.maximum = Some(maximum.into());
            }
            schema.default = bound.default.map(Into::into);
        }
        let said = [
            bound.default.map(|default| format!("default {default}")),
            bound.minimum.map(|minimum| format!("at least {minimum}")),
            bound.maximum.map(|maximum| format!("at most {maximum}")),
        ];
        let said: Vec<String> = said.into_iter().flatten().collect();
        let description = parameter.description.take().unwrap_or_default();
        let description = description.trim_end_matches('.');
        parameter.description = Some(format!("{description} ({}).", said.join(", ")));
    }
}

/// One message of the feed's Server-Sent Events stream as an SSE parser
/// hands it over (`id`, `event`, `data`: the service sends no `retry`): the
/// `itemSchema` of `text/event-stream`, as OpenAPI 3.2 describes sequential
/// media types (the stream itself never ends). Either an event of the feed or
/// the `rewind` message that ends a stream (docs/API.md, "Never a rewind").
pub struct StreamMessage;

impl utoipa::PartialSchema for StreamMessage {
    fn schema() -> RefOr<Schema> {
        let json = |content: RefOr<Schema>, description: &str| {
            ObjectBuilder::new()
                .schema_type(Type::String)
                .content_media_type("application/json")
                .content_schema(Some(content))
                .description(Some(description))
        };
        let event = ObjectBuilder::new()
            .schema_type(Type::Object)
            .description(Some("An event of the feed."))
            .property(
                "id",
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .pattern(Some("^[0-9]+$"))
                    .description(Some("The event's position.")),
            )
            .property(
                "event",
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .enum_values(Some(Event::VARIANTS.iter().copied()))
                    .description(Some("The event's type.")),
            )
            .property(
                "data",
                json(
                    Ref::from_schema_name("FeedEvent").into(),
                    "The feed object, as JSON.",
                ),
            )
            .required("id")
            .required("event")
            .required("data");
        let rewind_data = ObjectBuilder::new()
            .schema_type(Type::Object)
            .property(
                "position",
                ObjectBuilder::new()
                    .schema_type(Type::Integer)
                    .minimum(Some(0)),
            )
            .property("message", ObjectBuilder::new().schema_type(Type::String))
            .required("position")
            .required("message");
        // Without an id of its own: an SSE parser reports the last id it saw.
        let rewind = ObjectBuilder::new()
            .schema_type(Type::Object)
            .description(Some("The event the stream last sent at `position` is no longer in the store; the stream ends."))
            .property(
                "event",
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .enum_values(Some([REWIND_EVENT])),
            )
            .property(
                "data",
                json(rewind_data.into(), "The position and a message, as JSON."),
            )
            .required("event")
            .required("data");
        OneOfBuilder::new().item(event).item(rewind).into()
    }
}

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
