package oidc

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"
)

// Errors of the callback, each naming the attack it stops.
var (
	// ErrStateMissing: no (valid) state cookie of this attempt: a callback the browser did not
	// start here, or its attempt expired or was ended by newer ones (see login_attempts.go).
	ErrStateMissing = errors.New("login state missing or expired")
	// ErrStateMismatch: the state parameter is not this browser's (login CSRF, code injection):
	// no attempt under way in it has that state.
	ErrStateMismatch = errors.New("login state does not match")
	// ErrStateReplayed: this state was already redeemed (a replayed callback).
	ErrStateReplayed = errors.New("login state already used")
	// ErrNonceMismatch: the ID token was issued for another login (token replay/injection).
	ErrNonceMismatch = errors.New("id token nonce does not match")
	// ErrIssuerMismatch: the callback's iss parameter names another provider (mix-up attack, RFC 9207).
	ErrIssuerMismatch = errors.New("callback issuer does not match")
)

// loginState travels in the sealed state cookie of one login attempt between
// the redirect to the provider and the callback.
type loginState struct {
	State    string    `json:"s"`
	Nonce    string    `json:"n"`
	Verifier string    `json:"v"`
	ReturnTo string    `json:"r"`
	Expires  time.Time `json:"e"`
}

func randomToken() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b) // crypto/rand.Read never fails on supported platforms
	return base64.RawURLEncoding.EncodeToString(b)
}

// startLogin starts one login attempt: its state cookie and marker (ending
// the oldest attempts under way beyond the bound), then the redirect to the
// provider. Attempts under way in other tabs are left alone.
func (l *Login) startLogin(w http.ResponseWriter, r *http.Request, returnTo string) {
	d := l.disc.Load()
	if d == nil {
		writeJSONError(w, http.StatusServiceUnavailable, "login_unavailable", "the identity provider is not reachable yet; try again shortly")
		return
	}
	if !l.hostOK(r.Host) {
		writeJSONError(w, http.StatusBadRequest, "bad_host", "this host is not served by this login")
		return
	}
	st, err := l.beginAttempt(w, r, returnTo)
	if err != nil {
		writeJSONError(w, http.StatusInternalServerError, "internal", "login could not start")
		return
	}
	oc := d.oauth
	oc.RedirectURL = l.redirectURI(r.Host)
	opts := []oauth2.AuthCodeOption{oauth2.S256ChallengeOption(st.Verifier), oidc.Nonce(st.Nonce)}
	for k, v := range l.cfg.Provider.ExtraAuthParams {
		opts = append(opts, oauth2.SetAuthURLParam(k, v))
	}
	w.Header().Set("Cache-Control", "no-store")
	http.Redirect(w, r, oc.AuthCodeURL(st.State, opts...), http.StatusFound)
}

// beginAttempt makes a login attempt's state and sets its cookies on w: the
// sealed state cookie and the marker, after ending the oldest attempts under
// way beyond the bound.
func (l *Login) beginAttempt(w http.ResponseWriter, r *http.Request, returnTo string) (*loginState, error) {
	now := l.now()
	st := &loginState{
		State: randomToken(), Nonce: randomToken(), Verifier: oauth2.GenerateVerifier(),
		ReturnTo: returnTo, Expires: now.Add(l.cfg.StateTTL),
	}
	id, _ := attemptIDOf(st.State)
	name := l.stateCookieName(id)
	sealed, err := l.sealState(st, name, r.Host)
	if err == nil && len(name)+1+len(sealed) > maxChunkLen && st.ReturnTo != "/" {
		// A browser drops a cookie of over 4 KB. Only a return path full of
		// characters JSON escapes gets here: return to / instead.
		st.ReturnTo = "/"
		sealed, err = l.sealState(st, name, r.Host)
	}
	if err != nil {
		return nil, err
	}
	size := len(name) + 1 + len(sealed)
	for _, p := range admitAttempt(l.pendingLogins(r), pendingLogin{id: id, size: size}, now.UnixMilli()) {
		l.expireAttempt(w, p.id)
	}
	http.SetCookie(w, l.stateCookie(name, sealed, st.Expires))
	http.SetCookie(w, sessionCookie(l.markerCookieName(id), markerValue(st.Expires, size), st.Expires))
	return st, nil
}

// sealState seals st for the state cookie name on host, as JSON without HTML
// escaping: a return path's '&' stays one byte.
func (l *Login) sealState(st *loginState, name, host string) (string, error) {
	var pt bytes.Buffer
	enc := json.NewEncoder(&pt)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(st); err != nil {
		return "", err
	}
	var aadBuf [192]byte
	return l.keys.Load().seal(cookieAAD(aadBuf[:0], name, host), bytes.TrimSuffix(pt.Bytes(), []byte("\n")))
}

// ServeReserved answers the gateway's own endpoints under the path prefix and
// reports whether it did. Everything under the prefix is answered here (unknown
// paths with 404), so none of it reaches an upstream:
//
//	<prefix>oidc/start?rd=/path   start a login, return to /path afterwards
//	<prefix>oidc/callback         the provider's redirect back (the redirect_uri)
//	<prefix>oidc/logout           POST: end the session here and at the provider;
//	                              GET: a page with the button that POSTs (see logout)
//	<prefix>oidc/signed-out       a plain "signed out" page (post-logout target)
func (l *Login) ServeReserved(w http.ResponseWriter, r *http.Request) bool {
	p := r.URL.Path
	if !l.isReservedPath(p) {
		return false
	}
	switch p {
	case l.endpoint("start"):
		rd, ok := SafeRedirect(r.URL.Query().Get("rd"))
		if !ok || l.isReservedPath(rd) {
			rd = "/"
		}
		l.startLogin(w, r, rd)
	case l.endpoint("callback"):
		l.callback(w, r)
	case l.endpoint("logout"):
		l.logout(w, r)
	case l.endpoint("signed-out"):
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Header().Set("Cache-Control", "no-store")
		_, _ = w.Write([]byte("<!doctype html><title>Signed out</title><p id=\"signed-out\">You are signed out.</p>\n"))
	default:
		http.NotFound(w, r)
	}
	return true
}

// readState opens the state cookie of the attempt the callback's state
// parameter names, for this request's host. Both of the attempt's cookies
// must be there: a state cookie without its marker was not set by this host
// in this browser.
func (l *Login) readState(r *http.Request, id attemptID, ok bool) (*loginState, error) {
	if !ok {
		return nil, fmt.Errorf("%w: no usable state parameter", ErrStateMissing)
	}
	c, marker, others := l.findAttempt(r, id)
	if c == nil || !marker {
		return nil, attemptError(c, marker, others)
	}
	var aadBuf [192]byte
	pt, err := l.keys.Load().open(cookieAAD(aadBuf[:0], c.Name, r.Host), c.Value)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrStateMissing, err)
	}
	var st loginState
	if err := json.Unmarshal(pt, &st); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrStateMissing, err)
	}
	if !l.now().Before(st.Expires) {
		return nil, fmt.Errorf("%w: expired", ErrStateMissing)
	}
	return &st, nil
}

// callback completes the login. The client sees a short message; the log gets why.
func (l *Login) callback(w http.ResponseWriter, r *http.Request) {
	// The attempt's cookies are single-use whatever happens next; only this
	// attempt's: other tabs' logins go on.
	id, idOK := attemptIDOf(r.URL.Query().Get("state"))
	if idOK {
		l.expireAttempt(w, id)
	}
	if r.Method != http.MethodGet {
		l.event("login", "refused")
		writeJSONError(w, http.StatusMethodNotAllowed, "method_not_allowed", "the callback takes GET")
		return
	}
	d := l.disc.Load()
	if d == nil {
		l.event("login", "unavailable")
		writeJSONError(w, http.StatusServiceUnavailable, "login_unavailable", "the identity provider is not reachable yet; try again shortly")
		return
	}
	if !l.hostOK(r.Host) {
		l.event("login", "refused")
		writeJSONError(w, http.StatusBadRequest, "bad_host", "this host is not served by this login")
		return
	}
	s, t, st, err := l.redeem(r.Context(), r, d, id, idOK)
	if err != nil {
		l.log.Warn("login callback refused", "provider", l.cfg.Provider.Name, "error", err)
		l.event("login", "refused")
		writeJSONError(w, http.StatusBadRequest, "login_failed", "the login could not be completed; start again")
		return
	}
	var had sessionCookies
	had.read(l, r)
	if err := l.writeSession(w, r, s, t, &had); err != nil {
		l.log.Error("session cookie could not be written", "provider", l.cfg.Provider.Name, "error", err)
		l.event("login", "error")
		writeJSONError(w, http.StatusInternalServerError, "internal", "the session could not be stored")
		return
	}
	l.event("login", "success")
	rd, ok := SafeRedirect(st.ReturnTo)
	if !ok {
		rd = "/"
	}
	w.Header().Set("Cache-Control", "no-store")
	http.Redirect(w, r, rd, http.StatusFound)
}

// redeem checks state, issuer and replay, exchanges the code (with the PKCE
// verifier) and verifies the ID token and its nonce.
func (l *Login) redeem(ctx context.Context, r *http.Request, d *discovered, id attemptID, idOK bool) (*session, *sessionTokens, *loginState, error) {
	st, err := l.readState(r, id, idOK)
	if err != nil {
		return nil, nil, nil, err
	}
	q := r.URL.Query()
	if subtle.ConstantTimeCompare([]byte(q.Get("state")), []byte(st.State)) != 1 {
		return nil, nil, nil, ErrStateMismatch
	}
	if iss := q.Get("iss"); iss != "" && iss != l.cfg.Provider.Issuer {
		return nil, nil, nil, ErrIssuerMismatch
	}
	// Consume before the exchange so two racing replays cannot both pass.
	if !l.ledger.consume(st.State, st.Expires, l.now()) {
		return nil, nil, nil, ErrStateReplayed
	}
	if e := q.Get("error"); e != "" {
		return nil, nil, nil, fmt.Errorf("provider returned error %q", e)
	}
	code := q.Get("code")
	if code == "" {
		return nil, nil, nil, errors.New("callback without code")
	}
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	ctx = context.WithValue(ctx, oauth2.HTTPClient, l.client)
	oc := d.oauth
	oc.RedirectURL = l.redirectURI(r.Host)
	tok, err := oc.Exchange(ctx, code, oauth2.VerifierOption(st.Verifier))
	if err != nil {
		return nil, nil, nil, fmt.Errorf("code exchange: %w", err)
	}
	rawID, _ := tok.Extra("id_token").(string)
	if rawID == "" {
		return nil, nil, nil, errors.New("token response without id_token")
	}
	idt, err := d.verifier.Verify(ctx, rawID)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("id token: %w", err)
	}
	if subtle.ConstantTimeCompare([]byte(idt.Nonce), []byte(st.Nonce)) != 1 {
		return nil, nil, nil, ErrNonceMismatch
	}
	claims, err := sessionClaims(idt)
	if err != nil {
		return nil, nil, nil, err
	}
	now := l.now()
	return &session{
			ID: newSessionID(), Created: now, Expires: now.Add(l.cfg.SessionTTL), AccessExpiry: tok.Expiry, Claims: claims,
		}, &sessionTokens{
			IDToken: []byte(rawID), AccessToken: []byte(tok.AccessToken), RefreshToken: []byte(tok.RefreshToken),
		}, st, nil
}

// sessionClaims keeps the verified claims policy may read, minus the ones that only
// served the verification.
func sessionClaims(idt *oidc.IDToken) ([]byte, error) {
	var m map[string]json.RawMessage
	if err := idt.Claims(&m); err != nil {
		return nil, fmt.Errorf("id token claims: %w", err)
	}
	for _, k := range []string{"nonce", "at_hash", "c_hash", "s_hash"} {
		delete(m, k)
	}
	return json.Marshal(m)
}

// stateLedger remembers redeemed states until they expire, so a callback replayed
// together with its state cookie is refused (the provider's single-use code is
// the other guard). Bounded: when full of unexpired states, it forgets the one
// that expires first. Refusing instead would let anyone who starts logins and
// sends junk callbacks fill it and lock every user out; a forgotten state is
// still guarded by its code, which the provider redeems once.
type stateLedger struct {
	mu   sync.Mutex
	max  int
	seen map[string]time.Time
}

func newStateLedger(max int) *stateLedger {
	return &stateLedger{max: max, seen: make(map[string]time.Time)}
}

// consume records state and reports whether it was fresh.
func (s *stateLedger) consume(state string, until, now time.Time) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.seen[state]; ok {
		return false
	}
	if len(s.seen) >= s.max {
		for k, exp := range s.seen {
			if !now.Before(exp) {
				delete(s.seen, k)
			}
		}
		if len(s.seen) >= s.max {
			var first string
			var firstExp time.Time
			for k, exp := range s.seen {
				if first == "" || exp.Before(firstExp) {
					first, firstExp = k, exp
				}
			}
			delete(s.seen, first)
		}
	}
	s.seen[state] = until
	return true
}
