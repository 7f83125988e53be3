package gateway_test

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"tollgate.dev/tollgate/internal/dev"
)

const (
	frontendID = "spiffe://example.org/ns/shop/sa/frontend"
	batchID    = "spiffe://example.org/ns/batch/sa/job"
)

const meshPolicies = `apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: mesh-callers, namespace: istio-system}
spec:
  selector:
    matchLabels: {tollgate.dev/listener: mesh}
  action: ALLOW
  rules:
  - from: [{source: {principals: ["example.org/ns/shop/sa/frontend"]}}]
  - from: [{source: {namespaces: ["batch"]}}]
    to: [{operation: {methods: ["GET"]}}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: ingress-needs-mesh-identity, namespace: istio-system}
spec:
  selector:
    matchLabels: {tollgate.dev/listener: ingress}
  action: ALLOW
  rules:
  - from: [{source: {principals: ["*"]}}]
`

// caPool holds the test trust bundle.
func (e *env) caPool() *x509.CertPool {
	e.t.Helper()
	pem, err := os.ReadFile(filepath.Join(e.dir, "pki", "ca.crt"))
	if err != nil {
		e.t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(pem)
	return roots
}

// meshClient presents the SVID written as name into pki/.
func (e *env) meshClient(name string, roots *x509.CertPool) *http.Client {
	e.t.Helper()
	cfg := &tls.Config{RootCAs: roots, ServerName: "localhost"}
	if name != "" {
		cert, err := tls.LoadX509KeyPair(filepath.Join(e.dir, "pki", name+".crt"), filepath.Join(e.dir, "pki", name+".key"))
		if err != nil {
			e.t.Fatal(err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	// The mesh listener presents the gateway's SVID: verify it as a SPIFFE peer
	// would, by URI SAN against the bundle (no DNS name to check).
	cfg.InsecureSkipVerify = true
	cfg.VerifyConnection = func(cs tls.ConnectionState) error {
		opts := x509.VerifyOptions{Roots: roots, Intermediates: x509.NewCertPool()}
		leaf := cs.PeerCertificates[0]
		if _, err := leaf.Verify(opts); err != nil {
			return err
		}
		if len(leaf.URIs) != 1 || leaf.URIs[0].String() != gatewayID {
			e.t.Errorf("mesh listener presented %v, want the gateway's SVID", leaf.URIs)
		}
		return nil
	}
	tr := &http.Transport{TLSClientConfig: cfg, ForceAttemptHTTP2: true}
	e.t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 10 * time.Second}
}

func TestMeshListenerJudgesCallerIdentity(t *testing.T) {
	e := startEnvOpts(t, meshPolicies, envOptions{
		ingress: "  mesh: {listen: \"127.0.0.1:0\"}\n",
		svids:   map[string]string{"frontend": frontendID, "batch": batchID},
	})
	roots := e.caPool()
	meshURL := "https://" + e.gw.MeshAddr().String()

	tests := []struct {
		name       string
		caller     string // SVID name in pki/; "" = no client certificate
		method     string
		wantStatus int // 0: the TLS handshake must fail
	}{
		{name: "frontend by principal", caller: "frontend", method: "POST", wantStatus: 200},
		{name: "batch namespace may GET", caller: "batch", method: "GET", wantStatus: 200},
		{name: "batch namespace may not POST", caller: "batch", method: "POST", wantStatus: 403},
		{name: "the gateway's own SVID is in the trust domain but not allowed by policy", caller: "echo", method: "GET", wantStatus: 403},
		{name: "no client certificate", caller: "", method: "GET", wantStatus: 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			req, _ := http.NewRequest(tc.method, meshURL+"/orders", nil)
			resp, err := e.meshClient(tc.caller, roots).Do(req)
			if tc.wantStatus == 0 {
				if err == nil {
					resp.Body.Close()
					t.Fatalf("request without a client SVID got %d", resp.StatusCode)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			b, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != tc.wantStatus {
				t.Fatalf("status %d, want %d: %s", resp.StatusCode, tc.wantStatus, b)
			}
			if resp.StatusCode == 200 {
				var echo dev.EchoResponse
				json.Unmarshal(b, &echo)
				if echo.Caller != gatewayID {
					t.Errorf("upstream saw caller %q: the gateway re-originates mTLS with its own SVID", echo.Caller)
				}
			}
		})
	}

	// The external ingress listener asks for no client certificate, so nothing
	// there can claim a mesh principal.
	if r := e.do(e.client, "GET", "/orders"); r.status != 403 {
		t.Errorf("ingress listener: status %d, want 403 (no source principal)", r.status)
	}

	// The audit event names the caller.
	deadline := time.Now().Add(3 * time.Second)
	for {
		b, _ := os.ReadFile(filepath.Join(e.dir, "audit.log"))
		if strings.Contains(string(b), `"sourcePrincipal":"`+frontendID+`"`) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no audit event with sourcePrincipal %s:\n%s", frontendID, b)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// allowedCallers is checked at the handshake: a caller with a valid SVID of the
// trust domain but outside the patterns never reaches policy.
func TestMeshAllowedCallersRefuseOthers(t *testing.T) {
	e := startEnvOpts(t, meshPolicies, envOptions{
		ingress: "  mesh: {listen: \"127.0.0.1:0\", allowedCallers: [\"spiffe://example.org/ns/shop/*\"]}\n",
		svids:   map[string]string{"frontend": frontendID, "batch": batchID},
	})
	meshURL := "https://" + e.gw.MeshAddr().String() + "/orders"
	resp, err := e.meshClient("frontend", e.caPool()).Get(meshURL)
	if err != nil {
		t.Fatalf("allowed caller: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Errorf("allowed caller: status %d", resp.StatusCode)
	}
	if resp, err := e.meshClient("batch", e.caPool()).Get(meshURL); err == nil {
		resp.Body.Close()
		t.Fatalf("caller outside allowedCallers got %d, want a refused handshake", resp.StatusCode)
	}
}
