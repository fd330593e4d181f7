//! Authentication for tests: the shared secret of the kit's instances with
//! authentication on ([`crate::TestInstance::with_auth`]), and the tokens
//! they accept.

use accounts::auth::{AuthConfig, Secret, TokenSpec, mint};
use accounts::domain::{OwnerId, Timestamp};
use uuid::Uuid;

use crate::instance::START;

/// The HS256 secret of test instances (long enough: 32 bytes at least).
pub const SECRET: &str = "tests-only secret, at least 32 bytes long";

/// HS256 with [`SECRET`], no issuer or audience.
pub fn hs256() -> AuthConfig {
    AuthConfig::hs256(SECRET)
}

/// Mints HS256 tokens: by default with [`SECRET`], issued at the test
/// clock's [`START`] and valid an hour, with the issuer and audience of the
/// instance they are for.
#[derive(Clone, Debug)]
pub struct Tokens {
    secret: String,
    issued_at: Timestamp,
    issuer: Option<String>,
    audience: Option<String>,
}

impl Tokens {
    /// Tokens an instance configured with `config` accepts, if its key is
    /// [`SECRET`] (an instance with a public key accepts none of them).
    pub fn for_config(config: &AuthConfig) -> Tokens {
        Tokens {
            issuer: config.issuer.clone(),
            audience: config.audience.clone(),
            ..Tokens::with_secret(SECRET)
        }
    }

    /// Tokens signed with `secret` (a real binary's, or a wrong one).
    pub fn with_secret(secret: impl Into<String>) -> Tokens {
        Tokens {
            secret: secret.into(),
            issued_at: START,
            issuer: None,
            audience: None,
        }
    }

    /// The same, issued at `issued_at` (a real binary judges them by the
    /// system clock).
    pub fn issued_at(self, issued_at: Timestamp) -> Tokens {
        Tokens { issued_at, ..self }
    }

    /// A token for `owner`.
    pub fn owner(&self, owner: OwnerId) -> String {
        self.mint(&TokenSpec::owner(owner, self.issued_at))
    }

    /// A token with the admin scope.
    pub fn admin(&self) -> String {
        let subject = OwnerId::from_uuid(Uuid::nil());
        self.mint(&TokenSpec::owner(subject, self.issued_at).admin())
    }

    /// A token for `spec`; an issuer or audience it leaves unset is the
    /// instance's.
    pub fn mint(&self, spec: &TokenSpec) -> String {
        let spec = TokenSpec {
            issuer: spec.issuer.clone().or(self.issuer.clone()),
            audience: spec.audience.clone().or(self.audience.clone()),
            ..spec.clone()
        };
        mint(&Secret::new(self.secret.as_str()), &spec).expect("minted")
    }
}
