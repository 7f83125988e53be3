//go:build e2e

// The whole browser-login story through the real gateway, as examples/oidc sets it
// up: a real, certified OpenID provider (oidc-provider from test/oidcprovider), a
// real browser (Debian's Chromium over CDP) and the echo upstream over mesh mTLS.
// Setup: scripts/oidc/install.sh. Run: go test -tags e2e -run E2E ./internal/gateway/
// Skips when chromium or the provider's node_modules are missing, unless
// TOLLGATE_REQUIRE_E2E is set (then it fails).

package gateway_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"tollgate.dev/tollgate/internal/config"
	"tollgate.dev/tollgate/internal/dev"
	"tollgate.dev/tollgate/internal/gateway"
	"tollgate.dev/tollgate/internal/identity"
	"tollgate.dev/tollgate/internal/oidc/oidctest"
	"tollgate.dev/tollgate/internal/testkit"
)

// spkiOf is the base64 SHA-256 of the certificate's public key, which Chromium is
// told to trust (and nothing else).
func spkiOf(t *testing.T, certFile string) string {
	b, err := os.ReadFile(certFile)
	if err != nil {
		t.Fatal(err)
	}
	blk, _ := pem.Decode(b)
	c, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(c.RawSubjectPublicKeyInfo)
	return base64.StdEncoding.EncodeToString(sum[:])
}

// copyOIDCExample copies examples/oidc (config and policies) into dir, with what
// run.sh would make: PKI and secrets.
func copyOIDCExample(t *testing.T, dir, secret string) *dev.PKI {
	src := filepath.Join("..", "..", "examples", "oidc")
	for _, f := range []string{"gateway.yaml", "policies/app.yaml"} {
		b, err := os.ReadFile(filepath.Join(src, f))
		if err != nil {
			t.Fatal(err)
		}
		os.MkdirAll(filepath.Dir(filepath.Join(dir, f)), 0o755)
		os.WriteFile(filepath.Join(dir, f), b, 0o644)
	}
	pki, err := dev.WritePKI(filepath.Join(dir, "pki"), "example.org", time.Hour, map[string]string{"gateway": gatewayID, "echo": echoID})
	if err != nil {
		t.Fatal(err)
	}
	os.MkdirAll(filepath.Join(dir, "secrets"), 0o700)
	os.WriteFile(filepath.Join(dir, "secrets", "client-secret"), []byte(secret), 0o600)
	os.WriteFile(filepath.Join(dir, "secrets", "session.key"), []byte(base64.StdEncoding.EncodeToString(randomKey(t))), 0o600)
	return pki
}

// oidcExample is examples/oidc running for one test: the real provider, the
// echo upstream over mesh mTLS, the gateway with the example's configuration
// (and this test's addresses), and headless Chromium, started, trusting the
// gateway's certificate. Everything stops when the test ends.
type oidcExample struct {
	dir, secret string
	gw          string // the gateway's https://localhost:<port>
	issuer      string
	g           *gateway.Gateway
	bctx        context.Context // the browser's first tab
}

func startOIDCExample(t *testing.T) *oidcExample {
	t.Helper()
	chromium := oidctest.Chromium(t)
	provDir := oidctest.ProviderDir(t)

	dir := t.TempDir()
	secret := base64.RawURLEncoding.EncodeToString(randomKey(t))
	pki := copyOIDCExample(t, dir, secret)
	// The provider must know the gateway's redirect URI before the gateway
	// (which needs the issuer) starts.
	_, port, _ := net.SplitHostPort(testkit.FreeAddrs(t, 1)[0])
	gw := "https://localhost:" + port
	issuer := oidctest.StartProvider(t, provDir,
		"REDIRECT_URIS="+gw+"/.tollgate/local/oidc/callback",
		"POST_LOGOUT_REDIRECT_URIS="+gw+"/.tollgate/local/oidc/signed-out",
		"CLIENT_ID=tollgate", "CLIENT_SECRET="+secret, "TOKEN_TTL=300")

	log := slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
	echoSrc, err := identity.NewFiles(identity.FilesOptions{Cert: pki.SVIDs[echoID][0], Key: pki.SVIDs[echoID][1], Bundle: pki.CA})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { echoSrc.Close() })
	onlyGW, _ := identity.ParseMatcher([]string{gatewayID})
	echo, err := dev.StartEcho("127.0.0.1:0", echoSrc, onlyGW, log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { echo.Close() })

	// The example's configuration, with this test's addresses.
	file := filepath.Join(dir, "gateway.yaml")
	b, _ := os.ReadFile(file)
	cfgText := strings.NewReplacer(
		"listen: 127.0.0.1:8443", "listen: 127.0.0.1:"+port,
		"http://127.0.0.1:9000", issuer,
		"https://127.0.0.1:9443", "https://"+echo.Addr(),
		"listen: 127.0.0.1:9901", "listen: 127.0.0.1:0",
		"- stdout: true", "- file: audit.log",
	).Replace(string(b))
	os.WriteFile(file, []byte(cfgText), 0o644)
	cfg, err := config.Load(file)
	if err != nil {
		t.Fatal(err)
	}
	g, err := gateway.New(context.Background(), cfg, gateway.Options{Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	if err := g.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { g.Shutdown(context.Background()) })
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	t.Cleanup(cancel)
	for _, l := range g.Logins() {
		if err := l.WaitReady(ctx); err != nil {
			t.Fatal(err)
		}
	}

	bctx := oidctest.Browser(t, ctx, chromium, spkiOf(t, pki.TLSCert))
	if err := chromedp.Do(bctx); err != nil {
		t.Fatalf("chromium: %v", err)
	}
	return &oidcExample{dir: dir, secret: secret, gw: gw, issuer: issuer, g: g, bctx: bctx}
}

func TestE2EGatewayBrowserLogin(t *testing.T) {
	x := startOIDCExample(t)
	dir, secret, gw, issuer, g, bctx := x.dir, x.secret, x.gw, x.issuer, x.g, x.bctx
	start := time.Now()

	// page reads what the browser shows: the echo's JSON, or the gateway's JSON error.
	page := func(url string) (dev.EchoResponse, string) {
		t.Helper()
		err := chromedp.Do(bctx, chromedp.Navigate(url), chromedp.WaitVisible(chromedp.CSS("pre")))
		text, err2 := chromedp.Run(bctx, chromedp.Text(chromedp.CSS("pre")))
		if err = errors.Join(err, err2); err != nil {
			t.Fatalf("%s: %v", url, err)
		}
		var e dev.EchoResponse
		json.Unmarshal([]byte(text), &e)
		return e, text
	}
	loginAs := func(user string) dev.EchoResponse {
		t.Helper()
		steps := append([]chromedp.Action[chromedp.Void]{chromedp.Navigate(gw + "/app?from=e2e")}, oidctest.SignIn(user)...)
		err := chromedp.Do(bctx, append(steps, chromedp.WaitVisible(chromedp.CSS("pre")))...)
		text, err2 := chromedp.Run(bctx, chromedp.Text(chromedp.CSS("pre")))
		if err = errors.Join(err, err2); err != nil {
			t.Fatalf("login as %s: %v", user, err)
		}
		var e dev.EchoResponse
		if err := json.Unmarshal([]byte(text), &e); err != nil {
			t.Fatalf("login as %s landed on %q", user, text)
		}
		return e
	}
	h := func(e dev.EchoResponse, k string) string { return strings.Join(e.Headers[k], ",") }

	// alice: protected page → provider login form → consent → callback → session
	// cookie → the page, and the upstream sees who she is.
	e := loginAs("alice")
	if e.Path != "/app" || e.Query != "from=e2e" {
		t.Errorf("after login upstream got %s?%s, want /app?from=e2e", e.Path, e.Query)
	}
	for k, want := range map[string]string{
		"X-Tollgate-User": "alice", "X-Tollgate-Groups": "dev,admins",
		"X-Tollgate-Email": "alice@example.org", "X-Tollgate-Subject": issuer + "/alice",
	} {
		if got := h(e, k); got != want {
			t.Errorf("upstream saw %s %q, want %q", k, got, want)
		}
	}
	if c := h(e, "Cookie"); strings.Contains(c, "tollgate") {
		t.Errorf("upstream received the gateway's cookies: %q", c)
	}
	if e.Caller != gatewayID {
		t.Errorf("upstream's caller %q, want the gateway's SVID", e.Caller)
	}
	// The policy on request.auth.claims[groups] lets alice in.
	if e, text := page(gw + "/admin/panel"); e.Path != "/admin/panel" {
		t.Errorf("alice on /admin: %s", text)
	}
	t.Logf("alice logged in and reached /admin in %v", time.Since(start).Round(time.Millisecond))

	// Logout ends both sessions: the provider's and the gateway's.
	if err := chromedp.Do(bctx, oidctest.SignOut(gw+"/.tollgate/local/oidc/logout", gw+"/app")...); err != nil {
		t.Fatalf("logout: %v", err)
	}

	// bob is authenticated but not in admins: the app yes, /admin no.
	e = loginAs("bob")
	if got := h(e, "X-Tollgate-User") + " " + h(e, "X-Tollgate-Groups"); got != "bob dev" {
		t.Errorf("bob: upstream saw %q, want %q", got, "bob dev")
	}
	if _, text := page(gw + "/admin/panel"); !strings.Contains(text, `"access denied"`) {
		t.Errorf("bob on /admin: %s, want the gateway's 403", text)
	}
	t.Logf("whole story in %v", time.Since(start).Round(time.Millisecond))

	// The audit log has the decisions with the session users' identities.
	g.Shutdown(context.Background())
	audit, _ := os.ReadFile(filepath.Join(dir, "audit.log"))
	type event struct {
		Path   string `json:"path"`
		Status int    `json:"status"`
		Auth   *struct {
			Principal string `json:"principal"`
		} `json:"auth"`
	}
	var got []string
	for line := range bytes.SplitSeq(audit, []byte("\n")) {
		var ev event
		if json.Unmarshal(line, &ev) == nil && ev.Path == "/admin/panel" && ev.Auth != nil {
			got = append(got, fmt.Sprintf("%s %d", ev.Auth.Principal, ev.Status))
		}
	}
	if want := []string{issuer + "/alice 200", issuer + "/bob 403"}; strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("audit of /admin/panel: %q, want %q", got, want)
	}
	if bytes.Contains(audit, []byte(secret)) {
		t.Error("the client secret reached the audit log")
	}
}
