#!/usr/bin/env bash
# Audit trail benchmarks (issue 10, "Performance") and the ratios it sets targets for:
#
#   gateway+journal / gateway+noaudit     the ingress path with audit to the journal
#                                         (group-commit fsync) and one sink fed from it
#                                         against the same path without audit    target >= 0.95
#   gateway+failclosed / gateway+noaudit  the same, fail-closed: each request waits for
#                                         its decision record's fsync           target >= 0.85
#   BenchmarkJournal/journal              the journal alone, events/s           target >= 100,000
#
#   scripts/bench-audit.sh             6 rounds, benchstat tables, ratios
#   COUNT=10 scripts/bench-audit.sh    more rounds
#   OUT=dir                            keep the raw results in dir
#   CONNS=64 scripts/bench-audit.sh    64 closed-loop clients instead of 8 (with 8, fail-closed
#                                      measures the fsync's latency more than its cost)
#
# Each ingress variant also reports cpu-µs/op: the CPU time of the whole process (client, gateway,
# upstream; user and kernel, fsync included) per request, steadier than req/s on a shared machine.
#
# Every round runs each variant once, each in a fresh process, so drift in the machine's
# load hits all variants alike. The journal is written under the system's temporary
# directory (TMPDIR): its fsync is what the figures measure, so say which disk that is.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source scripts/bench-common.sh

bench_header
echo "journal: $(df -h "${TMPDIR:-/tmp}" | awk 'NR==2 {print $1, $NF}') (TMPDIR)"
echo "raw:     $OUT"

go test -c -o "$OUT/ingress.test" ./internal/ingress/
go test -c -o "$OUT/audit.test" ./internal/audit/
: > "$OUT/ingress.txt"
: > "$OUT/journal.txt"
for i in $(seq 1 "$COUNT"); do
  echo "--- round $i/$COUNT (load $(cut -d' ' -f1 /proc/loadavg))"
  for v in 'gateway\+noaudit' 'gateway' 'gateway\+journal' 'gateway\+failclosed'; do
    "$OUT/ingress.test" -test.run '^$' -test.bench "BenchmarkIngress/proxy=$v\$/proto=h1\$" -test.benchtime 2s -test.count 1 -conns "${CONNS:-8}" |
      tee -a "$OUT/ingress.txt" | grep -E '^Benchmark' || true
  done
  (cd internal/audit && "$OUT/audit.test" -test.run '^$' -test.bench 'BenchmarkJournal' -test.benchtime 2s -test.count 1) |
    tee -a "$OUT/journal.txt" | grep -E '^Benchmark' || true
done
echo "load:    $(cut -d' ' -f1-3 /proc/loadavg) (1, 5, 15 min) at the end"
echo
"$BENCHSTAT" -col /proxy "$OUT/ingress.txt"
echo
"$BENCHSTAT" "$OUT/journal.txt"
echo
# Medians: variant / noaudit, and the journal's events/s.
awk -v out="$OUT" '
  function median(a, n,   i, j, t) {
    for (i = 2; i <= n; i++) for (j = i; j > 1 && a[j-1] > a[j]; j--) { t = a[j]; a[j] = a[j-1]; a[j-1] = t }
    return n % 2 ? a[(n+1)/2] : (a[n/2] + a[n/2+1]) / 2
  }
  FILENAME ~ /ingress.txt$/ && /^BenchmarkIngress\// {
    split($1, p, "/"); v = p[2]; sub(/^proxy=/, "", v)
    for (i = 2; i <= NF; i++) {
      if ($(i+1) == "req/s") { n[v]++; r[v, n[v]] = $i }
      if ($(i+1) == "cpu-µs/op") { nc[v]++; cpu[v, nc[v]] = $i }
    }
  }
  FILENAME ~ /journal.txt$/ && /^BenchmarkJournal\/journal/ {
    for (i = 2; i <= NF; i++) if ($(i+1) == "events/s") { nj++; ej[nj] = $i }
  }
  END {
    for (v in n) { delete a; for (i = 1; i <= n[v]; i++) a[i] = r[v, i]; m[v] = median(a, n[v]) }
    if (!m["gateway+noaudit"]) { print "no gateway+noaudit figures"; exit 1 }
    printf "gateway (in-memory audit) / noaudit   %.2fx   (%.0f / %.0f req/s)\n", m["gateway"] / m["gateway+noaudit"], m["gateway"], m["gateway+noaudit"]
    t = m["gateway+journal"] / m["gateway+noaudit"]
    printf "gateway+journal / noaudit             %.2fx   (%.0f / %.0f req/s)  target >= 0.95: %s\n", t, m["gateway+journal"], m["gateway+noaudit"], (t >= 0.95 ? "met" : "NOT met")
    t = m["gateway+failclosed"] / m["gateway+noaudit"]
    printf "gateway+failclosed / noaudit          %.2fx   (%.0f / %.0f req/s)  target >= 0.85: %s\n", t, m["gateway+failclosed"], m["gateway+noaudit"], (t >= 0.85 ? "met" : "NOT met")
    for (v in nc) { delete a; for (i = 1; i <= nc[v]; i++) a[i] = cpu[v, i]; mc[v] = median(a, nc[v]) }
    if (mc["gateway+noaudit"]) for (v in mc) if (v != "gateway+noaudit")
      printf "cpu per request, %s / noaudit: %.2fx   (%.0f / %.0f µs, the whole process)\n", v, mc[v] / mc["gateway+noaudit"], mc[v], mc["gateway+noaudit"]
    e = median(ej, nj)
    printf "journal alone                         %.0f events/s (median of %d)  target >= 100000: %s\n", e, nj, (e >= 100000 ? "met" : "NOT met")
  }' "$OUT/ingress.txt" "$OUT/journal.txt"
