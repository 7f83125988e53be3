#!/usr/bin/env bash
# Installs the shells whose completion scripts the tests run (gateway completion
# bash|zsh|fish); safe to run again (does nothing when they are there):
#   - zsh and fish from Debian's archive (bash is already there).
# Usage: scripts/shells/install.sh     (as root for apt, or with both installed)
set -euo pipefail
if command -v zsh >/dev/null && command -v fish >/dev/null; then
  echo "install.sh: $(zsh --version | head -1); $(fish --version)"
  exit 0
fi
if [ "$(id -u)" != 0 ]; then
  echo "install.sh: zsh or fish missing; run as root or: apt-get install zsh fish" >&2; exit 1
fi
echo "install.sh: apt-get install zsh fish"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends zsh fish >/dev/null
echo "install.sh: $(zsh --version | head -1); $(fish --version)"
