package identity

import (
	"bytes"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"

	"tollgate.dev/tollgate/internal/filewatch"
)

// DefaultPollInterval is how often [Files] checks its files for changes.
const DefaultPollInterval = 5 * time.Second

// svidRead is how the files are read: named regular files, bounded in size
// (an SVID chain, key or bundle is kilobytes).
var svidRead = filewatch.ReadOptions{}

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
	// Settle is how long changed files must hold still before they are
	// loaded, so a certificate and key rewritten one after the other (or a
	// file caught mid-write) are taken together; 0 means
	// [filewatch.DefaultSettle].
	Settle time.Duration
	// OnReload, if set, is called from the watcher's goroutine after each
	// settled change of the files: nil when the new SVID and bundles are
	// serving, the reason otherwise (the previous material keeps serving).
	// Unchanged files cause no call, and files that stay unreadable or
	// invalid are reported once, not on every poll.
	OnReload func(error)
}

// Files is a [Source] that reads its SVID and bundles from PEM files (as
// written by spiffe-helper or a Kubernetes secret) and reloads them when
// their content changes. The files are watched by a [filewatch.Watcher]:
// compared by content hash (which also catches atomic symlink swaps and
// same-size rewrites within one mtime tick), taken only once settled, and
// parsed from the bytes that were hashed.
type Files struct {
	holder
	opts    FilesOptions
	watcher *filewatch.Watcher

	closeOnce sync.Once
}

var _ Source = (*Files)(nil)

// NewFiles loads the files once, failing if any is missing or invalid, and
// starts watching them for changes.
func NewFiles(opts FilesOptions) (*Files, error) {
	switch {
	case opts.Cert == "":
		return nil, errors.New("identity: files source: cert file is required")
	case opts.Key == "":
		return nil, errors.New("identity: files source: key file is required")
	case opts.Bundle == "":
		return nil, errors.New("identity: files source: bundle file is required")
	case opts.Settle < 0:
		return nil, fmt.Errorf("identity: files source: negative settle interval %s", opts.Settle)
	}
	if opts.PollInterval <= 0 {
		opts.PollInterval = DefaultPollInterval
	}
	f := &Files{holder: holder{kind: "files"}, opts: opts}
	// Startup reads once, without settling: files caught mid-write nearly
	// always fail to parse (a cut PEM block, a new certificate with the old
	// key), and then the gateway refuses to start rather than serve them.
	snap, err := filewatch.Read(f.paths(), svidRead)
	if err != nil {
		return nil, fmt.Errorf("identity: %w", err)
	}
	svid, bundles, err := f.parse(snap)
	if err != nil {
		return nil, err
	}
	f.store(svid, bundles)
	w, err := filewatch.New(f.paths(), filewatch.Options{
		ReadOptions: svidRead,
		Interval:    opts.PollInterval,
		Settle:      opts.Settle,
		Initial:     snap,
		OnChange:    f.changed,
	})
	if err != nil {
		return nil, fmt.Errorf("identity: files source: %w", err)
	}
	f.watcher = w
	return f, nil
}

// changed loads a settled change of the files, or records why it can't: the
// previous material keeps serving. Only the watcher's goroutine calls it.
func (f *Files) changed(snap *filewatch.Snapshot, err error) {
	if err != nil {
		err = fmt.Errorf("identity: %w", err)
	} else {
		var svid *x509svid.SVID
		var bundles *x509bundle.Set
		if svid, bundles, err = f.parse(snap); err == nil {
			f.store(svid, bundles)
		}
	}
	if err != nil {
		f.storeErr(err)
	}
	if f.opts.OnReload != nil {
		f.opts.OnReload(err)
	}
}

func (f *Files) paths() []string {
	paths := []string{f.opts.Cert, f.opts.Key, f.opts.Bundle}
	for _, td := range slices.Sorted(maps.Keys(f.opts.FederatedBundles)) {
		paths = append(paths, f.opts.FederatedBundles[td])
	}
	return paths
}

// parse checks the files as read in snap, never re-reading them.
func (f *Files) parse(snap *filewatch.Snapshot) (*x509svid.SVID, *x509bundle.Set, error) {
	o := f.opts
	contents := func(path string) []byte {
		b, _ := snap.Data(path)
		return b
	}
	svid, err := x509svid.Parse(contents(o.Cert), contents(o.Key))
	if err != nil {
		return nil, nil, fmt.Errorf("identity: SVID from cert file %s and key file %s: %w", o.Cert, o.Key, err)
	}
	td := svid.ID.TrustDomain()
	own, err := parseBundleFile(td, o.Bundle, contents(o.Bundle))
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
		b, err := parseBundleFile(ftd, path, contents(path))
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

// Close stops watching the files, waits for a reload in progress, and wakes
// every [Files.Changed] waiter for the last time. It is idempotent.
func (f *Files) Close() error {
	f.closeOnce.Do(func() {
		f.watcher.Close()
		f.markClosed()
	})
	return nil
}
