package oidc

import (
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/oauth2-proxy/mockoidc"
)

var (
	alice = &mockoidc.MockUser{Subject: "alice", Email: "alice@example.org", EmailVerified: true,
		PreferredUsername: "alice", Groups: []string{"dev", "admins"}}
	bob = &mockoidc.MockUser{Subject: "bob", Email: "bob@example.org", EmailVerified: true,
		PreferredUsername: "bob", Groups: []string{"dev"}}
)

func TestLoginRoundTrip(t *testing.T) {
	idp := startIdP(t, nil, "")
	g := startGateway(t, idp, nil)
	for _, tc := range []struct {
		user       *mockoidc.MockUser
		wantGroups []string
	}{
		{alice, []string{"dev", "admins"}},
		{bob, []string{"dev"}},
	} {
		t.Run(tc.user.Subject, func(t *testing.T) {
			b := newBrowser(t, g)
			gu, _ := url.Parse(g.url)
			b.c.Jar.SetCookies(gu, []*http.Cookie{{Name: "app", Value: "kept"}})
			idp.queueUser(tc.user)

			// 1. protected page → 302 to the provider with PKCE S256, state and nonce.
			resp, _ := b.get(g.url + "/app?x=1")
			if resp.StatusCode != http.StatusFound {
				t.Fatalf("first visit: status %d, want 302", resp.StatusCode)
			}
			auth, _ := url.Parse(resp.Header.Get("Location"))
			q := auth.Query()
			for _, k := range []string{"state", "nonce", "code_challenge"} {
				if len(q.Get(k)) < 43 {
					t.Errorf("authorization request %s = %q, want >= 43 random chars", k, q.Get(k))
				}
			}
			if got, want := q.Get("code_challenge_method"), "S256"; got != want {
				t.Errorf("code_challenge_method = %q, want %q", got, want)
			}
			if got, want := q.Get("redirect_uri"), g.url+"/.tollgate/oidc/callback"; got != want {
				t.Errorf("redirect_uri = %q, want %q", got, want)
			}
			// 2. provider → callback → session cookie → back to the page.
			resp, _ = b.get(auth.String())
			cb := resp.Header.Get("Location")
			resp, _ = b.get(cb)
			if resp.StatusCode != http.StatusFound || resp.Header.Get("Location") != "/app?x=1" {
				t.Fatalf("callback: status %d location %q, want 302 /app?x=1", resp.StatusCode, resp.Header.Get("Location"))
			}
			set := map[string]*http.Cookie{}
			for _, c := range resp.Cookies() {
				set[c.Name] = c
			}
			// Both parts: the per-request one and the tokens.
			for _, name := range []string{"__Host-tollgate-main_0", "__Host-tollgate-main-tokens_0"} {
				c := set[name]
				if c == nil {
					t.Fatalf("callback set no %s: %v", name, resp.Header["Set-Cookie"])
				}
				if !c.Secure || !c.HttpOnly || c.SameSite != http.SameSiteLaxMode || c.Path != "/" || c.Domain != "" {
					t.Errorf("%s attributes: %+v", name, c)
				}
			}
			// 3. the page, as the user, without the gateway's cookies upstream.
			resp, body := b.get(g.url + "/app?x=1")
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("after login: status %d body %s", resp.StatusCode, body)
			}
			got := decodeEcho(t, body)
			want := echo{Subject: tc.user.Subject, Principal: idp.m.Issuer() + "/" + tc.user.Subject,
				Groups: tc.wantGroups, Cookie: "app=kept", User: tc.user.Subject}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("upstream saw (-want +got):\n%s", diff)
			}
			if n := idp.exchanges.Load(); n == 0 {
				t.Errorf("no code exchange recorded")
			}
		})
	}
}

func TestUnauthenticatedRequests(t *testing.T) {
	idp := startIdP(t, nil, "")
	g := startGateway(t, idp, nil)
	b := newBrowser(t, g)
	for _, tc := range []struct {
		name, method, accept string
		wantStatus           int
	}{
		{"navigation", http.MethodGet, "text/html", http.StatusFound},
		{"api call", http.MethodGet, "application/json", http.StatusUnauthorized},
		{"no accept", http.MethodGet, "", http.StatusUnauthorized},
		{"form post", http.MethodPost, "text/html", http.StatusUnauthorized},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, body := b.do(tc.method, g.url+"/app", tc.accept)
			if resp.StatusCode != tc.wantStatus {
				t.Fatalf("status %d, want %d (body %s)", resp.StatusCode, tc.wantStatus, body)
			}
			if tc.wantStatus == http.StatusUnauthorized && !strings.Contains(string(body), `"unauthenticated"`) {
				t.Errorf("401 body %s, want JSON error", body)
			}
			if tc.wantStatus == http.StatusFound && !strings.HasPrefix(resp.Header.Get("Location"), idp.m.AuthorizationEndpoint()) {
				t.Errorf("302 to %q, want the provider", resp.Header.Get("Location"))
			}
		})
	}
}

// login completes a login for user in b and returns the final page's response.
func login(t *testing.T, g *gateway, idp *testIdP, b *browser, user *mockoidc.MockUser) {
	t.Helper()
	idp.queueUser(user)
	resp, body, hops := b.follow(g.url + "/app")
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("login: status %d body %s hops %v", resp.StatusCode, body, hops)
	}
}

// flow runs a login up to the provider's redirect back and returns the callback URL.
func flow(t *testing.T, g *gateway, idp *testIdP, b *browser, start string, edit func(url.Values)) string {
	t.Helper()
	idp.queueUser(alice)
	resp, _ := b.get(start)
	auth, err := url.Parse(resp.Header.Get("Location"))
	if err != nil || !strings.HasPrefix(auth.String(), idp.m.AuthorizationEndpoint()) {
		t.Fatalf("start: status %d location %q", resp.StatusCode, resp.Header.Get("Location"))
	}
	if edit != nil {
		q := auth.Query()
		edit(q)
		auth.RawQuery = q.Encode()
	}
	resp, _ = b.get(auth.String())
	cb := resp.Header.Get("Location")
	if !strings.HasPrefix(cb, g.url+"/.tollgate/oidc/callback") {
		t.Fatalf("provider redirected to %q", cb)
	}
	return cb
}

func TestCallbackBadInput(t *testing.T) {
	idp := startIdP(t, nil, "")
	g := startGateway(t, idp, nil)
	gu, _ := url.Parse(g.url)
	// attemptCookies are the state cookie and marker of the browser's one login under way.
	cbURL, _ := url.Parse(g.url + "/.tollgate/oidc/callback")
	attemptCookies := func(b *browser) []*http.Cookie {
		var out []*http.Cookie
		for _, c := range b.c.Jar.Cookies(cbURL) {
			if hasPrefixAny(c.Name, "__Secure-tollgate-main-login-", "__Host-tollgate-main-pending-") {
				out = append(out, c)
			}
		}
		if len(out) != 2 {
			t.Fatalf("login state cookies %v, want a state cookie and a marker", out)
		}
		return out
	}
	for _, tc := range []struct {
		name    string
		run     func(t *testing.T) *http.Response
		wantErr error
	}{{
		name: "missing state cookie",
		run: func(t *testing.T) *http.Response {
			cb := flow(t, g, idp, newBrowser(t, g), g.url+"/app", nil)
			resp, _ := newBrowser(t, g).get(cb) // another browser: no state cookie
			return resp
		},
		wantErr: ErrStateMissing,
	}, {
		name: "foreign state",
		run: func(t *testing.T) *http.Response {
			victim := newBrowser(t, g)
			flow(t, g, idp, victim, g.url+"/app", nil) // victim has its own state cookie
			cb := flow(t, g, idp, newBrowser(t, g), g.url+"/app", nil)
			resp, _ := victim.get(cb) // attacker's callback (code+state) in the victim's browser
			return resp
		},
		wantErr: ErrStateMismatch,
	}, {
		name: "replayed state with its cookie",
		run: func(t *testing.T) *http.Response {
			b := newBrowser(t, g)
			cb := flow(t, g, idp, b, g.url+"/app", nil)
			sc := attemptCookies(b)
			if resp, _ := b.get(cb); resp.StatusCode != http.StatusFound {
				t.Fatalf("first callback: status %d", resp.StatusCode)
			}
			replay := newBrowser(t, g)
			replay.c.Jar.SetCookies(gu, sc)
			resp, _ := replay.get(cb)
			return resp
		},
		wantErr: ErrStateReplayed,
	}, {
		name: "mismatched nonce",
		run: func(t *testing.T) *http.Response {
			b := newBrowser(t, g)
			cb := flow(t, g, idp, b, g.url+"/app", func(q url.Values) { q.Set("nonce", "attacker-chosen-nonce") })
			resp, _ := b.get(cb)
			return resp
		},
		wantErr: ErrNonceMismatch,
	}, {
		name: "mix-up: callback names another issuer",
		run: func(t *testing.T) *http.Response {
			b := newBrowser(t, g)
			cb := flow(t, g, idp, b, g.url+"/app", nil)
			resp, _ := b.get(cb + "&iss=" + url.QueryEscape("https://other.example"))
			return resp
		},
		wantErr: ErrIssuerMismatch,
	}} {
		t.Run(tc.name, func(t *testing.T) {
			refused := g.events.count("login/refused")
			resp := tc.run(t)
			if resp.StatusCode != http.StatusBadRequest {
				t.Errorf("status %d, want 400", resp.StatusCode)
			}
			if got := g.events.count("login/refused") - refused; got != 1 {
				t.Errorf("login/refused events = %d, want 1", got)
			}
			for _, c := range resp.Cookies() {
				if strings.HasPrefix(c.Name, "__Host-tollgate-main_") && c.Value != "" {
					t.Errorf("refused callback set a session cookie %s", c.Name)
				}
			}
			if !g.log.has(tc.wantErr) {
				t.Errorf("log has %v, want %v", g.log.all(), tc.wantErr)
			}
		})
	}
}

func TestPostLoginRedirect(t *testing.T) {
	idp := startIdP(t, nil, "")
	g := startGateway(t, idp, nil)
	for _, tc := range []struct {
		rd, want string
	}{
		{"/app?x=1", "/app?x=1"},
		{"//evil.example", "/"},
		{"https://evil.example", "/"},
		{`/\evil.example`, "/"},
		{"/%2F%2Fevil.example", "/"},
		{"/.tollgate/oidc/logout", "/"},
	} {
		t.Run(tc.rd, func(t *testing.T) {
			b := newBrowser(t, g)
			cb := flow(t, g, idp, b, g.url+"/.tollgate/oidc/start?rd="+url.QueryEscape(tc.rd), nil)
			resp, _ := b.get(cb)
			if resp.StatusCode != http.StatusFound || resp.Header.Get("Location") != tc.want {
				t.Errorf("after login: status %d location %q, want 302 %q", resp.StatusCode, resp.Header.Get("Location"), tc.want)
			}
		})
	}
}

func TestSessionCookieBadInput(t *testing.T) {
	idp := startIdP(t, nil, "")
	g := startGateway(t, idp, nil)
	gu, _ := url.Parse(g.url)
	other := unknownKeys(t, g.login.keys.Load())
	s := &session{Expires: time.Now().Add(time.Hour), Claims: []byte(`{"iss":"x","sub":"mallory"}`)}
	seal := func(k *SessionKeys, name, host string, s *session) string {
		v, err := k.seal(cookieAAD(nil, name, host), s.marshal())
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	expired := *s
	expired.Expires = time.Now().Add(-time.Second)
	for _, tc := range []struct {
		name    string
		cookies func(b *browser) []*http.Cookie
		wantErr error
	}{{
		name: "tampered",
		cookies: func(b *browser) []*http.Cookie {
			login(t, g, idp, b, alice)
			cs := b.c.Jar.Cookies(gu)
			for _, c := range cs {
				if c.Name == "__Host-tollgate-main_0" {
					v := []byte(c.Value)
					v[len(v)/2] ^= 'A' ^ 'B' // flip one character of the ciphertext
					if v[len(v)/2] == c.Value[len(v)/2] {
						v[len(v)/2] = 'Q'
					}
					c.Value = string(v)
					return []*http.Cookie{c}
				}
			}
			t.Fatal("no session cookie after login")
			return nil
		},
		wantErr: ErrSealInvalid,
	}, {
		name: "sealed with an unknown key",
		cookies: func(*browser) []*http.Cookie {
			return []*http.Cookie{{Name: "__Host-tollgate-main_0", Value: seal(other, "__Host-tollgate-main", gu.Host, s)}}
		},
		wantErr: ErrSealUnknownKey,
	}, {
		name: "sealed for another host",
		cookies: func(*browser) []*http.Cookie {
			return []*http.Cookie{{Name: "__Host-tollgate-main_0", Value: seal(g.login.keys.Load(), "__Host-tollgate-main", "other.example", s)}}
		},
		wantErr: ErrSealInvalid,
	}, {
		name: "login-state cookie presented as session",
		cookies: func(*browser) []*http.Cookie {
			id, _ := attemptIDOf(randomToken())
			return []*http.Cookie{{Name: "__Host-tollgate-main_0", Value: seal(g.login.keys.Load(), g.login.stateCookieName(id), gu.Host, s)}}
		},
		wantErr: ErrSealInvalid,
	}, {
		name: "expired",
		cookies: func(*browser) []*http.Cookie {
			return []*http.Cookie{{Name: "__Host-tollgate-main_0", Value: seal(g.login.keys.Load(), "__Host-tollgate-main", gu.Host, &expired)}}
		},
		wantErr: ErrSessionExpired,
	}} {
		t.Run(tc.name, func(t *testing.T) {
			b := newBrowser(t, g)
			b.c.Jar.SetCookies(gu, tc.cookies(b))
			resp, body := b.get(g.url + "/app")
			if resp.StatusCode != http.StatusFound || !strings.HasPrefix(resp.Header.Get("Location"), idp.m.AuthorizationEndpoint()) {
				t.Fatalf("status %d location %q body %s, want 302 to the provider", resp.StatusCode, resp.Header.Get("Location"), body)
			}
			cleared := false
			for _, c := range resp.Cookies() {
				cleared = cleared || (c.Name == "__Host-tollgate-main_0" && c.MaxAge < 0)
			}
			if !cleared {
				t.Errorf("bad session cookie not cleared: %v", resp.Header["Set-Cookie"])
			}
			if !g.log.has(tc.wantErr) {
				t.Errorf("log has %v, want %v", g.log.all(), tc.wantErr)
			}
		})
	}
}

func TestRefresh(t *testing.T) {
	idp := startIdP(t, nil, "")
	g := startGateway(t, idp, nil)
	t.Run("near expiry refreshes once and rewrites the cookie", func(t *testing.T) {
		b := newBrowser(t, g)
		idp.expiresIn.Store(30) // within RefreshBefore (1m)
		cb := flow(t, g, idp, b, g.url+"/app", nil)
		b.get(cb)
		idp.expiresIn.Store(3600)
		before := idp.refreshes.Load()
		resp, body := b.get(g.url + "/app")
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("status %d body %s", resp.StatusCode, body)
		}
		if got := idp.refreshes.Load() - before; got != 1 {
			t.Fatalf("refreshes = %d, want 1", got)
		}
		if got := g.events.count("refresh/success"); got != 1 {
			t.Errorf("refresh/success events = %d, want 1", got)
		}
		for _, name := range []string{"__Host-tollgate-main_0=", "__Host-tollgate-main-tokens_0="} {
			if !strings.Contains(strings.Join(resp.Header["Set-Cookie"], "\n"), name) {
				t.Errorf("refresh did not rewrite %s: %v", name, resp.Header["Set-Cookie"])
			}
		}
		b.get(g.url + "/app")
		if got := idp.refreshes.Load() - before; got != 1 {
			t.Errorf("refreshes after a fresh token = %d, want still 1", got)
		}
	})
	t.Run("provider refuses: session ends", func(t *testing.T) {
		b := newBrowser(t, g)
		idp.expiresIn.Store(30)
		cb := flow(t, g, idp, b, g.url+"/app", nil)
		b.get(cb)
		idp.queueError(&mockoidc.ServerError{Code: http.StatusBadRequest, Error: "invalid_grant", Description: "revoked"})
		resp, _ := b.get(g.url + "/app")
		if resp.StatusCode != http.StatusFound {
			t.Fatalf("status %d, want 302 to login", resp.StatusCode)
		}
		if !g.log.has(ErrRefreshRejected) {
			t.Errorf("log has %v, want %v", g.log.all(), ErrRefreshRejected)
		}
		if got := g.events.count("refresh/rejected"); got != 1 {
			t.Errorf("refresh/rejected events = %d, want 1", got)
		}
	})
	t.Run("provider down: session goes on until the token expires", func(t *testing.T) {
		b := newBrowser(t, g)
		idp.expiresIn.Store(30)
		cb := flow(t, g, idp, b, g.url+"/app", nil)
		b.get(cb)
		idp.queueError(&mockoidc.ServerError{Code: http.StatusServiceUnavailable, Error: "temporarily_unavailable"})
		if resp, body := b.get(g.url + "/app"); resp.StatusCode != http.StatusOK {
			t.Fatalf("status %d body %s, want 200", resp.StatusCode, body)
		}
		if got := g.events.count("refresh/error"); got != 1 {
			t.Errorf("refresh/error events = %d, want 1", got)
		}
		if got := g.events.count("login/success"); got != 3 {
			t.Errorf("login/success events = %d, want one per subtest's login (3)", got)
		}
	})
}
