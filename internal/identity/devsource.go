package identity

import (
	"fmt"
	"sync"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
)

// minDevTTL keeps the rotation goroutine from spinning: X.509 validity has
// one-second resolution, so shorter TTLs cannot be represented.
const minDevTTL = time.Second

// DevSource is a [Source] that issues short-lived SVIDs for one SPIFFE ID from
// a [DevCA] and rotates them at half-life, the way a SPIRE agent would.
type DevSource struct {
	holder
	ca      *DevCA
	id      spiffeid.ID
	names   SVIDNames
	ttl     time.Duration
	bundles *x509bundle.Set
	mu      sync.Mutex // serializes Rotate

	stop      chan struct{}
	done      chan struct{}
	closeOnce sync.Once
}

var _ Source = (*DevSource)(nil)

// NewDevSource issues the first SVID for id and starts rotating it at
// half-life (half of each SVID's remaining validity, about ttl/2). The bundle set holds the CA's bundle plus any federated bundles
// given (for peers in other trust domains). Close stops the rotation.
func NewDevSource(ca *DevCA, id spiffeid.ID, ttl time.Duration, federated ...*x509bundle.Bundle) (*DevSource, error) {
	return NewDevSourceWithNames(ca, id, ttl, SVIDNames{}, federated...)
}

// NewDevSourceWithNames is NewDevSource whose SVIDs also carry names (dev
// mode's gateway SVID names localhost, so curl can check it as a proxy).
func NewDevSourceWithNames(ca *DevCA, id spiffeid.ID, ttl time.Duration, names SVIDNames, federated ...*x509bundle.Bundle) (*DevSource, error) {
	if ca == nil {
		return nil, fmt.Errorf("identity: dev source needs a CA")
	}
	if ttl < minDevTTL {
		return nil, fmt.Errorf("identity: dev SVID ttl %s is below the minimum %s", ttl, minDevTTL)
	}
	set := x509bundle.NewSet(ca.Bundle())
	for _, b := range federated {
		if b.TrustDomain() == ca.TrustDomain() {
			return nil, fmt.Errorf("identity: federated bundle for %s duplicates the CA's own trust domain", b.TrustDomain())
		}
		set.Add(b)
	}
	s := &DevSource{
		holder:  holder{kind: "dev"},
		ca:      ca,
		id:      id,
		names:   names,
		ttl:     ttl,
		bundles: set,
		stop:    make(chan struct{}),
		done:    make(chan struct{}),
	}
	if err := s.Rotate(); err != nil {
		return nil, err
	}
	go s.run()
	return s, nil
}

// Rotate issues a fresh SVID now and swaps it in. New handshakes use it;
// established connections are unaffected.
func (s *DevSource) Rotate() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	svid, err := s.ca.IssueSVIDWithNames(s.id, s.ttl, s.names)
	if err != nil {
		s.storeErr(err)
		return err
	}
	s.store(svid, s.bundles)
	return nil
}

func (s *DevSource) run() {
	defer close(s.done)
	t := time.NewTimer(s.nextRotation())
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
			// Rotate records its own failure in Status; the old SVID keeps
			// serving until it expires, and the next tick retries.
			_ = s.Rotate()
			t.Reset(s.nextRotation())
		}
	}
}

// nextRotation is half the current SVID's remaining life (NotAfter is
// truncated to whole seconds, so it can be shorter than ttl).
func (s *DevSource) nextRotation() time.Duration {
	if m := s.cur.Load(); m != nil && m.svid != nil {
		if d := time.Until(m.svid.Certificates[0].NotAfter) / 2; d > minDevTTL/2 {
			return d
		}
		return minDevTTL / 2
	}
	return s.ttl / 2
}

// Close stops the rotation goroutine and waits for it. It is idempotent.
func (s *DevSource) Close() error {
	s.closeOnce.Do(func() {
		s.markClosed()
		close(s.stop)
		<-s.done
	})
	return nil
}

// Static is a [Source] with fixed material, replaced only by [Static.Set].
// It has no background work. Tests use it to serve expired or foreign SVIDs.
type Static struct {
	holder
	mu sync.Mutex // serializes Set and Close, so nothing is set after Close
}

var _ Source = (*Static)(nil)

// NewStatic returns a source serving svid and the given bundles.
func NewStatic(svid *x509svid.SVID, bundles ...*x509bundle.Bundle) (*Static, error) {
	if err := checkStaticSVID(svid); err != nil {
		return nil, err
	}
	s := &Static{holder: holder{kind: "static"}}
	s.store(svid, x509bundle.NewSet(bundles...))
	return s, nil
}

// Set replaces the material, as a rotation would, and announces it to
// [Static.Changed] waiters. It fails after Close.
func (s *Static) Set(svid *x509svid.SVID, bundles ...*x509bundle.Bundle) error {
	if err := checkStaticSVID(svid); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed.Load() {
		return ErrSourceClosed
	}
	s.store(svid, x509bundle.NewSet(bundles...))
	return nil
}

func checkStaticSVID(svid *x509svid.SVID) error {
	if svid == nil || len(svid.Certificates) == 0 || svid.PrivateKey == nil {
		return fmt.Errorf("identity: static source needs an SVID with a certificate and key")
	}
	return nil
}

// Close marks the source closed. It is idempotent.
func (s *Static) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.markClosed()
	return nil
}
