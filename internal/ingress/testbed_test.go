package ingress

import (
	"bufio"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"tollgate.dev/tollgate/internal/audit"
	"tollgate.dev/tollgate/internal/exchange"
	"tollgate.dev/tollgate/internal/identity"
	"tollgate.dev/tollgate/internal/oidc"
	"tollgate.dev/tollgate/internal/policy/pathnorm"
)

const (
	gatewayID  = "spiffe://example.org/gateway"
	upstreamID = "spiffe://example.org/ns/app/sa/web"
)

// echo is what the test upstream answers: how it saw the request.
type echo struct {
	Method     string              `json:"method"`
	Host       string              `json:"host"`
	RequestURI string              `json:"requestURI"`
	Proto      string              `json:"proto"`
	Caller     string              `json:"caller"`
	Header     map[string][]string `json:"header"`
}

// testbed is a gateway handler behind real TLS, in front of an mTLS upstream that
// accepts only the gateway's SPIFFE ID.
type testbed struct {
	t        testing.TB
	ca       *identity.DevCA
	gwSrc    identity.Source
	upstream *httptest.Server
	front    *httptest.Server
	handler  *Handler
	hits     atomicCounter
	events   *eventLog
	roots    *x509.CertPool
	// transport and frontTLS are what the gateway uses, for a bare proxy to share.
	transport *http.Transport
	frontTLS  *tls.Config
}

type atomicCounter struct {
	mu sync.Mutex
	n  int
}

func (c *atomicCounter) inc() { c.mu.Lock(); c.n++; c.mu.Unlock() }
func (c *atomicCounter) get() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n
}

type eventLog struct {
	mu     sync.Mutex
	events []audit.Event
}

func (l *eventLog) Decided(*audit.Event) error { return nil }

func (l *eventLog) Completed(ev *audit.Event) {
	l.mu.Lock()
	l.events = append(l.events, *ev)
	l.mu.Unlock()
}

func (l *eventLog) last(t *testing.T) audit.Event {
	t.Helper()
	return l.wait(t, func(evs []audit.Event) int { return len(evs) - 1 })
}

// find returns the first event that matches.
func (l *eventLog) find(t *testing.T, match func(*audit.Event) bool) audit.Event {
	t.Helper()
	return l.wait(t, func(evs []audit.Event) int {
		return slices.IndexFunc(evs, func(ev audit.Event) bool { return match(&ev) })
	})
}

// wait returns the event pick chooses (its index, -1 for none yet). An event
// is recorded after the response is written; wait a moment for it.
func (l *eventLog) wait(t *testing.T, pick func([]audit.Event) int) audit.Event {
	t.Helper()
	deadline := time.Now().Add(3 * time.Second)
	for time.Now().Before(deadline) {
		l.mu.Lock()
		if i := pick(l.events); i >= 0 {
			ev := l.events[i]
			l.mu.Unlock()
			return ev
		}
		l.mu.Unlock()
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatal("no such audit event recorded")
	return audit.Event{}
}

type testbedOptions struct {
	upstreamPresents string // SPIFFE ID the upstream's SVID carries (default upstreamID)
	upstreamHandler  http.HandlerFunc
	trusted          []netip.Prefix
	routes           func(up *url.URL, tr http.RoundTripper) []*Route
	authorize        Authorizer
	responseTimeout  time.Duration
	authenticate     *oidc.Authenticator
	audit            exchange.Recorder // default: an in-memory event log
	metrics          exchange.Observer
	front            string // the front's name (default "ingress")
	quiet            bool   // no log output (benchmarks)
}

func newTestbed(t testing.TB, o testbedOptions) *testbed {
	t.Helper()
	ca, err := identity.NewDevCA("example.org")
	if err != nil {
		t.Fatal(err)
	}
	tb := &testbed{t: t, ca: ca, events: &eventLog{}}
	tb.roots = x509.NewCertPool()
	tb.roots.AddCert(ca.Root())

	gwSrc, err := identity.NewDevSource(ca, spiffeid.RequireFromString(gatewayID), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { gwSrc.Close() })
	tb.gwSrc = gwSrc

	presents := o.upstreamPresents
	if presents == "" {
		presents = upstreamID
	}
	upSrc, err := identity.NewDevSource(ca, spiffeid.RequireFromString(presents), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { upSrc.Close() })
	onlyGateway, err := identity.ParseMatcher([]string{gatewayID})
	if err != nil {
		t.Fatal(err)
	}
	h := o.upstreamHandler
	if h == nil {
		h = echoHandler
	}
	tb.upstream = serveTLS(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		tb.hits.inc()
		h(w, r)
	}), identity.ServerTLSConfig(upSrc, onlyGateway))

	upURL, _ := url.Parse(tb.upstream.URL)
	allowed, err := identity.ParseMatcher([]string{upstreamID})
	if err != nil {
		t.Fatal(err)
	}
	tr := NewTransport(TransportOptions{
		TLS:                   identity.ClientTLSConfig(gwSrc, allowed, identity.ClientOptions{}),
		DialTimeout:           2 * time.Second,
		ResponseHeaderTimeout: cmpOr(o.responseTimeout, 5*time.Second),
	})
	t.Cleanup(tr.CloseIdleConnections)
	tb.transport = tr
	routes := []*Route{{Name: "web", Host: "*", PathPrefix: "/", Upstream: upURL, Transport: tr}}
	if o.routes != nil {
		routes = o.routes(upURL, tr)
	}
	logger := slog.New(slog.NewTextHandler(testWriter{t}, nil))
	if o.quiet {
		logger = slog.New(slog.DiscardHandler)
	}
	front := exchange.New(exchange.Options{
		Name:     cmpOr(o.front, "ingress"),
		Rules:    exchange.Rules{TrustedProxies: o.trusted},
		Recorder: cmpOr[exchange.Recorder](o.audit, tb.events),
		Metrics:  o.metrics,
		Logger:   logger,
	})
	tb.handler = New(Options{Front: front}, &Snapshot{Router: NewRouter(routes), Authorize: o.authorize, Authenticate: o.authenticate, Normalize: Normalizer(pathnormDefault)})

	cert, err := ca.IssueServerCert([]string{"localhost"}, []net.IP{net.IPv4(127, 0, 0, 1)}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	tb.frontTLS = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	tb.front = serveTLS(t, tb.handler, tb.frontTLS)
	return tb
}

func cmpOr[T comparable](a, b T) T {
	var zero T
	if a != zero {
		return a
	}
	return b
}

func pathnormDefault(target string) (string, string, error) {
	res, err := pathnorm.Normalize(target, pathnorm.Default())
	return res.Path, res.RawQuery, err
}

// client returns an HTTPS client for the front, speaking HTTP/2 or HTTP/1.1.
func (tb *testbed) client(h2 bool) *http.Client {
	tr := &http.Transport{
		TLSClientConfig:   &tls.Config{RootCAs: tb.roots},
		ForceAttemptHTTP2: h2,
	}
	if !h2 {
		tr.TLSNextProto = map[string]func(string, *tls.Conn) http.RoundTripper{}
	}
	tb.t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 10 * time.Second}
}

func echoHandler(w http.ResponseWriter, r *http.Request) {
	e := echo{Method: r.Method, Host: r.Host, RequestURI: r.RequestURI, Proto: r.Proto, Header: r.Header}
	if id, ok := identity.PeerID(*r.TLS); ok {
		e.Caller = id.String()
	}
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(e)
}

// do sends a request and returns the status, body and the upstream's echo (when 200).
func (tb *testbed) do(c *http.Client, req *http.Request) (int, []byte, echo) {
	tb.t.Helper()
	resp, err := c.Do(req)
	if err != nil {
		tb.t.Fatalf("%s %s: %v", req.Method, req.URL, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	var e echo
	if resp.StatusCode == 200 {
		json.Unmarshal(body, &e)
	}
	return resp.StatusCode, body, e
}

func (tb *testbed) get(c *http.Client, target string, hdr ...string) (int, []byte, echo) {
	tb.t.Helper()
	req, err := http.NewRequest("GET", tb.front.URL+target, nil)
	if err != nil {
		tb.t.Fatal(err)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Add(hdr[i], hdr[i+1])
	}
	return tb.do(c, req)
}

// rawGet sends a request-target exactly as given (Go's client would clean it).
func (tb *testbed) rawGet(target string) (int, string) {
	tb.t.Helper()
	return tb.rawRequest("GET " + target + " HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
}

// rawRequest sends head (request line and headers, as given) over HTTP/1.1 and
// returns the status and body.
func (tb *testbed) rawRequest(head string) (int, string) {
	tb.t.Helper()
	conn, err := tls.Dial("tcp", tb.front.Listener.Addr().String(), &tls.Config{RootCAs: tb.roots, ServerName: "localhost", NextProtos: []string{"http/1.1"}})
	if err != nil {
		tb.t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(5 * time.Second))
	io.WriteString(conn, head)
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		tb.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func errorBody(t *testing.T, body []byte) (msg, requestID string) {
	t.Helper()
	var e struct {
		Error     string `json:"error"`
		RequestID string `json:"requestId"`
	}
	if err := json.Unmarshal(body, &e); err != nil {
		t.Fatalf("error body is not JSON: %q", body)
	}
	if e.Error == "" || e.RequestID == "" {
		t.Fatalf("error body lacks error or requestId: %q", body)
	}
	return e.Error, e.RequestID
}

// testWriter sends log lines to t.Log, so they show only for failing tests.
type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

// serveTLS serves h with exactly cfg on 127.0.0.1 (httptest's StartTLS would add
// its own certificate, which takes precedence for clients that send no SNI).
func serveTLS(t testing.TB, h http.Handler, cfg *tls.Config) *httptest.Server {
	t.Helper()
	cfg = cfg.Clone()
	cfg.NextProtos = []string{"h2", "http/1.1"}
	s := httptest.NewUnstartedServer(h)
	s.Listener = tls.NewListener(s.Listener, cfg)
	s.EnableHTTP2 = true
	s.Config.ErrorLog = slog.NewLogLogger(slog.NewTextHandler(testWriter{t}, nil), slog.LevelInfo)
	s.Start()
	s.URL = strings.Replace(s.URL, "http://", "https://", 1)
	t.Cleanup(s.Close)
	return s
}
