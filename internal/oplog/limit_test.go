package oplog

import (
	"strconv"
	"testing"
	"time"
)

// A flood of distinct keys (error text an attacker can vary) keeps the map
// bounded, and forgets idle keys before one that still owes a suppressed count.
func TestLimiterMemoryIsBounded(t *testing.T) {
	l := newLimiter(1, time.Second, nil)
	l.max = 8
	t0 := time.Unix(0, 0)
	if ok, _ := l.allow([]byte("busy"), t0); !ok {
		t.Fatal("first record of a key held back")
	}
	if ok, _ := l.allow([]byte("busy"), t0); ok {
		t.Fatal("second record within the interval passed")
	}
	for i := range 100 {
		// Each distinct key passes: it has its own bucket.
		if ok, _ := l.allow([]byte("k"+strconv.Itoa(i)), t0.Add(time.Duration(i)*time.Second)); !ok {
			t.Fatalf("distinct key %d held back", i)
		}
		if len(l.keys) > l.max {
			t.Fatalf("%d keys tracked, max %d", len(l.keys), l.max)
		}
	}
	// Every distinct key idled one interval and was evicted first; "busy" still
	// owes its held-back record, unless arbitrary eviction took it.
	ok, held := l.allow([]byte("busy"), t0.Add(time.Hour))
	if !ok || held != 1 {
		t.Errorf("busy after the flood: ok=%v held=%d, want true 1", ok, held)
	}
}

func TestLimiterRefillIsExact(t *testing.T) {
	tests := []struct {
		name       string
		burst      int
		at         []time.Duration // times of records, from the first
		wantPassed []bool
	}{
		{name: "burst then one per interval", burst: 2, at: []time.Duration{0, 0, 0, 999 * time.Millisecond, time.Second, time.Second}, wantPassed: []bool{true, true, false, false, true, false}},
		{name: "partial intervals add up", burst: 2, at: []time.Duration{0, 0, 1500 * time.Millisecond, 1999 * time.Millisecond, 2 * time.Second}, wantPassed: []bool{true, true, true, false, true}},
		{name: "a full bucket banks nothing", burst: 1, at: []time.Duration{0, 1500 * time.Millisecond, 2 * time.Second, 2499 * time.Millisecond, 2500 * time.Millisecond}, wantPassed: []bool{true, true, false, false, true}},
		{name: "idle time does not bank more than the burst", burst: 2, at: []time.Duration{0, time.Hour, time.Hour, time.Hour}, wantPassed: []bool{true, true, true, false}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			l := newLimiter(tc.burst, time.Second, nil)
			t0 := time.Unix(0, 0)
			for i, at := range tc.at {
				if ok, _ := l.allow([]byte("k"), t0.Add(at)); ok != tc.wantPassed[i] {
					t.Errorf("record %d at %v: passed=%v, want %v", i, at, ok, tc.wantPassed[i])
				}
			}
		})
	}
}
