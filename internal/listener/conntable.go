package listener

import (
	"container/heap"
	"net"
	"net/http"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"
)

// Why connections are shed at MaxConnections, as Config.OnConnectionShed
// reports it.
const (
	// ShedIdle: an idle keep-alive connection was closed (HTTP/1.x) or sent
	// GOAWAY (HTTP/2) to make room for a new connection.
	ShedIdle = "idle"
	// ShedPerSource: a new connection was closed at accept, unread, because
	// the listener was full and its source already held its share.
	ShedPerSource = "per_source"
)

// drainTimeout bounds how long a shed HTTP/2 connection may stay open
// after its GOAWAY without a request in flight. Go's HTTP/2 server closes
// it one second after the GOAWAY went out; this catches a client that
// stopped reading, so that the GOAWAY cannot be written and that second
// never starts.
const drainTimeout = 5 * time.Second

// connTable counts a listener's connections against MaxConnections and
// chooses which to shed when it is full. A connection takes a slot at
// accept and gives it back when it closes, or when it is shed: then its
// slot goes to the new connection at once, and the shed one is "draining"
// until it has closed. Draining connections are few (drainCap: one in
// eight of the limit, at least 16) and brief: an HTTP/1.x one is closed at
// once, an HTTP/2 one about a second after its GOAWAY (see h2goaway.go),
// unless a request is in flight on it.
//
// An idle connection is one that has served a request and is between
// requests now (net/http's StateIdle, reported through the ConnState hook,
// which also ends it: StateActive as the next request starts). Connections
// still handshaking, or that have not yet sent a request, are never idle.
type connTable struct {
	limit     int // MaxConnections, > 0
	perSource int // MaxConnectionsPerSource; 0: computed
	drainCap  int // at most this many draining at a time

	// wake is signalled when a slot frees or a connection turns idle, for
	// an accept loop waiting at the limit.
	wake chan struct{}

	mu       sync.Mutex
	open     int    // connections holding a slot
	draining int    // shed, not closed yet; they hold no slot
	seq      uint64 // orders idle connections, least recently used first
	sources  map[netip.Prefix]*source
	victims  victimHeap            // sources with an idle connection
	byConn   map[net.Conn]*tracked // by the net.Conn http.Server serves
	peak     int                   // most slots ever held at once, for tests
	h2Conns  map[*tracked]struct{} // HTTP/2 connections with a GOAWAY of their own
}

// source is the connections of one source address (see sourceOf).
type source struct {
	key     netip.Prefix
	n       int      // connections holding a slot
	idle    idleList // its idle connections, least recently used first
	heapIdx int      // in connTable.victims; -1 when not there
}

// tracked is one connection of a connTable.
type tracked struct {
	src *source
	// h2, if set, is this HTTP/2 connection's own server, whose Shutdown
	// sends it GOAWAY (see newConnH2); set before it is served.
	h2 *http.Server

	// served is set as a request reaches the Handler.
	served atomic.Bool
	// refuse is set when the connection is shed by closing it: a request
	// net/http read before the close must not reach the Handler, whose
	// answer could not be delivered (the client, which sees the connection
	// close unanswered, may send the request again).
	refuse atomic.Bool

	// Guarded by connTable.mu:
	conn       net.Conn // as http.Server serves it; nil while handshaking
	state      http.ConnState
	idleSeq    uint64
	prev, next *tracked // in src.idle
	inIdle     bool
	shed       bool // gave its slot to a new connection; draining
	closed     bool
	drainTimer *time.Timer
}

// verdict is what happens to a new connection at accept.
type verdict int

const (
	admitted verdict = iota
	refused          // its source holds its share of a full listener
	wait             // full, nothing to shed: accepting pauses
)

func newConnTable(limit, perSource int) *connTable {
	return &connTable{
		limit:     limit,
		perSource: perSource,
		drainCap:  max(16, limit/8),
		wake:      make(chan struct{}, 1),
		sources:   make(map[netip.Prefix]*source),
		byConn:    make(map[net.Conn]*tracked),
		h2Conns:   make(map[*tracked]struct{}),
	}
}

// setLimits replaces the limit and the per-source share. A raised limit
// wakes a paused accept.
func (t *connTable) setLimits(limit, perSource int) {
	t.mu.Lock()
	t.limit, t.perSource, t.drainCap = limit, perSource, max(16, limit/8)
	t.mu.Unlock()
	select {
	case t.wake <- struct{}{}:
	default:
	}
}

// limitNow is the limit in force.
func (t *connTable) limitNow() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.limit
}

// admit decides on a new connection from key. When it is admitted and the
// listener was full, victim is the idle connection whose slot it took: the
// caller sheds it (closes it, or sends it GOAWAY).
func (t *connTable) admit(key netip.Prefix) (e, victim *tracked, v verdict) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.open < t.limit {
		return t.add(key), nil, admitted
	}
	// Full. A source that already holds its share may only replace an idle
	// connection of its own (so that clients behind one address, such as a
	// load balancer's, still get in while the source does not grow); with
	// none, it is refused outright: were its connection held here until a
	// slot freed, the accept loop would wait on it and every other source's
	// new connections with it. Unless it is the only source: then it waits,
	// as without fair shares (a load balancer's burst queues in the
	// backlog rather than being reset).
	if s := t.sources[key]; s != nil && s.n >= t.share(key) {
		if s.idle.head == nil || t.draining >= t.drainCap {
			if len(t.sources) == 1 {
				return nil, nil, wait
			}
			return nil, nil, refused
		}
		victim = s.idle.head
	} else {
		if t.draining >= t.drainCap || len(t.victims) == 0 {
			return nil, nil, wait
		}
		// The least recently used idle connection of the source holding the
		// most connections: a source over its share, if there is one.
		victim = t.victims[0].idle.head
	}
	t.shedLocked(victim)
	return t.add(key), victim, admitted
}

// share is how many connections the source key may hold while the
// listener is full: MaxConnectionsPerSource, or else MaxConnections divided
// evenly, rounded up, among the sources holding connections and key.
func (t *connTable) share(key netip.Prefix) int {
	if t.perSource > 0 {
		return t.perSource
	}
	n := len(t.sources)
	if t.sources[key] == nil {
		n++
	}
	return (t.limit + n - 1) / n
}

func (t *connTable) add(key netip.Prefix) *tracked {
	s := t.sources[key]
	if s == nil {
		s = &source{key: key, heapIdx: -1}
		t.sources[key] = s
	}
	s.n++
	t.open++
	t.peak = max(t.peak, t.open)
	t.fix(s)
	return &tracked{src: s, state: http.StateNew}
}

// shedLocked takes victim's slot away and marks it draining.
func (t *connTable) shedLocked(victim *tracked) {
	t.unidle(victim)
	victim.shed = true
	if victim.h2 == nil {
		victim.refuse.Store(true)
	}
	t.draining++
	t.open--
	t.leave(victim.src)
}

// leave counts one connection of s gone.
func (t *connTable) leave(s *source) {
	s.n--
	if s.n == 0 {
		delete(t.sources, s.key)
	}
	t.fix(s)
}

// closed is called once as e's connection closes, however it ends.
func (t *connTable) closed(e *tracked) {
	t.mu.Lock()
	if e.closed {
		t.mu.Unlock()
		return
	}
	e.closed = true
	t.unidle(e)
	if e.conn != nil {
		delete(t.byConn, e.conn)
	}
	delete(t.h2Conns, e)
	if e.drainTimer != nil {
		e.drainTimer.Stop()
	}
	if e.shed {
		t.draining--
	} else {
		t.open--
		t.leave(e.src)
	}
	t.mu.Unlock()
	t.signal()
}

// serving records the net.Conn that http.Server is about to serve for e.
func (t *connTable) serving(e *tracked, c net.Conn) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if e.closed {
		return
	}
	e.conn = c
	t.byConn[c] = e
	if e.h2 != nil {
		t.h2Conns[e] = struct{}{}
	}
}

// lookup returns the connection http.Server serves as c, or nil.
func (t *connTable) lookup(c net.Conn) *tracked {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.byConn[c]
}

// stateChanged follows http.Server's ConnState hook.
func (t *connTable) stateChanged(c net.Conn, s http.ConnState) {
	t.mu.Lock()
	e := t.byConn[c]
	if e == nil || e.closed {
		t.mu.Unlock()
		return
	}
	e.state = s
	becameIdle := false
	switch s {
	case http.StateIdle:
		// Go's HTTP/2 server also reports StateIdle right after the
		// connection preface, before any request: served tells them apart.
		if !e.shed && !e.inIdle && e.served.Load() {
			t.seq++
			e.idleSeq = t.seq
			e.src.idle.pushBack(e)
			e.inIdle = true
			t.fix(e.src)
			becameIdle = true
		}
	default: // active, hijacked (the Handler owns it), closed
		t.unidle(e)
	}
	t.mu.Unlock()
	if becameIdle {
		t.signal()
	}
}

// drainExpired closes a shed HTTP/2 connection still open drainTimeout
// after its GOAWAY, unless a request is in flight on it (a stream the
// client opened before the GOAWAY reached it is served to the end).
func (t *connTable) drainExpired(e *tracked) (closeIt net.Conn) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if e.closed {
		return nil
	}
	if e.state == http.StateActive {
		e.drainTimer.Reset(drainTimeout)
		return nil
	}
	return e.conn
}

// h2Servers returns the servers of the open HTTP/2 connections.
func (t *connTable) h2Servers() []*http.Server {
	t.mu.Lock()
	defer t.mu.Unlock()
	ss := make([]*http.Server, 0, len(t.h2Conns))
	for e := range t.h2Conns {
		ss = append(ss, e.h2)
	}
	return ss
}

func (t *connTable) unidle(e *tracked) {
	if !e.inIdle {
		return
	}
	e.src.idle.remove(e)
	e.inIdle = false
	t.fix(e.src)
}

// fix restores s's place among the victims after its count or idle list changed.
func (t *connTable) fix(s *source) {
	switch in := s.heapIdx >= 0; {
	case s.idle.head == nil && in:
		heap.Remove(&t.victims, s.heapIdx)
	case s.idle.head != nil && !in:
		heap.Push(&t.victims, s)
	case in:
		heap.Fix(&t.victims, s.heapIdx)
	}
}

func (t *connTable) signal() {
	select {
	case t.wake <- struct{}{}:
	default:
	}
}

// tableStats is a snapshot of a connTable, for tests.
type tableStats struct {
	open, draining, peak, idle, sources int
}

func (t *connTable) stats() tableStats {
	t.mu.Lock()
	defer t.mu.Unlock()
	st := tableStats{open: t.open, draining: t.draining, peak: t.peak, sources: len(t.sources)}
	for _, s := range t.victims {
		for e := s.idle.head; e != nil; e = e.next {
			st.idle++
		}
	}
	return st
}

// victimHeap orders the sources that have idle connections: the most
// connections first, then the one whose least recently used idle
// connection has been idle longest.
type victimHeap []*source

func (h victimHeap) Len() int { return len(h) }
func (h victimHeap) Less(i, j int) bool {
	if h[i].n != h[j].n {
		return h[i].n > h[j].n
	}
	return h[i].idle.head.idleSeq < h[j].idle.head.idleSeq
}
func (h victimHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].heapIdx, h[j].heapIdx = i, j
}
func (h *victimHeap) Push(x any) {
	s := x.(*source)
	s.heapIdx = len(*h)
	*h = append(*h, s)
}
func (h *victimHeap) Pop() any {
	old := *h
	s := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	s.heapIdx = -1
	return s
}

// idleList is a source's idle connections in the order they became idle.
type idleList struct{ head, tail *tracked }

func (l *idleList) pushBack(e *tracked) {
	e.prev, e.next = l.tail, nil
	if l.tail != nil {
		l.tail.next = e
	} else {
		l.head = e
	}
	l.tail = e
}

func (l *idleList) remove(e *tracked) {
	if e.prev != nil {
		e.prev.next = e.next
	} else {
		l.head = e.next
	}
	if e.next != nil {
		e.next.prev = e.prev
	} else {
		l.tail = e.prev
	}
	e.prev, e.next = nil, nil
}

// sourceOf is the source a connection from addr counts against: its IPv4
// address, or the /64 its IPv6 address is in. A /64 is one host or one
// subscriber's network (RFC 6177), and a client handed one has 2^64
// addresses to spread connections over: counting IPv6 addresses one by one
// would make the share no limit at all. IPv4-mapped IPv6 addresses count as
// IPv4. An address that is not IP (none on a TCP listener) is one source.
func sourceOf(addr net.Addr) netip.Prefix {
	var ip netip.Addr
	switch a := addr.(type) {
	case nil:
	case *net.TCPAddr:
		ip, _ = netip.AddrFromSlice(a.IP)
	default:
		if ap, err := netip.ParseAddrPort(a.String()); err == nil {
			ip = ap.Addr()
		}
	}
	ip = ip.Unmap().WithZone("")
	switch {
	case ip.Is4():
		return netip.PrefixFrom(ip, 32)
	case ip.Is6():
		p, _ := ip.Prefix(64)
		return p
	}
	return netip.Prefix{}
}

// trackedConn is an accepted connection of a connTable: closing it
// gives its slot back, once.
type trackedConn struct {
	net.Conn
	t    *connTable
	e    *tracked
	once sync.Once
}

func (c *trackedConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() { c.t.closed(c.e) })
	return err
}
