#!/usr/bin/env bash
# Egress benchmarks (issue 9, "Performance") and the three ratios it sets targets for:
#
#   gateway / bare         BenchmarkEgress: workload (mTLS) → proxy → HTTPS destination,
#                          req/s of the egress gateway (policy, SSRF guard, audit) against a
#                          bare Go forward proxy with the same TLS legs        target ≥ 0.9
#   gateway / direct       BenchmarkEgressConnect: bulk MB/s of a TLS stream through the
#                          gateway's CONNECT tunnel against a direct TLS connection  ≥ 0.9
#   gateway / smokescreen  the same CONNECT workload through stripe/smokescreen     ≥ 1.0
#
# plus, for reading them: BenchmarkTunnel (the splice alone, no listener) and
# smokescreen / direct.
#
#   scripts/bench-egress.sh             6 rounds, benchstat tables, ratios
#   COUNT=10 scripts/bench-egress.sh    more rounds
#   BENCHTIME=3s                        per variant and round (default 2s)
#   OUT=dir                             keep the raw results in dir
#   SMOKESCREEN_BIN=path                use this smokescreen instead of building it
#
# Every round runs each variant once, each in a fresh process, so drift in the machine's load
# hits all variants alike and no variant inherits another's heap, goroutines or connections.
# The workload, the proxy and the destination share the machine's cores: these are relative
# figures. Figures go into docs/performance.md with the date, the machine and the load average.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
BENCHTIME=${BENCHTIME:-2s}
source scripts/bench-common.sh

# Smokescreen is built from the Go module proxy (tools/smokescreen); if that fails the
# variant is skipped by the benchmark itself, and the ratio says so.
if [ -z "${SMOKESCREEN_BIN:-}" ]; then
  if bin=$(scripts/smokescreen/install.sh | tail -1) && [ -x "$bin" ]; then
    SMOKESCREEN_BIN=$bin
  else
    echo "smokescreen could not be built (see above): the smokescreen variant will be skipped" >&2
    SMOKESCREEN_BIN=
  fi
fi
export SMOKESCREEN_BIN

bench_header
echo "smokescreen: ${SMOKESCREEN_BIN:-none}"
echo "raw:     $OUT"

go test -c -o "$OUT/egress.test" ./internal/egress/
: > "$OUT/egress.txt"
run() { # bench-regexp
  # The test binary runs in the package folder, as go test would.
  (cd internal/egress && "$OUT/egress.test" -test.run '^$' -test.bench "$1" -test.benchtime "$BENCHTIME" -test.count 1) |
    tee -a "$OUT/egress.txt" | grep -E '^(Benchmark|--- SKIP|--- FAIL|    )' || true
}
for i in $(seq 1 "$COUNT"); do
  echo "--- round $i/$COUNT (load $(cut -d' ' -f1 /proc/loadavg))"
  for v in 'bare' 'gateway'; do run "^BenchmarkEgress\$/^proxy=$v\$/^proto=h1\$"; done
  for v in 'direct' 'gateway' 'smokescreen'; do run "^BenchmarkEgressConnect\$/^$v\$"; done
  for v in 'direct' 'tunnel'; do run "^BenchmarkTunnel\$/^$v\$"; done
done
echo "load:    $(cut -d' ' -f1-3 /proc/loadavg) (1, 5, 15 min) at the end"

echo
# Each variant against the first, with confidence intervals and p-values.
"$BENCHSTAT" -filter '.name:Egress' -col /proxy "$OUT/egress.txt"
echo
# benchstat compares columns of key=value sub-benchmarks: name the variants so.
sed -E 's#^Benchmark(EgressConnect|Tunnel)/([a-z]+)-#Benchmark\1/via=\2-#' "$OUT/egress.txt" > "$OUT/egress-via.txt"
"$BENCHSTAT" -filter '.name:EgressConnect' -col /via "$OUT/egress-via.txt"
echo
"$BENCHSTAT" -filter '.name:EgressConnect .unit:B/s -/via:direct' -col /via@'(smokescreen gateway)' "$OUT/egress-via.txt"
echo
"$BENCHSTAT" -filter '.name:Tunnel .unit:B/s' -col /via "$OUT/egress-via.txt"
echo
# Ratios of medians (what benchstat shows), per benchmark and variant.
awk '
  function median(key,   n, i, j, t, a) {
    n = cnt[key]; if (!n) return 0
    for (i = 1; i <= n; i++) a[i] = val[key, i]
    for (i = 2; i <= n; i++) { t = a[i]; for (j = i - 1; j > 0 && a[j] > t; j--) a[j+1] = a[j]; a[j+1] = t }
    return n % 2 ? a[(n+1)/2] : (a[n/2] + a[n/2+1]) / 2
  }
  function ratio(label, num, den, unit, target,   a, b, verdict) {
    a = median(num); b = median(den)
    if (!a || !b) { printf "%-24s n/a (no %s results)\n", label, (!a ? num : den); return }
    verdict = (target == "") ? "" : (a / b >= target ? "  target >= " target ": met" : "  target >= " target ": NOT met")
    printf "%-24s %.2fx   (%.4g / %.4g %s, medians of %d and %d)%s\n", label, a / b, a, b, unit, cnt[num], cnt[den], verdict
  }
  /^Benchmark/ {
    name = $1; sub(/-[0-9]+$/, "", name)
    for (i = 2; i < NF; i++) if ($(i+1) == "req/s" || $(i+1) == "MB/s") val[name, ++cnt[name]] = $i
  }
  END {
    ratio("gateway / bare", "BenchmarkEgress/proxy=gateway/proto=h1", "BenchmarkEgress/proxy=bare/proto=h1", "req/s", 0.9)
    ratio("gateway / direct", "BenchmarkEgressConnect/gateway", "BenchmarkEgressConnect/direct", "MB/s", 0.9)
    ratio("gateway / smokescreen", "BenchmarkEgressConnect/gateway", "BenchmarkEgressConnect/smokescreen", "MB/s", 1.0)
    ratio("smokescreen / direct", "BenchmarkEgressConnect/smokescreen", "BenchmarkEgressConnect/direct", "MB/s", "")
    ratio("tunnel alone / direct", "BenchmarkTunnel/tunnel", "BenchmarkTunnel/direct", "MB/s", "")
  }' "$OUT/egress.txt"
