#!/usr/bin/env bash
# Print the path of a Python >= 3.12 (resonate-sdk needs it); exit 2 with a hint if none.
set -uo pipefail
ok() { "$1" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 12) else 1)' 2>/dev/null; }
candidates=("${PYTHON:-}" python3.12 python3.13 python3)
for dir in "${PYENV_ROOT:-$HOME/.pyenv}"/versions/3.1[2-9]*/bin; do candidates+=("$dir/python3"); done
for c in "${candidates[@]}"; do
  [[ -z "$c" ]] && continue
  path="$(command -v "$c" 2>/dev/null)" || continue
  if ok "$path"; then echo "$path"; exit 0; fi
done
echo "find-python: no Python >= 3.12 found (resonate-sdk needs it); install one or set PYTHON=/path/to/python3.12" >&2
exit 2
