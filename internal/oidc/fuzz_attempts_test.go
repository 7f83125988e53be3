package oidc

import (
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"
)

// FuzzLoginAttemptCookies feeds the callback and the start untrusted Cookie
// headers and state parameters: the markers' names and values
// (pendingLogins), the bound (admitAttempt) and the state cookie the state
// names (readState).
//
// Properties:
//   - at most maxPendingScan markers are read, one per id, each id the one
//     its name spells, each readable value markerValue's canonical form;
//   - admitting an attempt ends only attempts the request showed, never the
//     new one, and leaves at most maxPendingLogins under way within
//     maxPendingBytes (or the new one alone);
//   - a state is accepted only with the state cookie and marker its id names,
//     and the state sealed in that cookie is the one the callback got.
func FuzzLoginAttemptCookies(f *testing.F) {
	keys, err := NewSessionKeys(testKey(f))
	if err != nil {
		f.Fatal(err)
	}
	now := time.Unix(1_800_000_000, 0)
	l, err := NewLogin(LoginConfig{
		Provider: ProviderConfig{Name: "main", Issuer: "http://127.0.0.1:1", ClientID: "c"},
		Keys:     keys, DiscoveryTimeout: time.Millisecond, Now: func() time.Time { return now },
	})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { _ = l.Close() })
	request := func(cookie, state string) *http.Request {
		r := httptest.NewRequest("GET", "https://gw.example/.tollgate/oidc/callback?state="+url.QueryEscape(state), nil)
		if cookie != "" {
			r.Header.Set("Cookie", cookie)
		}
		return r
	}
	// Genuine attempts: two under way in one browser, as a start sets them.
	var header []string
	var states []string
	for _, rd := range []string{"/one", "/two?x=1"} {
		w := httptest.NewRecorder()
		st, err := l.beginAttempt(w, request(strings.Join(header, "; "), ""), rd)
		if err != nil {
			f.Fatal(err)
		}
		for _, c := range w.Result().Cookies() {
			header = append(header, c.Name+"="+c.Value)
		}
		states = append(states, st.State)
	}
	all := strings.Join(header, "; ")
	f.Add(all, states[0])
	f.Add(all, states[1])
	f.Add(header[0]+"; "+header[1], states[1]) // one attempt's cookies, the other's state
	f.Add(header[0], states[0])                // no marker
	f.Add(header[1], states[0])                // no state cookie
	f.Add(all, "")
	f.Add("__Host-tollgate-main-pending-AAAAAAAAAAAAAAAAAAAAAA=AAAAAAAAAAE; __Host-tollgate-main-pending-AAAAAAAAAAAAAAAA=junk; __Host-tollgate-main-pending-AAAAAAAAAAAAAAAB=AZeP3-vgAQA", "x")
	f.Add("__Secure-tollgate-main-login-AAAAAAAAAAAAAAAA=AQ; a=b;;=;", "s")
	f.Fuzz(func(t *testing.T, cookie, state string) {
		r := request(cookie, state)
		pending := l.pendingLogins(r)
		if len(pending) > maxPendingScan {
			t.Fatalf("%d markers read, at most %d", len(pending), maxPendingScan)
		}
		seen := map[attemptID]bool{}
		for _, p := range pending {
			if seen[p.id] {
				t.Fatalf("marker %s read twice", p.id)
			}
			seen[p.id] = true
			if id, ok := parseAttemptName(l.markerCookieName(p.id), l.pendingPrefix); !ok || id != p.id {
				t.Fatalf("marker name of %s reads as %s %v", p.id, id, ok)
			}
			if p.expires != 0 {
				if e, size, ok := parseMarkerValue(markerValue(time.UnixMilli(p.expires), p.size)); !ok || e != p.expires || size != p.size {
					t.Fatalf("marker value (%d, %d) does not round-trip: (%d, %d, %v)", p.expires, p.size, e, size, ok)
				}
			}
		}

		add := pendingLogin{id: attemptID{0xff, 0xfe}, expires: now.Add(10 * time.Minute).UnixMilli(), size: 400}
		evict := admitAttempt(pending, add, now.UnixMilli())
		gone := map[attemptID]bool{}
		for _, p := range evict {
			if p.id == add.id || !seen[p.id] || gone[p.id] {
				t.Fatalf("evicted %s: the new attempt, one not under way, or twice", p.id)
			}
			gone[p.id] = true
		}
		count, total := 1, add.size
		for _, p := range pending {
			if !gone[p.id] && p.id != add.id {
				if p.expires <= now.UnixMilli() {
					t.Fatalf("expired attempt %s kept", p.id)
				}
				count, total = count+1, total+p.size
			}
		}
		if count > maxPendingLogins || (count > 1 && total > maxPendingBytes) {
			t.Fatalf("after admitting: %d under way, %d bytes", count, total)
		}

		id, ok := attemptIDOf(state)
		st, err := l.readState(r, id, ok)
		if err != nil {
			return
		}
		if st.State != state {
			t.Fatalf("state %q accepted with the cookie of state %q", state, st.State)
		}
		if !strings.Contains(cookie, l.stateCookieName(id)+"=") || !strings.Contains(cookie, l.markerCookieName(id)+"=") {
			t.Fatalf("state %q accepted without both of its cookies in %q", state, cookie)
		}
	})
}
