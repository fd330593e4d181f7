#!/usr/bin/env python3
"""`just e2e-ha`: a Jepsen-style run through Envoy → two instances → HAProxy
→ Patroni, on the topology of deploy/ha/ha.py (brought up fresh, taken down
after).

Several clients send deposits, withdrawals and transfers, each with its own
transactionId; an answer that does not say what happened (503, 408, 409, a
timeout, a cut connection) is sent again under the same id until one does.
A feed reader follows GET /api/events/stream through Envoy, reconnecting with
Last-Event-ID. Meanwhile the faults hit in turn (each `--rounds` times, the
quorum loss once): kill -9 of the leader's postmaster; SIGSTOP of the
leader's processes for longer than Patroni's TTL, then SIGCONT; a planned
`patronictl switchover`; kill -9 of one etcd member, then of two (quorum
lost), restarted; kill -9 of one instance, restarted.

Then, against the current leader directly: every acknowledged operation is
stored exactly once, every ambiguous one at most once (a transfer whole or
not at all), every refused one not at all; the balances' sum is the funding
plus the stored deposits minus the stored withdrawals; the feed reader saw
every stored event exactly once, positions strictly increasing, each the
very event the store holds at that position; no answer was a 5xx other than
503. Per fault it prints how long writes were refused (first failed write to
the first success after it), how many operations went ambiguous, and the
throughput before and after. Exit status 1 on any violation.

`--async` is the counter-run (not in CI): asynchronous replication, the
leader's WAL senders frozen while it acknowledges writes, then the leader
killed so that a lagging standby is promoted; repeated `--tries`
times on a fresh cluster each, it reports how often acknowledged writes
were lost and the feed rewound — what the same checks catch.

Python standard library only: the clients need nothing but HTTP, and the
check reads the store with psql.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import ha  # noqa: E402

ACCOUNTS = 16
FUNDING = 100_000
DEFINITIVE = {204, 201, 400, 404, 422}
RETRY_SAME_ID = {408, 409, 429, 503}
OPERATION_DEADLINE = 120.0
SETTLE = 8.0  # seconds of steady load before and after each fault


@dataclass
class Operation:
    kind: str
    account: str
    target: str | None
    amount: int
    transaction: str
    answers: list = field(default_factory=list)  # (time, status or error)
    outcome: str = "pending"  # acked / refused / ambiguous


class Log:
    """Every write attempt in time order, shared by the clients."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.attempts: list[tuple[float, bool, Operation]] = []
        self.acks: list[float] = []
        self.bad_5xx: list[tuple[float, int, str]] = []
        self.operations: list[Operation] = []

    def attempt(self, op: Operation, ok: bool) -> None:
        with self.lock:
            self.attempts.append((time.monotonic(), ok, op))
            if ok and op.outcome == "acked":
                self.acks.append(time.monotonic())


def request(conn_box: list, base: tuple[str, int], method: str, target: str, timeout: float,
            headers: dict | None = None):  # fmt: skip
    """One request on the client's kept-alive connection: (status, body) or
    (None, error text) when no answer came."""
    try:
        if conn_box[0] is None:
            conn_box[0] = http.client.HTTPConnection(*base, timeout=timeout)
        conn = conn_box[0]
        conn.request(method, target, headers=headers or {})
        answer = conn.getresponse()
        body = answer.read()
        if answer.getheader("connection", "").lower() == "close":
            conn.close()
            conn_box[0] = None
        return answer.status, body
    except (OSError, http.client.HTTPException) as error:
        if conn_box[0] is not None:
            conn_box[0].close()
        conn_box[0] = None
        return None, f"{type(error).__name__}: {error}"


def operation_target(op: Operation) -> str:
    base = f"/api/account/{op.account}"
    if op.kind == "transfer":
        return f"{base}?transfer={op.target}&amount={op.amount}&transactionId={op.transaction}"
    return f"{base}?{op.kind}={op.amount}&transactionId={op.transaction}"


def perform(op: Operation, conn_box: list, base, log: Log, stop: threading.Event) -> None:
    started = time.monotonic()
    while True:
        status, body = request(conn_box, base, "PUT", operation_target(op), timeout=20)
        op.answers.append((time.monotonic(), status if status is not None else body))
        if status in DEFINITIVE:
            op.outcome = "acked" if status == 204 else "refused"
            log.attempt(op, True)
            return
        if status is not None and status >= 500 and status != 503:
            with log.lock:
                log.bad_5xx.append((time.monotonic(), status, body[:200].decode(errors="replace")))
        log.attempt(op, False)
        if time.monotonic() - started > OPERATION_DEADLINE or (stop.is_set() and len(op.answers) > 3):
            op.outcome = "ambiguous"
            return
        time.sleep(0.1)


def client(seed: int, accounts: list[str], base, log: Log, stop: threading.Event) -> None:
    rng = random.Random(seed)
    conn_box: list = [None]
    while not stop.is_set():
        kind = rng.choice(["deposit", "withdraw", "transfer", "transfer"])
        account = rng.choice(accounts)
        target = rng.choice([a for a in accounts if a != account]) if kind == "transfer" else None
        op = Operation(kind, account, target, rng.randint(1, 50), str(uuid.UUID(int=rng.getrandbits(128), version=4)))
        with log.lock:
            log.operations.append(op)
        perform(op, conn_box, base, log, stop)


class FeedReader(threading.Thread):
    """Follows the SSE stream through Envoy; reconnects with Last-Event-ID."""

    def __init__(self, base) -> None:
        super().__init__(daemon=True)
        self.base = base
        self.last = 0
        self.seen: dict[int, dict] = {}
        self.violations: list[str] = []
        self.reconnects = 0
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                self.follow()
            except (OSError, http.client.HTTPException, ValueError):
                pass
            self.reconnects += 1
            time.sleep(0.2)

    def follow(self) -> None:
        conn = http.client.HTTPConnection(*self.base, timeout=20)
        headers = {"Accept": "text/event-stream"}
        if self.last:
            headers["Last-Event-ID"] = str(self.last)
        conn.request("GET", "/api/events/stream", headers=headers)
        answer = conn.getresponse()
        if answer.status != 200:
            answer.read()
            conn.close()
            return
        event_id, kind, data = None, None, None
        while not self.stop.is_set():
            line = answer.fp.readline()
            if not line:
                break
            line = line.decode().rstrip("\n")
            if line.startswith("id:"):
                event_id = int(line[3:].strip())
            elif line.startswith("event:"):
                kind = line[6:].strip()
            elif line.startswith("data:"):
                data = json.loads(line[5:].strip())
            elif line == "" and kind == "rewind":
                # The service saw the event it sent at data["position"] change.
                self.violations.append(f"the service reported a rewind: {data}")
                event_id, kind, data = None, None, None
            elif line == "" and event_id is not None:
                self.take(event_id, data)
                event_id, kind, data = None, None, None
        conn.close()

    def take(self, position: int, data: dict) -> None:
        if position <= self.last:
            earlier = self.seen.get(position)
            same = earlier == data
            self.violations.append(
                f"position {position} after {self.last}: "
                + ("the same event again" if same else f"a different event ({earlier} then {data})")
            )
        else:
            self.seen[position] = data
        self.last = max(self.last, position)


# ------------------------------------------------------------------- faults


def topology() -> dict:
    return ha.topology()


def leader(t: dict) -> dict:
    leaders = [n for n in t["nodes"] if n["role"] == "leader"]
    if len(leaders) != 1:
        raise RuntimeError(f"no single leader: {[(n['name'], n['role']) for n in t['nodes']]}")
    return leaders[0]


def signal_node(node: dict, sig: int) -> None:
    """Every process of a node: Patroni's process group and the
    postmaster's (PostgreSQL runs in a session of its own)."""
    groups = {os.getpgid(pid) for pid in (node["patroni_pid"], node["postmaster_pid"]) if pid}
    for group in groups:
        os.killpg(group, sig)


def fault_postmaster_kill(t: dict) -> str:
    node = leader(t)
    os.kill(node["postmaster_pid"], signal.SIGKILL)
    return f"kill -9 postmaster of {node['name']}"


def fault_leader_sigstop(t: dict) -> str:
    node = leader(t)
    signal_node(node, signal.SIGSTOP)
    time.sleep(ha.TTL + 8)
    signal_node(node, signal.SIGCONT)
    return f"SIGSTOP {node['name']} {ha.TTL + 8} s, SIGCONT"


def fault_switchover(t: dict) -> str:
    node = leader(t)
    candidates = [n for n in t["nodes"] if n["role"] == "sync_standby"] or [
        n for n in t["nodes"] if n["role"] != "leader"
    ]
    candidate = candidates[0]
    subprocess.run(
        [str(ha.PATRONI_VENV / "bin" / "patronictl"), "-c", t["patronictl_config"], "switchover",
         "--leader", node["name"], "--candidate", candidate["name"], "--force"],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    return f"switchover {node['name']} → {candidate['name']}"


def kill_etcd(t: dict, count: int) -> str:
    members = t["etcd"][:count]
    for member in members:
        os.kill(member["pid"], signal.SIGKILL)
    time.sleep(12)
    for member in members:
        ha.restart(f"etcd-{member['name']}")
    return f"kill -9 etcd {', '.join(m['name'] for m in members)} for 12 s"


def fault_instance_kill(t: dict) -> str:
    instance = t["instances"][0]
    os.kill(instance["pid"], signal.SIGKILL)
    time.sleep(3)
    ha.restart(f"instance-{instance['name']}")
    return f"kill -9 instance {instance['name']}, restarted after 3 s"


FAULTS = {
    "postmaster-kill": fault_postmaster_kill,
    "leader-sigstop": fault_leader_sigstop,
    "switchover": fault_switchover,
    "etcd-one": lambda t: kill_etcd(t, 1),
    "etcd-two": lambda t: kill_etcd(t, 2),
    "instance-kill": fault_instance_kill,
}
UNPLANNED = {"leader-sigstop"}


def healthy() -> bool:
    t = topology()
    if not all(e["pid"] for e in t["etcd"]) or not all(i["pid"] for i in t["instances"]):
        return False
    return ha.cluster_ready()


def wait_recovered(log: Log, since: float) -> float:
    """The cluster whole again and a write acknowledged after `since`."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        with log.lock:
            acked = any(t > since for t in log.acks[-50:])
        try:
            if acked and healthy():
                return time.monotonic()
        except Exception:  # noqa: BLE001 — Patroni's API not answering yet
            pass
        time.sleep(0.25)
    raise RuntimeError("the cluster did not recover within 120 s")


def measure(log: Log, name: str, what: str, started: float, recovered: float) -> dict:
    """Writes refused: the longest stretch of the fault's window in which no
    write succeeded (from the last success before the first refusal to the
    first success after the last) — with several clients, one client's
    "first 503 to first success" says little about the others."""
    with log.lock:
        attempts = [a for a in log.attempts if a[0] >= started - 1]
        acks = list(log.acks)
    failed = [a for a in attempts if not a[1]]
    if failed:
        recovered = max(recovered, next((a[0] for a in attempts if a[1] and a[0] > failed[-1][0]), recovered))
    window = [started - 1] + [a[0] for a in attempts if a[1] and a[0] <= recovered + 1] + [recovered]
    refused = max((b - a for a, b in zip(window, window[1:])), default=0.0)
    retried = {id(a[2]) for a in failed if a[0] <= recovered}
    unsettled = sum(1 for op in {id(a[2]): a[2] for a in failed}.values() if op.outcome == "ambiguous")
    before = sum(1 for t in acks if started - SETTLE <= t < started) / SETTLE
    after = sum(1 for t in acks if recovered <= t < recovered + SETTLE) / SETTLE
    return {"fault": name, "what": what, "refused_s": round(refused, 1),
            "retried": len(retried), "failed_answers": len(failed), "unsettled": unsettled,
            "before_per_s": round(before, 1), "after_per_s": round(after, 1)}  # fmt: skip


# -------------------------------------------------------------------- check


def store_events(port: int) -> list[dict]:
    out = ha.psql(
        "SELECT json_build_object('position', position, 'account', account_id, "
        "'sequence', sequence_number, 'transaction', transaction_id, 'type', event_type, "
        "'payload', payload) FROM events ORDER BY position",
        port=port, database=ha.DATABASE,
    )  # fmt: skip
    return [json.loads(line) for line in out.splitlines() if line]


def check(log: Log, reader: FeedReader, accounts: list[str]) -> dict:
    t = topology()
    rows = store_events(leader(t)["postgres_port"])
    by_tx: dict[str, list[dict]] = {}
    for row in rows:
        by_tx.setdefault(row["transaction"], []).append(row)
    lost, duplicated, partial, refused_stored = [], [], [], []
    ambiguous_stored = ambiguous_absent = 0
    expected_sum = FUNDING * len(accounts)
    for op in log.operations:
        stored = by_tx.get(op.transaction, [])
        whole = 2 if op.kind == "transfer" else 1
        if len(stored) > whole:
            duplicated.append(op.transaction)
        elif 0 < len(stored) < whole:
            partial.append(op.transaction)
        if op.outcome == "acked" and not stored:
            lost.append(op.transaction)
        if op.outcome == "refused" and stored:
            refused_stored.append(op.transaction)
        if op.outcome == "ambiguous":
            ambiguous_stored += bool(stored)
            ambiguous_absent += not stored
        if stored and op.kind != "transfer":
            expected_sum += op.amount if op.kind == "deposit" else -op.amount
    balance_sum = sum(account_balance(t, a) for a in accounts)
    feed = check_feed(reader, rows)
    return {
        "operations": len(log.operations),
        "acked": sum(op.outcome == "acked" for op in log.operations),
        "ambiguous_stored": ambiguous_stored, "ambiguous_absent": ambiguous_absent,
        "lost": lost, "duplicated": duplicated, "partial": partial,
        "refused_stored": refused_stored,
        "balance_sum": balance_sum, "expected_sum": expected_sum,
        "bad_5xx": log.bad_5xx[:10], "bad_5xx_count": len(log.bad_5xx),
        **feed,
    }  # fmt: skip


def account_balance(t: dict, account: str) -> int:
    conn_box: list = [None]
    host, port = t["envoy_url"].removeprefix("http://").split(":")
    for _ in range(100):
        status, body = request(conn_box, (host, int(port)), "GET", f"/api/account/{account}", 10)
        if status == 200:
            return json.loads(body)["balance"]
        time.sleep(0.2)
    raise RuntimeError(f"no balance for {account}")


def check_feed(reader: FeedReader, rows: list[dict]) -> dict:
    stored = {row["position"]: row for row in rows}
    missed = sorted(set(stored) - set(reader.seen))
    phantom = sorted(set(reader.seen) - set(stored))
    different = []
    for position, event in reader.seen.items():
        row = stored.get(position)
        if row is None:
            continue
        if (event["accountId"], event["sequenceNumber"], event["transactionId"], event["type"]) != (
            row["account"], row["sequence"], row["transaction"], row["type"]
        ):
            different.append(position)
    return {"feed_seen": len(reader.seen), "feed_missed": missed[:20], "feed_missed_count": len(missed),
            "feed_phantom": phantom[:20], "feed_phantom_count": len(phantom),
            "feed_different": different[:20], "feed_rewinds": reader.violations[:10],
            "feed_reconnects": reader.reconnects}  # fmt: skip


def violations(result: dict) -> list[str]:
    found = []
    for key in ("lost", "duplicated", "partial", "refused_stored", "feed_different", "feed_rewinds"):
        if result[key]:
            found.append(f"{key}: {len(result[key])} (e.g. {result[key][:3]})")
    for key in ("feed_missed_count", "feed_phantom_count", "bad_5xx_count"):
        if result[key]:
            found.append(f"{key}: {result[key]}")
    if result["balance_sum"] != result["expected_sum"]:
        found.append(f"money: balances sum to {result['balance_sum']}, expected {result['expected_sum']}")
    return found


# --------------------------------------------------------------------- runs


def open_accounts(base, rng: random.Random) -> list[str]:
    accounts = [str(uuid.UUID(int=rng.getrandbits(128), version=4)) for _ in range(ACCOUNTS)]
    conn_box: list = [None]
    for account in accounts:
        owner = str(uuid.UUID(int=rng.getrandbits(128), version=4))
        for target in (f"/api/account/{account}?owner={owner}",):
            until_definitive(conn_box, base, "POST", target)
        tx = str(uuid.UUID(int=rng.getrandbits(128), version=4))
        until_definitive(conn_box, base, "PUT", f"/api/account/{account}?deposit={FUNDING}&transactionId={tx}")
    return accounts


def until_definitive(conn_box, base, method, target) -> None:
    for _ in range(300):
        status, body = request(conn_box, base, method, target, 10)
        if status in (201, 204):
            return
        if status == 409 and method == "POST":
            return  # opened by an earlier attempt whose answer was lost
        time.sleep(0.2)
    raise RuntimeError(f"{method} {target} never succeeded")


def start_load(seed: int, clients: int):
    t = topology()
    host, port = t["envoy_url"].removeprefix("http://").split(":")
    base = (host, int(port))
    rng = random.Random(seed)
    accounts = open_accounts(base, rng)
    log, stop = Log(), threading.Event()
    reader = FeedReader(base)
    reader.start()
    threads = [threading.Thread(target=client, args=(seed * 100 + i, accounts, base, log, stop), daemon=True)
               for i in range(clients)]  # fmt: skip
    for thread in threads:
        thread.start()
    return accounts, log, stop, reader, threads


def stop_load(log: Log, stop: threading.Event, reader: FeedReader, threads) -> None:
    stop.set()
    for thread in threads:
        thread.join(timeout=OPERATION_DEADLINE + 30)
    # The reader catches up with every stored event (or the check says what it missed).
    t = topology()
    final = int(ha.psql("SELECT coalesce(max(position), 0) FROM events",
                        port=leader(t)["postgres_port"], database=ha.DATABASE))  # fmt: skip
    deadline = time.monotonic() + 30
    while reader.last < final and time.monotonic() < deadline:
        time.sleep(0.2)
    reader.stop.set()


def schedule(rounds: int) -> list[str]:
    order = ["postmaster-kill", "leader-sigstop", "switchover", "etcd-one", "instance-kill"]
    plan = []
    for round_ in range(rounds):
        plan.extend(order)
        if round_ == 0:
            plan.append("etcd-two")
    return plan


def run_sync(args) -> int:
    ha.down()
    ha.up(asynchronous=False)
    started = time.monotonic()
    accounts, log, stop, reader, threads = start_load(args.seed, args.clients)
    time.sleep(SETTLE)
    figures = []
    plan = [n for n in schedule(args.rounds) if not args.only or n in args.only.split(",")]
    for name in plan:
        fault_start = time.monotonic()
        what = FAULTS[name](topology())
        recovered = wait_recovered(log, time.monotonic())
        time.sleep(SETTLE)
        figures.append(measure(log, name, what, fault_start, recovered))
        print(f"  {figures[-1]}", flush=True)
    stop_load(log, stop, reader, threads)
    result = check(log, reader, accounts)
    result["figures"] = figures
    result["seconds"] = round(time.monotonic() - started)
    report(result, args.out)
    found = violations(result)
    for line in found:
        print(f"VIOLATION {line}")
    if not args.keep:
        ha.down()
    return 1 if found else 0


def report(result: dict, out: str | None) -> None:
    print("\n| fault | what | writes refused (s) | operations retried | failed answers | writes/s before | after |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for f in result["figures"]:
        print(f"| {f['fault']} | {f['what']} | {f['refused_s']} | {f['retried']} | "
              f"{f['failed_answers']} | {f['before_per_s']} | {f['after_per_s']} |")  # fmt: skip
    summary = {k: v for k, v in result.items() if k != "figures"}
    print("\n" + json.dumps(summary, indent=1))
    if out:
        Path(out).write_text(json.dumps(result, indent=2))


def async_try(args, index: int) -> dict:
    """One counter-run try: freeze the leader's WAL senders, let the leader
    acknowledge writes alone, kill it: a lagging standby is promoted."""
    ha.down()
    ha.up(asynchronous=True)
    accounts, log, stop, reader, threads = start_load(args.seed + index, args.clients)
    time.sleep(SETTLE)
    t = topology()
    old = leader(t)
    # Freeze the leader's WAL senders: the standbys stop receiving while the
    # leader goes on acknowledging (freezing the standbys would not do: the
    # WAL already in their sockets' buffers reaches them on SIGCONT).
    senders = ha.psql("SELECT pid FROM pg_stat_replication", port=old["postgres_port"]).split()
    for pid in senders:
        os.kill(int(pid), signal.SIGSTOP)
    time.sleep(3)
    signal_node(old, signal.SIGKILL)
    for pid in senders:
        try:
            os.kill(int(pid), signal.SIGKILL)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if any(n["role"] == "leader" and n["name"] != old["name"] for n in topology()["nodes"]):
                break
        except Exception:  # noqa: BLE001
            pass
        time.sleep(0.5)
    time.sleep(SETTLE)
    stop_load(log, stop, reader, threads)
    result = check(log, reader, accounts)
    result["figures"] = []
    ha.down()
    return result


def run_async(args) -> int:
    results = []
    for index in range(args.tries):
        result = async_try(args, index)
        found = violations(result)
        results.append({"lost": len(result["lost"]), "feed_phantom": result["feed_phantom_count"],
                         "feed_rewinds": len(result["feed_rewinds"]), "violations": found})  # fmt: skip
        print(f"try {index + 1}: {results[-1]}", flush=True)
    caught = sum(bool(r["violations"]) for r in results)
    print(f"\nasynchronous counter-run: loss or rewind detected in {caught} of {len(results)} tries")
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=2))
    return 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--async", dest="asynchronous", action="store_true")
    parser.add_argument("--rounds", type=int, default=2, help="times each fault hits")
    parser.add_argument("--tries", type=int, default=3, help="counter-run tries (--async)")
    parser.add_argument("--clients", type=int, default=6)
    parser.add_argument("--seed", type=int, default=23)
    parser.add_argument("--only", help="comma-separated faults to run (default: all)")
    parser.add_argument("--out", help="write the figures as JSON here")
    parser.add_argument("--keep", action="store_true", help="leave the cluster up afterwards")
    args = parser.parse_args()
    sys.exit(run_async(args) if args.asynchronous else run_sync(args))


if __name__ == "__main__":
    main()
