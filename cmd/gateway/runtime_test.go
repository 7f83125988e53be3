package main

import (
	"runtime"
	"runtime/debug"
	"testing"
)

func TestTuneRuntime(t *testing.T) {
	defer debug.SetGCPercent(debug.SetGCPercent(100))
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(0))
	for _, tc := range []struct {
		gogc, maxprocs string
		journal        bool
		procs          int // GOMAXPROCS before
		wantGC         int // in effect
		setGC          int // what the runtime holds after tuneRuntime, from 100
		wantProcs      int
	}{
		{gogc: "", journal: true, procs: 1, wantGC: defaultGCPercent, setGC: defaultGCPercent, wantProcs: minProcs},
		{gogc: "", journal: false, procs: 1, wantGC: defaultGCPercent, setGC: defaultGCPercent, wantProcs: 1},
		{gogc: "", journal: true, procs: 3, wantGC: defaultGCPercent, setGC: defaultGCPercent, wantProcs: 3},
		// The environment is the runtime's own: tuneRuntime leaves it alone.
		{gogc: "50", maxprocs: "1", journal: true, procs: 1, wantGC: 50, setGC: 100, wantProcs: 1},
		{gogc: "off", procs: 2, wantGC: -1, setGC: 100, wantProcs: 2},
		{gogc: "bogus", procs: 2, wantGC: 100, setGC: 100, wantProcs: 2},
	} {
		debug.SetGCPercent(100)
		runtime.GOMAXPROCS(tc.procs)
		env := map[string]string{"GOGC": tc.gogc, "GOMAXPROCS": tc.maxprocs}
		gc, procs := tuneRuntime(func(k string) string { return env[k] }, tc.journal)
		if gc != tc.wantGC || procs != tc.wantProcs {
			t.Errorf("GOGC=%q GOMAXPROCS=%q journal %v with %d Ps: tuneRuntime = %d, %d; want %d, %d", tc.gogc, tc.maxprocs, tc.journal, tc.procs, gc, procs, tc.wantGC, tc.wantProcs)
		}
		if now := debug.SetGCPercent(100); now != tc.setGC {
			t.Errorf("GOGC=%q: the runtime's percent is %d, want %d", tc.gogc, now, tc.setGC)
		}
		if now := runtime.GOMAXPROCS(0); now != tc.wantProcs {
			t.Errorf("GOMAXPROCS=%q with %d Ps: the runtime has %d, want %d", tc.maxprocs, tc.procs, now, tc.wantProcs)
		}
	}
}

// TestIdleReleaser: memory is released once per quiet spell, only after a
// burst worth a collection, never under load.
func TestIdleReleaser(t *testing.T) {
	const mb = 1 << 20
	for _, tc := range []struct {
		name   string
		totals []uint64 // bytes allocated so far, one a tick
		want   []bool
	}{
		{"steady load", []uint64{100 * mb, 200 * mb, 300 * mb, 400 * mb}, []bool{false, false, false, false}},
		{"a burst, then quiet: once", []uint64{100 * mb, 100 * mb, 100*mb + 1000, 100*mb + 2000}, []bool{false, true, false, false}},
		{"quiet after a small burst", []uint64{idleAfterBytes / 2, idleAfterBytes / 2}, []bool{false, false}},
		{"burst, quiet, burst, quiet", []uint64{50 * mb, 50 * mb, 90 * mb, 90 * mb}, []bool{false, true, false, true}},
		{"slow trickle is quiet, and waits for enough", []uint64{idleQuietBytes - 1, 2 * (idleQuietBytes - 1)}, []bool{false, false}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var r idleReleaser
			for i, total := range tc.totals {
				if got := r.observe(total); got != tc.want[i] {
					t.Errorf("tick %d (total %d): release = %v, want %v", i, total, got, tc.want[i])
				}
			}
		})
	}
}
