//! The one place where refusals and failures become HTTP answers
//! (docs/API.md, "Order of checks" and "Error codes"): every error body is
//! `{"code": …, "message": …}`, and the code alone decides the status.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::domain::{AccountId, Refusal};
use crate::engine::EngineError;

/// Seconds a client is asked to wait before retrying a 503.
pub const RETRY_AFTER_SECONDS: u32 = 1;

/// A stable, machine-readable word for every error answer, so that clients
/// (the simulation included) branch on it and never on message text. Each
/// code has exactly one status.
// (Not a doc comment, which would land in the OpenAPI document.) The word is
// the variant's name in snake case: serde (and so the OpenAPI schema) and
// strum (`as_str`, `ALL`) both derive it from the variant, and a test checks
// that they agree.
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    Hash,
    Serialize,
    Deserialize,
    ToSchema,
    strum::IntoStaticStr,
    strum::VariantArray,
)]
#[serde(rename_all = "snake_case")]
#[strum(serialize_all = "snake_case")]
pub enum ErrorCode {
    /// 404: no route has this path.
    RouteNotFound,
    /// 405: the route exists, the method does not (see `Allow`).
    MethodNotAllowed,
    /// 401: authentication is on and the request has no valid bearer token
    /// (see `WWW-Authenticate`).
    Unauthorized,
    /// 403: the token may not do this (open for another owner; admin-only).
    Forbidden,
    /// 400: a malformed, missing or repeated parameter; two operations or none.
    BadParameter,
    /// 404: the account, or a transfer's target, does not exist.
    AccountNotFound,
    /// 422: the transactionId was already used on this account for another operation.
    TransactionReused,
    /// 400: the balance does not cover the amount.
    InsufficientBalance,
    /// 400: the account (or a transfer's target) is closed.
    AccountClosed,
    /// 400: only an account with a zero balance can be closed.
    CloseWithBalance,
    /// 400: a transfer names its own source as the target.
    TransferToSelf,
    /// 400: a balance would exceed i64.
    BalanceOverflow,
    /// 409: opening an id that exists with another owner, or closed. Final.
    AccountExists,
    /// 409: still conflicting with concurrent writers after the server's
    /// own retries. Retrying can succeed.
    Conflict,
    /// 503: the store is unreachable or too slow, or the instance is draining.
    Unavailable,
    /// 503: the instance is over its concurrency limit (load shedding).
    Overloaded,
    /// 413: the request body is larger than the body limit.
    PayloadTooLarge,
    /// 414: the URL is longer than the URL limit.
    UriTooLong,
    /// 431: the request head is larger than the head limit.
    HeadersTooLarge,
    /// 408: the request did not complete within the request timeout.
    RequestTimeout,
    /// 500: a failure of the service itself; never caused by client input.
    InternalError,
}

impl ErrorCode {
    /// Every code, in the order of the enum.
    pub const ALL: &'static [ErrorCode] = <ErrorCode as strum::VariantArray>::VARIANTS;

    pub fn status(self) -> StatusCode {
        match self {
            ErrorCode::BadParameter
            | ErrorCode::InsufficientBalance
            | ErrorCode::AccountClosed
            | ErrorCode::CloseWithBalance
            | ErrorCode::TransferToSelf
            | ErrorCode::BalanceOverflow => StatusCode::BAD_REQUEST,
            ErrorCode::RouteNotFound | ErrorCode::AccountNotFound => StatusCode::NOT_FOUND,
            ErrorCode::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ErrorCode::Unauthorized => StatusCode::UNAUTHORIZED,
            ErrorCode::Forbidden => StatusCode::FORBIDDEN,
            ErrorCode::RequestTimeout => StatusCode::REQUEST_TIMEOUT,
            ErrorCode::AccountExists | ErrorCode::Conflict => StatusCode::CONFLICT,
            ErrorCode::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ErrorCode::UriTooLong => StatusCode::URI_TOO_LONG,
            ErrorCode::TransactionReused => StatusCode::UNPROCESSABLE_ENTITY,
            ErrorCode::HeadersTooLarge => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            ErrorCode::InternalError => StatusCode::INTERNAL_SERVER_ERROR,
            ErrorCode::Unavailable | ErrorCode::Overloaded => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// The code a layer's bodiless error answer gets (a 405 from the router,
    /// a 408 from the timeout, a 413 from the body limit).
    pub fn for_layer_status(status: StatusCode) -> ErrorCode {
        match status {
            StatusCode::NOT_FOUND => ErrorCode::RouteNotFound,
            StatusCode::METHOD_NOT_ALLOWED => ErrorCode::MethodNotAllowed,
            StatusCode::REQUEST_TIMEOUT => ErrorCode::RequestTimeout,
            StatusCode::PAYLOAD_TOO_LARGE => ErrorCode::PayloadTooLarge,
            StatusCode::URI_TOO_LONG => ErrorCode::UriTooLong,
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE => ErrorCode::HeadersTooLarge,
            StatusCode::SERVICE_UNAVAILABLE => ErrorCode::Unavailable,
            StatusCode::BAD_REQUEST => ErrorCode::BadParameter,
            _ => ErrorCode::InternalError,
        }
    }

    /// The word of the JSON body, e.g. `"account_exists"`.
    pub fn as_str(self) -> &'static str {
        self.into()
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `{"code": …, "message": …}`: the body of every error answer the service
/// produces, keys in this order.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[schema(as = Error)]
pub struct ErrorBody {
    pub code: ErrorCode,
    /// A sentence naming the problem and, for a bad parameter, its name and
    /// the value given.
    pub message: String,
}

/// An error answer: its code (which decides the status) and its message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    code: ErrorCode,
    message: String,
}

impl ApiError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> ApiError {
        ApiError {
            code,
            message: message.into(),
        }
    }

    /// A malformed, missing or repeated parameter; two operations or none.
    pub fn bad_parameter(message: impl Into<String>) -> ApiError {
        ApiError::new(ErrorCode::BadParameter, message)
    }

    pub fn account_not_found(account: AccountId) -> ApiError {
        ApiError::new(
            ErrorCode::AccountNotFound,
            format!("account {account} not found"),
        )
    }

    pub fn code(&self) -> ErrorCode {
        self.code
    }

    pub fn status(&self) -> StatusCode {
        self.code.status()
    }

    pub fn message(&self) -> &str {
        &self.message
    }

    /// Maps an engine error for a command on `account` (and, for a
    /// transfer, its `target`).
    pub fn from_engine(error: EngineError, account: AccountId, target: Option<AccountId>) -> Self {
        match error {
            EngineError::Refused(refusal) => ApiError::from_refusal(refusal, account, target),
            reused @ EngineError::TransactionReused { .. } => {
                ApiError::new(ErrorCode::TransactionReused, reused.to_string())
            }
            conflict @ EngineError::Conflict(_) => {
                ApiError::new(ErrorCode::Conflict, conflict.to_string())
            }
            EngineError::Store(error) => {
                tracing::warn!(%error, "store call failed");
                ApiError::new(
                    ErrorCode::Unavailable,
                    "the account store is unavailable; retry later",
                )
            }
        }
    }

    fn from_refusal(refusal: Refusal, account: AccountId, target: Option<AccountId>) -> Self {
        let target = target.map_or_else(String::new, |t| t.to_string());
        let (code, message) = match refusal {
            Refusal::AccountNotFound => return ApiError::account_not_found(account),
            Refusal::TargetNotFound => (
                ErrorCode::AccountNotFound,
                format!("target account {target} not found"),
            ),
            Refusal::AlreadyExists => (
                ErrorCode::AccountExists,
                format!("account {account} already exists"),
            ),
            Refusal::AccountClosed => (
                ErrorCode::AccountClosed,
                format!("account {account} is closed"),
            ),
            Refusal::TargetClosed => (
                ErrorCode::AccountClosed,
                format!("target account {target} is closed"),
            ),
            Refusal::TransferToSelf => (
                ErrorCode::TransferToSelf,
                format!("cannot transfer from account {account} to itself"),
            ),
            rule @ Refusal::InsufficientBalance { .. } => (
                ErrorCode::InsufficientBalance,
                format!("account {account}: {rule}"),
            ),
            rule @ Refusal::CloseWithBalance { .. } => (
                ErrorCode::CloseWithBalance,
                format!("account {account}: {rule}"),
            ),
            rule @ Refusal::BalanceOverflow => (
                ErrorCode::BalanceOverflow,
                format!("account {account}: {rule}"),
            ),
            Refusal::TargetBalanceOverflow => (
                ErrorCode::BalanceOverflow,
                format!("target account {target}: the balance would overflow"),
            ),
            rule @ (Refusal::OpenForAnotherOwner | Refusal::AdminOnly) => {
                (ErrorCode::Forbidden, rule.to_string())
            }
        };
        ApiError::new(code, message)
    }
}

/// What a 401 says about the scheme it wants (RFC 6750, section 3).
pub const WWW_AUTHENTICATE_BEARER: &str = "Bearer error=\"invalid_token\"";

/// A JSON error body with the code's status; a 503 also says when to retry,
/// a 401 which credentials it wants.
pub fn json_error(code: ErrorCode, message: &str) -> Response {
    json_error_with_status(code.status(), code, message)
}

/// [`json_error`] keeping a status some layer already chose.
pub fn json_error_with_status(status: StatusCode, code: ErrorCode, message: &str) -> Response {
    let body = ErrorBody {
        code,
        message: message.to_owned(),
    };
    let mut response = (status, Json(body)).into_response();
    if status == StatusCode::SERVICE_UNAVAILABLE {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(RETRY_AFTER_SECONDS));
    }
    if status == StatusCode::UNAUTHORIZED {
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static(WWW_AUTHENTICATE_BEARER),
        );
    }
    response
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        json_error(self.code, &self.message)
    }
}

#[cfg(test)]
mod tests {
    use super::{ErrorBody, ErrorCode};

    #[test]
    fn the_word_of_each_code_is_its_serde_name() {
        for &code in ErrorCode::ALL {
            let json = serde_json::to_string(&code).unwrap();
            assert_eq!(json, format!("\"{}\"", code.as_str()));
            assert_eq!(serde_json::from_str::<ErrorCode>(&json).unwrap(), code);
        }
    }

    #[test]
    fn an_error_body_has_code_then_message() {
        let body = ErrorBody {
            code: ErrorCode::AccountExists,
            message: "account x already exists".to_owned(),
        };
        assert_eq!(
            serde_json::to_string(&body).unwrap(),
            r#"{"code":"account_exists","message":"account x already exists"}"#
        );
    }
}
