package oidc

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"time"

	"golang.org/x/oauth2"
)

// ErrRefreshRejected: the provider refused the refresh token (revoked, user
// disabled): the session ends.
var ErrRefreshRejected = errors.New("provider rejected the refresh token")

// maybeRefresh renews the access token when it expires within RefreshBefore and
// rewrites both parts of the cookie. Only then is the tokens part opened; if it
// can't be (missing, tampered, another session's) the session ends, fail closed.
// If the provider is unreachable the session goes on until the access token
// actually expires; a refusal by the provider ends it at once.
func (l *Login) maybeRefresh(w http.ResponseWriter, r *http.Request, s *session, c *sessionCookies) (*session, error) {
	now := l.now()
	if s.AccessExpiry.IsZero() || now.Add(l.cfg.RefreshBefore).Before(s.AccessExpiry) {
		return s, nil
	}
	if !s.Refreshable {
		// Nothing to renew with: the session lives on (the gateway, not the access
		// token, bounds it), but an access token is not renewed.
		return s, nil
	}
	t, err := l.openTokens(r, s, c)
	if err != nil {
		return nil, err
	}
	d := l.disc.Load()
	var res *refreshed
	err = errors.New("provider not discovered")
	if d != nil {
		res, err = l.refresh.do(r.Context(), t.RefreshToken, func(ctx context.Context) (*refreshed, error) {
			return l.refreshSession(ctx, d, s, t)
		})
	}
	if err != nil {
		if errors.Is(err, ErrRefreshRejected) || !now.Before(s.AccessExpiry) {
			return nil, err
		}
		l.log.Warn("access token refresh failed; keeping the session until the token expires", "provider", l.cfg.Provider.Name, "error", err)
		return s, nil
	}
	if err := l.writeSession(w, r, res.s, res.t, c); err != nil {
		return nil, err
	}
	return res.s, nil
}

// refreshed is a refresh's result: both parts of the renewed session. It is
// shared by the concurrent requests of one session and never modified.
type refreshed struct {
	s *session
	t *sessionTokens
}

// refreshSession redeems the refresh token. A new ID token, if any, is verified and
// must name the same issuer and subject (OpenID Connect Core §12.2).
func (l *Login) refreshSession(ctx context.Context, d *discovered, s *session, t *sessionTokens) (_ *refreshed, err error) {
	defer func() {
		switch {
		case err == nil:
			l.event("refresh", "success")
		case errors.Is(err, ErrRefreshRejected):
			l.event("refresh", "rejected")
		default:
			l.event("refresh", "error")
		}
	}()
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	ctx = context.WithValue(ctx, oauth2.HTTPClient, l.client)
	tok, err := d.oauth.TokenSource(ctx, &oauth2.Token{RefreshToken: string(t.RefreshToken), Expiry: time.Unix(1, 0)}).Token()
	if err != nil {
		var re *oauth2.RetrieveError
		if errors.As(err, &re) && re.Response != nil && re.Response.StatusCode < 500 {
			return nil, fmt.Errorf("%w: %s", ErrRefreshRejected, re.ErrorCode)
		}
		return nil, fmt.Errorf("refresh: %w", err)
	}
	ns, nt := *s, *t
	nt.AccessToken, ns.AccessExpiry = []byte(tok.AccessToken), tok.Expiry
	if tok.RefreshToken != "" {
		nt.RefreshToken = []byte(tok.RefreshToken)
	}
	if rawID, _ := tok.Extra("id_token").(string); rawID != "" {
		idt, err := d.verifier.Verify(ctx, rawID)
		if err != nil {
			return nil, fmt.Errorf("%w: refreshed id token: %w", ErrRefreshRejected, err)
		}
		old, err := s.auth()
		if err != nil {
			return nil, err
		}
		if idt.Issuer != old.Issuer || idt.Subject != old.Subject {
			return nil, fmt.Errorf("%w: refreshed id token names another user", ErrRefreshRejected)
		}
		if ns.Claims, err = sessionClaims(idt); err != nil {
			return nil, err
		}
		nt.IDToken = []byte(rawID)
	}
	return &refreshed{s: &ns, t: &nt}, nil
}

// refresher makes concurrent requests of one session share one refresh, and
// remembers the result briefly: providers that rotate refresh tokens refuse the
// old one, so a second, parallel redemption would end the session.
type refresher struct {
	mu    sync.Mutex
	calls map[[32]byte]*refreshCall
}

type refreshCall struct {
	done  chan struct{}
	res   *refreshed
	err   error
	until time.Time
}

const refreshMemory = 30 * time.Second

func newRefresher() *refresher { return &refresher{calls: make(map[[32]byte]*refreshCall)} }

func (f *refresher) do(ctx context.Context, refreshToken []byte, fn func(context.Context) (*refreshed, error)) (*refreshed, error) {
	key := sha256.Sum256(refreshToken)
	now := time.Now()
	f.mu.Lock()
	for k, c := range f.calls {
		if !c.until.IsZero() && now.After(c.until) {
			delete(f.calls, k)
		}
	}
	c, ok := f.calls[key]
	if !ok {
		c = &refreshCall{done: make(chan struct{})}
		f.calls[key] = c
		f.mu.Unlock()
		// Detached from the first caller's cancellation: the result serves the others too.
		c.res, c.err = fn(context.WithoutCancel(ctx))
		f.mu.Lock()
		c.until = time.Now().Add(refreshMemory)
		if c.err != nil && !errors.Is(c.err, ErrRefreshRejected) {
			delete(f.calls, key) // a transient failure may be retried by the next request
		}
		f.mu.Unlock()
		close(c.done)
		return c.res, c.err
	}
	f.mu.Unlock()
	select {
	case <-c.done:
		return c.res, c.err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}
