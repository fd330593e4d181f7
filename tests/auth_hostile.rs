//! Hostile tokens (issue 13): proptest, with a fixed seed, sends generated
//! bad `Authorization` headers to real instances with authentication on —
//! malformed, truncated, tampered, oversized, wrongly signed, `alg: none`,
//! algorithm confusion, expired, not yet valid, without `exp`, wrong
//! issuer or audience, a `sub` that is no UUID, broken schemes, several
//! headers, opaque bytes — and checks that every one is answered 401 with
//! the challenge and the JSON body (431 when the head is over the limit),
//! never a 5xx, a panic or a dropped connection, and that nothing is
//! recorded. It prints the table of cases and answers (`--nocapture`).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

use accounts::auth::{AuthConfig, LEEWAY_SECONDS, VerifyingKey};
use accounts::http::HEADER_BYTES_MAX;
use accounts::store::{EventStore, MemoryStore};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;
use serde_json::{Value, json};
use testkit::auth::SECRET;
use testkit::instance::START;
use testkit::properties::runner;
use testkit::{Answer, Served, StatusCode, TestInstance, fresh_owner, fresh_uuid as fresh, raw};

const SEED: u64 = 20_261_126;
const CASES: u32 = 3_000;
/// The kinds of hostile case the strategies below generate.
const KINDS: usize = 26;
const ISSUER: &str = "https://login.example";
const AUDIENCE: &str = "accounts";

/// Which instance a case is sent to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Target {
    /// HS256 with an issuer and an audience.
    Hmac,
    /// RS256 with a public key.
    Rsa,
}

/// One hostile request: its kind (for the table), where it goes and the
/// `Authorization` header values it carries (none, one or several).
#[derive(Clone, Debug)]
struct Case {
    kind: &'static str,
    target: Target,
    values: Vec<Vec<u8>>,
}

impl Case {
    fn bearer(kind: &'static str, target: Target, token: &str) -> Case {
        Case {
            kind,
            target,
            values: vec![format!("Bearer {token}").into_bytes()],
        }
    }
}

fn now_seconds() -> i64 {
    START.unix_millis() / 1000
}

/// The claims of a token the HMAC instance would accept, before mutation.
fn valid_claims() -> Value {
    json!({
        "sub": fresh_owner().to_string(),
        "exp": now_seconds() + 600,
        "iss": ISSUER,
        "aud": AUDIENCE,
    })
}

fn sign(algorithm: Algorithm, claims: &Value, key: &[u8]) -> String {
    let key = EncodingKey::from_secret(key);
    jsonwebtoken::encode(&Header::new(algorithm), claims, &key).expect("signed")
}

fn valid_token() -> String {
    sign(Algorithm::HS256, &valid_claims(), SECRET.as_bytes())
}

fn with(claims: Value, key: &str, value: Value) -> Value {
    let mut claims = claims;
    claims[key] = value;
    claims
}

fn without(claims: Value, key: &str) -> Value {
    let mut claims = claims;
    claims.as_object_mut().expect("an object").remove(key);
    claims
}

fn unsigned(alg: &str, claims: &Value, signature: &str) -> String {
    let header = URL_SAFE_NO_PAD.encode(format!(r#"{{"alg":"{alg}","typ":"JWT"}}"#));
    let payload = URL_SAFE_NO_PAD.encode(claims.to_string());
    format!("{header}.{payload}.{signature}")
}

fn rsa_public_pem() -> Vec<u8> {
    let path = format!(
        "{}/fixtures/auth/rsa-public.pem",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read(path).expect("the test key")
}

/// Text of any printable ASCII, and of base64url characters and dots.
fn printable(max: usize) -> impl Strategy<Value = String> {
    proptest::collection::vec(0x21u8..0x7f, 1..max)
        .prop_map(|bytes| String::from_utf8(bytes).expect("ASCII"))
}

fn segments() -> impl Strategy<Value = String> {
    proptest::collection::vec("[A-Za-z0-9_-]{0,40}", 1..6).prop_map(|parts| parts.join("."))
}

fn malformed() -> impl Strategy<Value = Case> {
    prop_oneof![
        printable(200).prop_map(|t| Case::bearer("malformed: printable garbage", Target::Hmac, &t)),
        segments().prop_map(|t| Case::bearer("malformed: base64url segments", Target::Hmac, &t)),
        any::<usize>().prop_map(|cut| {
            let token = valid_token();
            let cut = cut % token.len();
            Case::bearer("truncated valid token", Target::Hmac, &token[..cut])
        }),
        (any::<usize>(), "[A-Za-z0-9_-]").prop_map(|(at, with)| {
            let mut token = valid_token().into_bytes();
            let at = at % token.len();
            let with = with.as_bytes()[0];
            token[at] = if token[at] == with {
                if with == b'A' { b'B' } else { b'A' }
            } else {
                with
            };
            let token = String::from_utf8(token).expect("ASCII");
            Case::bearer("tampered valid token (one character)", Target::Hmac, &token)
        }),
        (0usize..16_384).prop_map(|extra| {
            let filler = "A".repeat(HEADER_BYTES_MAX + extra);
            Case::bearer("oversized (over the head limit)", Target::Hmac, &filler)
        }),
        (20_000usize..30_000).prop_map(|length| {
            let token = format!(
                "{}.{}.{}",
                "e".repeat(length / 3),
                "A".repeat(length / 3),
                "x"
            );
            Case::bearer("large (under the head limit)", Target::Hmac, &token)
        }),
    ]
}

fn badly_signed() -> impl Strategy<Value = Case> {
    prop_oneof![
        "[ -~]{32,64}".prop_map(|secret| {
            let token = sign(Algorithm::HS256, &valid_claims(), secret.as_bytes());
            Case::bearer("signed with another secret", Target::Hmac, &token)
        }),
        (
            prop::sample::select(vec!["none", "None", "NONE", "nOnE"]),
            "[A-Za-z0-9_-]{0,43}"
        )
            .prop_map(|(alg, signature)| {
                let token = unsigned(alg, &valid_claims(), &signature);
                Case::bearer("alg: none", Target::Hmac, &token)
            }),
        prop::sample::select(vec![Algorithm::HS384, Algorithm::HS512]).prop_map(|algorithm| {
            let token = sign(algorithm, &valid_claims(), SECRET.as_bytes());
            Case::bearer("another HMAC algorithm, right secret", Target::Hmac, &token)
        }),
        Just(()).prop_map(|()| {
            let claims = without(without(valid_claims(), "iss"), "aud");
            let token = sign(Algorithm::HS256, &claims, &rsa_public_pem());
            Case::bearer(
                "alg confusion: RS256 public key as HS256 secret",
                Target::Rsa,
                &token,
            )
        }),
        Just(()).prop_map(|()| {
            let claims = without(without(valid_claims(), "iss"), "aud");
            let token = sign(Algorithm::HS256, &claims, SECRET.as_bytes());
            Case::bearer("HS256 token at the RS256 instance", Target::Rsa, &token)
        }),
    ]
}

fn wrong_claims() -> impl Strategy<Value = Case> {
    let leeway = LEEWAY_SECONDS as i64;
    let signed = |kind: &'static str, claims: Value| {
        Case::bearer(
            kind,
            Target::Hmac,
            &sign(Algorithm::HS256, &claims, SECRET.as_bytes()),
        )
    };
    prop_oneof![
        (1i64..10_000_000).prop_map(move |late| signed(
            "expired (past the leeway)",
            with(valid_claims(), "exp", json!(now_seconds() - leeway - late))
        )),
        (1i64..10_000_000).prop_map(move |early| signed(
            "nbf in the future (past the leeway)",
            with(valid_claims(), "nbf", json!(now_seconds() + leeway + early))
        )),
        Just(()).prop_map(move |()| signed("no exp", without(valid_claims(), "exp"))),
        prop_oneof![
            "[a-z]{1,10}".prop_map(Value::String),
            Just(Value::Null),
            Just(json!(true)),
            Just(json!([1])),
        ]
        .prop_map(move |exp| signed("exp not a number", with(valid_claims(), "exp", exp))),
        "[ -~]{0,40}".prop_map(move |issuer| signed(
            "wrong iss",
            with(valid_claims(), "iss", json!(format!("x{issuer}")))
        )),
        Just(()).prop_map(move |()| signed("no iss", without(valid_claims(), "iss"))),
        "[ -~]{0,40}".prop_map(move |audience| signed(
            "wrong aud",
            with(valid_claims(), "aud", json!([format!("x{audience}")]))
        )),
        Just(()).prop_map(move |()| signed("no aud", without(valid_claims(), "aud"))),
        prop_oneof![
            "[ -~]{0,40}".prop_map(Value::String),
            any::<i64>().prop_map(|n| json!(n)),
            Just(Value::Null),
            Just(json!({"id": fresh().to_string()})),
        ]
        .prop_map(move |sub| signed("sub not a UUID", with(valid_claims(), "sub", sub))),
        Just(()).prop_map(move |()| signed("no sub", without(valid_claims(), "sub"))),
    ]
}

fn broken_headers() -> impl Strategy<Value = Case> {
    let schemes = vec![
        "",
        "Basic ",
        "Token ",
        "JWT ",
        "Bearer",
        "Bearer:",
        "Bearer\t",
        "Bearer,",
        "Bearer=",
        "BearerX ",
        "bearer",
        "bearer ",
        "BEARER ",
        "Bearer Bearer ",
    ];
    prop_oneof![
        prop::sample::select(schemes).prop_map(|scheme| {
            // A valid token behind a broken scheme; behind "bearer " in any
            // letter case (accepted, RFC 9110), a tampered one.
            let token = if scheme.eq_ignore_ascii_case("bearer ") {
                format!("{}x", valid_token())
            } else {
                valid_token()
            };
            Case {
                kind: "broken or lower-case scheme",
                target: Target::Hmac,
                values: vec![format!("{scheme}{token}").into_bytes()],
            }
        }),
        (2usize..5, any::<bool>()).prop_map(|(count, all_valid)| {
            let valid = format!("Bearer {}", valid_token()).into_bytes();
            let mut values = vec![valid.clone(); count];
            if !all_valid {
                values[count - 1] = b"Bearer x".to_vec();
            }
            Case {
                kind: "several Authorization headers",
                target: Target::Hmac,
                values,
            }
        }),
        proptest::collection::vec(0x80u8..=0xff, 1..64).prop_map(|bytes| {
            let mut value = b"Bearer ".to_vec();
            value.extend(bytes);
            Case {
                kind: "opaque (non-ASCII) bytes",
                target: Target::Hmac,
                values: vec![value],
            }
        }),
        Just(Case {
            kind: "no Authorization header",
            target: Target::Hmac,
            values: vec![],
        }),
        Just(Case {
            kind: "empty Authorization header",
            target: Target::Hmac,
            values: vec![Vec::new()],
        }),
    ]
}

fn hostile() -> impl Strategy<Value = Case> {
    prop_oneof![
        malformed(),
        badly_signed(),
        wrong_claims(),
        broken_headers()
    ]
}

/// What a case was answered, for the table: status and error code, or no
/// answer at all.
type Answers = BTreeMap<&'static str, BTreeMap<String, usize>>;

fn judge(case: &Case, reply: Option<&Answer>) -> Result<String, String> {
    let Some(reply) = reply else {
        return Err("the connection closed without an answer".to_owned());
    };
    if reply.status.is_server_error() {
        return Err(format!("a {} answer", reply.status));
    }
    if case.kind.starts_with("oversized") {
        return match reply.status {
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE => {
                Ok("431 (head over the limit)".to_owned())
            }
            StatusCode::UNAUTHORIZED => Ok("401 unauthorized".to_owned()),
            other => Err(format!("{other}, not 431 or 401")),
        };
    }
    if reply.status != StatusCode::UNAUTHORIZED {
        return Err(format!("{}, not 401: {}", reply.status, reply.body));
    }
    let body: accounts::http::ErrorBody = serde_json::from_str(&reply.body)
        .map_err(|error| format!("not an error body ({error}): {}", reply.body))?;
    if body.code.as_str() != "unauthorized"
        || reply.header("www-authenticate") != Some(accounts::http::WWW_AUTHENTICATE_BEARER)
        || reply.header("content-type") != Some("application/json")
    {
        return Err(format!("not the 401 of the contract: {reply:?}"));
    }
    for value in &case.values {
        let text = String::from_utf8_lossy(value);
        let token = text.split_once(' ').map_or(&*text, |(_, token)| token);
        if token.len() >= 8 && reply.body.contains(token) {
            return Err("the error body repeats the token".to_owned());
        }
    }
    Ok(format!("401 unauthorized: {}", body.message))
}

/// The two instances (one store) and the account every case aims at, opened
/// by an admin: a token that got through would change it.
struct Targets {
    runtime: tokio::runtime::Runtime,
    hmac: Served,
    rsa: Served,
    account: uuid::Uuid,
    admin: String,
}

/// An instance over `store` with authentication as `config` says, served.
async fn serve(store: Arc<dyn EventStore>, config: AuthConfig) -> Served {
    let instance = TestInstance::builder().store(store).auth(config).build();
    instance.serve().await
}

impl Targets {
    fn start() -> Targets {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("a runtime");
        let hmac_config = AuthConfig {
            issuer: Some(ISSUER.to_owned()),
            audience: Some(AUDIENCE.to_owned()),
            ..AuthConfig::hs256(SECRET)
        };
        let rsa_config = AuthConfig {
            key: VerifyingKey::PublicKeyPem(rsa_public_pem()),
            algorithm: None,
            issuer: None,
            audience: None,
        };
        let admin = testkit::Tokens::for_config(&hmac_config).admin();
        let store: Arc<dyn EventStore> = Arc::new(MemoryStore::new());
        let hmac = runtime.block_on(serve(store.clone(), hmac_config));
        let rsa = runtime.block_on(serve(store, rsa_config));
        let account = fresh();
        let api = hmac.client().with_token(&admin);
        let opened = runtime.block_on(async { api.open(account, fresh_owner()).await });
        assert_eq!(opened.status, StatusCode::CREATED, "{opened:?}");
        Targets {
            runtime,
            hmac,
            rsa,
            account,
            admin,
        }
    }

    /// Sends `case` as a deposit of `amount` to the account.
    fn send(&self, case: &Case, amount: u32) -> Option<Answer> {
        let served = match case.target {
            Target::Hmac => &self.hmac,
            Target::Rsa => &self.rsa,
        };
        let target = format!(
            "/api/account/{}/deposit?amount={amount}&transactionId={}",
            self.account,
            fresh()
        );
        let headers: Vec<(&str, &[u8])> = case
            .values
            .iter()
            .map(|value| ("Authorization", value.as_slice()))
            .collect();
        self.runtime.block_on(raw::request_with_headers(
            served.address,
            "PUT",
            &target,
            &headers,
        ))
    }

    /// Nothing got through: the account has only its opening event; and
    /// both instances still serve.
    fn assert_unchanged_and_serving(&self) {
        let admin = self.hmac.client().with_token(&self.admin);
        let events = self
            .runtime
            .block_on(async { admin.events(self.account).await });
        let count = events.json().as_array().map(Vec::len);
        assert_eq!(count, Some(1), "{events:?}");
        for served in [&self.hmac, &self.rsa] {
            let api = served.client();
            let ping = self.runtime.block_on(async { api.ping().await });
            assert_eq!(ping.status, StatusCode::OK);
        }
    }
}

#[test]
fn hostile_tokens_are_always_refused_with_401_and_never_crash() {
    let targets = Targets::start();
    let answers: Mutex<Answers> = Mutex::default();
    let sent = AtomicU32::new(0);
    let mut runner = runner(CASES, SEED);
    let result = runner.run(&hostile(), |case| {
        let amount = sent.fetch_add(1, Ordering::SeqCst) + 1;
        let reply = targets.send(&case, amount);
        let answer = judge(&case, reply.as_ref())
            .map_err(|error| TestCaseError::fail(format!("{}: {error}", case.kind)))?;
        let mut answers = answers.lock().unwrap();
        *answers
            .entry(case.kind)
            .or_default()
            .entry(answer)
            .or_default() += 1;
        Ok(())
    });
    if let Err(error) = result {
        panic!("{error}");
    }
    targets.assert_unchanged_and_serving();

    let answers = answers.into_inner().unwrap();
    print_table(&answers);
    let kinds: BTreeSet<&str> = answers.keys().copied().collect();
    assert_eq!(kinds.len(), KINDS, "every kind was generated: {kinds:?}");
    let total: usize = answers.values().flat_map(|a| a.values()).sum();
    assert_eq!(total, CASES as usize);
}

/// The closing note's table: every kind, how often, and what it got.
fn print_table(answers: &Answers) {
    println!("| hostile case | tried | answers |");
    println!("|---|---|---|");
    for (kind, replies) in answers {
        let tried: usize = replies.values().sum();
        let replies: Vec<String> = replies
            .iter()
            .map(|(reply, count)| format!("{count}× {reply}"))
            .collect();
        println!("| {kind} | {tried} | {} |", replies.join("; "));
    }
}
