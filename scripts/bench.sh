#!/usr/bin/env bash
# Benchmarks of the hot paths, with the ratios the issues ask for.
#
#   scripts/bench.sh              run, print benchstat tables and the gateway/bare ratios
#   COUNT=10 scripts/bench.sh     more samples
#   OUT=dir scripts/bench.sh      keep raw results in dir (for benchstat across commits)
#   BASE=rev scripts/bench.sh     instead: the ingress benchmark at rev and at the work tree,
#                                 interleaved round by round, and benchstat rev vs now
#
# Figures go into docs/performance.md with the date and machine. Run on a quiet
# machine: load generator, gateway and upstream share the cores.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source scripts/bench-common.sh

bench_header
echo "raw:     $OUT"

if [ -n "${BASE:-}" ]; then
  # Across commits in the same run: both test binaries built now, every round
  # runs each variant of each once, in a fresh process.
  wt=$(mktemp -d)
  git worktree add --detach "$wt" "$BASE" >/dev/null
  trap 'git worktree remove --force "$wt"' EXIT
  (cd "$wt" && go test -c -o "$OUT/base.test" ./internal/ingress/)
  go test -c -o "$OUT/head.test" ./internal/ingress/
  : > "$OUT/base.txt"; : > "$OUT/head.txt"
  for i in $(seq 1 "$COUNT"); do
    for v in 'bare' 'gateway' 'gateway\+jwt' 'gateway\+policy100'; do
      for rev in base head; do
        "$OUT/$rev.test" -test.run '^$' -test.bench "BenchmarkIngress/proxy=$v\$/" -test.benchtime 2s -test.count 1 >> "$OUT/$rev.txt"
      done
    done
  done
  echo "base = $BASE ($(git rev-parse --short "$BASE")), head = work tree at $(git rev-parse --short HEAD)"
  "$BENCHSTAT" "$OUT/base.txt" "$OUT/head.txt"
  exit 0
fi

# Interleaved: each round runs every variant once, so drift in the machine's load
# (other processes, thermal, noisy neighbours) spreads over all variants alike
# instead of favouring whichever ran first.
go test -c -o "$OUT/ingress.test" ./internal/ingress/
: > "$OUT/ingress.txt"
# Each variant also runs in a fresh process, so no variant inherits the heap,
# goroutines or connections of the ones before it.
for i in $(seq 1 "$COUNT"); do
  for v in 'bare' 'gateway' 'gateway\+jwt' 'gateway\+policy100'; do
    "$OUT/ingress.test" -test.run '^$' -test.bench "BenchmarkIngress/proxy=$v\$/" -test.benchtime 2s -test.count 1 | tee -a "$OUT/ingress.txt"
  done
done
go test -run '^$' -bench 'BenchmarkDecide|BenchmarkNormalize' -count "$COUNT" ./internal/policy/... | tee "$OUT/policy.txt"
go test -run '^$' -bench 'BenchmarkAuthenticate|BenchmarkSession' -count "$COUNT" ./internal/oidc/ | tee "$OUT/oidc.txt"

echo
# Each variant against the bare ReverseProxy, with confidence intervals and p-values.
"$BENCHSTAT" -col /proxy "$OUT/ingress.txt"
echo
# Ratio of mean req/s: gateway variant / bare, per protocol.
awk '
  /^BenchmarkIngress\// {
    split($1, p, "/"); variant = p[2]; proto = p[3]
    sub(/^proxy=/, "", variant); sub(/^proto=/, "", proto); sub(/-[0-9]+$/, "", proto)
    for (i = 2; i <= NF; i++) if ($(i+1) == "req/s") { sum[variant, proto] += $i; n[variant, proto]++ }
    protos[proto] = 1; variants[variant] = 1
  }
  END {
    for (pr in protos) for (v in variants) if (v != "bare" && n["bare", pr] && n[v, pr]) {
      g = sum[v, pr] / n[v, pr]; b = sum["bare", pr] / n["bare", pr]
      printf "ratio %-16s %s: %.0f / %.0f req/s = %.2fx bare\n", v, pr, g, b, g / b
    }
  }' "$OUT/ingress.txt" | sort
