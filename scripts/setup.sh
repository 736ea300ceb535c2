#!/usr/bin/env bash
# All set-up from a fresh clone, idempotent: venv + project, Resonate server and Toxiproxy (`harness
# setup`: into ~/.cache/resonate-harness, or $RESONATE_HARNESS_CACHE), and with
# --docker the Docker engine (when none answers and we are root). Later runs reuse what is there.
set -euo pipefail
cd "$(dirname "$0")/.."

py="$(scripts/find-python.sh)"
if ! .venv/bin/python -c 'import sys; sys.exit(0 if sys.version_info >= (3, 12) else 1)' 2>/dev/null; then
  echo "setup: creating .venv with $py" >&2
  rm -rf .venv
  "$py" -m venv .venv
fi
stamp=".venv/.installed-$(cat pyproject.toml | sha256sum | cut -c1-16)"
if [[ ! -f "$stamp" ]]; then
  echo "setup: installing the project and its dependencies into .venv" >&2
  .venv/bin/python -m pip install -q --upgrade pip
  .venv/bin/python -m pip install -q -e '.[dev]'
  rm -f .venv/.installed-*
  touch "$stamp"
fi
.venv/bin/harness setup   # the Resonate server and Toxiproxy, built once into the per-user cache
if [[ "${1:-}" == "--docker" ]]; then
  if ! scripts/install-docker.sh; then
    echo "setup: no Docker engine; the docker-backend tests will be skipped (CI fails them)" >&2
  fi
fi
