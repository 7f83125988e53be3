package main

import (
	"runtime/debug"
	"strconv"
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

// tuneGC applies defaultGCPercent unless getenv("GOGC") is set, and returns
// the percentage in effect (-1: GOGC=off).
func tuneGC(getenv func(string) string) int {
	if v := getenv("GOGC"); v != "" {
		if v == "off" {
			return -1
		}
		if n, err := strconv.Atoi(v); err == nil {
			return n
		}
		return 100 // what the runtime makes of a value it can't read
	}
	debug.SetGCPercent(defaultGCPercent)
	return defaultGCPercent
}
