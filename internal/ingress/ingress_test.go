package ingress

import (
	"bufio"
	"crypto/tls"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"tollgate.dev/tollgate/internal/audit"
	"tollgate.dev/tollgate/internal/request"
)

var protocols = []struct {
	name string
	h2   bool
}{{"HTTP/1.1", false}, {"HTTP/2", true}}

func TestProxyReachesUpstreamWithGatewayIdentity(t *testing.T) {
	tb := newTestbed(t, testbedOptions{})
	for _, p := range protocols {
		t.Run(p.name, func(t *testing.T) {
			status, body, e := tb.get(tb.client(p.h2), "/hello/world?q=1", "traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
			if status != 200 {
				t.Fatalf("status %d: %s", status, body)
			}
			if e.Caller != gatewayID {
				t.Errorf("upstream saw caller %q, want %q", e.Caller, gatewayID)
			}
			if e.RequestURI != "/hello/world?q=1" {
				t.Errorf("upstream saw %q", e.RequestURI)
			}
			if got := e.Header["Traceparent"]; len(got) != 1 || !strings.HasPrefix(got[0], "00-4bf92f") {
				t.Errorf("traceparent not passed through: %v", got)
			}
			if got := e.Header["X-Forwarded-Proto"]; len(got) != 1 || got[0] != "https" {
				t.Errorf("X-Forwarded-Proto = %v", got)
			}
			ev := tb.events.last(t)
			if ev.Status != 200 || ev.Route != "web" || ev.Path != "/hello/world" || ev.Upstream.SPIFFEID != upstreamID || ev.RequestID == "" {
				t.Errorf("audit event = %+v", ev)
			}
			if ev.TraceID != "4bf92f3577b34da6a3ce929d0e0e4736" || ev.Listener.Address != "127.0.0.1" || ev.Listener.Port == 0 ||
				ev.TLSVersion != "TLS 1.3" || ev.TLSCipher == "" {
				t.Errorf("audit trace %q listener %+v TLS %q %q", ev.TraceID, ev.Listener, ev.TLSVersion, ev.TLSCipher)
			}
		})
	}
}

func TestSpoofedHeadersAreReplaced(t *testing.T) {
	spoofed := []string{
		"X-Forwarded-For", "6.6.6.6",
		"X-Forwarded-Host", "evil.example",
		"X-Forwarded-Proto", "http",
		"Forwarded", "for=6.6.6.6;host=evil.example",
		"X-Real-Ip", "6.6.6.6",
		"X-Request-Id", "attacker-chosen",
		"X-Tollgate-User", "admin",
		"X-Forwarded-Client-Cert", "By=spiffe://example.org/admin",
		"X-Envoy-Original-Path", "/admin",
		"X-Istio-Attributes", "xyz",
		"True-Client-Ip", "6.6.6.6",
		"X-Webauth-User", "admin",
		"X-Amzn-Oidc-Identity", "admin",
		"X-Goog-Authenticated-User-Email", "admin@example.com",
		"Cf-Access-Authenticated-User-Email", "admin@example.com",
		"X-Ms-Client-Principal-Name", "admin",
		"X-Authenticated-Userid", "admin",
		"X-Consumer-Username", "admin",
		"X-Original-Method", "GET",
	}
	tests := []struct {
		name        string
		trusted     []netip.Prefix
		wantXFF     string
		keepReqID   bool
		wantFwdHost string
	}{
		{name: "untrusted peer", wantXFF: "127.0.0.1", wantFwdHost: "127.0.0.1"},
		{name: "trusted proxy", trusted: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}, wantXFF: "6.6.6.6, 127.0.0.1", keepReqID: true},
	}
	for _, tc := range tests {
		for _, p := range protocols {
			t.Run(tc.name+"/"+p.name, func(t *testing.T) {
				tb := newTestbed(t, testbedOptions{trusted: tc.trusted})
				status, body, e := tb.get(tb.client(p.h2), "/", spoofed...)
				if status != 200 {
					t.Fatalf("status %d: %s", status, body)
				}
				h := http.Header(e.Header)
				if got := strings.Join(h.Values("X-Forwarded-For"), ","); got != tc.wantXFF {
					t.Errorf("X-Forwarded-For = %q, want %q", got, tc.wantXFF)
				}
				if got := h.Values("X-Forwarded-Host"); len(got) != 1 || !strings.HasPrefix(got[0], "127.0.0.1:") {
					t.Errorf("X-Forwarded-Host = %v, want the request's host", got)
				}
				if got := h.Get("X-Forwarded-Proto"); got != "https" {
					t.Errorf("X-Forwarded-Proto = %q", got)
				}
				gotID := h.Get("X-Request-Id")
				if tc.keepReqID != (gotID == "attacker-chosen") || gotID == "" {
					t.Errorf("X-Request-Id = %q (keep=%v)", gotID, tc.keepReqID)
				}
				// Identity and client-address headers never pass, a trusted
				// proxy's included: the client address policy judged is the
				// one X-Forwarded-For gives the upstream.
				for _, k := range []string{"X-Tollgate-User", "X-Forwarded-Client-Cert", "X-Envoy-Original-Path", "X-Istio-Attributes",
					"X-Real-Ip", "True-Client-Ip", "X-Webauth-User", "X-Amzn-Oidc-Identity", "X-Goog-Authenticated-User-Email",
					"Cf-Access-Authenticated-User-Email", "X-Ms-Client-Principal-Name", "X-Authenticated-Userid", "X-Consumer-Username", "X-Original-Method"} {
					if v := h.Values(k); len(v) != 0 {
						t.Errorf("%s reached the upstream: %v", k, v)
					}
				}
				if tc.trusted == nil {
					for _, k := range []string{"Forwarded"} {
						if v := h.Values(k); len(v) != 0 {
							t.Errorf("%s reached the upstream: %v", k, v)
						}
					}
				}
			})
		}
	}
}

func TestUpstreamErrors(t *testing.T) {
	tests := []struct {
		name       string
		opts       testbedOptions
		breakIt    func(tb *testbed)
		wantStatus int
		wantKind   audit.ErrorKind
		wantHits   int
	}{
		{
			name:       "valid certificate for the wrong SPIFFE ID",
			opts:       testbedOptions{upstreamPresents: "spiffe://example.org/ns/other/sa/impostor"},
			wantStatus: http.StatusBadGateway, wantKind: audit.ErrUpstreamTLS,
		},
		{
			name:       "unreachable",
			breakIt:    func(tb *testbed) { tb.upstream.Close() },
			wantStatus: http.StatusServiceUnavailable, wantKind: audit.ErrUpstreamUnreachable,
		},
		{
			name: "timeout",
			opts: testbedOptions{
				responseTimeout: 200 * time.Millisecond,
				upstreamHandler: func(w http.ResponseWriter, r *http.Request) {
					select {
					case <-r.Context().Done():
					case <-time.After(3 * time.Second):
					}
				},
			},
			wantStatus: http.StatusGatewayTimeout, wantKind: audit.ErrTimeout, wantHits: 1,
		},
		{
			name: "no route",
			opts: testbedOptions{routes: func(up *url.URL, tr http.RoundTripper) []*Route {
				return []*Route{{Name: "api", Host: "*", PathPrefix: "/api", Upstream: up, Transport: tr}}
			}},
			wantStatus: http.StatusNotFound, wantKind: audit.ErrNoRoute,
		},
	}
	for _, tc := range tests {
		for _, p := range protocols {
			t.Run(tc.name+"/"+p.name, func(t *testing.T) {
				obs := &observer{}
				tc.opts.metrics = obs
				tb := newTestbed(t, tc.opts)
				if tc.breakIt != nil {
					tc.breakIt(tb)
				}
				status, body, _ := tb.get(tb.client(p.h2), "/x")
				if status != tc.wantStatus {
					t.Fatalf("status %d, want %d: %s", status, tc.wantStatus, body)
				}
				msg, id := errorBody(t, body)
				if strings.Contains(msg, "127.0.0.1") || strings.Contains(msg, "spiffe") || strings.Contains(msg, "tls") {
					t.Errorf("error body leaks internals: %q", msg)
				}
				ev := tb.events.last(t)
				if ev.Error != tc.wantKind || ev.RequestID != id || ev.Status != tc.wantStatus {
					t.Errorf("audit event: error=%q requestId=%q status=%d; want %q %q %d", ev.Error, ev.RequestID, ev.Status, tc.wantKind, id, tc.wantStatus)
				}
				wantUpstreamErr := tc.wantKind != audit.ErrNoRoute
				if got := obs.upstreamErrors(); (len(got) == 1 && got[0] == tc.wantKind) != wantUpstreamErr || (!wantUpstreamErr && len(got) != 0) {
					t.Errorf("upstream error metrics %v (want %q counted: %v)", got, tc.wantKind, wantUpstreamErr)
				}
				if got := tb.hits.get(); got != tc.wantHits {
					t.Errorf("upstream handler ran %d times, want %d", got, tc.wantHits)
				}
			})
		}
	}
}

func TestPathIsNormalizedOnceAndForwarded(t *testing.T) {
	tests := []struct {
		target     string
		wantStatus int
		wantURI    string
	}{
		{target: "/a/../admin", wantStatus: 200, wantURI: "/admin"},
		{target: "/app//x///y?k=v", wantStatus: 200, wantURI: "/app/x/y?k=v"},
		{target: "/a/%2e%2e/b", wantStatus: 200, wantURI: "/b"},
		{target: "/keep%3Fescape;p=1", wantStatus: 200, wantURI: "/keep%3Fescape;p=1"},
		{target: "/public/..;/admin", wantStatus: 400},
		{target: "/shop/cart;jsessionid=A", wantStatus: 200, wantURI: "/shop/cart;jsessionid=A"},
		{target: "/admin%2Fx", wantStatus: 400},
		{target: "/admin%5Cx", wantStatus: 400},
		{target: "/a%00b", wantStatus: 400},
		{target: "/a%zz", wantStatus: 400},
		{target: "https://localhost/abs/../form", wantStatus: 200, wantURI: "/form"},
	}
	for _, tc := range tests {
		t.Run(tc.target, func(t *testing.T) {
			tb := newTestbed(t, testbedOptions{})
			status, body := tb.rawGet(tc.target)
			if status != tc.wantStatus {
				t.Fatalf("status %d, want %d: %s", status, tc.wantStatus, body)
			}
			if status != 200 {
				if tb.hits.get() != 0 {
					t.Error("a rejected request reached the upstream")
				}
				return
			}
			if !strings.Contains(body, fmt.Sprintf(`"requestURI":%q`, tc.wantURI)) {
				t.Errorf("upstream saw %s, want requestURI %q", body, tc.wantURI)
			}
			if ev := tb.events.last(t); ev.Path != strings.SplitN(tc.wantURI, "?", 2)[0] {
				t.Errorf("audit path %q", ev.Path)
			}
		})
	}
}

// A base path in the upstream URL prefixes the judged path (nginx proxy_pass
// semantics); policy and audit see the path as the client's, the upstream
// the same path under the base. HTTP/1.1 and HTTP/2.
func TestUpstreamBasePathPrefixesTheJudgedPath(t *testing.T) {
	tests := []struct {
		base, target, wantURI string
	}{
		{base: "/base", target: "/hello", wantURI: "/base/hello"},
		{base: "/base/", target: "/hello?q=1", wantURI: "/base/hello?q=1"},
		{base: "/a/b", target: "/x/../y//z", wantURI: "/a/b/y/z"},
		{base: "/base", target: "/keep%3Fescape", wantURI: "/base/keep%3Fescape"},
		{base: "/base", target: "/", wantURI: "/base/"},
		{base: "/", target: "/hello", wantURI: "/hello"},
	}
	for _, tc := range tests {
		t.Run(tc.base+tc.target, func(t *testing.T) {
			tb := newTestbed(t, testbedOptions{routes: func(up *url.URL, tr http.RoundTripper) []*Route {
				u := *up
				u.Path = tc.base
				return []*Route{{Name: "web", Host: "*", PathPrefix: "/", Upstream: &u, Transport: tr}}
			}})
			for _, h2 := range []bool{false, true} {
				req, err := http.NewRequest("GET", tb.front.URL, nil)
				if err != nil {
					t.Fatal(err)
				}
				req.URL.Opaque = tc.target // sent as written, not cleaned by the client
				status, body, e := tb.do(tb.client(h2), req)
				if status != 200 {
					t.Fatalf("h2=%v: status %d: %s", h2, status, body)
				}
				if e.RequestURI != tc.wantURI {
					t.Errorf("h2=%v: upstream saw %q, want %q", h2, e.RequestURI, tc.wantURI)
				}
				judged, _, _ := strings.Cut(tc.wantURI, "?")
				judged = strings.TrimPrefix(judged, strings.TrimSuffix(tc.base, "/"))
				if ev := tb.events.last(t); ev.Path != judged {
					t.Errorf("h2=%v: audit path %q, want the judged %q", h2, ev.Path, judged)
				}
			}
		})
	}
}

func TestStreamingAndWebSocketPassThrough(t *testing.T) {
	release := make(chan struct{})
	tb := newTestbed(t, testbedOptions{upstreamHandler: func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/stream":
			io.WriteString(w, "first\n")
			w.(http.Flusher).Flush()
			select {
			case <-release:
			case <-time.After(5 * time.Second):
			}
			io.WriteString(w, "second\n")
		case "/ws":
			if r.Header.Get("Upgrade") != "websocket" {
				http.Error(w, "want upgrade", 400)
				return
			}
			conn, brw, err := http.NewResponseController(w).Hijack()
			if err != nil {
				return
			}
			defer conn.Close()
			brw.WriteString("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
			brw.Flush()
			line, _ := brw.ReadString('\n')
			brw.WriteString("echo:" + line)
			brw.Flush()
		}
	}})
	t.Run("stream", func(t *testing.T) {
		resp, err := tb.client(true).Get(tb.front.URL + "/stream")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		first, err := bufio.NewReader(resp.Body).ReadString('\n')
		if err != nil || first != "first\n" {
			t.Fatalf("first chunk %q, %v (should arrive before the upstream finishes)", first, err)
		}
		close(release)
	})
	t.Run("websocket", func(t *testing.T) {
		conn, err := tls.Dial("tcp", tb.front.Listener.Addr().String(), &tls.Config{RootCAs: tb.roots, ServerName: "localhost", NextProtos: []string{"http/1.1"}})
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		conn.SetDeadline(time.Now().Add(5 * time.Second))
		io.WriteString(conn, "GET /ws HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
		br := bufio.NewReader(conn)
		resp, err := http.ReadResponse(br, nil)
		if err != nil || resp.StatusCode != 101 {
			t.Fatalf("upgrade: %v %v", resp, err)
		}
		io.WriteString(conn, "ping\n")
		got, err := br.ReadString('\n')
		if err != nil || got != "echo:ping\n" {
			t.Fatalf("tunnel echo %q, %v", got, err)
		}
	})
}

func TestRouterMatch(t *testing.T) {
	up, _ := url.Parse("https://127.0.0.1:1")
	rt := NewRouter([]*Route{
		{Name: "any", Host: "*", PathPrefix: "/", Upstream: up},
		{Name: "app", Host: "App.Example.com", PathPrefix: "/", Upstream: up},
		{Name: "app-api", Host: "app.example.com", PathPrefix: "/api", Upstream: up},
		{Name: "app-8443", Host: "app.example.com:8443", PathPrefix: "/", Upstream: up},
		{Name: "wild", Host: "*.example.com", PathPrefix: "/", Upstream: up},
	})
	tests := []struct{ host, path, want string }{
		{"app.example.com", "/", "app"},
		{"APP.example.COM", "/x", "app"},
		{"app.example.com:443", "/x", "app"},
		{"app.example.com.", "/x", "app"},
		{"app.example.com:8443", "/x", "app-8443"},
		{"app.example.com", "/api", "app-api"},
		{"app.example.com", "/api/v1", "app-api"},
		{"app.example.com", "/apix", "app"},
		{"b.example.com", "/", "wild"},
		{"a.b.example.com", "/", "any"},
		{"example.com", "/", "any"},
		{"[::1]:443", "/", "any"},
	}
	for _, tc := range tests {
		a, err := request.ParseAuthority(tc.host)
		if err != nil {
			t.Fatal(err)
		}
		r := rt.Match(a, tc.path, 443)
		if r == nil || r.Name != tc.want {
			t.Errorf("Match(%q, %q) = %v, want %s", tc.host, tc.path, r, tc.want)
		}
	}
	if r := NewRouter([]*Route{{Name: "x", Host: "x.test", PathPrefix: "/", Upstream: up}}).Match(request.Authority{Host: "y.test"}, "/", 443); r != nil {
		t.Errorf("unexpected match %s", r.Name)
	}
}

// TestAmbiguousFramingNeverReachesUpstream: a request whose length two readers
// could take differently (the request-smuggling shapes) is refused before the
// handler, so the upstream never sees it. The gateway re-originates every
// request, so its own framing toward the upstream can't be desynchronized.
func TestAmbiguousFramingNeverReachesUpstream(t *testing.T) {
	for _, tc := range []struct{ name, head string }{
		{"two different Content-Length", "POST /ok HTTP/1.1\r\nHost: localhost\r\nContent-Length: 5\r\nContent-Length: 6\r\nConnection: close\r\n\r\nhello!"},
		{"unknown Transfer-Encoding", "POST /ok HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: gzip, chunked\r\nConnection: close\r\n\r\n0\r\n\r\n"},
		{"Content-Length with a sign", "POST /ok HTTP/1.1\r\nHost: localhost\r\nContent-Length: +5\r\nConnection: close\r\n\r\nhello"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tb := newTestbed(t, testbedOptions{})
			if status, _ := tb.rawRequest(tc.head); status != http.StatusBadRequest && status != http.StatusNotImplemented {
				t.Errorf("status %d, want 400 or 501", status)
			}
			if n := tb.hits.get(); n != 0 {
				t.Errorf("upstream reached %d times", n)
			}
		})
	}
}

// observer records metric calls.
type observer struct {
	mu   sync.Mutex
	errs []audit.ErrorKind
	reqs int
}

func (o *observer) ObserveRequest(_, _ string, _ int, _ time.Duration) {
	o.mu.Lock()
	o.reqs++
	o.mu.Unlock()
}

func (o *observer) UpstreamError(_, _ string, kind audit.ErrorKind) {
	o.mu.Lock()
	o.errs = append(o.errs, kind)
	o.mu.Unlock()
}

func (o *observer) upstreamErrors() []audit.ErrorKind {
	// finish runs after the response is written; give it a moment.
	deadline := time.Now().Add(2 * time.Second)
	for {
		o.mu.Lock()
		n, errs := o.reqs, append([]audit.ErrorKind(nil), o.errs...)
		o.mu.Unlock()
		if n > 0 || time.Now().After(deadline) {
			return errs
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func httptestRequest(method, target string) *http.Request {
	r, _ := http.NewRequest(method, target, nil)
	return r
}

// nilAuthorizer stands for an authorization step that produced no decision:
// the zero one.
type nilAuthorizer struct{}

func (nilAuthorizer) Authorize(*request.Request) request.Decision { return request.Decision{} }

// TestNoDecisionIsADeny: fail closed when the authorizer returns no decision.
func TestNoDecisionIsADeny(t *testing.T) {
	tb := newTestbed(t, testbedOptions{authorize: nilAuthorizer{}})
	status, body, _ := tb.get(tb.client(true), "/x")
	if status != http.StatusForbidden {
		t.Fatalf("status %d, want 403: %s", status, body)
	}
	if tb.hits.get() != 0 {
		t.Error("the upstream was reached without a decision")
	}
}

// TestTrustedRequestIDMustBePlain: even a trusted proxy can't pass an id that
// could inject log lines or headers; it is replaced by a generated one.
func TestTrustedRequestIDMustBePlain(t *testing.T) {
	tb := newTestbed(t, testbedOptions{trusted: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}})
	for _, id := range []string{"a b", "x\"y", strings.Repeat("a", 129), "id;drop", "évil"} {
		status, _, e := tb.get(tb.client(false), "/x", "X-Request-Id", id)
		if status != 200 {
			t.Fatalf("status %d", status)
		}
		if got := http.Header(e.Header).Get("X-Request-Id"); got == id || got == "" {
			t.Errorf("request id %q reached the upstream as %q", id, got)
		}
	}
}

// A form that names a method override is refused: policy judged a POST, and
// Rails, Laravel and Spring would act on the method the form names.
// URL-encoded: 400 before the upstream is called. Multipart: 400, and the
// upstream never reads the body whole (it is cut off at the override's part
// header). HTTP/1.1 and HTTP/2.
func TestMethodOverrideFormsAreRefused(t *testing.T) {
	var complete atomicCounter
	tb := newTestbed(t, testbedOptions{upstreamHandler: func(w http.ResponseWriter, r *http.Request) {
		if _, err := io.ReadAll(r.Body); err == nil {
			complete.inc()
		}
		echoHandler(w, r)
	}})
	multipartBody := "--B\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\n1\r\n--B\r\nContent-Disposition: form-data; name=\"_method\"\r\n\r\nDELETE\r\n--B--\r\n"
	tests := []struct {
		name, contentType, body string
		wantStatus              int
	}{
		{name: "urlencoded", contentType: "application/x-www-form-urlencoded", body: "a=1&_method=DELETE", wantStatus: 400},
		{name: "multipart", contentType: "multipart/form-data; boundary=B", body: multipartBody, wantStatus: 400},
		{name: "plain form", contentType: "application/x-www-form-urlencoded", body: "a=1&method=keep", wantStatus: 200},
	}
	for _, tc := range tests {
		for _, p := range protocols {
			t.Run(tc.name+"/"+p.name, func(t *testing.T) {
				before := complete.get()
				req, _ := http.NewRequest("POST", tb.front.URL+"/form", strings.NewReader(tc.body))
				req.Header.Set("Content-Type", tc.contentType)
				status, body, _ := tb.do(tb.client(p.h2), req)
				if status != tc.wantStatus {
					t.Fatalf("status %d, want %d: %s", status, tc.wantStatus, body)
				}
				if tc.wantStatus != 200 && complete.get() != before {
					t.Error("the upstream read the refused body whole")
				}
			})
		}
	}
}
