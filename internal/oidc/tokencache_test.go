package oidc

import (
	"context"
	"crypto/sha256"
	"fmt"
	"net/http/httptest"
	"testing"
	"time"
)

func TestTokenCacheExpiryAndBound(t *testing.T) {
	now := testNow
	c := newTokenCache(100)
	key := func(i int) [sha256.Size]byte { return sha256.Sum256(fmt.Appendf(nil, "t%d", i)) }
	tests := []struct {
		name    string
		expires time.Time
		at      time.Time
		wantHit bool
	}{
		{name: "before exp", expires: now.Add(time.Minute), at: now.Add(59 * time.Second), wantHit: true},
		{name: "at exp", expires: now.Add(time.Minute), at: now.Add(time.Minute)},
		{name: "no exp, within max TTL", at: now.Add(maxTokenCacheTTL - time.Second), wantHit: true},
		{name: "no exp, past max TTL", at: now.Add(maxTokenCacheTTL)},
		{name: "far exp capped by max TTL", expires: now.Add(24 * time.Hour), at: now.Add(maxTokenCacheTTL)},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c.put(key(i), cachedToken{expires: tc.expires}, now)
			if _, hit := c.get(key(i), tc.at); hit != tc.wantHit {
				t.Errorf("hit = %v, want %v", hit, tc.wantHit)
			}
		})
	}
	c.put(key(-1), cachedToken{expires: now.Add(-time.Second)}, now)
	if _, hit := c.get(key(-1), now); hit {
		t.Error("an already expired token was cached")
	}
	for i := range 1000 {
		c.put(key(i), cachedToken{}, now)
		if n := c.len(); n > 100 {
			t.Fatalf("cache holds %d entries, bound 100", n)
		}
	}
	if newTokenCache(-1) != nil {
		t.Error("negative size should disable the cache")
	}
}

// TestTokenCacheSkipsSignatureButNotClaims verifies a not-yet-valid token
// (refused, but its signature is now known good), then withdraws the key: once
// the clock reaches nbf the token passes from the cache alone, while a fresh
// token with the withdrawn key fails.
func TestTokenCacheSkipsSignatureButNotClaims(t *testing.T) {
	srv := newJWKSServer(t, false, defaultJWKS())
	keys := newTestKeyCache(t, srv.Server, KeyCacheOptions{})
	clock := testNow
	a := mustCompile(t, istioDoc(srv.URL, ""), Options{Keys: keys, Now: func() time.Time { return clock }})
	waitKeys(t, a)
	au := a.ForListener(nil)
	tok := rsaToken(t, with(goodClaims(), "nbf", testNow.Add(2*time.Minute).Unix()))
	if err := authenticate(au, tok); !errorsIs(err, errNotYetValid) {
		t.Fatalf("err = %v, want %v", err, errNotYetValid)
	}
	srv.set(jwksJSON(publicJWK("x", &getTestKeys().attacker.PublicKey)), 200, 0)
	if !a.rules[0].remote.refresh(context.Background(), true) {
		t.Fatal("refresh failed")
	}
	if err := authenticate(au, tok); !errorsIs(err, errNotYetValid) {
		t.Fatalf("cache hit must still check nbf: err = %v, want %v", err, errNotYetValid)
	}
	clock = testNow.Add(90 * time.Second) // nbf minus skew has passed
	if err := authenticate(au, tok); err != nil {
		t.Fatalf("cache hit: %v", err)
	}
	other := rsaToken(t, with(goodClaims(), "sub", "bob"))
	if _, err := authRequest(au, bearer(httptest.NewRequest("GET", "/", nil), other)); !errorsIs(err, errUnknownKid) {
		t.Fatalf("uncached token: err = %v, want %v", err, errUnknownKid)
	}
}
