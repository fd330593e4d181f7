//! The processes a test starts: the real `accounts` binary (a
//! [`Service`]: started with any flags, on a free loopback port or a given
//! one, spoken to with the typed client, its log kept) and any other
//! program (a [`Process`], e.g. Envoy). Both are killed when dropped, and
//! die with the test process even when it is killed without unwinding.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::client::{Client, Socket};

pub use libc::{SIGCONT, SIGKILL, SIGSTOP, SIGTERM};

/// How long a starting process may take to log its address: a debug build
/// migrating a database on a loaded machine.
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// The `accounts` binary as a command that sees none of the service's own
/// settings from the test's environment (`DATABASE_URL`, `ACCOUNTS_…`), so
/// a developer's shell cannot change what a test runs, and that dies with
/// the test process.
pub fn command(binary: impl AsRef<Path>) -> Command {
    let mut command = Command::new(binary.as_ref());
    command.env_remove("DATABASE_URL");
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("ACCOUNTS_") {
            command.env_remove(name);
        }
    }
    die_with_parent(&mut command);
    command
}

/// Makes the child get SIGKILL when the test process dies: a test killed
/// by a timeout or a signal runs no destructors, and an orphaned server
/// would hold its port and database.
fn die_with_parent(command: &mut Command) {
    // SAFETY: prctl is async-signal-safe and touches no memory of the
    // parent, as a pre_exec hook must.
    unsafe {
        command.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// A child process that dies with the test and is killed (SIGKILL) and
/// reaped when dropped.
pub struct Process {
    child: Child,
}

impl Process {
    /// Spawns `command` (its standard streams as the caller set them).
    pub fn spawn(command: &mut Command) -> Process {
        die_with_parent(command);
        let child = command
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {command:?}: {e}"));
        Process { child }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends `signal` (e.g. [`SIGTERM`], [`SIGSTOP`]).
    pub fn signal(&self, signal: libc::c_int) {
        let pid = libc::pid_t::try_from(self.pid()).expect("a pid fits pid_t");
        // SAFETY: kill(2) only sends a signal; the pid is our own child,
        // not yet reaped (reaping takes `&mut self`), so it names no other
        // process.
        let sent = unsafe { libc::kill(pid, signal) };
        assert_eq!(
            sent,
            0,
            "kill({pid}, {signal}): {}",
            std::io::Error::last_os_error()
        );
    }

    /// The exit status, if the process has already exited by itself.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().expect("waiting for the child")
    }

    /// Waits for the process to exit by itself; fails the test after `within`.
    pub fn wait_exit(&mut self, within: Duration) -> ExitStatus {
        let started = Instant::now();
        loop {
            if let Some(status) = self.exited() {
                return status;
            }
            assert!(
                started.elapsed() < within,
                "process {} still running {within:?} after being asked to stop",
                self.pid()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn take_stderr(&mut self) -> Option<std::process::ChildStderr> {
        self.child.stderr.take()
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A running `accounts` process, its log (stderr) kept line by line;
/// killed (SIGKILL) when dropped.
pub struct Service {
    process: Process,
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
        let mut process = Process::spawn(
            command(binary)
                .args(["--listen", listen])
                .args(args)
                .env("RUST_LOG", "info")
                .envs(env.iter().copied())
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::piped()),
        );
        let stderr = process.take_stderr().expect("stderr is piped");
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
            drop(process);
            // The reader ends with the process; then the log is complete.
            let _ = reader.join();
            return Err(log.lock().unwrap_or_else(|p| p.into_inner()).join("\n"));
        };
        Ok(Service {
            process,
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

    /// Writes the log so far to `path`: kept for a human after the test.
    pub fn save_log(&self, path: &Path) {
        let mut text = self.log().join("\n");
        text.push('\n');
        std::fs::write(path, text).unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
    }

    /// Waits until a log line contains `needle`, failing the test after
    /// `within`: how a test sees that the service reached a state.
    pub fn wait_log(&self, needle: &str, within: Duration) -> String {
        let started = Instant::now();
        loop {
            if let Some(line) = self.log().into_iter().find(|line| line.contains(needle)) {
                return line;
            }
            assert!(
                started.elapsed() < within,
                "no log line with {needle:?} within {within:?}:\n{}",
                self.log().join("\n")
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    pub fn pid(&self) -> u32 {
        self.process.pid()
    }

    /// Sends `signal` (e.g. [`SIGTERM`], [`SIGSTOP`]).
    pub fn signal(&self, signal: libc::c_int) {
        self.process.signal(signal);
    }

    /// Sends SIGTERM.
    pub fn terminate(&self) {
        self.signal(SIGTERM);
    }

    /// Sends SIGSTOP: the process freezes with its connections open, as a
    /// machine stalled by the hypervisor or a long GC pause would.
    pub fn pause(&self) {
        self.signal(SIGSTOP);
    }

    /// Sends SIGCONT after [`Service::pause`].
    pub fn resume(&self) {
        self.signal(SIGCONT);
    }

    /// The exit status, if the process has already exited by itself.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.process.exited()
    }

    /// Waits for the process to exit by itself; fails the test after `within`.
    pub fn wait_exit(&mut self, within: Duration) -> ExitStatus {
        self.process.wait_exit(within)
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

    /// Kills the process (SIGKILL) without letting it shut down: whatever
    /// was acknowledged must already be durable.
    pub fn crash(self) {}
}

/// The socket address at the start of `text`, in a text or a JSON log line.
fn address_prefix(text: &str) -> &str {
    let end = text
        .find(|c: char| !(c.is_ascii_hexdigit() || matches!(c, '.' | ':' | '[' | ']')))
        .unwrap_or(text.len());
    &text[..end]
}
