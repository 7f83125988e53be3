package listener

import (
	"crypto/sha256"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"os"
)

// maxPEMFileSize bounds what a reload reads: a certificate chain or key is a
// few kilobytes, and a path pointed at a huge file must not exhaust memory.
const maxPEMFileSize = 1 << 20

// filePair is one configured certificate/key pair and what it serves now.
// Guarded by CertStore.reloadMu.
type filePair struct {
	CertFile
	cert *tls.Certificate // serving; the last version that parsed
	// certSum and keySum hash the content last tried, whether it parsed or
	// not. Content, not mtime or size, decides whether a file changed: a
	// rewrite within the file system's timestamp granularity, or a
	// Kubernetes-style symlink swap, changes neither reliably.
	certSum, keySum [sha256.Size]byte
	lastErr         string // last read error reported, to report it once
}

// pairSnapshot is the content of a pair read from disk.
type pairSnapshot struct {
	CertFile
	certPEM, keyPEM []byte
	certSum, keySum [sha256.Size]byte
}

func readPair(cf CertFile) (*pairSnapshot, error) {
	certPEM, err := readBounded(cf.Cert)
	if err != nil {
		return nil, fmt.Errorf("listener: read certificate file: %w", err)
	}
	keyPEM, err := readBounded(cf.Key)
	if err != nil {
		return nil, fmt.Errorf("listener: read key file: %w", err)
	}
	return &pairSnapshot{
		CertFile: cf,
		certPEM:  certPEM,
		keyPEM:   keyPEM,
		certSum:  sha256.Sum256(certPEM),
		keySum:   sha256.Sum256(keyPEM),
	}, nil
}

func readBounded(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxPEMFileSize+1))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if len(b) > maxPEMFileSize {
		return nil, fmt.Errorf("%s: larger than %d bytes", path, maxPEMFileSize)
	}
	return b, nil
}

// parse checks the pair: both PEM blocks parse and the key matches the
// certificate, which also catches a pair caught half-written during
// rotation (new certificate, old key). first tells whether this is the
// default certificate, the only one that may have no SAN.
func (p *pairSnapshot) parse(first bool) (*tls.Certificate, error) {
	c, err := tls.X509KeyPair(p.certPEM, p.keyPEM)
	if err != nil {
		return nil, fmt.Errorf("listener: load certificate %q with key %q: %w", p.Cert, p.Key, err)
	}
	pc, err := prepareCertificate(c)
	if err != nil {
		return nil, fmt.Errorf("listener: load certificate %q: %w", p.Cert, err)
	}
	if !first && len(pc.Leaf.DNSNames) == 0 && len(pc.Leaf.IPAddresses) == 0 {
		return nil, fmt.Errorf("listener: certificate %q: %w", p.Cert, errNoSAN)
	}
	return pc, nil
}

// errNoSAN: certificates are selected by SAN only (never the subject CN,
// which clients stopped trusting for names), so a non-default certificate
// without one could never be chosen.
var errNoSAN = errors.New("certificate has no DNS or IP subject alternative name, so SNI can never select it")
