#!/usr/bin/env bash
# Install the legacy Resonate server (Go) into .tools/bin, once.
#
# Only some versions of github.com/resonatehq/resonate are served by the module proxy this
# machine reaches: v0.7.1..v0.7.25 are refused (403) and v0.7.0 predates the subscription API
# that resonate-sdk 0.6.x calls. v0.8.2 is served; its go.mod has local `replace` directives,
# so `go install module@version` refuses it, but the same module builds with `go build` from its
# own root. That is what this script does (the module still comes from the Go module proxy).
set -euo pipefail

VERSION="${RESONATE_SERVER_VERSION:-v0.8.2}"
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
BIN_DIR="$ROOT/.tools/bin"
BIN="$BIN_DIR/resonate"
STAMP="$BIN_DIR/resonate.version"
MODULE="github.com/resonatehq/resonate"

mkdir -p "$BIN_DIR"
exec 9>"$BIN_DIR/.install.lock"
flock 9   # parallel pytest-xdist workers and make targets install once

if [[ -x "$BIN" && -f "$STAMP" && "$(cat "$STAMP")" == "$VERSION" ]]; then
  exit 0
fi
command -v go >/dev/null || { echo "install-server: 'go' not found; install Go >= 1.24 or set RESONATE_SERVER_BIN to a resonate binary" >&2; exit 2; }
command -v gcc >/dev/null || { echo "install-server: the server needs cgo (sqlite); install gcc" >&2; exit 2; }

echo "install-server: building $MODULE@$VERSION (about a minute, once)" >&2
export GOFLAGS=-mod=mod CGO_ENABLED=1
# `go install` works for versions without replace directives; try it first.
if GOBIN="$BIN_DIR" go install "$MODULE@$VERSION" 2>/tmp/resonate-go-install.$$.log; then
  :
else
  dir="$(go mod download -json "$MODULE@$VERSION" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')"
  if [[ -z "$dir" ]]; then
    echo "install-server: the Go module proxy did not serve $MODULE@$VERSION:" >&2
    cat /tmp/resonate-go-install.$$.log >&2
    exit 2
  fi
  work="$(mktemp -d)"
  trap 'chmod -R u+w "$work"; rm -rf "$work"' EXIT
  cp -r "$dir/." "$work/"
  chmod -R u+w "$work"
  (cd "$work" && go build -o "$BIN.tmp" .)
  mv "$BIN.tmp" "$BIN"
fi
rm -f /tmp/resonate-go-install.$$.log
echo "$VERSION" >"$STAMP"
"$BIN" --version >&2
