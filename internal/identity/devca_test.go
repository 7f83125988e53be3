package identity_test

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"

	"tollgate.dev/tollgate/internal/identity"
	"tollgate.dev/tollgate/internal/identity/identitytest"
)

func TestDevCAIssueSVID(t *testing.T) {
	ca := identitytest.NewCA(t, "example.org")
	id := identitytest.ID(t, gatewayID)
	svid, err := ca.IssueSVID(id, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	// The SVID must pass go-spiffe's own parsing rules and verify against
	// the CA's bundle (and only that bundle).
	certPEM, keyPEM, err := svid.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	parsed, err := x509svid.Parse(certPEM, keyPEM)
	if err != nil {
		t.Fatalf("x509svid.Parse: %v", err)
	}
	if parsed.ID != id {
		t.Errorf("ID = %s, want %s", parsed.ID, id)
	}
	if _, _, err := x509svid.Verify(svid.Certificates, ca.Bundle()); err != nil {
		t.Errorf("Verify against own bundle: %v", err)
	}
	other := identitytest.NewCA(t, "example.org")
	if _, _, err := x509svid.Verify(svid.Certificates, other.Bundle()); err == nil {
		t.Error("SVID verified against another CA's bundle")
	}
	b, err := x509bundle.Parse(ca.TrustDomain(), ca.RootPEM())
	if err != nil || !b.Equal(ca.Bundle()) {
		t.Errorf("RootPEM does not round-trip to Bundle: %v", err)
	}

	tests := []struct {
		name    string
		id      spiffeid.ID
		ttl     time.Duration
		wantErr string
	}{
		{name: "foreign trust domain", id: identitytest.ID(t, "spiffe://other.org/x"), ttl: time.Hour, wantErr: "cannot issue an SVID for spiffe://other.org/x"},
		{name: "zero ID", ttl: time.Hour, wantErr: "empty SPIFFE ID"},
		{name: "zero ttl", id: id, wantErr: "ttl must be positive"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ca.IssueSVID(tt.id, tt.ttl)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("IssueSVID error = %v, want %q", err, tt.wantErr)
			}
		})
	}
	if _, err := identity.NewDevCA("Example.org"); err == nil {
		t.Error("NewDevCA accepted an invalid trust domain")
	}
}

// TestDevCAServerCert: the dev-mode listener certificate works for an
// ordinary TLS client that trusts RootPEM, on loopback by IP and by name.
func TestDevCAServerCert(t *testing.T) {
	ca := identitytest.NewCA(t, "example.org")
	cert := identitytest.ServerCert(t, ca)
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(ca.RootPEM()) {
		t.Fatal("RootPEM not parseable")
	}
	for _, name := range []string{"localhost", "127.0.0.1"} {
		t.Run(name, func(t *testing.T) {
			res := handshake(t, localListener(t),
				&tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12},
				&tls.Config{RootCAs: pool, ServerName: name, MinVersion: tls.VersionTLS12})
			if res.clientErr != nil || res.serverErr != nil {
				t.Fatalf("handshake: client %v, server %v", res.clientErr, res.serverErr)
			}
		})
	}
	res := handshake(t, localListener(t),
		&tls.Config{Certificates: []tls.Certificate{cert}},
		&tls.Config{RootCAs: pool, ServerName: "example.com"})
	if res.clientErr == nil {
		t.Error("certificate accepted for a name it does not carry")
	}
	if _, err := ca.IssueServerCert(nil, nil, time.Hour); err == nil {
		t.Error("IssueServerCert without names succeeded")
	}
	if _, err := ca.IssueServerCert([]string{"localhost"}, []net.IP{net.IPv6loopback}, 0); err == nil {
		t.Error("IssueServerCert with zero ttl succeeded")
	}
}

func TestStatusReady(t *testing.T) {
	now := time.Date(2030, 1, 1, 12, 0, 0, 0, time.UTC)
	id := spiffeid.RequireFromString(gatewayID)
	boom := errors.New("agent unreachable")
	tests := []struct {
		name    string
		st      identity.Status
		wantErr string // "" means ready
	}{
		{name: "fresh", st: identity.Status{ID: id, NotBefore: now.Add(-time.Minute), NotAfter: now.Add(time.Hour)}},
		{name: "closed", st: identity.Status{ID: id, NotBefore: now.Add(-time.Minute), NotAfter: now.Add(time.Hour), Closed: true}, wantErr: "source is closed"},
		{name: "no SVID", st: identity.Status{}, wantErr: "no SVID available"},
		{name: "no SVID, with cause", st: identity.Status{LastError: boom}, wantErr: "no SVID available: agent unreachable"},
		{name: "within margin", st: identity.Status{ID: id, NotBefore: now.Add(-time.Hour), NotAfter: now.Add(20 * time.Second)}, wantErr: "expires at 2030-01-01T12:00:20Z"},
		{name: "expired", st: identity.Status{ID: id, NotBefore: now.Add(-time.Hour), NotAfter: now.Add(-time.Second), LastError: boom}, wantErr: "last refresh error: agent unreachable"},
		{name: "short-lived, margin scales", st: identity.Status{ID: id, NotBefore: now.Add(-10 * time.Second), NotAfter: now.Add(10 * time.Second)}},
		{name: "short-lived, last tenth", st: identity.Status{ID: id, NotBefore: now.Add(-19 * time.Second), NotAfter: now.Add(time.Second)}, wantErr: "expires"},
		{name: "not yet valid", st: identity.Status{ID: id, NotBefore: now.Add(time.Minute), NotAfter: now.Add(time.Hour)}, wantErr: "not valid before"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.st.Ready(now)
			switch {
			case tt.wantErr == "" && err != nil:
				t.Errorf("Ready = %v, want nil", err)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Errorf("Ready = %v, want error containing %q", err, tt.wantErr)
			}
		})
	}
}

func TestNewDevSourceErrors(t *testing.T) {
	ca := identitytest.NewCA(t, "example.org")
	id := identitytest.ID(t, gatewayID)
	if _, err := identity.NewDevSource(nil, id, time.Hour); err == nil {
		t.Error("nil CA accepted")
	}
	if _, err := identity.NewDevSource(ca, id, time.Millisecond); err == nil || !strings.Contains(err.Error(), "below the minimum") {
		t.Errorf("tiny ttl: %v", err)
	}
	if _, err := identity.NewDevSource(ca, identitytest.ID(t, "spiffe://other.org/x"), time.Hour); err == nil {
		t.Error("ID outside the CA's trust domain accepted")
	}
	if _, err := identity.NewDevSource(ca, id, time.Hour, identitytest.NewCA(t, "example.org").Bundle()); err == nil {
		t.Error("federated bundle for the CA's own trust domain accepted")
	}
}

// An SVID may carry DNS and IP names beside its one SPIFFE ID (X509-SVID
// §2): it still parses as an SVID, and a client checking a server by name
// (curl as a proxy's client) accepts it.
func TestDevCAIssueSVIDWithNames(t *testing.T) {
	ca, err := identity.NewDevCA("example.org")
	if err != nil {
		t.Fatal(err)
	}
	id := spiffeid.RequireFromString("spiffe://example.org/gw")
	svid, err := ca.IssueSVIDWithNames(id, time.Hour, identity.SVIDNames{DNSNames: []string{"localhost"}, IPs: []net.IP{net.IPv4(127, 0, 0, 1)}})
	if err != nil {
		t.Fatal(err)
	}
	certPEM, keyPEM, err := svid.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	parsed, err := x509svid.Parse(certPEM, keyPEM)
	if err != nil || parsed.ID != id {
		t.Fatalf("not an SVID of %s: %v", id, err)
	}
	leaf := parsed.Certificates[0]
	pool := x509.NewCertPool()
	pool.AddCert(ca.Root())
	for _, name := range []string{"localhost", "127.0.0.1"} {
		if _, err := leaf.Verify(x509.VerifyOptions{DNSName: name, Roots: pool}); err != nil {
			t.Errorf("verify as %s: %v", name, err)
		}
	}
	if _, err := ca.IssueSVIDWithNames(id, 0, identity.SVIDNames{}); err == nil {
		t.Error("a zero ttl was accepted")
	}
}
