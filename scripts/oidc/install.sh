#!/usr/bin/env bash
# Installs what the OIDC end-to-end test needs; safe to run again (does nothing when up to date):
#   - oidc-provider (npm, pinned by test/oidcprovider/package-lock.json) into test/oidcprovider/node_modules
#   - Debian's chromium (apt), driven headless by the chromedp test
# Usage: scripts/oidc/install.sh     (as root for apt, or with chromium already installed)
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
PROV="$ROOT/test/oidcprovider"

# npm: reinstall when node_modules is missing or older than the lockfile.
if ! command -v npm >/dev/null; then
  echo "install.sh: npm not found (need Node.js and npm: 22 LTS or later, or 20.19 with a warning)" >&2; exit 1
fi
stamp="$PROV/node_modules/.package-lock.json"
if [ ! -f "$stamp" ] || [ "$PROV/package-lock.json" -nt "$stamp" ]; then
  echo "install.sh: npm ci in test/oidcprovider"
  (cd "$PROV" && npm ci --no-audit --no-fund)
else
  echo "install.sh: test/oidcprovider/node_modules up to date"
fi

# chromium: from Debian's archive when missing.
if command -v chromium >/dev/null; then
  echo "install.sh: $(chromium --version 2>/dev/null | head -1)"
else
  if [ "$(id -u)" != 0 ]; then
    echo "install.sh: chromium missing; run as root or: apt-get install chromium" >&2; exit 1
  fi
  echo "install.sh: apt-get install chromium"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq chromium >/dev/null
  chromium --version 2>/dev/null | head -1
fi
