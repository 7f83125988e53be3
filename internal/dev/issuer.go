package dev

import (
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math/big"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// The dev issuer's names. Its key is made at every start, so tokens from an
// earlier run are refused.
const (
	DevIssuer   = "https://issuer.dev.tollgate"
	DevAudience = "tollgate-dev"
	DevUser     = "dev-user"
	// DevTokenTTL is how long the printed token is valid.
	DevTokenTTL = 24 * time.Hour
	devKeyID    = "dev-1"
)

// Issuer is dev mode's JWT issuer: an in-memory RSA key whose public half goes
// inline into a RequestAuthentication, so nothing is served or fetched.
type Issuer struct {
	key *rsa.PrivateKey
	now func() time.Time
}

// NewIssuer makes a fresh signing key.
func NewIssuer() (*Issuer, error) {
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return nil, fmt.Errorf("dev issuer: %w", err)
	}
	return &Issuer{key: k, now: time.Now}, nil
}

// JWKS is the issuer's public key set as JSON.
func (i *Issuer) JWKS() string {
	b64 := base64.RawURLEncoding.EncodeToString
	pub := i.key.PublicKey
	j, _ := json.Marshal(map[string]any{"keys": []any{map[string]any{
		"kty": "RSA", "kid": devKeyID, "alg": "RS256", "use": "sig",
		"n": b64(pub.N.Bytes()), "e": b64(big.NewInt(int64(pub.E)).Bytes()),
	}}})
	return string(j)
}

// Token signs an RS256 token for sub with the given groups, valid for ttl.
func (i *Issuer) Token(sub string, groups []string, ttl time.Duration) (string, error) {
	now := i.now()
	if groups == nil {
		groups = []string{}
	}
	t := jwt.NewWithClaims(jwt.SigningMethodRS256, jwt.MapClaims{
		"iss": DevIssuer, "sub": sub, "aud": DevAudience, "groups": groups,
		"iat": now.Unix(), "nbf": now.Unix(), "exp": now.Add(ttl).Unix(),
	})
	t.Header["kid"] = devKeyID
	s, err := t.SignedString(i.key)
	if err != nil {
		return "", fmt.Errorf("dev issuer: %w", err)
	}
	return s, nil
}

// RequestAuthentication is the policy document that trusts this issuer: tokens
// in Authorization: Bearer, checked against the inline JWKS, with the subject
// passed to the upstream as x-dev-user.
func (i *Issuer) RequestAuthentication() []byte {
	return fmt.Appendf(nil, `# Written by `+"`gateway dev`"+` at every start: the dev issuer's key is new each time.
apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata:
  name: dev-issuer
  namespace: istio-system
spec:
  jwtRules:
  - issuer: %q
    audiences: [%q]
    jwks: '%s'
    outputClaimToHeaders:
    - {header: x-dev-user, claim: sub}
`, DevIssuer, DevAudience, i.JWKS())
}
