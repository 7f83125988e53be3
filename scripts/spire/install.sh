#!/usr/bin/env bash
# install.sh — build spire-server and spire-agent (pinned in tools/spire/go.mod) once per machine.
#
# Output: ${TOLLGATE_CACHE:-$HOME/.cache/tollgate}/spire-v1.13.3/bin/{spire-server,spire-agent}
# The last line printed is that bin folder, so callers can do: SPIRE_BIN=$(scripts/spire/install.sh | tail -1)
#
# Idempotent: if both binaries exist and run, nothing is built. A cold build takes ~7 minutes
# (2 cores) and needs ~2 GB of module cache and ~2.5 GB of build cache.
# Why a build from the Go module proxy: there is no SPIRE release download reachable from here, and
# `go install github.com/spiffe/spire/cmd/spire-server@v1.13.3` fails because the proxy does not serve
# spire's version list; building the tool packages of a pinned module (tools/spire) works.
set -euo pipefail

VERSION=v1.13.3
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
MOD=$ROOT/tools/spire
CACHE=${TOLLGATE_CACHE:-$HOME/.cache/tollgate}
DEST=$CACHE/spire-$VERSION
BIN=$DEST/bin

die() { echo "spire install: $*" >&2; exit 1; }

# The version must match the pin in tools/spire/go.mod, or the cache folder name would lie.
pinned=$(cd "$MOD" && go list -m -f '{{.Version}}' github.com/spiffe/spire) || die "cannot read pin from $MOD/go.mod"
[ "$pinned" = "$VERSION" ] || die "tools/spire/go.mod pins spire $pinned but this script installs $VERSION"

# works BIN: both binaries exist and execute (a truncated or foreign-arch file fails here).
works() {
  [ -x "$1/spire-server" ] && [ -x "$1/spire-agent" ] &&
    "$1/spire-server" --version >/dev/null 2>&1 && "$1/spire-agent" --version >/dev/null 2>&1
}

if works "$BIN"; then
  echo "spire $VERSION already installed" >&2
  echo "$BIN"
  exit 0
fi

mkdir -p "$DEST"
# One build at a time per cache folder (parallel CI steps or two shells).
exec 9>"$DEST/.lock"
flock -w 1800 9 || die "timed out waiting for another install holding $DEST/.lock"
if works "$BIN"; then # another process finished the build while we waited
  echo "spire $VERSION already installed" >&2
  echo "$BIN"
  exit 0
fi

TMP=$(mktemp -d "$DEST/build.XXXXXX")
trap 'rm -rf "$TMP"' EXIT
echo "building spire-server and spire-agent $VERSION (cold: ~7 min) ..." >&2
t0=$(date +%s)
(
  cd "$MOD"
  # -mod=readonly: the build must use exactly the pinned go.sum, never edit it.
  go build -mod=readonly -trimpath -ldflags='-s -w' -o "$TMP/" \
    github.com/spiffe/spire/cmd/spire-server github.com/spiffe/spire/cmd/spire-agent
) || die "go build failed"
works "$TMP" || die "built binaries do not run"
chmod 755 "$TMP" # mktemp makes 0700; other users of the machine may run the binaries

# Replace atomically so a reader never sees half a bin folder.
rm -rf "$BIN"
mv "$TMP" "$BIN"
trap - EXIT
echo "built in $(( $(date +%s) - t0 )) s" >&2
echo "$BIN"
