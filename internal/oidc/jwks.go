package oidc

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
)

const (
	// maxJWKSBytes bounds a JWKS document, fetched or inline: a hostile or broken
	// endpoint must not make the gateway buffer without limit.
	maxJWKSBytes = 1 << 20
	// maxJWKSKeys bounds the keys kept from one JWKS. A token without kid is tried
	// against every key that fits its alg, so an unbounded set would let one bad
	// token cost an unbounded number of signature checks.
	maxJWKSKeys = 64
	// minRSABits refuses keys that can be factored in practice.
	minRSABits = 2048
	// minHMACBytes refuses HMAC secrets short enough to brute-force offline
	// (RFC 7518 §3.2 asks for at least the hash size; 32 bytes covers HS256).
	minHMACBytes = 32
)

// jwk is one usable verification key.
type jwk struct {
	kid string
	// alg, when the JWKS names one, is the only algorithm the key may verify.
	alg string
	kty string
	// key is *rsa.PublicKey, *ecdsa.PublicKey, ed25519.PublicKey or, for kty
	// "oct", a []byte secret. Nothing else is ever stored here.
	key any
}

// keySet is an immutable parsed JWKS.
type keySet struct {
	keys  []*jwk
	byKid map[string][]*jwk
}

// candidates returns the keys that may verify a token with this kid and alg:
// those with that kid (every key when the token names none) whose type fits alg.
func (s *keySet) candidates(kid string, a *algorithm, dst []*jwk) []*jwk {
	keys := s.keys
	if kid != "" {
		keys = s.byKid[kid]
	}
	for _, k := range keys {
		if a.fits(k) {
			dst = append(dst, k)
		}
	}
	return dst
}

func (s *keySet) hasKid(kid string) bool {
	_, ok := s.byKid[kid]
	return ok
}

type rawJWK struct {
	Kty string `json:"kty"`
	Kid string `json:"kid"`
	Use string `json:"use"`
	Alg string `json:"alg"`
	Crv string `json:"crv"`
	N   string `json:"n"`
	E   string `json:"e"`
	X   string `json:"x"`
	Y   string `json:"y"`
	K   string `json:"k"`
	D   string `json:"d"`
}

var errNoUsableKeys = errors.New("no usable signing keys")

// parseJWKS parses a JSON Web Key Set (RFC 7517). Keys of unknown type, keys not
// meant for signatures and weak keys are skipped; a set left with no key at all is
// an error, so that a broken endpoint never replaces good keys with nothing.
func parseJWKS(data []byte) (*keySet, error) {
	if len(data) > maxJWKSBytes {
		return nil, fmt.Errorf("jwks larger than %d bytes", maxJWKSBytes)
	}
	var doc struct {
		Keys []json.RawMessage `json:"keys"`
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&doc); err != nil {
		return nil, fmt.Errorf("jwks is not a JSON object with keys: %w", err)
	}
	if dec.More() {
		return nil, errors.New("jwks has trailing data")
	}
	set := &keySet{byKid: make(map[string][]*jwk)}
	var skipped []string
	for i, raw := range doc.Keys {
		if len(set.keys) == maxJWKSKeys {
			skipped = append(skipped, fmt.Sprintf("keys past the first %d", maxJWKSKeys))
			break
		}
		var r rawJWK
		if err := json.Unmarshal(raw, &r); err != nil {
			skipped = append(skipped, fmt.Sprintf("key %d: %v", i, err))
			continue
		}
		k, err := parseJWK(r)
		if err != nil {
			skipped = append(skipped, fmt.Sprintf("key %d (kid %s): %v", i, clip(r.Kid), err))
			continue
		}
		if k == nil {
			continue // not a signing key; skipped silently
		}
		set.keys = append(set.keys, k)
		set.byKid[k.kid] = append(set.byKid[k.kid], k)
	}
	if len(set.keys) == 0 {
		if len(skipped) > 0 {
			return nil, fmt.Errorf("%w (%s)", errNoUsableKeys, skipped[0])
		}
		return nil, errNoUsableKeys
	}
	return set, nil
}

func parseJWK(r rawJWK) (*jwk, error) {
	if r.Use != "" && r.Use != "sig" {
		return nil, nil
	}
	if r.Alg != "" {
		a, ok := algorithms[r.Alg]
		if !ok {
			return nil, fmt.Errorf("unsupported alg %s", clip(r.Alg))
		}
		if a.kty != r.Kty {
			return nil, fmt.Errorf("alg %s does not fit key type %s", r.Alg, clip(r.Kty))
		}
	}
	k := &jwk{kid: r.Kid, alg: r.Alg, kty: r.Kty}
	switch r.Kty {
	case "RSA":
		n, err := b64(r.N)
		if err != nil || len(n) == 0 {
			return nil, errors.New("invalid RSA modulus")
		}
		e, err := b64(r.E)
		if err != nil || len(e) == 0 || len(e) > 4 {
			return nil, errors.New("invalid RSA exponent")
		}
		pub := &rsa.PublicKey{N: new(big.Int).SetBytes(n), E: int(new(big.Int).SetBytes(e).Int64())}
		if pub.N.BitLen() < minRSABits {
			return nil, fmt.Errorf("RSA key of %d bits, want at least %d", pub.N.BitLen(), minRSABits)
		}
		if pub.E < 3 || pub.E%2 == 0 {
			return nil, errors.New("invalid RSA exponent")
		}
		k.key = pub
	case "EC":
		var curve elliptic.Curve
		switch r.Crv {
		case "P-256":
			curve = elliptic.P256()
		case "P-384":
			curve = elliptic.P384()
		case "P-521":
			curve = elliptic.P521()
		default:
			return nil, fmt.Errorf("unsupported curve %s", clip(r.Crv))
		}
		// ES256 is P-256 only (RFC 7518 §3.4): a key whose alg and curve
		// disagree is mislabelled, as one whose alg and kty do.
		if r.Alg != "" && algorithms[r.Alg].curveBits != curve.Params().BitSize {
			return nil, fmt.Errorf("alg %s does not fit curve %s", r.Alg, r.Crv)
		}
		size := (curve.Params().BitSize + 7) / 8
		x, errX := b64(r.X)
		y, errY := b64(r.Y)
		if errX != nil || errY != nil || len(x) != size || len(y) != size {
			return nil, errors.New("invalid EC point encoding")
		}
		// ParseUncompressedPublicKey rejects points off the curve, which stops
		// invalid-curve attacks.
		pub, err := ecdsa.ParseUncompressedPublicKey(curve, append(append([]byte{4}, x...), y...))
		if err != nil {
			return nil, fmt.Errorf("invalid EC point: %w", err)
		}
		k.key = pub
	case "OKP":
		if r.Crv != "Ed25519" {
			return nil, fmt.Errorf("unsupported curve %s", clip(r.Crv))
		}
		x, err := b64(r.X)
		if err != nil || len(x) != ed25519.PublicKeySize {
			return nil, errors.New("invalid Ed25519 key")
		}
		k.key = ed25519.PublicKey(x)
	case "oct":
		s, err := b64(r.K)
		if err != nil {
			return nil, errors.New("invalid oct key encoding")
		}
		if len(s) < minHMACBytes {
			return nil, fmt.Errorf("HMAC secret of %d bytes, want at least %d", len(s), minHMACBytes)
		}
		k.key = s
	default:
		return nil, nil // unknown key types are ignored, as RFC 7517 §5 asks
	}
	return k, nil
}

// b64 decodes base64url without padding, as JOSE writes it. Padded input is
// tolerated in JWKS documents (some issuers emit it) but never in tokens.
func b64(s string) ([]byte, error) {
	if n := len(s); n > 0 && s[n-1] == '=' {
		return base64.URLEncoding.DecodeString(s)
	}
	return base64.RawURLEncoding.DecodeString(s)
}
