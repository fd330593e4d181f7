//! Authentication on the real binary: `accounts token` mints what the
//! service accepts, unusable settings stop start-up without printing the
//! secret, `--help` shows no value, and the logs of an authenticated run —
//! at trace level, in both formats — never contain a token or the secret.

use std::process::{Command, Output};
use std::time::Duration;

use accounts::domain::{OwnerId, Timestamp};
use accounts::engine::Clock;
use testkit::database::TempFile;
use testkit::process::Service;
use testkit::{Method, Tokens};

const BINARY: &str = env!("CARGO_BIN_EXE_accounts");

/// Long enough (32 bytes at least) and easy to find in any output.
const SECRET: &str = "s3cr3t-never-in-logs-0123456789abcdef";

const ALICE: &str = "3c2b1a09-8f7e-4d6c-9b5a-4f3e2d1c0b9a";
const BOB: &str = "0d9e8f7a-6b5c-4d3e-8f2a-1b0c9d8e7f60";

/// The binary with `args` and none of the test environment's settings.
fn command(args: &[&str]) -> Command {
    let mut command = testkit::process::command(BINARY);
    command.args(args);
    command
}

fn token(args: &[&str]) -> String {
    let output = command(&[&["token"], args].concat())
        .env("ACCOUNTS_AUTH_JWT_SECRET", SECRET)
        .output()
        .unwrap();
    let stdout = String::from_utf8(output.stdout).unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(stdout.lines().count(), 1, "one line: {stdout}");
    stdout.trim().to_owned()
}

fn stderr_of(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn help_lists_the_auth_flags_and_never_their_values() {
    let output = command(&["--help"])
        .env("ACCOUNTS_AUTH_JWT_SECRET", SECRET)
        .env("ACCOUNTS_AUTH_ISSUER", "https://issuer.hidden.example")
        .env("ACCOUNTS_AUTH_AUDIENCE", "hidden-audience")
        .output()
        .unwrap();
    assert!(output.status.success());
    let help = String::from_utf8(output.stdout).unwrap();
    for flag in [
        "--auth-jwt-secret",
        "--auth-jwt-public-key",
        "--auth-jwt-algorithm",
        "--auth-issuer",
        "--auth-audience",
        "ACCOUNTS_AUTH_JWT_SECRET",
    ] {
        assert!(help.contains(flag), "--help lacks {flag}");
    }
    for value in [SECRET, "hidden.example", "hidden-audience"] {
        assert!(!help.contains(value), "--help shows {value}:\n{help}");
    }
    let token_help = command(&["token", "--help"])
        .env("ACCOUNTS_AUTH_JWT_SECRET", SECRET)
        .output()
        .unwrap();
    let token_help = String::from_utf8(token_help.stdout).unwrap();
    assert!(token_help.contains("--sub") && token_help.contains("--ttl"));
    assert!(!token_help.contains(SECRET), "{token_help}");
}

/// Flags, environment, and what the one-line error must say.
type StartUp<'a> = (&'a [&'a str], &'a [(&'a str, &'a str)], &'a str);

#[test]
fn unusable_auth_settings_stop_start_up_without_showing_the_secret() {
    let cases: [StartUp; 7] = [
        (
            &[],
            &[("ACCOUNTS_AUTH_JWT_SECRET", "short-secret")],
            "12 bytes",
        ),
        (&["--auth-jwt-secret", "short-secret"], &[], "12 bytes"),
        (
            &["--auth-issuer", "https://issuer.example"],
            &[],
            "--auth-issuer needs",
        ),
        (
            &["--auth-jwt-public-key", "/nonexistent/key.pem"],
            &[],
            "cannot read the JWT public key",
        ),
        (
            &["--auth-jwt-algorithm", "RS256"],
            &[("ACCOUNTS_AUTH_JWT_SECRET", SECRET)],
            "does not go with",
        ),
        // Long enough for HS256, not for the longer hashes (RFC 7518).
        (
            &["--auth-jwt-algorithm", "HS384"],
            &[("ACCOUNTS_AUTH_JWT_SECRET", SECRET)],
            "37 bytes long; at least 48 are required for HS384",
        ),
        (
            &["--auth-jwt-algorithm", "HS512"],
            &[("ACCOUNTS_AUTH_JWT_SECRET", SECRET)],
            "37 bytes long; at least 64 are required for HS512",
        ),
    ];
    for (args, env, needle) in cases {
        let mut command = command(&[&["--listen", "127.0.0.1:0"], args].concat());
        command.envs(env.iter().copied());
        let output = command.output().unwrap();
        let stderr = stderr_of(&output);
        assert_eq!(output.status.code(), Some(1), "{args:?}: {stderr}");
        assert!(stderr.contains(needle), "{args:?}: {stderr}");
        assert!(!stderr.contains("short-secret") && !stderr.contains(SECRET));
        assert!(!stderr.contains("listening on"), "stopped before serving");
    }
    // Both kinds of key at once is a usage error (clap), which names the
    // flags but not the values.
    let both = command(&["--auth-jwt-public-key", "key.pem"])
        .env("ACCOUNTS_AUTH_JWT_SECRET", SECRET)
        .output()
        .unwrap();
    assert_eq!(both.status.code(), Some(2));
    assert!(!stderr_of(&both).contains(SECRET), "{}", stderr_of(&both));
}

#[test]
fn token_needs_a_secret_and_a_uuid_subject() {
    let missing = command(&["token", "--sub", ALICE]).output().unwrap();
    assert_eq!(missing.status.code(), Some(2));
    assert!(stderr_of(&missing).contains("--auth-jwt-secret"));
    let not_uuid = command(&["token", "--sub", "alice"])
        .env("ACCOUNTS_AUTH_JWT_SECRET", SECRET)
        .output()
        .unwrap();
    assert_eq!(not_uuid.status.code(), Some(2));
    let short = command(&["token", "--sub", ALICE, "--auth-jwt-secret", "tiny"])
        .output()
        .unwrap();
    assert_eq!(short.status.code(), Some(1));
    assert!(!stderr_of(&short).contains("tiny"), "{}", stderr_of(&short));
    let zero = command(&["token", "--sub", ALICE, "--ttl", "0s"])
        .env("ACCOUNTS_AUTH_JWT_SECRET", SECRET)
        .output()
        .unwrap();
    assert_eq!(zero.status.code(), Some(2));
}

/// Requests with valid, refused and tampered tokens, every route kind.
async fn authenticated_traffic(service: &Service, alice: &str, admin: &str, expired: &str) {
    let api = service.client();
    let account = "6f1c2b1e-8a4d-4d6e-9a53-2f0b8c1d7e10";
    // One character of the signature changed (not its last, whose low bits
    // may be padding), and always to a different one.
    let tampered = {
        let mut bytes = alice.as_bytes().to_vec();
        let at = bytes.len() - 10;
        bytes[at] = if bytes[at] == b'A' { b'B' } else { b'A' };
        String::from_utf8(bytes).expect("a token is ASCII")
    };
    let requests = [
        (
            "POST",
            format!("/api/account/{account}?owner={ALICE}"),
            Some(alice),
            201,
        ),
        (
            "PUT",
            format!(
                "/api/account/{account}/deposit?amount=5&transactionId=8b0e5a54-49c7-4b7a-9b43-6f1a9f0e2c01"
            ),
            Some(alice),
            204,
        ),
        ("GET", format!("/api/account/{account}"), Some(alice), 200),
        (
            "GET",
            format!("/api/account/{account}/events"),
            Some(admin),
            200,
        ),
        ("GET", format!("/api/account/{account}"), Some(expired), 401),
        (
            "GET",
            format!("/api/account/{account}"),
            Some(tampered.as_str()),
            401,
        ),
        ("GET", format!("/api/account/{account}"), None, 401),
        (
            "POST",
            format!("/api/account/{account}?owner={BOB}"),
            Some(alice),
            403,
        ),
        ("GET", "/api/account/banana".to_owned(), Some(alice), 400),
        ("GET", "/metrics".to_owned(), Some(alice), 200),
    ];
    for (method, path, token, status) in requests {
        let method: Method = method.parse().unwrap();
        // The header set by hand: sent to every route, `/metrics` too.
        let call = api.send(method.clone(), &path);
        let answer = match token {
            Some(token) => {
                call.header("authorization", &format!("Bearer {token}"))
                    .await
            }
            None => call.await,
        };
        assert_eq!(answer.status.as_u16(), status, "{method} {path}");
        let body = answer.body;
        assert!(!body.contains(alice) && !body.contains(SECRET), "{body}");
    }
}

fn assert_no_secret_in(log: &str, tokens: &[&str]) {
    assert!(!log.contains(SECRET), "the secret is in the log");
    for token in tokens {
        // Any part of a token: its payload and its signature too.
        for part in token.split('.').filter(|part| part.len() >= 16) {
            assert!(!log.contains(part), "a token part is in the log: {part}");
        }
    }
    // Nor the header's value (every JWT starts "ey", base64 of '{"').
    assert!(!log.to_ascii_lowercase().contains("bearer ey"), "{log}");
}

fn run_logged(format: &str, store: &str) {
    let alice = token(&["--sub", ALICE]);
    let admin = token(&["--sub", BOB, "--admin", "--ttl", "10m"]);
    // An hour past its exp: refused as expired, whatever the leeway.
    let expired = expired_token();
    let service = Service::start_with(
        BINARY,
        &[
            "--drain-delay-ms",
            "0",
            "--log-format",
            format,
            "--database-url",
            store,
        ],
        &[("ACCOUNTS_AUTH_JWT_SECRET", SECRET), ("RUST_LOG", "trace")],
    );
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(authenticated_traffic(&service, &alice, &admin, &expired));
    let log = service.stop(Duration::from_secs(20)).join("\n");
    // The run really logged at trace level, requests and refusals included.
    assert!(log.contains("bearer token refused"), "{log}");
    assert!(log.contains("expired"), "{log}");
    assert!(log.contains("/api/account/"), "request spans: {log}");
    assert!(log.lines().count() > 20, "{log}");
    assert_no_secret_in(&log, &[&alice, &admin, &expired]);
}

fn expired_token() -> String {
    let now = accounts::engine::SystemClock.now();
    let two_hours_ago = Timestamp::from_unix_millis(now.unix_millis() - 7_200_000);
    Tokens::with_secret(SECRET)
        .issued_at(two_hours_ago)
        .owner(OwnerId::parse(ALICE).unwrap())
}

#[test]
fn trace_logs_in_json_never_show_a_token_or_the_secret() {
    run_logged("json", "memory:");
}

#[test]
fn trace_logs_in_text_never_show_a_token_or_the_secret() {
    let file = TempFile::new("db");
    run_logged("text", &file.sqlite_url());
}
