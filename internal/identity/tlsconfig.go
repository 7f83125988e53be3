package identity

import (
	"crypto/tls"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
)

var (
	// ErrPeerNotAllowed means the peer presented a valid SVID whose SPIFFE ID
	// the allow-list does not match.
	ErrPeerNotAllowed = errors.New("peer SPIFFE ID not allowed")
	// ErrPeerVerification means the peer's certificate chain is not a valid
	// X.509 SVID for a trust domain we hold a bundle for (missing, expired,
	// signed by another CA, not an SVID).
	ErrPeerVerification = errors.New("peer certificate chain verification failed")
	// ErrSVIDExpired means the source's own SVID is past its NotAfter: a
	// config from this package refuses to present it, and callers refuse
	// to send traffic until the source delivers a fresh one.
	ErrSVIDExpired = errors.New("identity: own SVID expired")
)

// PeerError is the error a handshake fails with when the peer is rejected.
// errors.Is(err, ErrPeerNotAllowed) / errors.Is(err, ErrPeerVerification)
// tell the kinds apart; errors.As gives the peer's ID for logs.
type PeerError struct {
	// Kind is ErrPeerNotAllowed or ErrPeerVerification.
	Kind error
	// ID is the SPIFFE ID the peer's leaf claims; zero if it carries none.
	// For verification failures it is unverified and only fit for logs.
	ID spiffeid.ID
	// Allowed is the allow-list, for not-allowed errors.
	Allowed string
	// Err is the underlying verification error, if any.
	Err error
}

func (e *PeerError) Error() string {
	switch {
	case errors.Is(e.Kind, ErrPeerNotAllowed):
		return fmt.Sprintf("identity: peer SPIFFE ID %s not allowed (allowed: %s)", e.ID, e.Allowed)
	case e.ID.IsZero():
		return fmt.Sprintf("identity: %v: %v", e.Kind, e.Err)
	default:
		return fmt.Sprintf("identity: %v for %s: %v", e.Kind, e.ID, e.Err)
	}
}

// Unwrap exposes both the kind sentinel and the cause to errors.Is/As.
func (e *PeerError) Unwrap() []error {
	if e.Err == nil {
		return []error{e.Kind}
	}
	return []error{e.Kind, e.Err}
}

// ClientOptions tunes [ClientTLSConfig].
type ClientOptions struct {
	// ServerName is sent as SNI. It is not used for verification: the
	// server is authenticated by its SPIFFE ID. http.Transport fills it
	// from the request host when empty.
	ServerName string
}

// ClientTLSConfig returns a config for dialing mesh upstreams. It presents
// the source's current SVID (through GetClientCertificate, so rotation
// applies to the next handshake) and refuses to present an expired one: the
// handshake then fails with an error wrapping [ErrSVIDExpired], and calling
// GetClientCertificate tells a caller whether a handshake could succeed
// now. It verifies the server's chain against the
// bundle of the server's trust domain, and requires the server's SPIFFE ID to
// match allowed. A rejection fails the handshake with a [*PeerError].
func ClientTLSConfig(src Source, allowed Matcher, opts ClientOptions) *tls.Config {
	certs := &certCache{src: src}
	cfg := &tls.Config{
		MinVersion: tls.VersionTLS12,
		ServerName: opts.ServerName,
		// The standard verifier checks DNS names against WebPKI-style roots;
		// SVIDs are authenticated by URI SAN against per-trust-domain
		// bundles. It is replaced, not skipped: VerifyConnection below does
		// the full chain verification and authorization on every handshake,
		// including resumed ones.
		InsecureSkipVerify: true, //nolint:gosec // verified in VerifyConnection
	}
	cfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
		return certs.get(now(cfg))
	}
	cfg.VerifyConnection = verifier(src, allowed, cfg)
	return cfg
}

// ServerTLSConfig returns a config for listeners whose callers must present
// mesh SVIDs (in-mesh callers, egress). It serves the source's current SVID,
// demands a client certificate, verifies it against the bundle of the
// caller's trust domain and requires the caller's SPIFFE ID to match
// allowed. Like [ClientTLSConfig] it never presents an expired SVID. Read the
// caller's ID from a request with [PeerID].
func ServerTLSConfig(src Source, allowed Matcher) *tls.Config {
	certs := &certCache{src: src}
	cfg := &tls.Config{
		MinVersion: tls.VersionTLS12,
		// RequireAnyClientCert makes a certificate mandatory but leaves
		// verification to VerifyConnection, which uses the SPIFFE bundle of
		// the caller's trust domain (ClientCAs cannot express that).
		ClientAuth: tls.RequireAnyClientCert,
	}
	cfg.GetCertificate = func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
		return certs.get(now(cfg))
	}
	cfg.VerifyConnection = verifier(src, allowed, cfg)
	return cfg
}

// verifier returns the VerifyConnection callback. It runs on full and on
// resumed handshakes alike, which is why authorization lives here and not
// in VerifyPeerCertificate: a session resumed from a ticket skips the latter,
// so an allow-list or bundle change would not apply to it.
func verifier(src Source, allowed Matcher, cfg *tls.Config) func(tls.ConnectionState) error {
	return func(cs tls.ConnectionState) error {
		now := now(cfg)
		if len(cs.PeerCertificates) == 0 {
			return &PeerError{Kind: ErrPeerVerification, Err: errors.New("peer presented no certificate")}
		}
		id, _, err := x509svid.Verify(cs.PeerCertificates, src, x509svid.WithTime(now))
		if err != nil {
			return &PeerError{Kind: ErrPeerVerification, ID: id, Err: err}
		}
		if !allowed.Match(id) {
			return &PeerError{Kind: ErrPeerNotAllowed, ID: id, Allowed: allowed.String()}
		}
		rememberVerified(cs.PeerCertificates[0], id)
		return nil
	}
}

// now is the config's clock, as crypto/tls reads it.
func now(cfg *tls.Config) time.Time {
	if cfg.Time != nil {
		return cfg.Time()
	}
	return time.Now()
}

// CurrentSVID returns src's SVID if it can be presented at now. An SVID whose
// NotAfter has come is refused with an error wrapping [ErrSVIDExpired]:
// every peer would reject it, and a connection authenticated by it must not
// carry traffic. NotAfter itself already counts as expired (RFC 5280 makes
// it the last valid instant), so a timer set for NotAfter and this check
// agree on which side of it a handshake falls.
func CurrentSVID(src x509svid.Source, now time.Time) (*x509svid.SVID, error) {
	if src == nil {
		return nil, errors.New("identity: no SVID source configured")
	}
	svid, err := src.GetX509SVID()
	if err != nil {
		return nil, fmt.Errorf("identity: current SVID: %w", err)
	}
	if len(svid.Certificates) == 0 {
		return nil, fmt.Errorf("identity: current SVID: %w", ErrNoSVID)
	}
	leaf := svid.Certificates[0]
	if !now.Before(leaf.NotAfter) {
		return nil, fmt.Errorf("%w: %s expired at %s (serial %s); waiting for a fresh one",
			ErrSVIDExpired, svid.ID, leaf.NotAfter.UTC().Format(time.RFC3339), leaf.SerialNumber.Text(16))
	}
	return svid, nil
}

// certCache converts the current SVID into a tls.Certificate once per SVID,
// not once per handshake.
type certCache struct {
	src  x509svid.Source
	last atomic.Pointer[cachedCert]
}

type cachedCert struct {
	svid *x509svid.SVID
	cert *tls.Certificate
}

func (c *certCache) get(now time.Time) (*tls.Certificate, error) {
	svid, err := CurrentSVID(c.src, now)
	if err != nil {
		return nil, err
	}
	if last := c.last.Load(); last != nil && last.svid == svid {
		return last.cert, nil
	}
	cert := &tls.Certificate{
		Certificate: make([][]byte, 0, len(svid.Certificates)),
		PrivateKey:  svid.PrivateKey,
		Leaf:        svid.Certificates[0],
	}
	for _, c := range svid.Certificates {
		cert.Certificate = append(cert.Certificate, c.Raw)
	}
	c.last.Store(&cachedCert{svid: svid, cert: cert})
	return cert, nil
}
