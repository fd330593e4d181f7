//! Bearer tokens (docs/API.md, "Authentication"): verifying a request's JWT
//! into the [`Caller`] it speaks for, and minting tokens for `accounts token`,
//! the tests and the simulation.
//!
//! The signature, the algorithm, the issuer and the audience are checked by
//! `jsonwebtoken`; the algorithm is the configured one, never the token's own
//! `alg` header, and `none` does not exist there. Time (`exp`, `nbf`) is
//! checked here against the instance's own clock, which the caller passes
//! in, so a simulation decides what "now" is.

use std::fmt;
use std::time::Duration;

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::Serialize;
use serde_json::{Map, Value};

use crate::domain::{Caller, OwnerId, Timestamp};

/// Clock skew tolerated on `exp` and `nbf`: an issuer's clock and ours may
/// differ by this much without refusing fresh tokens.
pub const LEEWAY_SECONDS: u64 = 60;

/// The `scope` value that makes a token an admin's.
pub const ADMIN_SCOPE: &str = "accounts:admin";

/// The shortest HMAC secret accepted: RFC 7518 (section 3.2) requires a key
/// at least as long as the hash, 256 bits for HS256; a shorter one can be
/// found offline from a single token.
pub const SECRET_BYTES_MIN: usize = 32;

/// The shortest secret for HS384 and HS512 (RFC 7518, section 3.2: 384 and
/// 512 bits, the size of their hashes).
pub const SECRET_BYTES_MIN_HS384: usize = 48;
pub const SECRET_BYTES_MIN_HS512: usize = 64;

/// The shortest secret `algorithm` accepts ([`SECRET_BYTES_MIN`] for HS256
/// and for every algorithm that takes no secret).
pub fn secret_bytes_min(algorithm: Algorithm) -> usize {
    match algorithm {
        Algorithm::HS384 => SECRET_BYTES_MIN_HS384,
        Algorithm::HS512 => SECRET_BYTES_MIN_HS512,
        _ => SECRET_BYTES_MIN,
    }
}

/// Default lifetime of a minted token (`accounts token --ttl`, whose flag
/// takes it as written) and of [`TokenSpec::owner`]'s.
pub const TOKEN_TTL: &str = "1h";

/// [`TOKEN_TTL`] as a duration.
pub fn token_ttl() -> Duration {
    humantime::parse_duration(TOKEN_TTL).expect("TOKEN_TTL is a duration")
}

/// A shared secret. Never printed: its `Debug` is a placeholder, and it has
/// no `Display`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(text: impl Into<String>) -> Secret {
        Secret(text.into())
    }

    pub fn as_bytes(&self) -> &[u8] {
        self.0.as_bytes()
    }

    /// Refuses a secret shorter than [`SECRET_BYTES_MIN`], with a message
    /// that says how long it is, never what it is.
    pub fn check_length(&self) -> Result<(), AuthSetupError> {
        self.check_length_for(Algorithm::HS256)
    }

    /// Refuses a secret shorter than `algorithm`'s hash
    /// ([`secret_bytes_min`]), with the same message for every algorithm.
    pub fn check_length_for(&self, algorithm: Algorithm) -> Result<(), AuthSetupError> {
        let length = self.0.len();
        let minimum = secret_bytes_min(algorithm);
        if length < minimum {
            return Err(AuthSetupError(format!(
                "the JWT secret is {length} bytes long; at least {minimum} are required for \
                 {algorithm:?} (RFC 7518: at least the hash size)"
            )));
        }
        Ok(())
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl From<String> for Secret {
    fn from(text: String) -> Secret {
        Secret(text)
    }
}

/// What verifies signatures: a shared secret (HMAC) or a public key in PEM.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum VerifyingKey {
    Secret(Secret),
    /// The contents of a PEM file: an RSA, EC (P-256, P-384) or Ed25519
    /// public key.
    PublicKeyPem(Vec<u8>),
}

/// Authentication as configured (`--auth-…` flags).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuthConfig {
    pub key: VerifyingKey,
    /// The one algorithm accepted; `None` follows from the key: HS256 for a
    /// secret, RS256, ES256 (ES384 for a P-384 key) or EdDSA for a public key.
    pub algorithm: Option<Algorithm>,
    /// Tokens must carry exactly this `iss`, when set.
    pub issuer: Option<String>,
    /// Tokens must name this in `aud`, when set. Unset, a token that carries
    /// an `aud` is refused (RFC 7519, section 4.1.3: we cannot be its audience).
    pub audience: Option<String>,
}

impl AuthConfig {
    /// HS256 with `secret`, no issuer or audience.
    pub fn hs256(secret: impl Into<String>) -> AuthConfig {
        AuthConfig {
            key: VerifyingKey::Secret(Secret::new(secret)),
            algorithm: None,
            issuer: None,
            audience: None,
        }
    }
}

/// A configuration that cannot verify anything; stops start-up.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct AuthSetupError(pub String);

/// Why a request's token was refused: every one is a 401. The texts name
/// the problem and never repeat any part of the token.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, thiserror::Error)]
pub enum TokenError {
    #[error("a bearer token is required: send Authorization: Bearer <JWT>")]
    Missing,
    #[error("send exactly one Authorization header")]
    Repeated,
    #[error("the Authorization header is not of the Bearer scheme")]
    NotBearer,
    #[error("the bearer token is not a well-formed JWT")]
    Malformed,
    #[error("the bearer token is not signed with the algorithm this service accepts")]
    WrongAlgorithm,
    #[error("the bearer token's signature is not valid")]
    BadSignature,
    #[error("the bearer token has no exp (expiry) claim")]
    MissingExpiry,
    #[error("the bearer token has expired")]
    Expired,
    #[error("the bearer token is not valid yet (nbf)")]
    NotYetValid,
    #[error("the bearer token's issuer (iss) is not the one this service accepts")]
    WrongIssuer,
    #[error("the bearer token's audience (aud) does not name this service")]
    WrongAudience,
    #[error("the bearer token's subject (sub) is not a UUID")]
    BadSubject,
}

impl TokenError {
    /// A stable word for logs and tests.
    pub fn reason(self) -> &'static str {
        match self {
            TokenError::Missing => "missing",
            TokenError::Repeated => "repeated",
            TokenError::NotBearer => "not_bearer",
            TokenError::Malformed => "malformed",
            TokenError::WrongAlgorithm => "wrong_algorithm",
            TokenError::BadSignature => "bad_signature",
            TokenError::MissingExpiry => "missing_expiry",
            TokenError::Expired => "expired",
            TokenError::NotYetValid => "not_yet_valid",
            TokenError::WrongIssuer => "wrong_issuer",
            TokenError::WrongAudience => "wrong_audience",
            TokenError::BadSubject => "bad_subject",
        }
    }

    fn from_library(kind: &ErrorKind) -> TokenError {
        match kind {
            ErrorKind::InvalidAlgorithm
            | ErrorKind::MissingAlgorithm
            | ErrorKind::InvalidAlgorithmName
            | ErrorKind::UnsupportedAlgorithm => TokenError::WrongAlgorithm,
            ErrorKind::InvalidSignature
            | ErrorKind::InvalidEcdsaKey
            | ErrorKind::InvalidEddsaKey
            | ErrorKind::InvalidRsaKey(_)
            | ErrorKind::InvalidKeyFormat => TokenError::BadSignature,
            ErrorKind::MissingRequiredClaim(claim) => match claim.as_str() {
                "iss" => TokenError::WrongIssuer,
                "aud" => TokenError::WrongAudience,
                "exp" => TokenError::MissingExpiry,
                _ => TokenError::Malformed,
            },
            ErrorKind::InvalidIssuer => TokenError::WrongIssuer,
            ErrorKind::InvalidAudience => TokenError::WrongAudience,
            ErrorKind::ExpiredSignature => TokenError::Expired,
            ErrorKind::ImmatureSignature => TokenError::NotYetValid,
            _ => TokenError::Malformed,
        }
    }
}

/// Checks bearer tokens against one configuration.
pub struct Verifier {
    key: DecodingKey,
    validation: Validation,
    algorithm: Algorithm,
}

impl fmt::Debug for Verifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Verifier")
            .field("algorithm", &self.algorithm)
            .finish_non_exhaustive()
    }
}

impl Verifier {
    /// Refuses what could never verify a token: a short secret, a PEM file
    /// that holds no public key (or a private one), an algorithm of another
    /// family than the key.
    pub fn new(config: &AuthConfig) -> Result<Verifier, AuthSetupError> {
        let (key, default_algorithm) = decoding_key(&config.key)?;
        let algorithm = config.algorithm.unwrap_or(default_algorithm);
        if let VerifyingKey::Secret(secret) = &config.key {
            secret.check_length_for(algorithm)?;
        }
        if algorithm.family() != key.family() {
            return Err(AuthSetupError(format!(
                "the JWT algorithm {algorithm:?} does not go with the configured key \
                 (a {:?} key)",
                key.family()
            )));
        }
        let verifier = Verifier {
            validation: validation(algorithm, config),
            key,
            algorithm,
        };
        verifier.check_key_usable()?;
        Ok(verifier)
    }

    pub fn algorithm(&self) -> Algorithm {
        self.algorithm
    }

    /// Who `token` speaks for at `now`, or why it speaks for nobody.
    pub fn verify(&self, token: &str, now: Timestamp) -> Result<Caller, TokenError> {
        let data = jsonwebtoken::decode::<Map<String, Value>>(token, &self.key, &self.validation)
            .map_err(|error| TokenError::from_library(error.kind()))?;
        let claims = data.claims;
        check_time(&claims, now)?;
        let subject = claims
            .get("sub")
            .and_then(Value::as_str)
            .and_then(|text| OwnerId::parse(text).ok())
            .ok_or(TokenError::BadSubject)?;
        Ok(if has_admin_scope(claims.get("scope")) {
            Caller::Admin
        } else {
            Caller::Owner(subject)
        })
    }

    /// Some keys parse as PEM but are no key of their curve or size; the
    /// library says so only when it first verifies. Verifying a dummy token
    /// at start-up says it once, to the operator, instead of refusing every
    /// client.
    fn check_key_usable(&self) -> Result<(), AuthSetupError> {
        let header = jsonwebtoken::Header::new(self.algorithm);
        let header = serde_json::to_vec(&header).expect("a JWT header serializes");
        let token = format!("{}.e30.AAAA", base64_url(&header));
        let probe = jsonwebtoken::decode::<Map<String, Value>>(token, &self.key, &self.validation);
        match probe.as_ref().map_err(|error| error.kind()) {
            Err(
                ErrorKind::InvalidEcdsaKey
                | ErrorKind::InvalidEddsaKey
                | ErrorKind::InvalidRsaKey(_)
                | ErrorKind::InvalidKeyFormat,
            ) => Err(AuthSetupError(format!(
                "the public key cannot verify {:?} signatures",
                self.algorithm
            ))),
            _ => Ok(()),
        }
    }
}

/// The key and the algorithm it implies.
fn decoding_key(key: &VerifyingKey) -> Result<(DecodingKey, Algorithm), AuthSetupError> {
    match key {
        VerifyingKey::Secret(secret) => {
            secret.check_length()?;
            Ok((
                DecodingKey::from_secret(secret.as_bytes()),
                Algorithm::HS256,
            ))
        }
        VerifyingKey::PublicKeyPem(pem) => public_key(pem),
    }
}

fn public_key(pem: &[u8]) -> Result<(DecodingKey, Algorithm), AuthSetupError> {
    // A verifier needs only the public half; a private key here means the
    // signing key was copied where it does not belong.
    if pem
        .windows(b"PRIVATE KEY".len())
        .any(|w| w == b"PRIVATE KEY")
    {
        return Err(AuthSetupError(
            "the JWT public key file holds a private key: give the service only the public key"
                .to_owned(),
        ));
    }
    if let Ok(key) = DecodingKey::from_rsa_pem(pem) {
        return Ok((key, Algorithm::RS256));
    }
    if let Ok(key) = DecodingKey::from_ed_pem(pem) {
        return Ok((key, Algorithm::EdDSA));
    }
    if let Ok(key) = DecodingKey::from_ec_pem(pem) {
        // An uncompressed point: 65 bytes on P-256, 97 on P-384.
        let p384 = key.try_get_as_bytes().is_ok_and(|bytes| bytes.len() == 97);
        let algorithm = if p384 {
            Algorithm::ES384
        } else {
            Algorithm::ES256
        };
        return Ok((key, algorithm));
    }
    Err(AuthSetupError(
        "the JWT public key file is not a PEM public key (RSA, EC P-256/P-384 or Ed25519)"
            .to_owned(),
    ))
}

fn validation(algorithm: Algorithm, config: &AuthConfig) -> Validation {
    let mut validation = Validation::new(algorithm);
    // The library reads the system clock; `check_time` reads ours.
    validation.validate_exp = false;
    validation.validate_nbf = false;
    let mut required = vec!["exp"];
    if let Some(issuer) = &config.issuer {
        validation.set_issuer(&[issuer]);
        required.push("iss");
    }
    if let Some(audience) = &config.audience {
        validation.set_audience(&[audience]);
        required.push("aud");
    }
    validation.set_required_spec_claims(&required);
    validation
}

/// `exp` (required) and `nbf` (if present) against `now`, with the leeway.
fn check_time(claims: &Map<String, Value>, now: Timestamp) -> Result<(), TokenError> {
    let now_seconds = now.unix_millis().div_euclid(1000) as f64;
    let leeway = LEEWAY_SECONDS as f64;
    let expiry = claims
        .get("exp")
        .and_then(Value::as_f64)
        .ok_or(TokenError::MissingExpiry)?;
    if expiry + leeway < now_seconds {
        return Err(TokenError::Expired);
    }
    match claims.get("nbf") {
        None => Ok(()),
        Some(not_before) => match not_before.as_f64() {
            Some(not_before) if not_before - leeway > now_seconds => Err(TokenError::NotYetValid),
            Some(_) => Ok(()),
            None => Err(TokenError::Malformed),
        },
    }
}

/// `scope` as OAuth 2.0 writes it (one string of space-separated scopes),
/// or as a list of strings, as some issuers write it.
fn has_admin_scope(scope: Option<&Value>) -> bool {
    match scope {
        Some(Value::String(scopes)) => scopes.split(' ').any(|scope| scope == ADMIN_SCOPE),
        Some(Value::Array(scopes)) => scopes.iter().any(|scope| scope == ADMIN_SCOPE),
        _ => false,
    }
}

fn base64_url(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// What a minted token says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenSpec {
    pub subject: OwnerId,
    pub admin: bool,
    pub issued_at: Timestamp,
    pub ttl: Duration,
    pub issuer: Option<String>,
    pub audience: Option<String>,
}

impl TokenSpec {
    /// An owner's token for `subject`, issued at `issued_at`, valid for
    /// [`TOKEN_TTL`].
    pub fn owner(subject: OwnerId, issued_at: Timestamp) -> TokenSpec {
        TokenSpec {
            subject,
            admin: false,
            issued_at,
            ttl: token_ttl(),
            issuer: None,
            audience: None,
        }
    }

    /// The same token with the admin scope.
    pub fn admin(self) -> TokenSpec {
        TokenSpec {
            admin: true,
            ..self
        }
    }
}

#[derive(Serialize)]
struct MintedClaims<'a> {
    sub: String,
    iat: i64,
    nbf: i64,
    exp: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    iss: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    aud: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    scope: Option<&'static str>,
}

/// An HS256 token for `spec`, signed with `secret`.
pub fn mint(secret: &Secret, spec: &TokenSpec) -> Result<String, AuthSetupError> {
    secret.check_length()?;
    let issued_at = spec.issued_at.unix_millis().div_euclid(1000);
    let ttl_seconds = i64::try_from(spec.ttl.as_secs()).unwrap_or(i64::MAX);
    let claims = MintedClaims {
        sub: spec.subject.to_string(),
        iat: issued_at,
        nbf: issued_at,
        exp: issued_at.saturating_add(ttl_seconds),
        iss: spec.issuer.as_deref(),
        aud: spec.audience.as_deref(),
        scope: spec.admin.then_some(ADMIN_SCOPE),
    };
    let key = EncodingKey::from_secret(secret.as_bytes());
    jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &key)
        .map_err(|error| AuthSetupError(format!("cannot sign the token: {error}")))
}

#[cfg(test)]
mod tests {
    use uuid::Uuid;

    use super::*;

    const SECRET: &str = "a test secret of at least thirty-two bytes";
    /// 2026-11-26T10:00:00Z
    const NOW_MILLIS: i64 = 1_795_687_200_000;

    fn now() -> Timestamp {
        Timestamp::from_unix_millis(NOW_MILLIS)
    }

    fn at_seconds(offset: i64) -> Timestamp {
        Timestamp::from_unix_millis(NOW_MILLIS + offset * 1000)
    }

    fn owner() -> OwnerId {
        OwnerId::from_uuid(Uuid::from_u128(7))
    }

    fn verifier(config: &AuthConfig) -> Verifier {
        Verifier::new(config).expect("a usable configuration")
    }

    fn minted(spec: &TokenSpec) -> String {
        mint(&Secret::new(SECRET), spec).expect("minted")
    }

    /// A token signed with `secret` over arbitrary claims.
    fn signed(claims: Value, secret: &str) -> String {
        let key = EncodingKey::from_secret(secret.as_bytes());
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &key).unwrap()
    }

    fn fixture(name: &str) -> Vec<u8> {
        let path = format!("{}/fixtures/auth/{name}", env!("CARGO_MANIFEST_DIR"));
        std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
    }

    #[test]
    fn a_minted_token_verifies_as_its_owner_or_as_an_admin() {
        let verifier = verifier(&AuthConfig::hs256(SECRET));
        let spec = TokenSpec::owner(owner(), now());
        assert_eq!(
            verifier.verify(&minted(&spec), now()),
            Ok(Caller::Owner(owner()))
        );
        assert_eq!(
            verifier.verify(&minted(&spec.admin()), now()),
            Ok(Caller::Admin)
        );
    }

    #[test]
    fn expiry_and_not_before_follow_the_given_clock_with_a_minute_of_leeway() {
        let verifier = verifier(&AuthConfig::hs256(SECRET));
        // Valid from now for TOKEN_TTL.
        let token = minted(&TokenSpec::owner(owner(), now()));
        let leeway = LEEWAY_SECONDS as i64;
        let expiry = token_ttl().as_secs() as i64;
        for (offset, expected) in [
            (-leeway - 1, Err(TokenError::NotYetValid)),
            (-leeway, Ok(Caller::Owner(owner()))),
            (expiry + leeway, Ok(Caller::Owner(owner()))),
            (expiry + leeway + 1, Err(TokenError::Expired)),
        ] {
            assert_eq!(
                verifier.verify(&token, at_seconds(offset)),
                expected,
                "{offset} s"
            );
        }
    }

    #[test]
    fn a_token_without_exp_or_with_a_bad_subject_is_refused() {
        let verifier = verifier(&AuthConfig::hs256(SECRET));
        let exp = NOW_MILLIS / 1000 + 60;
        let no_exp = signed(serde_json::json!({"sub": owner().to_string()}), SECRET);
        assert_eq!(
            verifier.verify(&no_exp, now()),
            Err(TokenError::MissingExpiry)
        );
        let text_exp = signed(
            serde_json::json!({"sub": owner().to_string(), "exp": "tomorrow"}),
            SECRET,
        );
        assert!(verifier.verify(&text_exp, now()).is_err());
        for sub in [
            serde_json::json!("alice"),
            serde_json::json!(42),
            Value::Null,
        ] {
            let token = signed(serde_json::json!({"sub": sub, "exp": exp}), SECRET);
            assert_eq!(verifier.verify(&token, now()), Err(TokenError::BadSubject));
        }
        let no_sub = signed(serde_json::json!({"exp": exp}), SECRET);
        assert_eq!(verifier.verify(&no_sub, now()), Err(TokenError::BadSubject));
    }

    #[test]
    fn the_admin_scope_is_one_of_the_scopes_exactly() {
        let verifier = verifier(&AuthConfig::hs256(SECRET));
        let exp = NOW_MILLIS / 1000 + 60;
        for (scope, admin) in [
            (serde_json::json!("accounts:admin"), true),
            (serde_json::json!("openid accounts:admin profile"), true),
            (serde_json::json!(["read", "accounts:admin"]), true),
            (serde_json::json!("accounts:administrator"), false),
            (serde_json::json!("ACCOUNTS:ADMIN"), false),
            (serde_json::json!({"accounts:admin": true}), false),
        ] {
            let token = signed(
                serde_json::json!({"sub": owner().to_string(), "exp": exp, "scope": scope}),
                SECRET,
            );
            let expected = if admin {
                Caller::Admin
            } else {
                Caller::Owner(owner())
            };
            assert_eq!(verifier.verify(&token, now()), Ok(expected), "{scope}");
        }
    }

    #[test]
    fn issuer_and_audience_are_required_when_configured() {
        let config = AuthConfig {
            issuer: Some("https://issuer.example".to_owned()),
            audience: Some("accounts".to_owned()),
            ..AuthConfig::hs256(SECRET)
        };
        let verifier = verifier(&config);
        let spec = TokenSpec {
            issuer: config.issuer.clone(),
            audience: config.audience.clone(),
            ..TokenSpec::owner(owner(), now())
        };
        assert_eq!(
            verifier.verify(&minted(&spec), now()),
            Ok(Caller::Owner(owner()))
        );
        let cases = [
            (None, spec.audience.clone(), TokenError::WrongIssuer),
            (
                Some("someone".to_owned()),
                spec.audience.clone(),
                TokenError::WrongIssuer,
            ),
            (spec.issuer.clone(), None, TokenError::WrongAudience),
            (
                spec.issuer.clone(),
                Some("other".to_owned()),
                TokenError::WrongAudience,
            ),
        ];
        for (issuer, audience, expected) in cases {
            let token = minted(&TokenSpec {
                issuer,
                audience,
                ..spec.clone()
            });
            assert_eq!(verifier.verify(&token, now()), Err(expected));
        }
        // Without a configured audience, a token meant for someone else is
        // not for us either.
        let open = self::verifier(&AuthConfig::hs256(SECRET));
        let elsewhere = minted(&TokenSpec {
            audience: Some("billing".to_owned()),
            ..TokenSpec::owner(owner(), now())
        });
        assert_eq!(
            open.verify(&elsewhere, now()),
            Err(TokenError::WrongAudience)
        );
    }

    #[test]
    fn another_secret_or_another_algorithm_is_refused() {
        let verifier = verifier(&AuthConfig::hs256(SECRET));
        let exp = NOW_MILLIS / 1000 + 60;
        let claims = serde_json::json!({"sub": owner().to_string(), "exp": exp});
        let other = signed(
            claims.clone(),
            "another secret of at least thirty-two bytes",
        );
        assert_eq!(
            verifier.verify(&other, now()),
            Err(TokenError::BadSignature)
        );
        let key = EncodingKey::from_secret(SECRET.as_bytes());
        let hs512 = jsonwebtoken::encode(&Header::new(Algorithm::HS512), &claims, &key).unwrap();
        assert_eq!(
            verifier.verify(&hs512, now()),
            Err(TokenError::WrongAlgorithm)
        );
        // alg "none" is no algorithm at all.
        let header = base64_url(br#"{"alg":"none","typ":"JWT"}"#);
        let payload = base64_url(claims.to_string().as_bytes());
        let unsigned = format!("{header}.{payload}.");
        assert!(verifier.verify(&unsigned, now()).is_err());
    }

    #[test]
    fn public_keys_of_each_kind_verify_their_own_signatures_only() {
        let exp = NOW_MILLIS / 1000 + 60;
        let claims = serde_json::json!({"sub": owner().to_string(), "exp": exp});
        let kinds = [
            ("rsa", Algorithm::RS256),
            ("ec-p256", Algorithm::ES256),
            ("ed25519", Algorithm::EdDSA),
        ];
        for (kind, algorithm) in kinds {
            let config = AuthConfig {
                key: VerifyingKey::PublicKeyPem(fixture(&format!("{kind}-public.pem"))),
                algorithm: None,
                issuer: None,
                audience: None,
            };
            let verifier = verifier(&config);
            assert_eq!(verifier.algorithm(), algorithm, "{kind}");
            let private = fixture(&format!("{kind}-private.pem"));
            let key = match algorithm {
                Algorithm::RS256 => EncodingKey::from_rsa_pem(&private),
                Algorithm::ES256 => EncodingKey::from_ec_pem(&private),
                _ => EncodingKey::from_ed_pem(&private),
            }
            .unwrap();
            let token = jsonwebtoken::encode(&Header::new(algorithm), &claims, &key).unwrap();
            assert_eq!(
                verifier.verify(&token, now()),
                Ok(Caller::Owner(owner())),
                "{kind}"
            );
            // The public key's own bytes as an HMAC secret: alg confusion.
            let public = String::from_utf8(fixture(&format!("{kind}-public.pem"))).unwrap();
            let confused = signed(claims.clone(), &public);
            assert_eq!(
                verifier.verify(&confused, now()),
                Err(TokenError::WrongAlgorithm),
                "{kind}"
            );
        }
    }

    #[test]
    fn unusable_configurations_stop_start_up_without_showing_the_secret() {
        let short = Verifier::new(&AuthConfig::hs256("hunter2")).unwrap_err();
        assert!(short.0.contains("7 bytes"), "{short}");
        assert!(!short.0.contains("hunter2"), "{short}");
        let private = AuthConfig {
            key: VerifyingKey::PublicKeyPem(fixture("rsa-private.pem")),
            ..AuthConfig::hs256(SECRET)
        };
        assert!(
            Verifier::new(&private)
                .unwrap_err()
                .0
                .contains("private key")
        );
        let garbage = AuthConfig {
            key: VerifyingKey::PublicKeyPem(b"not a key".to_vec()),
            ..AuthConfig::hs256(SECRET)
        };
        assert!(Verifier::new(&garbage).is_err());
        let mismatched = AuthConfig {
            key: VerifyingKey::PublicKeyPem(fixture("rsa-public.pem")),
            algorithm: Some(Algorithm::ES256),
            ..AuthConfig::hs256(SECRET)
        };
        assert!(Verifier::new(&mismatched).is_err());
        let wrong_curve = AuthConfig {
            key: VerifyingKey::PublicKeyPem(fixture("ec-p256-public.pem")),
            algorithm: Some(Algorithm::ES384),
            ..AuthConfig::hs256(SECRET)
        };
        assert!(Verifier::new(&wrong_curve).is_err());
        assert_eq!(format!("{:?}", Secret::new(SECRET)), "Secret(***)");
    }

    #[test]
    fn hs384_and_hs512_need_secrets_as_long_as_their_hashes() {
        for (algorithm, minimum) in [
            (Algorithm::HS256, SECRET_BYTES_MIN),
            (Algorithm::HS384, SECRET_BYTES_MIN_HS384),
            (Algorithm::HS512, SECRET_BYTES_MIN_HS512),
        ] {
            let config = |length: usize| AuthConfig {
                algorithm: Some(algorithm),
                ..AuthConfig::hs256("k".repeat(length))
            };
            let short = Verifier::new(&config(minimum - 1)).unwrap_err();
            let expected = format!(
                "the JWT secret is {} bytes long; at least {minimum} are required for {algorithm:?}",
                minimum - 1
            );
            assert!(short.0.starts_with(&expected), "{short}");
            assert!(!short.0.contains("kkkk"), "{short}");
            let verifier = Verifier::new(&config(minimum)).unwrap();
            assert_eq!(verifier.algorithm(), algorithm);
        }
    }
}
