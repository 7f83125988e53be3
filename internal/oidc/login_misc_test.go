package oidc

import (
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"tollgate.dev/tollgate/internal/request"
)

func httptestRequest(method, target, accept string) *http.Request {
	r := httptest.NewRequest(method, target, nil)
	if accept != "" {
		r.Header.Set("Accept", accept)
	}
	return r
}

func newRecorder() *httptest.ResponseRecorder { return httptest.NewRecorder() }

func TestServeReserved(t *testing.T) {
	idp := startIdP(t, nil, "")
	g := startGateway(t, idp, nil)
	for _, tc := range []struct {
		path       string
		host       string
		wantServed bool
		wantStatus int
	}{
		{path: "/app", wantServed: false},
		{path: "/.tollgatex/oidc/start", wantServed: false},
		{path: "/.tollgate/", wantServed: true, wantStatus: http.StatusNotFound},
		{path: "/.tollgate/anything", wantServed: true, wantStatus: http.StatusNotFound},
		{path: "/.tollgate/oidc/start?rd=/x", wantServed: true, wantStatus: http.StatusFound},
		{path: "/.tollgate/oidc/start?rd=/x", host: "evil.example", wantServed: true, wantStatus: http.StatusBadRequest},
		{path: "/.tollgate/oidc/callback?code=x&state=y", host: "evil.example", wantServed: true, wantStatus: http.StatusBadRequest},
		{path: "/.tollgate/oidc/signed-out", wantServed: true, wantStatus: http.StatusOK},
	} {
		t.Run(tc.host+tc.path, func(t *testing.T) {
			r := httptestRequest(http.MethodGet, "https://"+g.srv.Listener.Addr().String()+tc.path, "text/html")
			if tc.host != "" {
				r.Host = tc.host
			}
			rec := newRecorder()
			served := g.login.ServeReserved(rec, r)
			if served != tc.wantServed {
				t.Fatalf("served = %v, want %v", served, tc.wantServed)
			}
			if served && rec.Code != tc.wantStatus {
				t.Errorf("status %d, want %d (body %s)", rec.Code, tc.wantStatus, rec.Body)
			}
		})
	}
}

func TestNewLoginConfigErrors(t *testing.T) {
	keys, err := NewSessionKeys(testKey(t))
	if err != nil {
		t.Fatal(err)
	}
	good := func() LoginConfig {
		return LoginConfig{Provider: ProviderConfig{Name: "p", Issuer: "https://idp.example", ClientID: "c"}, Keys: keys}
	}
	for _, tc := range []struct {
		name    string
		edit    func(*LoginConfig)
		wantErr string
	}{
		{"no keys", func(c *LoginConfig) { c.Keys = nil }, "session keys required"},
		{"bad name", func(c *LoginConfig) { c.Provider.Name = "a b" }, "name: want letters"},
		{"bad issuer", func(c *LoginConfig) { c.Provider.Issuer = "idp.example" }, "issuer: want an http(s) URL"},
		{"issuer with query", func(c *LoginConfig) { c.Provider.Issuer = "https://idp.example/?x=1" }, "issuer: want an http(s) URL"},
		{"no client id", func(c *LoginConfig) { c.Provider.ClientID = "" }, "clientID: required"},
		{"override state", func(c *LoginConfig) { c.Provider.ExtraAuthParams = map[string]string{"State": "x"} }, "extraAuthParams.State"},
		{"override PKCE", func(c *LoginConfig) { c.Provider.ExtraAuthParams = map[string]string{"code_challenge_method": "plain"} }, "extraAuthParams.code_challenge_method"},
		{"missing secret file", func(c *LoginConfig) { c.Provider.ClientSecretFile = filepath.Join(t.TempDir(), "nope") }, "client secret"},
		{"empty secret file", func(c *LoginConfig) {
			p := filepath.Join(t.TempDir(), "s")
			_ = os.WriteFile(p, []byte("\n"), 0o600)
			c.Provider.ClientSecretFile = p
		}, "is empty"},
		{"bad prefix", func(c *LoginConfig) { c.PathPrefix = "tollgate" }, "pathPrefix"},
		{"bad post-logout path", func(c *LoginConfig) { c.Provider.PostLogoutRedirectPath = "https://evil.example/" }, "postLogoutRedirectPath"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := good()
			tc.edit(&cfg)
			l, err := NewLogin(cfg)
			if err == nil {
				l.Close()
				t.Fatalf("NewLogin succeeded, want error containing %q", tc.wantErr)
			}
			if !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("error %q, want it to contain %q", err, tc.wantErr)
			}
		})
	}
	l, err := NewLogin(good())
	if err != nil {
		t.Fatalf("good config: %v", err)
	}
	l.Close()
}

func TestStripCookies(t *testing.T) {
	keys, _ := NewSessionKeys(testKey(t))
	l, err := NewLogin(LoginConfig{Provider: ProviderConfig{Name: "main", Issuer: "http://127.0.0.1:1", ClientID: "c"}, Keys: keys})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	// A custom cookie name lacks the common prefix: its own names must still go.
	custom, err := NewLogin(LoginConfig{Provider: ProviderConfig{Name: "main", Issuer: "http://127.0.0.1:1", ClientID: "c"}, Keys: keys, CookieName: "sess"})
	if err != nil {
		t.Fatal(err)
	}
	defer custom.Close()
	for _, tc := range []struct {
		name  string
		login *Login
		in    []string
		want  []string
	}{
		{"only ours", l, []string{"__Host-tollgate-main_0=a; __Host-tollgate-main_1=b; __Host-tollgate-main-tokens_0=t; __Host-tollgate-main-tokens_1=u; __Host-tollgate-main-login=c"}, nil},
		{"custom name, both parts", custom, []string{"sess_0=a; sess-tokens_0=t; sess-tokens_1=u; sess-login=c; sessions=keep"}, []string{"sessions=keep"}},
		{"logins under way", l, []string{"__Host-tollgate-main-pending-AAAAAAAAAAAAAAAA=m; __Secure-tollgate-main-login-AAAAAAAAAAAAAAAA=s; f=6"}, []string{"f=6"}},
		{"logins under way, custom name", custom, []string{"sess-pending-AAAAAAAAAAAAAAAA=m; sess-login-AAAAAAAAAAAAAAAA=s; sess-loginx=keep"}, []string{"sess-loginx=keep"}},
		{"another provider's login under way", l, []string{"__Secure-tollgate-other-login-AAAAAAAAAAAAAAAA=s; g=7"}, []string{"g=7"}},
		{"mixed", l, []string{"a=1; __Host-tollgate-main_0=x; b=2"}, []string{"a=1; b=2"}},
		{"other provider on the same host", l, []string{"__Host-tollgate-other_0=x; c=3"}, []string{"c=3"}},
		{"several lines (HTTP/2)", l, []string{"__Host-tollgate-main_0=x", "d=4"}, []string{"d=4"}},
		{"none", l, []string{"e=5"}, []string{"e=5"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := http.Header{"Cookie": tc.in}
			tc.login.StripCookies(h)
			if diff := cmp.Diff(tc.want, h["Cookie"]); diff != "" {
				t.Errorf("Cookie (-want +got):\n%s", diff)
			}
		})
	}
}

func TestClaimHeaders(t *testing.T) {
	a := &request.Auth{Issuer: "https://idp", Subject: "alice", Principal: "https://idp/alice",
		Claims: map[string]any{"email": "alice@example.org", "groups": []any{"dev", "admins", "a,b"}}}
	got := ClaimHeaders(a)
	want := http.Header{
		HeaderUser:    {"alice@example.org"},
		HeaderSubject: {"https://idp/alice"},
		HeaderEmail:   {"alice@example.org"},
		HeaderGroups:  {"dev,admins"},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("ClaimHeaders (-want +got):\n%s", diff)
	}
	evil := &request.Auth{Subject: "x", Claims: map[string]any{"preferred_username": "bob\r\nX-Admin: 1"}}
	if v := ClaimHeaders(evil).Get(HeaderUser); v != "" {
		t.Errorf("header injection passed through: %q", v)
	}
}

func TestOutcomeString(t *testing.T) {
	for o, want := range map[Outcome]string{Authenticated: "authenticated", LoginRequired: "login-required", Unauthenticated: "unauthenticated", 0: "outcome(0)"} {
		if o.String() != want {
			t.Errorf("%d.String() = %q, want %q", int(o), o.String(), want)
		}
	}
}

func TestStateLedger(t *testing.T) {
	now := time.Unix(1_000_000, 0)
	l := newStateLedger(2)
	for _, tc := range []struct {
		state string
		until time.Duration
		now   time.Duration
		fresh bool
	}{
		{"a", time.Minute, 0, true},
		{"a", time.Minute, 0, false}, // replay
		{"b", 2 * time.Minute, 0, true},
		// Full of unexpired states: a new login still works, and the state that
		// expires first (a) is the one forgotten.
		{"c", 3 * time.Minute, 0, true},
		{"b", 2 * time.Minute, 0, false},
		{"c", 3 * time.Minute, 0, false},
		// Expired states are dropped first.
		{"d", 10 * time.Minute, 5 * time.Minute, true},
		{"e", 10 * time.Minute, 5 * time.Minute, true},
		{"d", 10 * time.Minute, 5 * time.Minute, false},
	} {
		if got := l.consume(tc.state, now.Add(tc.until), now.Add(tc.now)); got != tc.fresh {
			t.Errorf("consume(%s) at +%v = %v, want %v", tc.state, tc.now, got, tc.fresh)
		}
	}
	if len(l.seen) > 2 {
		t.Errorf("ledger holds %d states, max 2", len(l.seen))
	}
}
