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
func benchSession() *session {
	jwt := func(n int) []byte {
		return []byte("eyJhbGciOiJSUzI1NiIsImtpZCI6InRlc3QifQ." + strings.Repeat("x", n) + "." + strings.Repeat("s", 342))
	}
	return &session{
		Created: time.Now(), Expires: time.Now().Add(8 * time.Hour), AccessExpiry: time.Now().Add(time.Hour),
		Claims: []byte(`{"iss":"https://idp.example.com","sub":"248289761001","aud":"tollgate","azp":"tollgate",` +
			`"exp":1700003600,"iat":1700000000,"auth_time":1700000000,"email":"alice@example.org","email_verified":true,` +
			`"name":"Alice Example","preferred_username":"alice","groups":["dev","admins"],"sid":"08a5019c-17e1-4977-8f42-65a12843ea02"}`),
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

func sessionRequest(b *testing.B, l *Login, s *session) *http.Request {
	rec := httptest.NewRecorder()
	r := httptest.NewRequest("GET", "https://gw.example/app", nil)
	if err := l.writeSession(rec, r, s, 0); err != nil {
		b.Fatal(err)
	}
	for _, c := range rec.Result().Cookies() {
		r.AddCookie(c)
	}
	r.AddCookie(&http.Cookie{Name: "app", Value: "other"})
	return r
}

// BenchmarkSessionOpen: Cookie header → chunks joined → AES-256-GCM open → decoded
// session (the per-request cost of a session, before claims become a map).
func BenchmarkSessionOpen(b *testing.B) {
	l := benchLogin(b)
	r := sessionRequest(b, l, benchSession())
	b.ReportAllocs()
	defer reportCPU(b)()
	for b.Loop() {
		if _, _, err := l.readSession(r); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkSessionAuthenticate: the whole Authenticate call, claims decoded into
// the request.Auth that policy reads.
func BenchmarkSessionAuthenticate(b *testing.B) {
	l := benchLogin(b)
	r := sessionRequest(b, l, benchSession())
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
	s := benchSession()
	r := httptest.NewRequest("GET", "https://gw.example/app", nil)
	b.ReportAllocs()
	defer reportCPU(b)()
	for b.Loop() {
		w := httptest.NewRecorder()
		if err := l.writeSession(w, r, s, 0); err != nil {
			b.Fatal(err)
		}
	}
}

func TestBenchSessionSize(t *testing.T) {
	keys, _ := NewSessionKeys(bytes.Repeat([]byte{1}, SessionKeyLen))
	v, err := keys.seal(nil, benchSession().marshal())
	if err != nil {
		t.Fatal(err)
	}
	// A typical session must fit in one or two chunks.
	if n := (len(v) + maxChunkLen - 1) / maxChunkLen; n > 2 {
		t.Errorf("typical session needs %d chunks (%d bytes sealed)", n, len(v))
	}
	if _, err := base64.RawURLEncoding.DecodeString(v); err != nil {
		t.Errorf("sealed value is not base64url: %v", err)
	}
}
