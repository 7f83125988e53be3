package oidc

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"slices"
	"testing"
)

// FuzzParseJWKS feeds parseJWKS what a hostile or broken JWKS endpoint (or an
// inline jwks in the config) could serve.
//
// Properties of an accepted set:
//   - 1 to maxJWKSKeys keys, each indexed once under its kid;
//   - each key's Go type is the one its kty names, and strong enough
//     (RSA ≥ 2048 bits with an odd exponent ≥ 3, an EC point on its curve,
//     32-byte Ed25519, HMAC secret ≥ 32 bytes): nothing else reaches a verifier;
//   - a key's alg, when set, is a known alg for that key type and, for EC,
//     that curve (ES256 is P-256): key confusion starts with a key whose
//     metadata and material disagree;
//   - every alg a key fits can verify with it (the key has the Go type that
//     alg's jwt.SigningMethod takes), and no other alg fits it;
//   - parsing is deterministic.
func FuzzParseJWKS(f *testing.F) {
	k := getTestKeys()
	p384, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		f.Fatal(err)
	}
	secret := map[string]any{"kty": "oct", "kid": "hs", "alg": "HS256", "k": enc(make([]byte, 32))}
	withAlg := func(m map[string]any, alg string) map[string]any { m["alg"] = alg; return m }
	// The keys of TestParseJWKSKeys.
	small := publicJWK("small", &k.rsa.PublicKey)
	small["n"] = enc(k.rsa.N.Bytes()[:100])
	offCurve := publicJWK("off", &k.ec.PublicKey)
	offCurve["y"] = offCurve["x"]
	encUse := publicJWK("enc", &k.rsa.PublicKey)
	encUse["use"] = "enc"
	f.Add([]byte(defaultJWKS()))
	f.Add([]byte(jwksJSON(small, offCurve, encUse, withAlg(publicJWK("walg", &k.rsa.PublicKey), "ES256"),
		map[string]any{"kty": "oct", "kid": "short", "k": enc([]byte("short"))}, map[string]any{"kty": "weird", "kid": "w"})))
	f.Add([]byte(jwksJSON(secret, withAlg(publicJWK("ps", &k.rsa.PublicKey), "PS512"), withAlg(publicJWK("ed", k.ed.Public()), "EdDSA"))))
	f.Add([]byte(jwksJSON(withAlg(publicJWK("es", &k.ec.PublicKey), "ES256"), withAlg(publicJWK("es384", &p384.PublicKey), "ES384"))))
	// A curve the alg does not name.
	f.Add([]byte(jwksJSON(withAlg(publicJWK("mismatch", &p384.PublicKey), "ES256"))))
	f.Add([]byte(`{"keys":[{"kty":"oct","k":"` + enc(make([]byte, 32)) + `="}]} `))
	f.Add([]byte(`{"keys":[]}`))
	f.Add([]byte(`{"keys":[{"kty":"RSA","alg":"none"}]}{}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		set, err := parseJWKS(data)
		if err != nil {
			if set != nil {
				t.Fatal("error with a key set")
			}
			return
		}
		if len(set.keys) == 0 || len(set.keys) > maxJWKSKeys {
			t.Fatalf("%d keys", len(set.keys))
		}
		indexed := 0
		for kid, ks := range set.byKid {
			for _, key := range ks {
				if key.kid != kid || !slices.Contains(set.keys, key) {
					t.Fatalf("key %q indexed under %q", key.kid, kid)
				}
			}
			indexed += len(ks)
		}
		if indexed != len(set.keys) {
			t.Fatalf("%d keys, %d indexed", len(set.keys), indexed)
		}
		for _, key := range set.keys {
			checkJWK(t, key)
		}
		again, err := parseJWKS(data)
		if err != nil || len(again.keys) != len(set.keys) {
			t.Fatalf("second parse: %v", err)
		}
		for i := range set.keys {
			if a, b := set.keys[i], again.keys[i]; a.kid != b.kid || a.alg != b.alg || a.kty != b.kty {
				t.Fatalf("second parse differs at key %d: %+v vs %+v", i, a, b)
			}
		}
	})
}

// checkJWK asserts that key's material, type and alg agree.
func checkJWK(t *testing.T, key *jwk) {
	t.Helper()
	curveBits := 0
	switch key.kty {
	case "RSA":
		pub, ok := key.key.(*rsa.PublicKey)
		if !ok || pub.N.BitLen() < minRSABits || pub.E < 3 || pub.E%2 == 0 {
			t.Fatalf("kty RSA, key %T %v", key.key, key.key)
		}
	case "EC":
		pub, ok := key.key.(*ecdsa.PublicKey)
		if !ok {
			t.Fatalf("kty EC, key %T", key.key)
		}
		if _, err := pub.Bytes(); err != nil {
			t.Fatalf("EC key not a valid point: %v", err)
		}
		curveBits = pub.Curve.Params().BitSize
	case "OKP":
		if pub, ok := key.key.(ed25519.PublicKey); !ok || len(pub) != ed25519.PublicKeySize {
			t.Fatalf("kty OKP, key %T", key.key)
		}
	case "oct":
		if s, ok := key.key.([]byte); !ok || len(s) < minHMACBytes {
			t.Fatalf("kty oct, key %T (%d bytes)", key.key, len(s))
		}
	default:
		t.Fatalf("key of unknown kty %q kept", key.kty)
	}
	if key.alg != "" {
		a, ok := algorithms[key.alg]
		if !ok || a.kty != key.kty {
			t.Fatalf("kid %q: alg %q on a %s key", key.kid, key.alg, key.kty)
		}
		if a.curveBits != 0 && a.curveBits != curveBits {
			t.Fatalf("kid %q: alg %q on a P-%d key", key.kid, key.alg, curveBits)
		}
	}
	for name, a := range algorithms {
		if !a.fits(key) {
			continue
		}
		if a.kty != key.kty || key.alg != "" && key.alg != name || a.curveBits != 0 && a.curveBits != curveBits {
			t.Fatalf("alg %s fits the %s key %q (alg %q)", name, key.kty, key.kid, key.alg)
		}
		// The jwt method must accept the key's type: a verifier handed the
		// wrong type fails, but one that took any type would be the bug.
		var typeOK bool
		switch a.method.Alg()[:2] {
		case "RS", "PS":
			_, typeOK = key.key.(*rsa.PublicKey)
		case "ES":
			_, typeOK = key.key.(*ecdsa.PublicKey)
		case "Ed":
			_, typeOK = key.key.(ed25519.PublicKey)
		case "HS":
			_, typeOK = key.key.([]byte)
		}
		if !typeOK {
			t.Fatalf("alg %s fits key %q of Go type %T", name, key.kid, key.key)
		}
	}
}
