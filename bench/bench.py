#!/usr/bin/env python3
"""`just bench`: throughput and latency of the service on every store, each
figure next to the ceiling it is measured against, written to BENCHMARKS.md.

Every store gets fresh service processes and fresh databases; the service is
pinned to one core and the load generator (wrk, pgbench) to another. All
traffic stays on loopback and every run stops by itself (wrk and pgbench run
for a fixed duration; seeding stops after a fixed count).

Ceilings:
  memory store   ÷ /ping of the same server (the HTTP stack's own floor)
  PostgreSQL     ÷ pgbench running the bare loop on the same schema
                   (bench/pg_append.sql, bench/pg_read.sql) at the same
                   concurrency
  SQLite, MariaDB  ÷ /ping of the same server (no bare loop measured)
  the feed's cost  deposits with a reader tailing GET /api/events/stream
                   (`accounts feed`) ÷ the same deposits without one

`--profile` instead profiles the deposit path on PostgreSQL (perf, the
database's statement statistics, the pool) and writes "where each
microsecond of a deposit goes" into BENCHMARKS.md, with a flamegraph of the
service (bench/flamegraph-deposit-postgres.svg, when inferno-flamegraph is
installed: `just profile` installs it).

Python standard library only. Needs wrk, taskset, psql, pgbench, mysql
(`just bench` installs wrk when it is missing).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import re
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
LOAD_LUA = BENCH / "load.lua"
REPORT = ROOT / "BENCHMARKS.md"

OWNER = "3c2b1a09-8f7e-4d6c-9b5a-4f3e2d1c0b9a"
CONNECTIONS = 32
ACCOUNTS = 64
HOT_CLIENTS = 8
# Account numbers (ids 00000000-0000-4000-8000-NNNNNNNNNNNN): the 64 of the
# main runs start at 0; the others are far apart so that ranges never meet.
HOT = 0x100000
BIG = 0x200000  # 100,000 events
SMALL = 0x200001  # 10 events
MANY = 0x300000  # 100,000 accounts from here on
BIG_EVENTS = 100_000
SMALL_EVENTS = 10
MANY_ACCOUNTS = 100_000
LATENCY_REQUESTS = 1_000  # or the run's duration, whichever ends first
SEED_SECONDS = 600
SNAPSHOT_EVERY = 50  # the service's default (engine::SNAPSHOT_EVERY)
INITIAL_BALANCE = 1_000_000_000
STORES = ("memory", "sqlite", "postgres", "mariadb")
PG_SERVER = os.environ.get("BENCH_POSTGRES", "postgres://postgres@127.0.0.1:5432")
MYSQL_SERVER = os.environ.get("BENCH_MYSQL", "mysql://root@127.0.0.1:3306")
# Tables whose autovacuum would run in the middle of a measurement.
PG_TABLES = ("events", "applied_transactions", "snapshots", "event_positions")

BEGIN_MARK = "<!-- bench.py:{section}:begin -->"
END_MARK = "<!-- bench.py:{section}:end -->"


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def account_id(number: int) -> str:
    return f"00000000-0000-4000-8000-{number:012x}"


# --------------------------------------------------------------------------
# Cores


class Cores:
    """The service on one core, the load generator on another (when the
    machine has two); the databases' servers are not ours to pin."""

    def __init__(self) -> None:
        cores = sorted(os.sched_getaffinity(0))
        self.count = os.cpu_count() or len(cores)
        self.service = str(cores[0])
        self.load = str(cores[1]) if len(cores) > 1 else str(cores[0])
        self.separate = len(cores) > 1

    # --nice: a negative niceness lets the service and the load generator
    # run ahead of other work on a shared machine (root only).
    niceness = 0

    def pin(self, which: str, command: list[str]) -> list[str]:
        core = self.service if which == "service" else self.load
        priority = ["nice", "-n", str(self.niceness)] if self.niceness else []
        return [*priority, "taskset", "-c", core, *command]


# --------------------------------------------------------------------------
# Processes


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process, from /proc/PID/stat."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks


def memory_kib(pid: int, field: str) -> int:
    """VmRSS (resident now) or VmHWM (peak resident) of a process."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def http(method: str, url: str, timeout: float = 10.0) -> tuple[int, bytes]:
    request = urllib.request.Request(url, method=method)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


class Service:
    """One release instance on 127.0.0.1 with a free port, pinned."""

    # Extra flags and environment for every instance (--service-arg,
    # --service-env): to compare settings with the same harness.
    extra_args: list[str] = []
    extra_env: dict[str, str] = {}

    def __init__(self, binary: Path, database_url: str, cores: Cores, workdir: Path) -> None:
        self.log_path = workdir / f"service-{time.monotonic_ns()}.log"
        self.log_file = self.log_path.open("w")
        command = cores.pin(
            "service",
            [
                str(binary),
                "--listen",
                "127.0.0.1:0",
                "--drain-delay-ms",
                "0",
                "--database-url",
                database_url,
                *Service.extra_args,
            ],
        )
        env = {k: v for k, v in os.environ.items() if not k.startswith("ACCOUNTS_")}
        env.pop("DATABASE_URL", None)
        env.update(Service.extra_env)
        self.process = subprocess.Popen(
            command, stdout=subprocess.DEVNULL, stderr=self.log_file, env=env
        )
        self.pid = self.process.pid
        self.base = self._wait_listening()

    def _wait_listening(self) -> str:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the service exited: {self.log_path.read_text()[-2000:]}")
            match = re.search(r"listening on (\S+)", self.log_path.read_text())
            if match:
                base = f"http://{match.group(1)}"
                if http("GET", base + "/ready")[0] == 200:
                    return base
            time.sleep(0.05)
        raise RuntimeError("the service did not start listening within 60 s")

    def cpu(self) -> float:
        return cpu_seconds(self.pid)

    def metrics(self) -> str:
        return http("GET", self.base + "/metrics")[1].decode()

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.log_file.close()


def open_accounts(service: Service, first: int, count: int, deposit: int = 0) -> None:
    for n in range(first, first + count):
        status, body = http("POST", f"{service.base}/api/account/{account_id(n)}?owner={OWNER}")
        if status != 201:
            raise RuntimeError(f"opening account {n}: {status} {body[:200]!r}")
        if deposit:
            deposit_once(service, n, deposit, f"7fffffff-0000-4000-8000-{n:012x}")


def deposit_once(service: Service, number: int, amount: int, transaction: str) -> None:
    url = (
        f"{service.base}/api/account/{account_id(number)}/deposit"
        f"?amount={amount}&transactionId={transaction}"
    )
    status, body = http("PUT", url)
    if status != 204:
        raise RuntimeError(f"deposit to account {number}: {status} {body[:200]!r}")


def feed_after(service: Service, after: int = 0) -> tuple[int, int]:
    """How many events the feed has after `after`, and the last position
    (positions may have gaps). Bounded: the bench writes at most a few
    hundred thousand events per instance."""
    count = 0
    for _ in range(10_000):
        status, body = http("GET", f"{service.base}/api/events?after={after}&limit=10000", timeout=30)
        if status != 200:
            raise RuntimeError(f"reading the feed: {status} {body[:200]!r}")
        page = json.loads(body)
        if page:
            count, after = count + len(page), page[-1]["position"]
        if len(page) < 10000:
            return count, after
    raise RuntimeError("the feed did not end within 10,000 pages")


def metric(service: Service, name: str) -> float:
    match = re.search(rf"^{name} (\S+)", service.metrics(), re.M)
    return float(match.group(1)) if match else 0.0


class FeedReader:
    """A consumer tailing the feed during a load: the service's own client,
    `accounts feed URL` (which follows GET /api/events/stream and reconnects
    with Last-Event-ID when it falls behind), on the load generator's core.
    Its JSON lines are counted and dropped; the last one says how far it got."""

    def __init__(self, binary: Path, service: Service, after: int, cores: Cores, workdir: Path) -> None:
        self.service = service
        self.count = 0
        self.last = ""
        self.last_at = 0.0
        self.stderr_path = workdir / f"feed-{time.monotonic_ns()}.log"
        self.stderr_file = self.stderr_path.open("w")
        env = {k: v for k, v in os.environ.items() if not k.startswith("ACCOUNTS_")}
        streams_before = metric(service, "accounts_feed_streams")
        self.process = subprocess.Popen(
            cores.pin("load", [str(binary), "feed", "--after", str(after), service.base]),
            stdout=subprocess.PIPE,
            stderr=self.stderr_file,
            env=env,
            bufsize=1 << 16,
        )
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()
        # Connected when the service counts one more stream consumer.
        deadline = time.monotonic() + 30
        while metric(service, "accounts_feed_streams") <= streams_before:
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"the feed reader did not connect: {self.stderr_path.read_text()[-2000:]}")
            time.sleep(0.02)

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.count += 1
            self.last, self.last_at = line, time.monotonic()

    def position(self) -> int:
        last = self.last
        return json.loads(last)["position"] if last else 0

    def catch_up(self, head: int, since: float, timeout: float = 30.0) -> float | None:
        """Seconds from `since` (a monotonic time) until the reader printed
        position `head`; None if it has not within `timeout` of now."""
        started = time.monotonic()
        while self.position() < head:
            if self.process.poll() is not None or time.monotonic() - started > timeout:
                return None
            time.sleep(0.01)
        return max(self.last_at - since, 0.0)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.thread.join(timeout=10)
        self.stderr_file.close()


# --------------------------------------------------------------------------
# Load generators


class Runner:
    def __init__(self, cores: Cores, duration: float, workdir: Path) -> None:
        self.cores = cores
        self.duration = duration
        self.workdir = workdir
        self.tag = 0

    def wrk(
        self,
        service: Service,
        mode: str,
        *,
        first: int = 0,
        accounts: int = ACCOUNTS,
        connections: int = CONNECTIONS,
        limit: int = 0,
        duration: float | None = None,
        database_pids: list[int] | None = None,
    ) -> dict:
        """One wrk run. With `limit`, it is stopped (SIGINT, which makes wrk
        print its summary) as soon as its thread has had that many answers:
        wrk itself would sleep out its whole duration."""
        self.tag += 1
        done_file = self.workdir / f"wrk-done-{self.tag}"
        env = dict(
            os.environ,
            MODE=mode,
            FIRST=str(first),
            ACCOUNTS=str(accounts),
            TAG=str(self.tag),
            LIMIT=str(limit),
            OWNER=OWNER,
            THREADS="1",
            DONE_FILE=str(done_file),
        )
        seconds = duration if duration is not None else self.duration
        # With a limit, the run ends at the count or after `seconds`,
        # whichever comes first; wrk's own -d only as a backstop.
        backstop = seconds + 30 if limit else seconds
        command = self.cores.pin(
            "load",
            [
                "wrk",
                "-t1",
                f"-c{connections}",
                f"-d{max(1, round(backstop))}s",
                "--timeout",
                "10s",
                "-s",
                str(LOAD_LUA),
                service.base,
            ],
        )
        cpu_before = service.cpu()
        db_before = sum(cpu_seconds(pid) for pid in database_pids or [])
        hwm_before = memory_kib(service.pid, "VmHWM")
        started = time.monotonic()
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, text=True)
        if limit:
            while process.poll() is None and not done_file.exists() and time.monotonic() - started < seconds:
                time.sleep(0.02)
            if process.poll() is None:
                process.send_signal(signal.SIGINT)
        try:
            stdout, stderr = process.communicate(timeout=backstop + 60)
        except subprocess.TimeoutExpired:
            process.kill()
            stdout, stderr = process.communicate()
        wall = time.monotonic() - started
        line = next((l for l in stdout.splitlines() if l.startswith("BENCH ")), None)
        if line is None:
            raise RuntimeError(f"wrk printed no summary:\n{stdout}\n{stderr}")
        result = json.loads(line[len("BENCH "):])
        seconds_run = result["duration_us"] / 1e6 or wall
        statuses = {int(k): v for k, v in result["statuses"].items()}
        answered = sum(statuses.values())
        ok = sum(v for k, v in statuses.items() if 200 <= k < 300)
        result.update(
            mode=mode,
            connections=connections,
            seconds=seconds_run,
            rate=result["requests"] / seconds_run,
            ok_rate=ok / seconds_run,
            statuses=statuses,
            answered=answered,
            ok=ok,
            share_409=(statuses.get(409, 0) / answered) if answered else 0.0,
            service_cpu_us=(service.cpu() - cpu_before) * 1e6 / max(answered, 1),
            service_hwm_kib=memory_kib(service.pid, "VmHWM"),
            service_hwm_before_kib=hwm_before,
            service_rss_kib=memory_kib(service.pid, "VmRSS"),
            service_anon_kib=memory_kib(service.pid, "RssAnon"),
            service_file_kib=memory_kib(service.pid, "RssFile"),
        )
        if database_pids:
            db_cpu = sum(cpu_seconds(pid) for pid in database_pids) - db_before
            result["database_cpu_us"] = db_cpu * 1e6 / max(answered, 1)
        other = {k: v for k, v in statuses.items() if not 200 <= k < 300 and k != 409}
        if other or any(result["errors"].values()):
            log(f"  {mode}: other answers {other}, socket errors {result['errors']}")
        return result

    def pgbench(self, database: str, script: Path, clients: int) -> dict:
        server = PG_SERVER.split("://", 1)[1]
        user, hostport = server.split("@")
        host, port = hostport.split(":")
        command = self.cores.pin(
            "load",
            [
                "pgbench",
                "-n",
                "-h",
                host,
                "-p",
                port,
                "-U",
                user,
                "-c",
                str(clients),
                "-j",
                "1",
                # Parsed and planned once per connection, as the service's
                # statements are.
                "-M",
                "prepared",
                "-T",
                str(max(1, round(self.duration))),
                "-f",
                str(script),
                database,
            ],
        )
        ran = subprocess.run(command, capture_output=True, text=True)
        if ran.returncode != 0:
            raise RuntimeError(f"pgbench {script.name} failed:\n{ran.stdout}\n{ran.stderr}")
        output = ran.stdout
        tps = float(re.search(r"tps = ([\d.]+) \(without initial connection time\)", output).group(1))
        latency = float(re.search(r"latency average = ([\d.]+) ms", output).group(1))
        failed = re.search(r"number of failed transactions: (\d+)", output)
        return {
            "rate": tps,
            "mean_us": latency * 1000,
            "failed": int(failed.group(1)) if failed else 0,
            "clients": clients,
        }


# --------------------------------------------------------------------------
# Databases


def psql(database: str, sql: str, *, quiet: bool = True) -> str:
    command = ["psql", "-X", "-v", "ON_ERROR_STOP=1", "-At", f"{PG_SERVER}/{database}", "-c", sql]
    return subprocess.run(command, capture_output=True, text=True, check=True).stdout


def mysql(database: str | None, sql: str) -> str:
    server = MYSQL_SERVER.split("://", 1)[1]
    user, hostport = server.split("@")
    host, port = hostport.split(":")
    command = ["mysql", "-h", host, "-P", port, "-u", user, "-N", "-B"]
    if database:
        command.append(database)
    return subprocess.run(command, input=sql, capture_output=True, text=True, check=True).stdout


class Store:
    """A fresh database of one kind; `url()` for the service, `drop()` after."""

    def __init__(self, kind: str, workdir: Path, name: str) -> None:
        self.kind = kind
        self.name = f"accounts_bench_{os.getpid()}_{name}"
        self.path = workdir / f"{self.name}.db"
        if kind == "postgres":
            psql("postgres", f"CREATE DATABASE {self.name}")
        elif kind == "mariadb":
            mysql(None, f"CREATE DATABASE {self.name}")

    def url(self) -> str:
        return {
            "memory": "memory:",
            "sqlite": f"sqlite:{self.path}",
            "postgres": f"{PG_SERVER}/{self.name}",
            "mariadb": f"{MYSQL_SERVER}/{self.name}",
        }[self.kind]

    def after_migration(self) -> None:
        """Autovacuum off on the benchmarked tables: it would start in the
        middle of a run on one store and not on another."""
        if self.kind == "postgres":
            psql(
                self.name,
                "; ".join(
                    f"ALTER TABLE {table} SET (autovacuum_enabled = false, toast.autovacuum_enabled = false)"
                    for table in PG_TABLES
                ),
            )

    def backend_pids(self) -> list[int]:
        if self.kind != "postgres":
            return []
        rows = psql(
            "postgres",
            f"SELECT pid FROM pg_stat_activity WHERE datname = '{self.name}' AND pid <> pg_backend_pid()",
        )
        return [int(row) for row in rows.split()]

    def drop(self) -> None:
        try:
            if self.kind == "postgres":
                psql("postgres", f"DROP DATABASE IF EXISTS {self.name} WITH (FORCE)")
            elif self.kind == "mariadb":
                mysql(None, f"DROP DATABASE IF EXISTS {self.name}")
            else:
                for suffix in ("", "-wal", "-shm"):
                    Path(f"{self.path}{suffix}").unlink(missing_ok=True)
        except subprocess.CalledProcessError as error:
            log(f"dropping {self.name}: {error.stderr}")


# --------------------------------------------------------------------------
# Seeding the large data sets directly in the database: 100,000 events on
# one account and 100,000 opened accounts, in the rows the service itself
# writes (see migrations/ and src/store/), a snapshot every 50 events as the
# engine would have written them.


def deposit_payload(balance: int) -> str:
    return json.dumps(
        {"type": "MoneyDeposited", "amountDeposited": 1, "balance": balance}, separators=(",", ":")
    )


def seed_sql(store: Store, big_opened_at_ms: int) -> None:
    big, owner = account_id(BIG), OWNER
    now = big_opened_at_ms
    if store.kind == "postgres":
        psql(
            store.name,
            f"""
BEGIN;
INSERT INTO events (position, account_id, sequence_number, transaction_id, event_type, payload, recorded_at_ms)
SELECT p.last + g - 1, '{big}', g, md5('big' || g)::uuid, 'MoneyDeposited',
       jsonb_build_object('type', 'MoneyDeposited', 'amountDeposited', 1, 'balance', g - 1), {now} + g
FROM event_positions p, generate_series(2, {BIG_EVENTS}) g;
INSERT INTO applied_transactions (account_id, transaction_id, fingerprint)
SELECT '{big}', md5('big' || g)::uuid, 'deposit amount=1' FROM generate_series(2, {BIG_EVENTS}) g;
INSERT INTO snapshots (account_id, sequence_number, state, recorded_until_ms)
SELECT '{big}', g, jsonb_build_object('status', 'open', 'ownerId', '{owner}', 'balance', g - 1), {now} + g
FROM generate_series({SNAPSHOT_EVERY}, {BIG_EVENTS}, {SNAPSHOT_EVERY}) g;
UPDATE event_positions SET last = last + {BIG_EVENTS - 1};
INSERT INTO events (position, account_id, sequence_number, transaction_id, event_type, payload, recorded_at_ms)
SELECT p.last + g, ('00000000-0000-4000-8000-' || lpad(to_hex({MANY} + g - 1), 12, '0'))::uuid, 1,
       md5('many' || g)::uuid, 'AccountOpened',
       jsonb_build_object('type', 'AccountOpened', 'ownerId', '{owner}'), {now}
FROM event_positions p, generate_series(1, {MANY_ACCOUNTS}) g;
INSERT INTO applied_transactions (account_id, transaction_id, fingerprint)
SELECT ('00000000-0000-4000-8000-' || lpad(to_hex({MANY} + g - 1), 12, '0'))::uuid, md5('many' || g)::uuid,
       'open owner={owner}'
FROM generate_series(1, {MANY_ACCOUNTS}) g;
UPDATE event_positions SET last = last + {MANY_ACCOUNTS};
COMMIT;
ANALYZE;""",
        )
    elif store.kind == "mariadb":
        mysql(
            store.name,
            f"""
START TRANSACTION;
SET @base = (SELECT last FROM event_positions WHERE id = 1);
INSERT INTO events (position, account_id, sequence_number, transaction_id, event_type, payload, recorded_at_ms)
SELECT @base + seq - 1, '{big}', seq, UUID(), 'MoneyDeposited',
       JSON_OBJECT('type', 'MoneyDeposited', 'amountDeposited', 1, 'balance', seq - 1), {now} + seq
FROM seq_2_to_{BIG_EVENTS};
INSERT INTO applied_transactions (account_id, transaction_id, fingerprint)
SELECT account_id, transaction_id, 'deposit amount=1' FROM events
WHERE account_id = '{big}' AND sequence_number >= 2;
INSERT INTO snapshots (account_id, sequence_number, state, recorded_until_ms)
SELECT '{big}', seq, JSON_OBJECT('status', 'open', 'ownerId', '{owner}', 'balance', seq - 1), {now} + seq
FROM seq_{SNAPSHOT_EVERY}_to_{BIG_EVENTS}_step_{SNAPSHOT_EVERY};
SET @base = @base + {BIG_EVENTS - 1};
INSERT INTO events (position, account_id, sequence_number, transaction_id, event_type, payload, recorded_at_ms)
SELECT @base + seq, CONCAT('00000000-0000-4000-8000-', LOWER(LPAD(HEX({MANY} + seq - 1), 12, '0'))), 1,
       UUID(), 'AccountOpened', JSON_OBJECT('type', 'AccountOpened', 'ownerId', '{owner}'), {now}
FROM seq_1_to_{MANY_ACCOUNTS};
INSERT INTO applied_transactions (account_id, transaction_id, fingerprint)
SELECT account_id, transaction_id, 'open owner={owner}' FROM events
WHERE account_id >= '{account_id(MANY)}' AND sequence_number = 1;
UPDATE event_positions SET last = @base + {MANY_ACCOUNTS} WHERE id = 1;
COMMIT;
ANALYZE TABLE events, applied_transactions, snapshots;""",
        )
    elif store.kind == "sqlite":
        connection = sqlite3.connect(store.path)
        with connection:
            # SQLite has one writer: new positions are MAX(position) + 1 on.
            (base,) = connection.execute("SELECT COALESCE(MAX(position), 0) FROM events").fetchone()
            connection.executemany(
                "INSERT INTO events (position, account_id, sequence_number, transaction_id, event_type,"
                " payload, recorded_at_ms) VALUES (?, ?, ?, ?, 'MoneyDeposited', ?, ?)",
                (
                    (base + g - 1, big, g, f"00000000-0000-4000-9000-{g:012x}", deposit_payload(g - 1), now + g)
                    for g in range(2, BIG_EVENTS + 1)
                ),
            )
            connection.executemany(
                "INSERT INTO applied_transactions (account_id, transaction_id, fingerprint)"
                " VALUES (?, ?, 'deposit amount=1')",
                ((big, f"00000000-0000-4000-9000-{g:012x}") for g in range(2, BIG_EVENTS + 1)),
            )
            connection.executemany(
                "INSERT INTO snapshots (account_id, sequence_number, state, recorded_until_ms) VALUES (?, ?, ?, ?)",
                (
                    (
                        big,
                        g,
                        json.dumps({"status": "open", "ownerId": owner, "balance": g - 1}, separators=(",", ":")),
                        now + g,
                    )
                    for g in range(SNAPSHOT_EVERY, BIG_EVENTS + 1, SNAPSHOT_EVERY)
                ),
            )
            base += BIG_EVENTS - 1
            opened = json.dumps({"type": "AccountOpened", "ownerId": owner}, separators=(",", ":"))
            connection.executemany(
                "INSERT INTO events (position, account_id, sequence_number, transaction_id, event_type,"
                " payload, recorded_at_ms) VALUES (?, ?, 1, ?, 'AccountOpened', ?, ?)",
                (
                    (base + g, account_id(MANY + g - 1), f"00000000-0000-4000-a000-{g:012x}", opened, now)
                    for g in range(1, MANY_ACCOUNTS + 1)
                ),
            )
            connection.executemany(
                f"INSERT INTO applied_transactions (account_id, transaction_id, fingerprint) VALUES (?, ?, 'open owner={owner}')",
                ((account_id(MANY + g - 1), f"00000000-0000-4000-a000-{g:012x}") for g in range(1, MANY_ACCOUNTS + 1)),
            )
        connection.execute("ANALYZE")
        connection.close()
    else:
        raise ValueError(store.kind)


# --------------------------------------------------------------------------
# The runs


def scale_accounts_memory(runner: Runner, service: Service) -> None:
    """The memory store cannot be seeded behind the service's back: the
    same rows through the API, with wrk (stopped after the count)."""
    runner.wrk(service, "deposit", first=BIG, accounts=1, connections=1, limit=BIG_EVENTS - 1, duration=SEED_SECONDS)
    runner.wrk(service, "open", first=MANY, accounts=MANY_ACCOUNTS, limit=MANY_ACCOUNTS, duration=SEED_SECONDS)
    for number, count in ((BIG, BIG_EVENTS), (MANY + MANY_ACCOUNTS - 1, 1)):
        status, body = http("GET", f"{service.base}/api/account/{account_id(number)}/events?from={count}&limit=1")
        if status != 200 or b"sequenceNumber" not in body:
            raise RuntimeError(f"seeding through the API did not finish within {SEED_SECONDS} s")


def deposits_with_reader(
    runner: Runner, service: Service, binary: Path, cores: Cores, workdir: Path, pids: list[int]
) -> dict:
    """The deposit load again, with a feed reader started before it (at the
    head, so that it tails rather than replays) and stopped after it has
    received everything the load wrote, or after 30 s."""
    _, head = feed_after(service)
    slow = "accounts_feed_stream_slow_disconnects_total"
    disconnects_before = metric(service, slow)
    reader = FeedReader(binary, service, head, cores, workdir)
    try:
        result = runner.wrk(service, "deposit", database_pids=pids)
        load_ended = time.monotonic()
        written, until = feed_after(service, head)
        lag = reader.catch_up(until, load_ended)
    finally:
        reader.stop()
    result.update(
        feed_written=written,
        feed_received=reader.count,
        feed_lag_s=lag,
        feed_disconnects=int(metric(service, slow) - disconnects_before),
    )
    if lag is None or reader.count != written:
        log(f"  the feed reader received {reader.count:,} of {written:,} events (caught up: {lag is not None})")
    return result


def measure_store(kind: str, binary: Path, runner: Runner, cores: Cores, workdir: Path) -> dict:
    results: dict = {}
    # The main figures, on a fresh database with the 64 accounts (each
    # funded for the transfers) and the hot account.
    store = Store(kind, workdir, "main")
    try:
        service = Service(binary, store.url(), cores, workdir)
        try:
            store.after_migration()
            open_accounts(service, 0, ACCOUNTS, deposit=INITIAL_BALANCE)
            open_accounts(service, HOT, 1)
            # Warm up: the pool's connections open, the code paths page in.
            runner.wrk(service, "deposit", duration=1)
            pids = store.backend_pids()
            log(f"{kind}: /ping")
            results["ping"] = runner.wrk(service, "ping")
            log(f"{kind}: deposits over {ACCOUNTS} accounts")
            results["deposit"] = runner.wrk(service, "deposit", database_pids=pids)
            log(f"{kind}: deposits over {ACCOUNTS} accounts, a reader tailing the feed (SSE)")
            results["deposit_feed"] = deposits_with_reader(runner, service, binary, cores, workdir, pids)
            # Without a reader again: the ratio is against the mean of the
            # runs on either side, so that a drift of the machine (or the
            # database warming up) over the three runs does not pass for the
            # feed's cost.
            log(f"{kind}: deposits over {ACCOUNTS} accounts, no reader again")
            results["deposit_again"] = runner.wrk(service, "deposit", database_pids=pids)
            log(f"{kind}: deposits to one hot account ({HOT_CLIENTS} clients)")
            results["hot"] = runner.wrk(
                service, "deposit", first=HOT, accounts=1, connections=HOT_CLIENTS, database_pids=pids
            )
            log(f"{kind}: GET state over {ACCOUNTS} accounts")
            results["state"] = runner.wrk(service, "state", database_pids=pids)
            log(f"{kind}: transfers over {ACCOUNTS} accounts")
            results["transfer"] = runner.wrk(service, "transfer", database_pids=pids)
        finally:
            service.stop()
        if kind == "postgres":
            # The ceilings, on the same data at the same concurrency, with
            # the service stopped: the read first, before the append adds
            # events that no snapshot covers.
            log("postgres: pgbench bare read")
            results["pgbench_read"] = runner.pgbench(store.name, BENCH / "pg_read.sql", CONNECTIONS)
            log("postgres: pgbench bare append")
            results["pgbench_append"] = runner.pgbench(store.name, BENCH / "pg_append.sql", CONNECTIONS)
    finally:
        store.drop()

    # Cost against the size of the data: an account with 100,000 events vs
    # one with 10, and 100,000 accounts vs 64, on a fresh database seeded
    # before a fresh service starts.
    store = Store(kind, workdir, "scale")
    try:
        service = Service(binary, store.url(), cores, workdir)
        try:
            store.after_migration()
            open_accounts(service, BIG, 1)
            open_accounts(service, SMALL, 1)
            for n in range(SMALL_EVENTS - 1):
                deposit_once(service, SMALL, 1, f"7ffffffe-0000-4000-8000-{n:012x}")
            log(f"{kind}: seeding {BIG_EVENTS:,} events on one account and {MANY_ACCOUNTS:,} accounts")
            seeding = time.monotonic()
            if kind == "memory":
                scale_accounts_memory(runner, service)
            else:
                service.stop()
                seed_sql(store, int(time.time() * 1000))
                service = Service(binary, store.url(), cores, workdir)
            log(f"{kind}: seeded in {time.monotonic() - seeding:.1f} s")
            pids = store.backend_pids()
            for name, number in (("big", BIG), ("small", SMALL)):
                log(f"{kind}: GET and deposit latency, account with {'100,000' if name == 'big' else '10'} events")
                results[f"{name}_state"] = runner.wrk(
                    service, "state", first=number, accounts=1, connections=1, limit=LATENCY_REQUESTS
                )
            for name, number in (("big", BIG), ("small", SMALL)):
                results[f"{name}_deposit"] = runner.wrk(
                    service, "deposit", first=number, accounts=1, connections=1, limit=LATENCY_REQUESTS
                )
            log(f"{kind}: deposits over {MANY_ACCOUNTS:,} accounts")
            results["many_deposit"] = runner.wrk(
                service, "deposit", first=MANY, accounts=MANY_ACCOUNTS, database_pids=pids
            )
        finally:
            service.stop()
    finally:
        store.drop()
    return results


# --------------------------------------------------------------------------
# The report


def ratio(value: float, ceiling: float | None) -> str:
    return f"{value / ceiling:.2f}×" if ceiling else "–"


def per_second(value: float) -> str:
    return f"{value:,.0f}/s"


def ms(microseconds: float) -> str:
    return f"{microseconds / 1000:.2f} ms"


def machine() -> dict:
    model = ""
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break

    def version(command: list[str]) -> str:
        try:
            return subprocess.run(command, capture_output=True, text=True, check=True).stdout.strip().splitlines()[0]
        except (OSError, subprocess.CalledProcessError, IndexError):
            return "?"

    commit = version(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"])
    # BENCHMARKS.md itself is rewritten by these runs: not a change to what is measured.
    dirty = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "--untracked-files=no", "--", ".",
                            ":!BENCHMARKS.md"],
                           capture_output=True, text=True).stdout.strip()
    return {
        "cores": os.cpu_count(),
        "cpu": model,
        "kernel": platform.release(),
        "commit": commit + (" (with uncommitted changes)" if dirty else ""),
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "postgres": version(["psql", "-X", "-At", f"{PG_SERVER}/postgres", "-c", "SHOW server_version"]),
        "mariadb": version(["mysql", "-h127.0.0.1", "-uroot", "-N", "-B", "-e", "SELECT VERSION()"]),
        "wrk": version(["sh", "-c", "wrk -v 2>&1 | head -n1"]),
    }


def render(results: dict, info: dict, args: argparse.Namespace, load: tuple) -> str:
    lines = [
        f"Measured {info['date']} on commit {info['commit']}: {info['cores']} cores ({info['cpu']}), "
        f"Linux {info['kernel']}, PostgreSQL {info['postgres']}, MariaDB {info['mariadb']}, {info['wrk']}.",
        f"Load average before the run {load[0][0]:.2f} / {load[0][1]:.2f} / {load[0][2]:.2f}, after it "
        f"{load[1][0]:.2f} / {load[1][1]:.2f} / {load[1][2]:.2f} (1/5/15 min; anything above ~0.1 is other "
        "work on the machine, and the figures are that much noisier).",
        f"`{args.command_line}`: {args.duration:g} s per figure, wrk with {CONNECTIONS} connections "
        f"(hot account: {HOT_CLIENTS}) on {ACCOUNTS} pre-opened accounts, "
        + ("the service pinned to one core and the load to another"
           if args.cores.separate else "one core only: service and load share it")
        + (f"; instances run with {' '.join(Service.extra_args)} {' '.join(f'{k}={v}' for k, v in Service.extra_env.items())}"
           if Service.extra_args or Service.extra_env else "; instances run with their default settings")
        + (f"; service and load at niceness {Cores.niceness}" if Cores.niceness else "")
        + "; the database servers are not pinned. Service CPU is the service process's user+system time "
        "per answer; database CPU is that of the PostgreSQL backends serving the service.",
        "",
        "| store | workload | requests/s | p50 | p99 | non-2xx | service CPU/answer | ceiling | ratio |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    names = {
        "ping": "`/ping`",
        "deposit": f"deposits over {ACCOUNTS} accounts",
        "deposit_feed": f"deposits over {ACCOUNTS} accounts, a reader tailing the feed (SSE)",
        "hot": f"deposits to one hot account ({HOT_CLIENTS} clients)",
        "state": f"GET state over {ACCOUNTS} accounts",
        "transfer": f"transfers over {ACCOUNTS} accounts",
    }
    for kind, figures in results.items():
        ping = figures.get("ping", {}).get("rate")
        append = figures.get("pgbench_append", {}).get("rate")
        read = figures.get("pgbench_read", {}).get("rate")
        for key, name in names.items():
            figure = figures.get(key)
            if not figure:
                continue
            if key == "ping":
                ceiling, ceiling_name = None, "–"
            elif key == "deposit_feed":
                # The feed's cost on the write path: with ÷ without a reader.
                without = [figures[k]["rate"] for k in ("deposit", "deposit_again") if k in figures]
                ceiling = sum(without) / len(without) if without else None
                ceiling_name = "the same without a reader (" + " and ".join(per_second(r) for r in without) + ")"
            elif kind == "postgres" and append:
                ceiling = read if key == "state" else append
                ceiling_name = "pgbench bare read" if key == "state" else "pgbench bare append"
            else:
                ceiling, ceiling_name = ping, "`/ping`"
            rate = figure["ok_rate"] if key == "hot" else figure["rate"]
            rate_text = per_second(figure["rate"])
            if key == "hot":
                rate_text = f"{per_second(figure['rate'])} ({per_second(figure['ok_rate'])} succeed)"
            non_2xx = figure["answered"] - figure["ok"]
            non_2xx_text = f"{non_2xx:,}"
            if figure["statuses"].get(409):
                non_2xx_text += f" ({figure['share_409']:.0%} are 409)"
            lines.append(
                f"| {kind} | {name} | {rate_text} | {ms(figure['p50_us'])} | {ms(figure['p99_us'])} | "
                f"{non_2xx_text} | {figure['service_cpu_us']:.0f} µs | {ceiling_name} | {ratio(rate, ceiling)} |"
            )
        for key, name in (("pgbench_append", "pgbench bare append"), ("pgbench_read", "pgbench bare read")):
            figure = figures.get(key)
            if figure:
                lines.append(
                    f"| {kind} | {name} ({figure['clients']} clients; failed: {figure['failed']}) | "
                    f"{per_second(figure['rate'])} | mean {ms(figure['mean_us'])} | | | | | |"
                )
    lines += [
        "",
        "Ratios: memory, SQLite and MariaDB ÷ `/ping` of the same server; PostgreSQL ÷ pgbench running "
        "the bare loop on the same schema and data at the same concurrency (`bench/pg_append.sql`: read "
        "the head, take a feed position, insert the event and its idempotency record, one transaction; "
        "`bench/pg_read.sql`: the latest snapshot and the events after it). The hot account's ratio counts "
        "successful deposits only; a transfer writes two events but is counted once.",
        "",
        "The feed's cost on the write path: the deposit load again, right after the one without, with "
        "one consumer following `GET /api/events/stream` (`accounts feed URL`, the service's own client, "
        "on the load generator's core, its lines counted and dropped) from before the load starts until "
        "it has received every event the load wrote, then once more without it; its ratio is deposits/s "
        "with ÷ the mean of the two runs without (both shown: their spread is the noise).",
    ]
    for kind, figures in results.items():
        figure = figures.get("deposit_feed")
        if figure:
            lag = figure["feed_lag_s"]
            lines.append(
                f"- {kind}: the reader received {figure['feed_received']:,} of the {figure['feed_written']:,} "
                "events written, "
                + (f"the last {lag * 1000:,.0f} ms after the load ended" if lag is not None
                   else "**and had not caught up 30 s after the load ended**")
                + f"; disconnected as too slow {figure['feed_disconnects']} times (it resumes where it stopped)."
            )
    lines += [
        "",
        "### Cost against the size of the data",
        "",
        f"One client, {LATENCY_REQUESTS:,} requests each (or {args.duration:g} s, whichever ends first), on an account with {BIG_EVENTS:,} events and on "
        f"one with {SMALL_EVENTS} (seeded directly in the database, a snapshot every {SNAPSHOT_EVERY} events "
        "as the service writes them; through the API on the memory store); deposits with "
        f"{CONNECTIONS} connections spread over {MANY_ACCOUNTS:,} accounts against the {ACCOUNTS}-account "
        "figure above. Targets (issue 10): within 2× and within 20%.",
        "",
        f"| store | GET p50, {BIG_EVENTS:,} events vs {SMALL_EVENTS} | ratio | deposit p50, {BIG_EVENTS:,} vs "
        f"{SMALL_EVENTS} | ratio | deposits/s, {MANY_ACCOUNTS:,} accounts vs {ACCOUNTS} | ratio |",
        "|---|---|---|---|---|---|---|",
    ]
    for kind, figures in results.items():
        if "big_state" not in figures:
            continue
        big_state, small_state = figures["big_state"], figures["small_state"]
        big_deposit, small_deposit = figures["big_deposit"], figures["small_deposit"]
        many, few = figures["many_deposit"], figures.get("deposit")
        lines.append(
            f"| {kind} | {ms(big_state['p50_us'])} vs {ms(small_state['p50_us'])} | "
            f"{ratio(big_state['p50_us'], small_state['p50_us'])} | "
            f"{ms(big_deposit['p50_us'])} vs {ms(small_deposit['p50_us'])} | "
            f"{ratio(big_deposit['p50_us'], small_deposit['p50_us'])} | "
            f"{per_second(many['rate'])} vs {per_second(few['rate']) if few else '–'} | "
            f"{ratio(many['rate'], few['rate'] if few else None)} |"
        )
    lines += [
        "",
        "### Memory",
        "",
        "| store | service peak RSS (VmHWM) after the deposit load | of which now heap and stacks / mapped files (the binary) | peak at the end of the main runs |",
        "|---|---|---|---|",
    ]
    for kind, figures in results.items():
        deposit = figures.get("deposit")
        if deposit:
            end = max(figures[k]["service_hwm_kib"] for k in ("ping", "deposit", "deposit_feed", "hot", "state", "transfer") if k in figures)
            lines.append(
                f"| {kind} | {deposit['service_hwm_kib'] / 1024:.1f} MiB | {deposit['service_anon_kib'] / 1024:.1f} / "
                f"{deposit['service_file_kib'] / 1024:.1f} MiB | {end / 1024:.1f} MiB |"
            )
    db = results.get("postgres", {}).get("deposit", {}).get("database_cpu_us")
    if db is not None:
        lines += [
            "",
            f"PostgreSQL deposits: {results['postgres']['deposit']['service_cpu_us']:.0f} µs of service CPU and "
            f"{db:.0f} µs of backend CPU per deposit.",
        ]
    return "\n".join(lines) + "\n"


def write_section(section: str, body: str) -> None:
    """Replaces one generated section of BENCHMARKS.md, keeping the rest."""
    begin, end = BEGIN_MARK.format(section=section), END_MARK.format(section=section)
    text = REPORT.read_text() if REPORT.exists() else "# Benchmarks\n"
    block = f"{begin}\n{body}{end}"
    if begin in text and end in text:
        head, rest = text.split(begin, 1)
        tail = rest.split(end, 1)[1]
        text = head + block + tail
    else:
        text = text.rstrip("\n") + f"\n\n{block}\n"
    REPORT.write_text(text)


# --------------------------------------------------------------------------
# --profile: where the time of a deposit goes on PostgreSQL


class PrivateCluster:
    """A throw-away PostgreSQL cluster on a free loopback port, with
    pg_stat_statements loaded (which the shared server cannot load without a
    restart) and WAL timing on; otherwise the shared server's settings that
    matter here: TLS on (the service and pgbench negotiate it), autovacuum off."""

    def __init__(self) -> None:
        bindir = sorted(Path("/usr/lib/postgresql").glob("*/bin"))
        if not bindir or shutil.which("runuser") is None:
            raise RuntimeError("no PostgreSQL server binaries in /usr/lib/postgresql/*/bin")
        self.bin = bindir[-1]
        self.dir = Path(tempfile.mkdtemp(prefix="accounts-profile-pg-"))
        shutil.chown(self.dir, "postgres", "postgres")
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        as_postgres = ["runuser", "-u", "postgres", "--"]
        subprocess.run(
            [*as_postgres, str(self.bin / "initdb"), "-D", str(self.dir / "data"), "-A", "trust", "-U", "postgres", "--no-sync"],
            check=True,
            capture_output=True,
        )
        options = " ".join(
            f"-c {setting}"
            for setting in (
                f"port={self.port}",
                "listen_addresses=127.0.0.1",
                f"unix_socket_directories={self.dir}",
                "shared_preload_libraries=pg_stat_statements",
                "pg_stat_statements.track=all",
                "track_io_timing=on",
                "track_wal_io_timing=on",
                "autovacuum=off",
                "ssl=on",
                "ssl_cert_file=/etc/ssl/certs/ssl-cert-snakeoil.pem",
                "ssl_key_file=/etc/ssl/private/ssl-cert-snakeoil.key",
            )
        )
        subprocess.run(
            [*as_postgres, str(self.bin / "pg_ctl"), "-D", str(self.dir / "data"), "-o", options,
             "-l", str(self.dir / "log"), "-w", "start"],
            check=True,
            capture_output=True,
        )
        self.server = f"postgres://postgres@127.0.0.1:{self.port}"

    def stop(self) -> None:
        subprocess.run(
            ["runuser", "-u", "postgres", "--", str(self.bin / "pg_ctl"), "-D", str(self.dir / "data"), "-m", "fast", "-w", "stop"],
            capture_output=True,
        )
        shutil.rmtree(self.dir, ignore_errors=True)


def pool_sampler(service: Service, stop: threading.Event, samples: list) -> None:
    """The pool gauges of /metrics, four times a second."""
    while not stop.wait(0.25):
        try:
            text = service.metrics()
        except OSError:
            continue
        gauges = dict(re.findall(r'accounts_db_pool_connections\{state="(\w+)"\} (\d+)', text))
        if gauges:
            samples.append((int(gauges.get("in_use", 0)), int(gauges.get("idle", 0))))


def pool_acquire_totals(service: Service) -> tuple[float, float]:
    """`accounts_db_pool_acquire_seconds`: the seconds store calls waited for
    a connection and how many acquisitions, over every label."""
    text = service.metrics()
    total = lambda suffix: sum(float(v) for v in re.findall(
        rf"^accounts_db_pool_acquire_seconds_{suffix}(?:\{{[^}}]*\}})? (\S+)$", text, re.MULTILINE))
    return total("sum"), total("count")


# Where a sample's time goes: the first frame, from the leaf up, that matches.
CATEGORIES = (
    ("TLS to PostgreSQL (rustls, ring)", re.compile(r"rustls|ring::|ring_core|aes|gcm|chacha|sha2|GFp_")),
    ("PostgreSQL driver (sqlx)", re.compile(r"sqlx")),
    ("JSON (serde_json)", re.compile(r"serde_json|serde::")),
    ("HTTP (hyper, axum, tower)", re.compile(r"hyper|axum|tower|http::|httparse|matchit")),
    ("metrics and tracing", re.compile(r"prometheus|tracing")),
    ("the service's own code", re.compile(r"accounts::")),
    ("memory allocator and copies (malloc, free, memcpy)", re.compile(r"malloc|free|realloc|calloc|_int_|tcache|unlink_chunk|GlobalAlloc|__rust_alloc|__rust_dealloc|memcpy|memmove|memset")),
    ("async runtime (tokio)", re.compile(r"tokio|mio::|parking_lot|futures")),
)


def categorize(stack: list[str]) -> str:
    """`stack` leaf first. Kernel time is split off first: it is the
    network (loopback TCP) and the scheduler, whoever called it."""
    if stack and (stack[0].startswith("[k]") or "[kernel" in stack[0]):
        return "kernel (loopback TCP, scheduling, futex)"
    for frame in stack:
        for name, pattern in CATEGORIES:
            if pattern.search(frame):
                return name
    return "other"


def perf_profile(perf_data: Path, folded_path: Path) -> dict[str, float]:
    """Folded stacks (flamegraph input) and each category's share of the
    samples."""
    script = subprocess.run(
        ["perf", "script", "-i", str(perf_data), "-F", "comm,tid,ip,sym,dso"],
        capture_output=True,
        text=True,
        errors="replace",
    ).stdout
    folded: dict[str, int] = {}
    shares: dict[str, int] = {}
    total = 0

    def finish(comm: str, stack: list[str]) -> None:
        nonlocal total
        if not stack:
            return
        total += 1
        shares[categorize(stack)] = shares.get(categorize(stack), 0) + 1
        key = ";".join([comm, *reversed(stack)])
        folded[key] = folded.get(key, 0) + 1

    comm, stack = "", []
    for line in script.splitlines():
        if not line.strip():
            finish(comm, stack)
            comm, stack = "", []
        elif not line.startswith((" ", "\t")):
            comm = line.split()[0]
        else:
            parts = line.split(None, 1)
            if len(parts) < 2:
                continue
            symbol = parts[1]
            dso = re.search(r"\(([^)]*)\)\s*$", symbol)
            symbol = re.sub(r"\s*\([^)]*\)\s*$", "", symbol)
            symbol = re.sub(r"\+0x[0-9a-f]+$", "", symbol)
            if dso and "kernel" in dso.group(1):
                symbol = "[k] " + symbol
            stack.append(symbol.replace(";", ","))
    finish(comm, stack)
    folded_path.write_text("".join(f"{key} {count}\n" for key, count in sorted(folded.items())))
    return {name: count / total for name, count in sorted(shares.items(), key=lambda item: -item[1])} if total else {}


def rust_statement(name: str) -> str:
    """A statement as src/store/postgres.rs sends it (the constant `name`)."""
    source = (ROOT / "src" / "store" / "postgres.rs").read_text()
    match = re.search(rf'const {name}: &str = r?#?"(.*?)"#?;', source, re.S)
    return match.group(1) if match else ""


def profile(args: argparse.Namespace, binary: Path, cores: Cores, workdir: Path) -> str:
    global PG_SERVER
    log("profile: starting a private PostgreSQL cluster with pg_stat_statements")
    cluster = PrivateCluster()
    shared_server, PG_SERVER = PG_SERVER, cluster.server
    runner = Runner(cores, args.duration, workdir)
    out_dir = Path(args.profile_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    try:
        store = Store("postgres", workdir, "profile")
        service = Service(binary, store.url(), cores, workdir)
        try:
            store.after_migration()
            psql(store.name, "CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
            open_accounts(service, 0, ACCOUNTS)
            runner.wrk(service, "deposit", duration=2)
            pids = store.backend_pids()
            wal_columns = "wal_records, wal_fpi, wal_bytes, wal_write, wal_sync, wal_write_time, wal_sync_time"
            wal_before = [float(v) for v in psql("postgres", f"SELECT {wal_columns} FROM pg_stat_wal").strip().split("|")]
            commits_before = int(psql("postgres", f"SELECT xact_commit FROM pg_stat_database WHERE datname = '{store.name}'").strip())
            psql(store.name, "SELECT pg_stat_statements_reset()")
            samples: list = []
            acquire_before = pool_acquire_totals(service)
            stop = threading.Event()
            sampler = threading.Thread(target=pool_sampler, args=(service, stop, samples))
            sampler.start()
            log(f"profile: deposits over {ACCOUNTS} accounts for {args.duration:g} s")
            deposit = runner.wrk(service, "deposit", database_pids=pids)
            stop.set()
            sampler.join()
            acquire_after = pool_acquire_totals(service)
            wal_after = [float(v) for v in psql("postgres", f"SELECT {wal_columns} FROM pg_stat_wal").strip().split("|")]
            commits_after = int(psql("postgres", f"SELECT xact_commit FROM pg_stat_database WHERE datname = '{store.name}'").strip())
            statements = psql(
                store.name,
                "SELECT calls, total_exec_time, mean_exec_time, shared_blks_hit, shared_blks_read, shared_blks_dirtied, "
                "wal_records, regexp_replace(left(query, 90), '\\s+', ' ', 'g') FROM pg_stat_statements "
                "WHERE query NOT LIKE '%pg_stat%' ORDER BY total_exec_time DESC LIMIT 8",
            )
            explain = psql(
                store.name,
                "EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) " + rust_statement("LOAD")
                .replace("$1", f"'{account_id(1)}'::uuid").replace("$2", "NULL::uuid"),
            )
            # A second run under perf, so that the sampling's own cost
            # (DWARF stacks copied at every sample) does not distort the
            # figures above.
            perf_data = workdir / "perf.data"
            perf = None
            perf_error = ""
            if shutil.which("perf"):
                # The dist build keeps line tables but no frame pointers:
                # DWARF unwinding. cpu-clock, because virtual machines often
                # have no hardware cycle counter.
                perf = subprocess.Popen(
                    cores.pin("load", ["perf", "record", "-q", "-e", "cpu-clock", "-F", "997", "--call-graph", "dwarf,8192",
                                       "-p", str(service.pid), "-o", str(perf_data), "--", "sleep", str(max(1, round(args.duration - 1)))]),
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.PIPE,
                    text=True,
                )
                log(f"profile: the same load under perf")
                runner.wrk(service, "deposit")
                perf_error = perf.communicate()[1]
        finally:
            service.stop()
            store.drop()
    finally:
        PG_SERVER = shared_server
        cluster.stop()

    answered = deposit["answered"]
    shares: dict[str, float] = {}
    folded = out_dir / "deposit-postgres.folded"
    svg: Path | None = None
    if perf is not None and perf_data.exists():
        shares = perf_profile(perf_data, folded)
        svg = render_flamegraph(folded, flamegraph_path(args), answered, args.duration)
    wal = {name: after - before for name, before, after in zip(wal_columns.split(", "), wal_before, wal_after)}
    in_use = sum(sample[0] for sample in samples) / len(samples) if samples else 0.0
    pool_size = max((sum(sample) for sample in samples), default=0)
    rate = deposit["rate"]
    mean_latency_us = CONNECTIONS / rate * 1e6 if rate else 0.0
    hold_us = in_use / rate * 1e6 if rate else 0.0
    acquire_seconds = acquire_after[0] - acquire_before[0]
    acquisitions = acquire_after[1] - acquire_before[1]
    acquire_us = acquire_seconds * 1e6 / max(answered, 1)
    acquire_each_us = acquire_seconds * 1e6 / acquisitions if acquisitions else 0.0
    statement_rows = [row.split("|", 7) for row in statements.strip().splitlines()]
    statement_us = sum(float(row[1]) for row in statement_rows) * 1000 / max(answered, 1)
    flush_us = wal["wal_sync_time"] * 1000 / wal["wal_sync"] if wal["wal_sync"] else 0.0
    lines = [
        f"Deposits over {ACCOUNTS} accounts on PostgreSQL, {CONNECTIONS} wrk connections, {args.duration:g} s, "
        f"{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M UTC}, commit {machine()['commit']}, "
        f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f}. A private PostgreSQL cluster "
        "(same version, TLS on like the shared server, `pg_stat_statements` and WAL timing on), the "
        "service pinned to one core, wrk and perf to the other.",
        "",
        f"Throughput {rate:,.0f} deposits/s, p50 {ms(deposit['p50_us'])}, p99 {ms(deposit['p99_us'])}; by "
        f"Little's law each deposit spends {mean_latency_us:,.0f} µs in the service on average "
        f"({CONNECTIONS} in flight ÷ throughput).",
        "",
        "A deposit's time, on average (wall clock unless it says CPU):",
        "",
        "| where | µs per deposit | how it is measured |",
        "|---|---|---|",
        f"| in the service, end to end | {mean_latency_us:,.0f} | {CONNECTIONS} requests in flight ÷ throughput (Little's law) |",
        f"| … waiting for a pool connection | {acquire_us:,.0f} | `accounts_db_pool_acquire_seconds` (sum ÷ deposits: "
        f"{acquisitions / max(answered, 1):.2f} acquisitions per deposit, {acquire_each_us:,.0f} µs each; a batch's "
        "wait is shared by its members) |",
        f"| … in the service otherwise (HTTP, the committer's and the loader's queues, the service's core) | "
        f"{max(mean_latency_us - hold_us - acquire_us, 0):,.0f} | end to end minus the pool wait and the hold |",
        f"| … holding a pool connection | {hold_us:,.0f} | mean `accounts_db_pool_connections{{state=\"in_use\"}}` "
        f"({in_use:.1f} of {pool_size}, sampled from /metrics 4×/s) ÷ throughput |",
        f"| … … executing statements in PostgreSQL | {statement_us:,.0f} | `pg_stat_statements` total execution time ÷ "
        "deposits (includes waiting for the feed counter's row lock) |",
        f"| … … WAL flushes (fsync) | {wal['wal_sync_time'] * 1000 / max(answered, 1):,.0f} | `pg_stat_wal.wal_sync_time` ÷ deposits: "
        f"{wal['wal_sync'] / max(answered, 1):.2f} flushes per deposit, {flush_us:,.0f} µs each |",
        f"| service CPU | {deposit['service_cpu_us']:.0f} | the service process's user+system time ÷ deposits |",
        f"| PostgreSQL backend CPU | {deposit.get('database_cpu_us', 0):.0f} | the CPU time of the pool's backends ÷ deposits |",
        f"| transactions committed | {(commits_after - commits_before) / max(answered, 1):.2f} per deposit | "
        "`pg_stat_database.xact_commit` (reads included: each autocommit statement is one) |",
        f"| WAL written | {wal['wal_bytes'] / max(answered, 1):,.0f} bytes, {wal['wal_records'] / max(answered, 1):.1f} records | `pg_stat_wal` |",
        "",
        "Service CPU by component (perf in a second run of the same load, cpu-clock samples of the service "
        "process, each attributed to the first frame from the leaf up that belongs to a component; kernel "
        "samples to the kernel):",
        "",
        "| component | share | µs per deposit |",
        "|---|---|---|",
    ]
    for name, share in shares.items():
        lines.append(f"| {name} | {share:.0%} | {share * deposit['service_cpu_us']:.0f} |")
    if not shares:
        lines.append(f"| (perf recorded nothing: {perf_error.strip()[:200] or 'perf missing'}) | | |")
    lines += [
        "",
        "Database side (`pg_stat_statements`, execution time inside PostgreSQL):",
        "",
        "| calls | mean µs | total ms | shared blocks hit / read / dirtied | WAL records | statement |",
        "|---|---|---|---|---|---|",
    ]
    for calls, total, mean, hit, read, dirtied, wal_records, query in statement_rows:
        lines.append(
            f"| {int(calls):,} | {float(mean) * 1000:.0f} | {float(total):,.0f} | {hit} / {read} / {dirtied} | "
            f"{wal_records} | `{query.strip()}…` |"
        )
    lines += [
        "",
        "The load statement (`LOAD` of src/store/postgres.rs) on one of the accounts after the run:",
        "",
        "```",
        *explain.strip().splitlines(),
        "```",
        "",
        flamegraph_line(svg, folded),
    ]
    return "\n".join(lines) + "\n"


def flamegraph_tool() -> str | None:
    """inferno's renderer: on PATH, or where `cargo install inferno` (the
    `just profile` recipe) leaves it."""
    cargo_bin = Path(os.environ.get("CARGO_HOME", Path.home() / ".cargo")) / "bin"
    return shutil.which("inferno-flamegraph") or shutil.which("inferno-flamegraph", path=str(cargo_bin))


def flamegraph_path(args: argparse.Namespace) -> Path:
    """The committed SVG that BENCHMARKS.md links to, when the report is
    written; next to the folded stacks otherwise, so that a smoke run leaves
    the committed one alone."""
    if args.flamegraph and not (args.quick or args.no_report):
        return Path(args.flamegraph)
    return Path(args.profile_dir) / "deposit-postgres.svg"


def render_flamegraph(folded: Path, svg: Path, answered: int, duration: float) -> Path | None:
    tool = flamegraph_tool()
    if tool is None or not folded.exists():
        return None
    title = f"accounts: deposits on PostgreSQL, service CPU ({answered:,} deposits in {duration:g} s)"
    svg.parent.mkdir(parents=True, exist_ok=True)
    # Frames under half a pixel cannot be seen or clicked; leaving them out
    # halves the committed file (from ~1.3 MB at inferno's default of 0.1).
    command = [tool, "--title", title, "--minwidth", "0.5", str(folded)]
    with svg.open("w") as out:
        rendered = subprocess.run(command, stdout=out, stderr=subprocess.PIPE, text=True)
    if rendered.returncode != 0:
        log(f"profile: inferno-flamegraph failed: {rendered.stderr.strip()[:200]}")
        svg.unlink(missing_ok=True)
        return None
    log(f"profile: flamegraph in {svg}")
    return svg


def flamegraph_line(svg: Path | None, folded: Path) -> str:
    """The report's pointer to the flamegraph: a link relative to
    BENCHMARKS.md when the SVG is in the repository, else where it is."""
    if svg is None:
        return (f"Flamegraph input (folded stacks): `{folded}` (render it with `inferno-flamegraph`: "
                "`cargo install inferno`, or `just profile`, which installs it).")
    try:
        relative = svg.resolve().relative_to(REPORT.resolve().parent)
        return f"Flamegraph of the service's CPU under this load: [{relative}]({relative})."
    except ValueError:
        return f"Flamegraph of the service's CPU under this load: `{svg}` (folded stacks: `{folded}`)."


# --------------------------------------------------------------------------


def build(args: argparse.Namespace) -> Path:
    if args.binary:
        return Path(args.binary)
    # The profile that ships (Cargo.toml's [profile.dist]): the figures are
    # those of the binary users run, memory included.
    # RUSTFLAGS set empty replaces .cargo/config.toml's tokio_unstable, as the Dockerfile's build does.
    log("building the binary (profile dist)")
    subprocess.run(
        ["cargo", "build", "--profile", "dist", "--quiet", "--bin", "accounts"],
        cwd=ROOT,
        check=True,
        env={**os.environ, "RUSTFLAGS": ""},
    )
    metadata = subprocess.run(
        ["cargo", "metadata", "--format-version", "1", "--no-deps"], cwd=ROOT, capture_output=True, text=True, check=True
    )
    return Path(json.loads(metadata.stdout)["target_directory"]) / "dist" / "accounts"


def check_tools(stores: list[str]) -> None:
    needed = ["wrk", "taskset"]
    if "postgres" in stores:
        needed += ["psql", "pgbench"]
    if "mariadb" in stores:
        needed += ["mysql"]
    missing = [tool for tool in needed if shutil.which(tool) is None]
    if missing:
        sys.exit(f"missing: {', '.join(missing)} (Debian: apt-get install wrk util-linux postgresql-client mariadb-client)")


def main() -> None:
    # A run stopped with SIGTERM (e.g. by `timeout`) still stops its
    # instances and drops its databases: the `finally` blocks run.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per figure (default 10)")
    parser.add_argument("--quick", action="store_true", help="a smoke run: 2 s per figure, report not written")
    parser.add_argument("--stores", default=",".join(STORES), help="comma-separated, of: " + ", ".join(STORES))
    parser.add_argument("--binary", help="use this binary instead of building one (profile dist)")
    parser.add_argument("--no-report", action="store_true", help="print the tables, leave BENCHMARKS.md alone")
    parser.add_argument("--json", help="also write the raw figures to this file (after each store)")
    parser.add_argument("--from-json", help="start from the figures of an earlier --json run; the stores of "
                        "--stores (may be empty) are measured again and replace theirs")
    parser.add_argument("--profile", action="store_true",
                        help="profile the deposit path on PostgreSQL instead (perf, pg_stat_statements, the pool)")
    parser.add_argument("--profile-dir", default=str(ROOT / "target" / "bench-profile"),
                        help="where --profile leaves the perf output (folded stacks)")
    parser.add_argument("--flamegraph", default=str(ROOT / "bench" / "flamegraph-deposit-postgres.svg"),
                        help="where --profile renders the flamegraph SVG that BENCHMARKS.md links to (with --quick "
                        "or --no-report: next to the folded stacks instead)")
    parser.add_argument("--service-arg", action="append", default=[], metavar="FLAG",
                        help="pass this flag to every instance, e.g. --service-arg=--db-pool-size=5 (repeatable)")
    parser.add_argument("--service-env", action="append", default=[], metavar="NAME=VALUE",
                        help="set this in every instance's environment, e.g. MALLOC_ARENA_MAX=2 (repeatable)")
    parser.add_argument("--nice", type=int, default=0,
                        help="run the service and the load at this niceness, e.g. -5 on a busy shared machine (root)")
    args = parser.parse_args()
    Cores.niceness = args.nice
    Service.extra_args = list(args.service_arg)
    Service.extra_env = dict(item.split("=", 1) for item in args.service_env)
    args.command_line = "python3 bench/bench.py " + " ".join(sys.argv[1:])
    if args.quick:
        args.duration = 2.0
    stores = [store.strip() for store in args.stores.split(",") if store.strip()]
    unknown = [store for store in stores if store not in STORES]
    if unknown:
        parser.error(f"unknown stores {unknown}; known: {', '.join(STORES)}")
    check_tools(stores)
    binary = build(args) if stores else Path("/nonexistent")
    cores = Cores()
    args.cores = cores
    if args.profile:
        with tempfile.TemporaryDirectory(prefix="accounts-profile-") as workdir:
            report = profile(args, binary, cores, Path(workdir))
        print(report)
        if not (args.quick or args.no_report):
            write_section("profile", report)
            log(f"written to {REPORT}")
        return
    load_before = os.getloadavg()
    results: dict = {}
    if args.from_json:
        results = json.loads(Path(args.from_json).read_text())
        for figures in results.values():
            for figure in figures.values():
                if "statuses" in figure:
                    figure["statuses"] = {int(k): v for k, v in figure["statuses"].items()}
    with tempfile.TemporaryDirectory(prefix="accounts-bench-") as workdir:
        runner = Runner(cores, args.duration, Path(workdir))
        for kind in stores:
            results[kind] = measure_store(kind, binary, runner, cores, Path(workdir))
            if args.json:
                # After each store, so that an interrupted run keeps what it measured.
                Path(args.json).write_text(json.dumps(results, indent=1, default=str))
    load_after = os.getloadavg()
    report = render(results, machine(), args, (load_before, load_after))
    print(report)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1, default=str))
    if not (args.quick or args.no_report):
        write_section("figures", report)
        log(f"written to {REPORT}")


if __name__ == "__main__":
    main()
