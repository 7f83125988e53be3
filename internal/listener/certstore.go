package listener

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"tollgate.dev/tollgate/internal/filewatch"
)

// DefaultPollInterval is how often a [CertStore] checks its files when
// [CertStoreOptions.PollInterval] is zero.
const DefaultPollInterval = 5 * time.Second

// CertFile names one certificate and its private key, both PEM. The
// certificate file may hold the chain after the leaf.
type CertFile struct {
	Cert string
	Key  string
}

// CertStoreOptions tunes a [CertStore].
type CertStoreOptions struct {
	// PollInterval is how often the files are checked for changes. Zero
	// means [DefaultPollInterval]; a negative value turns polling off, so
	// only [CertStore.Reload] picks up changes.
	PollInterval time.Duration
	// Settle is how long a pair's files must hold still before a change is
	// taken, by polling and by Reload: a pair caught mid-write (a chain cut
	// after the leaf parses fine) is never put in force if its writer
	// finishes within Settle. Zero means [filewatch.DefaultSettle]. Replace
	// files atomically (write, then rename) and it never matters.
	Settle time.Duration
	// OnReload, if set, is called after each reload attempt of a pair (by
	// polling, only pairs whose content changed; by Reload, every pair):
	// err is nil when the new certificate is already serving, otherwise
	// the old one keeps serving and err says why. A file that stays broken
	// is reported once by polling, not on every poll. file is the pair's
	// certificate file; err names both files. It is called from a polling
	// goroutine or from Reload, never concurrently with itself.
	OnReload func(file string, err error)
}

// CertStore holds the server certificates and picks one per handshake by SNI.
// Its GetCertificate method plugs into [crypto/tls.Config.GetCertificate]
// and into [Config.Certs].
//
// Names come from each certificate's DNS and IP SANs (never the subject
// CN). Matching is case-insensitive and ignores one trailing dot: exact names
// first, then single-label wildcards. A client that sends no SNI or an
// unknown name gets the first certificate. When two certificates claim the
// same name, the earlier one wins.
//
// A CertStore made by [NewCertStore] watches its files with one
// [filewatch.Watcher] per pair (so a pair that stays broken never holds up
// another's rotation); call Close.
type CertStore struct {
	// idx is swapped whole on a successful reload; handshakes read it
	// without locks and connections already up keep the certificate they
	// were handed.
	idx atomic.Pointer[certIndex]

	onReload func(file string, err error)
	settle   time.Duration

	reloadMu sync.Mutex // serializes reloads and OnReload; guards pairs' state
	pairs    []*filePair
}

// reloadSettleRounds bounds how long Reload waits for files that keep
// changing: this many settle intervals.
const reloadSettleRounds = 10

// NewCertStore loads every pair and starts watching the files. It fails if
// any file is missing, unreadable or invalid, naming the file, or if a
// certificate after the first names no DNS or IP SAN (it could never be
// selected).
func NewCertStore(certs []CertFile, opts CertStoreOptions) (*CertStore, error) {
	if len(certs) == 0 {
		return nil, errors.New("listener: no certificate files configured")
	}
	if opts.Settle < 0 {
		return nil, fmt.Errorf("listener: negative settle interval %s", opts.Settle)
	}
	s := &CertStore{onReload: opts.OnReload, settle: opts.Settle}
	if s.settle == 0 {
		s.settle = filewatch.DefaultSettle
	}
	served := make([]*tls.Certificate, 0, len(certs))
	snaps := make([]*filewatch.Snapshot, 0, len(certs))
	for i, cf := range certs {
		if cf.Cert == "" || cf.Key == "" {
			return nil, fmt.Errorf("listener: certificate %d: both cert and key files are required", i)
		}
		// Startup reads once, without settling, so starting is not slowed
		// by a settle interval: a pair caught mid-write nearly always fails
		// to parse (cut PEM, new certificate with the old key) and the
		// gateway refuses to start rather than serving it.
		snap, err := filewatch.Read(cf.paths(), pemRead)
		if err != nil {
			return nil, cf.readError(err)
		}
		c, err := cf.parse(snap, i == 0)
		if err != nil {
			return nil, err
		}
		s.pairs = append(s.pairs, &filePair{CertFile: cf, cert: c, lastSum: snap.Hash})
		served = append(served, c)
		snaps = append(snaps, snap)
	}
	idx, err := newCertIndex(served)
	if err != nil {
		return nil, fmt.Errorf("listener: %w", err)
	}
	s.idx.Store(idx)

	interval := opts.PollInterval
	if interval == 0 {
		interval = DefaultPollInterval
	}
	if interval < 0 {
		return s, nil
	}
	for i, p := range s.pairs {
		w, err := filewatch.New(p.paths(), filewatch.Options{
			ReadOptions: pemRead,
			Interval:    interval,
			Settle:      s.settle,
			Initial:     snaps[i],
			OnChange: func(snap *filewatch.Snapshot, err error) {
				s.reloadMu.Lock()
				defer s.reloadMu.Unlock()
				reads := make([]pairRead, len(s.pairs))
				reads[i] = pairRead{snap: snap, err: err, done: true}
				s.apply(reads, false)
			},
		})
		if err != nil {
			// Unreachable: paths, interval and settle were checked above.
			s.Close()
			return nil, fmt.Errorf("listener: %w", err)
		}
		p.watcher = w
	}
	return s, nil
}

// NewStaticCertStore serves fixed in-memory certificates, for dev mode and
// tests. The first is the default. Reload is a no-op and Close is not needed.
func NewStaticCertStore(certs ...tls.Certificate) (*CertStore, error) {
	if len(certs) == 0 {
		return nil, errors.New("listener: no certificates")
	}
	served := make([]*tls.Certificate, 0, len(certs))
	for i, c := range certs {
		pc, err := prepareCertificate(c)
		if err != nil {
			return nil, fmt.Errorf("listener: certificate %d: %w", i, err)
		}
		served = append(served, pc)
	}
	idx, err := newCertIndex(served)
	if err != nil {
		return nil, fmt.Errorf("listener: %w", err)
	}
	s := &CertStore{}
	s.idx.Store(idx)
	return s, nil
}

// GetCertificate returns the certificate for the client's SNI, or the default
// one. It never fails: a client asking for a name we do not serve still
// gets a certificate and judges it itself, as with any TLS server.
func (s *CertStore) GetCertificate(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
	c, _ := s.idx.Load().lookup(hello.ServerName)
	return c, nil
}

// Reload re-reads every pair now, whether or not polling saw a change, and
// swaps in the pairs that parse. Pairs that fail keep their old certificate;
// their errors are joined in the result and also go to OnReload. It waits
// until each pair's files have held still for the settle interval (so it
// takes at least that long), and gives up on a pair whose files still change
// after ten of them. This is what SIGHUP runs.
func (s *CertStore) Reload() error {
	if s.pairs == nil {
		return nil // static store
	}
	s.reloadMu.Lock()
	defer s.reloadMu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), reloadSettleRounds*s.settle)
	defer cancel()
	reads := make([]pairRead, len(s.pairs))
	var wg sync.WaitGroup
	for i, p := range s.pairs {
		// In parallel: the wait would be a settle interval per pair otherwise.
		wg.Go(func() {
			snap, err := filewatch.ReadSettled(ctx, p.paths(), s.settle, pemRead)
			reads[i] = pairRead{snap: snap, err: err, done: true}
		})
	}
	wg.Wait()
	return s.apply(reads, true)
}

// Close stops watching the files and waits for the watchers. It is
// idempotent; the store keeps serving its current certificates after Close
// (and Reload still works).
func (s *CertStore) Close() error {
	for _, p := range s.pairs {
		if p.watcher != nil {
			p.watcher.Close()
		}
	}
	return nil
}

// pairRead is what was read for one pair: content or an error.
type pairRead struct {
	snap *filewatch.Snapshot
	err  error
	done bool // false: the pair was not read this time
}

// apply takes what was read for the pairs, reads[i] for pair i. With force unset
// (a watcher's report), a pair whose content equals what was last tried is
// skipped, and a read error equal to the last one reported is not reported
// again. The caller holds reloadMu.
func (s *CertStore) apply(reads []pairRead, force bool) error {
	var errs []error
	changed := false
	// Reports wait until the new index is stored, so OnReload(file, nil)
	// means the new certificate is already serving.
	type report struct {
		file string
		err  error
	}
	var reports []report
	for i, p := range s.pairs {
		r := reads[i]
		switch {
		case !r.done:
			continue
		case r.err != nil:
			// A missing or unreadable file mid-rotation: keep serving.
			err := p.readError(r.err)
			p.lastSum = [sha256.Size]byte{}
			if force || p.lastErr != err.Error() {
				p.lastErr = err.Error()
				errs = append(errs, err)
				reports = append(reports, report{p.Cert, err})
			}
			continue
		}
		p.lastErr = ""
		if !force && r.snap.Hash == p.lastSum {
			continue
		}
		p.lastSum = r.snap.Hash
		c, err := p.parse(r.snap, i == 0)
		if err != nil {
			errs = append(errs, err)
			reports = append(reports, report{p.Cert, err})
			continue
		}
		p.cert = c
		changed = true
		reports = append(reports, report{p.Cert, nil})
	}
	if changed {
		served := make([]*tls.Certificate, len(s.pairs))
		for i, p := range s.pairs {
			served[i] = p.cert
		}
		idx, err := newCertIndex(served)
		if err != nil {
			// Unreachable: every served certificate was indexed before.
			errs = append(errs, fmt.Errorf("listener: %w", err))
		} else {
			s.idx.Store(idx)
		}
	}
	if s.onReload != nil {
		for _, r := range reports {
			s.onReload(r.file, r.err)
		}
	}
	return errors.Join(errs...)
}
