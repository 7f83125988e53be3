package oidc

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/oauth2-proxy/mockoidc"
)

// attempt is one login under way in a test browser, step by step: start (the
// gateway's redirect to the provider), the provider (its redirect back), the
// callback.
type attempt struct {
	rd, auth, cb string
	user         *mockoidc.MockUser
}

func (a *attempt) start(t *testing.T, g *gateway, idp *testIdP, b *browser) {
	t.Helper()
	resp, body := b.get(g.url + "/.tollgate/oidc/start?rd=" + url.QueryEscape(a.rd))
	a.auth = resp.Header.Get("Location")
	if resp.StatusCode != http.StatusFound || !strings.HasPrefix(a.auth, idp.m.AuthorizationEndpoint()) {
		t.Fatalf("start %s: status %d location %q body %s", a.rd, resp.StatusCode, a.auth, body)
	}
}

func (a *attempt) provider(t *testing.T, g *gateway, idp *testIdP, b *browser) {
	t.Helper()
	idp.queueUser(a.user)
	resp, _ := b.get(a.auth)
	a.cb = resp.Header.Get("Location")
	if !strings.HasPrefix(a.cb, g.url+"/.tollgate/oidc/callback?") {
		t.Fatalf("provider for %s: status %d redirected to %q", a.rd, resp.StatusCode, a.cb)
	}
}

// underWay starts an attempt in b and takes it through the provider, up to
// the callback.
func underWay(t *testing.T, g *gateway, idp *testIdP, b *browser, rd string, user *mockoidc.MockUser) *attempt {
	t.Helper()
	a := &attempt{rd: rd, user: user}
	a.start(t, g, idp, b)
	a.provider(t, g, idp, b)
	return a
}

// id is the attempt's id, from the state its callback carries.
func (a *attempt) id(t *testing.T) attemptID {
	t.Helper()
	u, err := url.Parse(a.cb)
	if err != nil {
		t.Fatal(err)
	}
	id, ok := attemptIDOf(u.Query().Get("state"))
	if !ok {
		t.Fatalf("callback %q without state", a.cb)
	}
	return id
}

// callback completes the attempt and returns the gateway's answer.
func (a *attempt) callback(t *testing.T, b *browser) (*http.Response, []byte) {
	t.Helper()
	return b.get(a.cb)
}

// loginCookies are the names of the login-attempt cookies the browser would send
// to the callback: markers and state cookies.
func loginCookies(t *testing.T, g *gateway, b *browser) (markers, states []string) {
	t.Helper()
	u, err := url.Parse(g.url + "/.tollgate/oidc/callback")
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range b.c.Jar.Cookies(u) {
		switch {
		case strings.HasPrefix(c.Name, "__Host-tollgate-main-pending-"):
			markers = append(markers, c.Name)
		case strings.HasPrefix(c.Name, "__Secure-tollgate-main-login-"):
			states = append(states, c.Name)
		}
	}
	return markers, states
}

// whoAmI is the session's subject as the upstream sees it ("" without a session).
func whoAmI(t *testing.T, g *gateway, b *browser) string {
	t.Helper()
	resp, body := b.get(g.url + "/app")
	if resp.StatusCode != http.StatusOK {
		return ""
	}
	return decodeEcho(t, body).Subject
}

// interleavings lists every order of the steps of two attempts that keeps each
// attempt's own steps in order: a step is (attempt, step) as "1s" (start),
// "1p" (provider), "1c" (callback).
func interleavings(a, b int) [][]string {
	if a == 0 && b == 0 {
		return [][]string{nil}
	}
	steps := "spc"
	var out [][]string
	if a > 0 {
		for _, rest := range interleavings(a-1, b) {
			out = append(out, append([]string{"1" + steps[3-a:4-a]}, rest...))
		}
	}
	if b > 0 {
		for _, rest := range interleavings(a, b-1) {
			out = append(out, append([]string{"2" + steps[3-b:4-b]}, rest...))
		}
	}
	return out
}

// TestLoginAttemptsInterleaved: two logins under way in one browser (two tabs),
// their steps in every order: both complete, each back at its own page with
// its own user (its code redeemed with its own verifier, its ID token's nonce
// its own), and no login cookie is left behind.
func TestLoginAttemptsInterleaved(t *testing.T) {
	idp := startIdP(t, nil, "")
	g := startGateway(t, idp, nil)
	orders := interleavings(3, 3)
	if len(orders) != 20 {
		t.Fatalf("%d interleavings, want 20", len(orders))
	}
	for _, order := range orders {
		t.Run(strings.Join(order, " "), func(t *testing.T) {
			b := newBrowser(t, g)
			tabs := map[byte]*attempt{
				'1': {rd: "/tab/1?x=1", user: alice},
				'2': {rd: "/tab/2?x=2", user: bob},
			}
			success := g.events.count("login/success")
			for _, step := range order {
				a := tabs[step[0]]
				switch step[1] {
				case 's':
					a.start(t, g, idp, b)
				case 'p':
					a.provider(t, g, idp, b)
				case 'c':
					resp, body := a.callback(t, b)
					if resp.StatusCode != http.StatusFound || resp.Header.Get("Location") != a.rd {
						t.Fatalf("callback of tab %c: status %d location %q body %s (log %v), want 302 %s",
							step[0], resp.StatusCode, resp.Header.Get("Location"), body, g.log.all(), a.rd)
					}
					if got := whoAmI(t, g, b); got != a.user.Subject {
						t.Errorf("after tab %c's callback the session is %q's, want %q's", step[0], got, a.user.Subject)
					}
				}
				if m, s := loginCookies(t, g, b); len(m) > 2 || len(s) > 2 || len(m) != len(s) {
					t.Errorf("after %s: markers %v, state cookies %v", step, m, s)
				}
			}
			if got := g.events.count("login/success") - success; got != 2 {
				t.Errorf("login/success events = %d, want 2", got)
			}
			if m, s := loginCookies(t, g, b); len(m)+len(s) > 0 {
				t.Errorf("left behind: markers %v, state cookies %v", m, s)
			}
		})
	}
}

// TestLoginAttemptsBound: a browser keeps at most maxPendingLogins logins under
// way, and their state cookies at most maxPendingBytes: the next start ends the
// oldest, whose callback then fails closed (the usual 400 JSON, a refused
// event), while every other completes, whatever the order of the callbacks.
func TestLoginAttemptsBound(t *testing.T) {
	idp := startIdP(t, nil, "")
	g := startGateway(t, idp, nil)
	long := "/long?q=" + strings.Repeat("x", maxRedirectLen-len("/long?q=")-4)
	for _, tc := range []struct {
		name        string
		rds         []string // return paths, started in this order
		newestFirst bool     // callbacks from the newest attempt to the oldest
		wantEvicted int      // the oldest this many fail
		wantPending int      // attempts under way after all starts
	}{
		{"N+1 short, oldest callback first", seq("/p", maxPendingLogins+1), false, 1, maxPendingLogins},
		{"N+1 short, newest callback first", seq("/p", maxPendingLogins+1), true, 1, maxPendingLogins},
		{"N+3 short", seq("/p", maxPendingLogins+3), false, 3, maxPendingLogins},
		{"N exactly: none ended", seq("/p", maxPendingLogins), true, 0, maxPendingLogins},
		{"longest return paths: the byte budget binds first", seq(long, 4), false, 2, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := newBrowser(t, g)
			as := make([]*attempt, len(tc.rds))
			for i, rd := range tc.rds {
				as[i] = underWay(t, g, idp, b, rd, alice)
				if m, s := loginCookies(t, g, b); len(m) > maxPendingLogins || len(s) > maxPendingLogins || len(m) != len(s) {
					t.Fatalf("after %d starts: %d markers, %d state cookies, want at most %d pairs", i+1, len(m), len(s), maxPendingLogins)
				}
			}
			if m, _ := loginCookies(t, g, b); len(m) != tc.wantPending {
				t.Errorf("%d logins under way, want %d", len(m), tc.wantPending)
			}
			order := make([]int, len(as))
			for i := range order {
				order[i] = i
				if tc.newestFirst {
					order[i] = len(as) - 1 - i
				}
			}
			for _, i := range order {
				refused, success := g.events.count("login/refused"), g.events.count("login/success")
				resp, body := as[i].callback(t, b)
				if i < tc.wantEvicted {
					if resp.StatusCode != http.StatusBadRequest || !strings.Contains(string(body), `"login_failed"`) {
						t.Errorf("ended attempt %d: status %d body %s, want 400 login_failed", i, resp.StatusCode, body)
					}
					if g.events.count("login/refused")-refused != 1 {
						t.Errorf("ended attempt %d: no login/refused event", i)
					}
					continue
				}
				if resp.StatusCode != http.StatusFound || resp.Header.Get("Location") != as[i].rd {
					t.Errorf("attempt %d: status %d location %.40q body %s (log %v), want 302 to its page",
						i, resp.StatusCode, resp.Header.Get("Location"), body, g.log.all())
				}
				if g.events.count("login/success")-success != 1 {
					t.Errorf("attempt %d: no login/success event", i)
				}
			}
			if tc.wantEvicted > 0 && !g.log.has(ErrStateMismatch) && !g.log.has(ErrStateMissing) {
				t.Errorf("log %v, want the ended attempts' state refused", g.log.all())
			}
			if m, s := loginCookies(t, g, b); len(m)+len(s) > 0 {
				t.Errorf("left behind: markers %v, state cookies %v", m, s)
			}
		})
	}
}

func mustURL(t *testing.T, s string) *url.URL {
	t.Helper()
	u, err := url.Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

// seq is n return paths prefix0, prefix1, ….
func seq(prefix string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("%s%d", prefix, i)
	}
	return out
}

// TestLoginAttemptsRefused: callbacks this browser's attempts don't back fail
// closed, and leave its other logins under way alone.
func TestLoginAttemptsRefused(t *testing.T) {
	idp := startIdP(t, nil, "")
	g := startGateway(t, idp, nil)
	cbURL, _ := url.Parse(g.url + "/.tollgate/oidc/callback")
	// only keeps the browser's cookies (for the callback) whose name has prefix.
	only := func(b *browser, prefix string) []*http.Cookie {
		var out []*http.Cookie
		for _, c := range b.c.Jar.Cookies(cbURL) {
			if strings.HasPrefix(c.Name, prefix) {
				out = append(out, &http.Cookie{Name: c.Name, Value: c.Value, Path: "/"})
			}
		}
		return out
	}
	for _, tc := range []struct {
		name string
		// run does the refused callback in b, which has a login under way
		// (mine, at the provider already).
		run     func(t *testing.T, b *browser, mine *attempt) *http.Response
		wantErr error
	}{{
		name: "replayed callback",
		run: func(t *testing.T, b *browser, mine *attempt) *http.Response {
			done := underWay(t, g, idp, b, "/done", bob)
			if resp, _ := done.callback(t, b); resp.StatusCode != http.StatusFound {
				t.Fatalf("first callback: status %d", resp.StatusCode)
			}
			resp, _ := done.callback(t, b)
			if got := whoAmI(t, g, b); got != "bob" {
				t.Errorf("the replay ended the session: user %q", got)
			}
			return resp
		},
		wantErr: ErrStateMismatch, // another login (mine) is under way
	}, {
		name: "state from another browser",
		run: func(t *testing.T, b *browser, _ *attempt) *http.Response {
			other := newBrowser(t, g)
			theirs := underWay(t, g, idp, other, "/theirs", bob)
			resp, _ := theirs.callback(t, b)
			return resp
		},
		wantErr: ErrStateMismatch,
	}, {
		name: "another browser's state cookie, planted without its marker",
		run: func(t *testing.T, b *browser, _ *attempt) *http.Response {
			other := newBrowser(t, g)
			theirs := underWay(t, g, idp, other, "/theirs", bob)
			// What a sibling subdomain can do: a __Secure- cookie with Domain, never a __Host- one.
			b.c.Jar.SetCookies(cbURL, only(other, "__Secure-tollgate-main-login-"))
			resp, _ := theirs.callback(t, b)
			return resp
		},
		wantErr: ErrStateMissing,
	}, {
		name: "another attempt's sealed state under this attempt's name",
		run: func(t *testing.T, b *browser, _ *attempt) *http.Response {
			other := newBrowser(t, g)
			underWay(t, g, idp, other, "/theirs", bob)
			swapped := underWay(t, g, idp, b, "/swapped", bob)
			val := only(other, "__Secure-tollgate-main-login-")[0].Value
			b.c.Jar.SetCookies(cbURL, []*http.Cookie{{Name: g.login.stateCookieName(swapped.id(t)), Value: val, Path: "/.tollgate/oidc/callback"}})
			resp, _ := swapped.callback(t, b)
			return resp
		},
		wantErr: ErrSealInvalid,
	}, {
		name: "marker without its state cookie",
		run: func(t *testing.T, b *browser, _ *attempt) *http.Response {
			gone := underWay(t, g, idp, b, "/gone", bob)
			b.c.Jar.SetCookies(cbURL, []*http.Cookie{{Name: g.login.stateCookieName(gone.id(t)), MaxAge: -1, Path: "/.tollgate/oidc/callback"}})
			resp, _ := gone.callback(t, b)
			return resp
		},
		wantErr: ErrStateMissing,
	}, {
		name: "no state parameter",
		run: func(t *testing.T, b *browser, _ *attempt) *http.Response {
			resp, _ := b.get(g.url + "/.tollgate/oidc/callback?code=x")
			return resp
		},
		wantErr: ErrStateMissing,
	}} {
		t.Run(tc.name, func(t *testing.T) {
			b := newBrowser(t, g)
			mine := underWay(t, g, idp, b, "/mine", alice)
			refused := g.events.count("login/refused")
			resp := tc.run(t, b, mine)
			if resp.StatusCode != http.StatusBadRequest || resp.Header.Get("Content-Type") != "application/json" {
				t.Errorf("status %d %s, want 400 JSON", resp.StatusCode, resp.Header.Get("Content-Type"))
			}
			if got := g.events.count("login/refused") - refused; got != 1 {
				t.Errorf("login/refused events = %d, want 1", got)
			}
			if !g.log.has(tc.wantErr) {
				t.Errorf("log has %v, want %v", g.log.all(), tc.wantErr)
			}
			// The refused callback left this browser's own login alone.
			resp, body := mine.callback(t, b)
			if resp.StatusCode != http.StatusFound || resp.Header.Get("Location") != "/mine" {
				t.Fatalf("own login after the refused callback: status %d location %q body %s (log %v)",
					resp.StatusCode, resp.Header.Get("Location"), body, g.log.all())
			}
			if got := whoAmI(t, g, b); got != "alice" {
				t.Errorf("own login: user %q, want alice", got)
			}
		})
	}
}

// TestLoginAttemptExpired: an attempt outlives its StateTTL only in a browser
// with another clock: its callback fails closed, and the next start ends it.
func TestLoginAttemptExpired(t *testing.T) {
	idp := startIdP(t, nil, "")
	var offset atomic.Int64
	g := startGateway(t, idp, func(c *LoginConfig) {
		c.Now = func() time.Time { return time.Now().Add(time.Duration(offset.Load())) }
	})
	b := newBrowser(t, g)
	old := underWay(t, g, idp, b, "/old", alice)
	oldID := old.id(t)
	cbURL := mustURL(t, g.url+"/.tollgate/oidc/callback")
	var kept []*http.Cookie
	for _, c := range b.c.Jar.Cookies(cbURL) {
		if c.Name == g.login.stateCookieName(oldID) || c.Name == g.login.markerCookieName(oldID) {
			kept = append(kept, &http.Cookie{Name: c.Name, Value: c.Value, Path: "/"})
		}
	}
	offset.Store(int64(11 * time.Minute)) // past the default StateTTL of 10m

	resp, _ := b.get(g.url + "/.tollgate/oidc/start?rd=/new")
	ended := map[string]bool{}
	for _, c := range resp.Cookies() {
		ended[c.Name] = c.MaxAge < 0
	}
	if !ended[g.login.stateCookieName(oldID)] || !ended[g.login.markerCookieName(oldID)] {
		t.Errorf("a start after the old attempt expired set %v, want it ended", resp.Header["Set-Cookie"])
	}
	// A browser whose clock lags still sends the old attempt's cookies.
	if len(kept) != 2 {
		t.Fatalf("old attempt's cookies: %v", kept)
	}
	b.c.Jar.SetCookies(cbURL, kept)
	refused := g.events.count("login/refused")
	if resp, _ := old.callback(t, b); resp.StatusCode != http.StatusBadRequest || g.events.count("login/refused")-refused != 1 {
		t.Errorf("expired attempt's callback: status %d, want 400 and a refused event", resp.StatusCode)
	}
	if errs := g.log.all(); len(errs) == 0 || !errors.Is(errs[len(errs)-1], ErrStateMissing) || !strings.HasSuffix(errs[len(errs)-1].Error(), "expired") {
		t.Errorf("log %v, want %v: expired", errs, ErrStateMissing)
	}
}

// TestLoginAttemptLongReturnPath: the state cookie stays under the browsers'
// 4 KB a cookie. A return path of maxRedirectLen fits ('&' is not escaped);
// one JSON would blow up beyond that returns to / instead.
func TestLoginAttemptLongReturnPath(t *testing.T) {
	idp := startIdP(t, nil, "")
	g := startGateway(t, idp, nil)
	amps := "/p?" + strings.Repeat("a&", (maxRedirectLen-3)/2)
	quotes := "/" + strings.Repeat(`"`, maxRedirectLen-1)
	for _, tc := range []struct{ name, rd, want string }{
		{"longest, with ampersands", amps, amps},
		{"quotes beyond the cookie limit", quotes, "/"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, ok := SafeRedirect(tc.rd); !ok {
				t.Fatalf("return path %.20q… not accepted", tc.rd)
			}
			b := newBrowser(t, g)
			resp, body := underWay(t, g, idp, b, tc.rd, alice).callback(t, b)
			if resp.StatusCode != http.StatusFound || resp.Header.Get("Location") != tc.want {
				t.Errorf("callback: status %d location %.40q body %s, want 302 to %.40q", resp.StatusCode, resp.Header.Get("Location"), body, tc.want)
			}
		})
	}
}

// TestLoginAttemptCookies: what a start sets. The state cookie is sealed for
// its own name, scoped to the callback, as short-lived as the attempt; the
// marker is host-only (__Host-, Path=/) and tells the expiry and size.
func TestLoginAttemptCookies(t *testing.T) {
	idp := startIdP(t, nil, "")
	g := startGateway(t, idp, nil)
	b := newBrowser(t, g)
	before := time.Now()
	resp, _ := b.get(g.url + "/app?x=1")
	if resp.StatusCode != http.StatusFound {
		t.Fatalf("status %d, want 302", resp.StatusCode)
	}
	auth := mustURL(t, resp.Header.Get("Location"))
	id, _ := attemptIDOf(auth.Query().Get("state"))
	set := map[string]*http.Cookie{}
	for _, c := range resp.Cookies() {
		set[c.Name] = c
	}
	if len(set) != 2 {
		t.Fatalf("start set %v, want a state cookie and a marker", resp.Header["Set-Cookie"])
	}
	state, marker := set["__Secure-tollgate-main-login-"+id.String()], set["__Host-tollgate-main-pending-"+id.String()]
	if state == nil || marker == nil {
		t.Fatalf("start set %v, want the cookies of attempt %s", resp.Header["Set-Cookie"], id)
	}
	type attrs struct {
		Path                       string
		Secure, HttpOnly, HostOnly bool
		SameSite                   http.SameSite
	}
	for _, c := range []struct {
		c    *http.Cookie
		want attrs
	}{
		{state, attrs{"/.tollgate/oidc/callback", true, true, true, http.SameSiteLaxMode}},
		{marker, attrs{"/", true, true, true, http.SameSiteLaxMode}},
	} {
		got := attrs{c.c.Path, c.c.Secure, c.c.HttpOnly, c.c.Domain == "", c.c.SameSite}
		if diff := cmp.Diff(c.want, got); diff != "" {
			t.Errorf("%s (-want +got):\n%s", c.c.Name, diff)
		}
		if ttl := c.c.Expires.Sub(before); ttl < 9*time.Minute || ttl > 11*time.Minute {
			t.Errorf("%s expires in %v, want the attempt's 10m", c.c.Name, ttl)
		}
	}
	// Set-Cookie's Expires has whole seconds; the marker has milliseconds.
	exp, size, ok := parseMarkerValue(marker.Value)
	if !ok || exp/1000 != state.Expires.Unix() || size != len(state.Name)+1+len(state.Value) {
		t.Errorf("marker %q = (%d, %d, %v), want (%d…, %d)", marker.Value, exp, size, ok, state.Expires.Unix(), len(state.Name)+1+len(state.Value))
	}
	pt, err := g.login.keys.Load().open(cookieAAD(nil, state.Name, mustURL(t, g.url).Host), state.Value)
	if err != nil || !strings.Contains(string(pt), `"r":"/app?x=1"`) {
		t.Errorf("state cookie opens to %s, %v; want the attempt's state", pt, err)
	}
	if l := len(state.Name) + len(state.Value); l > 600 {
		t.Errorf("state cookie of a short return path: %d bytes", l)
	}
}

func TestAdmitAttempt(t *testing.T) {
	const now = 1_800_000_000_000 // ms
	id := func(n byte) attemptID { return attemptID{n} }
	p := func(n byte, expIn int64, size int) pendingLogin {
		return pendingLogin{id: id(n), expires: now + expIn, size: size}
	}
	ids := func(ps []pendingLogin) []byte {
		var out []byte
		for _, p := range ps {
			out = append(out, p.id[0])
		}
		return out
	}
	add := pendingLogin{id: id(99), expires: now + 600, size: 400}
	for _, tc := range []struct {
		name      string
		have      []pendingLogin
		add       pendingLogin
		wantEvict []byte
	}{
		{"none under way", nil, add, nil},
		{"room left", []pendingLogin{p(1, 10, 400), p(2, 20, 400)}, add, nil},
		{"N under way: the oldest ends", []pendingLogin{p(1, 80, 400), p(2, 70, 400), p(3, 60, 400), p(4, 50, 400),
			p(5, 40, 400), p(6, 30, 400), p(7, 20, 400), p(8, 10, 400)}, add, []byte{8}},
		{"expired ones end first, and make room", []pendingLogin{p(1, 80, 400), p(2, 0, 400), p(3, 60, 400), p(4, 50, 400),
			p(5, 40, 400), p(6, 30, 400), p(7, 20, 400), p(8, -10, 400)}, add, []byte{2, 8}},
		{"unreadable marker counts as expired", []pendingLogin{{id: id(1)}, p(2, 10, 400)}, add, []byte{1}},
		{"byte budget", []pendingLogin{p(1, 10, 3200), p(2, 20, 3200)}, pendingLogin{id: id(99), expires: now + 600, size: 3200}, []byte{1}},
		{"byte budget: several end", []pendingLogin{p(1, 10, 3000), p(2, 20, 3000), p(3, 30, 400)}, pendingLogin{id: id(99), expires: now + 600, size: 8000}, []byte{1, 2, 3}},
		{"the new attempt is always admitted", nil, pendingLogin{id: id(99), size: 1 << 15}, nil},
		{"the new attempt's own id is not evicted", []pendingLogin{p(99, 10, 400)}, add, nil},
		{"ties keep the order sent", []pendingLogin{p(1, 10, 400), p(2, 10, 400), p(3, 10, 400), p(4, 10, 400),
			p(5, 10, 400), p(6, 10, 400), p(7, 10, 400), p(8, 10, 400), p(9, 10, 400)}, add, []byte{1, 2}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if diff := cmp.Diff(tc.wantEvict, ids(admitAttempt(tc.have, tc.add, now))); diff != "" {
				t.Errorf("evicted (-want +got):\n%s", diff)
			}
		})
	}
}

func TestPendingLogins(t *testing.T) {
	keys, _ := NewSessionKeys(testKey(t))
	l, err := NewLogin(LoginConfig{Provider: ProviderConfig{Name: "main", Issuer: "http://127.0.0.1:1", ClientID: "c"}, Keys: keys})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	a, _ := attemptIDOf("a")
	b, _ := attemptIDOf("b")
	exp := time.UnixMilli(1_800_000_600_000)
	ma, mb := l.markerCookieName(a)+"="+markerValue(exp, 400), l.markerCookieName(b)+"="+markerValue(exp.Add(time.Second), 500)
	var many []string
	for i := range maxPendingScan + 5 {
		id, _ := attemptIDOf(fmt.Sprint(i))
		many = append(many, l.markerCookieName(id)+"="+markerValue(exp, 1))
	}
	for _, tc := range []struct {
		name  string
		lines []string
		want  []pendingLogin
		n     int // when want is nil: how many
	}{
		{"none", []string{"a=1; __Host-tollgate-main_0=x"}, nil, 0},
		{"two", []string{"x=1; " + ma + "; " + mb}, []pendingLogin{{a, 1_800_000_600_000, 400}, {b, 1_800_000_601_000, 500}}, 0},
		{"several lines (HTTP/2)", []string{ma, "y=2", mb}, []pendingLogin{{a, 1_800_000_600_000, 400}, {b, 1_800_000_601_000, 500}}, 0},
		{"duplicate: the first counts", []string{ma + "; " + l.markerCookieName(a) + "=" + markerValue(exp, 9)}, []pendingLogin{{a, 1_800_000_600_000, 400}}, 0},
		{"unreadable value: kept, as expired", []string{l.markerCookieName(a) + "=junk"}, []pendingLogin{{id: a}}, 0},
		{"not an id: not ours", []string{l.pendingPrefix + "short=AAAAAAAAAAE; " + l.pendingPrefix + a.String() + "x=AAAAAAAAAAE"}, nil, 0},
		{"another provider's", []string{"__Host-tollgate-other-pending-" + a.String() + "=" + markerValue(exp, 1)}, nil, 0},
		{"at most maxPendingScan", []string{strings.Join(many, "; ")}, nil, maxPendingScan},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := httptestRequest("GET", "https://gw.example/app", "")
			r.Header["Cookie"] = tc.lines
			got := l.pendingLogins(r)
			if tc.want == nil {
				if len(got) != tc.n {
					t.Errorf("%d markers, want %d", len(got), tc.n)
				}
				return
			}
			if diff := cmp.Diff(tc.want, got, cmp.AllowUnexported(pendingLogin{})); diff != "" {
				t.Errorf("markers (-want +got):\n%s", diff)
			}
		})
	}
}

func TestMarkerValue(t *testing.T) {
	for _, tc := range []struct {
		expires  time.Time
		size     int
		wantExp  int64
		wantSize int
	}{
		{time.Unix(1_800_000_000, 0), 412, 1_800_000_000_000, 412},
		{time.Unix(1_800_000_000, 1), 412, 1_800_000_000_001, 412}, // never shorter than the attempt
		{time.Unix(1_800_000_000, 2e6), 412, 1_800_000_000_002, 412},
		{time.UnixMilli(1 << 50), 1 << 20, 1<<48 - 1, 1<<16 - 1}, // clamped
		{time.Unix(-5, 0), -1, 1, 0},
	} {
		v := markerValue(tc.expires, tc.size)
		exp, size, ok := parseMarkerValue(v)
		if !ok || exp != tc.wantExp || size != tc.wantSize {
			t.Errorf("markerValue(%v, %d) = %q, parsed (%d, %d, %v), want (%d, %d)", tc.expires, tc.size, v, exp, size, ok, tc.wantExp, tc.wantSize)
		}
	}
	// Zero expiry; too short, too long; padding; not base64url; non-zero padding bits.
	for _, v := range []string{"", "AAAAAAAAAAA", "AAAAAAAAAA", "AAAAAAAAAAEA", "AAAAAAAAAA=", "AAAAAAAA+AE", "AAAAAAAAAAB"} {
		if _, _, ok := parseMarkerValue(v); ok {
			t.Errorf("parseMarkerValue(%q) accepted", v)
		}
	}
}

func TestSecurePrefixed(t *testing.T) {
	for in, want := range map[string]string{
		"__Host-tollgate-main": "__Secure-tollgate-main",
		"__host-x":             "__Secure-x",
		"__Secure-x":           "__Secure-x",
		"sess":                 "sess",
		"__Hos":                "__Hos",
	} {
		if got := securePrefixed(in); got != want {
			t.Errorf("securePrefixed(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestAttemptIDOf(t *testing.T) {
	a, okA := attemptIDOf("state-a")
	b, okB := attemptIDOf("state-b")
	if !okA || !okB || a == b || len(a.String()) != attemptIDText {
		t.Errorf("ids %s %v, %s %v: want two distinct %d-character ids", a, okA, b, okB, attemptIDText)
	}
	if again, _ := attemptIDOf("state-a"); again != a {
		t.Error("the id of a state is not stable")
	}
	if _, ok := attemptIDOf(""); ok {
		t.Error("an empty state has an id")
	}
	if _, ok := attemptIDOf(strings.Repeat("s", maxStateLen+1)); ok {
		t.Error("an overlong state has an id")
	}
	if id, ok := parseAttemptName("p-"+a.String(), "p-"); !ok || id != a {
		t.Errorf("parseAttemptName of %s = %s %v", a, id, ok)
	}
	if err := attemptError(nil, false, false); !errors.Is(err, ErrStateMissing) {
		t.Errorf("no cookies: %v", err)
	}
}
