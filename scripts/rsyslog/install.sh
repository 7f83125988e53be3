#!/usr/bin/env bash
# Installs what the syslog end-to-end test needs; safe to run again (does nothing when there):
#   - rsyslog and its OpenSSL stream driver from Debian's archive (rsyslogd, TLS input).
# The test writes its own configuration and starts rsyslogd on loopback, in the
# foreground, with no imuxsock/imklog: the machine's logging is not touched.
# Usage: scripts/rsyslog/install.sh     (as root for apt, or with rsyslog already installed)
set -euo pipefail
if command -v rsyslogd >/dev/null && ls /usr/lib/*/rsyslog/lmnsd_ossl.so >/dev/null 2>&1; then
  echo "install.sh: $(rsyslogd -v 2>/dev/null | head -1)"
  exit 0
fi
if [ "$(id -u)" != 0 ]; then
  echo "install.sh: rsyslog missing; run as root or: apt-get install rsyslog rsyslog-openssl" >&2; exit 1
fi
echo "install.sh: apt-get install rsyslog rsyslog-openssl"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends rsyslog rsyslog-openssl >/dev/null
rsyslogd -v | head -1
