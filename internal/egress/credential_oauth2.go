package egress

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"

	"tollgate.dev/tollgate/internal/filewatch"
)

const (
	// DefaultRefreshBefore is how long before its expiry a token is
	// replaced when [OAuth2Options.RefreshBefore] is zero: a token handed
	// to a request must not expire on its way to the destination.
	DefaultRefreshBefore = 30 * time.Second
	// DefaultTokenTimeout bounds one token request when
	// [OAuth2Options.Timeout] is zero.
	DefaultTokenTimeout = 10 * time.Second
	// DefaultTokenLifetime is how long a token whose response carries no
	// expires_in is used: the grant says nothing, and a token cached
	// forever would outlive its revocation.
	DefaultTokenLifetime = 5 * time.Minute
)

// OAuth2Options configure an access token obtained with the OAuth2
// client-credentials grant (RFC 6749 §4.4).
type OAuth2Options struct {
	// TokenURL is the authorization server's token endpoint. It must be
	// https, or http to a loopback address (a sidecar token service): the
	// client secret travels in the request.
	TokenURL string
	// ClientID is the gateway's client at the authorization server.
	ClientID string
	// ClientSecretFile holds the client secret (surrounding whitespace
	// ignored). It is watched: a rotated secret is used from the next
	// token request on.
	ClientSecretFile string
	// Scopes are requested, space-separated in the scope parameter.
	Scopes []string
	// EndpointParams are added to the token request (audience, resource).
	// They may not set scope, client_id or client_secret.
	EndpointParams url.Values
	// AuthStyle is how the client authenticates; zero means auto-detect
	// (HTTP Basic first, then the request body).
	AuthStyle oauth2.AuthStyle
	// Header is the header that carries the token, as "<type> <token>"
	// (Bearer unless the server says otherwise); empty means
	// Authorization.
	Header string
	// RefreshBefore is how long before its expiry a token is replaced;
	// zero means DefaultRefreshBefore. A token that lives less than that
	// is replaced at half its lifetime.
	RefreshBefore time.Duration
	// Timeout bounds each token request; zero means DefaultTokenTimeout.
	Timeout time.Duration
	// HTTPClient, if set, makes the token requests (a private CA, a
	// proxy). Nil means a client of the gateway's own, without redirects.
	HTTPClient *http.Client
}

// tokenSource gets, caches and refreshes one access token. One fetch runs
// at a time; requests that need the token meanwhile wait for that fetch.
type tokenSource struct {
	header        string // canonical
	tokenURL      string
	refreshBefore time.Duration
	timeout       time.Duration
	client        *http.Client
	transport     *http.Transport // ours, closed on close; nil with HTTPClient
	base          clientcredentials.Config

	// conf is base with the current client secret; replaced whole when the
	// secret file changes.
	conf    atomic.Pointer[clientcredentials.Config]
	watcher *filewatch.Watcher

	mu     sync.Mutex
	cached *cachedToken // the last token fetched
	flight *tokenFlight // the fetch in progress, if any
	closed bool
}

// cachedToken is a token ready to inject, and when to stop using it.
type cachedToken struct {
	value     *secret   // "<type> <token>"
	refreshAt time.Time // from here on, fetch a new one first
}

// tokenFlight is one fetch; done is closed when tok or err is set.
type tokenFlight struct {
	done chan struct{}
	tok  *cachedToken
	err  error
	// abandoned: the fetch ended because the request that ran it went
	// away, which says nothing about the token endpoint.
	abandoned bool
}

func newTokenSource(header string, o OAuth2Options, opts CredentialOptions) (*tokenSource, error) {
	if err := checkTokenURL(o.TokenURL); err != nil {
		return nil, err
	}
	switch {
	case o.ClientID == "":
		return nil, errors.New("client ID is required")
	case o.ClientSecretFile == "":
		return nil, errors.New("client secret file is required")
	case o.RefreshBefore < 0:
		return nil, fmt.Errorf("negative refreshBefore %s", o.RefreshBefore)
	case o.Timeout < 0:
		return nil, fmt.Errorf("negative timeout %s", o.Timeout)
	}
	for k := range o.EndpointParams {
		switch k {
		case "scope", "client_id", "client_secret":
			return nil, fmt.Errorf("endpoint parameter %q is set by the grant itself (use scopes, clientID, clientSecretFile)", k)
		}
	}
	s := &tokenSource{
		header:        header,
		tokenURL:      o.TokenURL,
		refreshBefore: o.RefreshBefore,
		timeout:       o.Timeout,
		client:        o.HTTPClient,
		base: clientcredentials.Config{
			ClientID:       o.ClientID,
			TokenURL:       o.TokenURL,
			Scopes:         append([]string(nil), o.Scopes...),
			EndpointParams: cloneValues(o.EndpointParams),
			AuthStyle:      o.AuthStyle,
		},
	}
	if s.refreshBefore == 0 {
		s.refreshBefore = DefaultRefreshBefore
	}
	if s.timeout == 0 {
		s.timeout = DefaultTokenTimeout
	}
	if s.client == nil {
		s.transport = http.DefaultTransport.(*http.Transport).Clone()
		s.client = &http.Client{
			Transport: s.transport,
			Timeout:   s.timeout,
			// A redirect would carry the client secret (in the body, with
			// a 307) to wherever the token endpoint points: refuse it.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		}
	}
	snap, err := filewatch.Read([]string{o.ClientSecretFile}, secretRead)
	if err != nil {
		return nil, fmt.Errorf("client secret: %w", err)
	}
	if err := s.setSecret(o.ClientSecretFile, snap); err != nil {
		return nil, err
	}
	// On an error the last good secret stays in use. A new secret does not
	// discard the token in hand: it was issued to this client and stays
	// good until it expires.
	w, err := watchCredentialFile(o.ClientSecretFile, "oauth2: client secret", snap, opts, func(snap *filewatch.Snapshot) error {
		if err := s.setSecret(o.ClientSecretFile, snap); err != nil {
			return fmt.Errorf("oauth2: %w", err)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("client secret: %w", err)
	}
	s.watcher = w
	return s, nil
}

// setSecret puts the secret read in snap in force. Errors name the file,
// never the content.
func (s *tokenSource) setSecret(file string, snap *filewatch.Snapshot) error {
	data, _ := snap.Data(file)
	v := strings.TrimSpace(string(data))
	if v == "" {
		return fmt.Errorf("client secret file %s is empty", file)
	}
	if err := checkValue(v); err != nil {
		return fmt.Errorf("client secret file %s: %w", file, err)
	}
	conf := s.base // copied before any use: its auth-style cache is still empty
	conf.ClientSecret = v
	s.conf.Store(&conf)
	return nil
}

// checkTokenURL refuses token endpoints the client secret must not be sent
// to: anything but https, except http to a loopback address, and URLs with
// credentials of their own (they would end up in logs and errors).
func checkTokenURL(raw string) error {
	if raw == "" {
		return errors.New("token URL is required")
	}
	u, err := url.Parse(raw)
	if err != nil {
		return fmt.Errorf("token URL: %w", err)
	}
	switch {
	case u.Host == "":
		return fmt.Errorf("token URL %q: no host", raw)
	case u.User != nil:
		return errors.New("token URL: userinfo is not allowed (put the secret in clientSecretFile)")
	case u.Scheme == "https":
		return nil
	case u.Scheme == "http" && isLoopbackHost(u.Hostname()):
		return nil
	case u.Scheme == "http":
		return fmt.Errorf("token URL %s: http sends the client secret in clear; use https (http is allowed to loopback addresses only)", u.Redacted())
	}
	return fmt.Errorf("token URL %s: scheme %q (want https)", u.Redacted(), u.Scheme)
}

func isLoopbackHost(h string) bool {
	if strings.EqualFold(h, "localhost") {
		return true
	}
	ip := net.ParseIP(h)
	return ip != nil && ip.IsLoopback()
}

// value returns the header value: the cached token while it is fresh,
// otherwise a new one. Concurrent callers share one fetch; a caller whose
// ctx ends stops waiting.
func (s *tokenSource) value(ctx context.Context) (*secret, error) {
	// A fetch abandoned because its request went away is retried by a
	// waiter, a bounded number of times.
	const maxAbandoned = 3
	for abandoned := 0; ; abandoned++ {
		s.mu.Lock()
		if t := s.cached; t != nil && time.Now().Before(t.refreshAt) {
			s.mu.Unlock()
			return t.value, nil
		}
		if s.closed {
			s.mu.Unlock()
			return nil, s.fail(errors.New("credentials closed"))
		}
		f := s.flight
		if f == nil {
			f = &tokenFlight{done: make(chan struct{})}
			s.flight = f
			s.mu.Unlock()
			s.fetch(ctx, f)
		} else {
			s.mu.Unlock()
			select {
			case <-f.done:
			case <-ctx.Done():
				return nil, s.fail(context.Cause(ctx))
			}
		}
		if f.err == nil {
			return f.tok.value, nil
		}
		if !f.abandoned || abandoned >= maxAbandoned || ctx.Err() != nil {
			return nil, f.err
		}
	}
}

// fetch runs flight f with ctx, caches its token, and releases its waiters.
// The token endpoint is told nothing a later log could leak.
func (s *tokenSource) fetch(ctx context.Context, f *tokenFlight) {
	tok, err := s.request(ctx)
	s.mu.Lock()
	if err != nil {
		// The old token is not kept past its refresh time: a request that
		// can't get a fresh token fails closed.
		f.err = s.fail(err)
		f.abandoned = ctx.Err() != nil
	} else {
		f.tok = tok
		s.cached = tok
	}
	s.flight = nil
	s.mu.Unlock()
	close(f.done)
}

// request asks the token endpoint once, bounded by the timeout and ctx.
func (s *tokenSource) request(ctx context.Context) (*cachedToken, error) {
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	ctx = context.WithValue(ctx, oauth2.HTTPClient, s.client)
	t, err := s.conf.Load().Token(ctx)
	if err != nil {
		return nil, safeTokenError(err)
	}
	now := time.Now()
	if t.AccessToken == "" {
		return nil, errors.New("token endpoint returned no access token")
	}
	v := t.Type() + " " + t.AccessToken
	if err := checkValue(v); err != nil {
		// A token that would split the header must never be sent.
		return nil, fmt.Errorf("token endpoint returned an unusable token: %w", err)
	}
	expiry := t.Expiry
	if expiry.IsZero() {
		expiry = now.Add(DefaultTokenLifetime)
	}
	if !expiry.After(now) {
		return nil, errors.New("token endpoint returned an expired token")
	}
	refreshAt := expiry.Add(-s.refreshBefore)
	if !refreshAt.After(now) {
		// Shorter-lived than RefreshBefore: refreshing at once would fetch
		// on every request.
		refreshAt = now.Add(expiry.Sub(now) / 2)
	}
	return &cachedToken{value: &secret{v}, refreshAt: refreshAt}, nil
}

// String and GoString name the header and the token endpoint, never the
// client secret or the token.
func (s *tokenSource) String() string {
	return s.header + ": " + redacted + " (oauth2 " + s.tokenURL + ")"
}
func (s *tokenSource) GoString() string { return s.String() }

// String and GoString never show the token.
func (t *cachedToken) String() string   { return redacted }
func (t *cachedToken) GoString() string { return redacted }

// fail wraps err as the CredentialError of this header.
func (s *tokenSource) fail(err error) error {
	return &CredentialError{Header: s.header, Source: "token endpoint " + s.tokenURL, Err: err}
}

// safeTokenError drops what an error from the token endpoint may carry
// that must not be logged: the response body (a server may echo the
// request, client secret included) and the error description. The status
// and the RFC 6749 error code stay; so do transport errors (they name the
// token URL, which has no credentials), and context errors still match
// errors.Is.
func safeTokenError(err error) error {
	var re *oauth2.RetrieveError
	if !errors.As(err, &re) {
		return err
	}
	status := "no response"
	if re.Response != nil {
		status = re.Response.Status
	}
	if code := re.ErrorCode; code != "" && checkValue(code) == nil && len(code) <= 64 {
		return fmt.Errorf("token endpoint answered %s, error %q", status, code)
	}
	return fmt.Errorf("token endpoint answered %s", status)
}

// close stops the secret watcher, waits for a fetch in progress and closes
// the idle connections to the token endpoint. Later fetches fail.
func (s *tokenSource) close() {
	if s.watcher != nil {
		s.watcher.Close()
	}
	s.mu.Lock()
	s.closed = true
	f := s.flight
	s.mu.Unlock()
	if f != nil {
		<-f.done
	}
	if s.transport != nil {
		s.transport.CloseIdleConnections()
	}
}

func cloneValues(v url.Values) url.Values {
	if v == nil {
		return nil
	}
	c := make(url.Values, len(v))
	for k, vs := range v {
		c[k] = append([]string(nil), vs...)
	}
	return c
}
