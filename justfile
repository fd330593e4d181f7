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
