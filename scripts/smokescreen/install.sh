#!/usr/bin/env bash
# install.sh — build smokescreen (pinned in tools/smokescreen/go.mod) once per machine, for the
# egress benchmarks (BenchmarkEgressConnect/smokescreen, scripts/bench-egress.sh).
#
# Output: ${TOLLGATE_CACHE:-$HOME/.cache/tollgate}/smokescreen-v0.1.0/bin/smokescreen
# The last line printed is that binary, so callers can do:
#   SMOKESCREEN_BIN=$(scripts/smokescreen/install.sh | tail -1)
#
# Idempotent: if the binary exists and runs, nothing is built. A cold build takes ~25 s (2 cores).
# Built like SPIRE (scripts/spire/install.sh): the tool package of a pinned module, from the Go
# module proxy, with -mod=readonly so the pinned go.sum is used exactly.
set -euo pipefail

VERSION=v0.1.0
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
MOD=$ROOT/tools/smokescreen
CACHE=${TOLLGATE_CACHE:-$HOME/.cache/tollgate}
DEST=$CACHE/smokescreen-$VERSION
BIN=$DEST/bin

die() { echo "smokescreen install: $*" >&2; exit 1; }

# The version must match the pin in tools/smokescreen/go.mod, or the cache folder name would lie.
pinned=$(cd "$MOD" && go list -m -f '{{.Version}}' github.com/stripe/smokescreen) || die "cannot read pin from $MOD/go.mod"
[ "$pinned" = "$VERSION" ] || die "tools/smokescreen/go.mod pins smokescreen $pinned but this script installs $VERSION"

# works BIN: the binary exists and executes (a truncated or foreign-arch file fails here).
works() { [ -x "$1/smokescreen" ] && "$1/smokescreen" --version >/dev/null 2>&1; }

if works "$BIN"; then
  echo "smokescreen $VERSION already installed" >&2
  echo "$BIN/smokescreen"
  exit 0
fi

mkdir -p "$DEST"
# One build at a time per cache folder (parallel CI steps or two shells).
exec 9>"$DEST/.lock"
flock -w 600 9 || die "timed out waiting for another install holding $DEST/.lock"
if works "$BIN"; then # another process finished the build while we waited
  echo "smokescreen $VERSION already installed" >&2
  echo "$BIN/smokescreen"
  exit 0
fi

TMP=$(mktemp -d "$DEST/build.XXXXXX")
trap 'rm -rf "$TMP"' EXIT
echo "building smokescreen $VERSION (cold: ~25 s) ..." >&2
t0=$(date +%s)
(
  cd "$MOD"
  go build -mod=readonly -trimpath -ldflags='-s -w' -o "$TMP/" github.com/stripe/smokescreen
) || die "go build failed"
works "$TMP" || die "built binary does not run"
chmod 755 "$TMP" # mktemp makes 0700; other users of the machine may run the binary

# Replace atomically so a reader never sees half a bin folder.
rm -rf "$BIN"
mv "$TMP" "$BIN"
trap - EXIT
echo "built in $(( $(date +%s) - t0 )) s" >&2
echo "$BIN/smokescreen"
