package gateway_test

import (
	"crypto/rand"
	"crypto/rsa"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"tollgate.dev/tollgate/internal/gateway"
)

func authnPolicies(jwks string) string {
	return fmt.Sprintf(`apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: {name: jwt, namespace: istio-system}
spec:
  jwtRules:
  - issuer: %q
    audiences: [%q]
    jwks: '%s'
    outputClaimToHeaders:
    - {header: x-user, claim: sub}
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: require-jwt, namespace: istio-system}
spec:
  action: ALLOW
  rules:
  - to: [{operation: {paths: ["/public", "/public/*"]}}]
  - from: [{source: {requestPrincipals: ["%s/*"]}}]
    to: [{operation: {paths: ["/api/*"]}}]
  - when:
    - key: request.auth.claims[groups]
      values: ["admins"]
    to: [{operation: {paths: ["/admin/*"]}}]
`, issuer, audience, jwks, issuer)
}

func TestJWTAuthenticationAndPolicyEndToEnd(t *testing.T) {
	var e *env
	e = startEnvWith(t, func(key *rsa.PrivateKey) string { return authnPolicies(jwksFor(&key.PublicKey, "k1")) })
	other, _ := rsa.GenerateKey(rand.Reader, 2048)
	alice := e.token(claimsFor("alice", "dev", "admins"), e.key)
	bob := e.token(claimsFor("bob", "dev"), e.key)
	expired := claimsFor("alice")
	expired["exp"] = time.Now().Add(-time.Hour).Unix()
	wrongAud := claimsFor("alice")
	wrongAud["aud"] = "https://other.test"

	tests := []struct {
		name       string
		path       string
		hdr        []string
		wantStatus int
		wantUser   string // X-User the upstream must see ("" = none)
		wantAuthz  bool   // Authorization must reach the upstream
	}{
		{name: "anonymous on a public path", path: "/public/x", wantStatus: 200},
		{name: "anonymous spoofing the claim header", path: "/public/x", hdr: []string{"X-User", "mallory"}, wantStatus: 200},
		{name: "anonymous on the API is denied by policy", path: "/api/items", wantStatus: 403},
		{name: "valid token", path: "/api/items", hdr: []string{"Authorization", "Bearer " + alice}, wantStatus: 200, wantUser: "alice"},
		{name: "valid token and a spoofed claim header", path: "/api/items", hdr: []string{"Authorization", "Bearer " + bob, "X-User", "alice"}, wantStatus: 200, wantUser: "bob"},
		{name: "group claim allows alice", path: "/admin/panel", hdr: []string{"Authorization", "Bearer " + alice}, wantStatus: 200, wantUser: "alice"},
		{name: "group claim denies bob", path: "/admin/panel", hdr: []string{"Authorization", "Bearer " + bob}, wantStatus: 403},
		{name: "expired token", path: "/public/x", hdr: []string{"Authorization", "Bearer " + e.token(expired, e.key)}, wantStatus: 401},
		{name: "wrong audience", path: "/api/items", hdr: []string{"Authorization", "Bearer " + e.token(wrongAud, e.key)}, wantStatus: 403},
		{name: "signed by another key", path: "/api/items", hdr: []string{"Authorization", "Bearer " + e.token(claimsFor("alice"), other)}, wantStatus: 401},
		{name: "alg none", path: "/api/items", hdr: []string{"Authorization", "Bearer " + noneToken(claimsFor("alice"))}, wantStatus: 401},
		{name: "two Authorization headers", path: "/api/items", hdr: []string{"Authorization", "Bearer " + alice, "Authorization", "Bearer " + bob}, wantStatus: 401},
	}
	for _, tc := range tests {
		for _, proto := range []struct {
			name string
			c    *http.Client
		}{{"HTTP/2", e.client}, {"HTTP/1.1", e.h1}} {
			t.Run(tc.name+"/"+proto.name, func(t *testing.T) {
				r := e.do(proto.c, "GET", tc.path, tc.hdr...)
				if r.status != tc.wantStatus {
					t.Fatalf("status %d, want %d: %s", r.status, tc.wantStatus, r.body)
				}
				if r.status == 401 && !strings.HasPrefix(r.header.Get("WWW-Authenticate"), `Bearer error="invalid_token"`) {
					t.Errorf("WWW-Authenticate = %q", r.header.Get("WWW-Authenticate"))
				}
				if r.status != 200 {
					if !strings.Contains(r.body, `"requestId"`) {
						t.Errorf("error body without request id: %s", r.body)
					}
					return
				}
				if got := strings.Join(r.echo.Headers["X-User"], ","); got != tc.wantUser {
					t.Errorf("upstream saw X-User %q, want %q", got, tc.wantUser)
				}
				if _, ok := r.echo.Headers["Authorization"]; ok != tc.wantAuthz {
					t.Errorf("Authorization reached upstream: %v", ok)
				}
			})
		}
	}
}

func noneToken(c jwt.MapClaims) string {
	s, _ := jwt.NewWithClaims(jwt.SigningMethodNone, c).SignedString(jwt.UnsafeAllowNoneSignatureType)
	return s
}

// startEnvWith starts an env whose policies depend on its signing key.
func startEnvWith(t *testing.T, policies func(*rsa.PrivateKey) string) *env {
	// AUDIT, not DENY: a reload that drops every DENY in force is refused
	// unless policy.allowEmpty (a safety rule this helper isn't testing).
	e := startEnv(t, `apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: placeholder, namespace: istio-system}
spec: {action: AUDIT, rules: [{to: [{operation: {paths: ["/placeholder"]}}]}]}
`)
	e.writePolicy(policies(e.key))
	if err := e.gw.Reload(); err != nil {
		t.Fatal(err)
	}
	return e
}

// A reload that would drop every JWT rule in force is refused like one that
// drops every policy: without the rules the listener would stop verifying
// tokens and stop stripping client copies of its claim headers, so a client
// could inject the identity the upstream trusts.
func TestReloadKeepsJWTRules(t *testing.T) {
	e := startEnvWith(t, func(k *rsa.PrivateKey) string { return authnPolicies(jwksFor(&k.PublicKey, "k1")) })
	withoutJWT := `apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: require-jwt, namespace: istio-system}
spec:
  action: ALLOW
  rules:
  - to: [{operation: {paths: ["/public", "/public/*"]}}]
`
	e.writePolicy(withoutJWT)
	err := e.gw.Reload()
	if !errors.Is(err, gateway.ErrPolicySetEmptied) || !strings.Contains(err.Error(), "listener ingress would have no JWT rules (has 1)") {
		t.Fatalf("Reload: %v, want the set refused for dropping the JWT rules", err)
	}
	for name, c := range map[string]*http.Client{"HTTP/1.1": e.h1, "HTTP/2": e.client} {
		// The old set still strips the client's claim header and verifies tokens.
		r := e.do(c, "GET", "/public/x", "X-User", "admin")
		if r.status != http.StatusOK || r.echo.Headers["X-User"] != nil {
			t.Errorf("%s: status %d, upstream saw X-User %q", name, r.status, r.echo.Headers["X-User"])
		}
		if r := e.do(c, "GET", "/public/x", "Authorization", "Bearer eyJhbGciOiJub25lIn0.eyJzdWIiOiJhZG1pbiJ9."); r.status != http.StatusUnauthorized {
			t.Errorf("%s: an unsigned token got %d, want 401", name, r.status)
		}
	}
}
