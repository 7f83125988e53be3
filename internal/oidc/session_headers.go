package oidc

import (
	"net/http"
	"strings"

	"tollgate.dev/tollgate/internal/request"
)

// Headers the gateway may set on requests to the upstream from the session's
// claims. The ingress must delete inbound copies of all of them before adding its
// own, whatever the route: otherwise a client could claim to be anyone.
const (
	HeaderUser    = "X-Tollgate-User"    // preferred_username, else email, else sub
	HeaderSubject = "X-Tollgate-Subject" // iss/sub principal
	HeaderEmail   = "X-Tollgate-Email"
	HeaderGroups  = "X-Tollgate-Groups" // comma-separated
)

// ClaimHeaderNames lists every header ClaimHeaders may set.
var ClaimHeaderNames = []string{HeaderUser, HeaderSubject, HeaderEmail, HeaderGroups}

// ClaimHeaders describes the user to the upstream. The ingress decides whether to
// add them; values with characters unsafe in a header are left out.
func ClaimHeaders(a *request.Auth) http.Header {
	h := http.Header{}
	if a == nil {
		return h
	}
	str := func(k string) string { s, _ := a.Claims[k].(string); return s }
	set := func(name, v string) {
		if v != "" && printable(v) {
			h.Set(name, v)
		}
	}
	user := str("preferred_username")
	if user == "" {
		user = str("email")
	}
	if user == "" {
		user = a.Subject
	}
	set(HeaderUser, user)
	set(HeaderSubject, a.Principal)
	set(HeaderEmail, str("email"))
	if gs, ok := a.Claims["groups"].([]any); ok {
		names := make([]string, 0, len(gs))
		for _, g := range gs {
			if s, ok := g.(string); ok && !strings.Contains(s, ",") {
				names = append(names, s)
			}
		}
		set(HeaderGroups, strings.Join(names, ","))
	}
	return h
}

// cookiePrefix and secureCookiePrefix mark every cookie the gateway sets with
// default names (secureCookiePrefix: the state cookies of logins under way);
// stripping by them also removes the cookies of other providers on the same host.
const (
	cookiePrefix       = "__Host-tollgate-"
	secureCookiePrefix = "__Secure-tollgate-"
)

// StripCookies removes the gateway's own cookies (this login's session chunks of
// both parts and the cookies of its logins under way, and any cookie named with
// the gateway's default prefixes) from the
// request headers before they go upstream: the upstream must never receive the
// session, which holds the user's tokens. Other cookies pass unchanged.
func (l *Login) StripCookies(h http.Header) {
	lines := h["Cookie"]
	if len(lines) == 0 {
		return
	}
	var kept []string
	for _, line := range lines {
		var b strings.Builder
		for part := range strings.SplitSeq(line, ";") {
			p := strings.TrimSpace(part)
			if p == "" {
				continue
			}
			name, _, _ := strings.Cut(p, "=")
			if l.ownCookie(name) {
				continue
			}
			if b.Len() > 0 {
				b.WriteString("; ")
			}
			b.WriteString(p)
		}
		if b.Len() > 0 {
			kept = append(kept, b.String())
		}
	}
	if len(kept) == 0 {
		h.Del("Cookie")
		return
	}
	h["Cookie"] = kept
}

func (l *Login) ownCookie(name string) bool {
	name = strings.TrimSpace(name)
	if strings.HasPrefix(name, cookiePrefix) || strings.HasPrefix(name, secureCookiePrefix) ||
		name == l.cookieName || name == l.legacyStateName {
		return true
	}
	return strings.HasPrefix(name, l.cookieName+"_") || strings.HasPrefix(name, l.tokensName+"_") ||
		strings.HasPrefix(name, l.pendingPrefix) || strings.HasPrefix(name, l.statePrefix)
}
