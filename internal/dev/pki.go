package dev

import (
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"tollgate.dev/tollgate/internal/identity"
)

// PKI names the files WritePKI writes.
type PKI struct {
	Dir string
	// CA is both the SPIFFE trust bundle and the root of the localhost certificate.
	CA string
	// SVIDs maps each SPIFFE ID to its certificate and key files.
	SVIDs map[string][2]string
	// TLSCert and TLSKey are a server certificate for localhost and 127.0.0.1.
	TLSCert, TLSKey string
}

// WritePKI creates a throwaway CA for trust domain td and writes into dir its
// certificate, an SVID (cert and key) for each id, and a localhost server
// certificate. Keys are written 0600. It is for trying Tollgate with the files
// identity source; production SVIDs come from SPIRE or your own CA.
func WritePKI(dir, td string, ttl time.Duration, ids map[string]string) (*PKI, error) {
	ca, err := identity.NewDevCA(td)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	p := &PKI{Dir: dir, CA: filepath.Join(dir, "ca.crt"), SVIDs: map[string][2]string{}}
	if err := os.WriteFile(p.CA, ca.RootPEM(), 0o644); err != nil {
		return nil, err
	}
	for name, raw := range ids {
		id, err := spiffeid.FromString(raw)
		if err != nil {
			return nil, fmt.Errorf("SPIFFE ID %q: %w", raw, err)
		}
		// Every SVID also names localhost: curl checks a proxy (the egress
		// listener) by name, and so do peers such as nginx checking an
		// upstream (scripts/bench-peers.sh).
		names := identity.SVIDNames{DNSNames: []string{"localhost"}, IPs: []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback}}
		svid, err := ca.IssueSVIDWithNames(id, ttl, names)
		if err != nil {
			return nil, err
		}
		certPEM, keyPEM, err := svid.Marshal()
		if err != nil {
			return nil, err
		}
		cf, kf := filepath.Join(dir, name+".crt"), filepath.Join(dir, name+".key")
		if err := writePair(cf, certPEM, kf, keyPEM); err != nil {
			return nil, err
		}
		p.SVIDs[raw] = [2]string{cf, kf}
	}
	cert, err := ca.IssueServerCert([]string{"localhost"}, []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback}, ttl)
	if err != nil {
		return nil, err
	}
	var certPEM []byte
	for _, der := range cert.Certificate {
		certPEM = append(certPEM, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})...)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(cert.PrivateKey)
	if err != nil {
		return nil, err
	}
	p.TLSCert, p.TLSKey = filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	if err := writePair(p.TLSCert, certPEM, p.TLSKey, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER})); err != nil {
		return nil, err
	}
	return p, nil
}

func writePair(certFile string, certPEM []byte, keyFile string, keyPEM []byte) error {
	if err := os.WriteFile(certFile, certPEM, 0o644); err != nil {
		return err
	}
	// Replace rather than truncate, so a reader never sees a half-written key.
	tmp := keyFile + ".tmp"
	if err := os.WriteFile(tmp, keyPEM, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, keyFile)
}
