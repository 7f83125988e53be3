package audit

import (
	"net/url"
	"strings"
)

// Redacted replaces the value of a sensitive query parameter. The key stays, so an
// analyst still sees that a token was sent in the URL (itself worth an alert).
const Redacted = "REDACTED"

// defaultSensitive are the query parameters whose values are credentials or
// one-time secrets: OAuth/OIDC (RFC 6749, RFC 6750 §2.3 access_token in the query,
// authorization codes and state), API keys, and pre-signed URL signatures (AWS SigV4,
// GCS). Compared case-insensitively.
var defaultSensitive = []string{
	"access_token", "id_token", "refresh_token", "token", "code", "state",
	"client_secret", "password", "api_key", "apikey", "key", "sig", "signature",
	"x-amz-signature", "x-amz-credential", "x-amz-security-token", "awsaccesskeyid",
	"x-goog-signature", "x-goog-credential",
}

// DefaultSensitiveParams returns the parameter names RedactQuery uses when given nil.
// It returns a fresh slice, so callers may extend it.
func DefaultSensitiveParams() []string {
	return append([]string(nil), defaultSensitive...)
}

// RedactQuery returns raw (a query string without '?') with the value of every
// parameter named in sensitive replaced by [Redacted]. Names compare
// case-insensitively after percent-decoding, so "%74oken=" and "TOKEN=" are caught
// the way a server would read them. A nil sensitive means [DefaultSensitiveParams].
//
// Both '&' and ';' separate parameters here: some servers still split on ';', and a
// secret hidden behind it ("a=1;token=x") must not reach the log. Separators, order
// and non-sensitive parameters are kept byte for byte.
//
// As defence in depth, any value shaped like a JWT (base64url "eyJ" header, two
// dots) is redacted whatever its parameter is called, and a parameter whose name
// cannot be decoded has its value redacted, because we cannot tell what it is.
//
// RedactQuery is idempotent and does not allocate when nothing needs redacting.
func RedactQuery(raw string, sensitive []string) string {
	if sensitive == nil {
		sensitive = defaultSensitive
	}
	return redactQuery(raw, func(key, val string) bool { return mustRedact(key, val, sensitive) })
}

// RedactQueryExcept redacts the value of every query parameter except those
// named in keep (matched without case, after decoding), whose values are
// kept unless they look like a JWT: the keys of a call are recorded, its
// values only where the operator listed them. For egress, where a query may
// carry anything the workload sends out. Otherwise as RedactQuery.
func RedactQueryExcept(raw string, keep []string) string {
	return redactQuery(raw, func(key, val string) bool {
		name, err := url.QueryUnescape(key)
		if err != nil {
			return true
		}
		for _, k := range keep {
			if strings.EqualFold(name, k) {
				return looksLikeJWT(val)
			}
		}
		return true
	})
}

// redactQuery replaces the value of every parameter for which redact says
// so, keeping separators, order and everything else byte for byte.
func redactQuery(raw string, redact func(key, val string) bool) string {
	if !strings.Contains(raw, "=") {
		return raw
	}
	var b strings.Builder // grown only once something must change
	done := 0             // raw[:done] is in b; every redaction moves it past 0
	start := 0
	for start <= len(raw) {
		end := strings.IndexAny(raw[start:], "&;")
		if end < 0 {
			end = len(raw)
		} else {
			end += start
		}
		seg := raw[start:end]
		if eq := strings.IndexByte(seg, '='); eq >= 0 {
			val := seg[eq+1:]
			if val != "" && val != Redacted && redact(seg[:eq], val) {
				if done == 0 {
					b.Grow(len(raw) + len(Redacted))
				}
				valStart := start + eq + 1
				b.WriteString(raw[done:valStart])
				b.WriteString(Redacted)
				done = end
			}
		}
		start = end + 1
	}
	if done == 0 {
		return raw
	}
	b.WriteString(raw[done:])
	return b.String()
}

// mustRedact reports whether the value of parameter key must not be logged.
func mustRedact(key, val string, sensitive []string) bool {
	name, err := url.QueryUnescape(key)
	if err != nil {
		// A name we cannot decode may be a sensitive one a lenient server decodes
		// differently; over-redacting is the safe side.
		return true
	}
	for _, s := range sensitive {
		if strings.EqualFold(name, s) {
			return true
		}
	}
	return looksLikeJWT(val)
}

// looksLikeJWT catches compact JWS/JWE tokens passed under any name: a base64url
// JSON header starts "eyJ" ("{\"") and the compact form has at least two dots. The
// value may be percent-encoded, but "eyJ" and "." never need escaping.
func looksLikeJWT(val string) bool {
	i := strings.Index(val, "eyJ")
	return i >= 0 && strings.Count(val[i:], ".") >= 2
}
