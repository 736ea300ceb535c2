#!/usr/bin/env bash
# Install Toxiproxy (toxiproxy-server and toxiproxy-cli) into .tools/bin, once.
#
# The process backend puts one Toxiproxy proxy pair in front of the Resonate server per worker
# (REST API + SSE poll port), so a single worker can be partitioned, slowed down or reset. The
# kernel here has no tc netem, so this is how link faults are made. `go install` names binaries
# after their package directory (cmd/server, cmd/cli); they are renamed to the upstream names.
set -euo pipefail

VERSION="${TOXIPROXY_VERSION:-v2.12.0}"
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
BIN_DIR="$ROOT/.tools/bin"
SERVER="$BIN_DIR/toxiproxy-server"
CLI="$BIN_DIR/toxiproxy-cli"
STAMP="$BIN_DIR/toxiproxy.version"
MODULE="github.com/Shopify/toxiproxy/v2"

mkdir -p "$BIN_DIR"
exec 9>"$BIN_DIR/.install-toxiproxy.lock"
flock 9   # parallel pytest-xdist workers and make targets install once

if [[ -x "$SERVER" && -x "$CLI" && -f "$STAMP" && "$(cat "$STAMP")" == "$VERSION" ]]; then
  exit 0
fi
command -v go >/dev/null || { echo "install-toxiproxy: 'go' not found; install Go >= 1.22 or set TOXIPROXY_SERVER_BIN to a toxiproxy-server binary" >&2; exit 2; }

echo "install-toxiproxy: building $MODULE@$VERSION (seconds, once)" >&2
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
export CGO_ENABLED=0 GOFLAGS=-mod=mod
if ! GOBIN="$work" go install -ldflags "-s -w -X $MODULE.Version=$VERSION" "$MODULE/cmd/...@$VERSION" 2>"$work/go.log"; then
  echo "install-toxiproxy: the Go module proxy did not serve $MODULE@$VERSION:" >&2
  cat "$work/go.log" >&2
  exit 2
fi
mv "$work/server" "$SERVER.tmp" && mv "$SERVER.tmp" "$SERVER"
mv "$work/cli" "$CLI.tmp" && mv "$CLI.tmp" "$CLI"
echo "$VERSION" >"$STAMP"
"$SERVER" -version >&2
