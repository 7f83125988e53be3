package gateway

import (
	"tollgate.dev/tollgate/internal/config"
	"tollgate.dev/tollgate/internal/identity"
)

// Check validates everything New would, without binding listeners or dialing
// anything: identity files are parsed, routes and the path normalizer are
// compiled, and policy documents are loaded and compiled with the gateway's
// settings. A Workload API identity is checked for syntax only (there may be no
// agent where check runs). It returns every problem at once, and warnings:
// policy documents that apply to no listener.
func Check(cfg *config.Gateway) (warnings []string, _ error) {
	var errs config.Errors
	add := func(err error) {
		if err == nil {
			return
		}
		if es, ok := config.AsErrors(err); ok {
			errs = append(errs, es...)
			return
		}
		errs = append(errs, config.Error{File: cfg.File, Msg: err.Error()})
	}
	trustDomain := cfg.Identity.TrustDomain
	if f := cfg.Identity.Files; f != nil {
		src, err := identity.NewFiles(identity.FilesOptions{Cert: f.Cert, Key: f.Key, Bundle: f.Bundle, FederatedBundles: f.FederatedBundles})
		if err != nil {
			add(config.Errors{cfg.ErrorFor("identity.files", err)})
		} else {
			add(checkTrustDomain(cfg, src))
			if trustDomain == "" {
				trustDomain = src.Status().ID.TrustDomain().Name()
			}
			src.Close()
		}
	}
	_, err := compileLive(cfg)
	add(err)
	add(checkLogins(cfg))
	if len(cfg.Policy.Files) > 0 {
		c := *cfg
		c.Identity.TrustDomain = trustDomain
		compiled, err := CompilePolicies(&c, cfg.Policy.Files, nil)
		add(err)
		if err == nil {
			for _, u := range compiled.Unselected(cfg) {
				warnings = append(warnings, u+": applies to no listener (check its namespace and selector)")
			}
		}
	}
	return warnings, errs.Err()
}
