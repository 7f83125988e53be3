package exchange

import (
	"context"
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"reflect"
	"strings"
	"sync"
	"testing"

	"tollgate.dev/tollgate/internal/audit"
	"tollgate.dev/tollgate/internal/oidc"
	"tollgate.dev/tollgate/internal/request"
)

// events records what a front hands the audit seam.
type events struct {
	mu        sync.Mutex
	decided   int
	completed []audit.Event
	refuse    error
}

func (e *events) Decided(*audit.Event) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.decided++
	return e.refuse
}

func (e *events) Completed(ev *audit.Event) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.completed = append(e.completed, *ev)
}

// begin runs Begin on a request from peer to the listener 127.0.0.9:8443.
func begin(f *Front, r *http.Request, peer string) (*Exchange, bool, *httptest.ResponseRecorder) {
	r.RemoteAddr = peer
	*r = *r.WithContext(context.WithValue(r.Context(), http.LocalAddrContextKey, &net.TCPAddr{IP: net.IPv4(127, 0, 0, 9), Port: 8443}))
	w := httptest.NewRecorder()
	x, ok := f.Begin(w, r, nil)
	return x, ok, w
}

func TestBeginDescribesTheRequestOnce(t *testing.T) {
	lb := []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}
	for _, tc := range []struct {
		name     string
		host     string
		peer     string
		headers  map[string]string
		trusted  []netip.Prefix
		wantHost string
		wantPort int
		wantIP   string
	}{
		{name: "canonical host", host: "Admin.Example.COM.", peer: "198.51.100.1:1", wantHost: "admin.example.com", wantIP: "198.51.100.1"},
		{name: "port carried", host: "admin.example.com.:8443", peer: "198.51.100.1:1", wantHost: "admin.example.com", wantPort: 8443, wantIP: "198.51.100.1"},
		{name: "idn", host: "bücher.example", peer: "198.51.100.1:1", wantHost: "xn--bcher-kva.example", wantIP: "198.51.100.1"},
		{name: "untrusted forwarded-for is ignored", host: "a.example", peer: "198.51.100.1:1",
			headers: map[string]string{"X-Forwarded-For": "1.2.3.4"}, trusted: lb, wantHost: "a.example", wantIP: "198.51.100.1"},
		{name: "trusted forwarded-for names the client", host: "a.example", peer: "127.0.0.1:1",
			headers: map[string]string{"X-Forwarded-For": "6.6.6.6, 1.2.3.4"}, trusted: lb, wantHost: "a.example", wantIP: "1.2.3.4"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := New(Options{Name: "ingress", Rules: Rules{TrustedProxies: tc.trusted}})
			r := httptest.NewRequest("GET", "/x", nil)
			r.Host = tc.host
			for k, v := range tc.headers {
				r.Header.Set(k, v)
			}
			x, ok, w := begin(f, r, tc.peer)
			if !ok {
				t.Fatalf("refused: %d %s", w.Code, w.Body)
			}
			q := x.Req
			if q.Host != tc.wantHost || q.HostPort != tc.wantPort || q.RemoteIP.String() != tc.wantIP {
				t.Errorf("host %q port %d remote %s; want %q %d %s", q.Host, q.HostPort, q.RemoteIP, tc.wantHost, tc.wantPort, tc.wantIP)
			}
			if q.Front != "ingress" || x.Event.Kind != "ingress" {
				t.Errorf("front %q kind %q", q.Front, x.Event.Kind)
			}
			if q.Destination.Port != 8443 || q.Destination.IP != netip.MustParseAddr("127.0.0.9") {
				t.Errorf("destination %+v, want the listener's", q.Destination)
			}
			if want := q.Authority().String(); r.Host != want || x.Event.Host != want {
				t.Errorf("upstream Host %q, event host %q; want the canonical %q", r.Host, x.Event.Host, want)
			}
		})
	}
}

func TestBeginRefuses(t *testing.T) {
	for _, tc := range []struct {
		name    string
		method  string
		host    string
		headers [][2]string
		opts    Options
		sni     string
		// h2Target makes the request HTTP/2 with this :path.
		h2Target string
		want     int
	}{
		{name: "host not a reg-name", host: "a.example;x", want: 400},
		{name: "brackets around a name", host: "[admin.example.com]", want: 400},
		{name: "short ipv4", host: "127.1", want: 400},
		{name: "empty host", host: "", want: 400},
		{name: "underscore header", host: "a.example", headers: [][2]string{{"X_Forwarded_For", "1.2.3.4"}}, want: 400},
		{name: "underscore identity header", host: "a.example", headers: [][2]string{{"X_Tollgate_User", "admin"}}, want: 400},
		{name: "h2c upgrade", host: "a.example", headers: [][2]string{{"Connection", "Upgrade, HTTP2-Settings"}, {"Upgrade", "h2c"}}, want: 403},
		{name: "websocket on POST", method: "POST", host: "a.example", headers: [][2]string{{"Upgrade", "websocket"}}, want: 403},
		{name: "two upgrades", host: "a.example", headers: [][2]string{{"Upgrade", "websocket"}, {"Upgrade", "h2c"}}, want: 403},
		{name: "host field differs from authority", host: "a.example", headers: [][2]string{{"Host", "admin.example"}}, want: 400},
		{name: "absolute :path over HTTP/2", host: "a.example", h2Target: "https://admin.example/x", want: 400},
		{name: "misdirected", host: "admin.example", sni: "www.example",
			opts: Options{Rules: Rules{Misdirected: func(sni, host string) bool { return sni != host }}}, want: 421},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec := &events{}
			tc.opts.Name, tc.opts.Recorder = "ingress", rec
			f := New(tc.opts)
			r := httptest.NewRequest(cmpOr(tc.method, "GET"), "/x", nil)
			r.Host = tc.host
			for _, h := range tc.headers {
				r.Header[h[0]] = append(r.Header[h[0]], h[1])
			}
			if tc.sni != "" {
				r.TLS = &tls.ConnectionState{ServerName: tc.sni}
			}
			if tc.h2Target != "" {
				r.ProtoMajor, r.ProtoMinor, r.Proto, r.RequestURI = 2, 0, "HTTP/2.0", tc.h2Target
			}
			x, ok, w := begin(f, r, "198.51.100.1:1")
			x.Finish()
			if ok || w.Code != tc.want {
				t.Fatalf("ok=%v status %d, want refused with %d", ok, w.Code, tc.want)
			}
			if w.Header().Get("Content-Type") != "application/json" || !strings.Contains(w.Body.String(), x.Event.RequestID) {
				t.Errorf("not the JSON error with the request id: %q", w.Body)
			}
			if len(rec.completed) != 1 || rec.completed[0].Status != tc.want || rec.decided != 0 {
				t.Errorf("audit: %d events, decided %d; want one refused event", len(rec.completed), rec.decided)
			}
		})
	}
}

func TestUnderscoresCanBeDropped(t *testing.T) {
	f := New(Options{Rules: Rules{Underscores: DropUnderscores}})
	r := httptest.NewRequest("GET", "/x", nil)
	r.Header["X_forwarded_for"] = []string{"1.2.3.4"}
	x, ok, _ := begin(f, r, "198.51.100.1:1")
	if !ok || x.Req.Headers["X_forwarded_for"] != nil {
		t.Fatalf("ok=%v headers %v", ok, x.Req.Headers)
	}
}

func TestHygiene(t *testing.T) {
	spoofed := map[string]bool{}
	for _, list := range [][]string{forwardingHeaders, clientIPHeaders, alwaysStripped, methodOverrideHeaders} {
		for _, k := range list {
			spoofed[k] = true
		}
	}
	for _, k := range []string{"X-Forwarded-Anything", "X-Tollgate-User", "X-Envoy-Original-Path", "X-Istio-Attributes", "X-Auth-Request-Email"} {
		spoofed[k] = true
	}
	for _, k := range oidc.ClaimHeaderNames {
		spoofed[k] = true
	}
	for _, trusted := range []bool{false, true} {
		h := http.Header{"Accept": {"*/*"}, "X-Role": {"user"}}
		for k := range spoofed {
			h[k] = []string{"mallory"}
		}
		if !hygiene(h, trusted, RejectUnderscores) {
			t.Fatal("refused")
		}
		for k := range h {
			// A trusted proxy's forwarding headers are kept (other X-Forwarded-*
			// too, X-Forwarded-Ssl say), never its user or certificate headers.
			keptForTrusted := headerClasses[k] == fromTrustedOnly || k == "X-Forwarded-Anything"
			if spoofed[k] && !(trusted && keptForTrusted) {
				t.Errorf("trusted=%v: %s survives", trusted, k)
			}
		}
		if h.Get("Accept") == "" || h.Get("X-Role") == "" {
			t.Errorf("trusted=%v: an ordinary header was removed", trusted)
		}
		if trusted && h.Get("X-Forwarded-For") == "" {
			t.Error("a trusted proxy's X-Forwarded-For was removed")
		}
		if trusted && h.Get("X-Forwarded-User") != "" {
			t.Error("a trusted proxy may not name the user: the gateway authenticates")
		}
	}
}

func TestDropConnectionNamed(t *testing.T) {
	h := http.Header{"Connection": {"keep-alive, X-Request-Id", "x-role"}, "X-Request-Id": {"forged"}, "X-Role": {"admin"}, "Accept": {"a"}}
	dropConnectionNamed(h)
	if h.Get("X-Request-Id") != "" || h.Get("X-Role") != "" || h.Get("Accept") == "" || h.Get("Connection") != "keep-alive" {
		t.Errorf("headers after: %v", h)
	}
}

func FuzzDropConnectionNamed(f *testing.F) {
	f.Add("close, X-A ,,x-b", "X-A")
	f.Add("upgrade", "Upgrade")
	f.Fuzz(func(t *testing.T, conn, name string) {
		h := http.Header{"Connection": {conn}}
		if name != "" {
			h[http.CanonicalHeaderKey(name)] = []string{"v"}
		}
		dropConnectionNamed(h)
		for _, v := range h["Connection"] {
			for tok := range strings.SplitSeq(v, ",") {
				tok = strings.TrimSpace(tok)
				if tok != "" && !strings.EqualFold(tok, "close") && !strings.EqualFold(tok, "keep-alive") && !strings.EqualFold(tok, "upgrade") {
					t.Fatalf("Connection %q still names %q", v, tok)
				}
			}
		}
		for tok := range strings.SplitSeq(conn, ",") {
			k := http.CanonicalHeaderKey(strings.TrimSpace(tok))
			if k != "Connection" && k != "Close" && k != "Keep-Alive" && k != "Upgrade" && h[k] != nil {
				t.Fatalf("%s named in Connection survives", k)
			}
		}
	})
}

func TestStripMethodOverride(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"", ""},
		{"a=1&b=2", "a=1&b=2"},
		{"_method=DELETE", ""},
		{"a=1&_method=DELETE&b=2", "a=1&b=2"},
		{"a=1&_METHOD=put", "a=1"},
		{"x-http-method-override=DELETE&a=%41", "a=%41"},
		{"_%6Dethod=DELETE&a=1", "a=1"},
		{"method=keep&a=1", "method=keep&a=1"},
		// A backend that splits on ';' would read _method: the whole pair goes.
		{"a=1;_method=DELETE&b=2", "b=2"},
		// PHP drops leading spaces and reads '.', ' ' and '[' as '_'.
		{"%20_method=DELETE&a=1", "a=1"},
		{"+_method=DELETE&a=1", "a=1"},
		{".method=DELETE&a=1", "a=1"},
		{"x.http.method.override=DELETE&a=1", "x.http.method.override=DELETE&a=1"}, // not a name PHP makes _method of
	} {
		if got := stripMethodOverride(tc.in); got != tc.want {
			t.Errorf("stripMethodOverride(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func FuzzStripMethodOverride(f *testing.F) {
	f.Add("a=1&_method=DELETE")
	f.Add("_%6dethod=x")
	f.Fuzz(func(t *testing.T, q string) {
		out := stripMethodOverride(q)
		for pair := range strings.SplitSeq(out, "&") {
			if hasOverrideParam(pair) {
				t.Fatalf("stripMethodOverride(%q) = %q keeps %q", q, out, pair)
			}
		}
		if again := stripMethodOverride(out); again != out {
			t.Fatalf("not idempotent: %q -> %q -> %q", q, out, again)
		}
	})
}

// decider stands for a policy engine.
type decider struct{ d request.Decision }

func (a decider) Authorize(*request.Request) request.Decision { return a.d }

// TestAuthorizeAndAdmit: the decision is enforced and recorded as the
// authorizer returned it, without an allocation of its own; anything but an
// explicit allow is a deny.
func TestAuthorizeAndAdmit(t *testing.T) {
	for _, tc := range []struct {
		name       string
		decision   request.Decision
		refuse     error
		wantOK     bool
		wantStatus int
		decided    int
	}{
		{name: "allow", decision: request.Decision{Allow: true, Action: "ALLOW", Policy: "ns/p", Rule: 2}, wantOK: true, wantStatus: 200, decided: 1},
		{name: "deny", decision: request.Decision{Action: "DENY", Policy: "ns/d", Rule: request.NoRule}, wantStatus: 403},
		{name: "no decision is a deny", wantStatus: 403},
		{name: "audit refuses: 503, nothing forwarded", decision: request.Decision{Allow: true}, refuse: context.DeadlineExceeded, wantStatus: 503, decided: 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec := &events{refuse: tc.refuse}
			f := New(Options{Name: "mesh", Recorder: rec})
			x, _, w := begin(f, httptest.NewRequest("GET", "/x", nil), "127.0.0.1:1")
			ok := x.Authorize(decider{tc.decision}) && x.Admit()
			x.Finish()
			if ok != tc.wantOK || w.Code != tc.wantStatus || rec.decided != tc.decided {
				t.Fatalf("ok=%v status %d decided %d; want %v %d %d", ok, w.Code, rec.decided, tc.wantOK, tc.wantStatus, tc.decided)
			}
			if ev := rec.completed[0]; ev.Decision == nil || !reflect.DeepEqual(*ev.Decision, tc.decision) || ev.Kind != "mesh" {
				t.Errorf("event decision %+v kind %q, want %+v", ev.Decision, ev.Kind, tc.decision)
			}
		})
	}
	x, _, _ := begin(New(Options{Name: "mesh"}), httptest.NewRequest("GET", "/x", nil), "127.0.0.1:1")
	var a Authorizer = decider{request.Decision{Allow: true}}
	if n := testing.AllocsPerRun(100, func() { x.Authorize(a) }); n != 0 {
		t.Errorf("Authorize: %v allocations, want 0", n)
	}
}

func TestTraceID(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", "4bf92f3577b34da6a3ce929d0e0e4736"},
		{"00-00000000000000000000000000000000-00f067aa0ba902b7-01", ""}, // all-zero id is invalid
		{"00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01", ""}, // upper case is invalid
		{"00-4bf92f3577b34da6a3ce929d0e0e4736\n0f067aa0ba902b7-01", ""},
		{"garbage", ""},
		{"", ""},
	} {
		if got := traceID(tc.in); got != tc.want {
			t.Errorf("traceID(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func FuzzTraceID(f *testing.F) {
	f.Add("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
	f.Add("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0\x00")
	f.Fuzz(func(t *testing.T, tp string) {
		id := traceID(tp)
		if id == "" {
			return
		}
		if len(id) != 32 || strings.Trim(id, "0123456789abcdef") != "" || !strings.Contains(tp, id) {
			t.Fatalf("traceID(%q) = %q", tp, id)
		}
	})
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// lending records whether each completed event was lent, and hands it back
// as the audit Logger does.
type lending struct {
	mu   sync.Mutex
	lent []bool
}

func (l *lending) Decided(*audit.Event) error { return nil }

func (l *lending) Completed(ev *audit.Event) {
	l.mu.Lock()
	l.lent = append(l.lent, ev.Lent())
	l.mu.Unlock()
	ev.Release()
}

// TestAcquiredExchangeIsLentWithoutABody: an exchange from Acquire lends its
// event to the recorder, so that it returns to the pool once written, unless
// its request has a body, which the transport may still read after the
// handler has returned. An exchange of Begin's own is never lent.
func TestAcquiredExchangeIsLentWithoutABody(t *testing.T) {
	for _, tc := range []struct {
		name     string
		acquire  bool
		body     string
		wantLent bool
	}{
		{name: "acquired, no body", acquire: true, wantLent: true},
		{name: "acquired, a body", acquire: true, body: "payload"},
		{name: "acquired, a body of length 0 (HTTP/2's without one)", acquire: true, body: "empty", wantLent: true},
		{name: "allocated", acquire: false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec := &lending{}
			f := New(Options{Name: "ingress", Recorder: rec})
			for range 3 { // the second and third may be the first, reused
				var body io.Reader
				if tc.body != "" {
					body = strings.NewReader(tc.body)
				}
				r := httptest.NewRequest("POST", "/x", body)
				switch tc.body {
				case "":
					r.Body = http.NoBody
				case "empty":
					r.Body, r.ContentLength = io.NopCloser(strings.NewReader("")), 0
				}
				r.RemoteAddr = "198.51.100.1:1"
				w := httptest.NewRecorder()
				x := new(Exchange)
				if tc.acquire {
					x = Acquire()
				}
				if !f.BeginIn(x, w, r, nil) {
					t.Fatalf("refused: %d %s", w.Code, w.Body)
				}
				x.Finish()
			}
			for i, lent := range rec.lent {
				if lent != tc.wantLent {
					t.Errorf("request %d: lent = %v, want %v", i, lent, tc.wantLent)
				}
			}
		})
	}
}
