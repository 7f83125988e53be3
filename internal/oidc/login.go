package oidc

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"tollgate.dev/tollgate/internal/request"
)

// DefaultPathPrefix is where the gateway's own endpoints live. Requests under it are
// answered by the gateway and never reach an upstream.
const DefaultPathPrefix = "/.tollgate/"

// LoginConfig configures the browser login of one provider.
type LoginConfig struct {
	Provider ProviderConfig
	// Keys seal the session and login-state cookies. Required. Replace with SetKeys.
	Keys *SessionKeys
	// PathPrefix of the reserved endpoints; default DefaultPathPrefix. Must start and end with '/'.
	PathPrefix string
	// CookieName is the session cookie's base name (chunks are <name>_0, <name>_1, …;
	// the session's tokens are in <name>-tokens_0, …; each login under way has a
	// marker <name>-pending-<id> and a state cookie <name>-login-<id>, that one
	// with __Host- turned into __Secure-: see login_attempts.go). Default
	// "__Host-tollgate-<provider name>": the __Host- prefix makes browsers
	// refuse it unless Secure, Path=/ and host-only.
	CookieName string
	// SessionTTL is the absolute session lifetime; default 8h.
	SessionTTL time.Duration
	// StateTTL bounds how long a login may take at the provider (the life of
	// its state cookies); default 10m.
	StateTTL time.Duration
	// RefreshBefore: the access token is refreshed when it expires within this; default 1m.
	RefreshBefore time.Duration
	// AllowedHosts, if set, are the Host values (host or host:port, case-insensitive)
	// the login may build redirect URIs and set cookies for: the hosts of the routes
	// bound to this provider.
	AllowedHosts []string
	// HTTPClient talks to the provider (discovery, JWKS, token). Default: 10s timeout.
	HTTPClient *http.Client
	// DiscoveryTimeout bounds one discovery attempt; default 5s.
	DiscoveryTimeout time.Duration
	// Logger gets discovery and login failures (never token or cookie contents).
	Logger *slog.Logger
	// OnEvent, if set, is told each outcome of a callback, refresh and logout
	// (for a metric): event "login" with result "success", "refused" (wrong
	// method or host; state, code or ID token not accepted), "unavailable" (the
	// provider is not discovered yet) or "error" (the session could not be
	// written); "refresh" with the provider's answer: "success", "rejected"
	// (the refresh token was refused) or "error" (the provider could not be
	// asked); "logout" with "success" or "refused" (a cross-origin POST, or a
	// method other than POST that is no page load).
	OnEvent func(event, result string)
	// Now is the clock; default time.Now.
	Now func() time.Time
}

// Login runs the OpenID Connect authorization-code flow (PKCE S256, state, nonce)
// for browser routes and keeps the resulting session in an encrypted cookie.
// It is safe for concurrent use; Close stops its background discovery.
type Login struct {
	cfg        LoginConfig
	keys       atomic.Pointer[SessionKeys]
	disc       atomic.Pointer[discovered]
	client     *http.Client
	secret     string
	cookieName string
	tokensName string
	// statePrefix and pendingPrefix start the names of a login attempt's state
	// cookie and marker; legacyStateName is the one state cookie of earlier
	// versions, still stripped before forwarding.
	statePrefix     string
	pendingPrefix   string
	legacyStateName string
	log             *slog.Logger
	now             func() time.Time
	ledger          *stateLedger
	refresh         *refresher

	cancel    context.CancelFunc
	done      chan struct{}
	closeOnce sync.Once
}

// NewLogin validates cfg, reads the client secret and starts discovery in the
// background (see Ready). Only config problems are errors: an unreachable provider
// is retried, and logins answer 503 meanwhile.
func NewLogin(cfg LoginConfig) (*Login, error) {
	if err := cfg.Provider.Validate(); err != nil {
		return nil, fmt.Errorf("oidc provider %q: %w", cfg.Provider.Name, err)
	}
	if cfg.Keys == nil {
		return nil, errors.New("oidc login: session keys required")
	}
	if cfg.PathPrefix == "" {
		cfg.PathPrefix = DefaultPathPrefix
	}
	if !strings.HasPrefix(cfg.PathPrefix, "/") || !strings.HasSuffix(cfg.PathPrefix, "/") || len(cfg.PathPrefix) < 3 {
		return nil, fmt.Errorf("oidc login: pathPrefix: want /name/ (got %q)", cfg.PathPrefix)
	}
	if cfg.CookieName == "" {
		cfg.CookieName = "__Host-tollgate-" + cfg.Provider.Name
	}
	if !validCookieName(cfg.CookieName) {
		return nil, fmt.Errorf("oidc login: cookieName: invalid %q", cfg.CookieName)
	}
	cfg.SessionTTL = orDefault(cfg.SessionTTL, 8*time.Hour)
	cfg.StateTTL = orDefault(cfg.StateTTL, 10*time.Minute)
	cfg.RefreshBefore = orDefault(cfg.RefreshBefore, time.Minute)
	cfg.DiscoveryTimeout = orDefault(cfg.DiscoveryTimeout, 5*time.Second)
	if cfg.HTTPClient == nil {
		cfg.HTTPClient = &http.Client{Timeout: 10 * time.Second}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	secret, err := readClientSecret(cfg.Provider.ClientSecretFile)
	if err != nil {
		return nil, fmt.Errorf("oidc provider %q: %w", cfg.Provider.Name, err)
	}
	l := &Login{
		cfg:        cfg,
		client:     cfg.HTTPClient,
		secret:     secret,
		cookieName: cfg.CookieName,
		tokensName: cfg.CookieName + "-tokens",
		log:        cfg.Logger.With("component", "oidc-login"),
		now:        cfg.Now,
		ledger:     newStateLedger(100_000),
		refresh:    newRefresher(),
		done:       make(chan struct{}),

		statePrefix:     securePrefixed(cfg.CookieName) + "-login-",
		pendingPrefix:   cfg.CookieName + "-pending-",
		legacyStateName: cfg.CookieName + "-login",
	}
	l.keys.Store(cfg.Keys)
	ctx, cancel := context.WithCancel(context.Background())
	l.cancel = cancel
	go l.discoverLoop(ctx)
	return l, nil
}

// orDefault is d, or def when d is not positive.
func orDefault(d, def time.Duration) time.Duration {
	if d <= 0 {
		return def
	}
	return d
}

func validCookieName(s string) bool {
	return s != "" && strings.IndexFunc(s, func(r rune) bool {
		return !(r == '-' || r == '_' || r == '.' || r >= '0' && r <= '9' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z')
	}) < 0
}

// Close stops background discovery. Idempotent.
func (l *Login) Close() error {
	l.closeOnce.Do(func() {
		l.cancel()
		<-l.done
	})
	return nil
}

// Ready reports whether discovery has succeeded (logins can start).
func (l *Login) Ready() bool { return l.disc.Load() != nil }

// WaitReady blocks until discovery succeeded or ctx ends.
func (l *Login) WaitReady(ctx context.Context) error {
	for !l.Ready() {
		select {
		case <-ctx.Done():
			return fmt.Errorf("oidc provider %q not ready: %w", l.cfg.Provider.Name, ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
	return nil
}

// SetKeys swaps the session keys (key rotation without restart).
func (l *Login) SetKeys(k *SessionKeys) {
	if k != nil {
		l.keys.Store(k)
	}
}

// Name is the provider's name.
func (l *Login) Name() string { return l.cfg.Provider.Name }

func (l *Login) event(event, result string) {
	if l.cfg.OnEvent != nil {
		l.cfg.OnEvent(event, result)
	}
}

// Outcome tells the ingress what Authenticate found.
type Outcome int

const (
	// Authenticated: a valid session; the returned Auth is the user.
	Authenticated Outcome = iota + 1
	// LoginRequired: no valid session on a browser navigation. Challenge answers
	// with a redirect to the provider (or 503 while it is unavailable).
	LoginRequired
	// Unauthenticated: no valid session on a non-navigation request (XHR, API,
	// POST). Challenge answers 401: redirecting those to a login page helps no one.
	Unauthenticated
)

func (o Outcome) String() string {
	switch o {
	case Authenticated:
		return "authenticated"
	case LoginRequired:
		return "login-required"
	case Unauthenticated:
		return "unauthenticated"
	}
	return fmt.Sprintf("outcome(%d)", int(o))
}

// Authenticate reads the session cookie. With a valid session it returns the
// ID-token identity (the same request.auth.* attributes a bearer JWT gives), after
// refreshing the access token when it is about to expire (rewriting the cookie on
// w). An invalid or expired cookie is cleared on w and treated as no session.
// A route that also allows anonymous access may treat LoginRequired and
// Unauthenticated as anonymous; otherwise pass the outcome to Challenge.
func (l *Login) Authenticate(w http.ResponseWriter, r *http.Request) (*request.Auth, Outcome) {
	var c sessionCookies
	s, err := l.readSession(r, &c)
	if err == nil && s != nil {
		s, err = l.maybeRefresh(w, r, s, &c)
	}
	if err == nil && s != nil {
		var a *request.Auth
		if a, err = s.auth(); err == nil {
			return a, Authenticated
		}
	}
	if err != nil {
		// Do not log the cookie: only why it was refused.
		l.log.Debug("session refused", "provider", l.cfg.Provider.Name, "error", err)
		c.clear(w, false)
	}
	if isNavigation(r) {
		return nil, LoginRequired
	}
	return nil, Unauthenticated
}

// isNavigation: a top-level browser page load, the only kind of request a
// redirect to a login page makes sense for.
func isNavigation(r *http.Request) bool {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		return false
	}
	if m := r.Header.Get("Sec-Fetch-Mode"); m != "" && m != "navigate" {
		return false // fetch()/XHR asking for HTML
	}
	for _, v := range r.Header.Values("Accept") {
		if strings.Contains(strings.ToLower(v), "text/html") {
			return true
		}
	}
	return false
}

// Challenge answers a request that Authenticate did not authenticate: 302 to the
// provider for LoginRequired (503 JSON while discovery has not succeeded), 401
// JSON otherwise.
func (l *Login) Challenge(w http.ResponseWriter, r *http.Request, o Outcome) {
	if o != LoginRequired {
		writeJSONError(w, http.StatusUnauthorized, "unauthenticated", "a session or bearer token is required")
		return
	}
	rd, ok := SafeRedirect(r.URL.RequestURI())
	if !ok || l.isReservedPath(rd) {
		rd = "/"
	}
	l.startLogin(w, r, rd)
}

func writeJSONError(w http.ResponseWriter, status int, code, msg string) {
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	fmt.Fprintf(w, "{\"error\":%q,\"message\":%q}\n", code, msg)
}

// hostOK checks the Host the redirect URI and cookies are built from: a syntactically
// plain authority, and one of AllowedHosts when set. Without this a forged Host
// would make the gateway send the provider's code to a redirect URI of the attacker's
// choosing (the provider's redirect_uri allow-list is the second line of defence).
func (l *Login) hostOK(host string) bool {
	if host == "" || len(host) > 255 || strings.IndexFunc(host, func(r rune) bool {
		return !(r == '-' || r == '.' || r == ':' || r == '[' || r == ']' || r >= '0' && r <= '9' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z')
	}) >= 0 {
		return false
	}
	if len(l.cfg.AllowedHosts) == 0 {
		return true
	}
	for _, h := range l.cfg.AllowedHosts {
		if strings.EqualFold(h, host) || strings.EqualFold(h, cookieHost(host)) {
			return true
		}
	}
	return false
}

func (l *Login) isReservedPath(p string) bool {
	return strings.HasPrefix(p, l.cfg.PathPrefix) || p+"/" == l.cfg.PathPrefix
}

func (l *Login) endpoint(name string) string { return l.cfg.PathPrefix + "oidc/" + name }

func (l *Login) redirectURI(host string) string {
	return "https://" + host + l.endpoint("callback")
}
