package main

import (
	"runtime/debug"
	"testing"
)

func TestTuneGC(t *testing.T) {
	defer debug.SetGCPercent(debug.SetGCPercent(100))
	for _, tc := range []struct {
		gogc string
		want int // in effect
		set  int // what the runtime holds after tuneGC, from 100
	}{
		{"", defaultGCPercent, defaultGCPercent},
		{"50", 50, 100}, // GOGC is the runtime's own; tuneGC leaves it alone
		{"off", -1, 100},
		{"bogus", 100, 100},
	} {
		debug.SetGCPercent(100)
		got := tuneGC(func(k string) string {
			if k == "GOGC" {
				return tc.gogc
			}
			return ""
		})
		if got != tc.want {
			t.Errorf("GOGC=%q: tuneGC = %d, want %d", tc.gogc, got, tc.want)
		}
		if now := debug.SetGCPercent(100); now != tc.set {
			t.Errorf("GOGC=%q: the runtime's percent is %d, want %d", tc.gogc, now, tc.set)
		}
	}
}
