#!/usr/bin/env bash
# install.sh — build the small OpenTelemetry Collector (tools/otelcol: the OTLP receiver, the contrib
# syslog receiver and the file exporter, core v0.165.0 / contrib v0.165.1) once per machine, for the
# audit pipeline's end-to-end tests (the OTLP sink; syslog over TLS as a second receiver).
#
# Output: ${TOLLGATE_CACHE:-$HOME/.cache/tollgate}/otelcol-v0.165.0-<go.sum hash>/bin/otelcol
# The last line printed is that binary, so callers can do:
#   OTELCOL_BIN=$(scripts/otelcol/install.sh | tail -1)
#
# Idempotent: if the binary exists and runs, nothing is built. A cold build takes ~4-5 min on 2 cores
# (about 200 modules from the Go module proxy). -mod=readonly: the committed go.sum is used exactly.
# The Collector Builder (ocb) is not used: it runs `go mod tidy` without -e, which fails on a test-only
# dependency the proxy refuses (fileexporter's tests import otlpencodingextension).
set -euo pipefail

VERSION=v0.165.0
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
MOD=$ROOT/tools/otelcol
CACHE=${TOLLGATE_CACHE:-$HOME/.cache/tollgate}
# The folder names the go.sum it was built from: a change of pins builds anew.
SUM=$(sha256sum "$MOD/go.sum" | cut -c1-12)
DEST=$CACHE/otelcol-$VERSION-$SUM
BIN=$DEST/bin

die() { echo "otelcol install: $*" >&2; exit 1; }

works() { [ -x "$1/otelcol" ] && "$1/otelcol" components >/dev/null 2>&1; }

if works "$BIN"; then
  echo "otelcol $VERSION already installed" >&2
  echo "$BIN/otelcol"
  exit 0
fi

mkdir -p "$DEST"
exec 9>"$DEST/.lock"
flock -w 900 9 || die "timed out waiting for another install holding $DEST/.lock"
if works "$BIN"; then
  echo "otelcol $VERSION already installed" >&2
  echo "$BIN/otelcol"
  exit 0
fi

TMP=$(mktemp -d "$DEST/build.XXXXXX")
trap 'rm -rf "$TMP"' EXIT
echo "building otelcol $VERSION (cold: ~4-5 min) ..." >&2
t0=$(date +%s)
(
  cd "$MOD"
  GOFLAGS= go build -mod=readonly -trimpath -ldflags='-s -w' -o "$TMP/otelcol" .
) || die "go build failed"
works "$TMP" || die "built binary does not run"
chmod 755 "$TMP"
rm -rf "$BIN"
mv "$TMP" "$BIN"
trap - EXIT
echo "built in $(( $(date +%s) - t0 )) s" >&2
echo "$BIN/otelcol"
