package gateway

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"tollgate.dev/tollgate/internal/config"
	"tollgate.dev/tollgate/internal/egress"
	"tollgate.dev/tollgate/internal/identity"
	"tollgate.dev/tollgate/internal/ingress"
	"tollgate.dev/tollgate/internal/oidc"
)

// liveSet is the part of the gateway file in force: the configuration with
// what needs a restart kept as it started, and what was built from it. A
// reload of the gateway file builds a new one and swaps it into every front
// together with the policies compiled for it (policyWatcher.mu), so a request
// is routed, normalized, judged and forwarded by one of them from start to end.
type liveSet struct {
	cfg    *config.Gateway
	router *ingress.Router
	// ingressNorm and egressNorm are nil without their section.
	ingressNorm ingress.Normalizer
	egressNorm  egress.Normalizer
	// logins binds the routes to the browser logins of loginList, one per
	// provider of cfg's oidc section (loginsByName).
	logins       *ingress.Logins
	loginList    []*oidc.Login
	loginsByName map[string]runningLogin
	// startedLogins are the logins this set started (not kept from the
	// set before it): closed if it does not go in force. setKeys gives the
	// kept ones the set's session keys, once it is in force.
	startedLogins []*oidc.Login
	setKeys       func()
	// routes keys each route's transport by what it was built from, so a
	// reload that leaves an upstream as it was keeps its pooled connections.
	transports map[upstreamKey]*rotatingTransport
}

// compiledLive is what compileLive makes of a configuration, without
// building transports or touching anything running: what Check runs too.
type compiledLive struct {
	upstreams               []upstream
	ingressNorm, egressNorm ingress.Normalizer
}

// compileLive compiles the routes and the normalizers of cfg, reporting every
// problem at once.
func compileLive(cfg *config.Gateway) (*compiledLive, error) {
	var errs config.Errors
	add := func(err error) {
		if es, ok := config.AsErrors(err); ok {
			errs = append(errs, es...)
		} else if err != nil {
			errs = append(errs, config.Error{File: cfg.File, Msg: err.Error()})
		}
	}
	out := &compiledLive{}
	var err error
	if in := cfg.Ingress; in != nil {
		out.upstreams, err = compileUpstreams(cfg)
		add(err)
		out.ingressNorm, err = normalizer(cfg, "ingress.normalization", in.Normalization)
		add(err)
	}
	if e := cfg.Egress; e != nil {
		out.egressNorm, err = normalizer(cfg, "egress.normalization", e.Normalization)
		add(err)
	}
	if err := errs.Err(); err != nil {
		return nil, err
	}
	return out, nil
}

// upstreamKey is everything a route's transport is built from.
type upstreamKey struct {
	url, spiffeIDs, serverName string
	timeout, dial              time.Duration
}

// buildLive builds the live set of cfg. Transports of prev whose upstream is
// unchanged are kept, and so are logins whose provider's settings are; what
// it starts, the caller stops with discard if the set does not go in force.
func (g *Gateway) buildLive(cfg *config.Gateway, prev *liveSet) (l *liveSet, err error) {
	c, err := compileLive(cfg)
	if err != nil {
		return nil, err
	}
	l = &liveSet{cfg: cfg, ingressNorm: c.ingressNorm, transports: map[upstreamKey]*rotatingTransport{}}
	var prevLogins map[string]runningLogin
	if prev != nil {
		prevLogins = prev.loginsByName
	}
	if cfg.Ingress != nil {
		l.loginsByName, l.loginList, l.startedLogins, l.setKeys, err = g.startLogins(cfg, prevLogins)
		if err != nil {
			return nil, err
		}
		defer func() {
			if err != nil {
				closeAll(l.startedLogins, g.log)
			}
		}()
	}
	if c.egressNorm != nil {
		l.egressNorm = egress.Normalizer(c.egressNorm)
	}
	in := cfg.Ingress
	if in == nil {
		// An egress-only gateway: no routes.
		l.router = ingress.NewRouter(nil)
		return l, nil
	}
	byRoute := map[string]*oidc.Login{}
	var errs config.Errors
	routes := make([]*ingress.Route, len(in.Routes))
	for i, rc := range in.Routes {
		if rc.Login != "" {
			login := l.loginsByName[rc.Login].login
			if login == nil {
				// Validation ties every login to a provider of the file:
				// unreachable, but fail closed: a route must never serve
				// without its login.
				errs = append(errs, cfg.ErrorAt(fmt.Sprintf("ingress.routes[%d].login", i),
					fmt.Sprintf("no OIDC provider %q", rc.Login)))
				continue
			}
			byRoute[rc.Name] = login
		}
		up := c.upstreams[i]
		key := upstreamKey{url: up.url.String(), spiffeIDs: strings.Join(rc.Upstream.SPIFFEIDs, "\x00"),
			serverName: rc.Upstream.ServerName, timeout: rc.Upstream.Timeout, dial: in.Timeouts.Dial}
		t := l.transports[key]
		if t == nil && prev != nil {
			t = prev.transports[key]
		}
		if t == nil {
			tlsCfg := identity.ClientTLSConfig(g.src, up.allowed, identity.ClientOptions{ServerName: rc.Upstream.ServerName})
			t = newRotatingTransport(ingress.NewTransport(ingress.TransportOptions{
				TLS: tlsCfg, DialTimeout: in.Timeouts.Dial, ResponseHeaderTimeout: rc.Upstream.Timeout,
			}))
		}
		l.transports[key] = t
		routes[i] = &ingress.Route{
			Name: rc.Name, Host: rc.Host, PathPrefix: rc.PathPrefix, Upstream: up.url,
			UpstreamIDs: up.allowed.String(), Transport: t,
		}
	}
	if err := errs.Err(); err != nil {
		return nil, err
	}
	l.router = ingress.NewRouter(routes)
	if len(l.loginList) > 0 {
		l.logins = ingress.NewLogins(byRoute, l.loginList)
	}
	return l, nil
}

// discard stops what l started, when l does not go in force.
func (g *Gateway) discard(l, cur *liveSet) {
	g.retire(l, cur)
	closeAll(l.startedLogins, g.log)
}

// retire closes the pooled connections of transports prev has and next does
// not, once they are idle: requests in flight on them finish first, and a
// second pass after retireGrace closes what they returned to the pool. The
// retired transports stay under the SVID rotation's watch (eachRotating),
// so a long request still on one is cut at its SVID's NotAfter like any
// other; the last maxRetired are kept.
func (g *Gateway) retire(prev, next *liveSet) {
	for k, t := range prev.transports {
		if next != nil && next.transports[k] == t {
			continue
		}
		t.CloseIdleConnections()
		time.AfterFunc(retireGrace, t.CloseIdleConnections)
		g.retiredMu.Lock()
		g.retiredTransports = append(g.retiredTransports, t)
		if n := len(g.retiredTransports); n > maxRetired {
			g.retiredTransports = slices.Delete(g.retiredTransports, 0, n-maxRetired)
		}
		g.retiredMu.Unlock()
	}
}

// maxRetired bounds the retired transports kept under the rotation's watch.
const maxRetired = 256

// retireGrace is how long a retired transport's connections may stay in use
// before the second pass closes them once idle.
const retireGrace = 30 * time.Second
