//! The real topology on loopback: two `accounts` release binaries on one
//! database and Envoy in front, started with testkit's launcher: every
//! process is killed when dropped, so a failing (panicking) test stops
//! everything too, and gets SIGKILL if the test process itself dies. Each
//! process's log is kept in the cluster's directory.

use std::fs::File;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use testkit::envoy::{self, LoopbackPorts};
use testkit::process::{Process, Service};
use testkit::{Client, Socket, StatusCode};

/// What the harness is given by `just e2e` (see the justfile).
pub struct Setup {
    pub binary: PathBuf,
    pub envoy: PathBuf,
    pub database_url: String,
}

pub const ENV_BINARY: &str = "ACCOUNTS_E2E_BINARY";
pub const ENV_ENVOY: &str = "ACCOUNTS_E2E_ENVOY";
pub const ENV_DATABASE_URL: &str = "ACCOUNTS_E2E_DATABASE_URL";

impl Setup {
    /// Fails the test (never passes it silently) when run without `just e2e`.
    pub fn from_env() -> Setup {
        let get = |name: &str| {
            std::env::var(name).unwrap_or_else(|_| {
                panic!("{name} is not set: run the end-to-end tests with `just e2e`")
            })
        };
        Setup {
            binary: PathBuf::from(get(ENV_BINARY)),
            envoy: PathBuf::from(get(ENV_ENVOY)),
            database_url: get(ENV_DATABASE_URL),
        }
    }
}

/// Drain delay given to the instances: well above Envoy's health-check
/// interval (0.2 s, one failed check marks a 503 unhealthy), so no request is
/// routed to an instance after it stops accepting.
pub const DRAIN_DELAY_MS: u64 = 2000;

const STARTUP_TIMEOUT: Duration = Duration::from_secs(30);

/// Free loopback ports, all distinct (held open together while picking).
fn free_ports(count: usize) -> Vec<u16> {
    let listeners: Vec<TcpListener> = (0..count)
        .map(|_| TcpListener::bind("127.0.0.1:0").expect("bind a free port"))
        .collect();
    listeners
        .iter()
        .map(|listener| listener.local_addr().expect("local address").port())
        .collect()
}

pub struct Instance {
    pub port: u16,
    process: Option<Service>,
    /// Each (re)start logs to its own file: instance-a.0.log, instance-a.1.log…
    starts: u32,
    name: &'static str,
}

impl Instance {
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The running process, taken out of the instance, its log saved to
    /// `dir` (instance-a.0.log for the first start…).
    fn take_process(&mut self, dir: &Path) -> Service {
        let process = self.process.take().expect("running");
        let start = self.starts - 1;
        process.save_log(&dir.join(format!("{}.{start}.log", self.name)));
        process
    }
}

pub struct Cluster {
    setup: Setup,
    /// Extra environment of every instance (e.g. the auth secret).
    env: Vec<(String, String)>,
    pub instances: Vec<Instance>,
    envoy: Option<Process>,
    envoy_port: u16,
    admin_port: u16,
    pub dir: PathBuf,
}

/// A client of one process's HTTP port (an instance, Envoy's admin), with
/// a short timeout: these are probes.
fn probe(base: String) -> Client<Socket> {
    Client::new(Socket::new(base)).with_timeout(Duration::from_secs(2))
}

impl Cluster {
    /// Starts two instances, waits until each answers `/ready`, then Envoy,
    /// and waits until Envoy sees both healthy.
    pub async fn start(name: &str) -> Cluster {
        Cluster::start_with_env(name, Vec::new()).await
    }

    /// [`Cluster::start`] with extra environment for every instance.
    pub async fn start_with_env(name: &str, env: Vec<(String, String)>) -> Cluster {
        let setup = Setup::from_env();
        let stamp = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .expect("clock after 1970")
            .as_millis();
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
            .join("e2e")
            .join(format!("{name}-{stamp}"));
        std::fs::create_dir_all(&dir).expect("create the log directory");
        eprintln!("[{name}] logs in {}", dir.display());
        let ports = free_ports(4);
        let instances = ["instance-a", "instance-b"]
            .iter()
            .zip(&ports[..2])
            .map(|(name, port)| Instance {
                port: *port,
                process: None,
                starts: 0,
                name,
            })
            .collect();
        let mut cluster = Cluster {
            setup,
            env,
            instances,
            envoy: None,
            envoy_port: ports[2],
            admin_port: ports[3],
            dir,
        };
        for index in 0..cluster.instances.len() {
            cluster.start_instance(index).await;
        }
        cluster.start_envoy();
        for index in 0..cluster.instances.len() {
            cluster.wait_envoy_health(index, true).await;
        }
        cluster
    }

    /// Envoy's admin interface.
    fn admin(&self) -> Client<Socket> {
        probe(format!("http://127.0.0.1:{}", self.admin_port))
    }

    /// Envoy's listener: where the tests send their requests.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.envoy_port)
    }

    fn start_envoy(&mut self) {
        let ports = LoopbackPorts {
            admin: self.admin_port,
            listen: self.envoy_port,
            upstreams: [self.instances[0].port, self.instances[1].port],
        };
        let config = envoy::render_for_loopback(envoy::DEPLOY_CONFIG, ports);
        let path = self.dir.join("envoy.yaml");
        std::fs::write(&path, config).expect("write the Envoy config");
        let mut command = Command::new(&self.setup.envoy);
        command
            .arg("-c")
            .arg(&path)
            // Several Envoys (other test runs) may share this machine.
            .arg("--disable-hot-restart")
            .args(["--log-level", "warn", "--concurrency", "2"]);
        let out = File::create(self.dir.join("envoy.log")).expect("create a log file");
        let err = out.try_clone().expect("clone a file handle");
        command.stdin(Stdio::null()).stdout(out).stderr(err);
        self.envoy = Some(Process::spawn(&mut command));
    }

    /// Starts (or restarts, on the same port) instance `index` and waits
    /// until it answers `/ready` directly.
    pub async fn start_instance(&mut self, index: usize) {
        let instance = &mut self.instances[index];
        assert!(instance.process.is_none(), "{} is running", instance.name);
        instance.starts += 1;
        let drain_delay = DRAIN_DELAY_MS.to_string();
        let args = [
            "--database-url",
            &self.setup.database_url,
            "--drain-delay-ms",
            &drain_delay,
        ];
        let env: Vec<(&str, &str)> = self
            .env
            .iter()
            .map(|(name, value)| (name.as_str(), value.as_str()))
            .collect();
        let listen = format!("127.0.0.1:{}", instance.port);
        let name = instance.name;
        let process = Service::try_start_on(&self.setup.binary, &listen, &args, &env)
            .unwrap_or_else(|log| panic!("{name} exited at start-up:\n{log}"));
        instance.process = Some(process);
        let instance_probe = probe(instance.url());
        let deadline = Instant::now() + STARTUP_TIMEOUT;
        loop {
            if let Ok(answer) = instance_probe.ready().reply().await
                && answer.status == StatusCode::OK
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{name} did not become ready within {STARTUP_TIMEOUT:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// kill -9.
    pub fn kill_instance(&mut self, index: usize) {
        let instance = &mut self.instances[index];
        let process = instance.take_process(&self.dir);
        eprintln!("kill -9 {} (pid {})", instance.name, process.pid());
        process.crash();
    }

    /// kill -9, then a restart once Envoy has seen the instance go and a
    /// second has passed; returns when Envoy sends it traffic again.
    pub async fn kill_and_restart_instance(&mut self, index: usize) {
        self.kill_instance(index);
        self.wait_envoy_health(index, false).await;
        tokio::time::sleep(Duration::from_millis(1000)).await;
        self.start_instance(index).await;
        self.wait_envoy_health(index, true).await;
    }

    /// SIGTERM; checks that the instance's `/ready` answers 503 at once
    /// (it keeps serving during the drain delay), then waits until the
    /// process has exited by itself.
    pub async fn terminate_instance(&mut self, index: usize) -> ExitStatus {
        let instance = &mut self.instances[index];
        let mut process = instance.process.take().expect("running");
        eprintln!("kill -TERM {} (pid {})", instance.name, process.pid());
        process.terminate();
        let signalled = Instant::now();
        let instance_probe = probe(instance.url());
        loop {
            let status = instance_probe.ready().reply().await.map(|a| a.status);
            if status == Ok(StatusCode::SERVICE_UNAVAILABLE) {
                break;
            }
            // Within the drain delay, or Envoy could not move traffic away.
            assert!(
                signalled.elapsed() < Duration::from_millis(DRAIN_DELAY_MS),
                "/ready of {} still answers {status:?} after SIGTERM",
                instance.name
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let within = Duration::from_millis(DRAIN_DELAY_MS) + Duration::from_secs(15);
        let (process, status) = tokio::task::spawn_blocking(move || {
            let status = process.wait_exit(within);
            (process, status)
        })
        .await
        .expect("the waiting thread does not panic");
        instance.process = Some(process);
        instance.take_process(&self.dir);
        let elapsed = signalled.elapsed();
        eprintln!(
            "{} exited {:.2} s after SIGTERM: {status}",
            instance.name,
            elapsed.as_secs_f64()
        );
        assert!(
            elapsed >= Duration::from_millis(DRAIN_DELAY_MS),
            "{} stopped before its drain delay",
            instance.name
        );
        status
    }

    /// Waits until Envoy's active health check reports instance `index`
    /// healthy (or unhealthy).
    pub async fn wait_envoy_health(&self, index: usize, healthy: bool) {
        let host = format!("127.0.0.1:{}", self.instances[index].port);
        let deadline = Instant::now() + STARTUP_TIMEOUT;
        loop {
            if self.envoy_health(&host).await == Some(healthy) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "Envoy did not see {host} {} within {STARTUP_TIMEOUT:?}; see {}",
                if healthy { "healthy" } else { "unhealthy" },
                self.dir.display()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// From the admin `/clusters` page: `accounts::HOST::health_flags::healthy`
    /// when every check passes, else the failing flags.
    async fn envoy_health(&self, host: &str) -> Option<bool> {
        let text = self.admin().get("/clusters").reply().await.ok()?.body;
        let prefix = format!("accounts::{host}::health_flags::");
        text.lines()
            .find_map(|line| line.strip_prefix(&prefix))
            .map(|flags| flags.trim() == "healthy")
    }

    /// A counter from Envoy's admin `/stats` (e.g. `cluster.accounts.upstream_rq_retry`).
    pub async fn envoy_counter(&self, name: &str) -> u64 {
        let text = self.admin().get("/stats").await.body;
        let prefix = format!("{name}: ");
        text.lines()
            .find_map(|line| line.strip_prefix(&prefix)?.trim().parse().ok())
            .unwrap_or_else(|| panic!("Envoy has no counter {name}"))
    }

    /// Requests instance `index` has answered on the API routes since it
    /// (re)started, from its own `/metrics` (health checks excluded).
    pub async fn api_requests_served(&self, index: usize) -> u64 {
        self.instance_metric(index, |line| {
            line.starts_with("accounts_http_requests_total{") && line.contains("route=\"/api/")
        })
        .await
    }

    /// A counter summed over both instances, e.g. `accounts_conflicts_total`.
    pub async fn counter_total(&self, name: &str) -> u64 {
        let mut total = 0;
        for index in 0..self.instances.len() {
            total += self
                .instance_metric(index, |line| line.split(' ').next() == Some(name))
                .await;
        }
        total
    }

    /// The sum of the samples of instance `index` whose lines `select` picks.
    pub async fn instance_metric(&self, index: usize, select: impl Fn(&str) -> bool) -> u64 {
        let text = probe(self.instances[index].url()).metrics().await.body;
        testkit::metrics::sum(&text, select) as u64
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.envoy.take();
        for instance in &mut self.instances {
            if instance.process.is_some() {
                instance.take_process(&self.dir);
            }
        }
        if std::thread::panicking() {
            eprintln!("test failed; process logs in {}", self.dir.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}
