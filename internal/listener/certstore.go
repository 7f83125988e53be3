package listener

import (
	"crypto/tls"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"
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
	// OnReload, if set, is called after each reload attempt of a pair (by
	// polling, only pairs whose content changed; by Reload, every pair):
	// err is nil when the new certificate is already serving, otherwise
	// the old one keeps serving and err says why. A file that stays broken
	// is reported once by polling, not on every poll. file is the pair's
	// certificate file; err names both files. It is called from the polling
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
// A CertStore made by [NewCertStore] owns a polling goroutine; call Close.
type CertStore struct {
	// idx is swapped whole on a successful reload; handshakes read it
	// without locks and connections already up keep the certificate they
	// were handed.
	idx atomic.Pointer[certIndex]

	onReload func(file string, err error)

	reloadMu sync.Mutex // serializes reloads; guards pairs
	pairs    []*filePair

	stop      chan struct{}
	done      chan struct{}
	closeOnce sync.Once
}

// NewCertStore loads every pair and starts watching the files. It fails if
// any file is missing, unreadable or invalid, naming the file, or if a
// certificate after the first names no DNS or IP SAN (it could never be
// selected).
func NewCertStore(certs []CertFile, opts CertStoreOptions) (*CertStore, error) {
	if len(certs) == 0 {
		return nil, errors.New("listener: no certificate files configured")
	}
	s := &CertStore{onReload: opts.OnReload}
	served := make([]*tls.Certificate, 0, len(certs))
	for i, cf := range certs {
		if cf.Cert == "" || cf.Key == "" {
			return nil, fmt.Errorf("listener: certificate %d: both cert and key files are required", i)
		}
		p := &filePair{CertFile: cf}
		snap, err := readPair(cf)
		if err != nil {
			return nil, err
		}
		c, err := snap.parse(i == 0)
		if err != nil {
			return nil, err
		}
		p.cert, p.certSum, p.keySum = c, snap.certSum, snap.keySum
		s.pairs = append(s.pairs, p)
		served = append(served, c)
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
	s.stop = make(chan struct{})
	s.done = make(chan struct{})
	if interval > 0 {
		go s.poll(interval)
	} else {
		close(s.done)
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

// Reload re-reads every file now, whether or not polling saw a change, and
// swaps in the pairs that parse. Pairs that fail keep their old certificate;
// their errors are joined in the result and also go to OnReload.
func (s *CertStore) Reload() error {
	if s.pairs == nil {
		return nil // static store
	}
	return s.reload(true)
}

// Close stops the polling goroutine and waits for it. It is idempotent; the
// store keeps serving its current certificates after Close.
func (s *CertStore) Close() error {
	if s.stop == nil {
		return nil // static store
	}
	s.closeOnce.Do(func() { close(s.stop) })
	<-s.done
	return nil
}

func (s *CertStore) poll(interval time.Duration) {
	defer close(s.done)
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
			// Errors have gone to OnReload; a poll has no caller to return them to.
			_ = s.reload(false)
		}
	}
}

// reload re-reads all pairs. With force unset, a pair whose content equals
// what was last tried is skipped, so a broken file is reported once, not on
// every poll, and retried as soon as either file changes again.
func (s *CertStore) reload(force bool) error {
	s.reloadMu.Lock()
	defer s.reloadMu.Unlock()

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
		snap, err := readPair(p.CertFile)
		if err != nil {
			// A missing or unreadable file mid-rotation: keep serving.
			// Report it once per distinct failure unless forced.
			if force || p.lastErr != err.Error() {
				p.lastErr = err.Error()
				errs = append(errs, err)
				reports = append(reports, report{p.Cert, err})
			}
			continue
		}
		p.lastErr = ""
		if !force && snap.certSum == p.certSum && snap.keySum == p.keySum {
			continue
		}
		p.certSum, p.keySum = snap.certSum, snap.keySum
		c, err := snap.parse(i == 0)
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
