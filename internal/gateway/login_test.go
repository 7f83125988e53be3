package gateway_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/oauth2-proxy/mockoidc"

	"tollgate.dev/tollgate/internal/config"
	"tollgate.dev/tollgate/internal/gateway"
	"tollgate.dev/tollgate/internal/policy/policycli"
)

var (
	mockAlice = &mockoidc.MockUser{Subject: "alice", Email: "alice@example.org", EmailVerified: true,
		PreferredUsername: "alice", Groups: []string{"dev", "admins"}}
	mockBob = &mockoidc.MockUser{Subject: "bob", Email: "bob@example.org", EmailVerified: true,
		PreferredUsername: "bob", Groups: []string{"dev"}}
)

// loginPolicies: bearer tokens of issuer are accepted next to sessions; /admin is
// for members of the admins group (whichever way they came in), the rest for anyone
// who got past authentication.
func loginPolicies(jwks string) string {
	return fmt.Sprintf(`apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: {name: jwt, namespace: istio-system}
spec:
  jwtRules:
  - issuer: %q
    audiences: [%q]
    jwks: '%s'
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: admins-only, namespace: istio-system}
spec:
  action: ALLOW
  rules:
  - to: [{operation: {notPaths: ["/admin", "/admin/*"]}}]
  - to: [{operation: {paths: ["/admin", "/admin/*"]}}]
    when:
    - key: request.auth.claims[groups]
      values: ["admins"]
`, issuer, audience, jwks)
}

// mockIdP is mockoidc on loopback; its handlers are serialized (its stores are not
// synchronized) and its discovery names client_secret_post.
type mockIdP struct {
	m  *mockoidc.MockOIDC
	mu sync.Mutex
}

func startMockIdP(t *testing.T) *mockIdP {
	t.Helper()
	m, err := mockoidc.NewServer(nil)
	if err != nil {
		t.Fatal(err)
	}
	idp := &mockIdP{m: m}
	err = m.AddMiddleware(func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			idp.mu.Lock()
			defer idp.mu.Unlock()
			if r.URL.Path != mockoidc.DiscoveryEndpoint {
				next.ServeHTTP(w, r)
				return
			}
			rec := httptest.NewRecorder()
			next.ServeHTTP(rec, r)
			var doc map[string]any
			if err := json.Unmarshal(rec.Body.Bytes(), &doc); err != nil {
				http.Error(w, err.Error(), 500)
				return
			}
			doc["token_endpoint_auth_methods_supported"] = []string{"client_secret_post"}
			w.Header().Set("Content-Type", "application/json")
			json.NewEncoder(w).Encode(doc)
		})
	})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Start(ln, nil); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Shutdown() })
	return idp
}

func (idp *mockIdP) queue(u *mockoidc.MockUser) {
	idp.mu.Lock()
	defer idp.mu.Unlock()
	idp.m.QueueUser(u)
}

type loginEnv struct {
	t        *testing.T
	dir      string
	gw       *gateway.Gateway
	base     string
	pool     *x509.CertPool
	key      *rsa.PrivateKey
	idp      *mockIdP
	keyFiles [2]string
}

func writeKey(t *testing.T, file string, key []byte) {
	t.Helper()
	if err := os.WriteFile(file, []byte(base64.StdEncoding.EncodeToString(key)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
}

func randomKey(t *testing.T) []byte {
	k := make([]byte, 32)
	if _, err := rand.Read(k); err != nil {
		t.Fatal(err)
	}
	return k
}

// startLoginEnv runs the real gateway (config file, files identity, policy
// directory) with the echo upstream behind two routes on 127.0.0.1: "/" bound to
// the mockoidc login, "/open" without login.
func startLoginEnv(t *testing.T) *loginEnv {
	t.Helper()
	idp := startMockIdP(t)
	dir := t.TempDir()
	pki, echo, log := startPKIAndEcho(t, dir, map[string]string{"gateway": gatewayID, "echo": echoID})
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	e := &loginEnv{t: t, dir: dir, key: key, idp: idp,
		keyFiles: [2]string{filepath.Join(dir, "session-1.key"), filepath.Join(dir, "session-2.key")}}
	k0 := randomKey(t)
	writeKey(t, e.keyFiles[0], k0)
	writeKey(t, e.keyFiles[1], k0)
	os.WriteFile(filepath.Join(dir, "client-secret"), []byte(idp.m.ClientSecret+"\n"), 0o600)
	os.MkdirAll(filepath.Join(dir, "policies"), 0o755)
	os.WriteFile(filepath.Join(dir, "policies", "policy.yaml"), []byte(loginPolicies(jwksFor(&key.PublicKey, "k1"))), 0o644)
	cfgText := fmt.Sprintf(`apiVersion: tollgate.dev/v1
kind: Gateway
identity:
  files: {cert: pki/gateway.crt, key: pki/gateway.key, bundle: pki/ca.crt}
ingress:
  listen: 127.0.0.1:0
  tls:
    certificates: [{cert: pki/tls.crt, key: pki/tls.key}]
  routes:
  - name: app
    host: 127.0.0.1
    login: main
    upstream: {url: "https://%[1]s", spiffeIDs: ["%[2]s"]}
  - name: open
    host: 127.0.0.1
    pathPrefix: /open
    upstream: {url: "https://%[1]s", spiffeIDs: ["%[2]s"]}
oidc:
  providers:
  - name: main
    issuer: %[3]s
    clientID: %[4]s
    clientSecretFile: client-secret
    scopes: [openid, email, profile, groups]
  sessionKeyFiles: [session-1.key, session-2.key]
admin: {listen: "127.0.0.1:0"}
audit: {sinks: [{file: audit.log}]}
policy: {files: [policies/]}
`, echo.Addr(), echoID, idp.m.Issuer(), idp.m.ClientID)
	file := filepath.Join(dir, "gateway.yaml")
	os.WriteFile(file, []byte(cfgText), 0o644)
	cfg, err := config.Load(file)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := gateway.Check(cfg); err != nil {
		t.Fatalf("check: %v", err)
	}
	gw, err := gateway.New(context.Background(), cfg, gateway.Options{Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	if err := gw.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { gw.Shutdown(context.Background()) })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, l := range gw.Logins() {
		if err := l.WaitReady(ctx); err != nil {
			t.Fatal(err)
		}
	}
	e.gw = gw
	e.base = "https://" + gw.IngressAddr().String()
	pem, _ := os.ReadFile(pki.CA)
	e.pool = x509.NewCertPool()
	e.pool.AppendCertsFromPEM(pem)
	return e
}

// browser is a cookie-keeping client that does not follow redirects itself.
type browser struct {
	e *loginEnv
	c *http.Client
}

func (e *loginEnv) browser(h2 bool) *browser {
	jar, _ := cookiejar.New(nil)
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: e.pool}, ForceAttemptHTTP2: h2}
	if !h2 {
		tr.TLSNextProto = map[string]func(string, *tls.Conn) http.RoundTripper{}
	}
	e.t.Cleanup(tr.CloseIdleConnections)
	return &browser{e: e, c: &http.Client{Transport: tr, Jar: jar, Timeout: 10 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}}
}

// do sends one request; accept "text/html" makes it a page navigation.
func (b *browser) do(method, u, accept string, hdr ...string) reply {
	b.e.t.Helper()
	if strings.HasPrefix(u, "/") {
		u = b.e.base + u
	}
	req, _ := http.NewRequest(method, u, nil)
	if accept != "" {
		req.Header.Set("Accept", accept)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Add(hdr[i], hdr[i+1])
	}
	resp, err := b.c.Do(req)
	if err != nil {
		b.e.t.Fatalf("%s %s: %v", method, u, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	r := reply{status: resp.StatusCode, header: resp.Header, body: string(body)}
	if r.status == 200 {
		json.Unmarshal(body, &r.echo)
	}
	return r
}

// login walks the redirects of a login as user, starting at path, and returns the
// page the browser lands on.
func (b *browser) login(user *mockoidc.MockUser, path string) reply {
	b.e.t.Helper()
	b.e.idp.queue(user)
	u := path
	for range 6 {
		r := b.do("GET", u, "text/html")
		if r.status != http.StatusFound {
			return r
		}
		loc, _ := url.Parse(r.header.Get("Location"))
		if !loc.IsAbs() {
			loc = must(url.Parse(b.e.base)).ResolveReference(loc)
		}
		u = loc.String()
	}
	b.e.t.Fatalf("login as %s: too many redirects", user.Subject)
	return reply{}
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

func hdr(r reply, name string) string { return strings.Join(r.echo.Headers[name], ",") }

// loginProtocols are the HTTP versions a browser may log in with.
var loginProtocols = []struct {
	name string
	h2   bool
}{{"HTTP/2", true}, {"HTTP/1.1", false}}

func TestBrowserLoginThroughGateway(t *testing.T) {
	e := startLoginEnv(t)
	for _, proto := range loginProtocols {
		t.Run(proto.name, func(t *testing.T) {
			b := e.browser(proto.h2)
			u := must(url.Parse(e.base))
			b.c.Jar.SetCookies(u, []*http.Cookie{{Name: "app", Value: "kept"}})

			// Unauthenticated: a page load goes to the provider, anything else gets 401.
			r := b.do("GET", "/app?x=1", "text/html")
			if r.status != http.StatusFound || !strings.HasPrefix(r.header.Get("Location"), e.idp.m.AuthorizationEndpoint()) {
				t.Fatalf("navigation: %d to %q, want 302 to the provider", r.status, r.header.Get("Location"))
			}
			if got, want := must(url.Parse(r.header.Get("Location"))).Query().Get("redirect_uri"), e.base+"/.tollgate/main/oidc/callback"; got != want {
				t.Errorf("redirect_uri = %q, want %q", got, want)
			}
			for _, c := range []struct{ method, accept string }{{"GET", "application/json"}, {"POST", "text/html"}, {"GET", ""}} {
				r := b.do(c.method, "/app", c.accept)
				if r.status != http.StatusUnauthorized || !strings.Contains(r.body, `"requestId"`) {
					t.Errorf("%s Accept %q: %d %s, want 401 JSON with a request id", c.method, c.accept, r.status, r.body)
				}
			}

			// alice logs in and comes back to the page she asked for.
			r = b.login(mockAlice, "/app?x=1")
			if r.status != 200 || r.echo.Path != "/app" || r.echo.Query != "x=1" {
				t.Fatalf("after login: %d %s", r.status, r.body)
			}
			r = b.do("GET", "/app", "application/json", "X-Tollgate-User", "mallory", "X-Tollgate-Groups", "admins")
			want := map[string]string{
				"X-Tollgate-User": "alice", "X-Tollgate-Groups": "dev,admins", "X-Tollgate-Email": "alice@example.org",
				"X-Tollgate-Subject": e.idp.m.Issuer() + "/alice", "Cookie": "app=kept",
			}
			got := map[string]string{}
			for k := range want {
				got[k] = hdr(r, k)
			}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("upstream saw (-want +got):\n%s", diff)
			}
			if r := b.do("GET", "/admin/panel", "text/html"); r.status != 200 {
				t.Errorf("alice on /admin: %d %s", r.status, r.body)
			}
			// A route without login on the same host never receives the session either.
			if r := b.do("GET", "/open", "", "X-Tollgate-User", "mallory"); r.status != 200 || hdr(r, "Cookie") != "app=kept" || hdr(r, "X-Tollgate-User") != "" {
				t.Errorf("open route: %d cookie %q user %q", r.status, hdr(r, "Cookie"), hdr(r, "X-Tollgate-User"))
			}

			// A GET only shows the sign-out form (logout CSRF): the session stays.
			r = b.do("GET", "/.tollgate/main/oidc/logout", "text/html")
			if r.status != http.StatusOK {
				t.Fatalf("logout page: %d", r.status)
			}
			if r := b.do("GET", "/app", "application/json"); r.status != http.StatusOK {
				t.Fatalf("a GET of the logout address signed alice out: %d", r.status)
			}
			// A same-origin POST clears the session: the next page load is sent to log in again.
			r = b.do("POST", "/.tollgate/main/oidc/logout", "text/html", "Sec-Fetch-Site", "same-origin")
			if r.status != http.StatusSeeOther {
				t.Fatalf("logout: %d", r.status)
			}
			if r := b.do("GET", "/app", "text/html"); r.status != http.StatusFound {
				t.Errorf("after logout: %d, want 302", r.status)
			}

			// bob: authenticated, but not in admins.
			if r := b.login(mockBob, "/app"); r.status != 200 || hdr(r, "X-Tollgate-User") != "bob" {
				t.Fatalf("bob: %d %s", r.status, r.body)
			}
			if r := b.do("GET", "/admin/panel", "text/html"); r.status != http.StatusForbidden {
				t.Errorf("bob on /admin: %d, want 403", r.status)
			}
		})
	}
	// Per protocol: alice and bob logged in, alice logged out.
	resp, err := http.Get("http://" + e.gw.AdminAddr() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	metrics, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{
		`tollgate_login_events_total{event="login",provider="main",result="success"} 4`,
		`tollgate_login_events_total{event="logout",provider="main",result="success"} 2`,
		`tollgate_login_provider_ready{provider="main"} 1`,
	} {
		if !strings.Contains(string(metrics), want) {
			t.Errorf("metrics lack %s", want)
		}
	}
}

// TestLoginTabsThroughGateway: two logins under way in one browser (two tabs
// that met the login before either came back) both complete through the
// gateway, in the order opposite to their starts, each back at its own page;
// meanwhile the cookies of the logins under way reach no upstream.
func TestLoginTabsThroughGateway(t *testing.T) {
	e := startLoginEnv(t)
	for _, proto := range loginProtocols {
		t.Run(proto.name, func(t *testing.T) {
			b := e.browser(proto.h2)
			// follow answers one redirect of the login and returns where it points.
			follow := func(u string, want int) string {
				t.Helper()
				r := b.do("GET", u, "text/html")
				if r.status != want {
					t.Fatalf("GET %.60s: %d %s, want %d", u, r.status, r.body, want)
				}
				return r.header.Get("Location")
			}
			var callbacks []string
			for _, tab := range []string{"/app?tab=1", "/app?tab=2"} {
				auth := follow(tab, http.StatusFound)
				if !strings.HasPrefix(auth, e.idp.m.AuthorizationEndpoint()) {
					t.Fatalf("%s: redirected to %q, want the provider", tab, auth)
				}
				e.idp.queue(mockAlice)
				callbacks = append(callbacks, follow(auth, http.StatusFound))
			}
			if r := b.do("GET", "/open", ""); r.status != 200 || strings.Contains(hdr(r, "Cookie"), "tollgate") {
				t.Errorf("open route with two logins under way: %d, upstream got cookies %q", r.status, hdr(r, "Cookie"))
			}
			for i := len(callbacks) - 1; i >= 0; i-- {
				want := fmt.Sprintf("/app?tab=%d", i+1)
				if got := follow(callbacks[i], http.StatusFound); got != want {
					t.Fatalf("callback of tab %d: back to %q, want %q", i+1, got, want)
				}
				if r := b.do("GET", want, "text/html"); r.status != 200 || r.echo.Query != fmt.Sprintf("tab=%d", i+1) || hdr(r, "X-Tollgate-User") != "alice" {
					t.Errorf("tab %d after its login: %d %s", i+1, r.status, r.body)
				}
			}
		})
	}
}

func TestBearerTokensOnALoginRoute(t *testing.T) {
	e := startLoginEnv(t)
	b := e.browser(true)
	env := &env{t: t}
	alice := env.token(claimsFor("alice", "admins"), e.key)
	bob := env.token(claimsFor("bob", "dev"), e.key)
	tests := []struct {
		name, path, token string
		want              int
	}{
		{"bearer instead of a session", "/app", alice, 200},
		{"bearer claims reach policy", "/admin/x", alice, 200},
		{"bearer without the group", "/admin/x", bob, 403},
		{"invalid bearer is not replaced by a login", "/app", "garbage", 401},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := b.do("GET", tc.path, "text/html", "Authorization", "Bearer "+tc.token)
			if r.status != tc.want {
				t.Fatalf("status %d, want %d: %s", r.status, tc.want, r.body)
			}
			if r.status == 200 && hdr(r, "X-Tollgate-User") != "" {
				t.Errorf("bearer request got session claim headers: %q", hdr(r, "X-Tollgate-User"))
			}
		})
	}
}

func TestReservedPathsNeverReachUpstream(t *testing.T) {
	e := startLoginEnv(t)
	b := e.browser(true)
	tests := []struct {
		path string
		want int
	}{
		{"/.tollgate/", 404},
		{"/.tollgate", 404},
		{"/.tollgate/other/oidc/callback", 404},
		{"/.tollgate/main/oidc/nope", 404},
		{"/.tollgate/main/oidc/signed-out", 200},
		{"//.tollgate/main/oidc/signed-out", 200}, // merged to the reserved path, not sent on
		{"/x/../.tollgate/main/oidc/nope", 404},
		{"/.tollgate/main/oidc/callback?code=x&state=y", 400}, // no login state cookie
	}
	for _, tc := range tests {
		t.Run(tc.path, func(t *testing.T) {
			r := b.do("GET", tc.path, "text/html")
			if r.status != tc.want {
				t.Errorf("status %d, want %d: %s", r.status, tc.want, r.body)
			}
			if strings.Contains(r.body, "tollgate-dev-echo") {
				t.Errorf("reached the upstream: %s", r.body)
			}
		})
	}
	// The callback's code and state never reach the audit log.
	e.gw.Shutdown(context.Background())
	log, _ := os.ReadFile(filepath.Join(e.dir, "audit.log"))
	if bytes.Contains(log, []byte("code=x")) || bytes.Contains(log, []byte("state=y")) || !bytes.Contains(log, []byte("/.tollgate/main/oidc/callback")) {
		t.Errorf("audit log:\n%s", log)
	}
}

func TestSessionKeyRotationOnReload(t *testing.T) {
	e := startLoginEnv(t)
	old := e.browser(true)
	if r := old.login(mockAlice, "/app"); r.status != 200 {
		t.Fatalf("login: %d", r.status)
	}
	// A new key in front: it seals from now on; the old one still opens.
	writeKey(t, e.keyFiles[0], randomKey(t))
	if err := e.gw.Reload(); err != nil {
		t.Fatal(err)
	}
	if r := old.do("GET", "/app", "text/html"); r.status != 200 {
		t.Fatalf("old session after adding a key: %d", r.status)
	}
	fresh := e.browser(true)
	if r := fresh.login(mockBob, "/app"); r.status != 200 {
		t.Fatalf("login with the new key: %d", r.status)
	}
	// The old key dropped: its sessions end, the new key's stay.
	newKey, _ := os.ReadFile(e.keyFiles[0])
	os.WriteFile(e.keyFiles[1], newKey, 0o600)
	if err := e.gw.Reload(); err != nil {
		t.Fatal(err)
	}
	if r := old.do("GET", "/app", "text/html"); r.status != http.StatusFound {
		t.Errorf("session sealed with a dropped key: %d, want 302", r.status)
	}
	if r := fresh.do("GET", "/app", "text/html"); r.status != 200 {
		t.Errorf("session sealed with the new key: %d", r.status)
	}
	// A broken key file is refused and the keys in use stay.
	os.WriteFile(e.keyFiles[0], []byte("short"), 0o600)
	if err := e.gw.Reload(); err == nil || !strings.Contains(err.Error(), "session key") {
		t.Errorf("reload with a bad key file: %v", err)
	}
	if r := fresh.do("GET", "/app", "text/html"); r.status != 200 {
		t.Errorf("after a refused reload: %d", r.status)
	}
}

// TestOIDCExamplePolicies runs the oidc example's policy tests (the format of
// `gateway policy test`).
func TestOIDCExamplePolicies(t *testing.T) {
	var out bytes.Buffer
	passed, failed, err := policycli.Test([]string{filepath.Join("..", "..", "examples", "oidc", "policy-tests")}, &out)
	if err != nil || failed > 0 || passed < 4 {
		t.Fatalf("passed %d failed %d err %v:\n%s", passed, failed, err, out.String())
	}
}
