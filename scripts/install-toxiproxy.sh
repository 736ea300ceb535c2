#!/usr/bin/env bash
# Install Toxiproxy (and the Resonate server) into the per-user cache, once. This is now
# `harness setup` (harness/install.py: the build steps, the file lock, the version stamp).
set -euo pipefail
exec "$(cd "$(dirname "$0")/.." && pwd)/.venv/bin/harness" setup "$@"
