package gateway_test

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"tollgate.dev/tollgate/internal/identity"
	"tollgate.dev/tollgate/internal/testkit"
)

const (
	cartID  = "spiffe://example.org/ns/shop/sa/cart"
	otherID = "spiffe://example.org/ns/shop/sa/other"
	// apiKey is the secret the gateway injects into calls to
	// api.example.test; no workload holds it.
	apiKey = "s3cr3t-api-key-0123456789"
)

// mapResolver answers names from a map, as DNS would; the network rule keeps
// every answer on loopback.
type mapResolver map[string][]netip.Addr

func (m mapResolver) LookupNetIP(_ context.Context, _, host string) ([]netip.Addr, error) {
	if as, ok := m[host]; ok {
		return as, nil
	}
	return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
}

// canary is a listener that must never see a connection: an internal
// address that policy and the SSRF guard must keep every call away from.
type canary struct {
	ln       net.Listener
	accepted atomic.Int64
}

func startCanary(t *testing.T, addr string) *canary {
	t.Helper()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	c := &canary{ln: ln}
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			c.accepted.Add(1)
			conn.Close()
		}
	})
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	return c
}

// egressEnv is a gateway with an egress listener, an "external" HTTPS API on
// 127.0.0.10 (api.example.test, certificate from a CA of its own), and a
// canary on 127.0.0.77 that a registered name (internal.example.test)
// resolves to.
type egressEnv struct {
	*env
	canary   *canary
	external *httptest.Server
	extRoots *x509.CertPool // trusts the external server
	// lastTunnelID is the request id of the last CONNECT answered 200.
	lastTunnelID string
}

func startEgressEnv(t *testing.T) *egressEnv {
	t.Helper()
	return startEgressEnvOpts(t, false)
}

// startEgressEnvOpts is startEgressEnv, egress-only when noIngress.
func startEgressEnvOpts(t *testing.T, noIngress bool) *egressEnv {
	t.Helper()
	ca := testkit.NewCA(t)
	ext := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(map[string]any{"host": r.Host, "uri": r.RequestURI, "headers": r.Header})
	}))
	ln, err := net.Listen("tcp", "127.0.0.10:0")
	if err != nil {
		t.Fatal(err)
	}
	ext.Listener = ln
	ext.TLS = &tls.Config{Certificates: []tls.Certificate{ca.Issue(t, "api.example.test", "internal.example.test", "tls.example.test")}}
	ext.StartTLS()
	t.Cleanup(ext.Close)
	extPort := ln.Addr().(*net.TCPAddr).Port
	can := startCanary(t, fmt.Sprintf("127.0.0.77:%d", extPort))

	caDir := t.TempDir()
	caFile := ca.WriteRoot(t, caDir, "ca.pem")
	keyFile := filepath.Join(caDir, "api-key")
	if err := os.WriteFile(keyFile, []byte(apiKey+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	policies := fmt.Sprintf(`apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: api, namespace: egress}
spec:
  hosts: [api.example.test, internal.example.test]
  ports: [{number: 80, name: http, protocol: HTTP, targetPort: %[1]d}]
  resolution: DNS
  location: MESH_EXTERNAL
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: tls, namespace: egress}
spec:
  hosts: [tls.example.test]
  ports: [{number: %[1]d, name: tls, protocol: TLS}]
  resolution: DNS
  location: MESH_EXTERNAL
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: cart-tunnels, namespace: egress}
spec:
  selector: {matchLabels: {tollgate.dev/listener: egress}}
  action: ALLOW
  rules:
  - from: [{source: {principals: ["example.org/ns/shop/sa/cart"]}}]
    to: [{operation: {ports: ["%[1]d"]}}]
    when: [{key: connection.sni, values: ["tls.example.test"]}]
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: api, namespace: egress}
spec:
  host: api.example.test
  trafficPolicy: {tls: {mode: SIMPLE, caCertificates: %[2]s}}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: internal, namespace: egress}
spec:
  host: internal.example.test
  trafficPolicy: {tls: {mode: SIMPLE, caCertificates: %[2]s}}
---
apiVersion: tollgate.dev/v1
kind: AuthorizationPolicy
metadata: {name: cart-calls-api, namespace: egress}
spec:
  selector: {matchLabels: {tollgate.dev/listener: egress}}
  action: ALLOW
  rules:
  - from: [{source: {principals: ["example.org/ns/shop/sa/cart"]}}]
    to: [{operation: {hosts: ["api.example.test", "internal.example.test"], methods: ["GET"], paths: ["/v1/*"]}}]
    when: [{key: "request.query[mode]", notValues: ["debug"]}]
`, extPort, caFile)
	e := startEnvOpts(t, policies, envOptions{
		svids: map[string]string{"cart": cartID, "other": otherID},
		top: fmt.Sprintf("egress: {listen: 127.0.0.1:0, allowCIDRs: [127.0.0.10/32], timeouts: {dial: 2s, upstream: 5s},\n"+
			"  credentials: [{host: api.example.test, headers: [{name: X-Api-Key, file: %s, prefix: \"Key \"}]}], auditQueryValues: [page]}\n", keyFile),
		noIngress: noIngress,
		egressResolver: mapResolver{
			"api.example.test":      {netip.MustParseAddr("127.0.0.10")},
			"internal.example.test": {netip.MustParseAddr("127.0.0.77")},
			"tls.example.test":      {netip.MustParseAddr("127.0.0.10")},
		},
	})
	return &egressEnv{env: e, canary: can, external: ext, extRoots: ca.Pool()}
}

// workload returns an HTTP client for the workload with SPIFFE ID id, using
// the gateway's egress listener as its HTTPS proxy (HTTPS_PROXY-style):
// mTLS with its SVID, verifying the gateway's SPIFFE ID.
func (e *egressEnv) workload(t *testing.T, id string) *http.Client {
	t.Helper()
	pki := filepath.Join(e.dir, "pki")
	name := id[strings.LastIndex(id, "/")+1:]
	src, err := identity.NewFiles(identity.FilesOptions{
		Cert: filepath.Join(pki, name+".crt"), Key: filepath.Join(pki, name+".key"), Bundle: filepath.Join(pki, "ca.crt"),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { src.Close() })
	gw, _ := identity.ParseMatcher([]string{gatewayID})
	proxy := &url.URL{Scheme: "https", Host: e.gw.EgressAddr().String()}
	tr := &http.Transport{Proxy: http.ProxyURL(proxy), TLSClientConfig: identity.ClientTLSConfig(src, gw, identity.ClientOptions{})}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 10 * time.Second}
}

// A workload calls out through the egress listener with its SVID; the
// gateway judges the call by who is calling and exactly what is called,
// originates TLS to the destination, and audits it. What policy or the SSRF
// guard refuses never reaches the network: the canary sees no connection.
func TestEgressJudgesAndOriginates(t *testing.T) {
	e := startEgressEnv(t)
	cart, other := e.workload(t, cartID), e.workload(t, otherID)
	tests := []struct {
		name       string
		client     *http.Client
		method     string
		url        string
		wantStatus int
		wantReason string
	}{
		{name: "allowed", client: cart, url: "http://api.example.test/v1/items?mode=fast&page=2", wantStatus: 200},
		{name: "host spelling", client: cart, url: "http://API.Example.TEST./v1/items", wantStatus: 200},
		{name: "duplicate query parameters, one denied", client: cart, url: "http://api.example.test/v1/items?mode=fast&mode=debug", wantStatus: 403},
		{name: "wrong caller", client: other, url: "http://api.example.test/v1/items", wantStatus: 403},
		{name: "wrong method", client: cart, method: "DELETE", url: "http://api.example.test/v1/items", wantStatus: 403},
		{name: "denied path", client: cart, url: "http://api.example.test/admin", wantStatus: 403},
		{name: "dot segments out of the allowed prefix", client: cart, url: "http://api.example.test/v1/../admin", wantStatus: 403},
		{name: "denied query", client: cart, url: "http://api.example.test/v1/items?mode=debug", wantStatus: 403},
		{name: "not registered", client: cart, url: "http://evil.example.test/v1/items", wantStatus: 403, wantReason: "destination_not_registered"},
		{name: "registered name resolving inside", client: cart, url: "http://internal.example.test/v1/items", wantStatus: 403, wantReason: "destination_address_denied"},
		{name: "IP literal", client: cart, url: "http://127.0.0.77/v1/items", wantStatus: 403, wantReason: "destination_not_registered"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			req, _ := http.NewRequest(cmpOr(tc.method, "GET"), tc.url, nil)
			// A workload's own copy of the injected header never gets through.
			req.Header.Set("X-Api-Key", "workload-chosen")
			resp, err := tc.client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tc.wantStatus {
				t.Fatalf("status %d, want %d: %s", resp.StatusCode, tc.wantStatus, body)
			}
			if tc.wantReason != "" && resp.Header.Get("X-Tollgate-Error") != tc.wantReason {
				t.Errorf("X-Tollgate-Error %q, want %q", resp.Header.Get("X-Tollgate-Error"), tc.wantReason)
			}
			ev := e.auditEvent(resp.Header.Get("X-Request-Id"))
			if ev["kind"] != "egress" || ev["status"] != float64(tc.wantStatus) {
				t.Errorf("audit event %v", ev)
			}
			if tc.wantStatus == 200 {
				var seen struct{ Headers map[string][]string }
				json.Unmarshal(body, &seen)
				if got := seen.Headers["X-Api-Key"]; len(got) != 1 || got[0] != "Key "+apiKey {
					t.Errorf("destination got X-Api-Key %q, want the injected one", got)
				}
				// Query keys are recorded, values only where listed.
				if q, _ := ev["query"].(string); strings.Contains(q, "fast") {
					t.Errorf("audit query %q records an unlisted value", q)
				}
				up, _ := ev["upstream"].(map[string]any)
				if up["address"] != e.external.Listener.Addr().String() || up["tlsVersion"] != "TLS 1.3" || ev["sourcePrincipal"] != cartID {
					t.Errorf("audit event %v", ev)
				}
			}
		})
	}
	if n := e.canary.accepted.Load(); n != 0 {
		t.Errorf("the canary accepted %d connections", n)
	}
	// The secret is in no audit record.
	b, err := os.ReadFile(filepath.Join(e.dir, "audit.log"))
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(b), apiKey) {
		t.Error("the injected credential reached the audit log")
	}
}

// A client without an SVID, or with one of another trust domain, can't even
// complete the handshake.
func TestEgressRequiresCallerSVID(t *testing.T) {
	e := startEgressEnv(t)
	conn, err := tls.Dial("tcp", e.gw.EgressAddr().String(), &tls.Config{InsecureSkipVerify: true}) // no client certificate
	if err == nil {
		// TLS 1.3: the server's refusal arrives with the first read.
		conn.SetDeadline(time.Now().Add(5 * time.Second))
		_, err = conn.Read(make([]byte, 1))
		conn.Close()
	}
	if err == nil {
		t.Fatal("a client without a certificate got through")
	}

	// An SVID of another trust domain, with a path a policy might allow.
	foreign, err := identity.NewDevCA("other.org")
	if err != nil {
		t.Fatal(err)
	}
	src, err := identity.NewDevSource(foreign, spiffeid.RequireFromString("spiffe://other.org/ns/shop/sa/cart"), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	gw, _ := identity.ParseMatcher([]string{gatewayID})
	cfg := identity.ClientTLSConfig(src, gw, identity.ClientOptions{})
	conn, err = tls.Dial("tcp", e.gw.EgressAddr().String(), cfg)
	if err == nil {
		conn.SetDeadline(time.Now().Add(5 * time.Second))
		_, err = conn.Read(make([]byte, 1))
		conn.Close()
	}
	if err == nil {
		t.Fatal("a client of another trust domain got through")
	}
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// connect opens a CONNECT tunnel through the egress listener as the
// workload id and returns the status and, on 200, the tunnel.
func (e *egressEnv) connect(t *testing.T, id, authority string) (int, net.Conn) {
	t.Helper()
	pki := filepath.Join(e.dir, "pki")
	name := id[strings.LastIndex(id, "/")+1:]
	src, err := identity.NewFiles(identity.FilesOptions{
		Cert: filepath.Join(pki, name+".crt"), Key: filepath.Join(pki, name+".key"), Bundle: filepath.Join(pki, "ca.crt"),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { src.Close() })
	gw, _ := identity.ParseMatcher([]string{gatewayID})
	cfg := identity.ClientTLSConfig(src, gw, identity.ClientOptions{})
	cfg.NextProtos = []string{"http/1.1"}
	conn, err := tls.Dial("tcp", e.gw.EgressAddr().String(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	conn.SetDeadline(time.Now().Add(15 * time.Second))
	fmt.Fprintf(conn, "CONNECT %s HTTP/1.1\r\nHost: %s\r\n\r\n", authority, authority)
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, &http.Request{Method: "CONNECT"})
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		io.Copy(io.Discard, resp.Body)
		conn.Close()
		return resp.StatusCode, nil
	}
	t.Cleanup(func() { conn.Close() })
	e.lastTunnelID = resp.Header.Get("X-Request-Id")
	return 200, bufferedConn{conn, br}
}

type bufferedConn struct {
	net.Conn
	r *bufio.Reader
}

func (c bufferedConn) Read(p []byte) (int, error) { return c.r.Read(p) }

// CONNECT reaches only passthrough ports, is judged with Istio's TCP rules
// on the port, the caller and connection.sni (the CONNECT host), and the
// tunnel carries only a ClientHello for that host: the workload's own TLS
// runs end to end with the destination.
func TestEgressConnectTunnels(t *testing.T) {
	e := startEgressEnv(t)
	port := e.external.Listener.Addr().(*net.TCPAddr).Port
	tlsHost := fmt.Sprintf("tls.example.test:%d", port)
	t.Run("allowed, end to end TLS", func(t *testing.T) {
		status, tun := e.connect(t, cartID, tlsHost)
		if status != 200 {
			t.Fatalf("CONNECT: %d", status)
		}
		c := tls.Client(tun, &tls.Config{ServerName: "tls.example.test", RootCAs: e.extRoots})
		fmt.Fprintf(c, "GET /through HTTP/1.1\r\nHost: tls.example.test\r\nConnection: close\r\n\r\n")
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != 200 || !strings.Contains(string(b), `"uri":"/through"`) {
			t.Fatalf("through the tunnel: %d %s", resp.StatusCode, b)
		}
		c.Close()
		ev := e.auditEvent(e.lastTunnelID)
		in, _ := ev["bytesIn"].(float64)
		out, _ := ev["bytesOut"].(float64)
		up, _ := ev["upstream"].(map[string]any)
		if ev["method"] != "CONNECT" || ev["status"] != float64(200) || in < 200 || out < int64f(len(b)) || up["address"] != e.external.Listener.Addr().String() || ev["sni"] != "tls.example.test" {
			t.Errorf("audit event %v", ev)
		}
	})
	t.Run("ClientHello for another name", func(t *testing.T) {
		status, tun := e.connect(t, cartID, tlsHost)
		if status != 200 {
			t.Fatalf("CONNECT: %d", status)
		}
		c := tls.Client(tun, &tls.Config{ServerName: "internal.example.test", RootCAs: e.extRoots})
		if err := c.Handshake(); err == nil {
			t.Fatal("a ClientHello for another name went through the tunnel")
		}
	})
	for _, tc := range []struct {
		name, id, authority string
		want                int
	}{
		{name: "originated port", id: cartID, authority: "api.example.test:80", want: 403},
		{name: "not registered", id: cartID, authority: fmt.Sprintf("evil.example.test:%d", port), want: 403},
		{name: "IP literal", id: cartID, authority: fmt.Sprintf("127.0.0.77:%d", port), want: 403},
		{name: "caller not allowed", id: otherID, authority: tlsHost, want: 403},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if status, _ := e.connect(t, tc.id, tc.authority); status != tc.want {
				t.Errorf("CONNECT %s: %d, want %d", tc.authority, status, tc.want)
			}
		})
	}
	if n := e.canary.accepted.Load(); n != 0 {
		t.Errorf("the canary accepted %d connections", n)
	}
}

func int64f(n int) float64 { return float64(n) }

// A gateway may serve egress alone, for teams that only control what leaves
// the network: no ingress section, no ingress listener, the same egress.
func TestEgressOnlyGateway(t *testing.T) {
	e := startEgressEnvOpts(t, true)
	if e.gw.IngressAddr() != nil {
		t.Fatal("an ingress listener without an ingress section")
	}
	resp, err := e.workload(t, cartID).Get("http://api.example.test/v1/items")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	admin := &http.Client{Transport: &http.Transport{}, Timeout: 5 * time.Second}
	defer admin.CloseIdleConnections()
	r, err := admin.Get("http://" + e.gw.AdminAddr() + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	r.Body.Close()
	if r.StatusCode != 200 {
		t.Fatalf("readyz: %d", r.StatusCode)
	}
}
