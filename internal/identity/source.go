package identity

import (
	"errors"
	"fmt"
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

// holder is the atomically swapped state shared by all sources.
type holder struct {
	kind   string
	cur    atomic.Pointer[material]
	fail   atomic.Pointer[failure]
	closed atomic.Bool
}

func (h *holder) store(svid *x509svid.SVID, bundles *x509bundle.Set) {
	h.cur.Store(&material{svid: svid, bundles: bundles, updated: time.Now()})
	h.fail.Store(nil)
}

func (h *holder) storeErr(err error) {
	h.fail.Store(&failure{err: err, at: time.Now()})
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
