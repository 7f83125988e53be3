#!/usr/bin/env bash
# Side by side, each in its own process: Tollgate's full ingress path against Go's bare reverse
# proxy and the peers users would pick instead (issue 11's table and targets).
#
#   scripts/bench-peers.sh               6 rounds (benchstat's confidence intervals need 6),
#                                        benchstat tables, the ratios against bare
#   COUNT=9 DUR=10 scripts/bench-peers.sh
#   OUT=dir                              keep the raw results (benchstat across commits)
#   TARGETS="bare tollgate"              a subset (bare always runs: it is the baseline)
#   GATEWAY_ENV="GOMAXPROCS=1"           environment for Tollgate's process
#   TARGETS="tollgate tollgate-gogc100"  tollgate-gogcN: Tollgate with GOGC=N instead of its default
#   TARGETS="tollgate tollgate-procs2"   tollgate-procsN: Tollgate with GOMAXPROCS=N (on its one core)
#   TARGETS="tollgate tollgate-journal tollgate-failclosed"
#                                        the audit trail's cost (issue 10): the full path with its
#                                        events to the journal (group-commit fsync, under TMPDIR or
#                                        OUT) feeding a webhook sink, and the same fail-closed
#   TARGETS="tollgate-failclosed tollgate-failclosed-procs4"
#                                        the same with GOMAXPROCS=N (on its one core)
#   PORT_BASE=18440                      loopback ports PORT_BASE..+6 (below the ephemeral range)
#   PIN=0                                don't pin: every process may run on every core
#
# By default (PIN=1, with 2 or more cores) the target runs alone on core 0 and the load generators
# and the upstream on the others (taskset), so the load cannot take CPU from the target and the
# target's figures are per core: a Go target sees GOMAXPROCS=1 (Tollgate with a journal raises its
# own to 2, see cmd/gateway/runtime.go), nginx runs one worker.
#
# Targets, every one TLS in (h2 and http/1.1) and mTLS out to the same upstream, which accepts only
# the gateway's SPIFFE ID and answers "ok\n" (test/benchrig):
#   bare      httputil.ReverseProxy with Go's default transport and go-spiffe's mTLS config
#   tollgate  the full path: bearer JWT checked on every request, 100 AuthorizationPolicy rules,
#             mTLS out to a verified SPIFFE ID, every event audited to a file
#   caddy     Caddy 2.6 (Debian), reverse_proxy with tls_client_auth
#   nginx     nginx 1.22 (Debian), proxy_ssl_certificate, upstream keepalive 64
# Every request carries the same bearer token; only Tollgate checks it.
#
# Each round starts every target fresh (in a rotated order, bare first so that the latency run
# knows bare's maximum), warms it up for 1 s, then measures:
#   req/s          closed loop, CONNS keep-alive connections for DUR s: wrk (HTTP/1.1), h2load
#                  (HTTP/2, one stream per connection); any non-2xx or socket error fails the run
#   cpu-µs/op      the target's own CPU time (user + system, its children included) per request,
#                  from /proc, during that run
#   p50/p99 µs     open loop (benchrig open) at half of bare's req/s in the same round, over CONNS
#                  connections, DUR s; latency from when each request was due
#   B/conn         resident memory per idle keep-alive TLS connection (IDLE=1000 connections,
#                  HTTP/1.1, one request each), on a fresh process of the target
# Load generator, target and upstream share the machine's cores: figures are relative.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
COUNT=${COUNT:-6}
source scripts/bench-common.sh
DUR=${DUR:-5}
CONNS=${CONNS:-64}
IDLE=${IDLE:-1000}
TARGETS=${TARGETS:-tollgate caddy nginx}
scripts/bench-peers/install.sh

bench_header
echo "raw:     $OUT"
echo "load:    wrk/h2load $CONNS connections, $DUR s; open loop at half of bare's req/s; $IDLE idle connections"

BIN=$OUT/bin RIG=$OUT/rig
mkdir -p "$BIN"
go build -o "$BIN/benchrig" ./test/benchrig
go build -o "$BIN/gateway" ./cmd/gateway
rm -rf "$RIG"
B=${PORT_BASE:-18440}
P_BARE=$B P_TOLLGATE=$((B + 1)) P_NGINX=$((B + 2)) P_CADDY=$((B + 3)) P_UP=$((B + 4)) P_ADMIN=$((B + 5)) P_SINK=$((B + 6))
"$BIN/benchrig" setup -dir "$RIG" -upstream 127.0.0.1:$P_UP -gateway 127.0.0.1:$P_TOLLGATE -admin 127.0.0.1:$P_ADMIN -sink 127.0.0.1:$P_SINK \
  -nginx 127.0.0.1:$P_NGINX -caddy 127.0.0.1:$P_CADDY
TOKEN=$(cat "$RIG/token")
CA=$RIG/pki/ca.crt
TICK_US=$(( 1000000 / $(getconf CLK_TCK) ))

PIN=${PIN:-1}
if [ "$PIN" = 1 ] && [ "$(nproc)" -ge 2 ]; then
  TARGET_CPUS=0 LOAD_CPUS=1-$(( $(nproc) - 1 )) WORKERS=1
  ON_TARGET=(taskset -c "$TARGET_CPUS") ON_LOAD=(taskset -c "$LOAD_CPUS")
else
  PIN=0 WORKERS=2 ON_TARGET=() ON_LOAD=()
fi
echo "pinning: $([ "$PIN" = 1 ] && echo "target on core $TARGET_CPUS, load and upstream on $LOAD_CPUS" || echo none)"
sed -i "s/^worker_processes .*/worker_processes $WORKERS;/" "$RIG/nginx/nginx.conf"

# alive PID: running and not a zombie.
alive() { local s; s=$(ps -o stat= -p "$1" 2>/dev/null) && [ "${s#Z}" = "$s" ]; }
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done; }
trap cleanup EXIT

# start NAME READY CMD...: runs CMD in its own session (so a harness killing this script's process
# group does not leave it behind), waits until the shell test READY passes (30 s at most), sets PID.
start() {
  local name=$1 ready=$2; shift 2
  (cd "$RIG" && exec setsid "$@" > "$OUT/$name.log" 2>&1 < /dev/null) &
  PID=$!
  PIDS+=("$PID")
  for _ in $(seq 1 300); do
    if eval "$ready" >/dev/null 2>&1; then return 0; fi
    alive "$PID" || { echo "$name exited:"; tail -5 "$OUT/$name.log"; exit 1; }
    sleep 0.1
  done
  echo "$name not ready after 30 s:"; tail -5 "$OUT/$name.log"; exit 1
}
stop() {
  kill -TERM "$1" 2>/dev/null || true
  for _ in $(seq 1 100); do alive "$1" || return 0; sleep 0.1; done
  kill -KILL "$1" 2>/dev/null || true
}

port() { case $1 in bare) echo $P_BARE ;; tollgate*) echo $P_TOLLGATE ;; nginx) echo $P_NGINX ;; caddy) echo $P_CADDY ;; esac; }
start_target() {
  local url="https://localhost:$(port "$1")/api/v1/items/42?x=1"
  local ready="curl -sf -o /dev/null --cacert '$CA' -H 'Authorization: Bearer $TOKEN' '$url'"
  case $1 in
    bare) start bare "$ready" "${ON_TARGET[@]}" "$BIN/benchrig" bare -dir "$RIG" -listen 127.0.0.1:$P_BARE -upstream 127.0.0.1:$P_UP ;;
    tollgate) start tollgate "$ready" "${ON_TARGET[@]}" env ${GATEWAY_ENV:-} "$BIN/gateway" run -c gateway.yaml -log-level warn ;;
    tollgate-journal*|tollgate-failclosed*)
      # tollgate-failclosed-procs4: the same with GOMAXPROCS=4
      local cfg=${1#tollgate-} procs=()
      [[ $cfg == *-procs* ]] && procs=(GOMAXPROCS="${cfg##*-procs}") && cfg=${cfg%-procs*}
      rm -rf "$RIG/audit/journal"
      start "$1" "$ready" "${ON_TARGET[@]}" env ${GATEWAY_ENV:-} "${procs[@]}" "$BIN/gateway" run -c "gateway-$cfg.yaml" -log-level warn ;;
    tollgate-gogc*) start "$1" "$ready" "${ON_TARGET[@]}" env ${GATEWAY_ENV:-} GOGC="${1#tollgate-gogc}" "$BIN/gateway" run -c gateway.yaml -log-level warn ;;
    tollgate-procs*) start "$1" "$ready" "${ON_TARGET[@]}" env ${GATEWAY_ENV:-} GOMAXPROCS="${1#tollgate-procs}" "$BIN/gateway" run -c gateway.yaml -log-level warn ;;
    nginx) start nginx "$ready" "${ON_TARGET[@]}" nginx -p "$RIG/nginx" -c "$RIG/nginx/nginx.conf" -g 'daemon off;' ;;
    caddy) start caddy "$ready" "${ON_TARGET[@]}" env XDG_DATA_HOME="$RIG/caddy/data" XDG_CONFIG_HOME="$RIG/caddy/config" \
             caddy run --config "$RIG/caddy/Caddyfile" --adapter caddyfile ;;
  esac
}

start upstream "bash -c '</dev/tcp/127.0.0.1/$P_UP'" "${ON_LOAD[@]}" "$BIN/benchrig" upstream -dir "$RIG" -listen 127.0.0.1:$P_UP
start webhook "bash -c '</dev/tcp/127.0.0.1/$P_SINK'" "${ON_LOAD[@]}" "$BIN/benchrig" webhook -dir "$RIG" -listen 127.0.0.1:$P_SINK

RES=$OUT/peers.txt
: > "$RES"
# closed NAME PID PROTO URL: one closed-loop run; appends its line and prints req/s.
closed() {
  local t=$1 pid=$2 proto=$3 url=$4 c0 c1 n rps out
  c0=$("$BIN/benchrig" cpu "$pid")
  if [ "$proto" = h1 ]; then
    out=$("${ON_LOAD[@]}" wrk -t1 -c"$CONNS" -d"${DUR}s" -H "Authorization: Bearer $TOKEN" "$url")
    if grep -qE 'Non-2xx|Socket errors' <<<"$out"; then echo "$t $proto: errors:" >&2; echo "$out" >&2; exit 1; fi
    n=$(awk '/requests in/ {print $1}' <<<"$out")
    rps=$(awk '/^Requests\/sec/ {print $2}' <<<"$out")
  else
    out=$("${ON_LOAD[@]}" h2load -t1 -c"$CONNS" -m1 -D"$DUR" -H "authorization: Bearer $TOKEN" "$url")
    n=$(awk '/^requests:/ {print $2}' <<<"$out")
    # "requests: N total, S started, D done, OK succeeded, F failed, E errored, T timeout"; a
    # non-2xx answer counts as failed.
    local ok; ok=$(awk '/^requests:/ {gsub(",", ""); print $8}' <<<"$out")
    if [ "$ok" != "$n" ] || [ "$n" = 0 ]; then echo "$t $proto: not every request succeeded:" >&2; echo "$out" >&2; exit 1; fi
    rps=$(awk '/^finished in/ {gsub(",", ""); print $4}' <<<"$out")
  fi
  c1=$("$BIN/benchrig" cpu "$pid")
  echo "BenchmarkPeers/target=$t/proto=$proto $n $rps req/s $(awk -v d=$((c1 - c0)) -v n="$n" -v u="$TICK_US" 'BEGIN {printf "%.1f", d * u / n}') cpu-µs/op" >> "$RES"
  echo "$rps"
}
# open NAME PROTO URL RATE: one open-loop run at RATE req/s (benchrig open: latency from when each
# request was due, so waiting for a connection counts); appends its line.
open() {
  local t=$1 proto=$2 url=$3 rate=$4 out
  out=$("${ON_LOAD[@]}" "$BIN/benchrig" open -url "$url" -ca "$CA" -rate "$rate" -d "${DUR}s" -c "$CONNS" -h2="$([ "$proto" = h2 ] && echo true || echo false)" \
          -H "Authorization: Bearer $TOKEN") || { echo "$t $proto: open loop failed" >&2; exit 1; }
  read -r n p50 p99 max _ <<<"$out"
  echo "BenchmarkPeersLatency/target=$t/proto=$proto $n $p50 p50-µs $p99 p99-µs $max max-µs" >> "$RES"
}

targets=($TARGETS)
for i in $(seq 1 "$COUNT"); do
  echo "--- round $i/$COUNT (load $(cut -d' ' -f1 /proc/loadavg))"
  # Rotate the peers' order each round; bare goes first.
  k=$(( (i - 1) % ${#targets[@]} ))
  order=(bare "${targets[@]:k}" "${targets[@]:0:k}")
  declare -A half=()
  for t in "${order[@]}"; do
    start_target "$t"
    pid=$PID
    url="https://localhost:$(port "$t")/api/v1/items/42?x=1"
    "${ON_LOAD[@]}" wrk -t1 -c"$CONNS" -d1s -H "Authorization: Bearer $TOKEN" "$url" > /dev/null # warm-up
    for proto in h1 h2; do
      rps=$(closed "$t" "$pid" "$proto" "$url")
      [ "$t" = bare ] && half[$proto]=$(awk -v r="$rps" 'BEGIN {printf "%d", r / 2}')
      open "$t" "$proto" "$url" "${half[$proto]}"
    done
    stop "$pid"
    # Memory per idle connection on a fresh process, whose heap holds no garbage of the load.
    start_target "$t"
    idle=$("${ON_LOAD[@]}" "$BIN/benchrig" idle -url "$url" -ca "$CA" -pid "$PID" -n "$IDLE" -H "Authorization: Bearer $TOKEN")
    echo "BenchmarkPeersIdle/target=$t ${idle% *} ${idle#* } B/conn" >> "$RES"
    stop "$PID"
    # The full path's audit file grows by hundreds of MB per target and round: start each target
    # with an empty one, so a run does not fill the disk (the file sink creates it again).
    rm -f "$RIG/audit/audit.log"
    grep -E "target=$t(/|\s)" "$RES" | tail -5
  done
done
echo "load:    $(cut -d' ' -f1-3 /proc/loadavg) (1, 5, 15 min) at the end"
echo
"$BENCHSTAT" -col /target "$RES"
echo
# Medians per target, and the medians of the paired ratios: each round's figure over bare's in the
# same round (a drift of the machine between rounds cancels out of those).
awk '
  function median(a, n,   i, j, t) {
    for (i = 2; i <= n; i++) for (j = i; j > 1 && a[j-1] > a[j]; j--) { t = a[j]; a[j] = a[j-1]; a[j-1] = t }
    return n % 2 ? a[(n+1)/2] : (a[n/2] + a[n/2+1]) / 2
  }
  /^Benchmark/ {
    split($1, p, "/"); t = p[2]; sub(/^target=/, "", t); pr = p[3]; sub(/^proto=/, "", pr)
    if ($1 == "BenchmarkPeers/target=bare/proto=h1") round++
    if (!(t in tseen)) { tseen[t]; ts[++nt] = t }
    for (i = 3; i < NF; i += 2) v[round, t, pr, $(i+1)] = $i
  }
  # med(t, pr, unit): the median of t over the rounds; ratio(...): of t / bare, round by round.
  function med(t, pr, unit,   a, n, k) {
    n = 0; for (k = 1; k <= round; k++) if ((k, t, pr, unit) in v) a[++n] = v[k, t, pr, unit]
    return n ? median(a, n) : 0
  }
  function ratio(t, pr, unit,   a, n, k) {
    n = 0; for (k = 1; k <= round; k++) if ((k, t, pr, unit) in v && v[k, "bare", pr, unit] > 0) a[++n] = v[k, t, pr, unit] / v[k, "bare", pr, unit]
    return n ? median(a, n) : 0
  }
  END {
    printf "medians of %d rounds; \"x bare\": median of the per-round ratios\n", round
    printf "%-17s %-5s %8s %7s %8s %7s %8s %7s %11s %7s\n", "target", "proto", "req/s", "x bare", "cpu-µs", "x bare", "p99-µs", "x bare", "idle B/conn", "x bare"
    for (y = 1; y <= nt; y++) for (q = 1; q <= 2; q++) {
      t = ts[y]; pr = q == 1 ? "h1" : "h2"
      printf "%-17s %-5s %8.0f %7.2f %8.1f %7.2f %8.0f %7.2f", t, pr, med(t, pr, "req/s"), ratio(t, pr, "req/s"),
        med(t, pr, "cpu-µs/op"), ratio(t, pr, "cpu-µs/op"), med(t, pr, "p99-µs"), ratio(t, pr, "p99-µs")
      if (q == 1) printf " %11.0f %7.2f", med(t, "", "B/conn"), ratio(t, "", "B/conn")
      printf "\n"
    }
  }' "$RES"
