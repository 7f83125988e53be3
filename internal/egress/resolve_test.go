package egress

import (
	"context"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"golang.org/x/net/dns/dnsmessage"
)

// ttlResolver answers every name with one address and a fixed TTL, and
// counts lookups.
type ttlResolver struct {
	mu   sync.Mutex
	n    int
	ttl  time.Duration
	fail bool
}

func (r *ttlResolver) LookupNetIPTTL(_ context.Context, _, _ string) ([]netip.Addr, time.Duration, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.n++
	if r.fail {
		return nil, 0, &net.DNSError{Err: "server misbehaving", IsTemporary: true}
	}
	return []netip.Addr{serverIP}, r.ttl, nil
}

func (r *ttlResolver) LookupNetIP(ctx context.Context, network, host string) ([]netip.Addr, error) {
	a, _, err := r.LookupNetIPTTL(ctx, network, host)
	return a, err
}

func (r *ttlResolver) lookups() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.n
}

type plainResolver struct{ r *ttlResolver }

func (p plainResolver) LookupNetIP(ctx context.Context, network, host string) ([]netip.Addr, error) {
	return p.r.LookupNetIP(ctx, network, host)
}

// TestCacheExpiry: an answer is kept no longer than its TTL, nor than the
// cache's maximum age; without a TTL, the maximum age; errors not at all.
// Time is synctest's fake clock.
func TestCacheExpiry(t *testing.T) {
	tests := []struct {
		name   string
		ttl    time.Duration
		maxAge time.Duration
		plain  bool
		want   time.Duration // how long an answer is served from the cache
	}{
		{name: "TTL below the maximum age", ttl: 30 * time.Second, maxAge: time.Minute, want: 30 * time.Second},
		{name: "maximum age below the TTL", ttl: time.Hour, maxAge: 10 * time.Second, want: 10 * time.Second},
		{name: "resolver without TTLs", maxAge: 5 * time.Second, plain: true, want: 5 * time.Second},
		{name: "TTL zero", ttl: 0, maxAge: time.Minute, want: 0},
		{name: "maximum age zero", ttl: time.Minute, maxAge: 0, want: 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				r := &ttlResolver{ttl: tt.ttl}
				var res Resolver = r
				if tt.plain {
					res = plainResolver{r}
				}
				c := NewCache(res, tt.maxAge)
				lookup := func() {
					if _, err := c.LookupNetIP(t.Context(), "ip", "api.example.test"); err != nil {
						t.Fatal(err)
					}
				}
				lookup()
				if tt.want > 0 {
					time.Sleep(tt.want - time.Nanosecond)
					lookup()
					if n := r.lookups(); n != 1 {
						t.Fatalf("%d lookups just before expiry, want 1", n)
					}
				}
				time.Sleep(time.Nanosecond)
				lookup()
				if n := r.lookups(); n != 2 {
					t.Fatalf("%d lookups at expiry, want 2", n)
				}
			})
		})
	}
	t.Run("errors are not cached", func(t *testing.T) {
		r := &ttlResolver{ttl: time.Minute, fail: true}
		c := NewCache(r, time.Minute)
		for range 2 {
			if _, err := c.LookupNetIP(t.Context(), "ip", "x.test"); err == nil {
				t.Fatal("no error")
			}
		}
		if n := r.lookups(); n != 2 {
			t.Errorf("%d lookups, want 2", n)
		}
	})
	t.Run("bounded size", func(t *testing.T) {
		r := &ttlResolver{ttl: time.Minute}
		c := NewCache(r, time.Minute)
		c.maxEntries = 3
		for _, h := range []string{"a", "b", "c", "d", "e"} {
			if _, err := c.LookupNetIP(t.Context(), "ip", h); err != nil {
				t.Fatal(err)
			}
		}
		if n := len(c.m); n > 3 {
			t.Errorf("%d entries, want at most 3", n)
		}
	})
}

// TestGuardCacheSpellings: spellings of one name share one cache entry.
func TestGuardCacheSpellings(t *testing.T) {
	r := newFakeResolver(map[string][]string{"api.example.test": {"127.0.0.10", "127.0.0.77"}})
	g := newTestGuard(t, NewCache(r, time.Minute), GuardOptions{})
	for _, h := range []string{"api.example.test", "API.Example.Test.", "api.EXAMPLE.test"} {
		d, err := g.Check(t.Context(), h, 443)
		if err != nil || d.Addr != serverIP {
			t.Fatalf("Check(%q) = %+v, %v", h, d, err)
		}
	}
	if got := r.lookups(); len(got) != 1 {
		t.Errorf("lookups = %q, want one", got)
	}
}

// dnsServer is a DNS server on 127.0.0.1 (UDP and TCP on one port) that
// answers from a function.
type dnsServer struct {
	addr string
	wg   sync.WaitGroup
	mu   sync.Mutex
	n    int
}

func startDNS(t *testing.T, answer func(q dnsmessage.Question, tcp bool) []dnsmessage.Message) *dnsServer {
	t.Helper()
	var (
		pc  net.PacketConn
		tln net.Listener
		err error
	)
	for range 20 {
		if pc, err = net.ListenPacket("udp", "127.0.0.1:0"); err != nil {
			t.Fatal(err)
		}
		if tln, err = net.Listen("tcp", pc.LocalAddr().String()); err == nil {
			break
		}
		_ = pc.Close()
	}
	if err != nil {
		t.Fatal(err)
	}
	s := &dnsServer{addr: pc.LocalAddr().String()}
	reply := func(req []byte, tcp bool) [][]byte {
		var m dnsmessage.Message
		if err := m.Unpack(req); err != nil || len(m.Questions) != 1 {
			return nil
		}
		s.mu.Lock()
		s.n++
		s.mu.Unlock()
		var out [][]byte
		for _, resp := range answer(m.Questions[0], tcp) {
			switch resp.Header.ID {
			case 0:
				resp.Header.ID = m.Header.ID
			default: // a spoof: never the query's ID
				resp.Header.ID ^= m.Header.ID
			}
			resp.Header.Response = true
			if resp.Questions == nil {
				resp.Questions = m.Questions
			}
			b, err := resp.Pack()
			if err != nil {
				t.Errorf("pack: %v", err)
				return nil
			}
			out = append(out, b)
		}
		return out
	}
	s.wg.Go(func() {
		buf := make([]byte, 1500)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			for _, b := range reply(buf[:n], false) {
				_, _ = pc.WriteTo(b, from)
			}
		}
	})
	s.wg.Go(func() {
		for {
			c, err := tln.Accept()
			if err != nil {
				return
			}
			var l [2]byte
			if _, err := io.ReadFull(c, l[:]); err == nil {
				req := make([]byte, binary.BigEndian.Uint16(l[:]))
				if _, err := io.ReadFull(c, req); err == nil {
					for _, b := range reply(req, true) {
						_, _ = c.Write(append(binary.BigEndian.AppendUint16(nil, uint16(len(b))), b...))
					}
				}
			}
			_ = c.Close()
		}
	})
	t.Cleanup(func() { _ = pc.Close(); _ = tln.Close(); s.wg.Wait() })
	return s
}

func (s *dnsServer) queries() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.n
}

func rrA(name string, ttl uint32, a string) dnsmessage.Resource {
	return dnsmessage.Resource{
		Header: dnsmessage.ResourceHeader{Name: dnsmessage.MustNewName(name), Class: dnsmessage.ClassINET, TTL: ttl},
		Body:   &dnsmessage.AResource{A: netip.MustParseAddr(a).As4()},
	}
}

func rrAAAA(name string, ttl uint32, a string) dnsmessage.Resource {
	return dnsmessage.Resource{
		Header: dnsmessage.ResourceHeader{Name: dnsmessage.MustNewName(name), Class: dnsmessage.ClassINET, TTL: ttl},
		Body:   &dnsmessage.AAAAResource{AAAA: netip.MustParseAddr(a).As16()},
	}
}

func rrCNAME(name string, ttl uint32, target string) dnsmessage.Resource {
	return dnsmessage.Resource{
		Header: dnsmessage.ResourceHeader{Name: dnsmessage.MustNewName(name), Class: dnsmessage.ClassINET, TTL: ttl},
		Body:   &dnsmessage.CNAMEResource{CNAME: dnsmessage.MustNewName(target)},
	}
}

// testZone answers the names of TestDNSResolver.
func testZone(q dnsmessage.Question, tcp bool) []dnsmessage.Message {
	ok := func(rr ...dnsmessage.Resource) []dnsmessage.Message {
		return []dnsmessage.Message{{Answers: rr}}
	}
	name := strings.ToLower(q.Name.String())
	switch {
	case name == "a.test." && q.Type == dnsmessage.TypeA:
		// Spoofed answers (wrong IDs) first: they must be ignored.
		spoof := dnsmessage.Message{Header: dnsmessage.Header{ID: 1}, Answers: []dnsmessage.Resource{rrA("a.test.", 999, "127.0.0.66")}}
		spoof2 := dnsmessage.Message{Header: dnsmessage.Header{ID: 2}, Answers: []dnsmessage.Resource{rrA("a.test.", 999, "127.0.0.66")}}
		return append([]dnsmessage.Message{spoof, spoof2}, ok(rrA("a.test.", 30, "127.0.0.10"))...)
	case name == "a.test." && q.Type == dnsmessage.TypeAAAA:
		return ok(rrAAAA("a.test.", 60, "::1"))
	case name == "alias.test.":
		if q.Type == dnsmessage.TypeA {
			return ok(rrCNAME("alias.test.", 10, "a.test."), rrA("a.test.", 30, "127.0.0.10"),
				rrA("unrelated.test.", 30, "127.0.0.66"))
		}
		return ok(rrCNAME("alias.test.", 10, "a.test."))
	case name == "poison.test.":
		return ok(rrA("other.test.", 30, "127.0.0.66"))
	case name == "big.test.":
		if !tcp {
			return []dnsmessage.Message{{Header: dnsmessage.Header{Truncated: true}}}
		}
		if q.Type == dnsmessage.TypeA {
			return ok(rrA("big.test.", 20, "127.0.0.12"))
		}
		return ok()
	case name == "broken.test.":
		return []dnsmessage.Message{{Header: dnsmessage.Header{RCode: dnsmessage.RCodeServerFailure}}}
	case name == "silent.test.":
		return nil
	}
	return []dnsmessage.Message{{Header: dnsmessage.Header{RCode: dnsmessage.RCodeNameError}}}
}

func TestDNSResolver(t *testing.T) {
	srv := startDNS(t, testZone)
	r, err := NewDNSResolver([]string{srv.addr}, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		host     string
		network  string
		want     []string
		ttl      time.Duration
		notFound bool
	}{
		{host: "a.test", network: "ip", want: []string{"127.0.0.10", "::1"}, ttl: 30 * time.Second},
		{host: "A.TEST.", network: "ip4", want: []string{"127.0.0.10"}, ttl: 30 * time.Second},
		{host: "a.test", network: "ip6", want: []string{"::1"}, ttl: 60 * time.Second},
		{host: "alias.test", network: "ip", want: []string{"127.0.0.10"}, ttl: 10 * time.Second},
		{host: "big.test", network: "ip", want: []string{"127.0.0.12"}, ttl: 20 * time.Second},
		{host: "poison.test", network: "ip", notFound: true},
		{host: "missing.test", network: "ip", notFound: true},
	}
	for _, tt := range tests {
		addrs, ttl, err := r.LookupNetIPTTL(t.Context(), tt.network, tt.host)
		if tt.notFound {
			var de *net.DNSError
			if !errors.As(err, &de) || !de.IsNotFound {
				t.Errorf("%s: %v, %v; want not found", tt.host, addrs, err)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s: %v", tt.host, err)
			continue
		}
		var got []string
		for _, a := range addrs {
			got = append(got, a.String())
		}
		if !slices.Equal(got, tt.want) || ttl != tt.ttl {
			t.Errorf("%s %s = %v ttl %v, want %v ttl %v", tt.network, tt.host, got, ttl, tt.want, tt.ttl)
		}
	}

	// A failing server is skipped for the next; a silent one times out.
	broken := startDNS(t, func(dnsmessage.Question, bool) []dnsmessage.Message {
		return []dnsmessage.Message{{Header: dnsmessage.Header{RCode: dnsmessage.RCodeServerFailure}}}
	})
	r2, err := NewDNSResolver([]string{broken.addr, srv.addr}, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if addrs, err := r2.LookupNetIP(t.Context(), "ip4", "a.test"); err != nil || len(addrs) != 1 || addrs[0] != serverIP {
		t.Errorf("second server after SERVFAIL: %v, %v", addrs, err)
	}
	r3, _ := NewDNSResolver([]string{srv.addr}, 50*time.Millisecond)
	_, err = r3.LookupNetIP(t.Context(), "ip", "silent.test")
	var de *net.DNSError
	if !errors.As(err, &de) || !de.IsTimeout {
		t.Errorf("silent server: %v, want a timeout *net.DNSError", err)
	}
	_, err = r3.LookupNetIP(t.Context(), "ip", "broken.test")
	if !errors.As(err, &de) || !de.IsTemporary || de.IsNotFound {
		t.Errorf("SERVFAIL: %v, want a temporary *net.DNSError", err)
	}

	// Through a Cache and the Guard: the TTL bounds the entry, and the
	// second Check does not ask the server again.
	g := newTestGuard(t, NewCache(r, time.Minute), GuardOptions{})
	before := srv.queries()
	for range 2 {
		if d, err := g.Check(t.Context(), "alias.test", 443); err != nil || d.Addr != serverIP {
			t.Fatalf("Check(alias.test) = %+v, %v", d, err)
		}
	}
	if n := srv.queries() - before; n != 2 { // one A and one AAAA query
		t.Errorf("%d queries for two checks, want 2", n)
	}

	for _, bad := range [][]string{nil, {"dns.example"}, {"127.0.0.1:x"}} {
		if _, err := NewDNSResolver(bad, 0); err == nil {
			t.Errorf("NewDNSResolver(%q) accepted", bad)
		}
	}
	if r, err := NewDNSResolver([]string{"127.0.0.1", "[::1]", "::1"}, 0); err != nil || r.servers[0] != "127.0.0.1:53" ||
		r.servers[1] != "[::1]:53" || r.timeout != DefaultDNSTimeout {
		t.Errorf("NewDNSResolver defaults: %+v, %v", r, err)
	}
}
