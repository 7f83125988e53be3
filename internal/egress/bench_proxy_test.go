package egress

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"

	"tollgate.dev/tollgate/internal/audit"
	"tollgate.dev/tollgate/internal/config"
	"tollgate.dev/tollgate/internal/exchange"
	"tollgate.dev/tollgate/internal/identity"
	"tollgate.dev/tollgate/internal/policy"
	"tollgate.dev/tollgate/internal/request"
	"tollgate.dev/tollgate/internal/testkit"
)

// The benchmarks of this file and bench_connect_test.go measure the egress
// path of issue 9 against Go's floor on the same machine: a workload with an
// SVID (mTLS to the proxy) calling an "external" HTTPS API on 127.0.0.2.
// scripts/bench-egress.sh runs them interleaved and prints the ratios.

const (
	benchCaller  = "spiffe://example.org/ns/shop/sa/cart"
	benchGateway = "spiffe://example.org/gateway"
	benchHost    = "api.example.test"
)

// benchIP is where the "external" destinations listen; the SSRF guard admits
// exactly this address (an /32 entry), as a deployment admits one private
// service.
var benchIP = netip.MustParseAddr("127.0.0.2")

// benchResolver answers the destination's name from memory, as a warm
// resolver cache would; nothing is looked up on the network.
type benchResolver map[string][]netip.Addr

func (m benchResolver) LookupNetIP(_ context.Context, _, host string) ([]netip.Addr, error) {
	if as, ok := m[host]; ok {
		return as, nil
	}
	return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
}

// benchPKI is the mesh (a SPIFFE trust domain: the gateway's and the
// workload's SVIDs) and the outside world's CA (the destination's
// certificate, trusted through the DestinationRule's caCertificates).
type benchPKI struct {
	mesh         *identity.DevCA
	gateway      *identity.Static
	workload     *identity.Static
	workloadSVID *x509svid.SVID
	outside      *testkit.CA
	outsideFile  string // PEM of the outside CA
}

func newBenchPKI(tb testing.TB) *benchPKI {
	tb.Helper()
	mesh, err := identity.NewDevCA("example.org")
	if err != nil {
		tb.Fatal(err)
	}
	issue := func(id string) (*identity.Static, *x509svid.SVID) {
		svid, err := mesh.IssueSVID(spiffeid.RequireFromString(id), time.Hour)
		if err != nil {
			tb.Fatal(err)
		}
		src, err := identity.NewStatic(svid, mesh.Bundle())
		if err != nil {
			tb.Fatal(err)
		}
		tb.Cleanup(func() { src.Close() })
		return src, svid
	}
	p := &benchPKI{mesh: mesh, outside: testkit.NewCA(tb)}
	p.gateway, _ = issue(benchGateway)
	p.workload, p.workloadSVID = issue(benchCaller)
	p.outsideFile = p.outside.WriteRoot(tb, tb.TempDir(), "outside-ca.pem")
	return p
}

func mustMatcher(tb testing.TB, patterns ...string) identity.Matcher {
	tb.Helper()
	m, err := identity.ParseMatcher(patterns)
	if err != nil {
		tb.Fatal(err)
	}
	return m
}

// listenerTLS is the egress listener's TLS, as the gateway builds it: the
// gateway's SVID, a required client SVID whose ID must match the allowed
// callers (checked in VerifyConnection). HTTP/1.1 only: the proxy protocol
// Go's http.Transport speaks to an https:// proxy.
func listenerTLS(tb testing.TB, src identity.Source) *tls.Config {
	cfg := identity.ServerTLSConfig(src, mustMatcher(tb, "spiffe://example.org/ns/shop/*"))
	cfg.NextProtos = []string{"http/1.1"}
	return cfg
}

// workloadTLS is the workload's side: its SVID, verifying the gateway's ID.
func (p *benchPKI) workloadTLS(tb testing.TB) *tls.Config {
	return identity.ClientTLSConfig(p.workload, mustMatcher(tb, benchGateway), identity.ClientOptions{})
}

// serveMTLS serves h behind cfg on a fresh loopback port until the benchmark
// ends, and returns the address.
func serveMTLS(tb testing.TB, h http.Handler, cfg *tls.Config) string {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second, ErrorLog: nil}
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = srv.Serve(tls.NewListener(ln, cfg))
	}()
	tb.Cleanup(func() {
		_ = srv.Close()
		<-done
	})
	return ln.Addr().String()
}

// benchEgressPolicies is the egress listener's policy set, in the shape a
// deployment has: a DENY for administrative paths, the benchmark caller's
// HTTP rule (host, method, path prefix, a query condition: Tollgate's
// extension of Istio's schema, hence tollgate.dev/v1) and its tunnel rule
// (port and SNI), and the rules of a few other workloads to other
// destinations, so the engine has something to skip.
func benchEgressPolicies(tunnelPort int) string {
	s := `apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: no-admin, namespace: egress}
spec:
  selector: {matchLabels: {tollgate.dev/listener: egress}}
  action: DENY
  rules:
  # Scoped to the HTTP port: Istio's TCP rules widen a DENY that names
  # HTTP fields, so without the port it would refuse every tunnel.
  - to: [{operation: {ports: ["80"], paths: ["/admin", "/admin/*", "/internal/*"]}}]
---
apiVersion: tollgate.dev/v1
kind: AuthorizationPolicy
metadata: {name: cart-calls-api, namespace: egress}
spec:
  selector: {matchLabels: {tollgate.dev/listener: egress}}
  action: ALLOW
  rules:
  - from: [{source: {principals: ["example.org/ns/shop/sa/cart"]}}]
    to: [{operation: {hosts: ["api.example.test"], methods: ["GET", "HEAD"], paths: ["/v1/*"]}}]
    when: [{key: "request.query[mode]", notValues: ["debug"]}]
  - from: [{source: {principals: ["example.org/ns/shop/sa/cart"]}}]
    to: [{operation: {ports: ["` + strconv.Itoa(tunnelPort) + `"]}}]
    when: [{key: connection.sni, values: ["api.example.test"]}]
`
	for i := range 8 {
		s += fmt.Sprintf(`---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: team%[1]d, namespace: egress}
spec:
  selector: {matchLabels: {tollgate.dev/listener: egress}}
  action: ALLOW
  rules:
  - from: [{source: {principals: ["example.org/ns/team%[1]d/sa/app"]}}]
    to: [{operation: {hosts: ["svc%[1]d.partner.test"], methods: ["GET", "POST"], paths: ["/api/v%[1]d/*"]}}]
`, i)
	}
	return s
}

// benchDestinations registers api.example.test: port 80 is originated to the
// HTTPS server at originPort (verified against the outside CA), and
// tunnelPort passes through (CONNECT).
func benchDestinations(caFile string, originPort, tunnelPort int) string {
	return fmt.Sprintf(`apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: api, namespace: egress}
spec:
  hosts: [api.example.test]
  ports:
  - {number: 80, name: http, protocol: HTTP, targetPort: %[1]d}
  - {number: %[2]d, name: tls, protocol: TLS}
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
      tls: {mode: SIMPLE, caCertificates: %[3]s}
`, originPort, tunnelPort, caFile)
}

func benchDocs(tb testing.TB, src string) []config.Document {
	tb.Helper()
	file := filepath.Join(tb.TempDir(), "egress.yaml")
	if err := os.WriteFile(file, []byte(src), 0o644); err != nil {
		tb.Fatal(err)
	}
	nodes, err := config.ParseDocuments(file, []byte(src))
	if err != nil {
		tb.Fatal(err)
	}
	var docs []config.Document
	for _, n := range nodes {
		d, err := config.DocumentOf(file, n)
		if err != nil {
			tb.Fatal(err)
		}
		docs = append(docs, d)
	}
	return docs
}

// engineAuthorizer is internal/gateway's authorizer: the compiled engine of
// the egress listener's labels.
type engineAuthorizer struct{ e *policy.Engine }

func (a engineAuthorizer) Authorize(r *request.Request) request.Decision { return a.e.Decide(r) }

func (a engineAuthorizer) UsesQuery() bool { return a.e.UsesQuery() }

// startBenchGateway runs the egress proxy as the gateway assembles it (see
// benchGatewayHandler) behind the egress listener's mTLS, in this process,
// and returns the listener's address.
func startBenchGateway(tb testing.TB, pki *benchPKI, originPort, tunnelPort int) string {
	tb.Helper()
	return serveMTLS(tb, benchGatewayHandler(tb, pki.outsideFile, originPort, tunnelPort), listenerTLS(tb, pki.gateway))
}

// benchGatewayHandler is the egress proxy as the gateway assembles it: the
// exchange with a real audit logger (to io.Discard), path normalization,
// the destination registry and the compiled policy of the egress labels,
// and dials through the SSRF guard.
func benchGatewayHandler(tb testing.TB, outsideCAFile string, originPort, tunnelPort int) http.Handler {
	tb.Helper()
	docs := benchDocs(tb, benchDestinations(outsideCAFile, originPort, tunnelPort)+"---\n"+benchEgressPolicies(tunnelPort))
	reg, err := LoadDestinations(docs)
	if err != nil {
		tb.Fatal(err)
	}
	set, err := policy.Compile(docs, "bench", policy.Options{TrustDomain: "example.org"})
	if err != nil {
		tb.Fatal(err)
	}
	engine := set.EngineFor(config.Workload{Labels: map[string]string{"tollgate.dev/listener": "egress"}})
	if engine.Len() != 10 {
		tb.Fatalf("the egress listener has %d policies, want 10", engine.Len())
	}
	guard, err := NewGuard(GuardOptions{
		Resolver:    benchResolver{benchHost: {benchIP}},
		Allow:       []netip.Prefix{netip.PrefixFrom(benchIP, 32)},
		DialTimeout: 5 * time.Second,
	})
	if err != nil {
		tb.Fatal(err)
	}
	lg, err := audit.New(audit.Config{Sinks: []audit.Sink{audit.NewWriterSink(io.Discard)}})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { lg.Close() })
	p := NewProxy(ProxyOptions{
		Front:                 exchange.New(exchange.Options{Name: "egress", Recorder: lg}),
		Dial:                  guard.DialContext,
		DialTimeout:           5 * time.Second,
		ResponseHeaderTimeout: 5 * time.Second,
	}, &Snapshot{Normalize: defaultNormalizer, Destinations: reg, Authorize: engineAuthorizer{engine}})
	tb.Cleanup(p.Close)
	return p
}

// startBareProxy is Go's floor for the same call: a minimal forward proxy
// (httputil.ReverseProxy) behind the same mTLS listener, sending the
// absolute-form request on over TLS verified against the same CA, with the
// same pool settings as the gateway's, and dialling the same address the
// gateway's guard resolves to. No policy, no audit, no guard.
func startBareProxy(tb testing.TB, pki *benchPKI, originPort int) string {
	tb.Helper()
	roots := x509.NewCertPool()
	roots.AddCert(pki.outside.Root())
	var d net.Dialer
	tr := &http.Transport{
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			host, port, err := net.SplitHostPort(addr)
			if err != nil {
				return nil, err
			}
			ips, err := benchResolver{benchHost: {benchIP}}.LookupNetIP(ctx, "ip", host)
			if err != nil {
				return nil, err
			}
			return d.DialContext(ctx, network, net.JoinHostPort(ips[0].String(), port))
		},
		TLSClientConfig:       &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: roots},
		TLSHandshakeTimeout:   5 * time.Second,
		ResponseHeaderTimeout: 5 * time.Second,
		ForceAttemptHTTP2:     true,
		MaxIdleConnsPerHost:   64,
		IdleConnTimeout:       90 * time.Second,
	}
	tb.Cleanup(tr.CloseIdleConnections)
	target := net.JoinHostPort(benchHost, strconv.Itoa(originPort))
	rp := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.Out.URL.Scheme = "https"
			pr.Out.URL.Host = target
			pr.Out.Host = target
		},
		Transport: tr,
	}
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Scheme != "http" || r.URL.Hostname() != benchHost {
			http.Error(w, "not proxied", http.StatusForbidden)
			return
		}
		rp.ServeHTTP(w, r)
	})
	return serveMTLS(tb, h, listenerTLS(tb, pki.gateway))
}

// startBenchAPI is the "external" HTTPS API on 127.0.0.2: HTTP/2 offered, a
// small JSON answer. It returns its port.
func startBenchAPI(tb testing.TB, ca *testkit.CA) int {
	tb.Helper()
	ln, err := net.Listen("tcp", net.JoinHostPort(benchIP.String(), "0"))
	if err != nil {
		tb.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"id":"x","ok":true}`+"\n")
	})}
	cfg := &tls.Config{Certificates: []tls.Certificate{ca.Issue(tb, benchHost)}, NextProtos: []string{"h2", "http/1.1"}}
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = srv.Serve(tls.NewListener(ln, cfg))
	}()
	tb.Cleanup(func() {
		_ = srv.Close()
		<-done
	})
	return ln.Addr().(*net.TCPAddr).Port
}

// BenchmarkEgress measures a workload's call through an egress proxy:
// keep-alive HTTP/1.1 over mTLS to the proxy (Go's http.Transport with an
// https:// proxy, absolute-form GET http://api.example.test/v1/x), the proxy
// originating TLS to the destination. "bare" is a minimal Go forward proxy
// with the same TLS legs; "gateway" is the egress Proxy with policy, the SSRF
// guard and audit.
func BenchmarkEgress(b *testing.B) {
	for _, via := range []string{"bare", "gateway"} {
		b.Run("proxy="+via+"/proto=h1", func(b *testing.B) {
			pki := newBenchPKI(b)
			apiPort := startBenchAPI(b, pki.outside)
			var addr string
			if via == "bare" {
				addr = startBareProxy(b, pki, apiPort)
			} else {
				// The tunnel port is not used here; any registered one will do.
				addr = startBenchGateway(b, pki, apiPort, 443)
			}
			tr := &http.Transport{
				Proxy:               http.ProxyURL(&url.URL{Scheme: "https", Host: addr}),
				TLSClientConfig:     pki.workloadTLS(b),
				MaxIdleConnsPerHost: 64,
			}
			b.Cleanup(tr.CloseIdleConnections)
			runEgressLoad(b, &http.Client{Transport: tr, Timeout: 10 * time.Second}, "http://"+benchHost+"/v1/x")
		})
	}
}

// runEgressLoad warms the connections up (handshakes are not measured), then
// sends GETs from 4 goroutines per core and reports req/s.
func runEgressLoad(b *testing.B, c *http.Client, target string) {
	get := func() error {
		resp, err := c.Get(target)
		if err != nil {
			return err
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("status %d (%s)", resp.StatusCode, resp.Header.Get(exchange.HeaderError))
		}
		return nil
	}
	for range 8 {
		if err := get(); err != nil {
			b.Fatal(err)
		}
	}
	b.SetParallelism(4)
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if err := get(); err != nil {
				if !errors.Is(err, context.Canceled) {
					b.Error(err)
				}
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "req/s")
}
