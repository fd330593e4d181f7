//! The command-line contract of the README ("Configuration"), on the real
//! binary.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const BINARY: &str = env!("CARGO_BIN_EXE_accounts");

#[test]
fn help_documents_the_flags_without_printing_environment_values() {
    let output = Command::new(BINARY)
        .arg("--help")
        .env(
            "DATABASE_URL",
            "postgres://user:hunter2@db.example/accounts",
        )
        .env("ACCOUNTS_LISTEN", "127.0.0.1:9999")
        .output()
        .unwrap();
    assert!(output.status.success());
    let help = String::from_utf8(output.stdout).unwrap();
    for flag in [
        "--listen",
        "--database-url",
        "--snapshot-every",
        "--db-pool-size",
        "--http-connections-max",
        "--log-format",
        "--drain-delay-ms",
    ] {
        assert!(help.contains(flag), "--help lacks {flag}");
    }
    assert!(
        help.contains("DATABASE_URL"),
        "names the environment variable"
    );
    assert!(
        !help.contains("hunter2") && !help.contains("9999"),
        "never prints values:\n{help}"
    );
}

#[test]
fn version_prints_the_version() {
    let output = Command::new(BINARY).arg("--version").output().unwrap();
    assert!(output.status.success());
    assert_eq!(
        String::from_utf8(output.stdout).unwrap().trim(),
        format!("accounts {}", env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn an_unusable_store_url_is_a_one_line_error_and_a_failure_exit() {
    let output = Command::new(BINARY)
        .args([
            "--listen",
            "127.0.0.1:0",
            "--database-url",
            "redis://user:hunter2@localhost/0",
        ])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8(output.stderr).unwrap();
    let error: Vec<&str> = stderr.lines().filter(|l| l.starts_with("error:")).collect();
    assert_eq!(error.len(), 1, "{stderr}");
    assert!(
        error[0].contains("unsupported store URL scheme"),
        "{stderr}"
    );
    assert!(
        !stderr.contains("hunter2"),
        "never prints the password: {stderr}"
    );
}

#[test]
fn probe_fails_when_nothing_answers() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    drop(listener);
    let status = Command::new(BINARY)
        .args(["probe", &format!("http://{address}")])
        .output()
        .unwrap()
        .status;
    assert_eq!(status.code(), Some(1));
}

/// Starts the real binary on a free port, probes it, and stops it with
/// SIGTERM: the first log line warns about the memory store, the second names
/// the bound address, and the process exits 0 after its drain delay.
#[test]
fn serves_probes_and_stops_on_sigterm() {
    let mut child = Command::new(BINARY)
        .args(["--listen", "127.0.0.1:0", "--drain-delay-ms", "200"])
        .env("RUST_LOG", "info")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let first = lines.next().unwrap().unwrap();
    assert!(
        first.contains("in-memory store: data is lost on exit"),
        "{first}"
    );
    let second = lines.next().unwrap().unwrap();
    let address = second
        .rsplit("listening on ")
        .next()
        .unwrap()
        .trim()
        .to_owned();
    assert!(second.contains("listening on 127.0.0.1:"), "{second}");

    let probe = Command::new(BINARY)
        .args(["probe", &format!("http://{address}")])
        .status()
        .unwrap();
    assert!(probe.success(), "probe of a ready instance exits 0");

    let started = Instant::now();
    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "did not exit after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "{status:?}");
    assert!(
        started.elapsed() >= Duration::from_millis(200),
        "kept serving for the drain delay"
    );
}

/// The renamed connection limits keep their old names: the old flags are
/// hidden aliases (their values are validated like the new ones), and the
/// old environment variables are still read.
#[test]
fn the_old_names_of_the_connection_limits_still_work() {
    for (flag, variable) in [
        ("--max-connections", "ACCOUNTS_MAX_CONNECTIONS"),
        ("--connections-max", "ACCOUNTS_CONNECTIONS_MAX"),
    ] {
        let by_flag = Command::new(BINARY)
            .args(["--listen", "127.0.0.1:0", flag, "0"])
            .output()
            .unwrap();
        let stderr = String::from_utf8(by_flag.stderr).unwrap();
        assert_eq!(by_flag.status.code(), Some(2), "{flag}: {stderr}");
        assert!(stderr.contains("must be at least 1"), "{flag}: {stderr}");
        let by_variable = Command::new(BINARY)
            .args(["--listen", "127.0.0.1:0"])
            .env(variable, "0")
            .output()
            .unwrap();
        let stderr = String::from_utf8(by_variable.stderr).unwrap();
        assert_eq!(by_variable.status.code(), Some(2), "{variable}: {stderr}");
        assert!(stderr.contains(variable), "{variable}: {stderr}");
    }
    let mut child = Command::new(BINARY)
        .args(["--listen", "127.0.0.1:0", "--max-connections", "3"])
        .env("ACCOUNTS_CONNECTIONS_MAX", "5")
        .env("RUST_LOG", "info")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let listening = lines.nth(1).unwrap().unwrap();
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(listening.contains("listening on"), "{listening}");
}
