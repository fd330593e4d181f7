//! `accounts feed` against live instances: it prints the feed as JSON
//! lines, follows it, and when the instance restarts it reconnects with
//! Last-Event-ID and goes on with nothing skipped and nothing repeated.

use std::io::{BufRead, BufReader};
use std::process::{Child, Stdio};
use std::sync::mpsc::{Receiver, channel};
use std::time::Duration;

use serde_json::Value;
use testkit::database::TempFile;
use testkit::process::{Service, command};
use testkit::{Client, Socket, fresh_id, fresh_owner};

const BINARY: &str = env!("CARGO_BIN_EXE_accounts");
/// A line may take this long: a debug build on a loaded machine, plus a
/// reconnection after the restart.
const LINE_WITHIN: Duration = Duration::from_secs(30);

/// `accounts feed` with `args`, its stdout read line by line on a thread.
struct Feed {
    child: Child,
    lines: Receiver<String>,
}

impl Feed {
    fn start(args: &[&str]) -> Feed {
        let mut child = command(BINARY)
            .arg("feed")
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting accounts feed");
        let stdout = child.stdout.take().expect("piped");
        let (sender, lines) = channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if sender.send(line).is_err() {
                    return;
                }
            }
        });
        Feed { child, lines }
    }

    /// The next `n` lines, each a feed object.
    fn take(&self, n: usize) -> Vec<Value> {
        (0..n)
            .map(|i| {
                let line = self
                    .lines
                    .recv_timeout(LINE_WITHIN)
                    .unwrap_or_else(|_| panic!("line {} of {n} never came", i + 1));
                serde_json::from_str(&line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"))
            })
            .collect()
    }
}

impl Drop for Feed {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn deposits(client: &Client<Socket>, account: &str, n: usize) {
    for _ in 0..n {
        client
            .deposit(account, 1, fresh_id())
            .await
            .assert_status(testkit::StatusCode::NO_CONTENT);
    }
}

fn positions(events: &[Value]) -> Vec<u64> {
    events.iter().map(testkit::position).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn feed_prints_json_lines_follows_and_resumes_across_a_restart() {
    let file = TempFile::new("db");
    let url = file.sqlite_url();
    let service = Service::start(BINARY, &["--database-url", url.as_str()]);
    let address = service.address.to_string();
    let client = service.client();
    let account = fresh_id();
    client.open_ok(&account, fresh_owner()).await;
    deposits(&client, &account, 2).await;
    let existing = client.whole_feed(100).await;

    let feed = Feed::start(&[format!("http://{address}").as_str()]);
    assert_eq!(
        feed.take(3),
        existing,
        "the feed so far, line by line, as /api/events has it"
    );
    deposits(&client, &account, 2).await;
    let live = feed.take(2);
    assert_eq!(live[1]["sequenceNumber"], 5);

    // The instance goes away (its streams end) and comes back on the same
    // address with the same data: the follower resumes after what it printed.
    service.stop(Duration::from_secs(30));
    let service = Service::start_on(BINARY, &address, &["--database-url", url.as_str()], &[]);
    let client = service.client();
    deposits(&client, &account, 3).await;
    let resumed = feed.take(3);
    let numbers: Vec<u64> = resumed
        .iter()
        .map(|e| e["sequenceNumber"].as_u64().unwrap())
        .collect();
    assert_eq!(numbers, [6, 7, 8], "nothing skipped, nothing printed twice");
    let all: Vec<u64> = positions(&existing)
        .into_iter()
        .chain(positions(&live))
        .chain(positions(&resumed))
        .collect();
    assert_eq!(all, positions(&client.whole_feed(100).await));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn feed_after_a_position_starts_there() {
    let service = Service::start(BINARY, &[]);
    let client = service.client();
    let account = fresh_id();
    client.open_ok(&account, fresh_owner()).await;
    deposits(&client, &account, 3).await;
    let whole = client.whole_feed(100).await;
    let after = testkit::position(&whole[1]).to_string();
    let base = format!("http://{}", service.address);
    let feed = Feed::start(&["--after", after.as_str(), base.as_str()]);
    assert_eq!(feed.take(2), whole[2..]);
}

#[test]
fn feed_refused_by_the_instance_is_a_one_line_error() {
    let secret = "0123456789abcdef0123456789abcdef";
    let service = Service::start_with(BINARY, &[], &[("ACCOUNTS_AUTH_JWT_SECRET", secret)]);
    let output = command(BINARY)
        .args(["feed", &format!("http://{}", service.address)])
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("401"), "{stderr}");
    assert!(output.stdout.is_empty());
}
