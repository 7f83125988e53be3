package identity

import (
	"errors"
	"fmt"
	"strings"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// Matcher decides whether a peer's SPIFFE ID is allowed. It is built once by
// [ParseMatcher] and is immutable and safe for concurrent use. The zero
// Matcher matches nothing: an empty allow-list allows nobody.
type Matcher struct {
	patterns []string                          // canonical forms, in input order
	exact    map[string]struct{}               // spiffe://td/path
	domains  map[spiffeid.TrustDomain]struct{} // spiffe://td
	prefixes []idPrefix                        // spiffe://td/path/*
}

// idPrefix matches IDs strictly below base: path "/ns/payments/" matches
// "/ns/payments/sa/x" but neither "/ns/payments" nor "/ns/paymentsx".
type idPrefix struct {
	td   spiffeid.TrustDomain
	path string // always ends in "/"
}

// ErrBadPattern is wrapped by every error from [ParseMatcher].
var ErrBadPattern = errors.New("invalid SPIFFE ID pattern")

// ParseMatcher compiles allow-list patterns. Each pattern is one of:
//
//	spiffe://example.org/ns/web/sa/api  exactly this ID
//	spiffe://example.org                any ID in the trust domain
//	spiffe://example.org/ns/payments/*  any ID below /ns/payments/ (segment-aware)
//
// Trust domains and paths follow the SPIFFE ID rules (lower-case trust
// domain, no empty, "." or ".." segments, no trailing slash, no query or
// fragment). "*" may appear only as the whole last segment. An empty list
// yields a Matcher that matches nothing.
func ParseMatcher(patterns []string) (Matcher, error) {
	m := Matcher{
		exact:   make(map[string]struct{}),
		domains: make(map[spiffeid.TrustDomain]struct{}),
	}
	var errs []error
	for i, p := range patterns {
		canon, err := m.add(p)
		if err != nil {
			errs = append(errs, fmt.Errorf("pattern %d %q: %w", i, p, err))
			continue
		}
		m.patterns = append(m.patterns, canon)
	}
	if len(errs) > 0 {
		return Matcher{}, fmt.Errorf("identity: %w: %w", ErrBadPattern, errors.Join(errs...))
	}
	return m, nil
}

func (m *Matcher) add(p string) (string, error) {
	const scheme = "spiffe://"
	if !strings.HasPrefix(p, scheme) {
		return "", fmt.Errorf("must start with %q (forms: spiffe://td, spiffe://td/path, spiffe://td/path/*)", scheme)
	}
	rest := p[len(scheme):]
	if rest == "" {
		return "", errors.New("missing trust domain")
	}
	restBase, wildcard := strings.CutSuffix(rest, "/*")
	base := scheme + restBase
	if strings.Contains(restBase, "*") {
		// Globs inside a trust domain or in the middle of a path would make
		// the allow-list far broader than it reads; only a final "/*" is
		// supported.
		return "", errors.New(`"*" is only allowed as the whole last path segment ("/*")`)
	}
	if !strings.Contains(rest, "/") {
		td, err := spiffeid.TrustDomainFromString(p)
		if err != nil {
			return "", err
		}
		m.domains[td] = struct{}{}
		return td.IDString(), nil
	}
	id, err := spiffeid.FromString(base)
	if err != nil {
		return "", err
	}
	if !wildcard {
		if id.Path() == "" {
			// "spiffe://td/" (trailing slash only): spiffeid rejects most
			// forms; keep the rule explicit.
			return "", errors.New("path must not end with a slash")
		}
		m.exact[id.String()] = struct{}{}
		return id.String(), nil
	}
	m.prefixes = append(m.prefixes, idPrefix{td: id.TrustDomain(), path: id.Path() + "/"})
	return id.String() + "/*", nil
}

// Match reports whether id is allowed. A zero id never matches.
func (m Matcher) Match(id spiffeid.ID) bool {
	if id.IsZero() {
		return false
	}
	if _, ok := m.exact[id.String()]; ok {
		return true
	}
	if _, ok := m.domains[id.TrustDomain()]; ok {
		return true
	}
	for _, p := range m.prefixes {
		// Paths of parsed IDs are normalized (no "..", no "//"), so a plain
		// prefix test that ends in "/" respects segment boundaries.
		if id.MemberOf(p.td) && strings.HasPrefix(id.Path(), p.path) {
			return true
		}
	}
	return false
}

// Empty reports whether the Matcher has no patterns (and so matches nothing).
func (m Matcher) Empty() bool { return len(m.patterns) == 0 }

// Patterns returns the canonical patterns in input order.
func (m Matcher) Patterns() []string { return append([]string(nil), m.patterns...) }

// String returns the canonical patterns joined by ", ", or "<none>".
func (m Matcher) String() string {
	if len(m.patterns) == 0 {
		return "<none>"
	}
	return strings.Join(m.patterns, ", ")
}
