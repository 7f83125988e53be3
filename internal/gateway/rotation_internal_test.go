package gateway

import (
	"net/http"
	"testing"
	"time"
)

// nextExpiry prunes closed pools from the retired list in place; the list
// kept must be the pruned one, or a later walk (CloseIdleConnections at
// shutdown) meets the cleared slots. Found by CI: a nil-pointer panic at
// Shutdown after a rotation under load.
func TestRetiredPoolsPruneInPlace(t *testing.T) {
	rt := newRotatingTransport(&http.Transport{})
	closed, open := rt.newPool(nil), rt.newPool(nil)
	closed.close(false)
	rt.retired = []*pool{closed, open}

	rt.nextExpiry(time.Now())
	rt.CloseIdleConnections() // panicked on a nil pool

	if len(rt.retired) != 1 || rt.retired[0] != open {
		t.Errorf("retired = %v, want only the open pool", rt.retired)
	}
}
