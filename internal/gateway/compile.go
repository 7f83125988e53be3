package gateway

import (
	"fmt"
	"net/url"

	"tollgate.dev/tollgate/internal/config"
	"tollgate.dev/tollgate/internal/identity"
)

// The compile steps below turn configuration into the values the gateway
// runs with. New and Check both call them, so the same bad input gets the
// same positioned error from `gateway run` and `gateway check`, and nothing
// is parsed in two places.

// upstream is one route's upstream as compiled from config.
type upstream struct {
	url     *url.URL
	allowed identity.Matcher
}

// compileUpstreams parses every route's upstream URL and SPIFFE ID patterns,
// in route order, reporting every problem at once.
func compileUpstreams(cfg *config.Gateway) ([]upstream, error) {
	if cfg.Ingress == nil {
		return nil, nil
	}
	ups := make([]upstream, len(cfg.Ingress.Routes))
	var errs config.Errors
	for i, rc := range cfg.Ingress.Routes {
		path := fmt.Sprintf("ingress.routes[%d].upstream", i)
		allowed, err := identity.ParseMatcher(rc.Upstream.SPIFFEIDs)
		if err != nil {
			errs = append(errs, cfg.ErrorFor(path+".spiffeIDs", err))
		}
		u, err := url.Parse(rc.Upstream.URL)
		if err != nil {
			errs = append(errs, cfg.ErrorFor(path+".url", err))
		}
		ups[i] = upstream{url: u, allowed: allowed}
	}
	if err := errs.Err(); err != nil {
		return nil, err
	}
	return ups, nil
}

// checkTrustDomain reports an SVID outside identity.trustDomain, when set.
func checkTrustDomain(cfg *config.Gateway, src identity.Source) error {
	td := cfg.Identity.TrustDomain
	if id := src.Status().ID; td != "" && id.TrustDomain().Name() != td {
		return config.Errors{cfg.ErrorAt("identity.trustDomain", fmt.Sprintf("the gateway's SVID %s is not in trust domain %q", id, td))}
	}
	return nil
}
