package oidc

import (
	"bytes"
	"encoding/base64"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// benchSession is sized like a real one: an RS256 ID token and JWT access token of
// ~1 KB each, an opaque refresh token, a dozen claims.
func benchSession() (*session, *sessionTokens) {
	jwt := func(n int) []byte {
		return []byte("eyJhbGciOiJSUzI1NiIsImtpZCI6InRlc3QifQ." + strings.Repeat("x", n) + "." + strings.Repeat("s", 342))
	}
	return &session{
			ID:      newSessionID(),
			Created: time.Now(), Expires: time.Now().Add(8 * time.Hour), AccessExpiry: time.Now().Add(time.Hour),
			Claims: []byte(`{"iss":"https://idp.example.com","sub":"248289761001","aud":"tollgate","azp":"tollgate",` +
				`"exp":1700003600,"iat":1700000000,"auth_time":1700000000,"email":"alice@example.org","email_verified":true,` +
				`"name":"Alice Example","preferred_username":"alice","groups":["dev","admins"],"sid":"08a5019c-17e1-4977-8f42-65a12843ea02"}`),
		}, &sessionTokens{
			IDToken:      jwt(600),
			AccessToken:  jwt(550),
			RefreshToken: []byte(strings.Repeat("r", 43)),
		}
}

func benchLogin(b *testing.B) *Login {
	keys, err := NewSessionKeys(bytes.Repeat([]byte{1}, SessionKeyLen), bytes.Repeat([]byte{2}, SessionKeyLen))
	if err != nil {
		b.Fatal(err)
	}
	l, err := NewLogin(LoginConfig{Provider: ProviderConfig{Name: "main", Issuer: "http://127.0.0.1:1", ClientID: "c"},
		Keys: keys, DiscoveryTimeout: time.Millisecond})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = l.Close() })
	return l
}

func sessionRequest(b *testing.B, l *Login) *http.Request {
	s, t := benchSession()
	rec := httptest.NewRecorder()
	r := httptest.NewRequest("GET", "https://gw.example/app", nil)
	if err := l.writeSession(rec, r, s, t, nil); err != nil {
		b.Fatal(err)
	}
	for _, c := range rec.Result().Cookies() {
		r.AddCookie(c)
	}
	r.AddCookie(&http.Cookie{Name: "app", Value: "other"})
	return r
}

// BenchmarkSessionOpen: what every request does with a session: the Cookie header
// (both parts and another cookie) → the per-request part's chunks decoded →
// AES-256-GCM open → decoded session, and the tokens part checked to be its pair
// (not opened). The per-request cost of a session, before claims become a map.
func BenchmarkSessionOpen(b *testing.B) {
	l := benchLogin(b)
	r := sessionRequest(b, l)
	b.ReportAllocs()
	defer reportCPU(b)()
	for b.Loop() {
		var c sessionCookies
		if s, err := l.readSession(r, &c); err != nil || s == nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkSessionOpenTokens: opening the tokens part too, as a refresh and a
// logout do (not on the request path).
func BenchmarkSessionOpenTokens(b *testing.B) {
	l := benchLogin(b)
	r := sessionRequest(b, l)
	b.ReportAllocs()
	defer reportCPU(b)()
	for b.Loop() {
		var c sessionCookies
		s, err := l.readSession(r, &c)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := l.openTokens(r, s, &c); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkSessionAuthenticate: the whole Authenticate call, claims decoded into
// the request.Auth that policy reads.
func BenchmarkSessionAuthenticate(b *testing.B) {
	l := benchLogin(b)
	r := sessionRequest(b, l)
	w := httptest.NewRecorder()
	b.ReportAllocs()
	defer reportCPU(b)()
	for b.Loop() {
		if _, out := l.Authenticate(w, r); out != Authenticated {
			b.Fatal(out)
		}
	}
}

// BenchmarkSessionSeal: encode + seal + Set-Cookie headers (login and refresh only).
func BenchmarkSessionSeal(b *testing.B) {
	l := benchLogin(b)
	s, t := benchSession()
	r := httptest.NewRequest("GET", "https://gw.example/app", nil)
	b.ReportAllocs()
	defer reportCPU(b)()
	for b.Loop() {
		w := httptest.NewRecorder()
		if err := l.writeSession(w, r, s, t, nil); err != nil {
			b.Fatal(err)
		}
	}
}

func TestBenchSessionSize(t *testing.T) {
	keys, _ := NewSessionKeys(bytes.Repeat([]byte{1}, SessionKeyLen))
	s, tok := benchSession()
	for _, tc := range []struct {
		name      string
		plaintext []byte
		maxChunks int
		maxLen    int
	}{
		// The per-request part is what every request decrypts: it must stay small.
		{"per-request part", s.marshal(), 1, 1024},
		{"tokens part", tok.marshal(), 2, 2 * maxChunkLen},
	} {
		v, err := keys.seal(nil, tc.plaintext)
		if err != nil {
			t.Fatal(err)
		}
		if n := chunkCount(v); n > tc.maxChunks || len(v) > tc.maxLen {
			t.Errorf("typical %s: %d chunks, %d bytes sealed; want <= %d chunks, <= %d bytes", tc.name, n, len(v), tc.maxChunks, tc.maxLen)
		}
		if _, err := base64.RawURLEncoding.DecodeString(v); err != nil {
			t.Errorf("%s: sealed value is not base64url: %v", tc.name, err)
		}
	}
}
