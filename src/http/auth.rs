//! Who is asking: the [`Caller`] extractor. Every `/api/…` handler takes it
//! as its first argument, so the token check answers right after the route
//! and method (404/405) and before any parameter is parsed (400). A new
//! route that needs the rules takes `caller: Caller` first and hands it to
//! the engine, which applies `domain::authorize*`.

use std::sync::Arc;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderMap, header};

use super::AppState;
use super::error::{ApiError, ErrorCode};
use crate::auth::{TokenError, Verifier};
use crate::domain::Caller;
use crate::engine::Clock;

/// Authentication as an instance does it: the verifier, and the clock that
/// says whether a token is current (the engine's, so a simulation decides).
#[derive(Clone)]
pub struct Authenticator {
    verifier: Arc<Verifier>,
    clock: Arc<dyn Clock>,
}

impl Authenticator {
    pub fn new(verifier: Arc<Verifier>, clock: Arc<dyn Clock>) -> Authenticator {
        Authenticator { verifier, clock }
    }

    /// Who the request's `Authorization` header speaks for.
    pub fn caller(&self, headers: &HeaderMap) -> Result<Caller, TokenError> {
        let token = bearer_token(headers)?;
        self.verifier.verify(token, self.clock.now())
    }
}

/// The token of the one `Authorization: Bearer <token>` header. The scheme
/// is matched without regard to case (RFC 9110, section 11.1).
fn bearer_token(headers: &HeaderMap) -> Result<&str, TokenError> {
    let mut values = headers.get_all(header::AUTHORIZATION).iter();
    let value = values.next().ok_or(TokenError::Missing)?;
    if values.next().is_some() {
        return Err(TokenError::Repeated);
    }
    let text = value.to_str().map_err(|_| TokenError::Malformed)?;
    let (scheme, token) = text.split_once(' ').ok_or(TokenError::NotBearer)?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(TokenError::NotBearer);
    }
    match token.trim_matches(' ') {
        "" => Err(TokenError::Missing),
        token => Ok(token),
    }
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, app: &AppState) -> Result<Self, ApiError> {
        let Some(authenticator) = app.authenticator() else {
            return Ok(Caller::Anyone);
        };
        authenticator.caller(&parts.headers).map_err(|error| {
            // The reason only: never the header, which holds the token.
            tracing::debug!(reason = error.reason(), "bearer token refused");
            ApiError::new(ErrorCode::Unauthorized, error.to_string())
        })
    }
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    fn headers(values: &[&str]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for value in values {
            headers.append(header::AUTHORIZATION, HeaderValue::from_str(value).unwrap());
        }
        headers
    }

    #[test]
    fn the_token_is_what_follows_the_bearer_scheme() {
        for value in ["Bearer abc", "bearer abc", "BEARER abc", "Bearer   abc  "] {
            assert_eq!(bearer_token(&headers(&[value])), Ok("abc"), "{value}");
        }
    }

    #[test]
    fn anything_else_is_refused_with_its_reason() {
        let cases: [(&[&str], TokenError); 7] = [
            (&[], TokenError::Missing),
            (&["Bearer"], TokenError::NotBearer),
            (&["Bearer "], TokenError::Missing),
            (&["Basic YWxhZGRpbjpvcGVuc2VzYW1l"], TokenError::NotBearer),
            (&["abc"], TokenError::NotBearer),
            (&["Bearer:abc"], TokenError::NotBearer),
            (&["Bearer abc", "Bearer abc"], TokenError::Repeated),
        ];
        for (values, expected) in cases {
            assert_eq!(bearer_token(&headers(values)), Err(expected), "{values:?}");
        }
        let mut opaque = HeaderMap::new();
        opaque.insert(
            header::AUTHORIZATION,
            HeaderValue::from_bytes(b"Bearer \xff\xfe").unwrap(),
        );
        assert_eq!(bearer_token(&opaque), Err(TokenError::Malformed));
    }
}
