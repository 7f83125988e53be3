package identity

import (
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
)

// Source supplies the gateway's current X.509 SVID and the trust bundles used
// to verify peers. Implementations are safe for concurrent use; material is
// replaced atomically in the background.
type Source interface {
	x509svid.Source
	x509bundle.Source

	// Status describes the current material and the last refresh failure,
	// for readiness probes, metrics and logs.
	Status() Status

	// Ready returns nil when the source holds an SVID that does not expire
	// within the readiness margin (see [Status.Ready]).
	Ready() error

	// Changed returns a channel that is closed at the next change of Status
	// after the call: new material (a new SVID or new bundles), a refresh
	// failure, a recovery, or Close. It is a broadcast: every caller until
	// that change gets the same channel, so any number of listeners can wait
	// on it, and each calls Changed again for the change after. Several
	// changes before a waiter comes back are seen as one; Status then shows
	// the latest. Call Changed before reading Status, so a change between
	// the two is not missed:
	//
	//	for {
	//		changed := src.Changed()
	//		st := src.Status()
	//		if st.Closed {
	//			return
	//		}
	//		// act on st
	//		<-changed
	//	}
	//
	// After Close it returns a closed channel, so no waiter hangs on a
	// source that will never change again. Rotation is announced, so
	// nothing needs to poll Status for it.
	Changed() <-chan struct{}

	// Close stops background work. It is idempotent. After Close the source
	// returns [ErrSourceClosed] rather than serving material nobody refreshes.
	Close() error
}

// ReadyMargin is the longest time before an SVID's NotAfter at which a source
// stops reporting ready. For short-lived SVIDs the margin shrinks to a tenth
// of the lifetime, so a 10-minute SVID is not-ready only in its last minute.
const ReadyMargin = 30 * time.Second

var (
	// ErrSourceClosed is returned by a source after Close.
	ErrSourceClosed = errors.New("identity: source is closed")
	// ErrNoSVID is returned when a source has not obtained an SVID yet.
	ErrNoSVID = errors.New("identity: no SVID available")
)

// Status is a snapshot of a source's state.
type Status struct {
	// Kind names the implementation: "workloadapi", "files", "dev" or "static".
	Kind string
	// ID is the SPIFFE ID of the current SVID; zero if there is none.
	ID spiffeid.ID
	// Serial is the current SVID leaf's serial number in hex.
	Serial string
	// NotBefore and NotAfter bound the current SVID leaf's validity.
	NotBefore, NotAfter time.Time
	// Updated is when the current material was swapped in.
	Updated time.Time
	// LastError is the most recent refresh failure; nil once a refresh
	// succeeds again. The source keeps serving the previous material meanwhile.
	LastError error
	// LastErrorAt is when LastError happened.
	LastErrorAt time.Time
	// Closed reports whether Close has been called.
	Closed bool
}

// Ready returns nil when the status shows a usable SVID at time now: the
// source is open, holds an SVID, and that SVID is valid for longer than the
// readiness margin.
func (s Status) Ready(now time.Time) error {
	switch {
	case s.Closed:
		return ErrSourceClosed
	case s.ID.IsZero():
		if s.LastError != nil {
			return fmt.Errorf("%w: %w", ErrNoSVID, s.LastError)
		}
		return ErrNoSVID
	case now.Before(s.NotBefore):
		return fmt.Errorf("identity: SVID %s is not valid before %s", s.ID, s.NotBefore.UTC().Format(time.RFC3339))
	}
	margin := min(ReadyMargin, s.NotAfter.Sub(s.NotBefore)/10)
	if !now.Before(s.NotAfter.Add(-margin)) {
		err := fmt.Errorf("identity: SVID %s expires at %s (serial %s)", s.ID, s.NotAfter.UTC().Format(time.RFC3339), s.Serial)
		if s.LastError != nil {
			err = fmt.Errorf("%w; last refresh error: %w", err, s.LastError)
		}
		return err
	}
	return nil
}

// material is one consistent set of identity material. It is never modified
// after it is stored.
type material struct {
	svid    *x509svid.SVID
	bundles *x509bundle.Set
	updated time.Time
}

type failure struct {
	err error
	at  time.Time
}

// holder is the atomically swapped state shared by all sources. Every
// change of what Status reports goes through one of its methods below, which
// announce it.
type holder struct {
	kind   string
	cur    atomic.Pointer[material]
	fail   atomic.Pointer[failure]
	closed atomic.Bool // set under chMu, so no waiter subscribes after the last announcement

	chMu    sync.Mutex
	changed chan struct{} // closed at the next change; nil until someone asks
}

// closedChan is what Changed returns after Close.
var closedChan = func() chan struct{} {
	c := make(chan struct{})
	close(c)
	return c
}()

// Changed returns a channel closed at the next change of Status. It
// implements [Source].
func (h *holder) Changed() <-chan struct{} {
	h.chMu.Lock()
	defer h.chMu.Unlock()
	if h.closed.Load() {
		return closedChan
	}
	if h.changed == nil {
		h.changed = make(chan struct{})
	}
	return h.changed
}

// announce wakes everyone waiting on Changed. Callers change the state first,
// so a woken waiter reads the new Status.
func (h *holder) announce() {
	h.chMu.Lock()
	defer h.chMu.Unlock()
	if h.changed != nil {
		close(h.changed)
		h.changed = nil
	}
}

// store swaps in new material and clears a failure (a recovery).
func (h *holder) store(svid *x509svid.SVID, bundles *x509bundle.Set) {
	h.cur.Store(&material{svid: svid, bundles: bundles, updated: time.Now()})
	h.fail.Store(nil)
	h.announce()
}

// storeErr records a refresh failure; the material keeps serving.
func (h *holder) storeErr(err error) {
	h.fail.Store(&failure{err: err, at: time.Now()})
	h.announce()
}

// storeBundlesErr records a failure that still brought new bundles: they
// replace the old ones, next to the SVID already held (if any).
func (h *holder) storeBundlesErr(bundles *x509bundle.Set, err error) {
	if old := h.cur.Load(); old != nil && old.svid != nil {
		h.cur.Store(&material{svid: old.svid, bundles: bundles, updated: time.Now()})
	}
	h.fail.Store(&failure{err: err, at: time.Now()})
	h.announce()
}

// markClosed makes the source refuse material from now on and wakes every
// waiter for the last time. It reports whether this call closed it.
func (h *holder) markClosed() bool {
	h.chMu.Lock()
	defer h.chMu.Unlock()
	if h.closed.Swap(true) {
		return false
	}
	if h.changed != nil {
		close(h.changed)
		h.changed = nil
	}
	return true
}

// GetX509SVID returns the current SVID. It implements x509svid.Source.
func (h *holder) GetX509SVID() (*x509svid.SVID, error) {
	if h.closed.Load() {
		return nil, ErrSourceClosed
	}
	m := h.cur.Load()
	if m == nil || m.svid == nil {
		return nil, ErrNoSVID
	}
	return m.svid, nil
}

// GetX509BundleForTrustDomain returns the bundle for td. It implements
// x509bundle.Source.
func (h *holder) GetX509BundleForTrustDomain(td spiffeid.TrustDomain) (*x509bundle.Bundle, error) {
	if h.closed.Load() {
		return nil, ErrSourceClosed
	}
	m := h.cur.Load()
	if m == nil || m.bundles == nil {
		return nil, fmt.Errorf("identity: no X.509 bundle for trust domain %q", td)
	}
	return m.bundles.GetX509BundleForTrustDomain(td)
}

// Status reports the current material and the last refresh failure.
func (h *holder) Status() Status {
	st := Status{Kind: h.kind, Closed: h.closed.Load()}
	if m := h.cur.Load(); m != nil {
		st.Updated = m.updated
		if m.svid != nil && len(m.svid.Certificates) > 0 {
			leaf := m.svid.Certificates[0]
			st.ID = m.svid.ID
			st.Serial = leaf.SerialNumber.Text(16)
			st.NotBefore = leaf.NotBefore
			st.NotAfter = leaf.NotAfter
		}
	}
	if f := h.fail.Load(); f != nil {
		st.LastError = f.err
		st.LastErrorAt = f.at
	}
	return st
}

// Ready reports whether the current SVID is usable now.
func (h *holder) Ready() error {
	return h.Status().Ready(time.Now())
}
