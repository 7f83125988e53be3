package identity_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"tollgate.dev/tollgate/internal/identity"
)

func TestParseMatcherErrors(t *testing.T) {
	tests := []struct {
		name    string
		pattern string
		wantErr string
	}{
		{name: "no scheme", pattern: "example.org/ns/a", wantErr: `must start with "spiffe://"`},
		{name: "wrong scheme", pattern: "https://example.org/a", wantErr: `must start with "spiffe://"`},
		{name: "upper scheme", pattern: "SPIFFE://example.org", wantErr: `must start with "spiffe://"`},
		{name: "empty", pattern: "", wantErr: `must start with "spiffe://"`},
		{name: "no trust domain", pattern: "spiffe://", wantErr: "missing trust domain"},
		{name: "empty trust domain with path", pattern: "spiffe:///ns/a", wantErr: "trust domain is missing"},
		{name: "upper-case trust domain", pattern: "spiffe://Example.org/a", wantErr: "trust domain characters are limited"},
		{name: "trailing slash", pattern: "spiffe://example.org/ns/", wantErr: "path cannot have a trailing slash"},
		{name: "trust domain trailing slash", pattern: "spiffe://example.org/", wantErr: "path cannot have a trailing slash"},
		{name: "dot segment", pattern: "spiffe://example.org/ns/../admin", wantErr: "path cannot contain dot segments"},
		{name: "empty segment", pattern: "spiffe://example.org/ns//a", wantErr: "path cannot contain empty segments"},
		{name: "query", pattern: "spiffe://example.org/a?x=1", wantErr: "path segment characters are limited"},
		{name: "port", pattern: "spiffe://example.org:443/a", wantErr: "trust domain characters are limited"},
		{name: "mid-path wildcard", pattern: "spiffe://example.org/ns/*/sa/a", wantErr: `"*" is only allowed`},
		{name: "partial segment wildcard", pattern: "spiffe://example.org/ns/pay*", wantErr: `"*" is only allowed`},
		{name: "trust domain wildcard", pattern: "spiffe://*.example.org", wantErr: `"*" is only allowed`},
		{name: "any trust domain", pattern: "spiffe://*", wantErr: `"*" is only allowed`},
		{name: "double wildcard", pattern: "spiffe://example.org/ns/*/*", wantErr: `"*" is only allowed`},
		{name: "space", pattern: "spiffe://example.org/a b", wantErr: "path segment characters are limited"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, err := identity.ParseMatcher([]string{"spiffe://ok.org/a", tt.pattern})
			if err == nil {
				t.Fatalf("ParseMatcher(%q) = %v, want error containing %q", tt.pattern, m, tt.wantErr)
			}
			if !errors.Is(err, identity.ErrBadPattern) {
				t.Errorf("error %v does not match ErrBadPattern", err)
			}
			if !strings.Contains(err.Error(), tt.wantErr) || !strings.Contains(err.Error(), "pattern 1") {
				t.Errorf("error = %q, want it to name pattern 1 and contain %q", err, tt.wantErr)
			}
		})
	}
}

func TestMatcherMatch(t *testing.T) {
	patterns := []string{
		"spiffe://example.org/ns/web/sa/api",
		"spiffe://partner.example",
		"spiffe://example.org/ns/pay/*",
		"spiffe://other.org/*",
	}
	m, err := identity.ParseMatcher(patterns)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		id   string
		want bool
	}{
		{id: "spiffe://example.org/ns/web/sa/api", want: true},
		{id: "spiffe://example.org/ns/web/sa/api2", want: false},
		{id: "spiffe://example.org/ns/web/sa", want: false},
		{id: "spiffe://example.org/ns/web/sa/api/x", want: false},
		{id: "spiffe://evil.org/ns/web/sa/api", want: false},
		{id: "spiffe://partner.example/anything/at/all", want: true},
		{id: "spiffe://partner.example", want: true},
		{id: "spiffe://sub.partner.example/a", want: false},
		{id: "spiffe://partner.example.evil/a", want: false},
		{id: "spiffe://example.org/ns/pay/sa/x", want: true},
		{id: "spiffe://example.org/ns/pay/x", want: true},
		// Segment-aware: /ns/pay/* must not match a sibling that shares the prefix.
		{id: "spiffe://example.org/ns/payments", want: false},
		{id: "spiffe://example.org/ns/payments/sa/x", want: false},
		{id: "spiffe://example.org/ns/pay", want: false},
		{id: "spiffe://evil.org/ns/pay/sa/x", want: false},
		{id: "spiffe://other.org/a", want: true},
		{id: "spiffe://other.org", want: false},
		{id: "spiffe://example.org", want: false},
	}
	for _, tt := range tests {
		t.Run(tt.id, func(t *testing.T) {
			id := spiffeid.RequireFromString(tt.id)
			if got := m.Match(id); got != tt.want {
				t.Errorf("Match(%s) = %v, want %v (matcher %s)", tt.id, got, tt.want, m)
			}
		})
	}
	if m.Match(spiffeid.ID{}) {
		t.Error("zero ID matched")
	}
	if diff := cmp.Diff(patterns, m.Patterns()); diff != "" {
		t.Errorf("Patterns() mismatch (-want +got):\n%s", diff)
	}
	if got, want := m.String(), strings.Join(patterns, ", "); got != want {
		t.Errorf("String() = %q, want %q", got, want)
	}
}

func TestEmptyMatcherMatchesNothing(t *testing.T) {
	for name, m := range map[string]identity.Matcher{
		"zero":   {},
		"parsed": mustMatcher(t),
	} {
		t.Run(name, func(t *testing.T) {
			if !m.Empty() {
				t.Error("Empty() = false")
			}
			if m.Match(spiffeid.RequireFromString("spiffe://example.org/a")) {
				t.Error("empty matcher matched an ID")
			}
			if got := m.String(); got != "<none>" {
				t.Errorf("String() = %q", got)
			}
		})
	}
}

func mustMatcher(tb testing.TB, patterns ...string) identity.Matcher {
	tb.Helper()
	m, err := identity.ParseMatcher(patterns)
	if err != nil {
		tb.Fatal(err)
	}
	return m
}

// FuzzParseMatcher checks that the parser never panics, that accepted
// patterns round-trip through their canonical form, and that each accepted
// pattern matches what it says and nothing one segment sideways.
func FuzzParseMatcher(f *testing.F) {
	for _, s := range []string{
		"spiffe://example.org", "spiffe://example.org/a/b", "spiffe://example.org/ns/pay/*",
		"spiffe://example.org/*", "spiffe://", "spiffe:///a", "spiffe://a/../b", "spiffe://a//b",
		"spiffe://a/b/", "spiffe://a/*/b", "spiffe://*", "spiffe://a?b", "spiffe://a#b", "spiffe://a:1/b",
		"spiffe://a/%2e%2e", "spiffe://a/b*", "spiffe://xn--bcher-kva.example/x", "spiffe://a/b/*/",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, p string) {
		m, err := identity.ParseMatcher([]string{p})
		if err != nil {
			if !errors.Is(err, identity.ErrBadPattern) {
				t.Fatalf("error %v does not wrap ErrBadPattern", err)
			}
			return
		}
		canon := m.Patterns()
		if len(canon) != 1 {
			t.Fatalf("ParseMatcher(%q) has %d patterns", p, len(canon))
		}
		again, err := identity.ParseMatcher(canon)
		if err != nil {
			t.Fatalf("canonical form %q of %q does not parse: %v", canon[0], p, err)
		}
		if again.String() != m.String() {
			t.Fatalf("round trip %q -> %q -> %q", p, m, again)
		}
		base, wildcard := strings.CutSuffix(canon[0], "/*")
		baseID, err := spiffeid.FromString(base)
		if err != nil {
			// Only trust-domain patterns have a base that isn't an ID path;
			// spiffeid accepts those too.
			t.Fatalf("base %q of accepted pattern %q is not an ID: %v", base, p, err)
		}
		child, err := baseID.AppendSegments("child")
		if err != nil {
			t.Fatalf("AppendSegments: %v", err)
		}
		sibling, err := spiffeid.FromString(base + "x")
		if err == nil && baseID.Path() != "" && m.Match(sibling) {
			t.Fatalf("pattern %q matches sibling %s", p, sibling)
		}
		switch {
		case wildcard:
			if !m.Match(child) {
				t.Fatalf("prefix pattern %q does not match %s", p, child)
			}
			if baseID.Path() != "" && m.Match(baseID) {
				t.Fatalf("prefix pattern %q matches its own base %s", p, baseID)
			}
		case baseID.Path() == "":
			if !m.Match(baseID) || !m.Match(child) {
				t.Fatalf("trust-domain pattern %q does not match its members", p)
			}
		default:
			if !m.Match(baseID) {
				t.Fatalf("exact pattern %q does not match itself", p)
			}
			if m.Match(child) {
				t.Fatalf("exact pattern %q matches child %s", p, child)
			}
		}
	})
}
