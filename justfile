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

# Throughput: wrk on /ping, then on deposits, against one release instance on loopback (needs wrk: apt-get install wrk).
bench:
    bench/run.sh

# Deterministic simulation (release): SEEDS seeds on every core, generated histories, then the self-test against the planted bugs.
sim seeds="10000":
    cargo run --release -p sim -- --seeds {{seeds}}
    cargo run --release -p sim -- --histories 300
    cargo run --release -p sim -- --self-test

# Replay one simulation seed with its plan and a readable trace (add `--bug NAME` to plant a bug).
sim-replay seed *ARGS:
    cargo run --release -p sim -- --seed {{seed}} --trace {{ARGS}}

# Each test makes its own database and drops it afterwards.
# Tier 2: the store suites on PostgreSQL and MariaDB too (servers from ACCOUNTS_TEST_POSTGRES_URL / ACCOUNTS_TEST_MYSQL_URL, default the local ones).
integration:
    ACCOUNTS_TEST_POSTGRES_URL="${ACCOUNTS_TEST_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432/postgres}" \
    ACCOUNTS_TEST_MYSQL_URL="${ACCOUNTS_TEST_MYSQL_URL:-mysql://root@127.0.0.1:3306/mysql}" \
    cargo test --test store_contract --test store_faults --test store_service --test store_http -- --include-ignored

# Schemathesis against a live debug instance (memory store) and /openapi.json: fixed seed, bounded examples.
fuzz-api:
    .ci/fuzz-api.sh

# libFuzzer on the request parsing (optional; needs `rustup toolchain install nightly` and `cargo install cargo-fuzz`).
fuzz-request SECONDS="60":
    cargo +nightly fuzz run --sanitizer none request -- -max_total_time={{SECONDS}}
