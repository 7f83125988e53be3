package identity

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/url"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
)

// devBackdate is how far before "now" issued certificates start to be valid,
// so that a peer whose clock is slightly behind still accepts them.
const devBackdate = 30 * time.Second

// DevCA is an in-memory certificate authority for one trust domain (ECDSA
// P-256). Its key never leaves the process. It is meant for `gateway dev` and
// tests, not for production identities.
type DevCA struct {
	td   spiffeid.TrustDomain
	key  *ecdsa.PrivateKey
	root *x509.Certificate
}

// NewDevCA creates a CA whose self-signed root carries the trust domain's
// SPIFFE ID (spiffe://td) and is valid for a year.
func NewDevCA(td string) (*DevCA, error) {
	trustDomain, err := spiffeid.TrustDomainFromString(td)
	if err != nil {
		return nil, fmt.Errorf("identity: dev CA trust domain %q: %w", td, err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("identity: dev CA key: %w", err)
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		Subject:               pkix.Name{Organization: []string{"Tollgate dev CA"}, CommonName: trustDomain.Name()},
		URIs:                  []*url.URL{trustDomain.ID().URL()},
		NotBefore:             now.Add(-devBackdate),
		NotAfter:              now.Add(365 * 24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	root, err := createCert(tmpl, nil, key)
	if err != nil {
		return nil, fmt.Errorf("identity: dev CA root: %w", err)
	}
	return &DevCA{td: trustDomain, key: key, root: root}, nil
}

// TrustDomain returns the CA's trust domain.
func (ca *DevCA) TrustDomain() spiffeid.TrustDomain { return ca.td }

// Root returns the CA's self-signed root certificate.
func (ca *DevCA) Root() *x509.Certificate { return ca.root }

// Bundle returns a new X.509 bundle holding the CA's root.
func (ca *DevCA) Bundle() *x509bundle.Bundle {
	return x509bundle.FromX509Authorities(ca.td, []*x509.Certificate{ca.root})
}

// RootPEM returns the CA's root certificate in PEM form, e.g. for a bundle
// file or for clients of a dev-mode listener.
func (ca *DevCA) RootPEM() []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ca.root.Raw})
}

// IssueSVID issues an X.509 SVID for id, valid until now+ttl and backdated
// by a tenth of ttl (at most 30s) for clock skew. X.509 times have
// one-second resolution: NotAfter may be up to a second earlier than asked.
// The id must belong to the CA's trust domain.
func (ca *DevCA) IssueSVID(id spiffeid.ID, ttl time.Duration) (*x509svid.SVID, error) {
	return ca.IssueSVIDWithNames(id, ttl, SVIDNames{})
}

// IssueSVIDWithNames is IssueSVID with names beside the SPIFFE ID.
func (ca *DevCA) IssueSVIDWithNames(id spiffeid.ID, ttl time.Duration, names SVIDNames) (*x509svid.SVID, error) {
	if ttl <= 0 {
		return nil, fmt.Errorf("identity: SVID ttl must be positive (got %s)", ttl)
	}
	now := time.Now()
	return ca.issueValidity(id, now.Add(-min(devBackdate, ttl/10)), now.Add(ttl), names)
}

// IssueSVIDValidity issues an X.509 SVID for id with an explicit validity
// window. Tests use it to make SVIDs that are expired or not yet valid.
func (ca *DevCA) IssueSVIDValidity(id spiffeid.ID, notBefore, notAfter time.Time) (*x509svid.SVID, error) {
	return ca.issueValidity(id, notBefore, notAfter, SVIDNames{})
}

func (ca *DevCA) issueValidity(id spiffeid.ID, notBefore, notAfter time.Time, names SVIDNames) (*x509svid.SVID, error) {
	if id.IsZero() {
		return nil, errors.New("identity: cannot issue an SVID for an empty SPIFFE ID")
	}
	// A CA signs only for its own trust domain; issuing outside it would
	// produce certificates no correct verifier accepts.
	if !id.MemberOf(ca.td) {
		return nil, fmt.Errorf("identity: dev CA for %s cannot issue an SVID for %s", ca.td, id)
	}
	return ca.issueSVIDNames(id, notBefore, notAfter, names)
}

// SVIDNames are names an SVID may carry besides its one SPIFFE ID: the
// X509-SVID specification allows DNS and IP SANs, which clients that check a
// server by name (curl, as a proxy's client) need.
type SVIDNames struct {
	DNSNames []string
	IPs      []net.IP
}

// issueSVID signs an SVID for id without checking its trust domain.
func (ca *DevCA) issueSVID(id spiffeid.ID, notBefore, notAfter time.Time) (*x509svid.SVID, error) {
	return ca.issueSVIDNames(id, notBefore, notAfter, SVIDNames{})
}

func (ca *DevCA) issueSVIDNames(id spiffeid.ID, notBefore, notAfter time.Time, names SVIDNames) (*x509svid.SVID, error) {
	if !notAfter.After(notBefore) {
		return nil, fmt.Errorf("identity: SVID validity ends (%s) before it starts (%s)", notAfter, notBefore)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("identity: SVID key: %w", err)
	}
	// X.509-SVID rules: exactly one URI SAN, not a CA, digitalSignature,
	// no keyCertSign/cRLSign.
	tmpl := &x509.Certificate{
		Subject:               pkix.Name{Organization: []string{"Tollgate dev SVID"}},
		URIs:                  []*url.URL{id.URL()},
		DNSNames:              names.DNSNames,
		IPAddresses:           names.IPs,
		NotBefore:             notBefore,
		NotAfter:              notAfter,
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment | x509.KeyUsageKeyAgreement,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		BasicConstraintsValid: true,
	}
	leaf, err := createCert(tmpl, ca, key)
	if err != nil {
		return nil, fmt.Errorf("identity: SVID for %s: %w", id, err)
	}
	return &x509svid.SVID{ID: id, Certificates: []*x509.Certificate{leaf}, PrivateKey: key}, nil
}

// IssueServerCert issues an ordinary serverAuth certificate (no SPIFFE ID)
// for dnsNames and ips, e.g. for a dev-mode listener on localhost. Clients
// trust it through [DevCA.RootPEM].
func (ca *DevCA) IssueServerCert(dnsNames []string, ips []net.IP, ttl time.Duration) (tls.Certificate, error) {
	if len(dnsNames) == 0 && len(ips) == 0 {
		return tls.Certificate{}, errors.New("identity: server certificate needs at least one DNS name or IP")
	}
	if ttl <= 0 {
		return tls.Certificate{}, fmt.Errorf("identity: server certificate ttl must be positive (got %s)", ttl)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("identity: server key: %w", err)
	}
	now := time.Now()
	cn := ""
	if len(dnsNames) > 0 {
		cn = dnsNames[0]
	}
	tmpl := &x509.Certificate{
		Subject:               pkix.Name{Organization: []string{"Tollgate dev server"}, CommonName: cn},
		DNSNames:              dnsNames,
		IPAddresses:           ips,
		NotBefore:             now.Add(-devBackdate),
		NotAfter:              now.Add(ttl),
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
	}
	leaf, err := createCert(tmpl, ca, key)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("identity: server certificate: %w", err)
	}
	return tls.Certificate{Certificate: [][]byte{leaf.Raw}, PrivateKey: key, Leaf: leaf}, nil
}

// createCert signs tmpl with issuer (self-signed when issuer is nil) and
// fills in a random 128-bit serial.
func createCert(tmpl *x509.Certificate, issuer *DevCA, key *ecdsa.PrivateKey) (*x509.Certificate, error) {
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 128))
	if err != nil {
		return nil, err
	}
	tmpl.SerialNumber = serial
	parent, signer := tmpl, key
	if issuer != nil {
		parent, signer = issuer.root, issuer.key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, key.Public(), signer)
	if err != nil {
		return nil, err
	}
	return x509.ParseCertificate(der)
}
