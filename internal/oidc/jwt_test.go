package oidc

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestParseJWKSKeys(t *testing.T) {
	k := getTestKeys()
	small := publicJWK("small", &k.rsa.PublicKey)
	small["n"] = enc(k.rsa.N.Bytes()[:100]) // 800-bit modulus
	offCurve := publicJWK("off", &k.ec.PublicKey)
	offCurve["y"] = offCurve["x"]
	enc2 := publicJWK("enc", &k.rsa.PublicKey)
	enc2["use"] = "enc"
	wrongAlg := publicJWK("walg", &k.rsa.PublicKey)
	wrongAlg["alg"] = "ES256"
	set := mustParseJWKS(t, jwksJSON(publicJWK("ok", &k.rsa.PublicKey), small, offCurve, enc2, wrongAlg,
		map[string]any{"kty": "oct", "kid": "short", "k": enc([]byte("short"))}, map[string]any{"kty": "weird", "kid": "w"}))
	var kids []string
	for _, key := range set.keys {
		kids = append(kids, key.kid)
	}
	if strings.Join(kids, ",") != "ok" {
		t.Errorf("usable keys = %v, want only ok (weak, off-curve, encryption and mislabelled keys skipped)", kids)
	}
}

func mustParseJWKS(t testing.TB, s string) *keySet {
	t.Helper()
	set, err := parseJWKS([]byte(s))
	if err != nil {
		t.Fatal(err)
	}
	return set
}

// FuzzParseToken checks that any input either fails with errMalformed-like
// sentinels or yields a token whose parts are consistent with the input.
func FuzzParseToken(f *testing.F) {
	f.Add(rsaToken(f, goodClaims()))
	f.Add(signToken(f, map[string]any{"alg": "none"}, goodClaims(), nil))
	f.Add(signToken(f, map[string]any{"alg": "ES256", "kid": "ec1", "crit": []string{"b64"}}, goodClaims(), getTestKeys().ec))
	f.Add("eyJhbGciOiJSUzI1NiJ9.e30.c2ln")
	f.Add("eyJhbGciOiJSUzI1NiIsImFsZyI6Im5vbmUifQ.e30.c2ln")
	f.Add("a.b.c")
	f.Add("..")
	f.Add("")
	f.Fuzz(func(t *testing.T, raw string) {
		tok, err := parseToken(raw, defaultMaxTokenBytes)
		if err != nil {
			if tok != nil {
				t.Fatal("token returned with an error")
			}
			return
		}
		if !strings.HasPrefix(raw, tok.signingInput+".") || tok.alg == nil || tok.alg.name == "none" || tok.claims == nil {
			t.Fatalf("inconsistent token for %q", raw)
		}
		if len(tok.kid) > maxKidBytes || !printable(tok.kid) {
			t.Fatalf("kid %q passed", tok.kid)
		}
	})
}

// FuzzAuthenticate runs arbitrary Authorization values through the whole
// request path: it must never panic, never authenticate a forged token, and
// always return a 401/403 *Error on failure.
func FuzzAuthenticate(f *testing.F) {
	au := mustCompile(f, `apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: {name: f}
spec:
  jwtRules:
  - issuer: `+testIssuer+`
    jwks: '`+defaultJWKS()+`'
`, Options{}).ForListener(nil)
	f.Add("Bearer " + rsaToken(f, goodClaims()))
	f.Add("Bearer " + rsaToken(f, with(goodClaims(), "exp", 1)))
	f.Add("Bearer a.b.c")
	f.Add("Bearer ")
	f.Add("bearer x")
	f.Fuzz(func(t *testing.T, value string) {
		r := httptest.NewRequest("GET", "/", nil)
		r.Header.Set("Authorization", value)
		res, err := authRequest(au, r)
		if err != nil {
			e, ok := err.(*Error)
			if !ok || (e.Status != 401 && e.Status != 403) || res.Auth != nil {
				t.Fatalf("bad failure %#v", err)
			}
			return
		}
		if res.Auth != nil && res.Auth.Issuer != testIssuer {
			t.Fatalf("authenticated issuer %q", res.Auth.Issuer)
		}
	})
}

// TestKeyPinning: a key verifies only the algorithm family its type fits, only
// the alg its JWKS entry names, and only on its own ECDSA curve, so a token can't
// pick a weaker or different algorithm for a key than the issuer meant.
func TestKeyPinning(t *testing.T) {
	rsaKey := &getTestKeys().rsa.PublicKey
	p256, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	p384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	for _, tc := range []struct {
		name string
		alg  string
		key  jwk
		want bool
	}{
		{"RSA key, no alg named", "RS256", jwk{kty: "RSA", key: rsaKey}, true},
		{"RSA key named RS256, PS256 token", "PS256", jwk{kty: "RSA", alg: "RS256", key: rsaKey}, false},
		{"RSA key named RS256, RS256 token", "RS256", jwk{kty: "RSA", alg: "RS256", key: rsaKey}, true},
		{"EC key for an RSA alg", "RS256", jwk{kty: "EC", key: &p256.PublicKey}, false},
		{"P-384 key, ES256 token", "ES256", jwk{kty: "EC", key: &p384.PublicKey}, false},
		{"P-384 key, ES384 token", "ES384", jwk{kty: "EC", key: &p384.PublicKey}, true},
		{"P-256 key, ES512 token", "ES512", jwk{kty: "EC", key: &p256.PublicKey}, false},
		{"RSA key as HMAC secret", "HS256", jwk{kty: "RSA", key: rsaKey}, false},
	} {
		if got := algorithms[tc.alg].fits(&tc.key); got != tc.want {
			t.Errorf("%s: fits = %v, want %v", tc.name, got, tc.want)
		}
	}
}
