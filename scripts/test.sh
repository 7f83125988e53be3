#!/usr/bin/env bash
# The whole test suite, exactly what CI runs (.ci/run calls this script).
#
#   scripts/test.sh            install what the tests need (idempotent), then
#                              gofmt, go vet, and every test with -race, including
#                              the end-to-end suites against real SPIRE, a real
#                              OpenID provider and headless Chromium.
#
# Installs (each skipped when already there): oidc-provider from npm and Debian's
# chromium (scripts/oidc/install.sh), Debian's rsyslog with its OpenSSL driver
# (scripts/rsyslog/install.sh), Debian's zsh and fish, whose completion of the gateway's
# commands is tested (scripts/shells/install.sh), Debian's wrk, h2load, nginx and Caddy for a smoke run
# of the side-by-side benchmark (scripts/bench-peers/install.sh), a small OpenTelemetry
# Collector built from the Go module proxy into a cache folder (scripts/otelcol/install.sh,
# ~4-5 min the first time), spire-server and spire-agent built from the Go module proxy
# into a cache folder (scripts/spire/install.sh, ~7 min the first time). The deployment
# artifacts step (scripts/deploy/check.sh) builds helm the same way (~5-9 min the first time).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

step() { printf '\n==> %s\n' "$*"; }

step "install test tools"
scripts/oidc/install.sh
scripts/rsyslog/install.sh
scripts/shells/install.sh
scripts/bench-peers/install.sh
SPIRE_BIN=$(scripts/spire/install.sh | tail -1)
OTELCOL_BIN=$(scripts/otelcol/install.sh | tail -1)
export SPIRE_BIN OTELCOL_BIN
# With these set, a missing tool fails its suite instead of skipping it.
export TOLLGATE_REQUIRE_SPIRE=1 TOLLGATE_REQUIRE_E2E=1

step "gofmt"
unformatted=$(gofmt -l $(git ls-files '*.go'))
if [ -n "$unformatted" ]; then
  echo "not gofmt-clean:"; echo "$unformatted"; exit 1
fi

step "go vet"
go vet -tags 'spire e2e' ./...

step "deployment artifacts (scripts/deploy/check.sh)"
# helm lint and helm template of deploy/helm/tollgate, every rendered object and every file of
# deploy/kubernetes decoded strictly (tools/deploycheck), systemd-analyze verify and security of
# deploy/systemd, and `gateway check` of each artifact's gateway file (deploy/deploy_test.go).
scripts/deploy/check.sh

step "go test -race (all suites)"
# One pass with every build tag: unit tests, fuzz seed corpora, examples, and the
# end-to-end suites. -p 1 for the tagged packages would be slower; the suites use
# their own ports and directories, so packages run in parallel safely.
go test -race -count=1 -tags 'spire e2e' -timeout 30m ./...

# Leftovers of headless Chromium runs (chromedp removes its profile, Chromium
# may leave a folder behind when killed).
rm -rf /tmp/org.chromium.Chromium.* 2>/dev/null || true
