package oidc

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// KeyCacheOptions tune a KeyCache. Zero values take the defaults.
type KeyCacheOptions struct {
	// Client fetches JWKS and discovery documents. The default has its own
	// dial, TLS and response timeouts and follows at most three redirects,
	// never from https to http.
	Client *http.Client
	// RefreshInterval is how often keys are refreshed in the background
	// (default 5m, Envoy's remote JWKS cache duration), with ±10% jitter.
	RefreshInterval time.Duration
	// RetryInterval is the first wait after a failed background fetch; it
	// doubles up to RefreshInterval (default 10s).
	RetryInterval time.Duration
	// RefetchInterval is the least time between two fetches started by
	// requests (a token naming an unknown kid, or no keys yet), so that
	// attackers cannot drive fetch storms against the issuer (default 30s).
	RefetchInterval time.Duration
	// MaxStale is how long the last good keys keep verifying tokens while the
	// issuer is unreachable (default 24h). Past it every token of the issuer
	// is refused (fail closed).
	MaxStale time.Duration
	// IdleTimeout stops background refreshing for a JWKS that no
	// configuration or request has used for this long (default 24h); the next
	// use starts it again.
	IdleTimeout time.Duration
	Logger      *slog.Logger
}

// KeyCache holds every remote JWKS the gateway verifies with, keyed by URI (or
// by issuer, for discovery). It outlives configuration reloads: a recompiled
// RequestAuthentication finds the keys it had, and only a new URI starts a
// fetch, in the background. Close stops every refresher.
type KeyCache struct {
	opts   KeyCacheOptions
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu     sync.Mutex
	closed bool
	sets   map[string]*remoteKeys
}

// NewKeyCache returns an empty cache. Call Close when done.
func NewKeyCache(opts KeyCacheOptions) *KeyCache {
	if opts.Client == nil {
		opts.Client = defaultJWKSClient()
	}
	opts.RefreshInterval = orDefault(opts.RefreshInterval, 5*time.Minute)
	opts.RetryInterval = orDefault(opts.RetryInterval, 10*time.Second)
	opts.RefetchInterval = orDefault(opts.RefetchInterval, 30*time.Second)
	opts.MaxStale = orDefault(opts.MaxStale, 24*time.Hour)
	opts.IdleTimeout = orDefault(opts.IdleTimeout, 24*time.Hour)
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &KeyCache{opts: opts, ctx: ctx, cancel: cancel, sets: make(map[string]*remoteKeys)}
}

// Close stops every background refresher and waits for running fetches to
// end. It is idempotent. Keys already cached keep verifying tokens. A closed
// cache still compiles rules (for checking a configuration) but never fetches.
func (c *KeyCache) Close() error {
	c.mu.Lock()
	c.closed = true
	c.mu.Unlock()
	c.cancel()
	c.wg.Wait()
	return nil
}

func defaultJWKSClient() *http.Client {
	return &http.Client{
		Transport: &http.Transport{
			Proxy:                 http.ProxyFromEnvironment,
			DialContext:           (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
			TLSClientConfig:       &tls.Config{MinVersion: tls.VersionTLS12},
			TLSHandshakeTimeout:   5 * time.Second,
			ResponseHeaderTimeout: 10 * time.Second,
			IdleConnTimeout:       90 * time.Second,
			MaxIdleConnsPerHost:   2,
			ForceAttemptHTTP2:     true,
		},
		Timeout:       30 * time.Second,
		CheckRedirect: checkJWKSRedirect,
	}
}

// checkJWKSRedirect refuses long redirect chains and https-to-http downgrades,
// which would let a network attacker substitute the keys.
func checkJWKSRedirect(req *http.Request, via []*http.Request) error {
	if len(via) >= 3 {
		return errors.New("too many redirects")
	}
	if via[0].URL.Scheme == "https" && req.URL.Scheme != "https" {
		return errors.New("redirect from https to http refused")
	}
	return nil
}

// source returns the shared key source for a JWKS URI, or for an issuer's
// discovery document when jwksURI is empty, starting its background refresher
// if needed. It never fetches synchronously.
func (c *KeyCache) source(jwksURI, issuer string, timeout time.Duration) *remoteKeys {
	key := "jwks " + jwksURI
	if jwksURI == "" {
		key = "discovery " + issuer
	}
	c.mu.Lock()
	rk, ok := c.sets[key]
	if !ok {
		rk = &remoteKeys{c: c, jwksURI: jwksURI, issuer: issuer}
		c.sets[key] = rk
	}
	c.mu.Unlock()
	rk.timeout.Store(int64(timeout))
	rk.touch()
	return rk
}

// remoteKeys is one remote JWKS: the last good keys and the machinery that
// refreshes them.
type remoteKeys struct {
	c       *KeyCache
	jwksURI string
	issuer  string // for discovery when jwksURI is empty
	timeout atomic.Int64

	snap     atomic.Pointer[keySnapshot]
	lastUsed atomic.Int64 // unix nanoseconds
	running  atomic.Bool  // a refresher goroutine is running

	mu   sync.Mutex
	call *fetchCall
	// lastDemand is when a request last started a fetch; background fetches
	// do not count, so a rotation right after a refresh is still picked up.
	lastDemand time.Time
	lastErr    error
}

type keySnapshot struct {
	set     *keySet
	fetched time.Time
}

type fetchCall struct {
	done chan struct{}
	err  error
}

func (rk *remoteKeys) name() string {
	if rk.jwksURI != "" {
		return rk.jwksURI
	}
	return "discovery for " + rk.issuer
}

// touch records use and restarts the refresher if it stopped for idleness.
func (rk *remoteKeys) touch() {
	rk.lastUsed.Store(time.Now().UnixNano())
	if rk.running.Load() {
		return
	}
	c := rk.c
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed || rk.running.Load() {
		return
	}
	rk.running.Store(true)
	c.wg.Add(1)
	go rk.loop()
}

// usable returns the cached keys unless they are missing or older than MaxStale.
func (rk *remoteKeys) usable() *keySet {
	s := rk.snap.Load()
	if s == nil || time.Since(s.fetched) > rk.c.opts.MaxStale {
		return nil
	}
	return s.set
}

// keys returns the keys to verify a token with kid. When the cached set lacks
// kid (the issuer may have rotated) or there are no usable keys, it asks for a
// refetch, which is rate-limited and shared by concurrent callers, and waits
// for it at most until ctx ends.
func (rk *remoteKeys) keys(ctx context.Context, kid string) (*keySet, error) {
	rk.touch()
	if set := rk.usable(); set != nil && (kid == "" || set.hasKid(kid)) {
		return set, nil
	}
	rk.refresh(ctx, false)
	if set := rk.usable(); set != nil {
		return set, nil // the caller reports an unknown kid if it is still missing
	}
	rk.mu.Lock()
	last := rk.lastErr
	rk.mu.Unlock()
	if last != nil {
		return nil, fmt.Errorf("%w: %s: %v", errNoKeys, rk.name(), last)
	}
	return nil, fmt.Errorf("%w: %s", errNoKeys, rk.name())
}

// refresh starts a fetch unless one is running (then it joins it) or, when not
// forced (a request asks), a request started one less than RefetchInterval ago. It waits for the fetch or
// for ctx and reports whether a fetch it waited for succeeded.
func (rk *remoteKeys) refresh(ctx context.Context, force bool) bool {
	rk.mu.Lock()
	call := rk.call
	if call == nil {
		if !force && !rk.lastDemand.IsZero() && time.Since(rk.lastDemand) < rk.c.opts.RefetchInterval {
			rk.mu.Unlock()
			return false
		}
		c := rk.c
		c.mu.Lock()
		if c.closed {
			c.mu.Unlock()
			rk.mu.Unlock()
			return false
		}
		c.wg.Add(1)
		c.mu.Unlock()
		call = &fetchCall{done: make(chan struct{})}
		rk.call = call
		if !force {
			rk.lastDemand = time.Now()
		}
		// The fetch runs detached from the request that started it: a client
		// that hangs up must not abort a fetch other requests are waiting for.
		go rk.run(call)
	}
	rk.mu.Unlock()
	select {
	case <-call.done:
		return call.err == nil
	case <-ctx.Done():
		return false
	}
}

func (rk *remoteKeys) run(call *fetchCall) {
	defer rk.c.wg.Done()
	ctx, cancel := context.WithTimeout(rk.c.ctx, time.Duration(rk.timeout.Load()))
	set, err := rk.fetch(ctx)
	cancel()
	if err == nil {
		rk.snap.Store(&keySnapshot{set: set, fetched: time.Now()})
	} else {
		// The last good keys stay in place (until MaxStale); a broken or
		// hostile endpoint cannot replace them with nothing.
		rk.c.opts.Logger.Warn("jwks fetch failed", "jwks", rk.name(), "err", err)
	}
	rk.mu.Lock()
	rk.call, rk.lastErr = nil, err
	call.err = err
	rk.mu.Unlock()
	close(call.done)
}

// loop refreshes the keys in the background: at once, then every
// RefreshInterval (jittered) after a success, with doubling retries after a
// failure. It stops when the cache closes or nobody used the keys for
// IdleTimeout.
func (rk *remoteKeys) loop() {
	c := rk.c
	defer c.wg.Done()
	var delay time.Duration
	retry := c.opts.RetryInterval
	for {
		t := time.NewTimer(delay)
		select {
		case <-c.ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		if time.Since(time.Unix(0, rk.lastUsed.Load())) > c.opts.IdleTimeout {
			c.mu.Lock()
			rk.running.Store(false)
			rk.snap.Store(nil)
			c.mu.Unlock()
			return
		}
		if rk.refresh(c.ctx, true) {
			delay = jitter(c.opts.RefreshInterval)
			retry = c.opts.RetryInterval
		} else {
			delay = retry
			retry = min(retry*2, c.opts.RefreshInterval)
		}
	}
}

func jitter(d time.Duration) time.Duration {
	return d - d/10 + rand.N(d/5+1)
}

func (rk *remoteKeys) fetch(ctx context.Context) (*keySet, error) {
	uri := rk.jwksURI
	if uri == "" {
		var err error
		if uri, err = rk.discover(ctx); err != nil {
			return nil, err
		}
	}
	body, err := rk.get(ctx, uri)
	if err != nil {
		return nil, err
	}
	set, err := parseJWKS(body)
	if err != nil {
		return nil, fmt.Errorf("jwks from %s: %w", uri, err)
	}
	return set, nil
}

// discover reads the issuer's OpenID Provider metadata (OIDC Discovery §4) for
// its jwks_uri. The metadata must name the same issuer, so that a document
// served for another issuer cannot hand us its keys.
func (rk *remoteKeys) discover(ctx context.Context) (string, error) {
	u := strings.TrimSuffix(rk.issuer, "/") + "/.well-known/openid-configuration"
	body, err := rk.get(ctx, u)
	if err != nil {
		return "", err
	}
	var meta struct {
		Issuer  string `json:"issuer"`
		JWKSURI string `json:"jwks_uri"`
	}
	if err := json.Unmarshal(body, &meta); err != nil {
		return "", fmt.Errorf("discovery document %s: %w", u, err)
	}
	if meta.Issuer != rk.issuer {
		return "", fmt.Errorf("discovery document %s names issuer %s, want %s", u, clip(meta.Issuer), clip(rk.issuer))
	}
	if err := checkHTTPURL(meta.JWKSURI); err != nil {
		return "", fmt.Errorf("discovery document %s: jwks_uri: %w", u, err)
	}
	return meta.JWKSURI, nil
}

func (rk *remoteKeys) get(ctx context.Context, u string) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "application/json")
	resp, err := rk.c.opts.Client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: status %d", u, resp.StatusCode)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxJWKSBytes+1))
	if err != nil {
		return nil, fmt.Errorf("GET %s: %w", u, err)
	}
	if len(body) > maxJWKSBytes {
		return nil, fmt.Errorf("GET %s: body larger than %d bytes", u, maxJWKSBytes)
	}
	return body, nil
}

// checkHTTPURL accepts absolute http and https URLs with a host, as Istio's
// validation of jwksUri does.
func checkHTTPURL(s string) error {
	u, err := url.Parse(s)
	if err != nil {
		return errors.New("not a URL")
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return fmt.Errorf("scheme must be http or https (got %s)", clip(u.Scheme))
	}
	if u.Host == "" {
		return errors.New("URL has no host")
	}
	return nil
}
