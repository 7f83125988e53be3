package oidc

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"runtime"
	"testing"
	"time"
)

func authenticate(au *Authenticator, tok string) error {
	_, err := authRequest(au, bearer(httptest.NewRequest("GET", "/", nil), tok))
	return err
}

func TestJWKSEndpointFailures(t *testing.T) {
	good := rsaToken(t, goodClaims())
	tests := []struct {
		name    string
		tls     bool
		setup   func(s *jwksServer)
		timeout string
		wantErr error
		maxWait time.Duration
	}{
		{name: "plain http ok", setup: func(s *jwksServer) {}},
		{name: "tls ok", tls: true, setup: func(s *jwksServer) {}},
		{name: "down", tls: true, setup: func(s *jwksServer) { s.Close() }, wantErr: errNoKeys},
		{name: "500", setup: func(s *jwksServer) { s.set("oops", 500, 0) }, wantErr: errNoKeys},
		{name: "garbage", tls: true, setup: func(s *jwksServer) { s.set("<html>not json</html>", 200, 0) }, wantErr: errNoKeys},
		{name: "no usable keys", setup: func(s *jwksServer) { s.set(`{"keys":[{"kty":"RSA","n":"AQAB","e":"AQAB"}]}`, 200, 0) }, wantErr: errNoKeys},
		{name: "oversized", setup: func(s *jwksServer) { s.set(`{"keys":[],"x":"`+string(make([]byte, maxJWKSBytes))+`"}`, 200, 0) }, wantErr: errNoKeys},
		{name: "slow", tls: true, timeout: "200ms", setup: func(s *jwksServer) { s.set(defaultJWKS(), 200, 3*time.Second) },
			wantErr: errNoKeys, maxWait: 2 * time.Second},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			srv := newJWKSServer(t, tc.tls, defaultJWKS())
			tc.setup(srv)
			keys := newTestKeyCache(t, srv.Server, KeyCacheOptions{})
			extra := ""
			if tc.timeout != "" {
				extra = "    timeout: " + tc.timeout + "\n"
			}
			au := mustCompile(t, istioDoc(srv.URL+"/jwks", extra), Options{Keys: keys}).ForListener(nil)
			start := time.Now()
			err := authenticate(au, good)
			if !errors.Is(err, tc.wantErr) || (tc.wantErr == nil) != (err == nil) {
				t.Fatalf("err = %v, want %v", err, tc.wantErr)
			}
			var ae *Error
			if err != nil && (!errors.As(err, &ae) || ae.Status != 401 || ae.Reason != "invalid token") {
				t.Errorf("err = %#v, want 401 invalid token", err)
			}
			if tc.maxWait > 0 && time.Since(start) > tc.maxWait {
				t.Errorf("took %s, want at most %s", time.Since(start), tc.maxWait)
			}
		})
	}
}

func TestJWKSRequestContextBoundsWait(t *testing.T) {
	srv := newJWKSServer(t, false, defaultJWKS())
	srv.set(defaultJWKS(), 200, 3*time.Second)
	keys := newTestKeyCache(t, srv.Server, KeyCacheOptions{})
	au := mustCompile(t, istioDoc(srv.URL, "    timeout: 10s\n"), Options{Keys: keys}).ForListener(nil)
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	r := bearer(httptest.NewRequestWithContext(ctx, "GET", "/", nil), rsaToken(t, goodClaims()))
	start := time.Now()
	_, err := authRequest(au, r)
	if !errors.Is(err, errNoKeys) {
		t.Fatalf("err = %v, want %v", err, errNoKeys)
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("waited %s past the request's deadline", d)
	}
}

func TestJWKSKeepsLastGoodKeys(t *testing.T) {
	srv := newJWKSServer(t, true, defaultJWKS())
	keys := newTestKeyCache(t, srv.Server, KeyCacheOptions{MaxStale: 2 * time.Second, RefetchInterval: time.Millisecond})
	a := mustCompile(t, istioDoc(srv.URL, ""), Options{Keys: keys, TokenCacheSize: -1})
	waitKeys(t, a)
	au := a.ForListener(nil)
	good := rsaToken(t, goodClaims())
	srv.set("garbage", 200, 0)
	rk := a.rules[0].remote
	if rk.refresh(context.Background(), true) {
		t.Fatal("refresh from a garbage endpoint succeeded")
	}
	if err := authenticate(au, good); err != nil {
		t.Fatalf("last good keys not used: %v", err)
	}
	time.Sleep(2200 * time.Millisecond)
	if err := authenticate(au, good); !errors.Is(err, errNoKeys) {
		t.Fatalf("after MaxStale err = %v, want %v", err, errNoKeys)
	}
	srv.set(defaultJWKS(), 200, 0)
	time.Sleep(10 * time.Millisecond) // past RefetchInterval
	if err := authenticate(au, good); err != nil {
		t.Fatalf("after the issuer recovers: %v", err)
	}
}

func TestJWKSUnknownKidRefetchIsRateLimited(t *testing.T) {
	k := getTestKeys()
	srv := newJWKSServer(t, true, jwksJSON(publicJWK("ec1", &k.ec.PublicKey)))
	keys := newTestKeyCache(t, srv.Server, KeyCacheOptions{RefetchInterval: time.Hour})
	a := mustCompile(t, istioDoc(srv.URL, ""), Options{Keys: keys})
	waitKeys(t, a)
	au := a.ForListener(nil)
	base := srv.hits.Load()

	// The issuer rotates in rsa1; the first token naming it triggers a refetch.
	srv.set(defaultJWKS(), 200, 0)
	if err := authenticate(au, rsaToken(t, goodClaims())); err != nil {
		t.Fatalf("rotated key: %v", err)
	}
	if got := srv.hits.Load() - base; got != 1 {
		t.Fatalf("fetches after rotation = %d, want 1", got)
	}
	// A flood of unknown kids, concurrently, causes no further fetch.
	errs := make(chan error, 50)
	for i := range 50 {
		go func() {
			errs <- authenticate(au, signToken(t, map[string]any{"alg": "RS256", "kid": fmt.Sprintf("k%d", i)}, goodClaims(), k.rsa))
		}()
	}
	for range 50 {
		if err := <-errs; !errors.Is(err, errUnknownKid) {
			t.Fatalf("err = %v, want %v", err, errUnknownKid)
		}
	}
	if got := srv.hits.Load() - base; got != 1 {
		t.Errorf("fetches after the flood = %d, want still 1", got)
	}
}

func TestJWKSSharedAcrossReloads(t *testing.T) {
	srv := newJWKSServer(t, true, defaultJWKS())
	keys := newTestKeyCache(t, srv.Server, KeyCacheOptions{})
	a1 := mustCompile(t, istioDoc(srv.URL, ""), Options{Keys: keys})
	waitKeys(t, a1)
	hits := srv.hits.Load()
	srv.set("", 503, 0) // a reload must not need the issuer
	a2 := mustCompile(t, istioDoc(srv.URL, ""), Options{Keys: keys})
	if a1.rules[0].remote != a2.rules[0].remote {
		t.Fatal("reload created a second key source for the same URI")
	}
	if err := authenticate(a2.ForListener(nil), rsaToken(t, goodClaims())); err != nil {
		t.Fatalf("after reload: %v", err)
	}
	if got := srv.hits.Load(); got != hits {
		t.Errorf("reload fetched %d times", got-hits)
	}
}

func TestJWKSDiscovery(t *testing.T) {
	var issuer string
	mux := http.NewServeMux()
	srv := httptest.NewTLSServer(mux)
	defer srv.Close()
	discoveryIssuer := ""
	mux.HandleFunc("/.well-known/openid-configuration", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, `{"issuer":%q,"jwks_uri":%q}`, discoveryIssuer, srv.URL+"/keys")
	})
	mux.HandleFunc("/keys", func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, defaultJWKS()) })
	issuer = srv.URL
	doc := fmt.Sprintf("apiVersion: security.istio.io/v1\nkind: RequestAuthentication\nmetadata: {name: d}\nspec:\n  jwtRules:\n  - issuer: %s\n", issuer)
	tok := rsaToken(t, with(goodClaims(), "iss", issuer))
	for _, tc := range []struct {
		name    string
		named   string
		wantErr error
	}{
		{name: "matching issuer", named: issuer},
		{name: "document names another issuer", named: "https://evil.test", wantErr: errNoKeys},
	} {
		t.Run(tc.name, func(t *testing.T) {
			discoveryIssuer = tc.named
			keys := newTestKeyCache(t, srv, KeyCacheOptions{})
			au := mustCompile(t, doc, Options{Keys: keys}).ForListener(nil)
			if err := authenticate(au, tok); !errors.Is(err, tc.wantErr) || (err == nil) != (tc.wantErr == nil) {
				t.Fatalf("err = %v, want %v", err, tc.wantErr)
			}
		})
	}
}

func TestKeyCacheCloseStopsGoroutines(t *testing.T) {
	before := runtime.NumGoroutine()
	srv := newJWKSServer(t, false, defaultJWKS())
	keys := NewKeyCache(KeyCacheOptions{Client: srv.Client()})
	for i := range 5 {
		keys.source(fmt.Sprintf("%s/%d", srv.URL, i), "", time.Second)
	}
	keys.Close()
	keys.Close() // idempotent
	srv.Client().CloseIdleConnections()
	srv.Close()
	deadline := time.Now().Add(2 * time.Second)
	for runtime.NumGoroutine() > before && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if n := runtime.NumGoroutine(); n > before {
		t.Errorf("goroutines: %d before, %d after Close", before, n)
	}
	// A closed cache starts nothing new.
	rk := keys.source(srv.URL+"/late", "", time.Second)
	if _, err := rk.keys(context.Background(), ""); !errors.Is(err, errNoKeys) {
		t.Errorf("closed cache: err = %v, want %v", err, errNoKeys)
	}
}

// TestJWKSRedirects: a JWKS fetched over https can't be redirected to plain http
// (a network attacker could then serve its own keys), and chains are short.
func TestJWKSRedirects(t *testing.T) {
	req := func(u string) *http.Request { return httptest.NewRequest("GET", u, nil) }
	for _, tc := range []struct {
		name string
		to   string
		via  []string
		ok   bool
	}{
		{"https to https", "https://b.test/keys", []string{"https://a.test/keys"}, true},
		{"https to http", "http://b.test/keys", []string{"https://a.test/keys"}, false},
		{"downgrade later in the chain", "http://c.test/keys", []string{"https://a.test/keys", "https://b.test/keys"}, false},
		{"http issuer (loopback) to http", "http://127.0.0.1:2/keys", []string{"http://127.0.0.1:1/keys"}, true},
		{"fourth hop", "https://d.test/keys", []string{"https://a.test/keys", "https://b.test/keys", "https://c.test/keys"}, false},
	} {
		var via []*http.Request
		for _, u := range tc.via {
			via = append(via, req(u))
		}
		if err := checkJWKSRedirect(req(tc.to), via); (err == nil) != tc.ok {
			t.Errorf("%s: err = %v, want ok=%v", tc.name, err, tc.ok)
		}
	}
}
