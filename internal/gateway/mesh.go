package gateway

import (
	"crypto/tls"
	"net"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"tollgate.dev/tollgate/internal/config"
	"tollgate.dev/tollgate/internal/identity"
	"tollgate.dev/tollgate/internal/ingress"
)

// openMesh builds the listener for in-mesh callers: the same routes as the
// ingress, the gateway's SVID as server certificate, and a required client SVID
// whose SPIFFE ID becomes source.principal for policy.
func (g *Gateway) openMesh() error {
	m := g.cfg.Ingress.Mesh
	if m == nil {
		return nil
	}
	allowed, err := allowedCallers(g.cfg, "ingress.mesh.allowedCallers", m.AllowedCallers, g.trustDomain())
	if err != nil {
		return err
	}
	mtls := identity.ServerTLSConfig(g.src, allowed)
	// Callers in the mesh are not proxies whose forwarding headers we'd
	// trust, and the listener has one certificate (the SVID) for every name.
	ex := g.newExchange("mesh")
	h := ingress.New(ingress.Options{Front: ex}, &ingress.Snapshot{Router: ingress.NewRouter(nil)})
	return g.openFront(&front{frontConfig: g.frontConfig("mesh"), ex: ex, handler: ingressHandler{h}}, frontSpec{
		certs: certFunc(mtls.GetCertificate),
		clientAuth: func(c *tls.Config) {
			c.ClientAuth = mtls.ClientAuth
			c.VerifyConnection = mtls.VerifyConnection
		},
	})
}

// allowedCallers compiles the SPIFFE ID patterns of the callers a listener
// accepts, configured at path; none: any ID of the trust domain td.
func allowedCallers(cfg *config.Gateway, path string, patterns []string, td string) (identity.Matcher, error) {
	if len(patterns) == 0 {
		if td == "" {
			// Checking without an SVID: the trust domain comes from it.
			return identity.Matcher{}, nil
		}
		patterns = []string{spiffeid.RequireTrustDomainFromString(td).IDString()}
	}
	allowed, err := identity.ParseMatcher(patterns)
	if err != nil {
		return identity.Matcher{}, config.Errors{cfg.ErrorFor(path, err)}
	}
	return allowed, nil
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
func (g *Gateway) MeshAddr() net.Addr { return g.frontAddr("mesh") }

// EgressAddr is the bound egress listener address (after Start), or nil.
func (g *Gateway) EgressAddr() net.Addr { return g.frontAddr("egress") }
