package gateway

import (
	"errors"
	"fmt"
	"strings"

	"tollgate.dev/tollgate/internal/config"
	"tollgate.dev/tollgate/internal/oidc"
)

// loginConfigs turns the oidc section into one LoginConfig per provider, with the
// session keys read from their files. Each login may build redirect URIs and set
// cookies only for the hosts of the routes bound to it (a route for "*" or a
// wildcard host lifts that limit for its provider; the provider's redirect_uri
// allow-list then is the only guard against a forged Host).
func loginConfigs(cfg *config.Gateway) ([]oidc.LoginConfig, error) {
	o := cfg.OIDC
	if o == nil || len(o.Providers) == 0 {
		return nil, nil
	}
	keys, err := oidc.LoadSessionKeys(o.SessionKeyFiles...)
	if err != nil {
		return nil, config.Errors{cfg.ErrorFor("oidc.sessionKeyFiles", err)}
	}
	hosts := map[string][]string{}
	anyHost := map[string]bool{}
	if cfg.Ingress != nil {
		for _, r := range cfg.Ingress.Routes {
			switch {
			case r.Login == "":
			case r.Host == "*" || strings.HasPrefix(r.Host, "*."):
				anyHost[r.Login] = true
			default:
				hosts[r.Login] = append(hosts[r.Login], r.Host)
			}
		}
	}
	var errs config.Errors
	out := make([]oidc.LoginConfig, 0, len(o.Providers))
	for i, p := range o.Providers {
		lc := oidc.LoginConfig{
			Provider: oidc.ProviderConfig{
				Name: p.Name, Issuer: p.Issuer, ClientID: p.ClientID, ClientSecretFile: p.ClientSecretFile,
				Scopes: p.Scopes, ExtraAuthParams: p.ExtraAuthParams, PostLogoutRedirectPath: p.PostLogoutRedirectPath,
			},
			Keys:         keys,
			PathPrefix:   config.LoginPathPrefix(p.Name),
			SessionTTL:   o.SessionTTL,
			AllowedHosts: hosts[p.Name],
		}
		if anyHost[p.Name] {
			lc.AllowedHosts = nil
		}
		if err := lc.Provider.Validate(); err != nil {
			errs = append(errs, cfg.ErrorAt(fmt.Sprintf("oidc.providers[%d]", i), err.Error()))
			continue
		}
		out = append(out, lc)
	}
	if err := errs.Err(); err != nil {
		return nil, err
	}
	return out, nil
}

// openLogins starts one oidc.Login per provider (discovery runs in the
// background; logins answer 503 until it succeeds); buildLive binds the
// routes to them.
func (g *Gateway) openLogins() error {
	lcs, err := loginConfigs(g.cfg)
	if err != nil || len(lcs) == 0 {
		return err
	}
	byName := map[string]*oidc.Login{}
	g.loginsByName = byName
	for i, lc := range lcs {
		lc.Logger = g.log
		name := lc.Provider.Name
		lc.OnEvent = func(event, result string) { g.metrics.LoginEvent(name, event, result) }
		l, err := oidc.NewLogin(lc)
		if err != nil {
			return config.Errors{g.cfg.ErrorAt(fmt.Sprintf("oidc.providers[%d]", i), err.Error())}
		}
		g.logins = append(g.logins, l)
		byName[lc.Provider.Name] = l
	}
	logins := g.logins
	g.metrics.SetLoginReady(func() map[string]bool {
		ready := make(map[string]bool, len(logins))
		for _, l := range logins {
			ready[l.Name()] = l.Ready()
		}
		return ready
	})
	return nil
}

// Logins returns the gateway's browser logins, one per provider (for tests and
// readiness probes).
func (g *Gateway) Logins() []*oidc.Login { return g.logins }

// reloadSessionKeys rereads the session key files, so a new key can be put in
// front (it seals from now on) and an old one dropped without a restart. On
// error the keys in use stay.
func (g *Gateway) reloadSessionKeys() error {
	o := g.cfg.OIDC
	if o == nil || len(g.logins) == 0 {
		return nil
	}
	keys, err := oidc.LoadSessionKeys(o.SessionKeyFiles...)
	if err != nil {
		g.log.Error("session keys could not be reloaded; keeping the previous keys", "err", err)
		return fmt.Errorf("session keys: %w", err)
	}
	for _, l := range g.logins {
		l.SetKeys(keys)
	}
	return nil
}

func (g *Gateway) closeLogins() {
	var errs []error
	for _, l := range g.logins {
		errs = append(errs, l.Close())
	}
	if err := errors.Join(errs...); err != nil {
		g.log.Warn("closing logins", "err", err)
	}
}

// checkLogins is what Check runs for the oidc section: key files parse and
// providers are valid. Nothing is fetched.
func checkLogins(cfg *config.Gateway) error {
	_, err := loginConfigs(cfg)
	return err
}
