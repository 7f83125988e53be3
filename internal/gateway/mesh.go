package gateway

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"tollgate.dev/tollgate/internal/config"
	"tollgate.dev/tollgate/internal/exchange"
	"tollgate.dev/tollgate/internal/identity"
	"tollgate.dev/tollgate/internal/ingress"
	"tollgate.dev/tollgate/internal/listener"
)

// openMesh builds the listener for in-mesh callers: the same routes as the
// ingress, the gateway's SVID as server certificate, and a required client SVID
// whose SPIFFE ID becomes source.principal for policy.
func (g *Gateway) openMesh(norm ingress.Normalizer) error {
	m := g.cfg.Ingress.Mesh
	if m == nil {
		return nil
	}
	patterns := m.AllowedCallers
	if len(patterns) == 0 {
		patterns = []string{spiffeid.RequireTrustDomainFromString(g.trustDomain()).IDString()}
	}
	allowed, err := identity.ParseMatcher(patterns)
	if err != nil {
		return config.Errors{g.cfg.ErrorAt("ingress.mesh.allowedCallers", err.Error())}
	}
	mtls := identity.ServerTLSConfig(g.src, allowed)
	// Callers in the mesh are not proxies whose forwarding headers we'd trust.
	front := exchange.New(exchange.Options{
		Name:     "mesh",
		Recorder: g.audit,
		Metrics:  metricsAdapter{g.metrics},
		Logger:   g.log,
	})
	g.meshHandler = ingress.New(ingress.Options{Front: front, Normalize: norm}, &ingress.Snapshot{Router: g.router})
	srv, err := listener.New(listener.Config{
		Addr:    m.Listen,
		Handler: g.meshHandler,
		Certs:   certFunc(mtls.GetCertificate),
		ClientAuth: func(c *tls.Config) {
			c.ClientAuth = mtls.ClientAuth
			c.VerifyConnection = mtls.VerifyConnection
		},
		ReadHeaderTimeout:   g.cfg.Ingress.Timeouts.ReadHeader,
		ReadTimeout:         g.cfg.Ingress.Timeouts.Read,
		WriteTimeout:        g.cfg.Ingress.Timeouts.Write,
		IdleTimeout:         g.cfg.Ingress.Timeouts.Idle,
		MaxHeaderBytes:      g.cfg.Ingress.Limits.MaxHeaderBytes,
		MaxHeaderCount:      g.cfg.Ingress.Limits.MaxHeaderCount,
		MaxConnections:      g.cfg.Ingress.Limits.MaxConnections,
		Logger:              g.log,
		OnTLSHandshakeError: func() { g.metrics.TLSHandshakeError("mesh") },
		OnConnectionLimit:   func() { g.metrics.ConnectionLimitReached("mesh") },
	})
	if err != nil {
		return fmt.Errorf("mesh listener: %w", err)
	}
	g.meshServer = srv
	g.health.AddCheck("mesh-listener", func() error {
		if srv.Addr() == nil {
			return errors.New("mesh listener not bound")
		}
		return nil
	})
	return nil
}

// certFunc adapts a GetCertificate function to listener.CertSource.
type certFunc func(*tls.ClientHelloInfo) (*tls.Certificate, error)

func (f certFunc) GetCertificate(h *tls.ClientHelloInfo) (*tls.Certificate, error) { return f(h) }

func (g *Gateway) trustDomain() string {
	if td := g.cfg.Identity.TrustDomain; td != "" {
		return td
	}
	return g.src.Status().ID.TrustDomain().Name()
}

// MeshAddr is the bound mesh listener address (after Start), or nil.
func (g *Gateway) MeshAddr() net.Addr {
	if g.meshServer == nil {
		return nil
	}
	return g.meshServer.Addr()
}
