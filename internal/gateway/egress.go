package gateway

import (
	"crypto/tls"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"tollgate.dev/tollgate/internal/config"
	"tollgate.dev/tollgate/internal/egress"
	"tollgate.dev/tollgate/internal/identity"
	"tollgate.dev/tollgate/internal/ingress"
)

// openEgress builds the front for workloads calling out: an mTLS listener
// that requires the caller's SVID (its SPIFFE ID is source.principal), and
// the forward proxy, which dials destinations only through the SSRF guard.
func (g *Gateway) openEgress(norm ingress.Normalizer) error {
	e := g.cfg.Egress
	if e == nil {
		return nil
	}
	patterns := e.AllowedCallers
	if len(patterns) == 0 {
		patterns = []string{spiffeid.RequireTrustDomainFromString(g.trustDomain()).IDString()}
	}
	allowed, err := identity.ParseMatcher(patterns)
	if err != nil {
		return config.Errors{g.cfg.ErrorFor("egress.allowedCallers", err)}
	}
	guard, err := egress.NewGuard(egress.GuardOptions{
		Resolver:    g.opts.EgressResolver,
		Allow:       config.ParsePrefixes(e.AllowCIDRs),
		DialTimeout: e.Timeouts.Dial,
	})
	if err != nil {
		return config.Errors{g.cfg.ErrorFor("egress", err)}
	}
	mtls := identity.ServerTLSConfig(g.src, allowed)
	// Workloads are not proxies whose forwarding headers we'd trust, and the
	// listener has one certificate (the SVID) for every name.
	ex := g.newExchange("egress", false, nil)
	g.egress = egress.NewProxy(egress.ProxyOptions{
		Front:                 ex,
		Normalize:             egress.Normalizer(norm),
		Dial:                  guard.DialContext,
		DialTimeout:           e.Timeouts.Dial,
		ResponseHeaderTimeout: e.Timeouts.Upstream,
		Logger:                g.log,
	}, &egress.Snapshot{})
	return g.openFront(&front{frontConfig: g.frontConfig("egress"), ex: ex, handler: egressHandler{g.egress}}, frontSpec{
		certs: certFunc(mtls.GetCertificate),
		clientAuth: func(c *tls.Config) {
			c.ClientAuth = mtls.ClientAuth
			c.VerifyConnection = mtls.VerifyConnection
		},
	})
}

// egressHandler adapts the egress front's forward proxy.
type egressHandler struct{ *egress.Proxy }

func (h egressHandler) swap(c *Compiled, name string, w config.Workload) []any {
	engine := c.Policies.EngineFor(w)
	h.Swap(&egress.Snapshot{Destinations: c.Destinations, Authorize: authorizer{engine}})
	return []any{name + "Policies", engine.Len(), name + "Destinations", c.Destinations.Len()}
}
