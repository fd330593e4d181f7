//! Handlers: parse, call the engine, answer. No business rule lives here.
//! Every `/api/…` handler takes the [`Caller`] first: the token check comes
//! before any parameter is parsed. Each handler carries its OpenAPI
//! description (`#[utoipa::path]`, its query struct's `IntoParams`), which
//! `http::routes` registers with the handler itself.

use axum::Json;
use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use utoipa::IntoParams;

use super::AppState;
use super::body::{AccountBody, EventBody};
use super::error::{ApiError, ErrorBody, ErrorCode, json_error};
use super::openapi::{CONFLICT, ID_FORMS, NOT_FOUND, TAKEN};
use super::params::{self, AccountPath, Query};
use crate::domain::{self, AccountId, Caller, Command, TransactionId};
use crate::engine::{Outcome, Request};
use crate::store::PointInTime;

/// Default and maximum page sizes of the event stream.
pub const EVENTS_LIMIT_DEFAULT: u64 = 1000;
pub const EVENTS_LIMIT_MAX: u64 = 10_000;

/// `?owner={ownerId}`.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct OpenParams {
    /// The owner's id. Same forms as the account id.
    #[param(value_type = Uuid, required = true)]
    owner: Option<String>,
}

/// Open an account
///
/// Opening an id that exists with the same owner and still open answers 201
/// again and records nothing (a lost 201 is safe to retry); any other
/// existing id is 409.
#[utoipa::path(
    post,
    path = "/api/account/{accountId}",
    operation_id = "open",
    tag = "accounts",
    params(("accountId" = Uuid, Path, description = ID_FORMS), OpenParams),
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
pub async fn open(
    caller: Caller,
    State(app): State<AppState>,
    AccountPath(account): AccountPath,
    Query(query): Query<OpenParams>,
) -> Result<Response, ApiError> {
    let owner_id = params::owner_id(&query.owner, "owner")?;
    let command = Command::Open { owner_id };
    execute(
        &app,
        Request {
            caller,
            account,
            command,
            transaction_id: None,
        },
    )
    .await?;
    let location = HeaderValue::from_str(&format!("/api/account/{account}"))
        .expect("a hyphenated UUID is a valid header value");
    Ok((StatusCode::CREATED, [(header::LOCATION, location)]).into_response())
}

/// `?version=n` or `?at=<RFC 3339>`: a past state instead of the current one.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct StateParams {
    /// The state right after the event with this sequence number.
    #[param(value_type = Option<i64>, minimum = 1)]
    version: Option<String>,
    /// The state after the longest prefix of the stream whose events all
    /// have recordedAt at or before this RFC 3339 time (a `+` offset sent as
    /// `%2B`).
    #[param(value_type = Option<String>, format = DateTime)]
    at: Option<String>,
}

/// An account's state, now or in the past
///
/// Without parameters, the current state. `version` or `at` (not both)
/// answer a past state from the nearest kept snapshot at or before it plus
/// the events after it, so the cost is bounded by the snapshot interval.
#[utoipa::path(
    get,
    path = "/api/account/{accountId}",
    operation_id = "state",
    tag = "accounts",
    params(("accountId" = Uuid, Path, description = ID_FORMS), StateParams),
    responses(
        (status = 200, description = "The account, open or closed.", body = AccountBody,
            headers(("ETag" = String, description = "`\"<n>\"`: n is the sequence number of the last event folded into this state."))),
        (status = 400, description = "Malformed id, version or at; both version and at; a repeated parameter.", body = ErrorBody),
        (status = 404, description = "No such account, no such version (beyond the last event), or not opened yet at that time (with authentication on, also someone else's: ids cannot be probed).", body = ErrorBody),
    )
)]
pub async fn state(
    caller: Caller,
    State(app): State<AppState>,
    AccountPath(account): AccountPath,
    Query(query): Query<StateParams>,
) -> Result<Response, ApiError> {
    let point = match (&query.version, &query.at) {
        (Some(_), Some(_)) => {
            return Err(ApiError::bad_parameter(
                "give either version or at, not both".to_owned(),
            ));
        }
        // Sequence numbers, like every JSON number of the API, stay within i64.
        (Some(_), None) => Some(PointInTime::Version(params::bounded(
            &query.version,
            "version",
            1,
            1,
            i64::MAX as u64,
        )?)),
        (None, Some(_)) => Some(PointInTime::Time(params::timestamp(&query.at, "at")?)),
        (None, None) => None,
    };
    let engine = app.engine();
    let found = match point {
        None => Some(
            engine
                .state_with_version(caller, account)
                .await
                .map_err(|e| ApiError::from_engine(e, account, None))?,
        ),
        Some(point) => engine
            .state_at(account, point)
            .await
            .map_err(|e| ApiError::from_engine(e, account, None))?
            // The owner never changes, so a past state answers the same
            // question of access as the current one.
            .filter(|(state, _)| domain::authorize_access(caller, state).is_ok()),
    };
    let (state, version) = found.ok_or_else(|| ApiError::account_not_found(account))?;
    let body =
        AccountBody::new(account, &state).ok_or_else(|| ApiError::account_not_found(account))?;
    let etag =
        HeaderValue::from_str(&format!("\"{version}\"")).expect("a number is a valid header value");
    Ok(([(header::ETAG, etag)], Json(body)).into_response())
}

/// The query style: `PUT /api/account/{id}?deposit=…` (or `withdraw=…`, or
/// `transfer={target}&amount=…`), always with `transactionId`.
#[derive(Deserialize, IntoParams)]
#[serde(rename_all = "camelCase")]
#[into_params(parameter_in = Query)]
pub struct QueryStyleParams {
    /// Deposit this amount (minor units).
    #[param(value_type = Option<i64>, minimum = 0)]
    deposit: Option<String>,
    /// Withdraw this amount (minor units).
    #[param(value_type = Option<i64>, minimum = 0)]
    withdraw: Option<String>,
    /// Transfer `amount` to this account.
    #[param(value_type = Option<Uuid>)]
    transfer: Option<String>,
    /// The amount of a transfer, in minor units; ignored otherwise.
    // Its minimum comes from the constant (openapi::BOUNDS).
    #[param(value_type = Option<i64>)]
    amount: Option<String>,
    /// The client's id for this operation (idempotency key).
    #[param(value_type = Uuid, required = true)]
    transaction_id: Option<String>,
}

/// Deposit, withdraw or transfer (query style)
///
/// Exactly one of `deposit`, `withdraw` and `transfer` names the operation:
/// `?deposit={amount}`, `?withdraw={amount}` or
/// `?transfer={targetAccountId}&amount={amount}`, always with
/// `transactionId`. None or more than one is 400. The transactionId makes the
/// operation exactly-once per account: the identical operation answers 204
/// again and records nothing; a different one is 422.
#[utoipa::path(
    put,
    path = "/api/account/{accountId}",
    operation_id = "queryStylePut",
    tag = "accounts",
    params(("accountId" = Uuid, Path, description = ID_FORMS), QueryStyleParams),
    responses(
        (status = 204, description = "Applied, changed nothing (a zero amount), or already applied with this transactionId."),
        (status = 400, description = "A malformed, missing or repeated parameter; none or several operations; or a business rule refused it (insufficient balance, closed account, transfer to itself, overflow).", body = ErrorBody),
        (status = 404, description = "The account or the transfer target does not exist (with authentication on, the account is also 404 when it is someone else's).", body = ErrorBody),
        (status = 409, description = "Still conflicting with concurrent writes after the server's retries; retrying can succeed.", body = ErrorBody),
        (status = 422, description = TAKEN, body = ErrorBody),
    )
)]
pub async fn query_style(
    caller: Caller,
    State(app): State<AppState>,
    AccountPath(account): AccountPath,
    Query(query): Query<QueryStyleParams>,
) -> Result<StatusCode, ApiError> {
    let named = [&query.deposit, &query.withdraw, &query.transfer];
    let command = match named.iter().filter(|p| p.is_some()).count() {
        0 => Err(ApiError::bad_parameter(
            "name one operation: deposit, withdraw or transfer".to_owned(),
        )),
        1 if query.deposit.is_some() => Ok(Command::Deposit {
            amount: params::amount(&query.deposit, "deposit")?,
        }),
        1 if query.withdraw.is_some() => Ok(Command::Withdraw {
            amount: params::amount(&query.withdraw, "withdraw")?,
        }),
        1 => Ok(Command::Transfer {
            target: params::account_id(&query.transfer, "transfer")?,
            amount: params::transfer_amount(&query.amount, "amount")?,
        }),
        _ => Err(ApiError::bad_parameter(
            "name only one operation: deposit, withdraw or transfer".to_owned(),
        )),
    }?;
    let transaction_id = params::transaction_id(&query.transaction_id, "transactionId")?;
    write(&app, caller, account, command, Some(transaction_id)).await
}

/// The path style: `PUT /api/account/{id}/deposit?amount=…&transactionId=…`
/// (a transfer adds `targetAccount`).
#[derive(Deserialize, IntoParams)]
#[serde(rename_all = "camelCase")]
#[into_params(parameter_in = Query)]
pub struct PathStyleParams {
    /// Minor units.
    // A transfer's minimum comes from the constant (openapi::BOUNDS).
    #[param(value_type = i64, required = true, minimum = 0)]
    amount: Option<String>,
    // Described on the transfer, the one operation that reads it.
    #[param(ignore)]
    target_account: Option<String>,
    /// Idempotency key.
    #[param(value_type = Uuid, required = true)]
    transaction_id: Option<String>,
}

/// A path-style operation's request, extracted as every `/api/…` handler's
/// arguments are: the caller first, then the path, then the query.
pub struct PathStyle {
    caller: Caller,
    app: AppState,
    account: AccountId,
    query: PathStyleParams,
}

impl FromRequestParts<AppState> for PathStyle {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, app: &AppState) -> Result<Self, ApiError> {
        let caller = Caller::from_request_parts(parts, app).await?;
        let AccountPath(account) = AccountPath::from_request_parts(parts, app).await?;
        let Query(query) = Query::from_request_parts(parts, app).await?;
        Ok(PathStyle {
            caller,
            app: app.clone(),
            account,
            query,
        })
    }
}

impl PathStyle {
    /// Executes the command made of the parameters (checked before the
    /// transactionId, as in the query style).
    async fn execute(
        self,
        command: impl FnOnce(&PathStyleParams) -> Result<Command, ApiError>,
    ) -> Result<StatusCode, ApiError> {
        let command = command(&self.query)?;
        let transaction_id = params::transaction_id(&self.query.transaction_id, "transactionId")?;
        write(
            &self.app,
            self.caller,
            self.account,
            command,
            Some(transaction_id),
        )
        .await
    }
}

/// Deposit (path style)
#[utoipa::path(
    put,
    path = "/api/account/{accountId}/deposit",
    operation_id = "deposit",
    tag = "accounts",
    params(("accountId" = Uuid, Path, description = ID_FORMS), PathStyleParams),
    responses(
        (status = 204, description = "Applied, changed nothing (zero), or already applied."),
        (status = 400, description = "A malformed, missing or repeated parameter, or a business rule refused it.", body = ErrorBody),
        (status = 404, description = NOT_FOUND, body = ErrorBody),
        (status = 409, description = CONFLICT, body = ErrorBody),
        (status = 422, description = TAKEN, body = ErrorBody),
    )
)]
pub async fn deposit(request: PathStyle) -> Result<StatusCode, ApiError> {
    request
        .execute(|query| {
            let amount = params::amount(&query.amount, "amount")?;
            Ok(Command::Deposit { amount })
        })
        .await
}

/// Withdraw (path style)
#[utoipa::path(
    put,
    path = "/api/account/{accountId}/withdraw",
    operation_id = "withdraw",
    tag = "accounts",
    params(("accountId" = Uuid, Path, description = ID_FORMS), PathStyleParams),
    responses(
        (status = 204, description = "Applied, changed nothing (zero), or already applied."),
        (status = 400, description = "A malformed, missing or repeated parameter, or a business rule refused it (insufficient balance, closed).", body = ErrorBody),
        (status = 404, description = NOT_FOUND, body = ErrorBody),
        (status = 409, description = CONFLICT, body = ErrorBody),
        (status = 422, description = TAKEN, body = ErrorBody),
    )
)]
pub async fn withdraw(request: PathStyle) -> Result<StatusCode, ApiError> {
    request
        .execute(|query| {
            let amount = params::amount(&query.amount, "amount")?;
            Ok(Command::Withdraw { amount })
        })
        .await
}

/// Transfer (path style)
///
/// Both halves are appended in one atomic store transaction; the
/// transactionId is recorded on both accounts.
#[utoipa::path(
    put,
    path = "/api/account/{accountId}/transfer",
    operation_id = "transfer",
    tag = "accounts",
    params(
        ("accountId" = Uuid, Path, description = ID_FORMS),
        ("targetAccount" = Uuid, Query, description = "The receiving account."),
        PathStyleParams,
    ),
    responses(
        (status = 204, description = "Applied, or already applied."),
        (status = 400, description = "A malformed, missing or repeated parameter (a zero amount included: decided before any account is looked at), or a business rule refused it.", body = ErrorBody),
        (status = 404, description = "The account or the target does not exist (with authentication on, the account is also 404 when it is someone else's; the target may be anyone's).", body = ErrorBody),
        (status = 409, description = CONFLICT, body = ErrorBody),
        (status = 422, description = TAKEN, body = ErrorBody),
    )
)]
pub async fn transfer(request: PathStyle) -> Result<StatusCode, ApiError> {
    request
        .execute(|query| {
            let target = params::account_id(&query.target_account, "targetAccount")?;
            let amount = params::transfer_amount(&query.amount, "amount")?;
            Ok(Command::Transfer { target, amount })
        })
        .await
}

/// `?transactionId=…`, optional.
#[derive(Deserialize, IntoParams)]
#[serde(rename_all = "camelCase")]
#[into_params(parameter_in = Query)]
pub struct CloseParams {
    /// Optional idempotency key; generated when absent.
    #[param(value_type = Option<Uuid>)]
    transaction_id: Option<String>,
}

/// Close an account
///
/// Closing an already closed account answers 204 and records nothing, unless
/// its transactionId was used on this account for another operation (422).
#[utoipa::path(
    delete,
    path = "/api/account/{accountId}",
    operation_id = "close",
    tag = "accounts",
    params(("accountId" = Uuid, Path, description = ID_FORMS), CloseParams),
    responses(
        (status = 204, description = "Closed (or already closed)."),
        (status = 400, description = "Malformed parameter, or the balance is not zero.", body = ErrorBody),
        (status = 404, description = NOT_FOUND, body = ErrorBody),
        (status = 409, description = CONFLICT, body = ErrorBody),
        (status = 422, description = TAKEN, body = ErrorBody),
    )
)]
pub async fn close(
    caller: Caller,
    State(app): State<AppState>,
    AccountPath(account): AccountPath,
    Query(query): Query<CloseParams>,
) -> Result<StatusCode, ApiError> {
    let transaction_id = params::optional_transaction_id(&query.transaction_id, "transactionId")?;
    write(&app, caller, account, Command::Close, transaction_id).await
}

/// Executes a write; every write answers 204 when it is done.
async fn write(
    app: &AppState,
    caller: Caller,
    account: AccountId,
    command: Command,
    transaction_id: Option<TransactionId>,
) -> Result<StatusCode, ApiError> {
    let request = Request {
        caller,
        account,
        command,
        transaction_id,
    };
    execute(app, request).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `?from=…&limit=…`, both optional.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct EventsParams {
    /// First sequence number to return (default 1).
    #[param(value_type = Option<i64>, minimum = 1)]
    from: Option<String>,
    /// Most events to return.
    // Its default and maximum come from the constants (openapi::BOUNDS).
    #[param(value_type = Option<i64>, minimum = 1)]
    limit: Option<String>,
}

/// An account's event stream, oldest first
#[utoipa::path(
    get,
    path = "/api/account/{accountId}/events",
    operation_id = "events",
    tag = "accounts",
    params(("accountId" = Uuid, Path, description = ID_FORMS), EventsParams),
    responses(
        (status = 200, description = "The events (an unknown account has the empty stream; with authentication on, so has someone else's).", body = Vec<EventBody>,
            headers(("Link" = String, description = "`</api/account/{id}/events?from=N&limit=L>; rel=\"next\"` when more events follow."))),
        (status = 400, description = "Malformed id, or from/limit not an integer in range.", body = ErrorBody),
    )
)]
pub async fn events(
    caller: Caller,
    State(app): State<AppState>,
    AccountPath(account): AccountPath,
    Query(query): Query<EventsParams>,
) -> Result<Response, ApiError> {
    // Sequence numbers, like every JSON number of the API, stay within i64.
    let from = params::bounded(&query.from, "from", 1, 1, i64::MAX as u64)?;
    let limit = params::bounded(
        &query.limit,
        "limit",
        EVENTS_LIMIT_DEFAULT,
        1,
        EVENTS_LIMIT_MAX,
    )?;
    let page = usize::try_from(limit).unwrap_or(usize::MAX);
    // One more than asked tells whether another page follows.
    let mut events = app
        .engine()
        .events(caller, account, from, page + 1)
        .await
        .map_err(|e| ApiError::from_engine(e, account, None))?;
    let more = events.len() > page;
    events.truncate(page);
    let next = events.last().map(|e| e.sequence_number + 1);
    let body: Vec<EventBody> = events.iter().map(EventBody::from).collect();
    let mut response = Json(body).into_response();
    if let (true, Some(next)) = (more, next) {
        let link =
            format!("</api/account/{account}/events?from={next}&limit={limit}>; rel=\"next\"");
        let link = HeaderValue::from_str(&link).expect("ids and numbers are valid header text");
        response.headers_mut().insert(header::LINK, link);
    }
    Ok(response)
}

async fn execute(app: &AppState, request: Request) -> Result<Outcome, ApiError> {
    let (account, target) = (request.account, request.command.target());
    app.engine()
        .execute(request)
        .await
        .map_err(|e| ApiError::from_engine(e, account, target))
}

/// Liveness
#[utoipa::path(
    get,
    path = "/ping",
    operation_id = "ping",
    tag = "operations",
    responses((status = 200, description = "Alive.", body = String, content_type = "text/plain", example = "pong"))
)]
pub async fn ping() -> &'static str {
    "pong"
}

/// Readiness
#[utoipa::path(
    get,
    path = "/ready",
    operation_id = "ready",
    tag = "operations",
    responses(
        (status = 200, description = "The store answers and the instance is not draining.", body = String, content_type = "text/plain"),
        (status = 503, description = "Draining, or the store does not answer.", body = ErrorBody,
            headers(("Retry-After" = u32, description = "Seconds to wait before retrying."))),
    )
)]
pub async fn ready(State(app): State<AppState>) -> Response {
    if app.is_draining() {
        return json_error(ErrorCode::Unavailable, "draining: shutting down");
    }
    match app.engine().ping().await {
        Ok(()) => (StatusCode::OK, "ready").into_response(),
        Err(error) => json_error(ErrorCode::Unavailable, &error.to_string()),
    }
}

/// Prometheus metrics
#[utoipa::path(
    get,
    path = "/metrics",
    operation_id = "metrics",
    tag = "operations",
    responses((status = 200, description = "Prometheus text exposition format.", body = String, content_type = "text/plain"))
)]
pub async fn metrics(State(app): State<AppState>) -> Response {
    if let Some(pool) = app.pool_status() {
        app.metrics().observe_pool(pool);
    }
    let body = app.metrics().encode();
    ([(header::CONTENT_TYPE, prometheus::TEXT_FORMAT)], body).into_response()
}

/// This document
// Served as serialized once per instance (`AppState::openapi_json`).
#[utoipa::path(
    get,
    path = "/openapi.json",
    operation_id = "openapi",
    tag = "operations",
    responses((status = 200, description = "OpenAPI 3.1 description of the API.", body = Object, content_type = "application/json"))
)]
pub async fn openapi(State(app): State<AppState>) -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        app.openapi_json().to_owned(),
    )
        .into_response()
}

pub async fn unknown_route(method: Method, uri: Uri) -> ApiError {
    ApiError::new(
        ErrorCode::RouteNotFound,
        format!("no route for {method} {}", uri.path()),
    )
}
