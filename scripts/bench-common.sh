# Sourced by the bench scripts (bench.sh, bench-egress.sh, bench-audit.sh): what they share.
#   COUNT (default 6) rounds; OUT (default a new temporary folder) keeps the raw results;
#   BENCHSTAT is benchstat, installed when missing; bench_header prints the machine, the
#   date and the load average, which every figure in docs/performance.md is recorded with.
COUNT=${COUNT:-6}
OUT=${OUT:-$(mktemp -d)}
mkdir -p "$OUT"
command -v benchstat >/dev/null || GOFLAGS= go install golang.org/x/perf/cmd/benchstat@latest
BENCHSTAT=$(command -v benchstat || echo "$(go env GOPATH)/bin/benchstat")

bench_header() {
  echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(go version)"
  echo "date:    $(date -u '+%Y-%m-%d %H:%M UTC')"
  echo "load:    $(cut -d' ' -f1-3 /proc/loadavg) (1, 5, 15 min) at the start"
}
