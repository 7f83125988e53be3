package gateway

import (
	"crypto/tls"
	"fmt"
	"time"

	"tollgate.dev/tollgate/internal/config"
	"tollgate.dev/tollgate/internal/egress"
	"tollgate.dev/tollgate/internal/identity"
)

// openEgress builds the front for workloads calling out: an mTLS listener
// that requires the caller's SVID (its SPIFFE ID is source.principal), and
// the forward proxy, which dials destinations only through the SSRF guard.
func (g *Gateway) openEgress() error {
	e := g.cfg.Egress
	if e == nil {
		return nil
	}
	allowed, err := allowedCallers(g.cfg, "egress.allowedCallers", e.AllowedCallers, g.trustDomain())
	if err != nil {
		return err
	}
	resolver := g.opts.EgressResolver
	if resolver == nil && len(e.Resolvers) > 0 {
		dns, err := egress.NewDNSResolver(e.Resolvers, e.ResolverTimeout)
		if err != nil {
			return config.Errors{g.cfg.ErrorFor("egress.resolvers", err)}
		}
		// Answers are kept no longer than their TTL, and never past the cap.
		resolver = egress.NewCache(dns, egressDNSMaxAge)
	}
	guard, err := egress.NewGuard(egress.GuardOptions{
		Resolver:    resolver,
		Allow:       config.ParsePrefixes(e.AllowCIDRs),
		DialTimeout: e.Timeouts.Dial,
	})
	if err != nil {
		return config.Errors{g.cfg.ErrorFor("egress", err)}
	}
	creds, err := g.openCredentials()
	if err != nil {
		return err
	}
	if e.OutboundTrafficPolicy.Mode == "ALLOW_ANY" {
		g.log.Warn("egress.outboundTrafficPolicy is ALLOW_ANY: workloads may call hosts no ServiceEntry declares (policy and the SSRF guard still judge each call)")
	}
	mtls := identity.ServerTLSConfig(g.src, allowed)
	// Workloads are not proxies whose forwarding headers we'd trust, and the
	// listener has one certificate (the SVID) for every name.
	ex := g.newExchange("egress")
	g.egress = egress.NewProxy(egress.ProxyOptions{
		Front:                 ex,
		Dial:                  guard.DialContext,
		DialTimeout:           e.Timeouts.Dial,
		ResponseHeaderTimeout: e.Timeouts.Upstream,
		Logger:                g.log,
		Credentials:           creds,
		AllowAny:              e.OutboundTrafficPolicy.Mode == "ALLOW_ANY",
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

func (h egressHandler) swap(c *Compiled, l *liveSet, f *front) []any {
	s := *h.Snapshot()
	s.Normalize, s.Rules = l.egressNorm, f.rules(l.cfg)
	var counts []any
	if c != nil {
		engine := c.Policies.EngineFor(frontWorkload(l.cfg, f.name))
		s.Destinations, s.Authorize = c.Destinations, authorizer{engine}
		counts = []any{f.name + "Policies", engine.Len(), f.name + "Destinations", c.Destinations.Len()}
	}
	h.Swap(&s)
	return counts
}

// openCredentials builds the injected credentials of egress.credentials, by
// the destination host pattern they are for.
func (g *Gateway) openCredentials() (map[string]*egress.Credentials, error) {
	out := map[string]*egress.Credentials{}
	var errs config.Errors
	for i, c := range g.cfg.Egress.Credentials {
		path := fmt.Sprintf("egress.credentials[%d]", i)
		host, err := egress.CanonicalPattern(c.Host)
		if err != nil {
			errs = append(errs, g.cfg.ErrorFor(path+".host", err))
			continue
		}
		if _, dup := out[host]; dup {
			errs = append(errs, g.cfg.ErrorAt(path+".host", "host "+host+" has credentials already"))
			continue
		}
		opts := egress.CredentialOptions{OnReload: func(file string, err error) {
			g.metrics.CertReload("egress-credential", err)
			if err != nil {
				g.log.Error("egress credential file changed but could not be used; keeping the previous value", "file", file, "err", err)
			}
		}}
		for _, h := range c.Headers {
			opts.Headers = append(opts.Headers, egress.HeaderFromFile{Name: h.Name, File: h.File, Prefix: h.Prefix})
		}
		if o := c.OAuth2; o != nil {
			opts.OAuth2 = &egress.OAuth2Options{TokenURL: o.TokenURL, ClientID: o.ClientID, ClientSecretFile: o.ClientSecretFile,
				Scopes: o.Scopes, Header: o.Header, RefreshBefore: o.RefreshBefore}
		}
		cr, err := egress.NewCredentials(opts)
		if err != nil {
			errs = append(errs, g.cfg.ErrorFor(path, err))
			continue
		}
		out[host] = cr
		g.credentials = append(g.credentials, cr)
	}
	if err := errs.Err(); err != nil {
		for _, cr := range out {
			cr.Close()
		}
		g.credentials = nil
		return nil, err
	}
	return out, nil
}

// egressDNSMaxAge caps how long an answer of the configured DNS servers is
// kept (the TTL, when shorter, wins).
const egressDNSMaxAge = 5 * time.Minute
