# Sourced by .ci/run and the justfile's recipes: installs the project's
# command-line tools into a project-local virtualenv (.venv, ignored by git)
# and puts it first on PATH. Idempotent and quick when everything is there.
#   just          — PyPI package rust-just (the PyPI package "just" is another thing)
venv="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/.venv"
if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv"
fi
if [ ! -x "$venv/bin/just" ]; then
    "$venv/bin/pip" install --quiet --disable-pip-version-check rust-just
fi
export PATH="$venv/bin:$PATH"
