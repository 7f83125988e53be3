package oidc

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"
)

// ProviderConfig describes one OpenID provider the gateway logs browsers in with.
// A gateway may have several; each route names the one it uses.
type ProviderConfig struct {
	// Name identifies the provider in config, logs and the default cookie name
	// ([A-Za-z0-9_-]).
	Name string
	// Issuer is the provider's issuer URL; discovery is fetched from
	// <Issuer>/.well-known/openid-configuration and must report this issuer.
	Issuer string
	// ClientID is the gateway's client at the provider.
	ClientID string
	// ClientSecretFile holds the client secret (surrounding whitespace ignored).
	// Empty: a public client, authenticated by PKCE alone.
	ClientSecretFile string
	// Scopes requested; "openid" is always included. Default: openid, email, profile.
	Scopes []string
	// ExtraAuthParams are added to the authorization request (e.g. prompt,
	// acr_values, audience). They cannot override the parameters the flow's
	// security rests on (state, nonce, PKCE, redirect_uri, client_id, response_type, scope).
	ExtraAuthParams map[string]string
	// PostLogoutRedirectPath, if set, is a same-origin path (e.g. "/.tollgate/oidc/signed-out")
	// sent as post_logout_redirect_uri on https://<host><path>; it must be registered
	// at the provider.
	PostLogoutRedirectPath string
}

// reservedAuthParams are set by the flow itself; letting config override them
// would switch off PKCE, the nonce or the state check.
var reservedAuthParams = []string{
	"state", "nonce", "code_challenge", "code_challenge_method", "redirect_uri",
	"client_id", "response_type", "scope", "response_mode", "request", "request_uri",
}

// Validate reports every problem of the provider config at once.
func (p *ProviderConfig) Validate() error {
	var errs []error
	if p.Name == "" || strings.IndexFunc(p.Name, func(r rune) bool {
		return !(r == '-' || r == '_' || r >= '0' && r <= '9' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z')
	}) >= 0 {
		errs = append(errs, fmt.Errorf("name: want letters, digits, '-' or '_' (got %q)", p.Name))
	}
	if u, err := url.Parse(p.Issuer); err != nil || u.Host == "" || (u.Scheme != "https" && u.Scheme != "http") ||
		u.RawQuery != "" || u.Fragment != "" {
		errs = append(errs, fmt.Errorf("issuer: want an http(s) URL without query or fragment (got %q)", p.Issuer))
	}
	if p.ClientID == "" {
		errs = append(errs, errors.New("clientID: required"))
	}
	for k := range p.ExtraAuthParams {
		if slices.Contains(reservedAuthParams, strings.ToLower(k)) {
			errs = append(errs, fmt.Errorf("extraAuthParams.%s: set by the login flow, cannot be overridden", k))
		}
	}
	if p.PostLogoutRedirectPath != "" {
		if _, ok := SafeRedirect(p.PostLogoutRedirectPath); !ok {
			errs = append(errs, fmt.Errorf("postLogoutRedirectPath: want a same-origin path (got %q)", p.PostLogoutRedirectPath))
		}
	}
	return errors.Join(errs...)
}

func (p *ProviderConfig) scopes() []string {
	s := p.Scopes
	if len(s) == 0 {
		s = []string{oidc.ScopeOpenID, "email", "profile"}
	}
	if !slices.Contains(s, oidc.ScopeOpenID) {
		s = append([]string{oidc.ScopeOpenID}, s...)
	}
	return s
}

func readClientSecret(path string) (string, error) {
	if path == "" {
		return "", nil
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("client secret: %w", err)
	}
	s := strings.TrimSpace(string(b))
	if s == "" {
		return "", fmt.Errorf("client secret: %s is empty", path)
	}
	return s, nil
}

// discovered is what discovery yields; swapped in once through atomic.Pointer.
type discovered struct {
	provider   *oidc.Provider
	verifier   *oidc.IDTokenVerifier
	oauth      oauth2.Config // RedirectURL is set per request host
	endSession string
}

// discover fetches the discovery document once, bounded by timeout.
func (l *Login) discover(ctx context.Context) (*discovered, error) {
	ctx, cancel := context.WithTimeout(ctx, l.cfg.DiscoveryTimeout)
	defer cancel()
	p, err := oidc.NewProvider(oidc.ClientContext(ctx, l.client), l.cfg.Provider.Issuer)
	if err != nil {
		return nil, fmt.Errorf("oidc discovery for %s: %w", l.cfg.Provider.Name, err)
	}
	var meta struct {
		EndSession  string   `json:"end_session_endpoint"`
		AuthMethods []string `json:"token_endpoint_auth_methods_supported"`
		PKCE        []string `json:"code_challenge_methods_supported"`
	}
	if err := p.Claims(&meta); err != nil {
		return nil, fmt.Errorf("oidc discovery for %s: %w", l.cfg.Provider.Name, err)
	}
	if len(meta.PKCE) > 0 && !slices.Contains(meta.PKCE, "S256") {
		return nil, fmt.Errorf("oidc discovery for %s: provider does not support PKCE S256 (has %v)", l.cfg.Provider.Name, meta.PKCE)
	}
	ep := p.Endpoint()
	switch {
	case l.secret == "":
		ep.AuthStyle = oauth2.AuthStyleInParams // public client: client_id in the body
	case slices.Contains(meta.AuthMethods, "client_secret_basic"):
		ep.AuthStyle = oauth2.AuthStyleInHeader
	case slices.Contains(meta.AuthMethods, "client_secret_post"):
		ep.AuthStyle = oauth2.AuthStyleInParams
	}
	d := &discovered{
		provider: p,
		verifier: p.Verifier(&oidc.Config{ClientID: l.cfg.Provider.ClientID, Now: l.now}),
		oauth: oauth2.Config{
			ClientID:     l.cfg.Provider.ClientID,
			ClientSecret: l.secret,
			Endpoint:     ep,
			Scopes:       l.cfg.Provider.scopes(),
		},
		endSession: meta.EndSession,
	}
	return d, nil
}

// discoverLoop retries discovery until it succeeds or the Login is closed, so a
// provider that is briefly down does not make the gateway unstartable. Until it
// succeeds, logins fail closed with 503.
func (l *Login) discoverLoop(ctx context.Context) {
	defer close(l.done)
	backoff := 500 * time.Millisecond
	for {
		d, err := l.discover(ctx)
		if err == nil {
			l.disc.Store(d)
			l.log.Info("oidc provider discovered", "provider", l.cfg.Provider.Name, "issuer", l.cfg.Provider.Issuer)
			return
		}
		l.log.Warn("oidc discovery failed; logins answer 503 until it succeeds", "provider", l.cfg.Provider.Name, "error", err, "retry_in", backoff)
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, 30*time.Second)
	}
}
