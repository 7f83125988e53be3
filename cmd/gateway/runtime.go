package main

import (
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"strconv"
	"time"
)

// defaultGCPercent is the garbage collector's target the serving commands
// (run, dev) use unless GOGC is set: the heap may grow by this percentage of
// the live heap before a collection starts. Go's default is 100. A gateway's
// heap is a small live set (configuration, policies, caches, connections)
// under a stream of short-lived per-request garbage, so collecting half as
// often costs a few megabytes of heap and saves CPU on every request
// (docs/performance.md, "Garbage collector"). GOGC (and GOMEMLIMIT, as a soft
// ceiling) still have the last word.
const defaultGCPercent = 200

// minProcs is the fewest Ps `run` uses with an audit journal, unless
// GOMAXPROCS is set. Go gives a process limited to one CPU (by affinity or a
// cgroup quota) one P, and a goroutine blocked in a file system call holds it
// until the runtime's monitor notices, which on an otherwise busy process can
// take milliseconds: each fsync of the journal would stop every request.
// Measured on one core, fail-closed audit served 1.9k requests/s with one P
// (about one decision per fsync) and 3.9k with two (about 18 per fsync).
// Without a journal nothing blocks that long, and two Ps would only
// time-share the one CPU.
const minProcs = 2

// tuneRuntime applies defaultGCPercent unless getenv("GOGC") is set, and,
// when journal is true, minProcs unless getenv("GOMAXPROCS") is set. It
// returns the GC percent (-1: off) and the number of Ps in effect.
func tuneRuntime(getenv func(string) string, journal bool) (gcPercent, procs int) {
	gcPercent = defaultGCPercent
	switch v := getenv("GOGC"); {
	case v == "off":
		gcPercent = -1
	case v != "":
		gcPercent = 100 // what the runtime makes of a value it can't read
		if n, err := strconv.Atoi(v); err == nil {
			gcPercent = n
		}
	default:
		debug.SetGCPercent(defaultGCPercent)
	}
	procs = runtime.GOMAXPROCS(0)
	if journal && getenv("GOMAXPROCS") == "" && procs < minProcs {
		runtime.GOMAXPROCS(minProcs)
		procs = minProcs
	}
	return gcPercent, procs
}

// A burst of traffic leaves its garbage on the heap until the next
// collection, and a process that has gone quiet may not run one for two
// minutes (the runtime's forced period): with defaultGCPercent, up to twice
// the live heap, held in resident memory beside the idle connections. When
// a second passes in which the gateway allocated almost nothing, after it
// allocated at least idleAfterBytes since it last did so, it collects and
// returns the free memory to the OS, once. Under steady load it never does.
const (
	idleTick       = time.Second
	idleQuietBytes = 256 << 10 // allocated in a tick: below this, the process is idle
	idleAfterBytes = 16 << 20  // allocated since the last release: below this, not worth a collection
)

// idleReleaser decides, from the total of bytes allocated read once a tick,
// when to release.
type idleReleaser struct{ last, released uint64 }

// observe takes the total allocated so far and reports whether to release now.
func (r *idleReleaser) observe(total uint64) bool {
	quiet := total-r.last < idleQuietBytes
	r.last = total
	if quiet && total-r.released >= idleAfterBytes {
		r.released = total
		return true
	}
	return false
}

// releaseWhenIdle runs idleReleaser until the returned stop is called (stop
// waits for it to end).
func releaseWhenIdle() (stop func()) {
	done, ended := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(ended)
		sample := []metrics.Sample{{Name: "/gc/heap/allocs:bytes"}}
		var r idleReleaser
		t := time.NewTicker(idleTick)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
			}
			metrics.Read(sample)
			if sample[0].Value.Kind() == metrics.KindUint64 && r.observe(sample[0].Value.Uint64()) {
				debug.FreeOSMemory()
			}
		}
	}()
	return func() { close(done); <-ended }
}
