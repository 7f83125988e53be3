package oidc

import (
	"fmt"
	"net/http/httptest"
	"testing"
)

// BenchmarkAuthenticate measures the request path for RS256 and ES256 tokens
// with the verified-token cache off (every call verifies the signature) and
// on (every call after the first is a hit).
func BenchmarkAuthenticate(b *testing.B) {
	k := getTestKeys()
	src := fmt.Sprintf(`apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: {name: bench}
spec:
  jwtRules:
  - issuer: %s
    jwks: '%s'
    audiences: [%s]
    outputClaimToHeaders: [{header: x-sub, claim: sub}]
`, testIssuer, defaultJWKS(), testAudience)
	tokens := map[string]string{
		"RS256": rsaToken(b, goodClaims()),
		"ES256": signToken(b, map[string]any{"alg": "ES256", "kid": "ec1"}, goodClaims(), k.ec),
	}
	for _, alg := range []string{"RS256", "ES256"} {
		for _, mode := range []struct {
			name string
			size int
		}{{"miss", -1}, {"hit", 0}} {
			b.Run(alg+"/"+mode.name, func(b *testing.B) {
				au := mustCompile(b, src, Options{TokenCacheSize: mode.size}).ForListener(nil)
				r := bearer(httptest.NewRequest("GET", "/", nil), tokens[alg])
				b.ReportAllocs()
				for b.Loop() {
					if _, err := authRequest(au, r); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}
