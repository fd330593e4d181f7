//! The one place where refusals and failures become HTTP answers
//! (../shared/API.md, "Order of checks and their answers").

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::domain::{AccountId, Refusal};
use crate::engine::EngineError;

/// Seconds a client is asked to wait before retrying a 503.
pub const RETRY_AFTER_SECONDS: u32 = 1;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApiError {
    /// A malformed, missing or repeated parameter; two operations or none.
    BadRequest(String),
    NotFound(String),
    /// A business rule refused the operation.
    Rule(String),
    /// Opening an id that exists with another owner, or closed.
    AlreadyExists(String),
    /// The transactionId was used on this account for another operation.
    TransactionReused(String),
    /// Still conflicting after the engine's own retries: retrying can succeed.
    Conflict(String),
    /// The store is unreachable or too slow, or this instance is overloaded.
    Unavailable(String),
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    message: &'a str,
}

impl ApiError {
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) | ApiError::Rule(_) => StatusCode::BAD_REQUEST,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::AlreadyExists(_) | ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::TransactionReused(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    pub fn message(&self) -> &str {
        match self {
            ApiError::BadRequest(m)
            | ApiError::NotFound(m)
            | ApiError::Rule(m)
            | ApiError::AlreadyExists(m)
            | ApiError::TransactionReused(m)
            | ApiError::Conflict(m)
            | ApiError::Unavailable(m) => m,
        }
    }

    /// Maps an engine error for a command on `account` (and `target`).
    pub fn from_engine(error: EngineError, account: AccountId, target: Option<AccountId>) -> Self {
        match error {
            EngineError::Refused(refusal) => ApiError::from_refusal(refusal, account, target),
            reused @ EngineError::TransactionReused { .. } => {
                ApiError::TransactionReused(reused.to_string())
            }
            conflict @ EngineError::Conflict(_) => ApiError::Conflict(conflict.to_string()),
            EngineError::Store(error) => {
                tracing::warn!(%error, "store call failed");
                ApiError::Unavailable("the account store is unavailable; retry later".to_owned())
            }
        }
    }

    fn from_refusal(refusal: Refusal, account: AccountId, target: Option<AccountId>) -> Self {
        let target = target.map_or_else(String::new, |t| t.to_string());
        match refusal {
            Refusal::AccountNotFound => ApiError::NotFound(format!("account {account} not found")),
            Refusal::TargetNotFound => {
                ApiError::NotFound(format!("target account {target} not found"))
            }
            Refusal::AlreadyExists => {
                ApiError::AlreadyExists(format!("account {account} already exists"))
            }
            Refusal::AccountClosed => ApiError::Rule(format!("account {account} is closed")),
            Refusal::TargetClosed => ApiError::Rule(format!("target account {target} is closed")),
            Refusal::TransferToSelf => {
                ApiError::Rule(format!("cannot transfer from account {account} to itself"))
            }
            rule @ (Refusal::InsufficientBalance { .. }
            | Refusal::CloseWithBalance { .. }
            | Refusal::BalanceOverflow) => ApiError::Rule(format!("account {account}: {rule}")),
        }
    }
}

/// A JSON error body `{"message": …}` with the given status.
pub fn json_error(status: StatusCode, message: &str) -> Response {
    let mut response = (status, Json(ErrorBody { message })).into_response();
    if status == StatusCode::SERVICE_UNAVAILABLE {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(RETRY_AFTER_SECONDS));
    }
    response
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        json_error(self.status(), self.message())
    }
}
