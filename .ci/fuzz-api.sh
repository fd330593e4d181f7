#!/usr/bin/env bash
# Schemathesis against a live instance: starts the service on a free loopback
# port (memory store), runs every check of every phase against its
# /openapi.json with a fixed seed and a bounded number of examples, and stops
# the instance however the run ends.
#   FUZZ_API_SEED      the seed (default 20261126): same seed, same cases
#   FUZZ_API_EXAMPLES  examples per operation and phase (default 200)
#   ACCOUNTS_BIN       a built binary to test (default: build the debug one)
#   FUZZ_API_REPORT_DIR  keep the JUnit report and the HAR of every exchange there
set -euo pipefail
cd "$(dirname "$0")/.."
source .ci/tools.sh

seed=${FUZZ_API_SEED:-20261126}
examples=${FUZZ_API_EXAMPLES:-200}
binary=${ACCOUNTS_BIN:-}
if [ -z "$binary" ]; then
    cargo build --quiet --bin accounts
    binary="${CARGO_TARGET_DIR:-target}/debug/accounts"
fi

workdir=$(mktemp -d)
pid=
stop() {
    if [ -n "$pid" ]; then
        kill "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    fi
    rm -rf "$workdir"
}
trap stop EXIT

# No drain delay: nothing balances load in front of this instance.
RUST_LOG=warn,accounts::app=info "$binary" --listen 127.0.0.1:0 --database-url memory: \
    --drain-delay-ms 0 >"$workdir/service.log" 2>&1 &
pid=$!
address=
for _ in $(seq 100); do
    address=$(grep -o 'listening on [0-9.:]*' "$workdir/service.log" | cut -d' ' -f3 || true)
    [ -n "$address" ] && break
    kill -0 "$pid" 2>/dev/null || { cat "$workdir/service.log"; exit 1; }
    sleep 0.1
done
[ -n "$address" ] || { echo "the service did not start"; cat "$workdir/service.log"; exit 1; }
echo "service on $address (pid $pid); seed $seed, $examples examples per operation"

status=0
schemathesis --config-file .ci/schemathesis.toml run "http://$address/openapi.json" \
    --checks all \
    --exclude-checks use_after_free \
    --seed "$seed" \
    --max-examples "$examples" \
    --workers 1 \
    --generation-database none \
    --request-timeout 15 \
    --no-color \
    --report junit,har --report-dir "${FUZZ_API_REPORT_DIR:-$workdir/report}" || status=$?
kill -0 "$pid" 2>/dev/null || { echo "the service died during the run"; status=1; }
if grep -q 'panicked' "$workdir/service.log"; then
    echo "the service panicked:"; grep -A5 'panicked' "$workdir/service.log"; status=1
fi
exit "$status"
