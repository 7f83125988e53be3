package identity_test

import (
	"crypto/tls"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"

	"tollgate.dev/tollgate/internal/identity"
	"tollgate.dev/tollgate/internal/identity/identitytest"
)

const (
	gatewayID  = "spiffe://example.org/ns/tollgate/sa/gateway"
	upstreamID = "spiffe://example.org/ns/app/sa/web"
	otherID    = "spiffe://example.org/ns/app/sa/other"
	partnerID  = "spiffe://partner.example/ns/billing/sa/api"
)

// TestClientTLSConfig: the gateway dialing an upstream must authenticate the
// upstream's SPIFFE ID, not just its chain (security invariant 5).
func TestClientTLSConfig(t *testing.T) {
	ca := identitytest.NewCA(t, "example.org")
	rogue := identitytest.NewCA(t, "example.org") // same trust domain, not in our bundle
	partner := identitytest.NewCA(t, "partner.example")
	gateway := identitytest.Source(t, ca, gatewayID, partner.Bundle())
	gatewayNoFed := identitytest.Source(t, ca, gatewayID)

	tests := []struct {
		name      string
		server    identity.Source
		presentAs bool // the server presents its SVID as is, expired or not
		client    identity.Source
		allowed   []string
		wantErr   error  // nil: success
		wantMsg   string // substring of the client error
	}{
		{
			name:    "allowed ID",
			server:  identitytest.Source(t, ca, upstreamID),
			client:  gateway,
			allowed: []string{upstreamID},
		},
		{
			name:    "allowed by prefix",
			server:  identitytest.Source(t, ca, upstreamID),
			client:  gateway,
			allowed: []string{"spiffe://example.org/ns/app/*"},
		},
		{
			name:    "valid SVID, wrong ID",
			server:  identitytest.Source(t, ca, otherID),
			client:  gateway,
			allowed: []string{upstreamID},
			wantErr: identity.ErrPeerNotAllowed,
			wantMsg: "peer SPIFFE ID " + otherID + " not allowed",
		},
		{
			name:    "empty allow-list",
			server:  identitytest.Source(t, ca, upstreamID),
			client:  gateway,
			allowed: nil,
			wantErr: identity.ErrPeerNotAllowed,
			wantMsg: "(allowed: <none>)",
		},
		{
			name:    "right ID from another CA",
			server:  identitytest.Source(t, rogue, upstreamID),
			client:  gateway,
			allowed: []string{upstreamID},
			wantErr: identity.ErrPeerVerification,
			wantMsg: "certificate signed by unknown authority",
		},
		{
			// ServerTLSConfig would refuse to serve it: the upstream here
			// presents it anyway, as a misconfigured one might.
			name:      "expired SVID",
			server:    identitytest.StaticSource(t, identitytest.ExpiredSVID(t, ca, upstreamID), ca.Bundle()),
			presentAs: true,
			client:    gateway,
			allowed:   []string{upstreamID},
			wantErr:   identity.ErrPeerVerification,
			wantMsg:   "expired",
		},
		{
			name:    "federated trust domain",
			server:  identitytest.Source(t, partner, partnerID, ca.Bundle()),
			client:  gateway,
			allowed: []string{"spiffe://partner.example"},
		},
		{
			name:    "federated trust domain without its bundle",
			server:  identitytest.Source(t, partner, partnerID, ca.Bundle()),
			client:  gatewayNoFed,
			allowed: []string{"spiffe://partner.example"},
			wantErr: identity.ErrPeerVerification,
			wantMsg: `no X.509 bundle for trust domain "partner.example"`,
		},
		{
			name:    "federated peer not on the allow-list",
			server:  identitytest.Source(t, partner, partnerID, ca.Bundle()),
			client:  gateway,
			allowed: []string{upstreamID},
			wantErr: identity.ErrPeerNotAllowed,
		},
		{
			// A trusted partner CA signing an ID of our trust domain: each trust
			// domain's SVIDs verify only against that domain's own bundle.
			name:    "federated CA claiming our trust domain",
			server:  identitytest.StaticSource(t, foreignSVID(t, partner, upstreamID), ca.Bundle()),
			client:  gateway,
			allowed: []string{upstreamID},
			wantErr: identity.ErrPeerVerification,
			wantMsg: "certificate signed by unknown authority",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ln := localListener(t)
			serverCfg := identity.ServerTLSConfig(tt.server, identitytest.Matcher(t, gatewayID))
			if tt.presentAs {
				serverCfg.GetCertificate = func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return presented(t, tt.server), nil }
			}
			clientCfg := identity.ClientTLSConfig(tt.client, mustMatcher(t, tt.allowed...), identity.ClientOptions{})
			res := handshake(t, ln, serverCfg, clientCfg)
			if tt.wantErr == nil {
				if res.clientErr != nil || res.serverErr != nil {
					t.Fatalf("handshake failed: client: %v; server: %v", res.clientErr, res.serverErr)
				}
				id, ok := identity.PeerID(res.clientState)
				if want := tt.server.Status().ID; !ok || id != want {
					t.Errorf("client PeerID = %v, %v; want %v", id, ok, want)
				}
				return
			}
			if !errors.Is(res.clientErr, tt.wantErr) {
				t.Fatalf("client error = %v, want %v", res.clientErr, tt.wantErr)
			}
			var pe *identity.PeerError
			if !errors.As(res.clientErr, &pe) {
				t.Fatalf("client error %T is not a *PeerError", res.clientErr)
			}
			other := identity.ErrPeerVerification
			if tt.wantErr == identity.ErrPeerVerification {
				other = identity.ErrPeerNotAllowed
			}
			if errors.Is(res.clientErr, other) {
				t.Errorf("client error %v also matches %v; kinds must be distinguishable", res.clientErr, other)
			}
			if !strings.Contains(res.clientErr.Error(), tt.wantMsg) {
				t.Errorf("client error = %q, want it to contain %q", res.clientErr, tt.wantMsg)
			}
			if res.serverErr == nil {
				t.Error("server completed the connection although the client rejected it")
			}
		})
	}
}

// TestServerTLSConfig: a listener requiring mesh callers must refuse every
// caller whose SVID is invalid or not allowed, before any request is read.
func TestServerTLSConfig(t *testing.T) {
	ca := identitytest.NewCA(t, "example.org")
	rogue := identitytest.NewCA(t, "example.org")
	upstream := identitytest.Source(t, ca, upstreamID)
	plainCert := identitytest.ServerCert(t, ca) // ordinary cert, no SPIFFE ID

	tests := []struct {
		name      string
		clientCfg func(t *testing.T) *tls.Config // the caller's side
		wantErr   error
		wantMsg   string
	}{
		{
			name: "allowed caller",
			clientCfg: func(t *testing.T) *tls.Config {
				return identity.ClientTLSConfig(identitytest.Source(t, ca, gatewayID), identitytest.Matcher(t, upstreamID), identity.ClientOptions{})
			},
		},
		{
			name: "valid SVID, wrong ID",
			clientCfg: func(t *testing.T) *tls.Config {
				return identity.ClientTLSConfig(identitytest.Source(t, ca, otherID), identitytest.Matcher(t, upstreamID), identity.ClientOptions{})
			},
			wantErr: identity.ErrPeerNotAllowed,
			wantMsg: otherID,
		},
		{
			name: "right ID from another CA",
			clientCfg: func(t *testing.T) *tls.Config {
				return identity.ClientTLSConfig(identitytest.StaticSource(t, identitytest.SVID(t, rogue, gatewayID), ca.Bundle()), identitytest.Matcher(t, upstreamID), identity.ClientOptions{})
			},
			wantErr: identity.ErrPeerVerification,
			wantMsg: "unknown authority",
		},
		{
			// ClientTLSConfig would refuse to present it (see
			// TestOwnExpiredSVIDIsNotPresented): the caller here presents
			// it anyway.
			name: "expired SVID",
			clientCfg: func(t *testing.T) *tls.Config {
				src := identitytest.StaticSource(t, identitytest.ExpiredSVID(t, ca, gatewayID), ca.Bundle())
				c := identity.ClientTLSConfig(src, identitytest.Matcher(t, upstreamID), identity.ClientOptions{})
				c.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return presented(t, src), nil }
				return c
			},
			wantErr: identity.ErrPeerVerification,
			wantMsg: "expired",
		},
		{
			name: "certificate without SPIFFE ID",
			clientCfg: func(t *testing.T) *tls.Config {
				c := identity.ClientTLSConfig(upstream, identitytest.Matcher(t, upstreamID), identity.ClientOptions{})
				c.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &plainCert, nil }
				return c
			},
			wantErr: identity.ErrPeerVerification,
			wantMsg: "certificate contains no URI SAN",
		},
		{
			name: "no certificate",
			clientCfg: func(t *testing.T) *tls.Config {
				c := identity.ClientTLSConfig(upstream, identitytest.Matcher(t, upstreamID), identity.ClientOptions{})
				c.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &tls.Certificate{}, nil }
				return c
			},
			wantMsg: "client didn't provide a certificate",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ln := localListener(t)
			serverCfg := identity.ServerTLSConfig(upstream, identitytest.Matcher(t, gatewayID))
			clientCfg := tt.clientCfg(t)
			res := handshake(t, ln, serverCfg, clientCfg)
			if tt.wantMsg == "" {
				if res.clientErr != nil || res.serverErr != nil {
					t.Fatalf("handshake failed: client: %v; server: %v", res.clientErr, res.serverErr)
				}
				id, ok := identity.PeerID(res.serverState)
				if want := spiffeid.RequireFromString(gatewayID); !ok || id != want {
					t.Errorf("server PeerID = %v, %v; want %v", id, ok, want)
				}
				return
			}
			if res.serverErr == nil {
				t.Fatal("server accepted the caller")
			}
			if res.clientErr == nil {
				t.Error("client saw no error although the server rejected it")
			}
			if tt.wantErr != nil && !errors.Is(res.serverErr, tt.wantErr) {
				t.Errorf("server error = %v, want %v", res.serverErr, tt.wantErr)
			}
			if !strings.Contains(res.serverErr.Error(), tt.wantMsg) {
				t.Errorf("server error = %q, want it to contain %q", res.serverErr, tt.wantMsg)
			}
		})
	}
}

// TestHTTPWrongIDNeverReachesHandler runs the bypass cases over real HTTP/1.1
// and HTTP/2: a rejected peer's request must never run the handler, and the
// transport's error must still say which kind of rejection it was.
func TestHTTPWrongIDNeverReachesHandler(t *testing.T) {
	ca := identitytest.NewCA(t, "example.org")
	upstream := identitytest.Source(t, ca, upstreamID)
	protocols(t, func(t *testing.T, p http.Protocols) {
		tests := []struct {
			name      string
			callerID  string
			serverOK  string // caller ID the server allows
			clientOK  string // upstream ID the caller allows
			wantCalls int64
			wantErr   error // on the client side; nil with wantCalls 0 means server rejected
		}{
			{name: "both allowed", callerID: gatewayID, serverOK: gatewayID, clientOK: upstreamID, wantCalls: 1},
			{name: "server rejects caller", callerID: otherID, serverOK: gatewayID, clientOK: upstreamID},
			{name: "caller rejects server", callerID: gatewayID, serverOK: gatewayID, clientOK: otherID, wantErr: identity.ErrPeerNotAllowed},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				var seen spiffeid.ID
				url, calls := httpsServer(t, identity.ServerTLSConfig(upstream, identitytest.Matcher(t, tt.serverOK)), p,
					func(w http.ResponseWriter, r *http.Request) {
						id, ok := identity.PeerID(*r.TLS)
						if !ok {
							http.Error(w, "no peer ID", http.StatusForbidden)
							return
						}
						seen = id
						_, _ = io.WriteString(w, r.Proto)
					})
				caller := identitytest.Source(t, ca, tt.callerID)
				client := httpsClient(t, identity.ClientTLSConfig(caller, identitytest.Matcher(t, tt.clientOK), identity.ClientOptions{}), p)
				resp, err := client.Get(url)
				if err == nil {
					body, _ := io.ReadAll(resp.Body)
					resp.Body.Close()
					if tt.wantCalls == 0 {
						t.Fatalf("request succeeded (%s %q), want failure", resp.Status, body)
					}
					if resp.StatusCode != http.StatusOK || resp.ProtoMajor != map[bool]int{true: 2, false: 1}[p.HTTP2()] {
						t.Errorf("got %s over %s", resp.Status, resp.Proto)
					}
					if seen.String() != tt.callerID {
						t.Errorf("handler saw caller %v, want %s", seen, tt.callerID)
					}
				} else if tt.wantCalls != 0 {
					t.Fatalf("request failed: %v", err)
				}
				if tt.wantErr != nil && !errors.Is(err, tt.wantErr) {
					t.Errorf("client error = %v, want %v", err, tt.wantErr)
				}
				if got := calls.Load(); got != tt.wantCalls {
					t.Errorf("handler ran %d times, want %d", got, tt.wantCalls)
				}
			})
		}
	})
}

// TestPeerIDRequiresVerification: a listener that merely requests client
// certificates sees attacker-chosen URI SANs; PeerID must not vouch for them.
func TestPeerIDRequiresVerification(t *testing.T) {
	ca := identitytest.NewCA(t, "example.org")
	rogue := identitytest.NewCA(t, "example.org")
	upstream := identitytest.Source(t, ca, upstreamID)
	serverCfg := identity.ServerTLSConfig(upstream, identitytest.Matcher(t, gatewayID))
	serverCfg.ClientAuth = tls.RequestClientCert
	serverCfg.VerifyConnection = nil // a careless listener
	forged := identitytest.StaticSource(t, identitytest.SVID(t, rogue, gatewayID), ca.Bundle())
	res := handshake(t, localListener(t), serverCfg, identity.ClientTLSConfig(forged, identitytest.Matcher(t, upstreamID), identity.ClientOptions{}))
	if res.serverErr != nil || res.clientErr != nil {
		t.Fatalf("handshake: client %v, server %v", res.clientErr, res.serverErr)
	}
	if len(res.serverState.PeerCertificates) == 0 {
		t.Fatal("no client certificate reached the server")
	}
	if id, ok := identity.PeerID(res.serverState); ok {
		t.Errorf("PeerID = %v for an unverified certificate", id)
	}
	if id, ok := identity.PeerID(tls.ConnectionState{}); ok {
		t.Errorf("PeerID = %v for a connection without certificates", id)
	}
}

func foreignSVID(t *testing.T, ca *identity.DevCA, id string) *x509svid.SVID {
	t.Helper()
	svid, err := identity.IssueForeignSVID(ca, id)
	if err != nil {
		t.Fatal(err)
	}
	return svid
}

// presented is src's SVID as a TLS certificate, whatever its validity.
func presented(t *testing.T, src identity.Source) *tls.Certificate {
	svid, err := src.GetX509SVID()
	if err != nil {
		t.Error(err)
		return nil
	}
	c := &tls.Certificate{PrivateKey: svid.PrivateKey, Leaf: svid.Certificates[0]}
	for _, cert := range svid.Certificates {
		c.Certificate = append(c.Certificate, cert.Raw)
	}
	return c
}

// TestOwnExpiredSVIDIsNotPresented: neither config presents an SVID whose
// NotAfter has come. Every peer would refuse it; refusing first makes the
// failure say what is wrong (ErrSVIDExpired, for a 503 rather than a peer's
// "bad certificate" alert), and no connection is authenticated by it.
func TestOwnExpiredSVIDIsNotPresented(t *testing.T) {
	ca := identitytest.NewCA(t, "example.org")
	expired := identitytest.StaticSource(t, identitytest.ExpiredSVID(t, ca, gatewayID), ca.Bundle())
	valid := identitytest.Source(t, ca, upstreamID)
	anyID := identitytest.Matcher(t, "spiffe://example.org")

	t.Run("client", func(t *testing.T) {
		cfg := identity.ClientTLSConfig(expired, anyID, identity.ClientOptions{})
		if _, err := cfg.GetClientCertificate(&tls.CertificateRequestInfo{}); !errors.Is(err, identity.ErrSVIDExpired) {
			t.Errorf("GetClientCertificate error = %v, want %v", err, identity.ErrSVIDExpired)
		}
		res := handshake(t, localListener(t), identity.ServerTLSConfig(valid, anyID), cfg)
		if !errors.Is(res.clientErr, identity.ErrSVIDExpired) {
			t.Errorf("client handshake error = %v, want %v", res.clientErr, identity.ErrSVIDExpired)
		}
		if res.serverErr == nil {
			t.Error("server completed a handshake with a client that has no valid SVID")
		}
	})
	t.Run("server", func(t *testing.T) {
		cfg := identity.ServerTLSConfig(expired, anyID)
		if _, err := cfg.GetCertificate(&tls.ClientHelloInfo{}); !errors.Is(err, identity.ErrSVIDExpired) {
			t.Errorf("GetCertificate error = %v, want %v", err, identity.ErrSVIDExpired)
		}
	})
	t.Run("at NotAfter", func(t *testing.T) {
		svid, _ := valid.GetX509SVID()
		notAfter := svid.Certificates[0].NotAfter
		for _, tc := range []struct {
			at      time.Time
			wantErr error
		}{
			{at: notAfter.Add(-time.Second)},
			{at: notAfter, wantErr: identity.ErrSVIDExpired},
			{at: notAfter.Add(time.Second), wantErr: identity.ErrSVIDExpired},
		} {
			cfg := identity.ClientTLSConfig(valid, anyID, identity.ClientOptions{})
			cfg.Time = func() time.Time { return tc.at }
			if _, err := cfg.GetClientCertificate(&tls.CertificateRequestInfo{}); !errors.Is(err, tc.wantErr) {
				t.Errorf("at NotAfter%+v: error = %v, want %v", tc.at.Sub(notAfter), err, tc.wantErr)
			}
		}
	})
}
