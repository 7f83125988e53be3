package oidc

import (
	"bytes"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"
)

// partsFixture is a Login whose provider is never reachable (loopback port 1), on
// a fixed clock: a refresh it attempts opens the tokens part and then fails as
// transient, so the session goes on when its tokens part is sound.
type partsFixture struct {
	l   *Login
	log *errorLog
	now time.Time
}

func newPartsFixture(t *testing.T, keys *SessionKeys) *partsFixture {
	t.Helper()
	f := &partsFixture{log: &errorLog{}, now: time.Unix(1_800_000_000, 0)}
	l, err := NewLogin(LoginConfig{
		Provider: ProviderConfig{Name: "main", Issuer: "http://127.0.0.1:1", ClientID: "c"},
		Keys:     keys, DiscoveryTimeout: time.Millisecond, Logger: slog.New(f.log),
		Now: func() time.Time { return f.now },
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = l.Close() })
	f.l = l
	return f
}

// session returns a session of sub whose access token expires in accessIn, and its tokens.
func (f *partsFixture) session(sub string, accessIn time.Duration, accessToken string) (*session, *sessionTokens) {
	return &session{
			ID: newSessionID(), Created: f.now, Expires: f.now.Add(8 * time.Hour), AccessExpiry: f.now.Add(accessIn),
			Claims: []byte(`{"iss":"https://idp.example","sub":"` + sub + `"}`),
		}, &sessionTokens{
			IDToken: []byte("id." + sub + ".sig"), AccessToken: []byte(accessToken), RefreshToken: []byte("refresh-" + sub),
		}
}

// write seals a session as the gateway would and returns its cookies by name.
func (f *partsFixture) write(t *testing.T, s *session, tok *sessionTokens) map[string]*http.Cookie {
	t.Helper()
	rec := httptest.NewRecorder()
	if err := f.l.writeSession(rec, httptest.NewRequest("GET", "https://gw.example/", nil), s, tok, nil); err != nil {
		t.Fatal(err)
	}
	out := map[string]*http.Cookie{}
	for _, c := range rec.Result().Cookies() {
		if !c.Secure || !c.HttpOnly || c.SameSite != http.SameSiteLaxMode || c.Path != "/" || c.Domain != "" {
			t.Errorf("cookie %s attributes: %+v", c.Name, c)
		}
		out[c.Name] = c
	}
	return out
}

const (
	mainChunk0   = "__Host-tollgate-main_0"
	tokensChunk0 = "__Host-tollgate-main-tokens_0"
	tokensChunk1 = "__Host-tollgate-main-tokens_1"
)

func tamper(c *http.Cookie) *http.Cookie {
	v := []byte(c.Value)
	i := len(v) / 2
	if v[i] == 'A' {
		v[i] = 'B'
	} else {
		v[i] = 'A'
	}
	return &http.Cookie{Name: c.Name, Value: string(v)}
}

func TestSessionParts(t *testing.T) {
	f := newPartsFixture(t, mustKeys(t, testKey(t)))
	alice, aliceTok := f.session("alice", time.Hour, "at-alice")
	a := f.write(t, alice, aliceTok)
	a2 := f.write(t, alice, aliceTok) // the same session sealed again, as a refresh does
	bobS, bobTok := f.session("bob", time.Hour, "at-bob")
	b := f.write(t, bobS, bobTok)
	due, dueTok := f.session("carol", 30*time.Second, "at-carol") // within RefreshBefore: the tokens part is opened
	d := f.write(t, due, dueTok)
	big, bigTok := f.session("dave", 30*time.Second, strings.Repeat("t", 5000))
	g := f.write(t, big, bigTok)
	if g[tokensChunk1] == nil {
		t.Fatalf("big tokens part not chunked: %v", g)
	}
	// A per-request part naming alice's tokens seal but carrying another session
	// ID: only the key holder could make it; it tests the second, sealed binding.
	forged := *due
	forged.ID, forged.Refreshable = newSessionID(), true
	forged.Tokens, _ = sealIDOf(d[tokensChunk0].Value)
	forged.TokensLen = len(d[tokensChunk0].Value)
	fv, err := f.l.keys.Load().seal(cookieAAD(nil, f.l.cookieName, "gw.example"), forged.marshal())
	if err != nil {
		t.Fatal(err)
	}
	foreign := newPartsFixture(t, unknownKeys(t, f.l.keys.Load())).write(t, alice, aliceTok)

	for _, tc := range []struct {
		name    string
		cookies []*http.Cookie
		wantSub string // "" : no session
		wantErr error  // logged when the session is refused
	}{
		{"intact", []*http.Cookie{a[mainChunk0], a[tokensChunk0]}, "alice", nil},
		{"intact, refresh due (tokens part opened)", []*http.Cookie{d[mainChunk0], d[tokensChunk0]}, "carol", nil},
		{"intact, tokens part in two chunks", []*http.Cookie{g[mainChunk0], g[tokensChunk0], g[tokensChunk1]}, "dave", nil},
		{"per-request part tampered", []*http.Cookie{tamper(a[mainChunk0]), a[tokensChunk0]}, "", ErrSealInvalid},
		{"tokens part missing", []*http.Cookie{a[mainChunk0]}, "", ErrSessionTokens},
		{"tokens part alone", []*http.Cookie{a[tokensChunk0]}, "", ErrSessionTokens},
		{"tokens part of another session", []*http.Cookie{a[mainChunk0], b[tokensChunk0]}, "", ErrSessionTokens},
		{"tokens part of an earlier seal", []*http.Cookie{a2[mainChunk0], a[tokensChunk0]}, "", ErrSessionTokens},
		{"tokens part truncated (chunk missing)", []*http.Cookie{g[mainChunk0], g[tokensChunk0]}, "", ErrSessionTokens},
		{"tokens part as the per-request part", []*http.Cookie{{Name: mainChunk0, Value: a[tokensChunk0].Value}, a[tokensChunk0]}, "", ErrSealInvalid},
		// Not opened on the request path while the access token is fresh: its
		// alteration is found when a refresh or logout opens it.
		{"tokens part tampered, refresh not due", []*http.Cookie{a[mainChunk0], tamper(a[tokensChunk0])}, "alice", nil},
		{"tokens part tampered, refresh due", []*http.Cookie{d[mainChunk0], tamper(d[tokensChunk0])}, "", ErrSealInvalid},
		{"tokens part bound by nonce but not by session id", []*http.Cookie{{Name: mainChunk0, Value: fv}, d[tokensChunk0]}, "", ErrSessionTokens},
		{"both parts sealed with an unknown key", []*http.Cookie{foreign[mainChunk0], foreign[tokensChunk0]}, "", ErrSealUnknownKey},
		{"planted second per-request part", []*http.Cookie{a[mainChunk0], b[mainChunk0], a[tokensChunk0]}, "", ErrSealInvalid},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f.log.mu.Lock()
			f.log.errs = nil
			f.log.mu.Unlock()
			r := httptest.NewRequest("GET", "https://gw.example/app", nil)
			for _, c := range tc.cookies {
				r.AddCookie(c)
			}
			w := httptest.NewRecorder()
			auth, out := f.l.Authenticate(w, r)
			if tc.wantSub != "" {
				if out != Authenticated || auth.Subject != tc.wantSub {
					t.Fatalf("outcome %v auth %+v, want %s authenticated (log %v)", out, auth, tc.wantSub, f.log.all())
				}
				if sc := w.Header()["Set-Cookie"]; len(sc) != 0 {
					t.Errorf("a sound session was rewritten or cleared: %v", sc)
				}
				return
			}
			if out != Unauthenticated || auth != nil {
				t.Fatalf("outcome %v auth %+v, want no session", out, auth)
			}
			if !f.log.has(tc.wantErr) {
				t.Errorf("log has %v, want %v", f.log.all(), tc.wantErr)
			}
			// Both parts sent are cleared, whichever was at fault.
			cleared := map[string]bool{}
			for _, c := range w.Result().Cookies() {
				if c.MaxAge < 0 {
					cleared[c.Name] = true
				}
			}
			for _, c := range tc.cookies {
				if !cleared[c.Name] {
					t.Errorf("%s not cleared: %v", c.Name, w.Header()["Set-Cookie"])
				}
			}
		})
	}
}

// unknownKeys makes a key whose key-id hint differs from every key of known, so
// opening its values fails as unknown rather than (1 in 256) as a failed decryption.
func unknownKeys(t *testing.T, known *SessionKeys) *SessionKeys {
	t.Helper()
	for range 1000 {
		k := mustKeys(t, testKey(t))
		if !slices.ContainsFunc(known.keys, func(x sessionKey) bool { return x.id == k.keys[0].id }) {
			return k
		}
	}
	t.Fatal("no key with a fresh id in 1000 tries")
	return nil
}

func mustKeys(t *testing.T, keys ...[]byte) *SessionKeys {
	t.Helper()
	k, err := NewSessionKeys(keys...)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// TestSessionPartsKeyRotation: both parts open under a key set that still holds
// the sealing key, and neither once it is gone.
func TestSessionPartsKeyRotation(t *testing.T) {
	oldKey, newKey := testKey(t), testKey(t)
	f := newPartsFixture(t, mustKeys(t, oldKey))
	s, tok := f.session("alice", 30*time.Second, "at")
	cs := f.write(t, s, tok)
	open := func() (*sessionTokens, error) {
		r := httptest.NewRequest("GET", "https://gw.example/app", nil)
		r.AddCookie(cs[mainChunk0])
		r.AddCookie(cs[tokensChunk0])
		var c sessionCookies
		s, err := f.l.readSession(r, &c)
		if err != nil {
			return nil, err
		}
		return f.l.openTokens(r, s, &c)
	}
	f.l.SetKeys(mustKeys(t, newKey, oldKey))
	if got, err := open(); err != nil || !bytes.Equal(got.RefreshToken, tok.RefreshToken) {
		t.Fatalf("after rotation: tokens %+v err %v, want the refresh token", got, err)
	}
	f.l.SetKeys(mustKeys(t, newKey))
	if _, err := open(); err != ErrSealUnknownKey {
		t.Fatalf("old key removed: err %v, want %v", err, ErrSealUnknownKey)
	}
}

// TestLogoutParts: logout clears both parts whatever state they are in, and the
// cookies of a login under way, and sends the ID token hint only from a tokens
// part that is this session's.
func TestLogoutParts(t *testing.T) {
	f := newPartsFixture(t, mustKeys(t, testKey(t)))
	s, tok := f.session("alice", time.Hour, "at")
	a := f.write(t, s, tok)
	bs, btok := f.session("bob", time.Hour, "at")
	b := f.write(t, bs, btok)
	for _, tc := range []struct {
		name    string
		cookies []*http.Cookie
		wantIDT string
	}{
		{"intact", []*http.Cookie{a[mainChunk0], a[tokensChunk0]}, "id.alice.sig"},
		{"tokens part of another session", []*http.Cookie{a[mainChunk0], b[tokensChunk0]}, ""},
		{"tokens part tampered", []*http.Cookie{a[mainChunk0], tamper(a[tokensChunk0])}, ""},
		{"no cookies", nil, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := httptest.NewRequest("POST", "https://gw.example/.tollgate/oidc/logout", nil)
			for _, c := range tc.cookies {
				r.AddCookie(c)
			}
			pending, _ := attemptIDOf("a login under way in another tab")
			r.AddCookie(&http.Cookie{Name: f.l.markerCookieName(pending), Value: markerValue(f.now.Add(time.Minute), 400)})
			var c sessionCookies
			var idt []byte
			if s, err := f.l.readSession(r, &c); err == nil && s != nil {
				if tok, err := f.l.openTokens(r, s, &c); err == nil {
					idt = tok.IDToken
				}
			}
			if string(idt) != tc.wantIDT {
				t.Errorf("id token hint %q, want %q", idt, tc.wantIDT)
			}
			w := httptest.NewRecorder()
			if !f.l.ServeReserved(w, r) {
				t.Fatal("logout not served")
			}
			cleared := map[string]bool{}
			for _, c := range w.Result().Cookies() {
				cleared[c.Name+" "+c.Path] = c.MaxAge < 0
			}
			for _, n := range []string{mainChunk0 + " /", tokensChunk0 + " /",
				f.l.markerCookieName(pending) + " /", f.l.stateCookieName(pending) + " /.tollgate/oidc/callback"} {
				if !cleared[n] {
					t.Errorf("%s not cleared: %v", n, w.Header()["Set-Cookie"])
				}
			}
		})
	}
}
