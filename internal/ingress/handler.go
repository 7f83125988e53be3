package ingress

import (
	"errors"
	"net/http"
	"net/url"
	"strings"
	"sync/atomic"

	"tollgate.dev/tollgate/internal/audit"
	"tollgate.dev/tollgate/internal/exchange"
	"tollgate.dev/tollgate/internal/oidc"
	"tollgate.dev/tollgate/internal/request"
)

// Normalizer turns the path-and-query of a request-target as sent into the one
// normalized path (what policy judges and the upstream receives) and the raw
// query to forward. An error means the request can't be normalized safely: 400.
type Normalizer func(target string) (path, rawQuery string, err error)

// Authorizer judges a described request (exchange.Authorizer).
type Authorizer = exchange.Authorizer

// Snapshot is everything a request reads that can change at run time. A reload
// builds a new one and swaps it in whole; a request keeps the one it started with.
type Snapshot struct {
	Router *Router
	// Authorize is nil when no policy applies: then every request is allowed, as in
	// Istio when no AuthorizationPolicy selects the workload.
	Authorize Authorizer
	// Authenticate verifies JWTs (RequestAuthentication); nil when no rule applies.
	Authenticate *oidc.Authenticator
	// Logins binds routes to OIDC browser logins and serves ReservedPrefix; nil: none.
	Logins *Logins
	// Normalize is the path normalizer (ingress.normalization).
	Normalize Normalizer
	// Rules are the front's header and host rules; nil: the front's own.
	Rules *exchange.Rules
}

// Options configure a Handler; they are fixed for its life.
type Options struct {
	// Front is the shared per-request plumbing of this listener (its name,
	// trusted proxies, audit and metrics).
	Front *exchange.Front
}

// Handler is the http.Handler of the ingress and mesh fronts: routing and a
// reverse proxy on top of the shared exchange.
type Handler struct {
	opts  Options
	front *exchange.Front
	snap  atomic.Pointer[Snapshot]
}

// New returns a handler serving snap.
func New(opts Options, snap *Snapshot) *Handler {
	h := &Handler{opts: opts, front: opts.Front}
	h.Swap(snap)
	return h
}

// Swap installs a new snapshot for requests that start from now on.
func (h *Handler) Swap(s *Snapshot) {
	for _, r := range s.Router.routes {
		if r.proxy == nil {
			r.proxy = newProxy(r, h.front.Logger())
		}
	}
	h.snap.Store(s)
}

// Snapshot returns the snapshot in use.
func (h *Handler) Snapshot() *Snapshot { return h.snap.Load() }

func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.ProtoMajor == 2 {
		reserveStack()
	}
	snap := h.snap.Load()
	// From a pool: the audit writer hands the exchange back when it has
	// written its event. The forwarded request is allocated on its own: the
	// transport may read it until the response's body is closed, and to know
	// when it no longer does is not worth the risk.
	x := exchange.Acquire()
	ok := h.front.BeginIn(x, w, r, snap.Rules)
	defer x.Finish()
	if !ok {
		return
	}
	ev, log := &x.Event, h.front.Logger()

	target, err := exchange.PathOfTarget(r.RequestURI)
	if err != nil {
		x.Reject(http.StatusBadRequest, audit.ErrBadRequest, "unsupported request target")
		return
	}
	path, rawQuery, err := snap.Normalize(target)
	if err != nil {
		log.Debug("path rejected", "requestId", ev.RequestID, "err", err)
		x.Reject(http.StatusBadRequest, audit.ErrBadRequest, "invalid request path")
		return
	}
	x.SetTarget(path, rawQuery)

	if isReserved(path) {
		h.serveReserved(x, snap, r)
		return
	}
	route := snap.Router.Match(x.Req.Authority(), path, x.Req.Destination.Port)
	if route == nil {
		x.Reject(http.StatusNotFound, audit.ErrNoRoute, "no route")
		return
	}
	ev.Route = route.Name
	ev.Upstream.URL = route.upstreamURL

	var user *request.Auth
	if a := snap.Authenticate; a != nil {
		if a.ReadsQuery() && snap.Authorize != nil {
			// The policy will decode the query if it reads it: decoded
			// now, token parameters are read from that same map.
			x.DecodeQuery(snap.Authorize)
		}
		res, err := a.Authenticate(r, &x.Req)
		// Apply even on failure: it removes client copies of claim headers.
		res.Apply(r.Header)
		if err != nil {
			unauthenticated(x, err)
			return
		}
		user = res.Auth
		if user != nil {
			x.SetUser(user)
		}
	}
	login := snap.Logins.For(route.Name)
	if login != nil {
		if !browserLogin(x, login, r, user) {
			return
		}
	}
	snap.Logins.stripSessionCookies(login, r.Header)

	if snap.Authorize != nil && !x.Authorize(snap.Authorize) {
		return
	}
	if !x.Admit() {
		return
	}

	// What the policy judged is what the upstream receives: the normalized path,
	// the validated query, the canonical Host.
	setURL(r, x.Req.Path, x.Req.RawQuery)
	route.proxy.serve(x, new(outbound), r)
}

// setURL makes r's URL the judged path and query.
func setURL(r *http.Request, path, rawQuery string) {
	r.URL.RawPath = path
	r.URL.Path = unescapePath(path)
	r.URL.RawQuery = rawQuery
}

// unauthenticated answers a failed credential: 401 with a Bearer challenge, or
// 403 for a token whose audience is not accepted. A query the JWT rules can't
// read one way only (oidc.ErrAmbiguousQuery) is a malformed request, as the
// policy calls it: 400 "invalid query", no challenge, audited as bad_request.
// The client gets a short safe reason; the log gets the cause (never the token).
func unauthenticated(x *exchange.Exchange, err error) {
	w := x.ResponseWriter()
	status, reason, kind := http.StatusUnauthorized, "invalid token", audit.ErrUnauthenticated
	var ae *oidc.Error
	if errors.As(err, &ae) {
		status, reason = ae.Status, ae.Reason
		if c := ae.Challenge(); c != "" {
			w.Header().Set("WWW-Authenticate", c)
		}
	} else {
		w.Header().Set("WWW-Authenticate", `Bearer error="invalid_token"`)
	}
	if errors.Is(err, oidc.ErrAmbiguousQuery) {
		// Whatever Status says: never a challenge for a request that is
		// refused for its query, not its token.
		w.Header().Del("WWW-Authenticate")
		status, reason, kind = http.StatusBadRequest, "invalid query", audit.ErrBadRequest
	}
	x.Front().Logger().Info("authentication failed", "requestId", x.Event.RequestID, "route", x.Event.Route, "err", err)
	x.Reject(status, kind, reason)
}

func unescapePath(p string) string {
	if !strings.Contains(p, "%") {
		return p
	}
	u, err := url.PathUnescape(p)
	if err != nil {
		return p
	}
	return u
}

// reserveStack grows the calling goroutine's stack once, to what a request's
// way through the handler needs, while the stack is still shallow. HTTP/2's
// server runs each request on a new goroutine, whose stack starts small (the
// runtime sizes it from the average goroutine's, and most of a gateway's
// goroutines wait on idle connections) and otherwise grows, by copying every
// frame, several times on the way through authentication, policy and the
// upstream's round trip: about a tenth of the gateway's CPU under HTTP/2
// load, against 2% for a bare reverse proxy (docs/performance.md). HTTP/1.1
// serves a connection's requests on one goroutine, whose stack has grown by
// its first.
//
//go:noinline
func reserveStack() {
	var frame [12 << 10]byte
	keepFrame(frame[:])
}

// keepFrame keeps reserveStack's frame from being optimized away.
//
//go:noinline
func keepFrame([]byte) {}
