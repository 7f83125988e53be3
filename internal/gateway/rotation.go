package gateway

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"tollgate.dev/tollgate/internal/identity"
)

// watchRotation keeps pooled upstream connections in step with the gateway's
// SVID. It waits for what the source announces (identity.Source.Changed), not
// for a ticker; the one timer it keeps is for an event that is time itself:
// the NotAfter of the SVID that pooled connections were opened with.
//
//   - A new SVID retires each route's connection pool: the next request
//     handshakes with the new SVID on a fresh pool, requests in flight finish
//     on their old connection, and the old pool is closed when its last one
//     ends. (Closing only idle connections is not enough: under steady load an
//     HTTP/2 connection is rarely idle and would go on presenting the old SVID
//     until it expires.)
//   - At NotAfter every connection opened with that SVID is closed, idle or
//     in use: a peer checks a client certificate only during the handshake,
//     so without this a connection authenticated by an expired SVID would go
//     on carrying requests. Until a fresh SVID arrives, requests fail with 503
//     and no handshake is attempted (see rotatingTransport.RoundTrip).
//
// It also logs and counts (tollgate_cert_reloads_total{kind="svid"}) Workload
// API failures, such as an agent that went away, and the recovery: the source
// keeps serving its last SVID meanwhile, so without this an operator would
// learn of the outage only when readiness turns false.
func (g *Gateway) watchRotation() {
	defer close(g.rotationDone)
	expiry := time.NewTimer(time.Hour)
	expiry.Stop()
	defer expiry.Stop()

	st := g.src.Status()
	serial, lastErrAt, failing := st.Serial, st.LastErrorAt, st.LastError != nil
	// Files sources log and count their own reloads through OnReload.
	workload := st.Kind == "workloadapi"
	for {
		// Changed before Status, so a change between the two is not missed.
		changed := g.src.Changed()
		st := g.src.Status()
		if st.Closed {
			// A closed source never changes again (and its Changed is
			// always closed): wait only for NotAfter and draining.
			changed = nil
		}
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
		if st.Serial != "" && st.Serial != serial {
			serial = st.Serial
			if workload {
				g.metrics.CertReload("svid", nil)
			}
			g.log.Info("SVID rotated; retiring pooled upstream connections", "spiffeID", st.ID.String(), "notAfter", st.NotAfter)
		}
		// Every pool not made with the current SVID is retired, whoever
		// notices the change first (a request may, see acquire).
		g.eachRotating(func(rt *rotatingTransport) { rt.rotate() })

		var next time.Time
		now := time.Now()
		g.eachRotating(func(rt *rotatingTransport) {
			if t := rt.nextExpiry(now); !t.IsZero() && (next.IsZero() || t.Before(next)) {
				next = t
			}
		})
		if !next.IsZero() {
			expiry.Reset(next.Sub(now))
		}
		select {
		case <-g.draining:
			return
		case <-changed:
		case now := <-expiry.C:
			var n int64
			g.eachRotating(func(rt *rotatingTransport) {
				rt.expire(now)
				// Counted by whoever closed them: a request may have got
				// there first (see acquire).
				n += rt.expiredConns.Swap(0)
			})
			if _, err := identity.CurrentSVID(g.src, now); errors.Is(err, identity.ErrSVIDExpired) {
				st := g.src.Status()
				g.log.Error("SVID expired; closed upstream connections opened with it, requests fail with 503 until a fresh SVID arrives",
					"spiffeID", st.ID.String(), "serial", st.Serial, "notAfter", st.NotAfter, "connections", n, "lastError", st.LastError)
			}
		}
		expiry.Stop()
	}
}

// eachRotating calls f for every upstream transport of the live set in
// force, and for those reloads retired (see retire): a request still on one
// is held to the same SVID rules.
func (g *Gateway) eachRotating(f func(*rotatingTransport)) {
	for _, rt := range g.live.Load().transports {
		f(rt)
	}
	g.retiredMu.Lock()
	retired := slices.Clone(g.retiredTransports)
	g.retiredMu.Unlock()
	for _, rt := range retired {
		f(rt)
	}
}

// rotatingTransport is an upstream transport whose connection pool follows
// the gateway's SVID: each pool belongs to one SVID, is retired when another
// one arrives, and is closed, in-use connections included, at that SVID's
// NotAfter. It learns the SVID from the TLS config's GetClientCertificate,
// which is what every handshake of the pool presents.
type rotatingTransport struct {
	base *http.Transport // template for each pool; never carries requests
	// present returns the certificate a handshake would present now, or why
	// none can be (identity.ErrSVIDExpired, no SVID, source closed).
	present func() (*tls.Certificate, error)

	cur atomic.Pointer[pool]

	mu      sync.Mutex // serializes swaps of cur; guards retired
	retired []*pool

	// expiredConns counts connections closed at NotAfter, for the log.
	expiredConns atomic.Int64
}

func newRotatingTransport(t *http.Transport) *rotatingTransport {
	rt := &rotatingTransport{base: t, present: func() (*tls.Certificate, error) { return nil, nil }}
	if cfg := t.TLSClientConfig; cfg != nil && cfg.GetClientCertificate != nil {
		rt.present = func() (*tls.Certificate, error) {
			return cfg.GetClientCertificate(anyCertificateRequest)
		}
	}
	cert, _ := rt.present()
	rt.cur.Store(rt.newPool(cert))
	return rt
}

// anyCertificateRequest is what present asks GetClientCertificate with: the
// identity package's configs present the SVID whatever the server asked for.
// Shared, never modified.
var anyCertificateRequest = &tls.CertificateRequestInfo{}

// errUnavailable marks a request refused because the gateway has no SVID it
// may present. It is returned as a dial error, which the exchange answers with
// 503 "upstream unavailable": the gateway, not the upstream, is the problem,
// and no byte was sent to the upstream.
func errUnavailable(network string, err error) error {
	return &net.OpError{Op: "dial", Net: network, Err: err}
}

// RoundTrip implements http.RoundTripper with the current pool. It refuses
// at once, without dialing, while the SVID is expired (or missing).
func (rt *rotatingTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	p, err := rt.acquire()
	if err != nil {
		return nil, err
	}
	resp, err := p.t.RoundTrip(req)
	if err != nil {
		p.release()
		if p.expired() {
			// The connection was cut at NotAfter under this request.
			return nil, errUnavailable("tcp", fmt.Errorf("%w (request cut: %v)", identity.ErrSVIDExpired, err))
		}
		if errors.Is(err, identity.ErrSVIDExpired) {
			return nil, errUnavailable("tcp", err)
		}
		return nil, err
	}
	resp.Body = p.track(resp.Body)
	return resp, nil
}

// acquire returns the current pool with the request counted in flight, or
// a 503 error while no SVID may be presented. A pool made for another SVID
// than the one presented now is retired first (the rotation goroutine may
// not have got to it yet), and one whose SVID has reached NotAfter is
// closed: no request goes out on a connection authenticated by an expired
// SVID, even in the instant before the timer fires.
func (rt *rotatingTransport) acquire() (*pool, error) {
	for {
		// Each turn reads the clock anew and either returns or swaps the
		// pool for the SVID presented now, so it ends: at worst that SVID
		// expires meanwhile, and the next present refuses.
		cert, err := rt.present()
		if err != nil {
			return nil, errUnavailable("tcp", err)
		}
		p := rt.cur.Load()
		switch {
		case p.expiredAt(time.Now()):
			rt.expire(time.Now())
		case !p.madeFor(cert):
			rt.rotate()
		case p.acquire():
			return p, nil
		}
		// Otherwise p was retired and drained between the load and now;
		// cur is newer.
	}
}

// rotate retires the current pool unless it was made for the SVID presented
// now. It is idempotent.
func (rt *rotatingTransport) rotate() {
	rt.mu.Lock()
	defer rt.mu.Unlock()
	cert, err := rt.present()
	old := rt.cur.Load()
	if err != nil || old.madeFor(cert) {
		// No SVID to present: nothing could dial, and the expiry timer
		// closes what was opened with the last one.
		return
	}
	rt.cur.Store(rt.newPool(cert))
	old.retire()
	rt.retired = append(rt.pruneLocked(), old)
}

// expire closes every pool whose SVID has reached NotAfter at now: the
// current one is replaced by an empty pool first.
func (rt *rotatingTransport) expire(now time.Time) {
	rt.mu.Lock()
	defer rt.mu.Unlock()
	n := 0
	if old := rt.cur.Load(); old.expiredAt(now) {
		cert, _ := rt.present()
		rt.cur.Store(rt.newPool(cert))
		n += old.close(true)
	}
	for _, p := range rt.retired {
		if p.expiredAt(now) {
			n += p.close(true)
		}
	}
	rt.retired = rt.pruneLocked()
	rt.expiredConns.Add(int64(n))
}

// nextExpiry is the earliest NotAfter after now of a pool that may still hold
// connections; zero if there is none.
func (rt *rotatingTransport) nextExpiry(now time.Time) time.Time {
	rt.mu.Lock()
	defer rt.mu.Unlock()
	var next time.Time
	// pruneLocked reuses the list's array and clears its tail: the list
	// must be the one it returns (iterating the old one met nil pools).
	rt.retired = rt.pruneLocked()
	for _, p := range rt.retired {
		if t := p.notAfter; t.After(now) && (next.IsZero() || t.Before(next)) {
			next = t
		}
	}
	if t := rt.cur.Load().notAfter; t.After(now) && (next.IsZero() || t.Before(next)) {
		next = t
	}
	return next
}

// pruneLocked drops closed pools from the retired list.
func (rt *rotatingTransport) pruneLocked() []*pool {
	kept := rt.retired[:0]
	for _, p := range rt.retired {
		if !p.isClosed() {
			kept = append(kept, p)
		}
	}
	clear(rt.retired[len(kept):])
	return kept
}

// CloseIdleConnections closes idle connections of the current and retired pools.
func (rt *rotatingTransport) CloseIdleConnections() {
	rt.cur.Load().t.CloseIdleConnections()
	rt.mu.Lock()
	defer rt.mu.Unlock()
	for _, p := range rt.retired {
		p.t.CloseIdleConnections()
	}
}

// newPool makes an empty pool for cert, the certificate presented now (nil
// if none can be). Its transport dials through the pool, which keeps every
// connection it opened so that it can close them, in use or not
// (http.Transport can close only idle ones).
func (rt *rotatingTransport) newPool(cert *tls.Certificate) *pool {
	p := &pool{conns: make(map[*pooledConn]struct{})}
	if cert != nil && cert.Leaf != nil {
		p.leaf, p.notAfter = cert.Leaf, cert.Leaf.NotAfter
	}
	dial := rt.base.DialContext
	if dial == nil {
		dial = (&net.Dialer{}).DialContext
	}
	t := rt.base.Clone()
	t.DialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
		// Checked again here, for dials the transport starts on its own
		// (a retry, a replacement HTTP/2 connection).
		if _, err := rt.present(); err != nil {
			return nil, errUnavailable(network, err)
		}
		c, err := dial(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		return p.add(network, c)
	}
	p.t = t
	return p
}

// pool is one http.Transport's connections, all opened while one SVID was
// current.
type pool struct {
	t        *http.Transport
	leaf     *x509.Certificate // of the SVID presented when the pool was made; nil if none
	notAfter time.Time         // of that SVID: the pool is closed then; zero if none

	mu       sync.Mutex
	conns    map[*pooledConn]struct{}
	inflight int  // requests from RoundTrip until their body is closed
	retiring bool // close once inflight drops to zero
	closed   bool // no connection is added any more
	expire   bool // closed at NotAfter
}

// errPoolClosed: a dial finished after its pool was closed (the transport
// keeps dialing for a request that went elsewhere, or retries one).
var errPoolClosed = errors.New("gateway: upstream connection pool closed (SVID rotated or expired)")

func (p *pool) add(network string, c net.Conn) (net.Conn, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		c.Close()
		if p.expire {
			return nil, errUnavailable(network, fmt.Errorf("%w: %w", identity.ErrSVIDExpired, errPoolClosed))
		}
		return nil, errUnavailable(network, errPoolClosed)
	}
	pc := &pooledConn{Conn: c, p: p}
	p.conns[pc] = struct{}{}
	return pc, nil
}

func (p *pool) forget(c *pooledConn) {
	p.mu.Lock()
	delete(p.conns, c)
	p.mu.Unlock()
}

func (p *pool) acquire() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return false
	}
	p.inflight++
	return true
}

// release ends a request; the last one out of a retired pool closes it.
func (p *pool) release() {
	p.mu.Lock()
	p.inflight--
	drained := p.retiring && p.inflight == 0
	p.mu.Unlock()
	if drained {
		p.close(false)
	}
}

// retire closes the pool now if no request is in flight, or else when the
// last one ends. Idle connections are closed at once either way.
func (p *pool) retire() {
	p.mu.Lock()
	p.retiring = true
	drained := p.inflight == 0
	p.mu.Unlock()
	if drained {
		p.close(false)
		return
	}
	p.t.CloseIdleConnections()
}

// close closes every connection of the pool, in use or not, and refuses new
// ones. It returns how many it closed.
func (p *pool) close(expired bool) int {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return 0
	}
	p.closed, p.expire = true, expired
	conns := make([]*pooledConn, 0, len(p.conns))
	for c := range p.conns {
		conns = append(conns, c)
	}
	clear(p.conns)
	p.mu.Unlock()
	for _, c := range conns {
		c.Conn.Close()
	}
	p.t.CloseIdleConnections()
	return len(conns)
}

func (p *pool) isClosed() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.closed
}

func (p *pool) expired() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.expire
}

// madeFor reports whether the pool belongs to the SVID of cert. A pool made
// while no SVID could be presented belongs to none: the first one that
// arrives replaces it, so its connections get that SVID's NotAfter.
func (p *pool) madeFor(cert *tls.Certificate) bool {
	if cert == nil || cert.Leaf == nil {
		return true // a transport without SVIDs never rotates
	}
	return p.leaf != nil && (p.leaf == cert.Leaf || p.leaf.Equal(cert.Leaf))
}

func (p *pool) expiredAt(now time.Time) bool {
	return !p.notAfter.IsZero() && !now.Before(p.notAfter)
}

// track counts the request in flight until body is closed. A body that is
// also a writer (a protocol upgrade's connection, which the reverse proxy
// detects by type) stays one.
func (p *pool) track(body io.ReadCloser) io.ReadCloser {
	if rwc, ok := body.(io.ReadWriteCloser); ok {
		return &releasingRWC{releasingBody: releasingBody{ReadCloser: body, p: p}, w: rwc}
	}
	return &releasingBody{ReadCloser: body, p: p}
}

// pooledConn removes itself from its pool when the transport closes it.
type pooledConn struct {
	net.Conn
	p    *pool
	once sync.Once
}

func (c *pooledConn) Close() error {
	c.once.Do(func() { c.p.forget(c) })
	return c.Conn.Close()
}

type releasingBody struct {
	io.ReadCloser
	p    *pool
	once sync.Once
}

func (b *releasingBody) Close() error {
	err := b.ReadCloser.Close()
	b.once.Do(b.p.release)
	return err
}

type releasingRWC struct {
	releasingBody
	w io.Writer
}

func (b *releasingRWC) Write(p []byte) (int, error) { return b.w.Write(p) }
