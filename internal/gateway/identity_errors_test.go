package gateway_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/svid/x509svid"

	"tollgate.dev/tollgate/internal/config"
	"tollgate.dev/tollgate/internal/dev"
	"tollgate.dev/tollgate/internal/gateway"
	"tollgate.dev/tollgate/internal/identity"
	"tollgate.dev/tollgate/internal/identity/identitytest"
	"tollgate.dev/tollgate/internal/testkit"
)

// writeFile writes data to dir/name (making folders) and returns the path.
func writeFile(t testing.TB, dir, name string, data []byte) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// writeSVID writes svid as name.crt/name.key into dir.
func writeSVID(t testing.TB, dir, name string, svid *x509svid.SVID) {
	t.Helper()
	certPEM, keyPEM, err := svid.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, dir, name+".crt", certPEM)
	writeFile(t, dir, name+".key", keyPEM)
}

// ingressCA makes the plain TLS certificate the ingress serves to clients
// (tls.crt/tls.key in dir, for localhost and 127.0.0.1, from a CA of its own)
// and returns a pool that trusts it.
func ingressCA(t testing.TB, dir string) *x509.CertPool {
	t.Helper()
	ca := testkit.NewCA(t)
	ca.WritePair(t, dir, "tls", "localhost", "127.0.0.1")
	return ca.Pool()
}

// gatewayYAML is a gateway config with the given identity section (two-space
// indented lines under "identity:") and routes (YAML list items under
// "routes:", four-space indented), serving tls.crt/tls.key from its folder.
func gatewayYAML(identityBlock, routes, extraIngress string) string {
	return fmt.Sprintf(`apiVersion: tollgate.dev/v1
kind: Gateway
identity:
%s
ingress:
  listen: 127.0.0.1:0
  tls:
    certificates: [{cert: tls.crt, key: tls.key}]
  routes:
%s
%sadmin: {listen: "127.0.0.1:0"}
`, strings.TrimRight(identityBlock, "\n"), strings.TrimRight(routes, "\n"), extraIngress)
}

// echoRoute is a route item for gatewayYAML to an upstream at addr accepting ids.
func echoRoute(name, prefix, addr string, ids ...string) string {
	return fmt.Sprintf("  - name: %s\n    host: \"*\"\n    pathPrefix: %s\n    upstream: {url: \"https://%s\", spiffeIDs: [%s]}\n",
		name, prefix, addr, `"`+strings.Join(ids, `", "`)+`"`)
}

// newGateway writes text as dir/gateway.yaml, loads it and builds a gateway.
// It does not start it; on success the gateway is shut down at cleanup.
func newGateway(t testing.TB, dir, text string) (*gateway.Gateway, *config.Gateway, error) {
	t.Helper()
	file := writeFile(t, dir, "gateway.yaml", []byte(text))
	cfg, err := config.Load(file)
	if err != nil {
		t.Fatalf("config.Load: %v\n%s", err, text)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	gw, err := gateway.New(ctx, cfg, gateway.Options{Logger: slog.New(slog.NewTextHandler(testWriter{t}, nil))})
	if err == nil {
		t.Cleanup(func() { gw.Shutdown(context.Background()) })
	}
	return gw, cfg, err
}

// startGateway is newGateway that must succeed, then Start.
func startGateway(t testing.TB, dir, text string) *gateway.Gateway {
	t.Helper()
	gw, _, err := newGateway(t, dir, text)
	if err != nil {
		t.Fatalf("gateway.New: %v", err)
	}
	if err := gw.Start(); err != nil {
		t.Fatalf("Start: %v", err)
	}
	return gw
}

// httpsClient trusts roots, speaks HTTP/2 (h2) or only HTTP/1.1.
func httpsClient(t testing.TB, roots *x509.CertPool, h2 bool) *http.Client {
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots}, ForceAttemptHTTP2: h2, Proxy: nil, MaxIdleConnsPerHost: 64}
	if !h2 {
		tr.TLSNextProto = map[string]func(string, *tls.Conn) http.RoundTripper{}
	}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 10 * time.Second}
}

// get sends GET url and returns the status and body; a transport error fails the test.
func get(t testing.TB, c *http.Client, url string) (int, string) {
	t.Helper()
	resp, err := c.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// startEcho serves dev's echo upstream with src, accepting callers matching allow.
func startEcho(t testing.TB, src identity.Source, allow ...string) *dev.Echo {
	t.Helper()
	e, err := dev.StartEcho("127.0.0.1:0", src, identitytest.Matcher(t, allow...), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close() })
	return e
}

// TestIdentityConfigErrors checks that an identity that cannot be used stops
// gateway.New (and `gateway check`, where it can tell without an agent) with
// an error positioned at the field to fix and naming the file or socket.
func TestIdentityConfigErrors(t *testing.T) {
	t.Parallel()
	ca := identitytest.NewCA(t, "example.org")
	goodDir := t.TempDir()
	writeSVID(t, goodDir, "gateway", identitytest.SVID(t, ca, gatewayID))
	writeSVID(t, goodDir, "expired", identitytest.ExpiredSVID(t, ca, gatewayID))
	writeFile(t, goodDir, "ca.crt", ca.RootPEM())
	writeFile(t, goodDir, "notpem.crt", []byte("this is not PEM\n"))
	writeFile(t, goodDir, "key-as-bundle.crt", mustRead(t, filepath.Join(goodDir, "gateway.key")))
	regular := writeFile(t, goodDir, "regular.sock", []byte("not a socket"))
	g := "{cert: " + goodDir + "/gateway.crt, key: " + goodDir + "/gateway.key"

	tests := []struct {
		name     string
		identity string
		// wantErr are substrings of the error text, the field path among them.
		wantErr []string
		// checkToo: `gateway check` must report the same (it can without an agent).
		checkToo bool
	}{
		{
			name:     "workload API socket missing",
			identity: "  workloadAPI: {socket: \"unix://" + goodDir + "/nope.sock\", waitTimeout: 1s}",
			wantErr:  []string{"identity.workloadAPI: ", goodDir + "/nope.sock does not exist", "SPIRE agent"},
		},
		{
			name:     "workload API socket is a regular file",
			identity: "  workloadAPI: {socket: \"unix://" + regular + "\", waitTimeout: 1s}",
			wantErr:  []string{"identity.workloadAPI: ", regular + " is not a unix socket"},
		},
		{
			name:     "bundle file is not PEM",
			identity: "  files: " + g + ", bundle: " + goodDir + "/notpem.crt}",
			wantErr:  []string{"identity.files: ", "bundle file " + goodDir + "/notpem.crt: no PEM certificates"},
			checkToo: true,
		},
		{
			name:     "bundle file holds a key",
			identity: "  files: " + g + ", bundle: " + goodDir + "/key-as-bundle.crt}",
			wantErr:  []string{"identity.files: ", `unexpected PEM block "PRIVATE KEY"`},
			checkToo: true,
		},
		{
			name:     "federated bundle file is not PEM",
			identity: "  files: " + g + ", bundle: " + goodDir + "/ca.crt, federatedBundles: {other.test: " + goodDir + "/notpem.crt}}",
			wantErr:  []string{"identity.files: ", "bundle file " + goodDir + "/notpem.crt: no PEM certificates"},
			checkToo: true,
		},
		{
			name:     "SVID trust domain does not match config",
			identity: "  trustDomain: other.test\n  files: " + g + ", bundle: " + goodDir + "/ca.crt}",
			wantErr:  []string{"identity.trustDomain: ", `the gateway's SVID ` + gatewayID + ` is not in trust domain "other.test"`},
			checkToo: true,
		},
		{
			name:     "expired SVID file",
			identity: "  files: {cert: " + goodDir + "/expired.crt, key: " + goodDir + "/expired.key, bundle: " + goodDir + "/ca.crt}",
			wantErr:  []string{"identity.files: ", "does not verify against bundle", "expired"},
			checkToo: true,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			ingressCA(t, dir)
			text := gatewayYAML(tc.identity, echoRoute("echo", "/", "127.0.0.1:1", echoID), "")
			t0 := time.Now()
			_, cfg, err := newGateway(t, dir, text)
			if err == nil {
				t.Fatalf("gateway.New succeeded; want an error containing %q", tc.wantErr)
			}
			// Positioned: file:line:col: path: problem.
			var es config.Errors
			if !errors.As(err, &es) || es[0].Line == 0 {
				t.Errorf("error is not positioned in the config file: %v", err)
			}
			for _, want := range tc.wantErr {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q\ndoes not contain %q", err, want)
				}
			}
			if strings.Contains(err.Error(), "identity: identity:") {
				t.Errorf("error repeats its prefix: %q", err)
			}
			if d := time.Since(t0); d > 5*time.Second {
				t.Errorf("gateway.New took %v to fail; a missing socket must fail fast", d)
			}
			if tc.checkToo {
				_, cerr := gateway.Check(cfg)
				if cerr == nil {
					t.Fatalf("gateway.Check passed what gateway.New refused: %v", err)
				}
				// x509's "current time ... is after ..." names the second
				// each was checked in, which may differ.
				if withoutNow(cerr.Error()) != withoutNow(err.Error()) {
					t.Errorf("gateway.Check reports\n  %v\nbut gateway.New reports\n  %v", cerr, err)
				}
			}
		})
	}
}

var x509Now = regexp.MustCompile(`current time \S+ is`)

func withoutNow(s string) string { return x509Now.ReplaceAllString(s, "current time T is") }

func mustRead(t testing.TB, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestUpstreamIdentityIsVerified: an upstream is reached only when it presents
// a currently valid SVID, from a CA the gateway trusts for its trust domain,
// with an ID the route allows; anything else is a 502 (never a request sent
// to an impostor).
func TestUpstreamIdentityIsVerified(t *testing.T) {
	t.Parallel()
	ca := identitytest.NewCA(t, "example.org")
	foreign := identitytest.NewCA(t, "example.org") // another CA claiming our trust domain
	dir := t.TempDir()
	roots := ingressCA(t, dir)
	writeSVID(t, dir, "gateway", identitytest.SVID(t, ca, gatewayID))
	writeFile(t, dir, "ca.crt", ca.RootPEM())

	upstreams := []struct {
		name       string
		svid       *x509svid.SVID
		wantStatus int
	}{
		{name: "valid", svid: identitytest.SVID(t, ca, echoID), wantStatus: http.StatusOK},
		{name: "expired", svid: identitytest.ExpiredSVID(t, ca, echoID), wantStatus: http.StatusBadGateway},
		{name: "wrong-id", svid: identitytest.SVID(t, ca, "spiffe://example.org/ns/demo/sa/impostor"), wantStatus: http.StatusBadGateway},
		{name: "foreign-ca", svid: identitytest.SVID(t, foreign, echoID), wantStatus: http.StatusBadGateway},
	}
	var routes string
	for _, u := range upstreams {
		e := startEcho(t, identitytest.StaticSource(t, u.svid, ca.Bundle()), gatewayID)
		routes += echoRoute(u.name, "/"+u.name, e.Addr(), echoID)
	}
	gw := startGateway(t, dir, gatewayYAML("  files: {cert: gateway.crt, key: gateway.key, bundle: ca.crt}", routes, ""))
	base := "https://" + gw.IngressAddr().String()
	for _, h2 := range []bool{false, true} {
		c := httpsClient(t, roots, h2)
		for _, u := range upstreams {
			t.Run(fmt.Sprintf("%s/h2=%v", u.name, h2), func(t *testing.T) {
				status, body := get(t, c, base+"/"+u.name)
				if status != u.wantStatus {
					t.Fatalf("status %d, want %d: %s", status, u.wantStatus, body)
				}
			})
		}
	}
}

// TestFederatedStaticBundle: with the files source, a static bundle file per
// foreign trust domain lets the gateway verify upstreams and mesh callers of
// that domain; without it they are refused.
func TestFederatedStaticBundle(t *testing.T) {
	t.Parallel()
	const (
		partnerUpstream = "spiffe://partner.test/api"
		partnerCaller   = "spiffe://partner.test/client"
	)
	ours := identitytest.NewCA(t, "example.org")
	partner := identitytest.NewCA(t, "partner.test")
	// The partner's upstream trusts our trust domain (its side of the federation).
	echo := startEcho(t, identitytest.StaticSource(t, identitytest.SVID(t, partner, partnerUpstream), partner.Bundle(), ours.Bundle()), gatewayID)

	for _, tc := range []struct {
		name       string
		federated  string
		wantStatus int
	}{
		{name: "with the partner bundle", federated: ", federatedBundles: {partner.test: partner.crt}", wantStatus: http.StatusOK},
		{name: "without it", wantStatus: http.StatusBadGateway},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			roots := ingressCA(t, dir)
			writeSVID(t, dir, "gateway", identitytest.SVID(t, ours, gatewayID))
			writeFile(t, dir, "ca.crt", ours.RootPEM())
			writeFile(t, dir, "partner.crt", partner.RootPEM())
			mesh := "  mesh: {listen: \"127.0.0.1:0\", allowedCallers: [\"spiffe://partner.test/*\"]}\n"
			gw := startGateway(t, dir, gatewayYAML("  files: {cert: gateway.crt, key: gateway.key, bundle: ca.crt"+tc.federated+"}",
				echoRoute("partner", "/", echo.Addr(), "spiffe://partner.test"), mesh))

			status, body := get(t, httpsClient(t, roots, true), "https://"+gw.IngressAddr().String()+"/x")
			if status != tc.wantStatus {
				t.Fatalf("ingress → partner upstream: status %d, want %d: %s", status, tc.wantStatus, body)
			}

			// A partner workload calling the mesh listener with its SVID.
			caller := identitytest.StaticSource(t, identitytest.SVID(t, partner, partnerCaller), partner.Bundle(), ours.Bundle())
			cfg := identity.ClientTLSConfig(caller, identitytest.Matcher(t, gatewayID), identity.ClientOptions{})
			tr := &http.Transport{TLSClientConfig: cfg, ForceAttemptHTTP2: true, Proxy: nil}
			defer tr.CloseIdleConnections()
			resp, err := (&http.Client{Transport: tr, Timeout: 10 * time.Second}).Get("https://" + gw.MeshAddr().String() + "/x")
			if tc.wantStatus != http.StatusOK {
				if err == nil {
					resp.Body.Close()
					t.Fatalf("a partner caller got through the mesh listener (%d) without the partner bundle", resp.StatusCode)
				}
				return
			}
			if err != nil {
				t.Fatalf("partner caller → mesh listener: %v", err)
			}
			defer resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				b, _ := io.ReadAll(resp.Body)
				t.Fatalf("partner caller → mesh listener: status %d: %s", resp.StatusCode, b)
			}
		})
	}
}
