package identity

import (
	"bytes"
	"crypto/sha256"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"maps"
	"os"
	"slices"
	"sync"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
)

// DefaultPollInterval is how often [Files] checks its files for changes.
const DefaultPollInterval = 5 * time.Second

// FilesOptions configures [NewFiles].
type FilesOptions struct {
	// Cert is the PEM SVID certificate chain, leaf first.
	Cert string
	// Key is the PEM private key (PKCS#8) of the leaf.
	Key string
	// Bundle is the PEM trust bundle of the SVID's own trust domain.
	Bundle string
	// FederatedBundles maps a trust domain name ("partner.example") to a PEM
	// bundle file for verifying peers from that trust domain.
	FederatedBundles map[string]string
	// PollInterval is how often the files are re-read; 0 means
	// DefaultPollInterval.
	PollInterval time.Duration
	// OnReload, if set, is called from the polling goroutine after each
	// attempt to load changed files: nil on success, the reason otherwise
	// (the previous material keeps serving). Unchanged files cause no call;
	// a file that stays unreadable is reported on every poll.
	OnReload func(error)
}

// Files is a [Source] that reads its SVID and bundles from PEM files (as
// written by spiffe-helper or a Kubernetes secret) and reloads them when
// their content changes. Files are compared by content hash, which also
// catches atomic symlink swaps and same-size rewrites within one mtime tick.
type Files struct {
	holder
	opts    FilesOptions
	lastSum [sha256.Size]byte // content of the last load attempt, good or bad

	stop      chan struct{}
	done      chan struct{}
	closeOnce sync.Once
}

var _ Source = (*Files)(nil)

// NewFiles loads the files once, failing if any is missing or invalid, and
// starts polling them for changes.
func NewFiles(opts FilesOptions) (*Files, error) {
	switch {
	case opts.Cert == "":
		return nil, errors.New("identity: files source: cert file is required")
	case opts.Key == "":
		return nil, errors.New("identity: files source: key file is required")
	case opts.Bundle == "":
		return nil, errors.New("identity: files source: bundle file is required")
	}
	if opts.PollInterval <= 0 {
		opts.PollInterval = DefaultPollInterval
	}
	f := &Files{
		holder: holder{kind: "files"},
		opts:   opts,
		stop:   make(chan struct{}),
		done:   make(chan struct{}),
	}
	if _, err := f.reload(); err != nil {
		return nil, err
	}
	go f.run()
	return f, nil
}

func (f *Files) run() {
	defer close(f.done)
	t := time.NewTicker(f.opts.PollInterval)
	defer t.Stop()
	for {
		select {
		case <-f.stop:
			return
		case <-t.C:
			changed, err := f.reload()
			if err != nil {
				f.storeErr(err)
			}
			if changed && f.opts.OnReload != nil {
				f.opts.OnReload(err)
			}
		}
	}
}

// reload reads all files and, if their combined content differs from the
// last attempt, parses and swaps them in. It reports whether an attempt was
// made. Only the constructor and the polling goroutine call it.
func (f *Files) reload() (changed bool, err error) {
	paths := f.paths()
	contents := make(map[string][]byte, len(paths))
	h := sha256.New()
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			// A missing file during a rewrite is usually transient; report
			// it but do not remember its hash, so the next poll retries.
			return true, fmt.Errorf("identity: %w", err)
		}
		contents[p] = b
		fmt.Fprintf(h, "%d:%s:%d:", len(p), p, len(b))
		h.Write(b)
	}
	var sum [sha256.Size]byte
	h.Sum(sum[:0])
	if sum == f.lastSum {
		return false, nil
	}
	f.lastSum = sum

	svid, bundles, err := f.parse(contents)
	if err != nil {
		return true, err
	}
	f.store(svid, bundles)
	return true, nil
}

func (f *Files) paths() []string {
	paths := []string{f.opts.Cert, f.opts.Key, f.opts.Bundle}
	for _, td := range slices.Sorted(maps.Keys(f.opts.FederatedBundles)) {
		paths = append(paths, f.opts.FederatedBundles[td])
	}
	return paths
}

func (f *Files) parse(contents map[string][]byte) (*x509svid.SVID, *x509bundle.Set, error) {
	o := f.opts
	svid, err := x509svid.Parse(contents[o.Cert], contents[o.Key])
	if err != nil {
		return nil, nil, fmt.Errorf("identity: SVID from cert file %s and key file %s: %w", o.Cert, o.Key, err)
	}
	td := svid.ID.TrustDomain()
	own, err := parseBundleFile(td, o.Bundle, contents[o.Bundle])
	if err != nil {
		return nil, nil, err
	}
	set := x509bundle.NewSet(own)
	for name, path := range o.FederatedBundles {
		ftd, err := spiffeid.TrustDomainFromString(name)
		if err != nil {
			return nil, nil, fmt.Errorf("identity: federated bundle %s: trust domain %q: %w", path, name, err)
		}
		if ftd == td {
			return nil, nil, fmt.Errorf("identity: federated bundle %s is for %s, the SVID's own trust domain; use the bundle file", path, td)
		}
		b, err := parseBundleFile(ftd, path, contents[path])
		if err != nil {
			return nil, nil, err
		}
		set.Add(b)
	}
	// A certificate from another CA, or an expired one, would fail every
	// handshake; refuse it here where the error names the files.
	if _, _, err := x509svid.Verify(svid.Certificates, set); err != nil {
		return nil, nil, fmt.Errorf("identity: SVID %s in %s does not verify against bundle %s: %w", svid.ID, o.Cert, o.Bundle, err)
	}
	return svid, set, nil
}

// parseBundleFile reads PEM CERTIFICATE blocks. Text between blocks is
// ignored; any other block type is an error, since a key or CSR in a bundle
// file means the files were mixed up.
func parseBundleFile(td spiffeid.TrustDomain, path string, data []byte) (*x509bundle.Bundle, error) {
	var certs []*x509.Certificate
	rest := data
	for {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		if block.Type != "CERTIFICATE" {
			return nil, fmt.Errorf("identity: bundle file %s: unexpected PEM block %q (want CERTIFICATE)", path, block.Type)
		}
		cert, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("identity: bundle file %s: certificate %d: %w", path, len(certs)+1, err)
		}
		certs = append(certs, cert)
	}
	if len(certs) == 0 {
		if len(bytes.TrimSpace(data)) == 0 {
			return nil, fmt.Errorf("identity: bundle file %s: empty, no PEM certificates", path)
		}
		return nil, fmt.Errorf("identity: bundle file %s: no PEM certificates", path)
	}
	return x509bundle.FromX509Authorities(td, certs), nil
}

// Close stops polling and waits for the poller to exit. It is idempotent.
func (f *Files) Close() error {
	f.closeOnce.Do(func() {
		f.closed.Store(true)
		close(f.stop)
		<-f.done
	})
	return nil
}
