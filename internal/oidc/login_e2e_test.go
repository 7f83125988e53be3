//go:build e2e

// End-to-end login with a real, certified OpenID provider (oidc-provider on npm)
// and a real browser (Debian's Chromium, driven over CDP by chromedp).
// Setup: scripts/oidc/install.sh. Run: go test -tags e2e -run E2E ./internal/oidc/
// Skips when chromium or the provider's node_modules are missing, unless
// TOLLGATE_REQUIRE_E2E is set (then it fails).

package oidc

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"fmt"
	"html"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"tollgate.dev/tollgate/internal/oidc/oidctest"
	"tollgate.dev/tollgate/internal/testkit"
)

func TestE2EBrowserLogin(t *testing.T) {
	chromium := oidctest.Chromium(t)
	provDir := oidctest.ProviderDir(t)

	// The gateway's address comes first: the provider must know its redirect URIs.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gw := "https://" + ln.Addr().String()
	secret := randomToken()
	issuer := oidctest.StartProvider(t, provDir,
		"REDIRECT_URIS="+gw+"/.tollgate/oidc/callback",
		"POST_LOGOUT_REDIRECT_URIS="+gw+"/.tollgate/oidc/signed-out",
		"CLIENT_ID=tollgate", "CLIENT_SECRET="+secret, "TOKEN_TTL=300")

	keys, err := NewSessionKeys(testKey(t))
	if err != nil {
		t.Fatal(err)
	}
	elog := &errorLog{}
	l, err := NewLogin(LoginConfig{
		Provider: ProviderConfig{
			Name: "e2e", Issuer: issuer, ClientID: "tollgate", ClientSecretFile: writeSecret(t, secret),
			Scopes: []string{"openid", "email", "profile", "groups", "offline_access"},
			// offline_access (a refresh token) is only granted on an explicit consent prompt.
			ExtraAuthParams:        map[string]string{"prompt": "consent"},
			PostLogoutRedirectPath: "/.tollgate/oidc/signed-out",
		},
		Keys:         keys,
		AllowedHosts: []string{ln.Addr().String()},
		Logger:       slog.New(elog),
	})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	if err := l.WaitReady(ctx); err != nil {
		t.Fatal(err)
	}

	// The gateway: reserved endpoints, then the session, then a tiny upstream that
	// shows who it was told the user is and which cookies reached it.
	cert := testkit.NewCA(t).Issue(t, "127.0.0.1")
	// Chromium is told to trust the certificate by the SHA-256 of its public key.
	spkiSum := sha256.Sum256(cert.Leaf.RawSubjectPublicKeyInfo)
	spki := base64.StdEncoding.EncodeToString(spkiSum[:])
	srv := &http.Server{
		TLSConfig:         &tls.Config{Certificates: []tls.Certificate{cert}},
		ReadHeaderTimeout: 10 * time.Second,
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if l.ServeReserved(w, r) {
				return
			}
			a, out := l.Authenticate(w, r)
			if out != Authenticated {
				l.Challenge(w, r, out)
				return
			}
			l.StripCookies(r.Header)
			h := ClaimHeaders(a)
			w.Header().Set("Content-Type", "text/html; charset=utf-8")
			fmt.Fprintf(w, "<!doctype html><p id=user>%s</p><p id=groups>%s</p><p id=principal>%s</p><p id=cookies>%s</p>\n",
				html.EscapeString(h.Get(HeaderUser)), html.EscapeString(h.Get(HeaderGroups)),
				html.EscapeString(a.Principal), html.EscapeString(r.Header.Get("Cookie")))
		}),
	}
	go func() { _ = srv.ServeTLS(ln, "", "") }()
	defer srv.Close()

	bctx := oidctest.Browser(t, ctx, chromium, spki)

	start := time.Now()
	if err := chromedp.Do(bctx); err != nil { // launches the browser
		t.Fatalf("chromium: %v", err)
	}
	t.Logf("chromium up in %v", time.Since(start).Round(time.Millisecond))
	loginAs := func(user string) {
		t.Helper()
		t0 := time.Now()
		err := chromedp.Do(bctx,
			chromedp.Navigate(gw+"/app?from=e2e"),
			chromedp.WaitVisible(chromedp.CSS(`input[name="login"]`)),
		)
		t.Logf("login form for %s in %v", user, time.Since(t0).Round(time.Millisecond))
		err = errors.Join(err, chromedp.Do(bctx, append(oidctest.SignIn(user), chromedp.WaitVisible(chromedp.ID("user")))...))
		if err != nil {
			t.Fatalf("login as %s: %v (gateway log: %v)", user, err, elog.all())
		}
	}
	text := func(id string) string {
		t.Helper()
		s, err := chromedp.Run(bctx, chromedp.Text(chromedp.ID(id)))
		if err != nil {
			t.Fatalf("text #%s: %v", id, err)
		}
		return s
	}

	// alice: protected page → login form → consent → callback → session → page.
	loginAs("alice")
	if got, want := text("user"), "alice"; got != want {
		t.Errorf("user = %q, want %q", got, want)
	}
	if got, want := text("groups"), "dev,admins"; got != want {
		t.Errorf("groups = %q, want %q", got, want)
	}
	if got, want := text("principal"), issuer+"/alice"; got != want {
		t.Errorf("principal = %q, want %q", got, want)
	}
	if c := text("cookies"); strings.Contains(c, "tollgate") {
		t.Errorf("upstream received the gateway's cookies: %q", c)
	}
	loc, err := chromedp.Run(bctx, chromedp.Location())
	if err != nil || loc != gw+"/app?from=e2e" {
		t.Errorf("after login at %q (%v), want back at the protected page", loc, err)
	}
	t.Logf("alice logged in via the real provider in %v", time.Since(start).Round(time.Millisecond))

	// Another site can't sign alice out: sending the browser to the logout
	// address only shows the button, and a form it submits there is refused.
	logoutURL := gw + "/.tollgate/oidc/logout"
	evil := attackerSite(t, logoutURL)
	within := func(d time.Duration, steps ...chromedp.Action[chromedp.Void]) error {
		sctx, cancel := context.WithTimeout(bctx, d)
		defer cancel()
		return chromedp.Do(sctx, steps...)
	}
	if err := within(20*time.Second, chromedp.Navigate(evil+"/nav"), chromedp.WaitVisible(chromedp.ID("sign-out"))); err != nil {
		t.Fatalf("cross-site navigation to the logout address: want its page with the button: %v", err)
	}
	if err := within(20*time.Second, chromedp.Navigate(evil+"/post")); err != nil {
		t.Fatalf("cross-site form: %v", err)
	}
	for i := 0; ; i++ {
		loc, err := chromedp.Run(bctx, chromedp.Location())
		if err == nil && loc == logoutURL {
			break
		}
		if i == 100 {
			t.Fatalf("after the cross-site form the browser is at %q (%v), want the logout address's refusal", loc, err)
		}
		time.Sleep(100 * time.Millisecond) // a navigation the page starts itself: nothing to wait on
	}
	if body := textOf(t, bctx, "body"); !strings.Contains(body, "cross_origin") {
		t.Errorf("cross-site logout form answered %q, want the cross_origin refusal", body)
	}
	if err := within(20*time.Second, chromedp.Navigate(gw+"/app"), chromedp.WaitVisible(chromedp.ID("user"))); err != nil {
		t.Fatalf("after the cross-site attempts: %v", err)
	}
	if got := text("user"); got != "alice" {
		t.Errorf("after the cross-site attempts user = %q, want alice still signed in", got)
	}

	// Logout (the page's button, a same-origin POST) ends both sessions: the
	// provider's and the gateway's.
	if err := chromedp.Do(bctx, oidctest.SignOut(logoutURL, gw+"/app")...); err != nil {
		t.Fatalf("logout: %v", err)
	}

	// bob, in the same browser: other groups, so policy can tell them apart.
	loginAs("bob")
	if got, want := text("user")+" "+text("groups"), "bob dev"; got != want {
		t.Errorf("bob sees %q, want %q", got, want)
	}
	t.Logf("whole story (alice login, logout at both ends, bob login) in %v", time.Since(start).Round(time.Millisecond))
	if errs := elog.all(); len(errs) > 0 {
		t.Logf("gateway logged: %v", errors.Join(errs...))
	}
}

// textOf is the text of the first element matching css.
// A page the browser has just navigated to may still replace its nodes (the
// location changes before the document is ready: "No node with given id
// found"), so the read is tried again, for at most 10s.
func textOf(t *testing.T, bctx context.Context, css string) string {
	t.Helper()
	var err error
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		var s string
		if s, err = chromedp.Run(bctx, chromedp.Text(chromedp.CSS(css))); err == nil {
			return s
		}
	}
	t.Fatalf("text of %s: %v", css, err)
	return ""
}

// attackerSite serves, on http://localhost:<port> (another site than the
// gateway's https://127.0.0.1:<port>), pages that try to end the gateway's
// session: /nav sends the browser to the logout address, /post loads it as an
// image and then submits a form to it.
func attackerSite(t *testing.T, logoutURL string) string {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		switch r.URL.Path {
		case "/nav":
			fmt.Fprintf(w, "<!doctype html><script>location.href = %q</script>\n", logoutURL)
		case "/post":
			fmt.Fprintf(w, `<!doctype html><img src="%[1]s"><form id="f" method="post" action="%[1]s"></form>`+
				`<script>onload = () => document.getElementById("f").submit()</script>`+"\n", html.EscapeString(logoutURL))
		default:
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(srv.Close)
	_, port, err := net.SplitHostPort(srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	return "http://localhost:" + port
}
