package gateway

import (
	"errors"
	"fmt"
	"log/slog"
	"reflect"
	"slices"
	"strings"
	"time"

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

// runningLogin is a started browser login and the configuration it was
// started with, without what does not make it another login (its session
// keys, which SetKeys replaces, its logger and its metrics callback).
type runningLogin struct {
	login *oidc.Login
	cfg   oidc.LoginConfig
}

// startLogins returns the logins of cfg's oidc section, one per provider
// (discovery runs in the background; a login answers 503 until it
// succeeds): prev's where a provider's settings are unchanged, given the new
// session keys, and new ones otherwise. started are the new ones: the caller
// closes them if they do not go in force. setKeys gives the kept ones the
// new session keys: the caller runs it once the set is in force (a refused
// reload must not change the keys in use).
func (g *Gateway) startLogins(cfg *config.Gateway, prev map[string]runningLogin) (byName map[string]runningLogin, list, started []*oidc.Login, setKeys func(), err error) {
	lcs, err := loginConfigs(cfg)
	if err != nil {
		return nil, nil, nil, nil, err
	}
	var keep []func()
	setKeys = func() {
		for _, f := range keep {
			f()
		}
	}
	byName = map[string]runningLogin{}
	for i, lc := range lcs {
		name := lc.Provider.Name
		key := lc
		key.Keys = nil
		if p, ok := prev[name]; ok && reflect.DeepEqual(p.cfg, key) {
			keep = append(keep, func() { p.login.SetKeys(lc.Keys) })
			byName[name] = p
			list = append(list, p.login)
			continue
		}
		lc.Logger = g.log
		lc.OnEvent = func(event, result string) { g.metrics.LoginEvent(name, event, result) }
		l, err := oidc.NewLogin(lc)
		if err != nil {
			closeAll(started, g.log)
			return nil, nil, nil, nil, config.Errors{cfg.ErrorAt(fmt.Sprintf("oidc.providers[%d]", i), err.Error())}
		}
		started = append(started, l)
		byName[name] = runningLogin{login: l, cfg: key}
		list = append(list, l)
	}
	return byName, list, started, setKeys, nil
}

// Logins returns the gateway's browser logins in force, one per provider
// (for tests and readiness probes).
func (g *Gateway) Logins() []*oidc.Login { return g.live.Load().loginList }

// reloadSessionKeys rereads the session key files, so a new key can be put in
// front (it seals from now on) and an old one dropped without a restart. On
// error the keys in use stay.
func (g *Gateway) reloadSessionKeys() error {
	// Under the reload lock: a reload of the gateway file that changes the
	// key files must not be undone by keys read from the files before it.
	g.policies.mu.Lock()
	defer g.policies.mu.Unlock()
	l := g.live.Load()
	o := l.cfg.OIDC
	if o == nil || len(l.loginList) == 0 {
		return nil
	}
	keys, err := oidc.LoadSessionKeys(o.SessionKeyFiles...)
	if err != nil {
		g.log.Error("session keys could not be reloaded; keeping the previous keys", "err", err)
		return fmt.Errorf("session keys: %w", err)
	}
	for _, l := range l.loginList {
		l.SetKeys(keys)
	}
	return nil
}

// retireLogins closes the logins of prev that next does not keep, once
// requests in flight on them had retireGrace to finish (at the latest when
// the gateway closes).
func (g *Gateway) retireLogins(prev, next *liveSet) {
	var gone []*oidc.Login
	for name, rl := range prev.loginsByName {
		if next.loginsByName[name].login != rl.login {
			gone = append(gone, rl.login)
		}
	}
	if len(gone) == 0 {
		return
	}
	g.retiredMu.Lock()
	g.retiredLogins = append(g.retiredLogins, gone...)
	g.retiredMu.Unlock()
	time.AfterFunc(retireGrace, func() {
		closeAll(gone, g.log)
		g.retiredMu.Lock()
		g.retiredLogins = slices.DeleteFunc(g.retiredLogins, func(l *oidc.Login) bool { return slices.Contains(gone, l) })
		g.retiredMu.Unlock()
	})
}

func (g *Gateway) closeLogins() {
	var all []*oidc.Login
	if l := g.live.Load(); l != nil {
		all = append(all, l.loginList...)
	}
	g.retiredMu.Lock()
	all = append(all, g.retiredLogins...)
	g.retiredMu.Unlock()
	closeAll(all, g.log)
}

// closeAll closes logins (Close is idempotent).
func closeAll(logins []*oidc.Login, log *slog.Logger) {
	var errs []error
	for _, l := range logins {
		errs = append(errs, l.Close())
	}
	if err := errors.Join(errs...); err != nil {
		log.Warn("closing logins", "err", err)
	}
}

// checkLogins is what Check runs for the oidc section: key files parse and
// providers are valid. Nothing is fetched.
func checkLogins(cfg *config.Gateway) error {
	_, err := loginConfigs(cfg)
	return err
}
