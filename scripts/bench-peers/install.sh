#!/usr/bin/env bash
# Installs what scripts/bench-peers.sh needs; safe to run again (does nothing when there):
#   - Debian's wrk (HTTP/1.1 load), nghttp2-client (h2load, HTTP/2 load), nginx 1.22 and Caddy 2.6
#     (the peers); none is started: the benchmark runs each in the foreground on loopback.
# The open-loop load (latency at a fixed rate) is test/benchrig's own, built by the benchmark.
# Usage: scripts/bench-peers/install.sh     (as root for apt, or with the packages installed)
set -euo pipefail

missing=()
command -v wrk >/dev/null || missing+=(wrk)
command -v h2load >/dev/null || missing+=(nghttp2-client)
command -v nginx >/dev/null || missing+=(nginx)
command -v caddy >/dev/null || missing+=(caddy)
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" != 0 ]; then
    echo "install.sh: missing ${missing[*]}; run as root or: apt-get install ${missing[*]}" >&2; exit 1
  fi
  echo "install.sh: apt-get install ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  # Debian's packages would start nginx at boot; nothing here runs systemd, but make sure
  # nothing listens on the machine's ports.
  command -v service >/dev/null && service nginx stop >/dev/null 2>&1 || true
fi

