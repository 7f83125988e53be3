#!/usr/bin/env bash
# install-helm.sh — build helm (pinned in tools/deploycheck/go.mod) once per machine, for the
# deployment checks (scripts/deploy/check.sh: helm lint and helm template of deploy/helm/tollgate).
#
# Output: ${TOLLGATE_CACHE:-$HOME/.cache/tollgate}/helm-v4.3.2-<go.sum hash>/bin/helm
# The last line printed is that binary, so callers can do:
#   HELM=$(scripts/deploy/install-helm.sh | tail -1)
#
# Idempotent: if the binary exists and runs, nothing is built. A cold build takes ~5-9 min on 2 cores
# (about 250 modules from the Go module proxy; ~8 CPU-minutes of compiling). Built like SPIRE (scripts/spire/install.sh): the tool
# package of a pinned module, with -mod=readonly so the committed go.sum is used exactly. The folder
# names the go.sum it was built from: a change of pins builds anew.
set -euo pipefail

VERSION=v4.3.2
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
MOD=$ROOT/tools/deploycheck
CACHE=${TOLLGATE_CACHE:-$HOME/.cache/tollgate}
SUM=$(sha256sum "$MOD/go.sum" | cut -c1-12)
DEST=$CACHE/helm-$VERSION-$SUM
BIN=$DEST/bin

die() { echo "helm install: $*" >&2; exit 1; }

# The version must match the pin in tools/deploycheck/go.mod, or the cache folder name would lie.
pinned=$(cd "$MOD" && go list -m -f '{{.Version}}' helm.sh/helm/v4) || die "cannot read pin from $MOD/go.mod"
[ "$pinned" = "$VERSION" ] || die "tools/deploycheck/go.mod pins helm $pinned but this script installs $VERSION"

# works BIN: the binary exists, executes (a truncated or foreign-arch file fails here) and is the
# pinned version.
works() { [ -x "$1/helm" ] && "$1/helm" version --template '{{.Version}}' 2>/dev/null | grep -qx "$VERSION"; }

if works "$BIN"; then
  echo "helm $VERSION already installed" >&2
  echo "$BIN/helm"
  exit 0
fi

mkdir -p "$DEST"
# One build at a time per cache folder (parallel CI steps or two shells).
exec 9>"$DEST/.lock"
flock -w 900 9 || die "timed out waiting for another install holding $DEST/.lock"
if works "$BIN"; then # another process finished the build while we waited
  echo "helm $VERSION already installed" >&2
  echo "$BIN/helm"
  exit 0
fi

TMP=$(mktemp -d "$DEST/build.XXXXXX")
trap 'rm -rf "$TMP"' EXIT
echo "building helm $VERSION (cold: ~5-9 min) ..." >&2
t0=$(date +%s)
(
  cd "$MOD"
  # helm prints its version from these variables; a module build leaves them at "v4.x-dev" otherwise.
  GOFLAGS= CGO_ENABLED=0 go build -mod=readonly -trimpath \
    -ldflags="-s -w -X helm.sh/helm/v4/internal/version.version=$VERSION" \
    -o "$TMP/helm" helm.sh/helm/v4/cmd/helm
) || die "go build failed"
works "$TMP" || die "built binary does not run or does not say $VERSION"
chmod 755 "$TMP" # mktemp makes 0700; other users of the machine may run the binary

# Replace atomically so a reader never sees half a bin folder.
rm -rf "$BIN"
mv "$TMP" "$BIN"
trap - EXIT
echo "built in $(( $(date +%s) - t0 )) s" >&2
echo "$BIN/helm"
