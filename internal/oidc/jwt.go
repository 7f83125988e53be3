package oidc

import (
	"bytes"
	"crypto/ecdsa"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// algorithm pins a JOSE alg to the one key type (and curve) that may verify it.
// Pinning is what stops key-confusion attacks: an HS256 token "signed" with the
// issuer's RSA public key as the HMAC secret finds no oct key and fails.
type algorithm struct {
	name   string
	method jwt.SigningMethod
	kty    string
	// curveBits is the ECDSA curve size the alg requires (ES256 = P-256).
	curveBits int
}

// fits reports whether key k may verify this alg.
func (a *algorithm) fits(k *jwk) bool {
	if k.kty != a.kty || (k.alg != "" && k.alg != a.name) {
		return false
	}
	if a.curveBits != 0 {
		pub, ok := k.key.(*ecdsa.PublicKey)
		return ok && pub.Curve.Params().BitSize == a.curveBits
	}
	return true
}

// algorithms is every alg Envoy's jwt_authn supports; "none" is deliberately absent.
var algorithms = map[string]*algorithm{
	"RS256": {name: "RS256", method: jwt.SigningMethodRS256, kty: "RSA"},
	"RS384": {name: "RS384", method: jwt.SigningMethodRS384, kty: "RSA"},
	"RS512": {name: "RS512", method: jwt.SigningMethodRS512, kty: "RSA"},
	"PS256": {name: "PS256", method: jwt.SigningMethodPS256, kty: "RSA"},
	"PS384": {name: "PS384", method: jwt.SigningMethodPS384, kty: "RSA"},
	"PS512": {name: "PS512", method: jwt.SigningMethodPS512, kty: "RSA"},
	"ES256": {name: "ES256", method: jwt.SigningMethodES256, kty: "EC", curveBits: 256},
	"ES384": {name: "ES384", method: jwt.SigningMethodES384, kty: "EC", curveBits: 384},
	"ES512": {name: "ES512", method: jwt.SigningMethodES512, kty: "EC", curveBits: 521},
	"EdDSA": {name: "EdDSA", method: jwt.SigningMethodEdDSA, kty: "OKP"},
	"HS256": {name: "HS256", method: jwt.SigningMethodHS256, kty: "oct"},
	"HS384": {name: "HS384", method: jwt.SigningMethodHS384, kty: "oct"},
	"HS512": {name: "HS512", method: jwt.SigningMethodHS512, kty: "oct"},
}

// defaultAlgorithms are the asymmetric families. HMAC needs an explicit opt-in
// through the Tollgate extension, because a shared secret lets every verifier
// mint tokens.
var defaultAlgorithms = []string{"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}

const (
	defaultMaxTokenBytes = 16 << 10
	defaultClockSkew     = 60 * time.Second
	maxKidBytes          = 256
)

// Sentinel causes of a token failure, matched with errors.Is. They name the
// problem for logs and tests; clients only ever see the safe reason of an Error.
var (
	errTokenTooLarge  = errors.New("token too large")
	errMalformed      = errors.New("malformed token")
	errAlgNotAllowed  = errors.New("algorithm not allowed")
	errCrit           = errors.New("unsupported critical header")
	errUnknownIssuer  = errors.New("issuer not configured")
	errUnknownKid     = errors.New("no key for kid")
	errNoKeys         = errors.New("no verification keys available")
	errSignature      = errors.New("signature invalid")
	errExpired        = errors.New("token expired")
	errNotYetValid    = errors.New("token not yet valid")
	errAudience       = errors.New("audience not allowed")
	errMultipleTokens = errors.New("ambiguous token")
)

// token is a parsed, not yet verified, compact JWS.
type token struct {
	raw string
	// signingInput is "header.payload", the bytes the signature covers.
	signingInput string
	payloadB64   string
	sig          []byte
	alg          *algorithm
	kid          string
	claims       map[string]any
	iss          string
}

// parseToken splits and decodes a compact JWS. It checks the structure and the
// header but nothing that needs a key; the result must not be trusted until
// verify succeeds.
func parseToken(raw string, maxBytes int) (*token, error) {
	if len(raw) > maxBytes {
		return nil, fmt.Errorf("%w: %d bytes, limit %d", errTokenTooLarge, len(raw), maxBytes)
	}
	h, rest, ok1 := strings.Cut(raw, ".")
	p, s, ok2 := strings.Cut(rest, ".")
	if !ok1 || !ok2 || strings.Contains(s, ".") {
		return nil, fmt.Errorf("%w: want three dot-separated segments", errMalformed)
	}
	if h == "" || p == "" {
		return nil, fmt.Errorf("%w: empty segment", errMalformed)
	}
	hb, err := base64.RawURLEncoding.Strict().DecodeString(h)
	if err != nil {
		return nil, fmt.Errorf("%w: header is not base64url", errMalformed)
	}
	// Only alg, kid and crit are read from the header. jku, x5u, jwk and x5c are
	// never looked at: keys come only from the configured JWKS, so a token can
	// neither name nor carry the key that verifies it.
	hdr, err := decodeObject(hb)
	if err != nil {
		return nil, fmt.Errorf("%w: header: %v", errMalformed, err)
	}
	algName, ok := hdr["alg"].(string)
	if !ok {
		return nil, fmt.Errorf("%w: header has no alg string", errMalformed)
	}
	alg, ok := algorithms[algName]
	if !ok {
		return nil, fmt.Errorf("%w: alg %s is not supported", errAlgNotAllowed, clip(algName))
	}
	if crit, ok := hdr["crit"]; ok {
		// RFC 7515 §4.1.11: a recipient that does not understand every listed
		// extension must reject the token. Tollgate understands none.
		return nil, fmt.Errorf("%w: crit %s", errCrit, clip(fmt.Sprint(crit)))
	}
	if s == "" {
		return nil, fmt.Errorf("%w: empty signature", errMalformed)
	}
	t := &token{raw: raw, signingInput: raw[:len(h)+1+len(p)], payloadB64: p, alg: alg}
	if v, ok := hdr["kid"]; ok {
		kid, ok := v.(string)
		if !ok || kid == "" || len(kid) > maxKidBytes || !printable(kid) {
			return nil, fmt.Errorf("%w: kid is not a short printable string", errMalformed)
		}
		t.kid = kid
	}
	pb, err := base64.RawURLEncoding.Strict().DecodeString(p)
	if err != nil {
		return nil, fmt.Errorf("%w: payload is not base64url", errMalformed)
	}
	if t.claims, err = decodeObject(pb); err != nil {
		return nil, fmt.Errorf("%w: payload: %v", errMalformed, err)
	}
	if t.sig, err = base64.RawURLEncoding.Strict().DecodeString(s); err != nil {
		return nil, fmt.Errorf("%w: signature is not base64url", errMalformed)
	}
	if v, ok := t.claims["iss"]; ok {
		if t.iss, ok = v.(string); !ok {
			return nil, fmt.Errorf("%w: iss is not a string", errMalformed)
		}
	}
	for _, name := range []string{"sub", "azp"} {
		if v, ok := t.claims[name]; ok {
			if _, ok := v.(string); !ok {
				return nil, fmt.Errorf("%w: %s is not a string", errMalformed, name)
			}
		}
	}
	return t, nil
}

// decodeObject decodes one JSON object with nothing after it. A member name
// that appears twice is an error: parsers disagree on which copy wins, so
// {"sub":"alice","sub":"admin"} could mean one thing to Tollgate and another to
// an upstream that reads the forwarded payload.
func decodeObject(b []byte) (map[string]any, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	tok, err := dec.Token()
	if err != nil {
		return nil, err
	}
	if tok != json.Delim('{') {
		return nil, errors.New("not a JSON object")
	}
	obj := make(map[string]any)
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, err
		}
		name, _ := tok.(string)
		if _, dup := obj[name]; dup {
			return nil, fmt.Errorf("member %s appears twice", clip(name))
		}
		var v any
		if err := dec.Decode(&v); err != nil {
			return nil, err
		}
		obj[name] = v
	}
	if _, err := dec.Token(); err != nil { // the closing brace
		return nil, err
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, errors.New("trailing data after the JSON object")
	}
	return obj, nil
}

func printable(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] == 0x7f {
			return false
		}
	}
	return true
}

// verifySignature checks the signature against the candidate keys.
func (t *token) verifySignature(keys []*jwk) error {
	if len(keys) == 0 {
		return fmt.Errorf("%w: no %s key for kid %s", errUnknownKid, t.alg.name, clip(t.kid))
	}
	for _, k := range keys {
		if err := t.alg.method.Verify(t.signingInput, t.sig, k.key); err == nil {
			return nil
		}
	}
	return errSignature
}

// validateTime checks exp and nbf with the given clock skew. Tokens without exp
// are accepted, as Istio does (it sets no require_expiration).
func (t *token) validateTime(now time.Time, skew time.Duration) error {
	exp, hasExp, err := numericDate(t.claims, "exp")
	if err != nil {
		return err
	}
	if hasExp && now.After(exp.Add(skew)) {
		return errExpired
	}
	nbf, hasNbf, err := numericDate(t.claims, "nbf")
	if err != nil {
		return err
	}
	if hasNbf && now.Add(skew).Before(nbf) {
		return errNotYetValid
	}
	return nil
}

// expiry returns exp, or the zero time when the token has none.
func (t *token) expiry() time.Time {
	exp, _, _ := numericDate(t.claims, "exp")
	return exp
}

func numericDate(claims map[string]any, name string) (time.Time, bool, error) {
	v, ok := claims[name]
	if !ok {
		return time.Time{}, false, nil
	}
	f, ok := v.(float64)
	if !ok || math.IsNaN(f) || math.IsInf(f, 0) || f < 0 || f > 1e12 {
		return time.Time{}, false, fmt.Errorf("%w: %s is not a NumericDate", errMalformed, name)
	}
	sec, frac := math.Modf(f)
	return time.Unix(int64(sec), int64(frac*1e9)), true, nil
}

// audiences returns the aud claim as a list (RFC 7519 allows a string or a list).
func (t *token) audiences() ([]string, error) {
	var out []string
	if v, ok := t.claims["aud"].([]any); ok {
		out = make([]string, 0, len(v))
	}
	if err := t.eachAudience(func(a string) { out = append(out, a) }); err != nil {
		return nil, err
	}
	return out, nil
}

// eachAudience calls f with each entry of the aud claim, the one place that
// reads it: absent, a string, or a list of strings; anything else is
// malformed (after f has seen the list's strings before the bad entry).
func (t *token) eachAudience(f func(string)) error {
	switch v := t.claims["aud"].(type) {
	case nil:
		if _, present := t.claims["aud"]; present {
			return fmt.Errorf("%w: aud is null", errMalformed)
		}
	case string:
		f(v)
	case []any:
		for _, e := range v {
			s, ok := e.(string)
			if !ok {
				return fmt.Errorf("%w: aud holds a non-string", errMalformed)
			}
			f(s)
		}
	default:
		return fmt.Errorf("%w: aud is neither a string nor a list", errMalformed)
	}
	return nil
}

// claimString renders a claim for an output header: strings as they are,
// integers in decimal, booleans as true/false (what Envoy copies). Other types
// and values that cannot be a header value are not copied.
func claimString(claims map[string]any, path string) (string, bool) {
	var v any = claims
	for part := range strings.SplitSeq(path, ".") {
		m, ok := v.(map[string]any)
		if !ok {
			return "", false
		}
		if v, ok = m[part]; !ok {
			return "", false
		}
	}
	switch x := v.(type) {
	case string:
		return x, true
	case bool:
		return strconv.FormatBool(x), true
	case float64:
		if x == math.Trunc(x) && math.Abs(x) < 1<<53 {
			return strconv.FormatInt(int64(x), 10), true
		}
	}
	return "", false
}

// clip quotes an attacker-controlled string for a log line, bounded in length,
// so a hostile token cannot forge or flood log records.
func clip(s string) string {
	const n = 64
	if len(s) > n {
		return strconv.Quote(s[:n]) + "…"
	}
	return strconv.Quote(s)
}
