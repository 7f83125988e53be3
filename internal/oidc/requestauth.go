package oidc

import (
	"fmt"
	"net/http"
	"net/url"
	"strings"
)

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

// defaultLocations are Istio's when a rule names none.
var defaultLocations = []location{
	{kind: locHeader, name: "Authorization", prefix: "Bearer "},
	{kind: locParam, name: "access_token"},
}

type foundToken struct {
	loc   location
	value string
}

// extract finds the token at every configured location. A location that
// carries more than one candidate (two Authorization headers, a repeated
// parameter or cookie) is an error: which copy the upstream or another proxy
// would read is not ours to guess.
func extract(r *http.Request, locs []location) ([]foundToken, error) {
	var (
		found   []foundToken
		query   url.Values
		cookies map[string][]string
	)
	for _, l := range locs {
		var vals []string
		switch l.kind {
		case locHeader:
			vals = r.Header.Values(l.name)
			if len(vals) == 1 {
				// Envoy treats a value without the configured prefix as no
				// token at all (Istio's docs say "invalid"; Envoy decides).
				v, ok := strings.CutPrefix(vals[0], l.prefix)
				if !ok {
					continue
				}
				vals = []string{strings.TrimSpace(v)}
			}
		case locParam:
			if r.URL.RawQuery == "" {
				continue
			}
			if query == nil {
				var err error
				// A query url.ParseQuery can't read (a ';' separator, a bad
				// escape) may still carry a token for an upstream that reads it
				// differently: refuse it rather than skip the token unverified.
				if query, err = url.ParseQuery(r.URL.RawQuery); err != nil {
					return nil, fmt.Errorf("%w: query parameters can't be read: %v", errMultipleTokens, err)
				}
			}
			vals = query[l.name]
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
	return found, nil
}

// isCORSPreflight matches Envoy's bypass_cors_preflight: such requests skip JWT
// verification (browsers send no credentials on preflight); authorization
// still runs and sees no request principal.
func isCORSPreflight(r *http.Request) bool {
	return r.Method == http.MethodOptions && r.Header.Get("Origin") != "" &&
		r.Header.Get("Access-Control-Request-Method") != ""
}
