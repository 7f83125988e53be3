package listener

import (
	"crypto/sha256"
	"crypto/tls"
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"

	"tollgate.dev/tollgate/internal/filewatch"
)

// maxPEMFileSize bounds what a reload reads: a certificate chain or key is a
// few kilobytes, and a path pointed at a huge file must not exhaust memory.
const maxPEMFileSize = 1 << 20

// pemRead is how a pair's files are read: two named regular files, bounded.
var pemRead = filewatch.ReadOptions{MaxFileSize: maxPEMFileSize}

// filePair is one configured certificate/key pair and what it serves now.
// Guarded by CertStore.reloadMu, except watcher, which is set once.
type filePair struct {
	CertFile
	cert *tls.Certificate // serving; the last version that parsed
	// lastSum is the hash of the content last tried, whether it parsed or
	// not; zero after a read error, so the files coming back are tried (and
	// the recovery reported) even with the old content. Content, not mtime
	// or size, decides whether a pair changed: a rewrite within the file
	// system's timestamp granularity, or a Kubernetes-style symlink swap,
	// changes neither reliably.
	lastSum [sha256.Size]byte
	lastErr string // last read error reported, to report it once

	watcher *filewatch.Watcher // nil when polling is off
}

func (cf CertFile) paths() []string { return []string{cf.Cert, cf.Key} }

// readError names which file of the pair could not be read.
func (cf CertFile) readError(err error) error {
	var pe *fs.PathError
	switch {
	case !errors.As(err, &pe):
		// Not a file's error: the files did not settle before the deadline.
		return fmt.Errorf("listener: certificate %q with key %q: %w", cf.Cert, cf.Key, err)
	case filepath.Clean(pe.Path) == filepath.Clean(cf.Key) && filepath.Clean(cf.Key) != filepath.Clean(cf.Cert):
		return fmt.Errorf("listener: read key file: %w", err)
	}
	return fmt.Errorf("listener: read certificate file: %w", err)
}

// parse checks the pair as read in snap (never re-reading the files): both
// PEM blocks parse and the key matches the certificate, which also catches a
// pair caught half-written during rotation (new certificate, old key). first
// tells whether this is the default certificate, the only one that may have
// no SAN.
func (cf CertFile) parse(snap *filewatch.Snapshot, first bool) (*tls.Certificate, error) {
	certPEM, _ := snap.Data(cf.Cert)
	keyPEM, _ := snap.Data(cf.Key)
	c, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, fmt.Errorf("listener: load certificate %q with key %q: %w", cf.Cert, cf.Key, err)
	}
	pc, err := prepareCertificate(c)
	if err != nil {
		return nil, fmt.Errorf("listener: load certificate %q: %w", cf.Cert, err)
	}
	if !first && len(pc.Leaf.DNSNames) == 0 && len(pc.Leaf.IPAddresses) == 0 {
		return nil, fmt.Errorf("listener: certificate %q: %w", cf.Cert, errNoSAN)
	}
	return pc, nil
}

// errNoSAN: certificates are selected by SAN only (never the subject CN,
// which clients stopped trusting for names), so a non-default certificate
// without one could never be chosen.
var errNoSAN = errors.New("certificate has no DNS or IP subject alternative name, so SNI can never select it")
