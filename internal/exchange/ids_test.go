package exchange

import (
	"strings"
	"sync"
	"testing"
)

// TestRequestIDs: ids are the process prefix and a base-36 counter, unique
// across batches and goroutines, and made a batch at a time (an id costs no
// allocation of its own).
func TestRequestIDs(t *testing.T) {
	g := &requestIDs{prefix: "0123456789abcdef-"}
	g.n.Store(1<<40 - 2)
	if a, b := g.next(), g.next(); a != "0123456789abcdef-e13wu1of" || b != "0123456789abcdef-e13wu1og" {
		t.Errorf("ids %q, %q", a, b)
	}
	if n := testing.AllocsPerRun(10*idBatchSize, func() { _ = g.next() }); n != 0 {
		t.Errorf("next allocates %v times per id, want a fraction of one", n)
	}

	const goroutines, each = 8, 3*idBatchSize + 5
	ids := make(chan string, goroutines*each)
	var wg sync.WaitGroup
	for range goroutines {
		wg.Go(func() {
			for range each {
				ids <- g.next()
			}
		})
	}
	wg.Wait()
	close(ids)
	seen := make(map[string]bool)
	for id := range ids {
		if seen[id] {
			t.Fatalf("id %q handed out twice", id)
		}
		seen[id] = true
		if n, ok := strings.CutPrefix(id, g.prefix); !ok || n == "" || strings.Trim(n, "0123456789abcdefghijklmnopqrstuvwxyz") != "" {
			t.Fatalf("id %q is not the prefix and a base-36 number", id)
		}
	}
	if id := NewRequestID(); !strings.HasPrefix(id, processIDs.prefix) || len(id) <= len(processIDs.prefix) {
		t.Errorf("NewRequestID() = %q", id)
	}
}
