package listener

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// dialerFrom dials from the loopback address ip (all of 127.0.0.0/8 is
// local), so that one test can play several sources.
func dialerFrom(ip string) *net.Dialer {
	return &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}, Timeout: 5 * time.Second}
}

func tableOf(s *Server) *connTable { return s.tlsLn.table }

// newClientFrom is newClient dialling from ip.
func newClientFrom(tb testing.TB, pool *x509.CertPool, addr net.Addr, p proto, ip string) *http.Client {
	c := newClient(tb, pool, addr, "a.example.com", p)
	c.Transport.(*http.Transport).DialContext = func(ctx context.Context, _, _ string) (net.Conn, error) {
		return dialerFrom(ip).DialContext(ctx, "tcp", addr.String())
	}
	return c
}

// shedCounts counts a Server's callbacks about its connection limit.
type shedCounts struct{ idle, perSource, limited atomic.Int64 }

func (c *shedCounts) config(cfg Config) Config {
	cfg.OnConnectionLimit = func() { c.limited.Add(1) }
	cfg.OnConnectionShed = func(reason string) {
		switch reason {
		case ShedIdle:
			c.idle.Add(1)
		case ShedPerSource:
			c.perSource.Add(1)
		default:
			panic("unknown shed reason " + reason)
		}
	}
	return cfg
}

func (c *shedCounts) String() string {
	return fmt.Sprintf("idle %d, per source %d, paused %d", c.idle.Load(), c.perSource.Load(), c.limited.Load())
}

// dialRaw opens a TLS connection from ip that negotiates p.
func dialRaw(addr net.Addr, ip string, conf *tls.Config, p proto) (*tls.Conn, error) {
	conf = conf.Clone()
	conf.NextProtos = []string{"http/1.1"}
	if p == h2 {
		conf.NextProtos = []string{"h2"}
	}
	d := dialerFrom(ip)
	d.Deadline = time.Now().Add(20 * time.Second)
	c, err := tls.DialWithDialer(d, "tcp", addr.String(), conf)
	if err != nil {
		return nil, err
	}
	if got := c.ConnectionState().NegotiatedProtocol; got != conf.NextProtos[0] {
		c.Close()
		return nil, fmt.Errorf("ALPN %q", got)
	}
	return c, nil
}

// rawGet sends one GET / on c, a fresh connection, and reads the whole
// answer, by hand: the connection has no goroutine of its own, so a test
// can hold thousands. For HTTP/2 it returns the framer, to read on.
func rawGet(c *tls.Conn, p proto) (*http2.Framer, error) {
	c.SetDeadline(time.Now().Add(20 * time.Second))
	defer c.SetDeadline(time.Time{})
	if p == h1 {
		if _, err := io.WriteString(c, "GET / HTTP/1.1\r\nHost: a.example.com\r\n\r\n"); err != nil {
			return nil, err
		}
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			return nil, err
		}
		defer resp.Body.Close()
		if _, err := io.Copy(io.Discard, resp.Body); err != nil {
			return nil, err
		}
		if resp.StatusCode != http.StatusOK {
			return nil, fmt.Errorf("status %d", resp.StatusCode)
		}
		return nil, nil
	}
	if _, err := io.WriteString(c, http2.ClientPreface); err != nil {
		return nil, err
	}
	fr := http2.NewFramer(c, c)
	fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
	if err := fr.WriteSettings(); err != nil {
		return nil, err
	}
	var block bytes.Buffer
	enc := hpack.NewEncoder(&block)
	for _, f := range [][2]string{{":method", "GET"}, {":scheme", "https"}, {":authority", "a.example.com"}, {":path", "/"}} {
		enc.WriteField(hpack.HeaderField{Name: f[0], Value: f[1]})
	}
	if err := fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: block.Bytes(), EndStream: true, EndHeaders: true}); err != nil {
		return nil, err
	}
	for range 100 {
		f, err := fr.ReadFrame()
		if err != nil {
			return nil, err
		}
		switch f := f.(type) {
		case *http2.SettingsFrame:
			if !f.IsAck() {
				if err := fr.WriteSettingsAck(); err != nil {
					return nil, err
				}
			}
		case *http2.MetaHeadersFrame:
			if f.StreamID == 1 && f.PseudoValue("status") != "200" {
				return nil, fmt.Errorf("status %s", f.PseudoValue("status"))
			}
			if f.StreamID == 1 && f.StreamEnded() {
				return fr, nil
			}
		case *http2.DataFrame:
			if f.StreamID == 1 && f.StreamEnded() {
				return fr, nil
			}
		case *http2.RSTStreamFrame:
			return nil, fmt.Errorf("stream reset: %v", f.ErrCode)
		case *http2.GoAwayFrame:
			return nil, fmt.Errorf("GOAWAY %v", f.ErrCode)
		}
	}
	return nil, errors.New("no answer in 100 frames")
}

func TestSourceOf(t *testing.T) {
	for _, tc := range []struct {
		addr net.Addr
		want string
	}{
		{&net.TCPAddr{IP: net.ParseIP("192.0.2.7"), Port: 1}, "192.0.2.7/32"},
		{&net.TCPAddr{IP: net.ParseIP("::ffff:192.0.2.7"), Port: 1}, "192.0.2.7/32"},
		{&net.TCPAddr{IP: net.ParseIP("2001:db8:1:2:aaaa::1"), Port: 1}, "2001:db8:1:2::/64"},
		{&net.TCPAddr{IP: net.ParseIP("2001:db8:1:2:ffff:ffff:ffff:ffff"), Port: 1}, "2001:db8:1:2::/64"},
		{&net.TCPAddr{IP: net.ParseIP("fe80::1"), Port: 1, Zone: "eth0"}, "fe80::/64"},
		{&net.UDPAddr{IP: net.ParseIP("2001:db8::1"), Port: 1}, "2001:db8::/64"},
		{&net.UnixAddr{Name: "/tmp/sock", Net: "unix"}, "invalid Prefix"},
		{nil, "invalid Prefix"},
	} {
		if got := sourceOf(tc.addr).String(); got != tc.want {
			t.Errorf("sourceOf(%v) = %s; want %s", tc.addr, got, tc.want)
		}
	}
}

// TestConnTable drives the table's choices directly: which connection is
// shed, and who is refused, waits or gets in.
func TestConnTable(t *testing.T) {
	type step struct {
		op   string // "admit", "idle" (served, then StateIdle), "active", "close"
		src  string // admit: source address
		name string // the connection admitted, or acted on
		// admit: what should happen, and the connection shed, if any
		want       verdict
		wantVictim string
	}
	for _, tc := range []struct {
		name             string
		limit, perSource int
		drainCap         int // 0: the default
		steps            []step
	}{{
		name: "below the limit every source gets in", limit: 2,
		steps: []step{
			{op: "admit", src: "10.0.0.1", name: "a", want: admitted},
			{op: "admit", src: "10.0.0.1", name: "b", want: admitted},
		},
	}, {
		name: "full: a source at its share replaces only its own idle connection, else is refused", limit: 2,
		steps: []step{
			{op: "admit", src: "10.0.0.1", name: "a"},
			{op: "admit", src: "10.0.0.1", name: "b"},
			{op: "idle", name: "b"},
			// One source (a load balancer, say) holds everything: its new
			// connection takes the place of its own idle one.
			{op: "admit", src: "10.0.0.1", name: "a2", want: admitted, wantVictim: "b"},
			// Nothing idle of its own, and no other source to make room
			// for: it waits, as without fair shares.
			{op: "admit", src: "10.0.0.1", name: "x", want: wait},
			{op: "idle", name: "a"},
			{op: "admit", src: "10.0.0.2", name: "c", want: admitted, wantVictim: "a"},
			// Now a2 and c hold a slot each: 10.0.0.2 is at its share, with
			// nothing idle of its own.
			{op: "admit", src: "10.0.0.2", name: "x", want: refused},
		},
	}, {
		name: "full and nothing idle: wait", limit: 2,
		steps: []step{
			{op: "admit", src: "10.0.0.1", name: "a"},
			{op: "admit", src: "10.0.0.1", name: "b"},
			{op: "admit", src: "10.0.0.2", name: "x", want: wait},
			{op: "close", name: "a"},
			{op: "admit", src: "10.0.0.2", name: "c", want: admitted},
		},
	}, {
		name: "not idle before a request, nor while one is in flight", limit: 2,
		steps: []step{
			{op: "admit", src: "10.0.0.1", name: "a"},
			{op: "admit", src: "10.0.0.1", name: "b"},
			{op: "idle-unserved", name: "a"}, // HTTP/2's StateIdle after the preface
			{op: "idle", name: "b"},
			{op: "active", name: "b"},
			{op: "admit", src: "10.0.0.2", name: "x", want: wait},
			{op: "idle", name: "b"},
			{op: "admit", src: "10.0.0.2", name: "c", want: admitted, wantVictim: "b"},
		},
	}, {
		name: "least recently used of the source with the most connections", limit: 5,
		steps: []step{
			{op: "admit", src: "10.0.0.1", name: "a1"},
			{op: "admit", src: "10.0.0.2", name: "b1"},
			{op: "admit", src: "10.0.0.2", name: "b2"},
			{op: "admit", src: "10.0.0.2", name: "b3"},
			{op: "admit", src: "10.0.0.1", name: "a2"},
			{op: "idle", name: "a1"}, // the oldest idle, but of the smaller source
			{op: "idle", name: "b2"},
			{op: "idle", name: "b1"},
			{op: "idle", name: "b3"},
			{op: "admit", src: "10.0.0.3", name: "c1", want: admitted, wantVictim: "b2"},
			// 10.0.0.2 now holds 2 (b1, b3), as 10.0.0.1 (a1, a2): the
			// older idle one goes.
			{op: "admit", src: "10.0.0.3", name: "c2", want: admitted, wantVictim: "a1"},
			{op: "admit", src: "10.0.0.4", name: "d1", want: admitted, wantVictim: "b1"},
			// Four sources hold 5: the share is 2, which 10.0.0.3 has.
			{op: "admit", src: "10.0.0.3", name: "x", want: refused},
			{op: "admit", src: "10.0.0.4", name: "d2", want: admitted, wantVictim: "b3"},
			{op: "admit", src: "10.0.0.5", name: "x", want: wait},
		},
	}, {
		name: "an IPv6 /64 is one source", limit: 2,
		steps: []step{
			{op: "admit", src: "2001:db8:0:1::1", name: "a"},
			{op: "admit", src: "2001:db8:0:1::2", name: "b"},
			{op: "admit", src: "2001:db8:0:1:ffff::3", name: "x", want: wait}, // the only source
			{op: "idle", name: "a"},
			{op: "admit", src: "2001:db8:0:2::1", name: "c", want: admitted, wantVictim: "a"},
		},
	}, {
		name: "maxConnectionsPerSource replaces the computed share", limit: 4, perSource: 3,
		steps: []step{
			{op: "admit", src: "10.0.0.1", name: "a1"},
			{op: "admit", src: "10.0.0.1", name: "a2"},
			{op: "admit", src: "10.0.0.2", name: "b1"},
			{op: "admit", src: "10.0.0.2", name: "b2"},
			{op: "idle", name: "a1"},
			// The computed share would be 2; 3 lets 10.0.0.1 in.
			{op: "admit", src: "10.0.0.1", name: "a3", want: admitted, wantVictim: "a1"},
			{op: "idle", name: "b1"},
			{op: "admit", src: "10.0.0.1", name: "a4", want: admitted, wantVictim: "b1"},
			{op: "admit", src: "10.0.0.1", name: "x", want: refused},
		},
	}, {
		name: "draining connections are capped", limit: 8, drainCap: 1,
		steps: []step{
			{op: "admit", src: "10.0.0.1", name: "a1"}, {op: "admit", src: "10.0.0.1", name: "a2"},
			{op: "admit", src: "10.0.0.1", name: "a3"}, {op: "admit", src: "10.0.0.1", name: "a4"},
			{op: "admit", src: "10.0.0.1", name: "a5"}, {op: "admit", src: "10.0.0.1", name: "a6"},
			{op: "admit", src: "10.0.0.1", name: "a7"}, {op: "admit", src: "10.0.0.1", name: "a8"},
			{op: "idle", name: "a1"}, {op: "idle", name: "a2"},
			{op: "admit", src: "10.0.0.2", name: "b1", want: admitted, wantVictim: "a1"},
			{op: "admit", src: "10.0.0.2", name: "x", want: wait}, // a1 still open
			{op: "close", name: "a1"},
			{op: "admit", src: "10.0.0.2", name: "b2", want: admitted, wantVictim: "a2"},
		},
	}} {
		t.Run(tc.name, func(t *testing.T) {
			tbl := newConnTable(tc.limit, tc.perSource)
			if tc.drainCap > 0 {
				tbl.drainCap = tc.drainCap
			}
			conns := map[string]*tracked{}
			for i, st := range tc.steps {
				e := conns[st.name]
				switch st.op {
				case "admit":
					key := sourceOf(&net.TCPAddr{IP: net.ParseIP(st.src)})
					got, victim, v := tbl.admit(key)
					victimName := ""
					for name, c := range conns {
						if c == victim && victim != nil {
							victimName = name
						}
					}
					if v != st.want || victimName != st.wantVictim {
						t.Fatalf("step %d: admit from %s: %v, shed %q; want %v, shed %q", i, st.src, v, victimName, st.want, st.wantVictim)
					}
					if got != nil {
						conns[st.name] = got
						tbl.serving(got, &net.TCPConn{}) // a distinct key
					}
				case "idle":
					e.served.Store(true)
					tbl.stateChanged(e.conn, http.StateActive)
					tbl.stateChanged(e.conn, http.StateIdle)
				case "idle-unserved":
					tbl.stateChanged(e.conn, http.StateIdle)
				case "active":
					tbl.stateChanged(e.conn, http.StateActive)
				case "close":
					tbl.closed(e)
				default:
					t.Fatalf("step %d: unknown op %q", i, st.op)
				}
				if st := tbl.stats(); st.open > tc.limit {
					t.Fatalf("step %d: %d connections hold a slot; limit %d", i, st.open, tc.limit)
				}
			}
		})
	}
}

func (v verdict) String() string {
	return [...]string{"admitted", "refused", "wait"}[v]
}

// TestGuardRefusesShedConnection: a request net/http read from a
// connection just shed (closed as idle) never reaches the Handler.
func TestGuardRefusesShedConnection(t *testing.T) {
	called := false
	g := &guard{next: http.HandlerFunc(func(http.ResponseWriter, *http.Request) { called = true }), tracked: true}
	g.limits.Store(&headerLimits{count: 100, bytes: 1 << 16})
	e := &tracked{}
	e.refuse.Store(true)
	r := httptest.NewRequest(http.MethodPost, "https://a.example.com/", nil)
	r = r.WithContext(context.WithValue(r.Context(), trackedKey{}, e))
	defer func() {
		if p := recover(); p != http.ErrAbortHandler {
			t.Errorf("panic %v; want http.ErrAbortHandler", p)
		}
		if called {
			t.Error("the Handler was called for a request on a shed connection")
		}
	}()
	g.ServeHTTP(httptest.NewRecorder(), r)
}

// TestShedIdle: at the limit, a new connection from another source sheds
// the idle keep-alive connection; an HTTP/1.1 client sees it closed, an
// HTTP/2 client gets GOAWAY (NO_ERROR, the last stream it opened) first.
func TestShedIdle(t *testing.T) {
	store, ca := newTestStore(t)
	conf := &tls.Config{RootCAs: ca.Pool(), ServerName: "a.example.com"}
	for _, p := range bothProtos {
		t.Run(string(p), func(t *testing.T) {
			var n shedCounts
			srv := startServer(t, n.config(Config{Certs: store, MaxConnections: 2}))
			idle, err := dialRaw(srv.Addr(), "127.0.0.2", conf, p)
			if err != nil {
				t.Fatal(err)
			}
			defer idle.Close()
			fr, err := rawGet(idle, p)
			if err != nil {
				t.Fatal(err)
			}
			// No request yet: holds a slot, is not idle.
			fresh, err := dialRaw(srv.Addr(), "127.0.0.2", conf, h1)
			if err != nil {
				t.Fatal(err)
			}
			defer fresh.Close()
			waitFor(t, "one idle connection of two", func() bool {
				st := tableOf(srv).stats()
				return st.open == 2 && st.idle == 1
			})

			c := newClientFrom(t, ca.Pool(), srv.Addr(), h1, "127.0.0.3")
			if resp, _ := get(t, c, "a.example.com", nil); resp.StatusCode != http.StatusOK {
				t.Fatalf("new client: status %d", resp.StatusCode)
			}

			idle.SetReadDeadline(time.Now().Add(10 * time.Second))
			var goAways []string
			if p == h2 {
				for range 100 {
					f, err := fr.ReadFrame()
					if err != nil {
						break
					}
					if ga, ok := f.(*http2.GoAwayFrame); ok {
						goAways = append(goAways, fmt.Sprintf("%v last %d", ga.ErrCode, ga.LastStreamID))
					}
				}
				if want := []string{"NO_ERROR last 1"}; fmt.Sprint(goAways) != fmt.Sprint(want) {
					t.Errorf("GOAWAY frames %q; want %q", goAways, want)
				}
			}
			// Then the connection ends (HTTP/1.1: close_notify, then EOF).
			if n, err := idle.Read(make([]byte, 1)); !errors.Is(err, io.EOF) {
				t.Errorf("shed connection: read %d bytes, %v; want EOF", n, err)
			}
			if n.idle.Load() != 1 || n.perSource.Load() != 0 || n.limited.Load() != 0 {
				t.Errorf("counted %v; want 1 idle shed", &n)
			}
		})
	}
}

// TestShedNeverCutsInFlight: a connection with a request in flight is not
// shed; the new connection waits, and takes the slot once that request
// has been answered in full and the connection is idle.
func TestShedNeverCutsInFlight(t *testing.T) {
	store, ca := newTestStore(t)
	const bodySize = 256 << 10
	for _, p := range bothProtos {
		t.Run(string(p), func(t *testing.T) {
			var n shedCounts
			entered, release := make(chan struct{}), make(chan struct{})
			var slowDone, servedBeforeSlowDone atomic.Bool
			h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				switch r.URL.Path {
				case "/slow":
					close(entered)
					<-release
					w.Write(bytes.Repeat([]byte("x"), bodySize))
					slowDone.Store(true)
				case "/new":
					servedBeforeSlowDone.Store(!slowDone.Load())
				}
			})
			srv := startServer(t, n.config(Config{Certs: store, MaxConnections: 1, Handler: h}))
			a := newClientFrom(t, ca.Pool(), srv.Addr(), p, "127.0.0.2")
			if resp, _ := get(t, a, "a.example.com", nil); resp.StatusCode != http.StatusOK {
				t.Fatalf("status %d", resp.StatusCode)
			}
			slow := make(chan error, 1)
			go func() {
				resp, err := a.Get("https://a.example.com/slow")
				if err == nil {
					var body []byte
					body, err = io.ReadAll(resp.Body)
					resp.Body.Close()
					if err == nil && len(body) != bodySize {
						err = fmt.Errorf("body of %d bytes; want %d", len(body), bodySize)
					}
				}
				slow <- err
			}()
			<-entered

			c := newClientFrom(t, ca.Pool(), srv.Addr(), h1, "127.0.0.3")
			c.Timeout = 10 * time.Second
			newc := make(chan error, 1)
			go func() {
				resp, err := c.Get("https://a.example.com/new")
				if err == nil {
					resp.Body.Close()
				}
				newc <- err
			}()
			waitFor(t, "accepting to pause", func() bool { return n.limited.Load() >= 1 })
			close(release)
			if err := <-slow; err != nil {
				t.Errorf("request in flight: %v", err)
			}
			if err := <-newc; err != nil {
				t.Errorf("new client: %v", err)
			}
			if servedBeforeSlowDone.Load() {
				t.Error("the new connection was served while the request in flight was not done")
			}
			if n.idle.Load() != 1 || n.perSource.Load() != 0 {
				t.Errorf("counted %v; want 1 idle shed", &n)
			}
		})
	}
}

// TestShedUnderChurn: keep-alive clients of one source loop on requests
// while clients of another keep arriving at a full listener, so idle
// connections are shed all the time, some as requests arrive on them.
// Every request that reached the Handler was answered to its client (none
// was cut, none ran twice), and the other source was always served.
func TestShedUnderChurn(t *testing.T) {
	store, ca := newTestStore(t)
	const (
		loopers, loops = 3, 40
		arrivals       = 40
	)
	for _, p := range bothProtos {
		t.Run(string(p), func(t *testing.T) {
			var n shedCounts
			var handled atomic.Int64
			h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { handled.Add(1) })
			// The loopers fill the listener; every arrival takes the slot of
			// an idle one, whose client then takes another's, and so on.
			// With shares of 3 the arrivals (one open at a time, two while
			// the server has yet to see one closed) are never over theirs.
			srv := startServer(t, n.config(Config{Certs: store, MaxConnections: loopers, MaxConnectionsPerSource: loopers, Handler: h}))

			var ok, loopFailed atomic.Int64
			var wg sync.WaitGroup
			for range loopers {
				c := newClientFrom(t, ca.Pool(), srv.Addr(), p, "127.0.0.2")
				wg.Go(func() {
					for range loops {
						resp, err := c.Get("https://a.example.com/")
						if err != nil {
							// Refused at accept, over its share: expected.
							loopFailed.Add(1)
							continue
						}
						io.Copy(io.Discard, resp.Body)
						resp.Body.Close()
						ok.Add(1)
					}
				})
			}
			var failures []string
			for i := range arrivals {
				c := newClientFrom(t, ca.Pool(), srv.Addr(), p, "127.0.0.3")
				resp, err := c.Get("https://a.example.com/")
				if err != nil {
					failures = append(failures, fmt.Sprintf("arrival %d: %v", i, err))
				} else {
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					ok.Add(1)
				}
				c.CloseIdleConnections()
			}
			wg.Wait()
			if len(failures) > 0 {
				t.Errorf("%d of %d arrivals failed: %s", len(failures), arrivals, strings.Join(failures, "; "))
			}
			if handled.Load() != ok.Load() {
				t.Errorf("Handler called %d times, %d answers reached their clients", handled.Load(), ok.Load())
			}
			if peak := tableOf(srv).stats().peak; peak > loopers {
				t.Errorf("%d connections held a slot at once; limit %d", peak, loopers)
			}
			t.Logf("%d requests answered, %d of the loopers' failed; shed: %v", ok.Load(), loopFailed.Load(), &n)
		})
	}
}

// TestIdleFloodFromOneSource is the overload of the issue: thousands of
// idle keep-alive TLS connections from one source fill the listener, and
// clients from another source are still served, each taking the slot of
// an idle connection of the flood, while the flooding source's new
// connections only take the place of its own idle ones.
func TestIdleFloodFromOneSource(t *testing.T) {
	if testing.Short() {
		t.Skip("opens 10,000 sockets")
	}
	store, ca := newTestStore(t)
	for i, tc := range []struct {
		proto             proto
		flood, newcomers  int
		floodersReconnect int
	}{
		{proto: h1, flood: 5000, newcomers: 200, floodersReconnect: 50},
		{proto: h2, flood: 5000, newcomers: 200, floodersReconnect: 50},
	} {
		// Sources of their own per case: the sockets of the last one in
		// TIME_WAIT would slow the choice of local ports.
		flooder, newcomer, other := fmt.Sprintf("127.0.%d.2", i+1), fmt.Sprintf("127.0.%d.3", i+1), fmt.Sprintf("127.0.%d.4", i+1)
		t.Run(string(tc.proto), func(t *testing.T) {
			start := time.Now()
			var n shedCounts
			srv := startServer(t, n.config(Config{Certs: store, MaxConnections: tc.flood,
				HandshakeTimeout: 30 * time.Second, IdleTimeout: 10 * time.Minute}))
			tbl := tableOf(srv)
			conf := &tls.Config{RootCAs: ca.Pool(), ServerName: "a.example.com",
				// Cheap handshakes for the flood, under -race above all:
				// resumed, without certificates, and P-256, which is assembly
				// on common platforms, where X25519 and ML-KEM (Go's default
				// key shares) are Go code the race detector instruments.
				ClientSessionCache: tls.NewLRUClientSessionCache(8),
				CurvePreferences:   []tls.CurveID{tls.CurveP256}}

			// open dials count connections from ip in parallel, does one GET on
			// each and keeps them; it returns them and the failures.
			open := func(ip string, count int) ([]*tls.Conn, []error) {
				const workers = 8
				conns := make([]*tls.Conn, count)
				errs := make([]error, count)
				next := make(chan int)
				var wg sync.WaitGroup
				for range workers {
					wg.Go(func() {
						for i := range next {
							c, err := dialRaw(srv.Addr(), ip, conf, tc.proto)
							if err == nil {
								if _, err = rawGet(c, tc.proto); err != nil {
									c.Close()
								}
							}
							conns[i], errs[i] = c, err
						}
					})
				}
				for i := range count {
					next <- i
				}
				close(next)
				wg.Wait()
				var failed []error
				for i, err := range errs {
					if err != nil {
						failed = append(failed, err)
						conns[i] = nil
					}
				}
				return conns, failed
			}
			closeAll := func(conns []*tls.Conn) {
				for _, c := range conns {
					if c != nil {
						c.Close()
					}
				}
			}

			flood, failed := open(flooder, tc.flood)
			defer closeAll(flood)
			if len(failed) > 0 {
				t.Fatalf("%d of %d flood connections failed below the limit, first: %v", len(failed), tc.flood, failed[0])
			}
			waitForWithin(t, 30*time.Second, "the flood to fill the listener, idle", func() bool {
				st := tbl.stats()
				return st.open == tc.flood && st.idle == tc.flood
			})
			floodTime := time.Since(start)

			// The flooding source is at its share: its new connections are
			// served in the place of its own idle ones, and it does not grow.
			again, failed := open(flooder, tc.floodersReconnect)
			defer closeAll(again)
			for _, err := range failed {
				t.Errorf("flood reconnect failed: %v", err)
			}
			if st := tbl.stats(); st.open != tc.flood {
				t.Errorf("%d connections hold a slot after the flood's reconnects, want %d", st.open, tc.flood)
			}

			// Another source is served, connection after connection, each
			// kept open: each takes the slot of an idle flood connection.
			newcomers, failed := open(newcomer, tc.newcomers)
			defer closeAll(newcomers)
			for _, err := range failed {
				t.Errorf("newcomer failed: %v", err)
			}
			// And so is a plain client of a third source.
			c := newClientFrom(t, ca.Pool(), srv.Addr(), tc.proto, other)
			if resp, _ := get(t, c, "a.example.com", nil); resp.StatusCode != http.StatusOK {
				t.Errorf("client of a third source: status %d", resp.StatusCode)
			}

			wantShed := int64(tc.floodersReconnect + tc.newcomers + 1)
			if n.idle.Load() != wantShed || n.perSource.Load() != 0 || n.limited.Load() != 0 {
				t.Errorf("counted %v; want idle %d, per source 0, paused 0", &n, wantShed)
			}
			if st := tbl.stats(); st.peak > tc.flood {
				t.Errorf("%d connections held a slot at once; limit %d", st.peak, tc.flood)
			}
			t.Logf("%d %s connections in %v; %d newcomers served; total %v", tc.flood, tc.proto,
				floodTime.Round(time.Millisecond), tc.newcomers-len(failed), time.Since(start).Round(time.Millisecond))
		})
	}
}

// waitForWithin polls cond for up to d.
func waitForWithin(tb testing.TB, d time.Duration, what string, cond func() bool) {
	tb.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			tb.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestPerSourceRefusal: at a full listener that another source shares, a
// source that holds its share with nothing idle has its new connection
// closed at accept, and counted.
func TestPerSourceRefusal(t *testing.T) {
	store, ca := newTestStore(t)
	for i, p := range []proto{h1, h2} {
		holder, other := fmt.Sprintf("127.0.%d.12", i+1), fmt.Sprintf("127.0.%d.13", i+1)
		t.Run(string(p), func(t *testing.T) {
			var n shedCounts
			srv := startServer(t, n.config(Config{Certs: store, MaxConnections: 3}))
			conf := &tls.Config{RootCAs: ca.Pool(), ServerName: "a.example.com"}
			// Connections that have sent no request: they hold the three
			// slots, two of one source, one of another, and are not idle.
			for _, ip := range []string{holder, holder, other} {
				c, err := dialRaw(srv.Addr(), ip, conf, p)
				if err != nil {
					t.Fatal(err)
				}
				defer c.Close()
			}
			waitForWithin(t, 10*time.Second, "every slot taken", func() bool { return tableOf(srv).stats().open == 3 })
			for j := range 3 {
				if c, err := dialRaw(srv.Addr(), holder, conf, p); err == nil {
					// The handshake may complete in the kernel's buffers
					// before the close: the connection must be dead.
					c.SetDeadline(time.Now().Add(5 * time.Second))
					if _, err := rawGet(c, p); err == nil {
						t.Fatalf("connection %d of the source at its share was served", j)
					}
					c.Close()
				}
			}
			if got := n.perSource.Load(); got != 3 {
				t.Errorf("per-source refusals %d, want 3 (%v)", got, &n)
			}
			if n.idle.Load() != 0 {
				t.Errorf("shed an idle connection where none was: %v", &n)
			}
		})
	}
}
