//! Protected mode on the real binary: with authentication off, `accounts`
//! serves only this machine unless the operator accepts anonymous access
//! explicitly; any other address stops start-up with one clear line.

use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

use testkit::process::{Service, command};
use testkit::{StatusCode, fresh_owner, fresh_uuid};

const BINARY: &str = env!("CARGO_BIN_EXE_accounts");

/// Long enough for HS256 (32 bytes at least).
const SECRET: &str = "a secret for the protected-mode tests, 32+ bytes";

/// How long a refused start-up may take; a process still running then
/// served instead of refusing, and is killed.
const REFUSAL_TIMEOUT: Duration = Duration::from_secs(60);

/// Runs the binary to its end, or kills it once [`REFUSAL_TIMEOUT`] has
/// passed (a service that started instead of refusing never ends).
fn run(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut child = command(BINARY)
        .args(args)
        .envs(env.iter().copied())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("running accounts");
    let deadline = Instant::now() + REFUSAL_TIMEOUT;
    while child.try_wait().expect("waiting for accounts").is_none() {
        if Instant::now() > deadline {
            child.kill().expect("killing accounts");
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().expect("the output of accounts")
}

#[test]
fn another_interface_without_authentication_is_refused_with_one_line() {
    for listen in ["0.0.0.0:0", "[::]:0"] {
        for env in [&[][..], &[("ACCOUNTS_ALLOW_ANONYMOUS", "false")][..]] {
            let output = run(&["--listen", listen], env);
            let stderr = String::from_utf8_lossy(&output.stderr);
            assert_eq!(output.status.code(), Some(1), "{listen} {env:?}: {stderr}");
            let lines: Vec<&str> = stderr.lines().collect();
            assert_eq!(lines.len(), 1, "one line: {stderr}");
            let expected = format!("error: refusing to serve {listen} with authentication off: ");
            assert!(lines[0].starts_with(&expected), "{stderr}");
            assert!(
                lines[0].contains("pass --allow-anonymous (ACCOUNTS_ALLOW_ANONYMOUS=true)"),
                "{stderr}"
            );
        }
    }
    let via_env = run(&[], &[("ACCOUNTS_LISTEN", "0.0.0.0:0")]);
    assert_eq!(via_env.status.code(), Some(1));
}

/// The operator's explicit word, as a flag or in the environment, serves
/// every interface anonymously; so does authentication on, with tokens.
#[tokio::test]
async fn allow_anonymous_or_authentication_serves_every_interface() {
    for (args, env) in [
        (&["--allow-anonymous"][..], &[][..]),
        (&[][..], &[("ACCOUNTS_ALLOW_ANONYMOUS", "true")][..]),
    ] {
        let service = Service::try_start_on(BINARY, "0.0.0.0:0", args, env)
            .unwrap_or_else(|log| panic!("{args:?} {env:?}: {log}"));
        assert!(service.address.ip().is_unspecified(), "{}", service.address);
        let api = service.client();
        let (account, owner) = (fresh_uuid(), fresh_owner());
        api.open(account, owner)
            .await
            .assert_status(StatusCode::CREATED);
    }
    let secret = [("ACCOUNTS_AUTH_JWT_SECRET", SECRET)];
    let service = Service::try_start_on(BINARY, "0.0.0.0:0", &[], &secret)
        .unwrap_or_else(|log| panic!("with authentication: {log}"));
    let api = service.client();
    api.open(fresh_uuid(), fresh_owner())
        .await
        .assert_unauthorized();
}

/// Loopback needs no permission: the first command of the README works as
/// written, and its default address is this machine's.
#[test]
fn loopback_is_served_anonymously_and_is_the_default() {
    for listen in ["127.0.0.1:0", "[::1]:0"] {
        let service = Service::try_start_on(BINARY, listen, &[], &[]);
        // A machine without IPv6 cannot bind [::1]; that is not a refusal.
        match service {
            Ok(service) => assert!(service.address.ip().is_loopback()),
            Err(log) => assert!(
                !log.contains("refusing") && listen.starts_with('['),
                "{listen}: {log}"
            ),
        }
    }
    let help = String::from_utf8(run(&["--help"], &[]).stdout).unwrap();
    assert!(help.contains("[default: 127.0.0.1:8080]"), "{help}");
    assert!(help.contains("--allow-anonymous"), "{help}");
    assert!(help.contains("ACCOUNTS_ALLOW_ANONYMOUS"), "{help}");
}
