package oidc

import (
	"errors"
	"fmt"
	"net/http"
	"strings"

	"golang.org/x/net/http/httpguts"

	"tollgate.dev/tollgate/internal/policy/pathnorm"
	"tollgate.dev/tollgate/internal/request"
)

// errUnreadableCredential: a header the listener reads tokens from is present
// but holds no token in the configured form (another auth-scheme such as
// Basic, the scheme with no credential, garbage). Treating it as "no token"
// would forward a credential nobody verified to an upstream that may accept
// it ("bearer <forged>" reaching a backend that matches the scheme
// case-insensitively, as RFC 9110 §11.1 says it should).
var errUnreadableCredential = errors.New("unreadable credential")

// ErrAmbiguousQuery: a rule reads tokens from query parameters and the query
// can't be read one way only: an unescaped ';', which some upstreams split
// pairs on and others don't (parameter cloaking: "access_token=<forged>;x=1"
// is no token to pathnorm.ParseQuery and one to a backend that splits on ';').
// No parameter is read from such a query and the request is refused, as a
// malformed request (400, the status the policy gives the same query), not a
// bad token. It wraps the pathnorm error (pathnorm.ErrQuerySemicolon, ...).
var ErrAmbiguousQuery = errors.New("query can't be read one way only")

type locKind uint8

const (
	locHeader locKind = iota
	locParam
	locCookie
)

// location is one place a token may be sent. Header names are canonical.
type location struct {
	kind   locKind
	name   string
	prefix string
	// scheme is the auth-scheme of a prefix that is one followed by
	// whitespace ("Bearer ", "Token "), else "". Such a prefix is matched as
	// RFC 9110 §11.1 and §11.6.2 define the field: the scheme
	// case-insensitively, then one or more SP or HTAB.
	scheme string
}

// headerLocation is the location of a token in header name after prefix.
func headerLocation(name, prefix string) location {
	return location{kind: locHeader, name: http.CanonicalHeaderKey(name), prefix: prefix, scheme: authScheme(prefix)}
}

// authScheme returns the auth-scheme of a prefix made of a token (RFC 9110
// §5.6.2) and trailing SP/HTAB, or "" for any other prefix, which is then
// matched exactly.
func authScheme(prefix string) string {
	s := strings.TrimRight(prefix, " \t")
	if s == "" || s == prefix {
		return ""
	}
	for i := 0; i < len(s); i++ {
		if !httpguts.IsTokenRune(rune(s[i])) {
			return ""
		}
	}
	return s
}

func (l location) String() string {
	switch l.kind {
	case locHeader:
		return "header " + l.name
	case locParam:
		return "query parameter " + l.name
	}
	return "cookie " + l.name
}

// credential reads the token of a header value: ok is false when v is not in
// this location's form. With ok true the token may be empty ("Bearer" alone),
// which the caller refuses.
func (l location) credential(v string) (tok string, ok bool) {
	if l.scheme == "" {
		rest, ok := strings.CutPrefix(v, l.prefix)
		return strings.Trim(rest, " \t"), ok
	}
	n := len(l.scheme)
	if len(v) < n || !asciiEqualFold(v[:n], l.scheme) {
		return "", false
	}
	rest := v[n:]
	if rest != "" && rest[0] != ' ' && rest[0] != '\t' {
		return "", false // "Bearerx", "Bearer,x": another scheme
	}
	return strings.Trim(rest, " \t"), true
}

// asciiEqualFold compares ASCII case-insensitively; auth-schemes are tokens,
// so no Unicode folding (which would let "K", U+212A, stand for 'k').
func asciiEqualFold(a, b string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := 0; i < len(a); i++ {
		x, y := a[i], b[i]
		if 'A' <= x && x <= 'Z' {
			x += 'a' - 'A'
		}
		if 'A' <= y && y <= 'Z' {
			y += 'a' - 'A'
		}
		if x != y {
			return false
		}
	}
	return true
}

// defaultLocations are Istio's when a rule names none.
var defaultLocations = []location{
	headerLocation("Authorization", "Bearer "),
	{kind: locParam, name: "access_token"},
}

type foundToken struct {
	loc   location
	value string
}

// extract finds the token at every configured location, appending to found
// (the caller's buffer). Headers and cookies are read from r; query
// parameters from q's query, the one the policy judges and the upstream
// receives (q.Query when the exchange already decoded it, else read from
// q.RawQuery the same way, see pathnorm.QueryParam). A location that carries
// more than one candidate (two Authorization headers, a repeated parameter or
// cookie) is an error: which copy the upstream or another proxy would read is
// not ours to guess. So is a header that is present and not empty but that no
// location of its name can read (errUnreadableCredential): Envoy calls that
// "no token" and forwards the header unverified.
//
// A query that can't be read one way only is ErrAmbiguousQuery, returned once
// every other location has been looked at: a credential found unreadable or
// repeated there is reported as such (401), else the query is (400). No token
// is returned with it: the request is refused whatever the others hold.
func extract(r *http.Request, q *request.Request, locs []location, found []foundToken) ([]foundToken, error) {
	var (
		queryErr error
		cookies  map[string][]string
		unread   []string // headers present that a location could not read
	)
	for _, l := range locs {
		var vals []string
		switch l.kind {
		case locHeader:
			vals = r.Header.Values(l.name)
			if len(vals) == 1 {
				if vals[0] == "" {
					continue // an empty field carries no credential
				}
				tok, ok := l.credential(vals[0])
				if !ok {
					// Another location may read this header with another
					// prefix; judged once every location has looked.
					unread = append(unread, l.name)
					continue
				}
				if tok == "" {
					return nil, fmt.Errorf("%w: %s has no credential after its prefix", errUnreadableCredential, l)
				}
				found = append(found, foundToken{loc: l, value: tok})
				continue
			}
		case locParam:
			if q.RawQuery == "" || queryErr != nil {
				continue
			}
			if q.Query != nil {
				vals = q.Query[l.name]
				break
			}
			// Read as the policy reads it (exchange.Authorize decodes it
			// with pathnorm.ParseQuery; QueryParam shares its code), so
			// both see the same parameters. A query it can't read (a ';'
			// separator, a bad escape) may still carry a token for an
			// upstream that reads it differently: never skip it as "no
			// token"; the request is refused once the other locations have
			// been judged.
			tok, n, err := pathnorm.QueryParam(q.RawQuery, l.name)
			if err != nil {
				queryErr = fmt.Errorf("%w: %w", ErrAmbiguousQuery, err)
				continue
			}
			if n > 1 {
				return nil, fmt.Errorf("%w: %s sent %d times", errMultipleTokens, l, n)
			}
			if tok != "" {
				found = append(found, foundToken{loc: l, value: tok})
			}
			continue
		case locCookie:
			if cookies == nil {
				cookies = make(map[string][]string)
				for _, c := range r.Cookies() {
					cookies[c.Name] = append(cookies[c.Name], c.Value)
				}
			}
			vals = cookies[l.name]
		}
		if len(vals) > 1 {
			return nil, fmt.Errorf("%w: %s sent %d times", errMultipleTokens, l, len(vals))
		}
		if len(vals) == 1 && vals[0] != "" {
			found = append(found, foundToken{loc: l, value: vals[0]})
		}
	}
	for _, name := range unread {
		if !readHeader(found, name) {
			return nil, fmt.Errorf("%w: header %s is in none of the configured forms", errUnreadableCredential, name)
		}
	}
	if queryErr != nil {
		return nil, queryErr
	}
	return found, nil
}

// readHeader reports whether a token was found in header name.
func readHeader(found []foundToken, name string) bool {
	for _, f := range found {
		if f.loc.kind == locHeader && f.loc.name == name {
			return true
		}
	}
	return false
}

// isCORSPreflight matches Envoy's bypass_cors_preflight: such requests skip JWT
// verification (browsers send no credentials on preflight); authorization
// still runs and sees no request principal.
func isCORSPreflight(r *http.Request) bool {
	return r.Method == http.MethodOptions && r.Header.Get("Origin") != "" &&
		r.Header.Get("Access-Control-Request-Method") != ""
}
