#!/usr/bin/env bash
# run-local.sh — bring up a SPIRE server + agent on 127.0.0.1 for trying Tollgate by hand.
#
#   scripts/spire/run-local.sh [up]      start both, register this uid, print the Workload API socket
#   scripts/spire/run-local.sh stop RUN  stop both (by PID) and remove the RUN folder
#
# Environment (all optional):
#   SPIRE_BIN            folder with spire-server/spire-agent (default: built by install.sh into the cache)
#   TRUST_DOMAIN         default example.org
#   SVID_TTL             workload X.509 SVID TTL, default 1m (renewed at about half of it)
#   SPIRE_SERVER_PORT    agent-facing gRPC port, default 18081
#   SPIRE_SERVER_HEALTH  server /ready port, default 18080
#   SPIRE_AGENT_HEALTH   agent /ready port, default 18082
#   WORKLOAD_IDS         space-separated SPIFFE IDs registered for this uid
#                        (default: spiffe://$TRUST_DOMAIN/gateway spiffe://$TRUST_DOMAIN/upstream)
# Daemons run in their own session (setsid) so that Ctrl-C in this shell or a killed process group
# does not take them down half-way; stop them with the printed `stop` command.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

# alive PID: running and not a zombie (a PID 1 that reaps orphans late makes `kill -0` lie).
alive() { local s; s=$(ps -o stat= -p "$1" 2>/dev/null) && [ "${s#Z}" = "$s" ]; }

stop_run() {
  local run=${1:?usage: run-local.sh stop RUN}
  [ -f "$run/server.conf" ] || { echo "$run does not look like a run-local.sh folder" >&2; exit 1; }
  local p pid t0
  for p in agent server; do
    pid=$(cat "$run/$p.pid" 2>/dev/null) || continue
    t0=$(date +%s%N)
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 100); do alive "$pid" || break; sleep 0.1; done
    if alive "$pid"; then
      echo "spire-$p ($pid) ignored SIGTERM for 10 s: SIGKILL" >&2
      kill -KILL "$pid" 2>/dev/null || true
    else
      echo "spire-$p ($pid) stopped in $(( ($(date +%s%N) - t0) / 1000000 )) ms"
    fi
  done
  rm -rf "$run"
}

# wait_ready NAME PID URL LOG: poll a health endpoint for at most 30 s while the process lives.
wait_ready() {
  local end=$((SECONDS + 30))
  until curl -sf --noproxy '*' -o /dev/null "$3"; do
    alive "$2" || { echo "$1 exited; last log lines:" >&2; tail -20 "$4" >&2; return 1; }
    [ $SECONDS -lt $end ] || { echo "$1 not ready after 30 s; last log lines:" >&2; tail -20 "$4" >&2; return 1; }
    sleep 0.1
  done
}

render() { # render TEMPLATE OUT: replace @KEY@ markers
  sed -e "s#@RUN@#$RUN#g" -e "s#@TRUST_DOMAIN@#$TD#g" -e "s#@SVID_TTL@#$SVID_TTL#g" \
      -e "s#@SERVER_PORT@#$SERVER_PORT#g" -e "s#@SERVER_HEALTH_PORT@#$SERVER_HEALTH#g" \
      -e "s#@AGENT_HEALTH_PORT@#$AGENT_HEALTH#g" "$1" > "$2"
  if grep -v '^[[:space:]]*#' "$2" | grep -q '@[A-Z_]*@'; then
    echo "unreplaced marker in $2" >&2; return 1
  fi
}

up() {
  BIN=${SPIRE_BIN:-$("$HERE/install.sh" | tail -1)}
  TD=${TRUST_DOMAIN:-example.org}
  SVID_TTL=${SVID_TTL:-1m}
  SERVER_PORT=${SPIRE_SERVER_PORT:-18081}
  SERVER_HEALTH=${SPIRE_SERVER_HEALTH:-18080}
  AGENT_HEALTH=${SPIRE_AGENT_HEALTH:-18082}
  IDS=${WORKLOAD_IDS:-"spiffe://$TD/gateway spiffe://$TD/upstream"}

  RUN=$(mktemp -d /tmp/spire.XXXXXX)   # short: unix socket paths must stay < 108 bytes
  chmod 755 "$RUN"                     # mktemp makes 0700: other uids could not reach the socket
  mkdir -p "$RUN/workload" && chmod 755 "$RUN/workload"
  trap 'echo "bring-up failed; cleaning up" >&2; stop_run "$RUN" >&2' ERR
  render "$HERE/server.conf.tmpl" "$RUN/server.conf"
  render "$HERE/agent.conf.tmpl" "$RUN/agent.conf"
  local t0; t0=$(date +%s%N)
  ms() { echo $(( ($(date +%s%N) - t0) / 1000000 )); }

  setsid "$BIN/spire-server" run -config "$RUN/server.conf" > "$RUN/server.log" 2>&1 < /dev/null &
  echo $! > "$RUN/server.pid"
  wait_ready spire-server "$(cat "$RUN/server.pid")" "http://127.0.0.1:$SERVER_HEALTH/ready" "$RUN/server.log"
  echo "server ready: $(ms) ms"

  local ss=("$BIN/spire-server") sock=(-socketPath "$RUN/server.sock") alias="spiffe://$TD/tollgate-test/agent"
  "${ss[@]}" bundle show "${sock[@]}" > "$RUN/bundle.pem"
  local token; token=$("${ss[@]}" token generate "${sock[@]}" -spiffeID "$alias" -ttl 600 | awk '/^Token:/{print $2}')
  [ -n "$token" ] || { echo "no join token" >&2; false; }
  local id
  for id in $IDS; do
    "${ss[@]}" entry create "${sock[@]}" -parentID "$alias" -spiffeID "$id" -selector "unix:uid:$(id -u)" > /dev/null
  done

  setsid "$BIN/spire-agent" run -config "$RUN/agent.conf" -joinToken "$token" > "$RUN/agent.log" 2>&1 < /dev/null &
  echo $! > "$RUN/agent.pid"
  wait_ready spire-agent "$(cat "$RUN/agent.pid")" "http://127.0.0.1:$AGENT_HEALTH/ready" "$RUN/agent.log"
  echo "agent ready: $(ms) ms"
  trap - ERR

  cat <<EOF

SPIRE is running (trust domain $TD). Processes of uid $(id -u) get these SVIDs: $IDS
  run folder:   $RUN   (server.log, agent.log, bundle.pem)
  socket:       $RUN/workload/agent.sock
  export SPIFFE_ENDPOINT_SOCKET=unix://$RUN/workload/agent.sock
  check:        $BIN/spire-agent api fetch x509 -socketPath $RUN/workload/agent.sock
  more entries: $BIN/spire-server entry create -socketPath $RUN/server.sock -parentID $alias -spiffeID spiffe://$TD/x -selector unix:uid:$(id -u)
  stop:         $0 stop $RUN
EOF
}

case ${1:-up} in
  up) up ;;
  stop) stop_run "${2:-}" ;;
  *) echo "usage: $0 [up] | stop RUN" >&2; exit 2 ;;
esac
