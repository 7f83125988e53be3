// Package identitytest provides in-memory SPIFFE material for tests of any
// package: a CA per trust domain, SVIDs, sources and matchers. Nothing is
// written to disk and no private key is ever committed.
package identitytest

import (
	"crypto/tls"
	"net"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"

	"tollgate.dev/tollgate/internal/identity"
)

// DefaultTTL is the lifetime of SVIDs made by this package unless stated.
const DefaultTTL = time.Hour

// NewCA returns an in-memory CA for trust domain td ("example.org").
func NewCA(tb testing.TB, td string) *identity.DevCA {
	tb.Helper()
	ca, err := identity.NewDevCA(td)
	if err != nil {
		tb.Fatalf("identitytest: NewCA(%q): %v", td, err)
	}
	return ca
}

// ID parses a SPIFFE ID or fails the test.
func ID(tb testing.TB, id string) spiffeid.ID {
	tb.Helper()
	parsed, err := spiffeid.FromString(id)
	if err != nil {
		tb.Fatalf("identitytest: ID(%q): %v", id, err)
	}
	return parsed
}

// SVID issues an SVID for id ("spiffe://td/path") valid for DefaultTTL.
func SVID(tb testing.TB, ca *identity.DevCA, id string) *x509svid.SVID {
	tb.Helper()
	svid, err := ca.IssueSVID(ID(tb, id), DefaultTTL)
	if err != nil {
		tb.Fatalf("identitytest: SVID(%q): %v", id, err)
	}
	return svid
}

// ExpiredSVID issues an SVID for id that expired a minute ago.
func ExpiredSVID(tb testing.TB, ca *identity.DevCA, id string) *x509svid.SVID {
	tb.Helper()
	now := time.Now()
	svid, err := ca.IssueSVIDValidity(ID(tb, id), now.Add(-time.Hour), now.Add(-time.Minute))
	if err != nil {
		tb.Fatalf("identitytest: ExpiredSVID(%q): %v", id, err)
	}
	return svid
}

// Source returns a rotating dev source for id (DefaultTTL) that trusts ca
// and the federated bundles. It is closed when the test ends.
func Source(tb testing.TB, ca *identity.DevCA, id string, federated ...*x509bundle.Bundle) *identity.DevSource {
	tb.Helper()
	src, err := identity.NewDevSource(ca, ID(tb, id), DefaultTTL, federated...)
	if err != nil {
		tb.Fatalf("identitytest: Source(%q): %v", id, err)
	}
	tb.Cleanup(func() { _ = src.Close() })
	return src
}

// StaticSource returns a source serving exactly svid with the given
// bundles (e.g. an expired SVID, or one from a foreign CA).
func StaticSource(tb testing.TB, svid *x509svid.SVID, bundles ...*x509bundle.Bundle) *identity.Static {
	tb.Helper()
	src, err := identity.NewStatic(svid, bundles...)
	if err != nil {
		tb.Fatalf("identitytest: StaticSource: %v", err)
	}
	tb.Cleanup(func() { _ = src.Close() })
	return src
}

// Matcher parses allow-list patterns or fails the test.
func Matcher(tb testing.TB, patterns ...string) identity.Matcher {
	tb.Helper()
	m, err := identity.ParseMatcher(patterns)
	if err != nil {
		tb.Fatalf("identitytest: Matcher(%q): %v", patterns, err)
	}
	return m
}

// ServerCert issues a plain serverAuth certificate for localhost,
// 127.0.0.1 and ::1, for listeners that face non-mesh clients.
func ServerCert(tb testing.TB, ca *identity.DevCA) tls.Certificate {
	tb.Helper()
	cert, err := ca.IssueServerCert([]string{"localhost"}, []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback}, DefaultTTL)
	if err != nil {
		tb.Fatalf("identitytest: ServerCert: %v", err)
	}
	return cert
}
