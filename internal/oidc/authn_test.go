package oidc

import (
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func istioDoc(jwksURI string, extra string) string {
	return fmt.Sprintf(`apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: {name: jwt, namespace: istio-system}
spec:
  jwtRules:
  - issuer: %s
    jwksUri: %s
    audiences: [%s]
%s`, testIssuer, jwksURI, testAudience, extra)
}

func TestAuthenticateBadInput(t *testing.T) {
	k := getTestKeys()
	legit := newJWKSServer(t, true, defaultJWKS())
	// attacker serves its own key; nothing may ever fetch from it.
	attacker := newJWKSServer(t, true, jwksJSON(publicJWK("rsa1", &k.attacker.PublicKey)))
	keys := newTestKeyCache(t, legit.Server, KeyCacheOptions{RefetchInterval: time.Hour})
	a := mustCompile(t, istioDoc(legit.URL+"/jwks", ""), Options{Keys: keys})
	waitKeys(t, a)
	au := a.ForListener(nil)

	good := rsaToken(t, goodClaims())
	pubDER, _ := x509.MarshalPKIXPublicKey(&k.rsa.PublicKey)
	pubPEM := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pubDER})
	hdr := func(kv ...any) map[string]any { return with(map[string]any{"alg": "RS256", "kid": "rsa1"}, kv...) }
	segs := strings.Split(good, ".")

	tests := []struct {
		name       string
		req        func() *http.Request
		wantErr    error // nil: success
		wantStatus int
		wantSub    string // "" with wantErr nil: anonymous
	}{
		{name: "valid RS256", req: req(good), wantSub: "alice"},
		{name: "valid ES256", req: req(signToken(t, map[string]any{"alg": "ES256", "kid": "ec1"}, goodClaims(), k.ec)), wantSub: "alice"},
		{name: "valid EdDSA", req: req(signToken(t, map[string]any{"alg": "EdDSA", "kid": "ed1"}, goodClaims(), k.ed)), wantSub: "alice"},
		{name: "valid without kid tries every key", req: req(signToken(t, map[string]any{"alg": "RS256"}, goodClaims(), k.rsa)), wantSub: "alice"},
		{name: "no token is anonymous", req: req("")},
		// Forwarded as is, a credential nobody checked would reach the upstream.
		{name: "other scheme is refused", req: func() *http.Request {
			r := httptest.NewRequest("GET", "/", nil)
			r.Header.Set("Authorization", "Basic dXNlcjpwYXNz")
			return r
		}, wantErr: errUnreadableCredential, wantStatus: 401},
		{name: "alg none", req: req(signToken(t, map[string]any{"alg": "none", "kid": "rsa1"}, goodClaims(), nil)), wantErr: errAlgNotAllowed, wantStatus: 401},
		{name: "alg None spelled otherwise", req: req(signToken(t, map[string]any{"alg": "NONE"}, goodClaims(), nil)), wantErr: errAlgNotAllowed, wantStatus: 401},
		{name: "alg none with a signature", req: req(strings.TrimSuffix(signToken(t, map[string]any{"alg": "none"}, goodClaims(), nil), ".") + ".c2ln"), wantErr: errAlgNotAllowed, wantStatus: 401},
		{name: "empty signature", req: req(segs[0] + "." + segs[1] + "."), wantErr: errMalformed, wantStatus: 401},
		{name: "HS256 with the RSA public key as secret", req: req(signToken(t, hdr("alg", "HS256"), goodClaims(), pubPEM)), wantErr: errAlgNotAllowed, wantStatus: 401},
		{name: "ES256 header on an RSA kid", req: req(signToken(t, hdr("alg", "ES256"), goodClaims(), k.ec)), wantErr: errUnknownKid, wantStatus: 401},
		{name: "unknown kid", req: req(signToken(t, hdr("kid", "nope"), goodClaims(), k.rsa)), wantErr: errUnknownKid, wantStatus: 401},
		{name: "kid with path", req: req(signToken(t, hdr("kid", "../../../etc/passwd"), goodClaims(), k.rsa)), wantErr: errUnknownKid, wantStatus: 401},
		{name: "kid with quote", req: req(signToken(t, hdr("kid", `rsa1" or "1"="1`), goodClaims(), k.rsa)), wantErr: errUnknownKid, wantStatus: 401},
		{name: "kid with newline", req: req(signToken(t, hdr("kid", "rsa1\nx"), goodClaims(), k.rsa)), wantErr: errMalformed, wantStatus: 401},
		{name: "kid not a string", req: req(signToken(t, hdr("kid", 7), goodClaims(), k.rsa)), wantErr: errMalformed, wantStatus: 401},
		{name: "signed by attacker with legit kid", req: req(signToken(t, hdr(), goodClaims(), k.attacker)), wantErr: errSignature, wantStatus: 401},
		{name: "payload tampered", req: req(segs[0] + "." + enc([]byte(`{"iss":"`+testIssuer+`","sub":"admin","aud":"api"}`)) + "." + segs[2]), wantErr: errSignature, wantStatus: 401},
		{name: "jku to attacker", req: req(signToken(t, hdr("jku", attacker.URL), goodClaims(), k.attacker)), wantErr: errSignature, wantStatus: 401},
		{name: "x5u to attacker", req: req(signToken(t, hdr("x5u", attacker.URL), goodClaims(), k.attacker)), wantErr: errSignature, wantStatus: 401},
		{name: "embedded jwk of attacker", req: req(signToken(t, hdr("kid", nil, "jwk", publicJWK("", &k.attacker.PublicKey)), goodClaims(), k.attacker)), wantErr: errSignature, wantStatus: 401},
		{name: "embedded x5c", req: req(signToken(t, hdr("x5c", []string{enc(pubDER)}), goodClaims(), k.attacker)), wantErr: errSignature, wantStatus: 401},
		{name: "unknown crit", req: req(signToken(t, hdr("crit", []string{"exp"}, "exp", 1), goodClaims(), k.rsa)), wantErr: errCrit, wantStatus: 401},
		{name: "expired", req: req(rsaToken(t, with(goodClaims(), "exp", testNow.Add(-61*time.Second).Unix()))), wantErr: errExpired, wantStatus: 401},
		{name: "expired within skew", req: req(rsaToken(t, with(goodClaims(), "exp", testNow.Add(-59*time.Second).Unix()))), wantSub: "alice"},
		{name: "nbf in the future", req: req(rsaToken(t, with(goodClaims(), "nbf", testNow.Add(2*time.Minute).Unix()))), wantErr: errNotYetValid, wantStatus: 401},
		{name: "exp not a number", req: req(rsaToken(t, with(goodClaims(), "exp", "tomorrow"))), wantErr: errMalformed, wantStatus: 401},
		{name: "no exp is accepted", req: req(rsaToken(t, with(goodClaims(), "exp", nil))), wantSub: "alice"},
		{name: "wrong iss", req: req(rsaToken(t, with(goodClaims(), "iss", "https://evil.test"))), wantErr: errUnknownIssuer, wantStatus: 401},
		{name: "missing iss", req: req(rsaToken(t, with(goodClaims(), "iss", nil))), wantErr: errUnknownIssuer, wantStatus: 401},
		{name: "wrong aud", req: req(rsaToken(t, with(goodClaims(), "aud", "other"))), wantErr: errAudience, wantStatus: 403},
		{name: "missing aud", req: req(rsaToken(t, with(goodClaims(), "aud", nil))), wantErr: errAudience, wantStatus: 403},
		{name: "aud list with match", req: req(rsaToken(t, with(goodClaims(), "aud", []string{"x", testAudience}))), wantSub: "alice"},
		{name: "aud of wrong type", req: req(rsaToken(t, with(goodClaims(), "aud", 5))), wantErr: errMalformed, wantStatus: 401},
		{name: "sub not a string", req: req(rsaToken(t, with(goodClaims(), "sub", 5))), wantErr: errMalformed, wantStatus: 401},
		{name: "two Authorization headers", req: func() *http.Request { return bearer(bearer(httptest.NewRequest("GET", "/", nil), good), good) }, wantErr: errMultipleTokens, wantStatus: 401},
		{name: "Basic and Bearer Authorization", req: func() *http.Request {
			r := bearer(httptest.NewRequest("GET", "/", nil), good)
			r.Header.Add("Authorization", "Basic dXNlcjpwYXNz")
			return r
		}, wantErr: errMultipleTokens, wantStatus: 401},
		{name: "same token in header and query", req: func() *http.Request { return bearer(httptest.NewRequest("GET", "/?access_token="+good, nil), good) }, wantSub: "alice"},
		{name: "valid header, bad query token", req: func() *http.Request { return bearer(httptest.NewRequest("GET", "/?access_token=a.b.c", nil), good) }, wantErr: errMalformed, wantStatus: 401},
		{name: "two valid tokens, two subjects", req: func() *http.Request {
			return bearer(httptest.NewRequest("GET", "/?access_token="+rsaToken(t, with(goodClaims(), "sub", "mallory")), nil), good)
		}, wantErr: errMultipleTokens, wantStatus: 401},
		// pathnorm.ParseQuery can't read "access_token=<forged>;x=1"; an
		// upstream that splits on ';' would read the token nobody verified.
		{name: "token cloaked by a ';' in the query", req: func() *http.Request {
			return httptest.NewRequest("GET", "/?access_token="+rsaToken(t, with(goodClaims(), "sub", "mallory"))+";x=1", nil)
		}, wantErr: ErrAmbiguousQuery, wantStatus: 400},
		{name: "unreadable query escape", req: func() *http.Request { return httptest.NewRequest("GET", "/?x=%zz", nil) }, wantErr: ErrAmbiguousQuery, wantStatus: 400},
		{name: "query parameter twice", req: func() *http.Request {
			return httptest.NewRequest("GET", "/?access_token="+good+"&access_token="+good, nil)
		}, wantErr: errMultipleTokens, wantStatus: 401},
		{name: "two segments", req: req(segs[0] + "." + segs[1]), wantErr: errMalformed, wantStatus: 401},
		{name: "four segments", req: req(good + ".x"), wantErr: errMalformed, wantStatus: 401},
		{name: "header not base64", req: req("!!!." + segs[1] + "." + segs[2]), wantErr: errMalformed, wantStatus: 401},
		{name: "padded base64", req: req(segs[0] + "=." + segs[1] + "." + segs[2]), wantErr: errMalformed, wantStatus: 401},
		{name: "header not JSON", req: req(enc([]byte("{alg:RS256")) + "." + segs[1] + "." + segs[2]), wantErr: errMalformed, wantStatus: 401},
		{name: "header a JSON array", req: req(enc([]byte(`["RS256"]`)) + "." + segs[1] + "." + segs[2]), wantErr: errMalformed, wantStatus: 401},
		{name: "duplicate alg member", req: req(enc([]byte(`{"alg":"RS256","alg":"none"}`)) + "." + segs[1] + "." + segs[2]), wantErr: errMalformed, wantStatus: 401},
		{name: "payload not JSON", req: req(segs[0] + "." + enc([]byte("nope")) + "." + segs[2]), wantErr: errMalformed, wantStatus: 401},
		{name: "payload with trailing data", req: req(segs[0] + "." + enc([]byte(`{"iss":"x"} {}`)) + "." + segs[2]), wantErr: errMalformed, wantStatus: 401},
		{name: "signature not base64", req: req(segs[0] + "." + segs[1] + ".***"), wantErr: errMalformed, wantStatus: 401},
		{name: "oversized token", req: req(rsaToken(t, with(goodClaims(), "pad", strings.Repeat("x", 20000)))), wantErr: errTokenTooLarge, wantStatus: 401},
		{name: "CORS preflight skips verification", req: func() *http.Request {
			r := bearer(httptest.NewRequest("OPTIONS", "/", nil), rsaToken(t, with(goodClaims(), "exp", 1)))
			r.Header.Set("Origin", "https://app.test")
			r.Header.Set("Access-Control-Request-Method", "POST")
			return r
		}},
		{name: "OPTIONS without preflight headers is verified", req: func() *http.Request {
			return bearer(httptest.NewRequest("OPTIONS", "/", nil), rsaToken(t, with(goodClaims(), "exp", 1)))
		}, wantErr: errExpired, wantStatus: 401},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			res, err := authRequest(au, tc.req())
			if tc.wantErr == nil {
				if err != nil {
					t.Fatalf("Authenticate: %v", err)
				}
				got := ""
				if res.Auth != nil {
					got = res.Auth.Subject
				}
				if got != tc.wantSub {
					t.Fatalf("subject = %q, want %q", got, tc.wantSub)
				}
				return
			}
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("err = %v, want %v", err, tc.wantErr)
			}
			var ae *Error
			if !errors.As(err, &ae) || ae.Status != tc.wantStatus {
				t.Fatalf("err = %#v, want *Error with status %d", err, tc.wantStatus)
			}
			if res.Auth != nil {
				t.Fatalf("failed request has identity %+v", res.Auth)
			}
			if tc.wantStatus == 401 && ae.Challenge() == "" || tc.wantStatus == 403 && ae.Challenge() != "" {
				t.Errorf("challenge = %q for status %d", ae.Challenge(), tc.wantStatus)
			}
			if strings.Contains(err.Error(), good) || strings.Contains(ae.Reason, "rsa1") {
				t.Errorf("error leaks token or key material: %v / %q", err, ae.Reason)
			}
		})
	}
	if n := attacker.hits.Load(); n != 0 {
		t.Errorf("attacker's key server was fetched %d times", n)
	}
}

func req(tok string) func() *http.Request {
	return func() *http.Request {
		r := httptest.NewRequest("GET", "/", nil)
		if tok != "" {
			bearer(r, tok)
		}
		return r
	}
}

func TestHMACNeedsOctKey(t *testing.T) {
	k := getTestKeys()
	pubDER, _ := x509.MarshalPKIXPublicKey(&k.rsa.PublicKey)
	pubPEM := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pubDER})
	secret := []byte(strings.Repeat("s", 32))
	src := fmt.Sprintf(`apiVersion: tollgate.dev/v1
kind: RequestAuthentication
metadata: {name: hmac}
spec:
  jwtRules:
  - issuer: %s
    algorithms: [HS256, RS256]
    jwks: '%s'
`, testIssuer, jwksJSON(publicJWK("rsa1", &k.rsa.PublicKey), map[string]any{"kty": "oct", "kid": "hs", "k": enc(secret)}))
	au := mustCompile(t, src, Options{}).ForListener(nil)
	tests := []struct {
		name    string
		tok     string
		wantErr error
	}{
		{name: "HS256 with oct key", tok: signToken(t, map[string]any{"alg": "HS256", "kid": "hs"}, goodClaims(), secret)},
		{name: "HS256 with RSA public key naming the RSA kid", tok: signToken(t, map[string]any{"alg": "HS256", "kid": "rsa1"}, goodClaims(), pubPEM), wantErr: errUnknownKid},
		{name: "HS256 with RSA public key, no kid", tok: signToken(t, map[string]any{"alg": "HS256"}, goodClaims(), pubPEM), wantErr: errSignature},
		{name: "HS256 with RSA modulus as secret", tok: signToken(t, map[string]any{"alg": "HS256"}, goodClaims(), k.rsa.N.Bytes()), wantErr: errSignature},
		{name: "ES256 not in allow-list", tok: signToken(t, map[string]any{"alg": "ES256"}, goodClaims(), k.ec), wantErr: errAlgNotAllowed},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := authRequest(au, bearer(httptest.NewRequest("GET", "/", nil), tc.tok))
			if tc.wantErr == nil && err != nil || !errors.Is(err, tc.wantErr) {
				t.Fatalf("err = %v, want %v", err, tc.wantErr)
			}
		})
	}
}

func TestAuthIdentity(t *testing.T) {
	k := getTestKeys()
	src := fmt.Sprintf(`apiVersion: security.istio.io/v1beta1
kind: RequestAuthentication
metadata: {name: jwt}
spec:
  jwtRules:
  - issuer: %s
    jwks: '%s'
    spaceDelimitedClaims: [roles]
`, testIssuer, defaultJWKS())
	au := mustCompile(t, src, Options{}).ForListener(nil)
	claims := with(goodClaims(), "aud", []string{"a", "b"}, "scope", "read  write", "roles", "x y", "groups", []string{"g1"},
		"nested", map[string]any{"k": "v"}, "other", "p q")
	tok := signToken(t, map[string]any{"alg": "ES256"}, claims, k.ec)
	for i := range 2 { // miss, then cache hit
		res, err := authRequest(au, bearer(httptest.NewRequest("GET", "/", nil), tok))
		if err != nil {
			t.Fatal(err)
		}
		got := res.Auth
		if got.Principal != testIssuer+"/alice" || got.Presenter != "web" || !cmp.Equal(got.Audiences, []string{"a", "b"}) {
			t.Errorf("pass %d: identity %+v", i, got)
		}
		want := map[string]any{"scope": []any{"read", "write"}, "roles": []any{"x", "y"}, "groups": []any{"g1"}, "nested": map[string]any{"k": "v"}, "other": "p q"}
		for name, w := range want {
			if diff := cmp.Diff(w, got.Claims[name]); diff != "" {
				t.Errorf("pass %d: claim %s (-want +got):\n%s", i, name, diff)
			}
		}
	}
}
