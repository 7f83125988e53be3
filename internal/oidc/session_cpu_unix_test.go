//go:build unix

package oidc

import (
	"syscall"
	"testing"
	"time"
)

// reportCPU adds "cpu-ns/op": the process's CPU time per operation. On a shared,
// busy machine wall-clock ns/op includes time spent waiting for a core; CPU time
// does not, so it is the figure to compare with a latency budget.
func reportCPU(b *testing.B) func() {
	var before syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &before)
	return func() {
		var after syscall.Rusage
		_ = syscall.Getrusage(syscall.RUSAGE_SELF, &after)
		cpu := time.Duration(after.Utime.Nano()+after.Stime.Nano()-before.Utime.Nano()-before.Stime.Nano()) * time.Nanosecond
		if b.N > 0 {
			b.ReportMetric(float64(cpu.Nanoseconds())/float64(b.N), "cpu-ns/op")
		}
	}
}
