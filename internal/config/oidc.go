package config

import (
	"fmt"
	"net"
	"net/url"
	"slices"
	"strings"
	"time"
)

// DefaultSessionTTL is the absolute lifetime of a browser session.
const DefaultSessionTTL = 8 * time.Hour

// OIDC configures browser login: the OpenID providers routes may name in their
// login field, and the keys that seal the session cookies.
type OIDC struct {
	Providers []OIDCProvider `yaml:"providers"`
	// SessionKeyFiles hold one AES-256 key each (32 raw bytes or their base64).
	// The first seals; every one opens, so a new key is put first and the old one
	// kept until its sessions have expired. Reread on reload (SIGHUP).
	SessionKeyFiles []string `yaml:"sessionKeyFiles"`
	// SessionTTL is the absolute session lifetime; default 8h.
	SessionTTL time.Duration `yaml:"sessionTTL"`
}

// OIDCProvider is one OpenID provider browsers log in with.
type OIDCProvider struct {
	// Name is what routes' login field names; it also names the session cookie
	// (__Host-tollgate-<name>) and the reserved endpoints (/.tollgate/<name>/oidc/...).
	Name string `yaml:"name"`
	// Issuer is the provider's issuer URL (https; http only on loopback, for tests).
	Issuer   string `yaml:"issuer"`
	ClientID string `yaml:"clientID"`
	// ClientSecretFile holds the client secret; empty for a public client (PKCE only).
	ClientSecretFile string `yaml:"clientSecretFile"`
	// Scopes requested; "openid" is always added. Default: openid, email, profile.
	Scopes []string `yaml:"scopes"`
	// ExtraAuthParams are added to the authorization request (prompt, acr_values, …).
	ExtraAuthParams map[string]string `yaml:"extraAuthParams"`
	// PostLogoutRedirectPath is a same-origin path the provider sends the browser to
	// after logout; it must be registered at the provider.
	PostLogoutRedirectPath string `yaml:"postLogoutRedirectPath"`
}

// ReservedPrefix is where the gateway's own endpoints live: requests under it are
// answered by the gateway and never reach an upstream.
const ReservedPrefix = "/.tollgate/"

// LoginPathPrefix is the reserved path prefix of one provider's endpoints.
func LoginPathPrefix(provider string) string { return ReservedPrefix + provider + "/" }

// Provider returns the provider named name, or nil.
func (o *OIDC) Provider(name string) *OIDCProvider {
	if o == nil {
		return nil
	}
	for i := range o.Providers {
		if o.Providers[i].Name == name {
			return &o.Providers[i]
		}
	}
	return nil
}

// reservedAuthParams are set by the login flow; overriding them would switch off
// PKCE, the nonce or the state check (the oidc package refuses them too).
var reservedAuthParams = []string{
	"state", "nonce", "code_challenge", "code_challenge_method", "redirect_uri",
	"client_id", "response_type", "scope", "response_mode", "request", "request_uri",
}

func (g *Gateway) oidcDefaults() {
	if g.OIDC != nil && g.OIDC.SessionTTL == 0 {
		g.OIDC.SessionTTL = DefaultSessionTTL
	}
}

func (g *Gateway) resolveOIDCPaths(abs func(*string)) {
	o := g.OIDC
	if o == nil {
		return
	}
	for i := range o.SessionKeyFiles {
		abs(&o.SessionKeyFiles[i])
	}
	for i := range o.Providers {
		abs(&o.Providers[i].ClientSecretFile)
	}
}

func (v *validator) oidc() {
	o := v.g.OIDC
	if o == nil {
		return
	}
	names := map[string]int{}
	for i, p := range o.Providers {
		v.provider(fmt.Sprintf("oidc.providers[%d]", i), p, names, i)
	}
	if len(o.Providers) > 0 && len(o.SessionKeyFiles) == 0 {
		v.errorf("oidc.sessionKeyFiles", "at least one key file is required to seal sessions (32 random bytes, e.g. `head -c32 /dev/urandom | base64 > session.key`)")
	}
	for i, f := range o.SessionKeyFiles {
		v.readable(fmt.Sprintf("oidc.sessionKeyFiles[%d]", i), f)
	}
	if o.SessionTTL < time.Minute {
		v.errorf("oidc.sessionTTL", "want at least 1m (got %s)", o.SessionTTL)
	}
}

func (v *validator) provider(p string, c OIDCProvider, names map[string]int, i int) {
	if c.Name == "" || strings.IndexFunc(c.Name, func(r rune) bool {
		return !(r == '-' || r == '_' || r >= '0' && r <= '9' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z')
	}) >= 0 {
		v.errorf(p+".name", "want letters, digits, '-' or '_' (got %q)", c.Name)
	} else if j, dup := names[c.Name]; dup {
		v.errorf(p+".name", "duplicate provider name %q (also oidc.providers[%d])", c.Name, j)
	} else {
		names[c.Name] = i
	}
	if err := checkIssuer(c.Issuer); err != nil {
		v.errorf(p+".issuer", "%v", err)
	}
	if c.ClientID == "" {
		v.errorf(p+".clientID", "required")
	}
	if c.ClientSecretFile != "" {
		v.readable(p+".clientSecretFile", c.ClientSecretFile)
	}
	keys := make([]string, 0, len(c.ExtraAuthParams))
	for k := range c.ExtraAuthParams {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		if slices.Contains(reservedAuthParams, strings.ToLower(k)) {
			v.errorf(p+".extraAuthParams."+k, "set by the login flow, cannot be overridden")
		}
	}
	if lp := c.PostLogoutRedirectPath; lp != "" {
		if !strings.HasPrefix(lp, "/") || strings.HasPrefix(lp, "//") || strings.ContainsAny(lp, "\\# \t\r\n") {
			v.errorf(p+".postLogoutRedirectPath", "want a same-origin path such as %q (got %q)", LoginPathPrefix(c.Name)+"oidc/signed-out", lp)
		}
	}
}

// checkIssuer accepts https URLs, and http only for a loopback host: the
// discovery document names the keys every ID token is checked with, so fetching
// it in clear text would let anyone on the path log in as anyone.
func checkIssuer(s string) error {
	u, err := url.Parse(s)
	if err != nil || u.Host == "" || u.RawQuery != "" || u.Fragment != "" || u.User != nil {
		return fmt.Errorf("want an https URL without query or fragment (got %q)", s)
	}
	switch u.Scheme {
	case "https":
		return nil
	case "http":
		h := u.Hostname()
		if ip := net.ParseIP(h); h == "localhost" || ip != nil && ip.IsLoopback() {
			return nil
		}
		return fmt.Errorf("http:// is allowed only for a loopback issuer (got %q; use https)", s)
	}
	return fmt.Errorf("want an https URL (got %q)", s)
}

// routeLogin checks a route's login binding, and that no route claims the
// reserved prefix (it would never be reached).
func (v *validator) routeLogin(p string, r Route) {
	if strings.HasPrefix(r.PathPrefix+"/", ReservedPrefix) {
		v.errorf(p+".pathPrefix", "%s is reserved for the gateway's own endpoints", ReservedPrefix)
	}
	if r.Login == "" {
		return
	}
	if v.g.OIDC.Provider(r.Login) == nil {
		var names []string
		if v.g.OIDC != nil {
			for _, pr := range v.g.OIDC.Providers {
				names = append(names, pr.Name)
			}
		}
		v.errorf(p+".login", "no provider %q in oidc.providers (have: %s)", r.Login, strings.Join(names, ", "))
	}
}
