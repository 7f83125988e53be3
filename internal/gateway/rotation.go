package gateway

import (
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// svidRotationPoll is how often the gateway looks for a new SVID serial.
const svidRotationPoll = 2 * time.Second

// retiredPolls is how many polls a retired upstream transport is kept to close
// its connections as they turn idle. A request still running after that
// finishes normally; its connection is then closed by the idle timeout.
const retiredPolls = 15

// watchRotation retires pooled upstream connections after the SVID rotates:
// each route's transport is replaced by a fresh one, so the next request
// handshakes with the new SVID, while requests in flight finish on their old
// connection, which is closed once idle. (Closing only idle connections is not
// enough: under steady load an HTTP/2 connection is rarely idle at the moment
// of the call and would go on presenting the old SVID until it expires.)
//
// It also logs and counts (tollgate_cert_reloads_total{kind="svid"}) Workload
// API failures, such as an agent that went away, and the recovery: the source
// keeps serving its last SVID meanwhile, so without this an operator would
// learn of the outage only when readiness turns false.
func (g *Gateway) watchRotation() {
	defer close(g.rotationDone)
	t := time.NewTicker(svidRotationPoll)
	defer t.Stop()
	st := g.src.Status()
	serial, lastErrAt, failing := st.Serial, st.LastErrorAt, st.LastError != nil
	// Files sources log and count their own reloads through OnReload.
	workload := st.Kind == "workloadapi"
	for {
		select {
		case <-g.draining:
			return
		case <-t.C:
			g.eachRotating(func(rt *rotatingTransport) { rt.closeRetired() })
			st := g.src.Status()
			switch {
			case !workload:
			case st.LastError != nil && !st.LastErrorAt.Equal(lastErrAt):
				lastErrAt, failing = st.LastErrorAt, true
				g.metrics.CertReload("svid", st.LastError)
				g.log.Warn("identity source failing; serving the last SVID until it expires",
					"spiffeID", st.ID.String(), "notAfter", st.NotAfter, "err", st.LastError)
			case st.LastError == nil && failing:
				failing = false
				g.log.Info("identity source recovered", "spiffeID", st.ID.String(), "notAfter", st.NotAfter)
			}
			if st.Serial == "" || st.Serial == serial {
				continue
			}
			if workload {
				g.metrics.CertReload("svid", nil)
			}
			g.log.Info("SVID rotated; retiring pooled upstream connections", "spiffeID", st.ID.String(), "notAfter", st.NotAfter)
			serial = st.Serial
			g.eachRotating(func(rt *rotatingTransport) { rt.rotate() })
		}
	}
}

func (g *Gateway) eachRotating(f func(*rotatingTransport)) {
	for _, r := range g.router.Routes() {
		if rt, ok := r.Transport.(*rotatingTransport); ok {
			f(rt)
		}
	}
}

// rotatingTransport is an upstream transport whose connection pool can be
// replaced: rotate starts a new pool and retires the old one.
type rotatingTransport struct {
	cur atomic.Pointer[http.Transport]

	mu      sync.Mutex
	retired []retiredTransport
}

type retiredTransport struct {
	t     *http.Transport
	polls int
}

func newRotatingTransport(t *http.Transport) *rotatingTransport {
	rt := &rotatingTransport{}
	rt.cur.Store(t)
	return rt
}

// RoundTrip implements http.RoundTripper with the current pool.
func (rt *rotatingTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	return rt.cur.Load().RoundTrip(req)
}

// rotate swaps in an empty pool with the same settings (the TLS config reads
// the current SVID at each handshake) and retires the old one.
func (rt *rotatingTransport) rotate() {
	old := rt.cur.Swap(rt.cur.Load().Clone())
	old.CloseIdleConnections()
	rt.mu.Lock()
	rt.retired = append(rt.retired, retiredTransport{t: old})
	rt.mu.Unlock()
}

// closeRetired closes retired connections that have turned idle since.
func (rt *rotatingTransport) closeRetired() {
	rt.mu.Lock()
	defer rt.mu.Unlock()
	kept := rt.retired[:0]
	for _, r := range rt.retired {
		r.t.CloseIdleConnections()
		if r.polls++; r.polls < retiredPolls {
			kept = append(kept, r)
		}
	}
	clear(rt.retired[len(kept):])
	rt.retired = kept
}

// CloseIdleConnections closes idle connections of the current and retired pools.
func (rt *rotatingTransport) CloseIdleConnections() {
	rt.cur.Load().CloseIdleConnections()
	rt.mu.Lock()
	defer rt.mu.Unlock()
	for _, r := range rt.retired {
		r.t.CloseIdleConnections()
	}
}
