package gateway

import (
	"testing"
	"time"
)

// TestDecisionDelayOption: audit.journal.decisionDelay left out is the
// journal's default (zero), 0s never waits (negative), anything else as is.
func TestDecisionDelayOption(t *testing.T) {
	d := func(v time.Duration) *time.Duration { return &v }
	for _, tc := range []struct {
		in   *time.Duration
		want time.Duration
	}{
		{in: nil, want: 0},
		{in: d(0), want: -1},
		{in: d(3 * time.Millisecond), want: 3 * time.Millisecond},
	} {
		if got := decisionDelay(tc.in); got != tc.want {
			t.Errorf("decisionDelay(%v) = %v, want %v", tc.in, got, tc.want)
		}
	}
}
