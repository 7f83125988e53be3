package identity_test

import (
	"crypto/rand"
	"crypto/tls"
	"errors"
	"sync"
	"testing"
	"time"

	"tollgate.dev/tollgate/internal/identity"
	"tollgate.dev/tollgate/internal/identity/identitytest"
)

// verifyLog wraps a config's VerifyConnection and records, per call, whether
// the handshake was a resumption.
type verifyLog struct {
	mu      sync.Mutex
	resumed []bool
}

func (l *verifyLog) wrap(cfg *tls.Config) *tls.Config {
	inner := cfg.VerifyConnection
	cfg.VerifyConnection = func(cs tls.ConnectionState) error {
		l.mu.Lock()
		l.resumed = append(l.resumed, cs.DidResume)
		l.mu.Unlock()
		return inner(cs)
	}
	return cfg
}

func (l *verifyLog) last(tb testing.TB) bool {
	tb.Helper()
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.resumed) == 0 {
		tb.Fatal("VerifyConnection never ran")
	}
	return l.resumed[len(l.resumed)-1]
}

// TestResumedSessionIsReauthorized is the reason authorization lives in
// VerifyConnection: a session ticket issued while a peer was allowed must not
// let it back in after the allow-list changes. crypto/tls does not call
// VerifyPeerCertificate on resumption, but does call VerifyConnection.
func TestResumedSessionIsReauthorized(t *testing.T) {
	ca := identitytest.NewCA(t, "example.org")
	upstream := identitytest.Source(t, ca, upstreamID)
	gateway := identitytest.Source(t, ca, gatewayID)
	var ticketKey [32]byte
	if _, err := rand.Read(ticketKey[:]); err != nil {
		t.Fatal(err)
	}
	serverCfg := func(allowed ...string) *tls.Config {
		cfg := identity.ServerTLSConfig(upstream, identitytest.Matcher(t, allowed...))
		// Both server configs accept each other's tickets, as two
		// generations of one listener's config would.
		cfg.SetSessionTicketKeys([][32]byte{ticketKey})
		return cfg
	}

	for _, version := range []uint16{tls.VersionTLS12, tls.VersionTLS13} {
		t.Run(tls.VersionName(version), func(t *testing.T) {
			ln := localListener(t)
			cache := tls.NewLRUClientSessionCache(4)
			clientCfg := func(allowed ...string) (*tls.Config, *verifyLog) {
				cfg := identity.ClientTLSConfig(gateway, identitytest.Matcher(t, allowed...), identity.ClientOptions{ServerName: "upstream.test"})
				cfg.ClientSessionCache = cache
				cfg.MaxVersion = version
				log := new(verifyLog)
				return log.wrap(cfg), log
			}

			// 1. Full handshake; the client caches the session.
			allowCfg, allowLog := clientCfg(upstreamID)
			okServer := serverCfg(gatewayID)
			if res := handshake(t, ln, okServer, allowCfg); res.clientErr != nil || res.serverErr != nil {
				t.Fatalf("first handshake: client %v, server %v", res.clientErr, res.serverErr)
			}
			if allowLog.last(t) {
				t.Fatal("first handshake resumed")
			}

			// 2. The same config resumes, and VerifyConnection runs on it.
			res := handshake(t, ln, okServer, allowCfg)
			if res.clientErr != nil || res.serverErr != nil {
				t.Fatalf("second handshake: client %v, server %v", res.clientErr, res.serverErr)
			}
			if !res.clientState.DidResume || !allowLog.last(t) {
				t.Fatalf("second handshake did not resume (DidResume=%v); the test would prove nothing", res.clientState.DidResume)
			}
			if _, ok := identity.PeerID(res.serverState); !ok {
				t.Error("server PeerID unknown on a resumed, verified session")
			}

			// 3. The client's allow-list no longer admits the upstream: the
			// resumed session must be refused.
			denyCfg, denyLog := clientCfg(otherID)
			res = handshake(t, ln, okServer, denyCfg)
			if !errors.Is(res.clientErr, identity.ErrPeerNotAllowed) {
				t.Fatalf("client error = %v, want ErrPeerNotAllowed", res.clientErr)
			}
			if !denyLog.last(t) {
				t.Fatal("rejected handshake was not a resumption; the test would prove nothing")
			}

			// crypto/tls drops a session whose resumption failed (RFC 5077
			// 3.2), so cache a fresh one first.
			if res := handshake(t, ln, okServer, allowCfg); res.clientErr != nil || res.serverErr != nil {
				t.Fatalf("re-establishing handshake: client %v, server %v", res.clientErr, res.serverErr)
			}

			// 4. The server's allow-list no longer admits the caller: its
			// resumed session must be refused too.
			denyServer := serverCfg(otherID)
			serverLog := new(verifyLog)
			serverLog.wrap(denyServer)
			res = handshake(t, ln, denyServer, allowCfg)
			if !errors.Is(res.serverErr, identity.ErrPeerNotAllowed) {
				t.Fatalf("server error = %v, want ErrPeerNotAllowed", res.serverErr)
			}
			if !serverLog.last(t) {
				t.Fatal("server-side rejection was not on a resumed session; the test would prove nothing")
			}
		})
	}
}

// TestRotationAppliesToNewHandshakes: a rotated SVID is presented on the
// next handshake without rebuilding any tls.Config.
func TestRotationAppliesToNewHandshakes(t *testing.T) {
	ca := identitytest.NewCA(t, "example.org")
	upstream := identitytest.Source(t, ca, upstreamID)
	gateway := identitytest.Source(t, ca, gatewayID)
	serverCfg := identity.ServerTLSConfig(upstream, identitytest.Matcher(t, gatewayID))
	clientCfg := identity.ClientTLSConfig(gateway, identitytest.Matcher(t, upstreamID), identity.ClientOptions{})
	ln := localListener(t)

	serials := func() (client, server string) {
		t.Helper()
		res := handshake(t, ln, serverCfg, clientCfg)
		if res.clientErr != nil || res.serverErr != nil {
			t.Fatalf("handshake: client %v, server %v", res.clientErr, res.serverErr)
		}
		return res.serverState.PeerCertificates[0].SerialNumber.Text(16),
			res.clientState.PeerCertificates[0].SerialNumber.Text(16)
	}
	c1, s1 := serials()
	if c1 != gateway.Status().Serial || s1 != upstream.Status().Serial {
		t.Fatalf("handshake used serials %s/%s, sources hold %s/%s", c1, s1, gateway.Status().Serial, upstream.Status().Serial)
	}
	if err := gateway.Rotate(); err != nil {
		t.Fatal(err)
	}
	if err := upstream.Rotate(); err != nil {
		t.Fatal(err)
	}
	c2, s2 := serials()
	if c2 == c1 || s2 == s1 {
		t.Fatalf("serials after rotation %s/%s, before %s/%s: rotation not applied", c2, s2, c1, s1)
	}
	if c2 != gateway.Status().Serial || s2 != upstream.Status().Serial {
		t.Fatalf("handshake used serials %s/%s, sources hold %s/%s", c2, s2, gateway.Status().Serial, upstream.Status().Serial)
	}
}

// TestDevSourceRotatesAtHalfLife checks the background rotation itself.
func TestDevSourceRotatesAtHalfLife(t *testing.T) {
	ca := identitytest.NewCA(t, "example.org")
	// X.509 validity has one-second resolution, so sub-second TTLs would
	// test truncation rather than rotation; 4s leaves a loaded machine about
	// a second and a half between rotation and expiry.
	const ttl = 4 * time.Second
	src, err := identity.NewDevSource(ca, identitytest.ID(t, gatewayID), ttl)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	first := src.Status()
	if got := first.NotAfter.Sub(first.Updated); got <= 0 || got > ttl {
		t.Errorf("SVID lifetime from issue = %s, want (0, %s]", got, ttl)
	}
	if err := src.Ready(); err != nil {
		t.Errorf("Ready() on a fresh SVID = %v", err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for src.Status().Serial == first.Serial {
		if time.Now().After(deadline) {
			t.Fatal("SVID not rotated within 5s")
		}
		time.Sleep(10 * time.Millisecond)
	}
	rotated := time.Now()
	halfLife := first.NotAfter.Sub(first.Updated) / 2
	if elapsed := rotated.Sub(first.Updated); elapsed < halfLife-50*time.Millisecond {
		t.Errorf("rotated after %s, before half-life %s", elapsed, halfLife)
	}
	if !rotated.Before(first.NotAfter) {
		t.Errorf("rotated at %s, after the old SVID expired at %s", rotated, first.NotAfter)
	}
	if err := src.Ready(); err != nil {
		t.Errorf("Ready() after rotation = %v", err)
	}
	if err := src.Close(); err != nil {
		t.Fatal(err)
	}
	if err := src.Close(); err != nil {
		t.Fatalf("second Close = %v", err)
	}
	if _, err := src.GetX509SVID(); !errors.Is(err, identity.ErrSourceClosed) {
		t.Errorf("GetX509SVID after Close = %v, want ErrSourceClosed", err)
	}
	if err := src.Ready(); !errors.Is(err, identity.ErrSourceClosed) {
		t.Errorf("Ready after Close = %v, want ErrSourceClosed", err)
	}
}
