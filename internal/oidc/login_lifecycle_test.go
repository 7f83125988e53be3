package oidc

import (
	"context"
	"net"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"tollgate.dev/tollgate/internal/testkit"
)

func TestLogout(t *testing.T) {
	t.Run("RP-initiated at the provider", func(t *testing.T) {
		idp := startIdP(t, nil, "https://idp.invalid/session/end")
		g := startGateway(t, idp, func(c *LoginConfig) { c.Provider.PostLogoutRedirectPath = "/.tollgate/oidc/signed-out" })
		if err := g.login.WaitReady(t.Context()); err != nil {
			t.Fatal(err)
		}
		b := newBrowser(t, g)
		login(t, g, idp, b, alice)
		resp, _ := b.logout(g)
		loc, err := url.Parse(resp.Header.Get("Location"))
		if resp.StatusCode != http.StatusSeeOther || err != nil || !strings.HasPrefix(loc.String(), "https://idp.invalid/session/end?") {
			t.Fatalf("logout: status %d location %q", resp.StatusCode, resp.Header.Get("Location"))
		}
		q := loc.Query()
		if hint := q.Get("id_token_hint"); strings.Count(hint, ".") != 2 {
			t.Errorf("id_token_hint = %q, want the ID token", hint)
		}
		want := url.Values{"client_id": {idp.m.ClientID}, "post_logout_redirect_uri": {g.url + "/.tollgate/oidc/signed-out"}}
		q.Del("id_token_hint")
		if diff := cmp.Diff(want, q); diff != "" {
			t.Errorf("end-session query (-want +got):\n%s", diff)
		}
		if names := b.cookieNames(g); len(names) != 0 {
			t.Errorf("cookies left after logout: %v", names)
		}
		if resp, _ := b.get(g.url + "/app"); resp.StatusCode != http.StatusFound {
			t.Errorf("after logout: status %d, want 302 to login", resp.StatusCode)
		}
	})
	t.Run("no end_session_endpoint: local only", func(t *testing.T) {
		idp := startIdP(t, nil, "")
		g := startGateway(t, idp, nil)
		b := newBrowser(t, g)
		login(t, g, idp, b, bob)
		resp, _ := b.logout(g)
		if got := resp.Header.Get("Location"); resp.StatusCode != http.StatusSeeOther || got != "/.tollgate/oidc/signed-out" {
			t.Errorf("logout: %d to %q, want 303 to the signed-out page", resp.StatusCode, got)
		}
		if names := b.cookieNames(g); len(names) != 0 {
			t.Errorf("cookies left after logout: %v", names)
		}
		if resp, body := b.get(g.url + "/.tollgate/oidc/signed-out"); resp.StatusCode != http.StatusOK || !strings.Contains(string(body), "signed out") {
			t.Errorf("signed-out page: %d %s", resp.StatusCode, body)
		}
	})
}

func TestKeyRotation(t *testing.T) {
	idp := startIdP(t, nil, "")
	g := startGateway(t, idp, nil)
	b := newBrowser(t, g)
	login(t, g, idp, b, alice)
	oldKeys := g.login.keys.Load()
	newKey := testKey(t)
	oldKey := oldKeys.keys[0]

	// Rotate: the new key in front, the old one behind. Old cookies still open.
	rotated := &SessionKeys{keys: nil}
	nk, err := NewSessionKeys(newKey)
	if err != nil {
		t.Fatal(err)
	}
	rotated.keys = append(append(rotated.keys, nk.keys...), oldKey)
	g.login.SetKeys(rotated)
	if resp, body := b.get(g.url + "/app"); resp.StatusCode != http.StatusOK {
		t.Fatalf("old cookie after rotation: status %d body %s", resp.StatusCode, body)
	}
	// New cookies are sealed with the new key only.
	sealed, err := g.login.keys.Load().seal([]byte("aad"), []byte("x"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := nk.open([]byte("aad"), sealed); err != nil {
		t.Errorf("new key cannot open a fresh seal: %v", err)
	}
	if _, err := oldKeys.open([]byte("aad"), sealed); err == nil {
		t.Errorf("old key opens a seal made after rotation")
	}
	// Retire the old key: old cookies stop working.
	g.login.SetKeys(nk)
	if resp, _ := b.get(g.url + "/app"); resp.StatusCode != http.StatusFound {
		t.Errorf("old cookie after retiring its key: status %d, want 302", resp.StatusCode)
	}
	if !g.log.has(ErrSealUnknownKey) {
		t.Errorf("log has %v, want %v", g.log.all(), ErrSealUnknownKey)
	}
}

func TestProviderUnavailableAtStart(t *testing.T) {
	addr := testkit.FreeAddrs(t, 1)[0] // the provider is down when the gateway starts
	issuer := "http://" + addr + "/oidc"
	keys, _ := NewSessionKeys(testKey(t))
	l, err := NewLogin(LoginConfig{Provider: ProviderConfig{Name: "p", Issuer: issuer, ClientID: "c"}, Keys: keys, DiscoveryTimeout: time.Second})
	if err != nil {
		t.Fatalf("NewLogin with the provider down: %v (want no error)", err)
	}
	defer l.Close()
	req := httptestRequest("GET", "https://gw.test/app", "text/html")
	rec := newRecorder()
	_, out := l.Authenticate(rec, req)
	l.Challenge(rec, req, out)
	if rec.Code != http.StatusServiceUnavailable || !strings.Contains(rec.Body.String(), "login_unavailable") {
		t.Fatalf("before discovery: %d %s, want 503 JSON", rec.Code, rec.Body)
	}
	// The provider comes up on the same address: discovery retries and logins start.
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("provider address %s: %v", addr, err)
	}
	startIdP(t, ln, "")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := l.WaitReady(ctx); err != nil {
		t.Fatal(err)
	}
	rec = newRecorder()
	l.Challenge(rec, req, LoginRequired)
	if rec.Code != http.StatusFound {
		t.Errorf("after discovery: %d, want 302", rec.Code)
	}
	if err := l.Close(); err != nil {
		t.Error(err)
	}
	if err := l.Close(); err != nil { // idempotent
		t.Error(err)
	}
}
