#!/usr/bin/env bash
# check.sh — check the deployment artifacts (deploy/): what scripts/test.sh runs as its
# "deployment artifacts" step, and what to run after editing anything under deploy/.
#
#   1. helm (tools/deploycheck's pin) built once into the cache (scripts/deploy/install-helm.sh).
#   2. helm lint --strict of deploy/helm/tollgate, with the default values and with
#      ci/hostpath-values.yaml; and with a misspelled value, which must fail (values.schema.json
#      refuses unknown values).
#   3. helm template with both, into a temporary folder (default.yaml, hostpath.yaml).
#   4. tools/deploycheck's tests: every rendered object and every file of deploy/kubernetes
#      decoded strictly into the Kubernetes API types (a misspelled field fails), the objects
#      checked against each other; the systemd unit through systemd-analyze verify and
#      security (a misspelled directive fails).
#   5. deploy/deploy_test.go (the product's module): the gateway file of each rendering, of
#      deploy/kubernetes and of deploy/systemd through `gateway check`, in the file system the
#      pod or the unit gives it.
#
# Needs Go and Debian's systemd (systemd-analyze, systemd-sysusers; installed with apt-get when
# missing and run as root); a missing tool fails the check, never skips it.
# Takes ~10 s once helm is built; the first run builds helm (~5-9 min on 2 cores).
# The rendered manifests are kept when TOLLGATE_DEPLOY_RENDERED names a folder.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$ROOT"

CHART=deploy/helm/tollgate
HELM=$(scripts/deploy/install-helm.sh | tail -1)

# systemd-analyze and systemd-sysusers: Debian's systemd package (no running systemd needed).
if ! command -v systemd-analyze >/dev/null || ! command -v systemd-sysusers >/dev/null; then
  if [ "$(id -u)" != 0 ]; then
    echo "deploy check: systemd-analyze missing; run as root or: apt-get install systemd" >&2; exit 1
  fi
  echo "deploy check: apt-get install systemd" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends systemd >/dev/null
fi

if [ -n "${TOLLGATE_DEPLOY_RENDERED:-}" ]; then
  OUT=$TOLLGATE_DEPLOY_RENDERED
  mkdir -p "$OUT"
  rm -f "$OUT"/*.yaml
else
  OUT=$(mktemp -d)
  trap 'rm -rf "$OUT"' EXIT
fi
OUT=$(cd "$OUT" && pwd)

# helm keeps its caches and settings under these; none of them may be the user's.
export HELM_CACHE_HOME=$OUT/.helm/cache HELM_CONFIG_HOME=$OUT/.helm/config HELM_DATA_HOME=$OUT/.helm/data

echo "helm lint" >&2
"$HELM" lint --strict "$CHART"
"$HELM" lint --strict "$CHART" -f "$CHART/ci/hostpath-values.yaml"
# values.schema.json is not blind: a misspelled value must fail the lint.
for bad in serviceMonitor.enabeld=true gateway.ingres.routes=null; do
  if "$HELM" lint --strict "$CHART" --set "$bad" >/dev/null 2>&1; then
    echo "deploy check: helm lint passed the misspelled value $bad" >&2
    exit 1
  fi
done

echo "helm template" >&2
"$HELM" template tollgate "$CHART" --namespace tollgate >"$OUT/default.yaml"
"$HELM" template tollgate "$CHART" --namespace tollgate -f "$CHART/ci/hostpath-values.yaml" >"$OUT/hostpath.yaml"

export TOLLGATE_DEPLOY_RENDERED=$OUT TOLLGATE_REQUIRE_DEPLOY=1

echo "tools/deploycheck: go vet, go test" >&2
(
  cd tools/deploycheck
  unformatted=$(gofmt -l .)
  [ -z "$unformatted" ] || { echo "not gofmt-clean: $unformatted" >&2; exit 1; }
  go vet ./...
  go test -count=1 ./...
)

echo "deploy: go test" >&2
go test -count=1 ./deploy/
