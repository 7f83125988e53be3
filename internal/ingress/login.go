package ingress

import (
	"net/http"
	"strings"

	"tollgate.dev/tollgate/internal/audit"
	"tollgate.dev/tollgate/internal/exchange"
	"tollgate.dev/tollgate/internal/oidc"
	"tollgate.dev/tollgate/internal/request"
)

// ReservedPrefix is the path prefix of the gateway's own endpoints (browser
// login, callback, logout). Requests under it are answered by the gateway, on
// every host and route, and never reach an upstream.
const ReservedPrefix = "/.tollgate/"

// Logins binds routes to OIDC browser logins. It is part of the snapshot; the
// Logins themselves are owned (and closed) by whoever built them.
type Logins struct {
	byRoute map[string]*oidc.Login
	all     []*oidc.Login
}

// NewLogins binds each route name to its login; all lists every login, also
// those no route uses yet (their reserved endpoints still answer).
func NewLogins(byRoute map[string]*oidc.Login, all []*oidc.Login) *Logins {
	return &Logins{byRoute: byRoute, all: all}
}

// For returns the login of the named route, or nil.
func (ls *Logins) For(route string) *oidc.Login {
	if ls == nil {
		return nil
	}
	return ls.byRoute[route]
}

func isReserved(path string) bool {
	return strings.HasPrefix(path, ReservedPrefix) || path == ReservedPrefix[:len(ReservedPrefix)-1]
}

// serveReserved answers a request under ReservedPrefix. It runs on the
// normalized path, so "/x/../.tollgate/..." or "//.tollgate/..." cannot slip
// past to an upstream; the login endpoints see that same path.
func (h *Handler) serveReserved(x *exchange.Exchange, snap *Snapshot, r *http.Request) {
	setURL(r, x.Req.Path, x.Req.RawQuery)
	w := x.ResponseWriter()
	w.Header().Set(exchange.HeaderRequestID, x.Event.RequestID)
	if ls := snap.Logins; ls != nil {
		for _, l := range ls.all {
			if l.ServeReserved(w, r) {
				return
			}
		}
	}
	x.Reject(http.StatusNotFound, audit.ErrNoRoute, "no such gateway endpoint")
}

// browserLogin is the session step of a route bound to a login, after bearer
// authentication. A bearer identity wins; without one the session cookie must
// be valid, else a browser navigation is sent to the provider (302) and
// anything else gets 401. It records the session's identity (SetUser) and
// returns whether to go on.
func browserLogin(x *exchange.Exchange, l *oidc.Login, r *http.Request, auth *request.Auth) bool {
	if auth != nil {
		return true
	}
	w := x.ResponseWriter()
	a, out := l.Authenticate(w, r)
	if out != oidc.Authenticated {
		x.Event.Error = audit.ErrUnauthenticated
		if out == oidc.LoginRequired {
			w.Header().Set(exchange.HeaderRequestID, x.Event.RequestID)
			l.Challenge(w, r, out)
			return false
		}
		// Not a page load (API call, XHR, POST): a redirect to a login page
		// helps nobody. Same JSON error, with the request id, as every 401.
		w.Header().Set("WWW-Authenticate", `Bearer realm="tollgate"`)
		x.Reject(http.StatusUnauthorized, audit.ErrUnauthenticated, "a session or bearer token is required")
		return false
	}
	x.SetUser(a)
	for k, v := range oidc.ClaimHeaders(a) {
		r.Header[k] = v
	}
	return true
}

// stripSessionCookies removes the gateway's cookies before a request goes
// upstream, on every route: the session holds the user's tokens, and a route
// without login on the same host receives the same cookies.
func (ls *Logins) stripSessionCookies(route *oidc.Login, hd http.Header) {
	if route != nil {
		route.StripCookies(hd)
		return
	}
	if ls != nil && len(ls.all) > 0 {
		// Every login strips the gateway's common cookie prefix, so any one will do.
		ls.all[0].StripCookies(hd)
	}
}
