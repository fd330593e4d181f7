# Sourced by .ci/run and the justfile's recipes: installs the project's
# command-line tools into a project-local virtualenv (.venv, ignored by git)
# and puts it first on PATH. Idempotent and quick when everything is there.
#   just          — PyPI package rust-just (the PyPI package "just" is another thing)
#   schemathesis  — property-based API testing against /openapi.json (`just fuzz-api`);
#                   pinned so a run with a fixed seed generates the same cases
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
export PATH="$venv/bin:$PATH"
