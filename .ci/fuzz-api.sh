#!/usr/bin/env bash
# Schemathesis against live instances: starts the service on a free loopback
# port (memory store), runs every check of every phase against its
# /openapi.json with a fixed seed and a bounded number of examples, and stops
# the instance however the run ends. Three runs:
#   1. authentication off (the API without tokens);
#   2. authentication on, with an admin token: every operation as in run 1,
#      plus Schemathesis's own probes that the bearer scheme is enforced;
#   3. authentication on, with an owner's token: the owner scoping (403 for
#      opening as someone else, 404 for others' accounts), with 403 also an
#      expected answer (.ci/schemathesis-owner.toml).
# The secret of runs 2 and 3 is random per run; the service's log must not
# contain it or the tokens.
#   FUZZ_API_SEED      the seed (default 20261126): same seed, same cases
#   FUZZ_API_EXAMPLES  examples per operation and phase (default 200)
#   ACCOUNTS_BIN       a built binary to test (default: build the debug one)
#   FUZZ_API_REPORT_DIR  keep the JUnit reports and the HARs of every exchange there
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
stop_service() {
    if [ -n "$pid" ]; then
        kill "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    fi
    pid=
}
cleanup() {
    stop_service
    rm -rf "$workdir"
}
trap cleanup EXIT

# Starts the service (with whatever ACCOUNTS_* the environment holds) and
# sets $address; its log goes to $workdir/$1.log.
start_service() {
    local log="$workdir/$1.log"
    # No drain delay: nothing balances load in front of this instance.
    RUST_LOG=warn,accounts::app=info "$binary" --listen 127.0.0.1:0 --database-url memory: \
        --drain-delay-ms 0 >"$log" 2>&1 &
    pid=$!
    address=
    for _ in $(seq 100); do
        address=$(grep -o 'listening on [0-9.:]*' "$log" | cut -d' ' -f3 || true)
        [ -n "$address" ] && break
        kill -0 "$pid" 2>/dev/null || { cat "$log"; exit 1; }
        sleep 0.1
    done
    [ -n "$address" ] || { echo "the service did not start"; cat "$log"; exit 1; }
    echo "service on $address (pid $pid); seed $seed, $examples examples per operation"
}

# Runs Schemathesis against the running service: $1 names the run, $2 is its
# config file, the rest are extra options (e.g. -H for a token). Every
# operation is covered, the feed's too: the request timeout is above the
# longest waitMs a request may hold (FEED_WAIT_MS_MAX, 30 s), and the config
# files bound the feed's cases and how long its endless stream is read.
fuzz() {
    local name=$1 config=$2
    shift 2
    echo "=== schemathesis: $name"
    schemathesis --config-file "$config" run "http://$address/openapi.json" \
        --checks all \
        --exclude-checks use_after_free \
        --seed "$seed" \
        --max-examples "$examples" \
        --workers 1 \
        --generation-database none \
        --request-timeout 35 \
        --no-color \
        --report junit,har --report-dir "${FUZZ_API_REPORT_DIR:-$workdir/report}/$name" \
        "$@" || status=$?
}

# After a run: the service is alive and never panicked.
check_service() {
    local log="$workdir/$1.log"
    kill -0 "$pid" 2>/dev/null || { echo "the service died during the $1 run"; status=1; }
    if grep -q 'panicked' "$log"; then
        echo "the service panicked:"; grep -A5 'panicked' "$log"; status=1
    fi
}

status=0
start_service auth-off
fuzz auth-off .ci/schemathesis.toml
check_service auth-off
stop_service

# A fresh random secret (32 bytes, base64): never printed, never kept.
ACCOUNTS_AUTH_JWT_SECRET=$(head -c 32 /dev/urandom | base64)
export ACCOUNTS_AUTH_JWT_SECRET
start_service auth-on
admin=$("$binary" token --sub 00000000-0000-4000-8000-00000000ad01 --admin --ttl 1h)
owner=$("$binary" token --sub 00000000-0000-4000-8000-0000000000a1 --ttl 1h)
fuzz auth-on-admin .ci/schemathesis.toml -H "Authorization: Bearer $admin"
fuzz auth-on-owner .ci/schemathesis-owner.toml -H "Authorization: Bearer $owner"
check_service auth-on
for value in "$ACCOUNTS_AUTH_JWT_SECRET" "$admin" "$owner"; do
    if grep -qF -- "$value" "$workdir/auth-on.log"; then
        echo "the service logged a secret or a token"; status=1
    fi
done
exit "$status"
