//! Parsing at the edge: once a handler holds an `AccountId` or an `Amount`,
//! it is valid. Every failure names the parameter and the value given.

use axum::extract::{FromRequestParts, Path};
use axum::http::request::Parts;
use serde::de::DeserializeOwned;

use super::error::ApiError;
use crate::domain::{AccountId, Amount, AmountError, OwnerId, Timestamp, TransactionId};

/// The `{accountId}` of the URL, parsed.
pub struct AccountPath(pub AccountId);

impl<S: Send + Sync> FromRequestParts<S> for AccountPath {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let Path(text) = Path::<String>::from_request_parts(parts, state)
            .await
            .map_err(|_| {
                ApiError::bad_parameter(
                    "the account id in the path is not valid UTF-8 text".to_owned(),
                )
            })?;
        AccountId::parse(&text).map(AccountPath).map_err(|_| {
            ApiError::bad_parameter(format!(
                "invalid account id {text:?} in the path: not a UUID"
            ))
        })
    }
}

/// The query string, deserialized with serde_urlencoded into `T` (whose
/// fields are `Option<String>`): a parameter given twice is refused by serde
/// as a duplicate field; parameters `T` does not name are ignored.
pub struct Query<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for Query<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let query = parts.uri.query().unwrap_or_default();
        serde_urlencoded::from_str(query)
            .map(Query)
            .map_err(|error| {
                let error = error.to_string();
                ApiError::bad_parameter(match error.strip_prefix("duplicate field ") {
                    Some(name) => format!(
                        "parameter {} is given more than once",
                        name.trim_matches('`')
                    ),
                    None => format!("invalid query string: {error}"),
                })
            })
    }
}

pub fn required<'a>(value: &'a Option<String>, name: &str) -> Result<&'a str, ApiError> {
    value
        .as_deref()
        .ok_or_else(|| ApiError::bad_parameter(format!("missing parameter {name}")))
}

pub fn amount(value: &Option<String>, name: &str) -> Result<Amount, ApiError> {
    parsed_amount(value, name, Amount::parse)
}

/// A transfer's amount: at least [`crate::domain::TRANSFER_AMOUNT_MIN`],
/// decided here with the other parameters, before any account is loaded.
pub fn transfer_amount(value: &Option<String>, name: &str) -> Result<Amount, ApiError> {
    parsed_amount(value, name, Amount::parse_transfer)
}

fn parsed_amount(
    value: &Option<String>,
    name: &str,
    parse: impl Fn(&str) -> Result<Amount, AmountError>,
) -> Result<Amount, ApiError> {
    let text = required(value, name)?;
    parse(text).map_err(|error| {
        let hint = match error {
            AmountError::Negative => "; amounts are never negative",
            _ => "",
        };
        ApiError::bad_parameter(format!(
            "invalid parameter {name}={text:?}: the amount {error}{hint}"
        ))
    })
}

fn uuid<T>(
    value: &str,
    name: &str,
    parse: impl Fn(&str) -> Result<T, crate::domain::IdError>,
) -> Result<T, ApiError> {
    parse(value).map_err(|_| {
        ApiError::bad_parameter(format!("invalid parameter {name}={value:?}: not a UUID"))
    })
}

pub fn account_id(value: &Option<String>, name: &str) -> Result<AccountId, ApiError> {
    uuid(required(value, name)?, name, AccountId::parse)
}

pub fn owner_id(value: &Option<String>, name: &str) -> Result<OwnerId, ApiError> {
    uuid(required(value, name)?, name, OwnerId::parse)
}

pub fn transaction_id(value: &Option<String>, name: &str) -> Result<TransactionId, ApiError> {
    uuid(required(value, name)?, name, TransactionId::parse)
}

pub fn optional_transaction_id(
    value: &Option<String>,
    name: &str,
) -> Result<Option<TransactionId>, ApiError> {
    value
        .as_deref()
        .map(|text| uuid(text, name, TransactionId::parse))
        .transpose()
}

/// An integer parameter within `min..=max`, or `default` when absent.
pub fn bounded(
    value: &Option<String>,
    name: &str,
    default: u64,
    min: u64,
    max: u64,
) -> Result<u64, ApiError> {
    let Some(text) = value.as_deref() else {
        return Ok(default);
    };
    match text.parse::<u64>() {
        Ok(number) if (min..=max).contains(&number) => Ok(number),
        _ => Err(ApiError::bad_parameter(format!(
            "invalid parameter {name}={text:?}: must be an integer from {min} to {max}"
        ))),
    }
}

/// An RFC 3339 time, e.g. `2026-11-26T10:00:00Z` (a `+hh:mm` offset must
/// come percent-encoded, as `+` in a query string means a space).
pub fn timestamp(value: &Option<String>, name: &str) -> Result<Timestamp, ApiError> {
    let text = required(value, name)?;
    Timestamp::parse_rfc3339(text).ok_or_else(|| {
        ApiError::bad_parameter(format!(
            "invalid parameter {name}={text:?}: not an RFC 3339 time such as 2026-11-26T10:00:00Z"
        ))
    })
}
