package egress

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"tollgate.dev/tollgate/internal/request"
)

// Network rule of these tests: traffic goes only to 127.0.0.0/8. Addresses
// outside it appear only in Check, which never dials.

var (
	serverIP = netip.MustParseAddr("127.0.0.10") // the allowed "external" service
	canaryIP = netip.MustParseAddr("127.0.0.77") // must never be reached
)

// fakeResolver maps names to a sequence of answers (the last repeats) and
// counts lookups.
type fakeResolver struct {
	mu      sync.Mutex
	answers map[string][][]netip.Addr
	asked   []string
}

func newFakeResolver(m map[string][]string) *fakeResolver {
	r := &fakeResolver{answers: map[string][][]netip.Addr{}}
	for name, seq := range m {
		for _, ans := range seq {
			var as []netip.Addr
			for _, s := range strings.Split(ans, ",") {
				as = append(as, netip.MustParseAddr(s))
			}
			r.answers[name] = append(r.answers[name], as)
		}
	}
	return r
}

func (r *fakeResolver) LookupNetIP(_ context.Context, _, host string) ([]netip.Addr, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, h := range r.asked {
		if h == host {
			n++
		}
	}
	r.asked = append(r.asked, host)
	seq, ok := r.answers[host]
	if !ok {
		return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
	}
	return append([]netip.Addr(nil), seq[min(n, len(seq)-1)]...), nil
}

func (r *fakeResolver) lookups() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.asked...)
}

// connCounter is a TCP listener that counts the connections it accepts.
// Connections reports the count deterministically: it makes a marker
// connection of its own and waits until the accept loop has reached it;
// the accept queue is FIFO, so every earlier connection has been counted.
type connCounter struct {
	ln      net.Listener
	wg      sync.WaitGroup
	mu      sync.Mutex
	seen    []string // remote addresses, in accept order
	changed chan struct{}
	markers map[string]bool
}

func listenCounter(t *testing.T, addr string) (*connCounter, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	c := &connCounter{ln: ln, changed: make(chan struct{}), markers: map[string]bool{}}
	c.wg.Go(func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			c.mu.Lock()
			c.seen = append(c.seen, conn.RemoteAddr().String())
			close(c.changed)
			c.changed = make(chan struct{})
			c.mu.Unlock()
			_ = conn.Close()
		}
	})
	t.Cleanup(func() { _ = ln.Close(); c.wg.Wait() })
	return c, nil
}

func (c *connCounter) port() int { return c.ln.Addr().(*net.TCPAddr).Port }

func (c *connCounter) Connections(t *testing.T) int {
	t.Helper()
	m, err := net.Dial("tcp", c.ln.Addr().String())
	if err != nil {
		t.Fatalf("marker connection: %v", err)
	}
	defer m.Close()
	marker := m.LocalAddr().String()
	deadline := time.After(10 * time.Second)
	for {
		c.mu.Lock()
		c.markers[marker] = true
		n, found := 0, false
		for _, s := range c.seen {
			if s == marker {
				found = true
			} else if !c.markers[s] {
				n++
			}
		}
		ch := c.changed
		c.mu.Unlock()
		if found {
			return n
		}
		select {
		case <-ch:
		case <-deadline:
			t.Fatal("the marker connection was never accepted")
		}
	}
}

// listenPair starts the allowed server on 127.0.0.10 and the canary on
// 127.0.0.77 at the same port, so a dial to the wrong address with the
// right port would reach the canary.
func listenPair(t *testing.T) (server, canary *connCounter) {
	t.Helper()
	for range 20 {
		s, err := listenCounter(t, netip.AddrPortFrom(serverIP, 0).String())
		if err != nil {
			t.Fatal(err)
		}
		c, err := listenCounter(t, netip.AddrPortFrom(canaryIP, uint16(s.port())).String())
		if err == nil {
			return s, c
		}
		_ = s.ln.Close()
	}
	t.Fatal("no port free on both 127.0.0.10 and 127.0.0.77")
	return nil, nil
}

// noInterfaces keeps the host's interface addresses out of tests that
// configure their own.
func noInterfaces() ([]net.Addr, error) { return nil, nil }

func newTestGuard(t *testing.T, r Resolver, o GuardOptions) *Guard {
	t.Helper()
	o.Resolver = r
	if o.Allow == nil {
		o.Allow = []netip.Prefix{netip.PrefixFrom(serverIP, 32)}
	}
	if o.interfaceAddrs == nil {
		o.interfaceAddrs = noInterfaces
	}
	g, err := NewGuard(o)
	if err != nil {
		t.Fatal(err)
	}
	return g
}

// hostPort writes "host:port" as an http.Transport hands it to DialContext
// (a bracketed host stays as written).
func hostPort(host string, port int) string {
	if strings.HasPrefix(host, "[") {
		return host + ":" + strconv.Itoa(port)
	}
	return net.JoinHostPort(host, strconv.Itoa(port))
}

// wantDenied checks err is a *DeniedError for the address and class.
func wantDenied(t *testing.T, what string, err error, addr netip.Addr, class Class) {
	t.Helper()
	var de *DeniedError
	if !errors.As(err, &de) {
		t.Fatalf("%s: err = %v, want *DeniedError", what, err)
	}
	if de.Addr != addr || de.Class != class {
		t.Errorf("%s: refused %s (%v), want %s (%v); reason %q", what, de.Addr, de.Class, addr, class, de.Reason)
	}
}

// TestGuardLiteralSpellings: every spelling of a loopback address (here the
// canary's) is classified as written and refused; none is looked up, none
// is dialled.
func TestGuardLiteralSpellings(t *testing.T) {
	_, canary := listenPair(t)
	r := newFakeResolver(nil)
	g := newTestGuard(t, r, GuardOptions{})
	type spelling struct {
		host  string
		addr  string // the address it must be read as
		class Class
	}
	tests := []spelling{
		{"127.0.0.77", "127.0.0.77", Loopback},
		{"2130706509", "127.0.0.77", Loopback},
		{"0x7f.77", "127.0.0.77", Loopback},
		{"0x7f.0.0.0x4d", "127.0.0.77", Loopback},
		{"127.77", "127.0.0.77", Loopback},
		{"0177.0.0.0115", "127.0.0.77", Loopback},
		{"0x7f00004d", "127.0.0.77", Loopback},
		{"127.0.0.77.", "127.0.0.77", Loopback},
		{"１２７.0.0.77", "127.0.0.77", Loopback},
		{"[::ffff:127.0.0.77]", "::ffff:127.0.0.77", EmbedsIPv4},
		{"[::ffff:7f00:4d]", "::ffff:127.0.0.77", EmbedsIPv4},
		{"[::127.0.0.77]", "::127.0.0.77", EmbedsIPv4},
		{"[::1]", "::1", Loopback},
		{"0", "0.0.0.0", Unspecified},
		{"0.0.0.0", "0.0.0.0", Unspecified},
		{"[::]", "::", Unspecified},
	}
	for _, tt := range tests {
		c, err := g.DialContext(t.Context(), "tcp", hostPort(tt.host, canary.port()))
		if err == nil {
			_ = c.Close()
		}
		wantDenied(t, tt.host, err, netip.MustParseAddr(tt.addr), tt.class)
	}
	// Addresses outside loopback: Check only (it never dials).
	for _, tt := range []spelling{
		{"169.254.169.254", "169.254.169.254", LinkLocal},
		{"2852039166", "169.254.169.254", LinkLocal},
		{"0xa9.0xfe.0xa9.0xfe", "169.254.169.254", LinkLocal},
		{"[fe80::a9fe:a9fe]", "fe80::a9fe:a9fe", LinkLocal},
		{"10.0.0.1", "10.0.0.1", Private},
		{"012.1", "10.0.0.1", Private},
		{"[fd00::1]", "fd00::1", Private},
		{"100.64.0.1", "100.64.0.1", CGNAT},
		{"224.0.0.1", "224.0.0.1", Multicast},
		{"[64:ff9b::a9fe:a9fe]", "64:ff9b::a9fe:a9fe", EmbedsIPv4},
		{"[2002:a9fe:a9fe::1]", "2002:a9fe:a9fe::1", EmbedsIPv4},
		{"[2001:0:4136:e378:8000:63bf:80ff:fffe]", "2001:0:4136:e378:8000:63bf:80ff:fffe", EmbedsIPv4},
		{"192.0.2.1", "192.0.2.1", Documentation},
		{"240.0.0.1", "240.0.0.1", Reserved},
	} {
		d, err := g.Check(t.Context(), tt.host, 80)
		wantDenied(t, tt.host, err, netip.MustParseAddr(tt.addr), tt.class)
		if d.Allow || !d.Literal || d.Addr != netip.MustParseAddr(tt.addr) {
			t.Errorf("Check(%s) decision = %+v", tt.host, d)
		}
	}
	if got := r.lookups(); len(got) != 0 {
		t.Errorf("literals were looked up: %q", got)
	}
	if n := canary.Connections(t); n != 0 {
		t.Errorf("canary accepted %d connections, want 0", n)
	}
}

// TestGuardResolvedAnswers covers the answers a resolver can give.
func TestGuardResolvedAnswers(t *testing.T) {
	server, canary := listenPair(t)
	r := newFakeResolver(map[string][]string{
		"api.example.test":      {"127.0.0.10"},
		"internal.example.test": {"127.0.0.77"},
		"mixed.example.test":    {"127.0.0.10,127.0.0.77"},
		"mapped.example.test":   {"::ffff:127.0.0.10"}, // how Go returns /etc/hosts IPv4 entries
		"mapped-canary.test":    {"::ffff:127.0.0.77"},
		"fallback.example.test": {"127.0.0.11,127.0.0.10"}, // nothing listens on .11
	})
	allow := []netip.Prefix{netip.MustParsePrefix("127.0.0.10/32"), netip.MustParsePrefix("127.0.0.11/32")}
	g := newTestGuard(t, r, GuardOptions{Allow: allow})
	port := server.port()

	dial := func(host string) error {
		c, err := g.DialContext(t.Context(), "tcp", hostPort(host, port))
		if err == nil {
			_ = c.Close()
		}
		return err
	}
	if err := dial("api.example.test"); err != nil {
		t.Fatalf("allowed destination: %v", err)
	}
	if err := dial("API.Example.TEST."); err != nil {
		t.Fatalf("allowed destination in another spelling: %v", err)
	}
	if err := dial("mapped.example.test"); err != nil {
		t.Fatalf("mapped answer of an allowed address: %v", err)
	}
	if err := dial("fallback.example.test"); err != nil {
		t.Fatalf("second allowed address after a refused connection: %v", err)
	}
	wantDenied(t, "internal", dial("internal.example.test"), canaryIP, Loopback)
	wantDenied(t, "mapped canary", dial("mapped-canary.test"), canaryIP, Loopback)
	err := dial("mixed.example.test")
	wantDenied(t, "mixed", err, canaryIP, Loopback)

	var re *ResolveError
	var dnsErr *net.DNSError
	if err := dial("missing.example.test"); !errors.As(err, &re) || !errors.As(err, &dnsErr) || !dnsErr.IsNotFound {
		t.Errorf("unknown name: err = %v, want *ResolveError wrapping a not-found *net.DNSError", err)
	}
	if err := dial("127.0.0.1.5"); !errors.Is(err, request.ErrHost) {
		t.Errorf("numeric non-address: err = %v, want request.ErrHost", err)
	}

	wantAsked := []string{"api.example.test", "api.example.test", "mapped.example.test", "fallback.example.test",
		"internal.example.test", "mapped-canary.test", "mixed.example.test", "missing.example.test"}
	if got := r.lookups(); !slices.Equal(got, wantAsked) {
		t.Errorf("lookups = %q, want one canonical lookup per dial: %q", got, wantAsked)
	}
	if n := server.Connections(t); n != 4 {
		t.Errorf("server accepted %d connections, want 4", n)
	}
	if n := canary.Connections(t); n != 0 {
		t.Errorf("canary accepted %d connections, want 0", n)
	}

	// The mixed answer, with the unsafe option: only the allowed address.
	gm := newTestGuard(t, r, GuardOptions{Allow: allow, UnsafeAllowMixed: true})
	c, err := gm.DialContext(t.Context(), "tcp", hostPort("mixed.example.test", port))
	if err != nil {
		t.Fatalf("mixed with UnsafeAllowMixed: %v", err)
	}
	_ = c.Close()
	if got := c.RemoteAddr().(*net.TCPAddr).AddrPort().Addr(); got != serverIP {
		t.Errorf("mixed with UnsafeAllowMixed dialled %s", got)
	}
	if n := canary.Connections(t); n != 0 {
		t.Errorf("canary accepted %d connections, want 0", n)
	}
}

// TestGuardRebinding: the name answers the allowed server first and the
// canary afterwards (DNS rebinding). Whatever path the proxy takes, one
// lookup is made and the checked address is dialled.
func TestGuardRebinding(t *testing.T) {
	server, canary := listenPair(t)
	port := server.port()
	newRebinder := func() *fakeResolver {
		return newFakeResolver(map[string][]string{"rebind.test": {"127.0.0.10", "127.0.0.77"}})
	}

	t.Run("DialContext", func(t *testing.T) {
		r := newRebinder()
		g := newTestGuard(t, r, GuardOptions{})
		c, err := g.DialContext(t.Context(), "tcp", hostPort("rebind.test", port))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if got := c.RemoteAddr().(*net.TCPAddr).AddrPort(); got != netip.AddrPortFrom(serverIP, uint16(port)) {
			t.Errorf("dialled %s, want the checked %s", got, serverIP)
		}
		if n := len(r.lookups()); n != 1 {
			t.Errorf("%d lookups, want 1", n)
		}
	})
	t.Run("Check then Dial", func(t *testing.T) {
		r := newRebinder()
		g := newTestGuard(t, r, GuardOptions{})
		d, err := g.Check(t.Context(), "rebind.test", port)
		if err != nil {
			t.Fatal(err)
		}
		c, err := g.Dial(t.Context(), "tcp", d)
		if err != nil {
			t.Fatal(err)
		}
		_ = c.Close()
		if n := len(r.lookups()); n != 1 {
			t.Errorf("%d lookups, want 1", n)
		}
	})
	t.Run("Check then http.Transport with WithDecision", func(t *testing.T) {
		srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			_, _ = w.Write([]byte("ok"))
		}), ReadHeaderTimeout: 5 * time.Second}
		ln, err := net.Listen("tcp", netip.AddrPortFrom(serverIP, 0).String())
		if err != nil {
			t.Fatal(err)
		}
		httpCanary, err := listenCounter(t, netip.AddrPortFrom(canaryIP, uint16(ln.Addr().(*net.TCPAddr).Port)).String())
		if err != nil {
			_ = ln.Close()
			t.Skipf("canary port busy: %v", err)
		}
		var wg sync.WaitGroup
		wg.Go(func() { _ = srv.Serve(ln) })
		defer func() { _ = srv.Close(); wg.Wait() }()
		hport := ln.Addr().(*net.TCPAddr).Port

		r := newRebinder()
		g := newTestGuard(t, r, GuardOptions{})
		tr := &http.Transport{DialContext: g.DialContext}
		defer tr.CloseIdleConnections()
		d, err := g.Check(t.Context(), "rebind.test", hport) // for policy and audit
		if err != nil {
			t.Fatal(err)
		}
		req, _ := http.NewRequestWithContext(WithDecision(t.Context(), d), "GET", "http://"+hostPort("rebind.test", hport)+"/", nil)
		resp, err := (&http.Client{Transport: tr}).Do(req)
		if err != nil {
			t.Fatal(err)
		}
		_ = resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Errorf("status %d", resp.StatusCode)
		}
		if n := len(r.lookups()); n != 1 {
			t.Errorf("%d lookups, want 1 (the transport's dial must reuse the checked decision)", n)
		}
		if n := httpCanary.Connections(t); n != 0 {
			t.Errorf("canary accepted %d connections, want 0", n)
		}
	})
	t.Run("a second, independent dial sees the new answer and refuses it", func(t *testing.T) {
		r := newRebinder()
		g := newTestGuard(t, r, GuardOptions{})
		c, err := g.DialContext(t.Context(), "tcp", hostPort("rebind.test", port))
		if err != nil {
			t.Fatal(err)
		}
		_ = c.Close()
		_, err = g.DialContext(t.Context(), "tcp", hostPort("rebind.test", port))
		wantDenied(t, "rebound", err, canaryIP, Loopback)
	})
	if n := canary.Connections(t); n != 0 {
		t.Errorf("canary accepted %d connections, want 0", n)
	}
}

// TestGuardOwnAndLists: the gateway's own addresses are refused even inside
// a wide allow-list, admitted only by an exact entry; the deny-list wins
// over the allow-list; a forged Decision can't lead Dial anywhere refused.
func TestGuardOwnAndLists(t *testing.T) {
	server, canary := listenPair(t)
	port := server.port()
	wide := []netip.Prefix{netip.MustParsePrefix("127.0.0.0/24")}
	r := newFakeResolver(map[string][]string{"self.test": {"127.0.0.77"}})

	gConfigured := newTestGuard(t, r, GuardOptions{Allow: wide, OwnAddrs: []netip.Addr{canaryIP}})
	gInterface := newTestGuard(t, r, GuardOptions{Allow: wide, interfaceAddrs: func() ([]net.Addr, error) {
		return []net.Addr{&net.IPNet{IP: net.IPv4(127, 0, 0, 77), Mask: net.CIDRMask(8, 32)}}, nil
	}})
	for name, g := range map[string]*Guard{"configured": gConfigured, "interface": gInterface} {
		for _, host := range []string{"self.test", "127.0.0.77", "2130706509"} {
			_, err := g.DialContext(t.Context(), "tcp", hostPort(host, port))
			wantDenied(t, name+" "+host, err, canaryIP, Own)
		}
		// The rest of the wide range is admitted.
		c, err := g.DialContext(t.Context(), "tcp", hostPort("127.0.0.10", port))
		if err != nil {
			t.Fatalf("%s: 127.0.0.10 in the allow-list: %v", name, err)
		}
		_ = c.Close()
	}

	exact := newTestGuard(t, r, GuardOptions{Allow: []netip.Prefix{netip.MustParsePrefix("127.0.0.77/32")},
		OwnAddrs: []netip.Addr{canaryIP}})
	if d, err := exact.Check(t.Context(), "127.0.0.77", port); err != nil || !d.Allow || d.Class != Own {
		t.Errorf("own address with an exact allow entry: %+v, %v", d, err)
	}

	denied := newTestGuard(t, r, GuardOptions{Allow: wide, Deny: []netip.Prefix{netip.MustParsePrefix("127.0.0.77/32")}})
	_, err := denied.DialContext(t.Context(), "tcp", hostPort("self.test", port))
	wantDenied(t, "deny-list", err, canaryIP, Loopback)
	if d, err := denied.Check(t.Context(), "8.8.8.8", 443); err != nil || !d.Allow {
		t.Errorf("public address: %+v, %v", d, err)
	}
	dp := newTestGuard(t, r, GuardOptions{Deny: []netip.Prefix{netip.MustParsePrefix("8.8.8.0/24")}})
	if _, err := dp.Check(t.Context(), "8.8.8.8", 443); err == nil {
		t.Error("a public address in the deny-list was allowed")
	}

	forged := Decision{Host: "forged.test", Port: port, Allow: true,
		Addrs: []Verdict{{Addr: canaryIP, Class: Public, Allowed: true}}}
	_, err = gConfigured.Dial(t.Context(), "tcp", forged)
	wantDenied(t, "forged decision", err, canaryIP, Own)
	_, err = gConfigured.Dial(t.Context(), "tcp", Decision{Host: "x", Port: port, Reason: "no"})
	wantDenied(t, "refused decision", err, netip.Addr{}, Unclassified)

	if n := canary.Connections(t); n != 0 {
		t.Errorf("canary accepted %d connections, want 0", n)
	}
	if n := server.Connections(t); n != 2 {
		t.Errorf("server accepted %d connections, want 2", n)
	}
}

// TestGuardInterfaceAddrs: NewGuard reads the host's interfaces; loopback
// is among them on every test machine.
func TestGuardInterfaceAddrs(t *testing.T) {
	g, err := NewGuard(GuardOptions{Allow: []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}})
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := g.own[netip.MustParseAddr("127.0.0.1")]; !ok {
		t.Skip("no 127.0.0.1 on an interface here")
	}
	// 127.0.0.1/32 is an exact entry, so it is admitted though it is ours.
	if d, err := g.Check(t.Context(), "127.0.0.1", 1); err != nil || d.Class != Own {
		t.Errorf("Check(127.0.0.1) = %+v, %v", d, err)
	}
	bad := errors.New("boom")
	if _, err := NewGuard(GuardOptions{interfaceAddrs: func() ([]net.Addr, error) { return nil, bad }}); !errors.Is(err, bad) {
		t.Errorf("NewGuard with failing interfaces: %v", err)
	}
	if _, err := NewGuard(GuardOptions{Allow: []netip.Prefix{{}}, interfaceAddrs: noInterfaces}); err == nil {
		t.Error("NewGuard accepted an invalid prefix")
	}
}

// TestDecisionRecord: the decision reads in the audit record as it should.
func TestDecisionRecord(t *testing.T) {
	r := newFakeResolver(map[string][]string{"mixed.test": {"127.0.0.10,::ffff:169.254.169.254"}})
	g := newTestGuard(t, r, GuardOptions{})
	d, err := g.Check(t.Context(), "Mixed.Test", 443)
	if err == nil {
		t.Fatal("mixed answer allowed")
	}
	b, _ := json.Marshal(d)
	want := `{"host":"mixed.test","port":443,"allow":false,"addr":"169.254.169.254","class":"link-local",` +
		`"reason":"answer mixes allowed and refused addresses (DNS rebinding?): link-local address",` +
		`"addrs":[{"addr":"127.0.0.10","class":"loopback","allowed":true,"by":"allow-list"},` +
		`{"addr":"169.254.169.254","class":"link-local","allowed":false}]}`
	if string(b) != want {
		t.Errorf("decision JSON\n got %s\nwant %s", b, want)
	}
	dst := d.Destination()
	if dst.IP != d.Addr || dst.Port != 443 || len(dst.Addresses) != 2 {
		t.Errorf("Destination() = %+v", dst)
	}
	if got := d.Dialable(); got != nil {
		t.Errorf("Dialable() of a refusal = %v", got)
	}
	_, err = g.Check(t.Context(), "[64:ff9b::a9fe:a9fe]", 80)
	var de *DeniedError
	if !errors.As(err, &de) || de.Reason != "IPv6 address embedding 169.254.169.254 (link-local)" {
		t.Errorf("NAT64 refusal: %v", err)
	}
}
