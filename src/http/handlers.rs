//! Handlers: parse, call the engine, answer. No business rule lives here.
//! Every `/api/…` handler takes the [`Caller`] first: the token check comes
//! before any parameter is parsed.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::AppState;
use super::body::{AccountBody, EventBody};
use super::error::{ApiError, ErrorCode, json_error};
use super::params::{self, AccountPath, Query};
use crate::domain::{self, Caller, Command};
use crate::engine::{Outcome, Request};
use crate::store::PointInTime;

/// Default and maximum page sizes of the event stream.
pub const EVENTS_LIMIT_DEFAULT: u64 = 1000;
pub const EVENTS_LIMIT_MAX: u64 = 10_000;

#[derive(Deserialize)]
pub struct OpenParams {
    owner: Option<String>,
}

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
#[derive(Deserialize)]
pub struct StateParams {
    version: Option<String>,
    at: Option<String>,
}

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
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct QueryStyleParams {
    deposit: Option<String>,
    withdraw: Option<String>,
    transfer: Option<String>,
    amount: Option<String>,
    transaction_id: Option<String>,
}

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
    execute(
        &app,
        Request {
            caller,
            account,
            command,
            transaction_id: Some(transaction_id),
        },
    )
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The path style: `PUT /api/account/{id}/deposit?amount=…&transactionId=…`.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PathStyleParams {
    amount: Option<String>,
    target_account: Option<String>,
    transaction_id: Option<String>,
}

pub async fn deposit(
    caller: Caller,
    app: State<AppState>,
    path: AccountPath,
    Query(query): Query<PathStyleParams>,
) -> Result<StatusCode, ApiError> {
    let command = Command::Deposit {
        amount: params::amount(&query.amount, "amount")?,
    };
    path_style(caller, app, path, command, &query).await
}

pub async fn withdraw(
    caller: Caller,
    app: State<AppState>,
    path: AccountPath,
    Query(query): Query<PathStyleParams>,
) -> Result<StatusCode, ApiError> {
    let command = Command::Withdraw {
        amount: params::amount(&query.amount, "amount")?,
    };
    path_style(caller, app, path, command, &query).await
}

pub async fn transfer(
    caller: Caller,
    app: State<AppState>,
    path: AccountPath,
    Query(query): Query<PathStyleParams>,
) -> Result<StatusCode, ApiError> {
    let command = Command::Transfer {
        target: params::account_id(&query.target_account, "targetAccount")?,
        amount: params::transfer_amount(&query.amount, "amount")?,
    };
    path_style(caller, app, path, command, &query).await
}

async fn path_style(
    caller: Caller,
    State(app): State<AppState>,
    AccountPath(account): AccountPath,
    command: Command,
    query: &PathStyleParams,
) -> Result<StatusCode, ApiError> {
    let transaction_id = params::transaction_id(&query.transaction_id, "transactionId")?;
    execute(
        &app,
        Request {
            caller,
            account,
            command,
            transaction_id: Some(transaction_id),
        },
    )
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CloseParams {
    transaction_id: Option<String>,
}

pub async fn close(
    caller: Caller,
    State(app): State<AppState>,
    AccountPath(account): AccountPath,
    Query(query): Query<CloseParams>,
) -> Result<StatusCode, ApiError> {
    let transaction_id = params::optional_transaction_id(&query.transaction_id, "transactionId")?;
    execute(
        &app,
        Request {
            caller,
            account,
            command: Command::Close,
            transaction_id,
        },
    )
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize)]
pub struct EventsParams {
    from: Option<String>,
    limit: Option<String>,
}

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

pub async fn ping() -> &'static str {
    "pong"
}

pub async fn ready(State(app): State<AppState>) -> Response {
    if app.is_draining() {
        return json_error(ErrorCode::Unavailable, "draining: shutting down");
    }
    match app.engine().ping().await {
        Ok(()) => (StatusCode::OK, "ready").into_response(),
        Err(error) => json_error(ErrorCode::Unavailable, &error.to_string()),
    }
}

pub async fn metrics(State(app): State<AppState>) -> Response {
    if let Some(pool) = app.pool_status() {
        app.metrics().observe_pool(pool);
    }
    let body = app.metrics().encode();
    ([(header::CONTENT_TYPE, prometheus::TEXT_FORMAT)], body).into_response()
}

/// `/openapi.json`, serialized once per instance.
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
