package egress

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"tollgate.dev/tollgate/internal/audit"
	"tollgate.dev/tollgate/internal/config"
	"tollgate.dev/tollgate/internal/exchange"
	"tollgate.dev/tollgate/internal/policy/pathnorm"
	"tollgate.dev/tollgate/internal/request"
	"tollgate.dev/tollgate/internal/testkit"
)

// seen is what the "external" destination answers: how it saw the request.
type seen struct {
	Method, Host, RequestURI, Proto string
	Header                          http.Header
	TLSServerName                   string
}

type eventLog struct {
	mu     sync.Mutex
	events []audit.Event
}

func (l *eventLog) Decided(*audit.Event) error { return nil }
func (l *eventLog) Completed(ev *audit.Event) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.events = append(l.events, *ev)
}

func (l *eventLog) byID(t *testing.T, id string) audit.Event {
	t.Helper()
	for deadline := time.Now().Add(2 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		l.mu.Lock()
		for _, ev := range l.events {
			if ev.RequestID == id {
				l.mu.Unlock()
				return ev
			}
		}
		l.mu.Unlock()
	}
	t.Fatalf("no audit event %q", id)
	return audit.Event{}
}

// denyAdmin is a stand-in for the policy engine: it denies /admin and
// everything under it, and records what it judged.
type denyAdmin struct{}

func (denyAdmin) Authorize(q *request.Request) request.Decision {
	if q.Path == "/admin" || strings.HasPrefix(q.Path, "/admin/") {
		return request.Decision{Allow: false, Action: "DENY", Policy: "egress/no-admin"}
	}
	return request.Decision{Allow: true, Action: "ALLOW", Policy: "egress/ok"}
}

func (denyAdmin) UsesQuery() bool { return false }

// proxyEnv is an egress proxy behind TLS, in front of an "external" HTTPS
// API on loopback that serves api.example.test with a certificate of a test
// CA, reached through a dialer that maps names to loopback (as the SSRF
// guard's resolver will).
type proxyEnv struct {
	proxyURL *url.URL
	roots    *tls.Config
	events   *eventLog
	dials    *counter
	external *httptest.Server
}

type counter struct {
	mu sync.Mutex
	n  map[string]int
}

func (c *counter) add(k string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.n[k]++
}

func (c *counter) get(k string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n[k]
}

const istioEgress = `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: api, namespace: egress}
spec:
  hosts: [api.example.test]
  ports:
  - {number: 80, name: http, protocol: HTTP, targetPort: 443}
  - {number: 443, name: tls, protocol: TLS}
  resolution: DNS
  location: MESH_EXTERNAL
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: api, namespace: egress}
spec:
  host: api.example.test
  trafficPolicy:
    portLevelSettings:
    - port: {number: 80}
      tls: {mode: SIMPLE, caCertificates: ca.pem}
`

func startProxy(t *testing.T) *proxyEnv {
	t.Helper()
	ca := testkit.NewCA(t)
	ext := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		json.NewEncoder(w).Encode(seen{Method: r.Method, Host: r.Host, RequestURI: r.RequestURI, Proto: r.Proto, Header: r.Header, TLSServerName: r.TLS.ServerName})
	}))
	ext.TLS = &tls.Config{Certificates: []tls.Certificate{ca.Issue(t, "api.example.test")}}
	ext.EnableHTTP2 = true
	ext.StartTLS()
	t.Cleanup(ext.Close)

	dir := t.TempDir()
	ca.WriteRoot(t, dir, "ca.pem")
	file := filepath.Join(dir, "egress.yaml")
	if err := os.WriteFile(file, []byte(istioEgress), 0o644); err != nil {
		t.Fatal(err)
	}
	reg, err := LoadDestinations(docsFromFile(t, file))
	if err != nil {
		t.Fatal(err)
	}
	e := &proxyEnv{events: &eventLog{}, dials: &counter{n: map[string]int{}}, external: ext}
	extAddr := ext.Listener.Addr().String()
	dial := func(ctx context.Context, network, addr string) (net.Conn, error) {
		e.dials.add(addr)
		if addr != "api.example.test:443" {
			return nil, &net.OpError{Op: "dial", Net: network, Err: os.ErrNotExist}
		}
		var d net.Dialer
		return d.DialContext(ctx, network, extAddr)
	}
	front := exchange.New(exchange.Options{Name: "egress", Recorder: e.events})
	p := NewProxy(ProxyOptions{
		Front: front, Dial: dial, DialTimeout: 5 * time.Second, ResponseHeaderTimeout: 5 * time.Second,
	}, &Snapshot{Normalize: defaultNormalizer, Destinations: reg, Authorize: denyAdmin{}})
	t.Cleanup(p.Close)
	srv := httptest.NewUnstartedServer(p)
	srv.EnableHTTP2 = true
	srv.StartTLS()
	t.Cleanup(srv.Close)
	e.proxyURL, _ = url.Parse(srv.URL)
	pool := srv.Client().Transport.(*http.Transport).TLSClientConfig.RootCAs
	e.roots = &tls.Config{RootCAs: pool}
	return e
}

func docsFromFile(t *testing.T, file string) []config.Document {
	t.Helper()
	src, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	return parseDocs(t, file, string(src))
}

// do sends a workload's request for target through the gateway. Over
// HTTP/1.1 as Go's http.Transport does with HTTPS_PROXY: absolute-form
// ("GET http://api.example.test/x"). Over HTTP/2, where a client can't send
// absolute-form, as a client routed by DNS does: origin-form with the
// destination in :authority.
func (e *proxyEnv) do(t *testing.T, h2 bool, target string, header [][2]string) *http.Response {
	t.Helper()
	var tr *http.Transport
	u, err := url.Parse(target)
	if err != nil {
		t.Fatal(err)
	}
	req := &http.Request{Method: "GET", URL: u, Host: u.Host, Header: http.Header{}}
	if h2 {
		tr = &http.Transport{TLSClientConfig: e.roots.Clone(), ForceAttemptHTTP2: true}
		to := *e.proxyURL
		to.Path, to.RawPath, to.RawQuery = u.Path, u.RawPath, u.RawQuery
		req.URL = &to
	} else {
		tr = &http.Transport{Proxy: http.ProxyURL(e.proxyURL), TLSClientConfig: e.roots.Clone()}
		tr.TLSNextProto = map[string]func(string, *tls.Conn) http.RoundTripper{}
	}
	t.Cleanup(tr.CloseIdleConnections)
	for _, h := range header {
		req.Header.Set(h[0], h[1])
	}
	resp, err := (&http.Client{Transport: tr, Timeout: 10 * time.Second}).Do(req)
	if err != nil {
		t.Fatalf("h2=%v %s: %v", h2, target, err)
	}
	if h2 && resp.ProtoMajor != 2 {
		t.Fatalf("h2: spoke %s to the gateway", resp.Proto)
	}
	return resp
}

func TestProxyOriginatesJudgedCalls(t *testing.T) {
	e := startProxy(t)
	tests := []struct {
		name       string
		url        string
		header     [][2]string
		wantStatus int
		wantURI    string // as the destination saw it
		wantReason string // X-Tollgate-Error of a refusal
	}{
		{name: "allowed", url: "http://api.example.test/v1/items?q=1&q=2", wantStatus: 200, wantURI: "/v1/items?q=1&q=2"},
		{name: "host spelling", url: "http://API.Example.TEST./v1/x", wantStatus: 200, wantURI: "/v1/x"},
		{name: "port 80 spelled out", url: "http://api.example.test:80/v1/x", wantStatus: 200, wantURI: "/v1/x"},
		{name: "denied by path", url: "http://api.example.test/admin/users", wantStatus: 403},
		{name: "dot segments reach the denied path", url: "http://api.example.test/v1/../admin", wantStatus: 403},
		{name: "path parameter before a denied segment", url: "http://api.example.test/admin;x/users", wantStatus: 400, wantReason: "path"},
		{name: "not registered", url: "http://other.example.test/", wantStatus: 403, wantReason: "destination_not_registered"},
		{name: "registered host, undeclared port", url: "http://api.example.test:8080/", wantStatus: 403, wantReason: "destination_not_registered"},
		{name: "passthrough port takes no HTTP", url: "http://api.example.test:443/", wantStatus: 403, wantReason: "destination_passthrough"},
		{name: "spoofed forwarding headers", url: "http://api.example.test/v1/x", header: [][2]string{{"X-Forwarded-For", "10.0.0.1"}, {"X-Tollgate-User", "admin"}}, wantStatus: 200, wantURI: "/v1/x"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			for _, h2 := range []bool{false, true} {
				resp := e.do(t, h2, tc.url, tc.header)
				body, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode != tc.wantStatus {
					t.Fatalf("h2=%v: status %d, want %d: %s", h2, resp.StatusCode, tc.wantStatus, body)
				}
				id := resp.Header.Get("X-Request-Id")
				ev := e.events.byID(t, id)
				if ev.Kind != "egress" || ev.Status != tc.wantStatus {
					t.Errorf("h2=%v: audit event %+v", h2, ev)
				}
				if tc.wantStatus != 200 {
					if got := resp.Header.Get("X-Tollgate-Error"); tc.wantReason != "" && got != tc.wantReason {
						t.Errorf("h2=%v: X-Tollgate-Error %q, want %q", h2, got, tc.wantReason)
					}
					if !strings.Contains(string(body), `"requestId":"`+id+`"`) {
						t.Errorf("h2=%v: not the JSON error with the request id: %s", h2, body)
					}
					continue
				}
				var s seen
				if err := json.Unmarshal(body, &s); err != nil {
					t.Fatal(err)
				}
				if s.RequestURI != tc.wantURI || s.Host != "api.example.test" || s.TLSServerName != "api.example.test" {
					t.Errorf("h2=%v: destination saw %+v, want %s on api.example.test", h2, s, tc.wantURI)
				}
				for k := range s.Header {
					if strings.HasPrefix(k, "X-Forwarded-") || strings.HasPrefix(k, "X-Tollgate-") || k == "Proxy-Connection" || k == "Forwarded" {
						t.Errorf("h2=%v: destination got %s", h2, k)
					}
				}
				if ev.Upstream.Address != e.external.Listener.Addr().String() || ev.Upstream.TLSVersion != "TLS 1.3" || ev.Route != "egress/api" {
					t.Errorf("h2=%v: audit upstream %+v route %q", h2, ev.Upstream, ev.Route)
				}
				if ev.Decision == nil || !ev.Decision.Allow {
					t.Errorf("h2=%v: audit decision %+v", h2, ev.Decision)
				}
			}
		})
	}
	// Refused calls never dial: only the registered destination was dialled.
	if n := e.dials.get("other.example.test:443") + e.dials.get("other.example.test:80"); n != 0 {
		t.Errorf("an unregistered destination was dialled %d times", n)
	}
}

// Requests the proxy can't judge one way only are refused before any dial:
// userinfo in the target, an https:// target, a CONNECT to a port the gateway
// originates TLS to. An absolute-form target's authority wins over a Host header that
// differs (RFC 9112 §3.2.2: a proxy ignores it): policy judges that
// authority, and the destination gets it as Host.
func TestProxyRefusesAmbiguousTargets(t *testing.T) {
	e := startProxy(t)
	tests := []struct {
		name, raw  string
		wantStatus int
		wantHost   string // what the destination saw as Host
	}{
		{name: "authority and Host differ", raw: "GET http://api.example.test/v1/x HTTP/1.1\r\nHost: other.example.test\r\n\r\n", wantStatus: 200, wantHost: "api.example.test"},
		{name: "userinfo", raw: "GET http://api.example.test@other.example.test/ HTTP/1.1\r\nHost: other.example.test\r\n\r\n", wantStatus: 400},
		{name: "https target", raw: "GET https://api.example.test/v1/x HTTP/1.1\r\nHost: api.example.test\r\n\r\n", wantStatus: 400},
		// A raw tunnel never reaches a port whose calls are judged at L7.
		{name: "CONNECT to an originated port", raw: "CONNECT api.example.test:80 HTTP/1.1\r\nHost: api.example.test:80\r\n\r\n", wantStatus: 403},
		{name: "CONNECT without a port", raw: "CONNECT api.example.test HTTP/1.1\r\nHost: api.example.test\r\n\r\n", wantStatus: 400},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			conn, err := tls.Dial("tcp", e.proxyURL.Host, &tls.Config{RootCAs: e.roots.RootCAs, NextProtos: []string{"http/1.1"}})
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			conn.SetDeadline(time.Now().Add(10 * time.Second))
			io.WriteString(conn, tc.raw)
			resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tc.wantStatus {
				t.Fatalf("status %d, want %d: %s", resp.StatusCode, tc.wantStatus, b)
			}
			if tc.wantHost != "" {
				var s seen
				json.Unmarshal(b, &s)
				if s.Host != tc.wantHost {
					t.Errorf("destination saw Host %q, want %q", s.Host, tc.wantHost)
				}
			}
		})
	}
	// Only the one allowed request dialled.
	if n := e.dials.get("api.example.test:443"); n != 1 {
		t.Errorf("the destination was dialled %d times, want 1", n)
	}
}

// Under ALLOW_ANY a host no ServiceEntry declares is reached (HTTP
// originated over TLS, port 80 to 443), still judged by policy; a declared
// host's undeclared port and an IP literal stay refused.
func TestProxyAllowAny(t *testing.T) {
	ca := testkit.NewCA(t)
	ext := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		json.NewEncoder(w).Encode(seen{Host: r.Host, RequestURI: r.RequestURI, TLSServerName: r.TLS.ServerName})
	}))
	ext.TLS = &tls.Config{Certificates: []tls.Certificate{ca.Issue(t, "any.example.test")}}
	ext.StartTLS()
	t.Cleanup(ext.Close)
	dir := t.TempDir()
	ca.WriteRoot(t, dir, "ca.pem")
	file := filepath.Join(dir, "egress.yaml")
	os.WriteFile(file, []byte(istioEgress), 0o644)
	reg, err := LoadDestinations(docsFromFile(t, file))
	if err != nil {
		t.Fatal(err)
	}
	dials := &counter{n: map[string]int{}}
	dial := func(ctx context.Context, network, addr string) (net.Conn, error) {
		dials.add(addr)
		var d net.Dialer
		return d.DialContext(ctx, network, ext.Listener.Addr().String())
	}
	p := NewProxy(ProxyOptions{
		Front: exchange.New(exchange.Options{Name: "egress"}), Dial: dial, AllowAny: true, RootCAs: ca.Pool(),
		DialTimeout: 5 * time.Second, ResponseHeaderTimeout: 5 * time.Second,
	}, &Snapshot{Normalize: defaultNormalizer, Destinations: reg, Authorize: denyAdmin{}})
	t.Cleanup(p.Close)
	srv := httptest.NewTLSServer(p)
	t.Cleanup(srv.Close)
	proxyURL, _ := url.Parse(srv.URL)
	tr := &http.Transport{Proxy: http.ProxyURL(proxyURL), TLSClientConfig: &tls.Config{RootCAs: srv.Client().Transport.(*http.Transport).TLSClientConfig.RootCAs}}
	t.Cleanup(tr.CloseIdleConnections)
	c := &http.Client{Transport: tr, Timeout: 10 * time.Second}
	for _, tc := range []struct {
		url        string
		wantStatus int
	}{
		{url: "http://any.example.test/v1/x", wantStatus: 200},
		{url: "http://any.example.test/admin", wantStatus: 403},
		{url: "http://api.example.test:8080/", wantStatus: 403},
		{url: "http://127.0.0.1/", wantStatus: 403},
	} {
		resp, err := c.Get(tc.url)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != tc.wantStatus {
			t.Errorf("%s: %d, want %d: %s", tc.url, resp.StatusCode, tc.wantStatus, b)
		}
	}
	if dials.get("any.example.test:443") != 1 || dials.get("127.0.0.1:80") != 0 || dials.get("127.0.0.1:443") != 0 {
		t.Errorf("dials %v", dials.n)
	}
}

// defaultNormalizer is the gateway's default path normalization.
func defaultNormalizer(target string) (string, string, error) {
	res, err := pathnorm.Normalize(target, pathnorm.Default())
	return res.Path, res.RawQuery, err
}
