#!/usr/bin/env bash
# Throughput of the memory store against the HTTP stack's own floor: wrk on
# /ping, then on deposits (each a real append with a fresh transactionId),
# against one release instance on loopback. Bounded: DURATION seconds each.
set -euo pipefail
cd "$(dirname "$0")/.."
duration=${DURATION:-10}
connections=${CONNECTIONS:-64}
accounts=${ACCOUNTS:-64}
command -v wrk >/dev/null || { echo "wrk is missing: apt-get install wrk" >&2; exit 1; }
cargo build --release --quiet
binary="${CARGO_TARGET_DIR:-target}/release/accounts"
log=$(mktemp)
"$binary" --listen 127.0.0.1:0 --drain-delay-ms 0 2>"$log" &
pid=$!
trap 'kill $pid 2>/dev/null; wait $pid 2>/dev/null; rm -f "$log"' EXIT
for _ in $(seq 1 100); do grep -q "listening on" "$log" && break; sleep 0.05; done
address=$(sed -n 's/.*listening on //p' "$log" | head -n1)
base="http://$address"
owner=3c2b1a09-8f7e-4d6c-9b5a-4f3e2d1c0b9a
for n in $(seq 0 $((accounts - 1))); do
    curl -sf -X POST "$base/api/account/$(printf '00000000-0000-4000-8000-%012x' "$n")?owner=$owner" >/dev/null
done
echo "== /ping ($duration s, $connections connections)"
wrk -t2 -c"$connections" -d"${duration}s" "$base/ping" | tee /tmp/bench-ping.txt
echo "== deposits over $accounts accounts ($duration s, $connections connections)"
ACCOUNTS=$accounts wrk -t2 -c"$connections" -d"${duration}s" -s bench/deposits.lua "$base" | tee /tmp/bench-deposits.txt
ping=$(sed -n 's/^Requests\/sec: *//p' /tmp/bench-ping.txt)
deposits=$(sed -n 's/^Requests\/sec: *//p' /tmp/bench-deposits.txt)
total=0
for n in $(seq 0 $((accounts - 1))); do
    balance=$(curl -sf "$base/api/account/$(printf '00000000-0000-4000-8000-%012x' "$n")" | sed 's/.*"balance":\([0-9]*\).*/\1/')
    total=$((total + balance))
done
echo "== deposits/s: $deposits, /ping/s: $ping, ratio: $(python3 -c "print(f'{$deposits / $ping:.0%}')")"
echo "== money deposited (sum of balances): $total cents"
curl -s "$base/metrics" | grep -E '^accounts_(conflicts|retries)_total'
