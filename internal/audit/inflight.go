package audit

import (
	"sync"
	"time"
)

// inflightWindow is how long a decided request counts as a sibling of later
// decisions (recentDecisions): it counts from its decision until it
// completes, or for one to two windows, whichever is shorter. A WebSocket, a
// stream or a CONNECT tunnel stays open for minutes, and a gateway with a
// few of them is not busy.
const inflightWindow = 50 * time.Millisecond

// recentDecisions counts the fail-closed requests decided in the current
// window and the one before it that have not completed: the siblings a
// decision may wait for (JournalOptions.DecisionSiblings).
type recentDecisions struct {
	mu    sync.Mutex
	epoch int64  // the current window: Unix time / inflightWindow
	n     [2]int // open requests decided in window epoch (slot epoch&1) and epoch-1
}

// advance moves to the window of now, forgetting requests decided two or
// more windows ago. Called with mu held.
func (r *recentDecisions) advance(now time.Time) {
	e := now.UnixNano() / int64(inflightWindow)
	switch {
	case e <= r.epoch:
	case e == r.epoch+1:
		r.n[e&1] = 0 // the slot of epoch-1, now too old
		r.epoch = e
	default:
		r.n = [2]int{}
		r.epoch = e
	}
}

// decided counts a decision made at now and returns its window.
func (r *recentDecisions) decided(now time.Time) int64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.advance(now)
	r.n[r.epoch&1]++
	return r.epoch
}

// completed uncounts a request decided in window epoch, if it still counts.
func (r *recentDecisions) completed(epoch int64, now time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.advance(now)
	if (epoch == r.epoch || epoch == r.epoch-1) && r.n[epoch&1] > 0 {
		r.n[epoch&1]--
	}
}

// count returns the open requests decided in the last one to two windows.
func (r *recentDecisions) count(now time.Time) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.advance(now)
	return r.n[0] + r.n[1]
}
