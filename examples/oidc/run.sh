#!/usr/bin/env bash
# Starts the browser-login example: oidc-provider (test/oidcprovider) on
# 127.0.0.1:9000, the demo mTLS upstream on 127.0.0.1:9443 and the gateway on
# https://localhost:8443. Ctrl-C stops all three.
# Needs Go and Node.js with npm (22 LTS or later; 20.19 works with an "Unsupported runtime" warning). Makes (once, never committed):
#   pki/      throwaway CA, SVIDs and a localhost certificate (gateway dev pki)
#   secrets/  the client secret shared with the provider, and the session key
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
PROV="$ROOT/test/oidcprovider"
cd "$HERE"

if [ ! -d "$PROV/node_modules/oidc-provider" ]; then
  echo "run.sh: installing oidc-provider (npm ci in test/oidcprovider)"
  (cd "$PROV" && npm ci --no-audit --no-fund)
fi
mkdir -p .bin secrets
go build -o .bin/gateway "$ROOT/cmd/gateway"
[ -f pki/ca.crt ] || .bin/gateway dev pki -out pki
umask 077
[ -s secrets/client-secret ] || head -c 32 /dev/urandom | base64 | tr -d '\n' > secrets/client-secret
[ -s secrets/session.key ] || head -c 32 /dev/urandom | base64 > secrets/session.key

GW=https://localhost:8443
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT INT TERM

(cd "$PROV" && PORT=9000 CLIENT_ID=tollgate CLIENT_SECRET="$(cat "$HERE/secrets/client-secret")" \
  REDIRECT_URIS="$GW/.tollgate/local/oidc/callback" \
  POST_LOGOUT_REDIRECT_URIS="$GW/.tollgate/local/oidc/signed-out" \
  exec node provider.mjs) &
pids+=($!)
.bin/gateway dev echo -cert pki/echo.crt -key pki/echo.key -bundle pki/ca.crt \
  -allow spiffe://example.org/ns/tollgate/sa/gateway -listen 127.0.0.1:9443 &
pids+=($!)

cat <<MSG

  Open $GW/app in a browser (the certificate is signed by $HERE/pki/ca.crt:
  import it, or accept the warning). Log in as alice or bob, any password.
    $GW/app          any logged-in user; the echo shows X-Tollgate-User, -Groups, -Email
    $GW/admin        alice only (groups: admins); bob gets 403
    $GW/.tollgate/local/oidc/logout   ends the session here and at the provider

MSG
.bin/gateway run -c gateway.yaml &
pids+=($!)
wait "${pids[-1]}"
