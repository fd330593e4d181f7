#!/usr/bin/env python3
"""`just ha-up` / `just ha-down` / `just ha-status [--json]`: the highly
available topology natively on loopback, no Docker:

    Envoy ─┬─ accounts a ─┐                 ┌─ Patroni n1 + PostgreSQL 15
           └─ accounts b ─┴─ HAProxy ───────┼─ Patroni n2 + PostgreSQL 15
                             (GET /primary) └─ Patroni n3 + PostgreSQL 15
                                                 │
                                       etcd e1, e2, e3 (v3 API)

Every process is started in its own session and its PID written to the
state file (STATE_DIR/state.json) as soon as it runs, so `ha-down` stops
exactly what `ha-up` started — also after an `ha-up` that failed half-way,
and also PostgreSQL postmasters that outlived a killed Patroni (found by
their data directories' postmaster.pid). A PID is signalled only while its
command line is still the one recorded, never a process that reused it.

PostgreSQL refuses to run as root: Patroni runs as `postgres`, from a
virtualenv made with Debian's /usr/bin/python3 outside the clone
(/opt/accounts-ha/venv, or $ACCOUNTS_HA_VENV: the clone may sit where
`postgres` cannot reach), and the data,
socket and pgpass directories are owned by `postgres`, mode 700.

Python standard library only; `.ci/tools.sh` installs etcd, HAProxy and
Patroni. `--async` brings the cluster up with asynchronous replication
(`synchronous_mode: false`, large `maximum_lag_on_failover`): only for the
counter-run of `just e2e-ha --async`, never for real money.
"""

from __future__ import annotations

import argparse
import json
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
STATE_DIR = Path(os.environ.get("ACCOUNTS_HA_DIR", "/tmp/accounts-ha"))
PORT_BASE = int(os.environ.get("ACCOUNTS_HA_PORT_BASE", "25400"))
PG_BIN = Path(os.environ.get("ACCOUNTS_HA_PG_BIN", "/usr/lib/postgresql/15/bin"))
# Outside the clone: Patroni runs as `postgres`, who may not traverse the
# directories above it (a clone in a mode-700 temporary directory or home).
PATRONI_VENV = Path(os.environ.get("ACCOUNTS_HA_VENV", "/opt/accounts-ha/venv"))
SCOPE = "accounts-ha"
DATABASE = "accounts"
NODES = ("n1", "n2", "n3")
ETCD = ("e1", "e2", "e3")
INSTANCES = ("a", "b")
# Patroni 4 raises any ttl below 20 to 20; loop_wait + 2 × retry_timeout
# must stay below it.
TTL, LOOP_WAIT, RETRY_TIMEOUT = 20, 1, 5
STARTUP_TIMEOUT = 120.0


def ports() -> dict:
    """Every port of the topology, from one base (ACCOUNTS_HA_PORT_BASE)."""
    b = PORT_BASE
    return {
        "envoy": b + 80,
        "envoy_admin": b + 81,
        "haproxy": b + 40,
        "haproxy_stats": b + 44,
        "instances": {name: b + 82 + i for i, name in enumerate(INSTANCES)},
        "etcd_client": {name: b + 1 + i for i, name in enumerate(ETCD)},
        "etcd_peer": {name: b + 11 + i for i, name in enumerate(ETCD)},
        "pg": {name: b + 41 + i for i, name in enumerate(NODES)},
        "rest": {name: b + 51 + i for i, name in enumerate(NODES)},
    }


# ---------------------------------------------------------------- state file


def state_path() -> Path:
    return STATE_DIR / "state.json"


def load_state() -> dict | None:
    try:
        return json.loads(state_path().read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def save_state(state: dict) -> None:
    tmp = state_path().with_suffix(".tmp")
    tmp.write_text(json.dumps(state, indent=2))
    tmp.replace(state_path())


def cmdline(pid: int) -> str | None:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    text = raw.replace(b"\0", b" ").decode(errors="replace").strip()
    return text or None


def stat_state(pid: int) -> str | None:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return None
    return fields[0]


def alive(entry: dict) -> bool:
    """Whether the recorded process still runs (not a zombie, not a PID reused
    by something else)."""
    line = cmdline(entry["pid"])
    return (
        line is not None
        and entry["marker"] in line
        and Path(entry["argv"][0]).name in line
        and stat_state(entry["pid"]) not in (None, "Z")
    )


# ------------------------------------------------------------------ starting


def start(state: dict, key: str, argv: list[str], log: Path, user: str | None = None) -> int:
    """Starts one process in its own session, records it at once. Its
    marker (an argument naming this process alone: a config file, a data
    directory, an address) tells it from a process that reused the PID."""
    marker = max((a for a in argv[1:] if str(STATE_DIR) in a or "127.0.0.1:" in a), key=len)
    out = open(log, "ab")
    kwargs: dict = {}
    if user is not None:
        entry = pwd.getpwnam(user)
        kwargs = {
            "user": entry.pw_uid,
            "group": entry.pw_gid,
            "extra_groups": [],
            "env": {**os.environ, "HOME": entry.pw_dir, "USER": user},
            "cwd": str(STATE_DIR),
        }
    proc = subprocess.Popen(
        argv,
        stdin=subprocess.DEVNULL,
        stdout=out,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        **kwargs,
    )
    out.close()
    # Until exec the child's command line is ours: wait for the program's.
    deadline = time.monotonic() + 5
    while marker not in (cmdline(proc.pid) or "") and time.monotonic() < deadline:
        time.sleep(0.01)
    state["processes"][key] = {
        "pid": proc.pid,
        "marker": marker,
        "argv": argv,
        "log": str(log),
        "user": user,
    }
    save_state(state)
    return proc.pid


def restart(key: str) -> int:
    """Starts a recorded process again with its recorded command (for fault
    injection: an etcd member or an instance killed by `kill -9`)."""
    state = load_state()
    if state is None:
        sys.exit("no cluster is up (no state file)")
    entry = state["processes"][key]
    if alive(entry):
        return entry["pid"]
    pid = start(state, key, entry["argv"], Path(entry["log"]), entry.get("user"))


def wait_until(what: str, check, timeout: float = STARTUP_TIMEOUT, state: dict | None = None):
    """Polls `check` until it is true; fails at once when a process of
    `state` has died (its log says why)."""
    deadline = time.monotonic() + timeout
    last_error = None
    while time.monotonic() < deadline:
        dead = [k for k, e in (state or {"processes": {}})["processes"].items() if not alive(e)]
        if dead:
            logs = ", ".join(state["processes"][k]["log"] for k in dead)
            raise SystemExit(f"{', '.join(dead)} exited while waiting for {what}: see {logs}")
        try:
            result = check()
            if result:
                return result
        except Exception as error:  # noqa: BLE001 — any failure means "not yet"
            last_error = error
        time.sleep(0.2)
    raise SystemExit(f"timed out after {timeout:.0f} s waiting for {what} ({last_error})")


def http_get(url: str, timeout: float = 2.0) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as answer:
            return answer.status, answer.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def http_json(url: str, timeout: float = 2.0):
    status, body = http_get(url, timeout)
    if status != 200:
        raise RuntimeError(f"{url}: HTTP {status}")
    return json.loads(body)


# --------------------------------------------------------------------- etcd


def start_etcd(state: dict) -> None:
    p = ports()
    cluster = ",".join(f"{n}=http://127.0.0.1:{p['etcd_peer'][n]}" for n in ETCD)
    for name in ETCD:
        client = f"http://127.0.0.1:{p['etcd_client'][name]}"
        peer = f"http://127.0.0.1:{p['etcd_peer'][name]}"
        argv = [
            shutil.which("etcd") or "etcd",
            "--name", name,
            "--data-dir", str(STATE_DIR / "etcd" / name),
            "--listen-client-urls", client,
            "--advertise-client-urls", client,
            "--listen-peer-urls", peer,
            "--initial-advertise-peer-urls", peer,
            "--initial-cluster", cluster,
            "--initial-cluster-state", "new",
            "--initial-cluster-token", SCOPE,
            # Loopback on a loaded machine: a heartbeat late by a few
            # hundred milliseconds must not start an election.
            "--heartbeat-interval", "200",
            "--election-timeout", "2000",
            "--logger", "zap",
        ]  # fmt: skip
        start(state, f"etcd-{name}", argv, STATE_DIR / "logs" / f"etcd-{name}.log")
    for name in ETCD:
        url = f"http://127.0.0.1:{p['etcd_client'][name]}/health"
        wait_until(f"etcd {name}", lambda url=url: http_json(url).get("health") == "true", state=state)


# ------------------------------------------------------------------ Patroni


def patroni_config(name: str, asynchronous: bool) -> dict:
    p = ports()
    pg_dir = STATE_DIR / "pg"
    dcs = {
        "ttl": TTL,
        "loop_wait": LOOP_WAIT,
        "retry_timeout": RETRY_TIMEOUT,
        "maximum_lag_on_failover": 1 << 40 if asynchronous else 1 << 20,
        "synchronous_mode": not asynchronous,
        # Strict: with no synchronous standby left the primary stops
        # acknowledging commits instead of acknowledging commits that exist
        # on one disk only (docs/high-availability.md).
        "synchronous_mode_strict": not asynchronous,
        "postgresql": {
            "use_pg_rewind": True,
            "remove_data_directory_on_rewind_failure": True,
            "parameters": {
                "wal_level": "replica",
                "hot_standby": "on",
                "max_wal_senders": 10,
                "max_replication_slots": 10,
                "wal_log_hints": "on",
                "max_connections": 100,
            },
        },
    }
    hosts = ",".join(f"127.0.0.1:{p['etcd_client'][e]}" for e in ETCD)
    return {
        "scope": SCOPE,
        "name": name,
        "log": {"level": "INFO"},
        "restapi": {
            "listen": f"127.0.0.1:{p['rest'][name]}",
            "connect_address": f"127.0.0.1:{p['rest'][name]}",
        },
        "etcd3": {"hosts": hosts},
        "bootstrap": {
            "dcs": dcs,
            "initdb": [{"encoding": "UTF8"}, {"auth": "trust"}],
            "pg_hba": [
                "local all all trust",
                "host all all 127.0.0.1/32 trust",
                "host replication all 127.0.0.1/32 trust",
            ],
        },
        "postgresql": {
            "listen": f"127.0.0.1:{p['pg'][name]}",
            "connect_address": f"127.0.0.1:{p['pg'][name]}",
            "data_dir": str(pg_dir / "data" / name),
            "bin_dir": str(PG_BIN),
            "pgpass": str(pg_dir / f"pgpass-{name}"),
            "authentication": {
                "superuser": {"username": "postgres"},
                "replication": {"username": "postgres"},
            },
            "parameters": {"unix_socket_directories": str(pg_dir / "sock")},
        },
        "watchdog": {"mode": "off"},
    }


def prepare_pg_dirs() -> None:
    owner = pwd.getpwnam("postgres")
    for sub in ("pg", "pg/data", "pg/sock"):
        path = STATE_DIR / sub
        path.mkdir(parents=True, exist_ok=True)
        os.chown(path, owner.pw_uid, owner.pw_gid)
        path.chmod(0o700)


def start_patroni(state: dict, asynchronous: bool) -> None:
    prepare_pg_dirs()
    patroni = str(PATRONI_VENV / "bin" / "patroni")
    owner = pwd.getpwnam("postgres")
    for name in NODES:
        # JSON is YAML: Patroni reads this file as its configuration.
        config = STATE_DIR / "pg" / f"{name}.yml"
        config.write_text(json.dumps(patroni_config(name, asynchronous), indent=2))
        os.chown(config, owner.pw_uid, owner.pw_gid)
        log = STATE_DIR / "logs" / f"patroni-{name}.log"
        start(state, f"patroni-{name}", [patroni, str(config)], log, user="postgres")
    wait_until("a Patroni leader with streaming replicas", cluster_ready, state=state)


def cluster_members() -> list[dict]:
    p = ports()
    last: Exception | None = None
    for name in NODES:
        try:
            return http_json(f"http://127.0.0.1:{p['rest'][name]}/cluster")["members"]
        except Exception as error:  # noqa: BLE001 — try the next node
            last = error
    raise RuntimeError(f"no Patroni REST API answers ({last})")


def cluster_ready() -> bool:
    members = cluster_members()
    leaders = [m for m in members if m["role"] == "leader" and m["state"] == "running"]
    streaming = [m for m in members if m["role"] != "leader" and m["state"] == "streaming"]
    return len(leaders) == 1 and len(streaming) == len(NODES) - 1


def postmaster_pid(name: str) -> int | None:
    """The postmaster's PID from its data directory (first line of
    postmaster.pid), if that process still runs."""
    path = STATE_DIR / "pg" / "data" / name / "postmaster.pid"
    try:
        pid = int(path.read_text().split("\n", 1)[0])
    except (FileNotFoundError, ValueError, IndexError):
        return None
    line = cmdline(pid)
    return pid if line and "postgres" in line and stat_state(pid) != "Z" else None


# ------------------------------------------------------------------ HAProxy


def haproxy_config() -> str:
    p = ports()
    servers = "\n".join(
        f"  server {n} 127.0.0.1:{p['pg'][n]} check port {p['rest'][n]}" for n in NODES
    )
    return f"""# Generated by deploy/ha/ha.py: connections go to the node whose Patroni
# answers GET /primary with 200; when it stops doing so, its sessions are cut.
global
  maxconn 1000
defaults
  mode tcp
  timeout connect 2s
  timeout client 30m
  timeout server 30m
  timeout check 1s
  retries 2
listen stats
  bind 127.0.0.1:{p['haproxy_stats']}
  mode http
  http-request use-service prometheus-exporter if {{ path /metrics }}
  stats enable
  stats uri /
listen primary
  bind 127.0.0.1:{p['haproxy']}
  option httpchk GET /primary
  http-check expect status 200
  default-server inter 1s fall 2 rise 1 on-marked-down shutdown-sessions
{servers}
"""


def start_haproxy(state: dict) -> None:
    config = STATE_DIR / "haproxy.cfg"
    config.write_text(haproxy_config())
    subprocess.run(["haproxy", "-c", "-q", "-f", str(config)], check=True)
    argv = [shutil.which("haproxy") or "haproxy", "-f", str(config), "-db"]
    start(state, "haproxy", argv, STATE_DIR / "logs" / "haproxy.log")
    url = f"http://127.0.0.1:{ports()['haproxy_stats']}/metrics"
    wait_until("HAProxy", lambda: http_get(url)[0] == 200, state=state)


def psql(sql: str, port: int | None = None, database: str = "postgres") -> str:
    port = port or ports()["haproxy"]
    out = subprocess.run(
        ["psql", "-X", "-qAt", "-h", "127.0.0.1", "-p", str(port), "-U", "postgres",
         "-d", database, "-c", sql],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    if out.returncode != 0:
        raise RuntimeError(f"psql -c {sql!r}: {out.stderr.strip()}")
    return out.stdout.strip()


def create_database() -> None:
    def writable() -> bool:
        return psql("SELECT NOT pg_is_in_recovery()") == "t"

    def created() -> bool:
        if psql(f"SELECT 1 FROM pg_database WHERE datname = '{DATABASE}'") != "1":
            psql(f"CREATE DATABASE {DATABASE}")
        return True

    wait_until("a writable primary through HAProxy", writable)
    # Right after the election template1 may still be in use (Patroni's own
    # checks): try again.
    wait_until(f"CREATE DATABASE {DATABASE}", created, timeout=60)


# ------------------------------------------------------ instances and Envoy


def database_url() -> str:
    return f"postgres://postgres@127.0.0.1:{ports()['haproxy']}/{DATABASE}"


def start_instances(state: dict) -> None:
    binary = os.environ.get("ACCOUNTS_HA_BINARY") or str(
        Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target")) / "release" / "accounts"
    )
    extra = os.environ.get("ACCOUNTS_HA_INSTANCE_ARGS", "").split()
    for name, port in ports()["instances"].items():
        argv = [
            binary,
            "--listen", f"127.0.0.1:{port}",
            "--database-url", database_url(),
            "--drain-delay-ms", "2000",
            *extra,
        ]  # fmt: skip
        start(state, f"instance-{name}", argv, STATE_DIR / "logs" / f"instance-{name}.log")
    for port in ports()["instances"].values():
        url = f"http://127.0.0.1:{port}/ready"
        wait_until(f"instance on :{port} ready", lambda url=url: http_get(url)[0] == 200, state=state)


def start_envoy(state: dict) -> None:
    p = ports()
    # The deploy kit's policy, the only copy, with compose's addresses on
    # loopback (as the end-to-end tests render it).
    rendered = (ROOT / "deploy" / "envoy" / "envoy.yaml").read_text()
    a, b = p["instances"].values()
    for compose, port in (("address: 0.0.0.0, port_value: 9901", p["envoy_admin"]),
                          ("address: 0.0.0.0, port_value: 8080", p["envoy"]),
                          ("address: accounts-1, port_value: 8080", a),
                          ("address: accounts-2, port_value: 8080", b)):  # fmt: skip
        if rendered.count(compose) != 1:
            raise SystemExit(f"deploy/envoy/envoy.yaml: `{compose}` not there exactly once")
        rendered = rendered.replace(compose, f"address: 127.0.0.1, port_value: {port}")
    config = STATE_DIR / "envoy.yaml"
    config.write_text(rendered)
    envoy = os.environ.get("ACCOUNTS_HA_ENVOY") or shutil.which("envoy") or "envoy"
    argv = [envoy, "-c", str(config), "--disable-hot-restart",
            "--log-level", "warn", "--concurrency", "2",
            "--base-id", str(PORT_BASE)]  # fmt: skip
    start(state, "envoy", argv, STATE_DIR / "logs" / "envoy.log")

    def both_healthy() -> bool:
        status, body = http_get(f"http://127.0.0.1:{p['envoy_admin']}/clusters")
        healthy = [line for line in body.decode().splitlines()
                   if line.startswith("accounts::") and line.endswith("::health_flags::healthy")]  # fmt: skip
        return status == 200 and len(healthy) == len(INSTANCES)

    wait_until("Envoy with both instances healthy", both_healthy, state=state)


# ------------------------------------------------------------------ commands


def all_ports() -> list[int]:
    found: list[int] = []
    for value in ports().values():
        found.extend(value.values() if isinstance(value, dict) else [value])
    return found


def check_ports_free() -> None:
    """Fails before starting anything when a port of the topology is taken
    (another cluster, a process not stopped yet): name it."""
    for port in all_ports():
        with socket.socket() as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                raise SystemExit(
                    f"port {port} is in use; set ACCOUNTS_HA_PORT_BASE to move the topology"
                ) from None


def up(asynchronous: bool) -> None:
    state = load_state()
    if state is not None:
        if all(alive(e) for e in state["processes"].values()) and state.get("complete"):
            if state.get("asynchronous", False) == asynchronous:
                print(f"already up (state in {state_path()})")
                status(as_json=False)
                return
        print("a previous cluster is incomplete or different: taking it down first")
        down()
    check_ports_free()
    STATE_DIR.mkdir(parents=True, exist_ok=True)
    STATE_DIR.chmod(0o755)
    (STATE_DIR / "logs").mkdir(exist_ok=True)
    state = {"processes": {}, "complete": False, "asynchronous": asynchronous,
             "ports": ports(), "dir": str(STATE_DIR)}  # fmt: skip
    save_state(state)
    started = time.monotonic()
    try:
        start_etcd(state)
        start_patroni(state, asynchronous)
        start_haproxy(state)
        create_database()
        start_instances(state)
        start_envoy(state)
    except BaseException:
        print(f"ha-up failed; logs in {STATE_DIR / 'logs'} (`just ha-down` cleans up)",
              file=sys.stderr)  # fmt: skip
        raise
    state["complete"] = True
    save_state(state)
    print(f"up in {time.monotonic() - started:.1f} s")
    status(as_json=False)


def terminate(entry: dict, grace: float) -> None:
    if not alive(entry):
        return
    pid = entry["pid"]
    try:
        os.killpg(pid, signal.SIGCONT)  # a SIGSTOPped process cannot exit
        os.killpg(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + grace
    while alive(entry) and time.monotonic() < deadline:
        time.sleep(0.05)
    if alive(entry):
        try:
            os.killpg(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def down() -> None:
    state = load_state()
    if state is not None:
        order = ["envoy", *[f"instance-{n}" for n in INSTANCES], "haproxy",
                 *[f"patroni-{n}" for n in NODES], *[f"etcd-{n}" for n in ETCD]]  # fmt: skip
        processes = state["processes"]
        keys = [k for k in order if k in processes] + [k for k in processes if k not in order]
        for key in keys:
            terminate(processes[key], grace=15.0 if key.startswith("patroni") else 5.0)
    # A postmaster outlives a Patroni killed with SIGKILL: stop it by the
    # PID in its own data directory.
    for name in NODES:
        pid = postmaster_pid(name)
        if pid is not None:
            os.kill(pid, signal.SIGQUIT)
            deadline = time.monotonic() + 10
            while postmaster_pid(name) is not None and time.monotonic() < deadline:
                time.sleep(0.05)
            if postmaster_pid(name) is not None:
                os.kill(pid, signal.SIGKILL)
    if STATE_DIR.exists():
        shutil.rmtree(STATE_DIR)
    print("down")


def topology() -> dict:
    state = load_state()
    if state is None:
        return {"up": False}
    p, processes = state["ports"], state["processes"]
    try:
        members = {m["name"]: m for m in cluster_members()}
    except Exception:  # noqa: BLE001 — no node answers: roles unknown
        members = {}

    def pid_of(key: str) -> int | None:
        entry = processes.get(key)
        return entry["pid"] if entry and alive(entry) else None

    nodes = []
    for name in NODES:
        member = members.get(name, {})
        nodes.append({
            "name": name,
            "role": member.get("role", "unknown"),
            "state": member.get("state", "unknown"),
            "timeline": member.get("timeline"),
            "lag": member.get("lag"),
            "postgres_port": p["pg"][name],
            "rest_port": p["rest"][name],
            "rest_url": f"http://127.0.0.1:{p['rest'][name]}",
            "patroni_pid": pid_of(f"patroni-{name}"),
            "postmaster_pid": postmaster_pid(name),
        })  # fmt: skip
    etcd = [{"name": n, "client_url": f"http://127.0.0.1:{p['etcd_client'][n]}",
             "peer_url": f"http://127.0.0.1:{p['etcd_peer'][n]}", "pid": pid_of(f"etcd-{n}")}
            for n in ETCD]  # fmt: skip
    instances = [{"name": n, "url": f"http://127.0.0.1:{port}", "pid": pid_of(f"instance-{n}")}
                 for n, port in p["instances"].items()]  # fmt: skip
    return {
        "up": bool(state.get("complete")),
        "dir": state["dir"],
        "synchronous": not state.get("asynchronous", False),
        "scope": SCOPE,
        "envoy_url": f"http://127.0.0.1:{p['envoy']}",
        "envoy_admin_url": f"http://127.0.0.1:{p['envoy_admin']}",
        "envoy_pid": pid_of("envoy"),
        "haproxy_address": f"127.0.0.1:{p['haproxy']}",
        "haproxy_stats_url": f"http://127.0.0.1:{p['haproxy_stats']}/",
        "haproxy_pid": pid_of("haproxy"),
        "database_url": database_url(),
        "patronictl_config": str(STATE_DIR / "pg" / "n1.yml"),
        "nodes": nodes,
        "etcd": etcd,
        "instances": instances,
    }


def status(as_json: bool) -> None:
    t = topology()
    if as_json:
        print(json.dumps(t, indent=2))
        return
    if not t["up"] and "nodes" not in t:
        print("not up")
        return
    mode = "synchronous" if t["synchronous"] else "ASYNCHRONOUS"
    print(f"Envoy {t['envoy_url']} (pid {t['envoy_pid']})   "
          f"HAProxy {t['haproxy_address']} (pid {t['haproxy_pid']})   {mode}")  # fmt: skip
    for i in t["instances"]:
        print(f"  accounts {i['name']:<2} {i['url']:<24} pid {i['pid']}")
    for n in t["nodes"]:
        print(f"  {n['name']}  {n['role']:<13} {n['state']:<10} pg :{n['postgres_port']} "
              f"rest :{n['rest_port']} timeline {n['timeline']} lag {n['lag']}  "
              f"patroni pid {n['patroni_pid']}  postmaster pid {n['postmaster_pid']}")  # fmt: skip
    for e in t["etcd"]:
        print(f"  etcd {e['name']}  {e['client_url']:<24} pid {e['pid']}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    up_parser = sub.add_parser("up", help="start the topology (idempotent)")
    up_parser.add_argument("--async", dest="asynchronous", action="store_true",
                           help="asynchronous replication (counter-run only)")  # fmt: skip
    sub.add_parser("down", help="stop everything `up` started and delete its state")
    status_parser = sub.add_parser("status", help="who leads, ports and PIDs")
    status_parser.add_argument("--json", action="store_true")
    restart_parser = sub.add_parser("restart", help="start a recorded process again")
    restart_parser.add_argument("key", help="e.g. etcd-e2, instance-a")
    args = parser.parse_args()
    if args.command == "up":
        up(args.asynchronous)
    elif args.command == "down":
        down()
    elif args.command == "status":
        status(args.json)
    else:
        print(restart(args.key))


if __name__ == "__main__":
    main()
