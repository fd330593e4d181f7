//! The real `accounts` binary as a child process: started with any flags on
//! a free loopback port, spoken to with the typed client, its log kept, and
//! killed when dropped.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::client::{Client, Socket};

/// How long a starting process may take to log its address: a debug build
/// migrating a database on a loaded machine.
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// The `accounts` binary as a command that sees none of the service's own
/// settings from the test's environment (`DATABASE_URL`, `ACCOUNTS_…`), so
/// a developer's shell cannot change what a test runs.
pub fn command(binary: impl AsRef<Path>) -> Command {
    let mut command = Command::new(binary.as_ref());
    command.env_remove("DATABASE_URL");
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("ACCOUNTS_") {
            command.env_remove(name);
        }
    }
    command
}

/// A running `accounts` process; killed (SIGKILL) when dropped.
pub struct Service {
    child: Child,
    pub address: SocketAddr,
    log: Arc<Mutex<Vec<String>>>,
    reader: Option<JoinHandle<()>>,
}

impl Service {
    /// Starts `binary` (`env!("CARGO_BIN_EXE_accounts")` in the caller)
    /// with `--listen 127.0.0.1:0`, `RUST_LOG=info` and `args`, and waits
    /// until it logs the address it listens on.
    pub fn start(binary: impl AsRef<Path>, args: &[&str]) -> Service {
        Service::start_with(binary, args, &[])
    }

    /// [`Service::start`] with `env` set too (after `RUST_LOG=info`, so it
    /// may change the level).
    pub fn start_with(binary: impl AsRef<Path>, args: &[&str], env: &[(&str, &str)]) -> Service {
        Service::start_on(binary, "127.0.0.1:0", args, env)
    }

    /// [`Service::start_with`] on `listen`: e.g. the address of a service
    /// that stopped, to restart it where its clients look for it.
    pub fn start_on(
        binary: impl AsRef<Path>,
        listen: &str,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> Service {
        Service::try_start_on(binary, listen, args, env)
            .unwrap_or_else(|log| panic!("the service never logged its address:\n{log}"))
    }

    /// [`Service::start_with`], or the log of a process that exited (or
    /// stayed silent) before it listened: what a supervisor sees of a
    /// failed start, and retries.
    pub fn try_start_with(
        binary: impl AsRef<Path>,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> Result<Service, String> {
        Service::try_start_on(binary, "127.0.0.1:0", args, env)
    }

    /// [`Service::try_start_with`] on `listen`.
    pub fn try_start_on(
        binary: impl AsRef<Path>,
        listen: &str,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> Result<Service, String> {
        let mut child = command(binary)
            .args(["--listen", listen])
            .args(args)
            .env("RUST_LOG", "info")
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("starting accounts");
        let stderr = child.stderr.take().expect("stderr is piped");
        let log = Arc::new(Mutex::new(Vec::new()));
        let (sender, receiver) = std::sync::mpsc::channel();
        // Reads the log for the bound address, then keeps draining it so
        // the service never blocks on a full pipe.
        let lines = log.clone();
        let reader = std::thread::spawn(move || {
            let mut sender = Some(sender);
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(address) = line.split("listening on ").nth(1).map(address_prefix)
                    && let Some(sender) = sender.take()
                {
                    let _ = sender.send(address.to_owned());
                }
                lines.lock().unwrap_or_else(|p| p.into_inner()).push(line);
            }
        });
        let Ok(address) = receiver.recv_timeout(START_TIMEOUT) else {
            let _ = child.kill();
            let _ = child.wait();
            // The reader ends with the process; then the log is complete.
            let _ = reader.join();
            return Err(log.lock().unwrap_or_else(|p| p.into_inner()).join("\n"));
        };
        Ok(Service {
            child,
            address: address.parse().expect("a socket address"),
            log,
            reader: Some(reader),
        })
    }

    pub fn client(&self) -> Client<Socket> {
        Client::new(Socket::at(self.address))
    }

    /// The log lines written so far.
    pub fn log(&self) -> Vec<String> {
        self.log.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends SIGTERM.
    pub fn terminate(&self) {
        self.signal("TERM");
    }

    /// Sends SIGSTOP: the process freezes with its connections open, as a
    /// machine stalled by the hypervisor or a long GC pause would.
    pub fn pause(&self) {
        self.signal("STOP");
    }

    /// Sends SIGCONT after [`Service::pause`].
    pub fn resume(&self) {
        self.signal("CONT");
    }

    fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .args([&format!("-{name}"), &self.pid().to_string()])
            .status()
            .expect("running kill");
        assert!(status.success(), "kill -{name} failed");
    }

    /// Waits for the process to exit by itself; fails the test after `within`.
    pub fn wait_exit(&mut self, within: Duration) -> ExitStatus {
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().expect("waiting for the child") {
                return status;
            }
            assert!(
                started.elapsed() < within,
                "still running {within:?} after being asked to stop"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGTERM, then waits (at most `within`) for the process to exit and
    /// returns everything it logged.
    pub fn stop(mut self, within: Duration) -> Vec<String> {
        self.terminate();
        self.wait_exit(within);
        if let Some(reader) = self.reader.take() {
            reader.join().expect("the log reader does not panic");
        }
        self.log()
    }

    /// Kills the process without letting it shut down: whatever was
    /// acknowledged must already be durable.
    pub fn crash(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The socket address at the start of `text`, in a text or a JSON log line.
fn address_prefix(text: &str) -> &str {
    let end = text
        .find(|c: char| !(c.is_ascii_hexdigit() || matches!(c, '.' | ':' | '[' | ']')))
        .unwrap_or(text.len());
    &text[..end]
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
