package ingress

import (
	"crypto/tls"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"sync/atomic"
	"time"

	"tollgate.dev/tollgate/internal/audit"
	"tollgate.dev/tollgate/internal/identity"
	"tollgate.dev/tollgate/internal/oidc"
	"tollgate.dev/tollgate/internal/policy/pathnorm"
	"tollgate.dev/tollgate/internal/request"
)

// Normalizer turns the path-and-query of a request-target as sent into the one
// normalized path (what policy judges and the upstream receives) and the raw
// query to forward. An error means the request can't be normalized safely: 400.
type Normalizer func(target string) (path, rawQuery string, err error)

// Authorizer judges a described request. The decision record goes into the
// audit event as is.
type Authorizer interface {
	Authorize(*request.Request) *request.Decision
}

// Recorder receives one audit event per request.
type Recorder interface {
	Record(*audit.Event)
}

// Observer receives request metrics.
type Observer interface {
	ObserveRequest(route string, code int, d time.Duration)
	UpstreamError(route string, kind audit.ErrorKind)
}

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
}

// Options configure a Handler; they are fixed for its life.
type Options struct {
	Normalize      Normalizer
	TrustedProxies []netip.Prefix
	// DefaultPort is the listener's port, which a Host without a port stands for.
	DefaultPort string
	Audit       Recorder
	Metrics     Observer
	Logger      *slog.Logger
}

// Handler is the ingress http.Handler.
type Handler struct {
	opts Options
	snap atomic.Pointer[Snapshot]
	ids  *requestIDs
	// listener is the last listener address formatted for the audit event: a
	// handler serves one listener, so formatting it per request would be waste.
	listener atomic.Pointer[addrText]
}

type addrText struct {
	ip   netip.Addr
	text string
}

// listenerAddr is la's IP as text, formatted once per address.
func (h *Handler) listenerAddr(la *net.TCPAddr) string {
	ip, _ := netip.AddrFromSlice(la.IP)
	ip = ip.Unmap()
	if c := h.listener.Load(); c != nil && c.ip == ip {
		return c.text
	}
	c := &addrText{ip: ip, text: ip.String()}
	h.listener.Store(c)
	return c.text
}

// New returns a handler serving snap.
func New(opts Options, snap *Snapshot) *Handler {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	h := &Handler{opts: opts, ids: newRequestIDs()}
	h.Swap(snap)
	return h
}

// Swap installs a new snapshot for requests that start from now on.
func (h *Handler) Swap(s *Snapshot) {
	for _, r := range s.Router.routes {
		if r.proxy == nil {
			r.proxy = newProxy(r, h)
		}
	}
	h.snap.Store(s)
}

// Snapshot returns the snapshot in use.
func (h *Handler) Snapshot() *Snapshot { return h.snap.Load() }

// exchange is the state of one request, shared by the steps and the proxy callbacks.
type exchange struct {
	ev    audit.Event
	w     responseRecorder
	route *Route
	// desc is the request description policy judges; it lives in the exchange so
	// describing a request costs no allocation of its own.
	desc request.Request
}

func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	snap := h.snap.Load()
	x := &exchange{}
	x.w = responseRecorder{ResponseWriter: w}
	ev := &x.ev
	ev.Time = time.Now()
	ev.Kind = audit.Ingress
	ev.Host, ev.Method, ev.Protocol, ev.UserAgent = r.Host, r.Method, r.Proto, r.UserAgent()

	peer, _ := clientAddr(r.RemoteAddr)
	ev.Client = audit.Endpoint{Address: peer.Addr().String(), Port: int(peer.Port())}
	if la, ok := r.Context().Value(http.LocalAddrContextKey).(*net.TCPAddr); ok {
		ev.Listener = audit.Endpoint{Address: h.listenerAddr(la), Port: la.Port}
	}
	if tp := r.Header["Traceparent"]; len(tp) == 1 {
		ev.TraceID = traceID(tp[0])
	}
	if r.TLS != nil {
		ev.SNI, ev.TLSVersion = r.TLS.ServerName, tls.VersionName(r.TLS.Version)
		ev.TLSCipher = cipherNames[r.TLS.CipherSuite]
		if len(r.TLS.PeerCertificates) > 0 {
			// Only an SVID that identity's VerifyConnection accepted yields an
			// ID, so a certificate with a forged URI SAN can't name a principal.
			if id, ok := identity.PeerID(*r.TLS); ok {
				ev.SourcePrincipal = id.String()
			}
		}
	}
	trusted := isTrusted(peer.Addr(), h.opts.TrustedProxies)
	ev.RequestID = r.Header.Get(HeaderRequestID)
	if !trusted || !validRequestID(ev.RequestID) {
		ev.RequestID = h.ids.next()
	}
	body := countingBody(r)
	defer h.finish(x, body)

	target, err := pathOfTarget(r.RequestURI)
	if err != nil {
		h.reject(x, http.StatusBadRequest, audit.ErrBadRequest, "unsupported request target")
		return
	}
	path, rawQuery, err := h.opts.Normalize(target)
	if err != nil {
		h.opts.Logger.Debug("path rejected", "requestId", ev.RequestID, "err", err)
		h.reject(x, http.StatusBadRequest, audit.ErrBadRequest, "invalid request path")
		return
	}
	ev.Path, ev.Query = path, audit.RedactQuery(rawQuery, nil)

	// One canonical host for routing, policy, cookies and the upstream: a
	// spelling the router would treat as this host ("Admin.example.com.")
	// must not be judged as another by policy.
	auth, err := request.ParseAuthority(r.Host)
	if err != nil {
		h.opts.Logger.Debug("host rejected", "requestId", ev.RequestID, "err", err)
		h.reject(x, http.StatusBadRequest, audit.ErrBadRequest, "invalid host")
		return
	}
	r.Host = auth.String()
	ev.Host = r.Host
	x.desc.Host, x.desc.HostPort = auth.Host, auth.Port

	if isReserved(path) {
		h.serveReserved(x, snap, r, path, rawQuery)
		return
	}
	route := snap.Router.Match(auth, path, h.opts.DefaultPort)
	if route == nil {
		h.reject(x, http.StatusNotFound, audit.ErrNoRoute, "no route")
		return
	}
	x.route = route
	ev.Route = route.Name
	ev.Upstream.URL = route.upstreamURL

	// Client copies of the headers authentication sets (its outputs, and the
	// login's X-Tollgate-* claims) go in sanitize and in the Authenticate
	// result's Apply below, which runs for every request, token or not.
	sanitize(r.Header, trusted)

	var user *request.Auth
	if a := snap.Authenticate; a != nil {
		res, err := a.Authenticate(r)
		// Apply even on failure: it removes client copies of claim headers.
		res.Apply(r.Header)
		if err != nil {
			h.unauthenticated(x, err)
			return
		}
		user = res.Auth
		if user != nil {
			ev.Auth = &audit.Auth{Principal: user.Principal, Issuer: user.Issuer, Subject: user.Subject}
		}
	}
	login := snap.Logins.For(route.Name)
	if login != nil {
		var ok bool
		if user, ok = h.browserLogin(x, login, r, user); !ok {
			return
		}
	}
	snap.Logins.stripSessionCookies(login, r.Header)

	if snap.Authorize != nil {
		desc := &x.desc
		describe(desc, r, path, rawQuery, peer.Addr(), ev.SourcePrincipal)
		desc.Auth = user
		if rawQuery != "" && usesQuery(snap.Authorize) {
			// Decoded once, for request.query[...] conditions. A query that can't be
			// decoded one way only (for example with ';' separators, which backends
			// split differently) is refused rather than judged on a guess.
			q, err := pathnorm.ParseQuery(rawQuery)
			if err != nil {
				h.reject(x, http.StatusBadRequest, audit.ErrBadRequest, "invalid query")
				return
			}
			desc.Query = q
		}
		d := snap.Authorize.Authorize(desc)
		ev.Decision = d
		if d == nil || !d.Allow {
			// Fail closed: a missing decision is a deny.
			h.reject(x, http.StatusForbidden, "", "access denied")
			return
		}
	}

	// What the policy judged is what the upstream receives: the normalized path,
	// the validated query, the client's Host.
	r.URL.RawPath = path
	r.URL.Path = unescapePath(path)
	r.URL.RawQuery = rawQuery
	r.Header.Set(HeaderRequestID, ev.RequestID)
	route.proxy.serve(x, r)
}

// unauthenticated answers a failed credential: 401 with a Bearer challenge, or
// 403 for a token whose audience is not accepted. The client gets a short safe
// reason; the log gets the cause (never the token).
func (h *Handler) unauthenticated(x *exchange, err error) {
	status, reason := http.StatusUnauthorized, "invalid token"
	var ae *oidc.Error
	if errors.As(err, &ae) {
		status, reason = ae.Status, ae.Reason
		if c := ae.Challenge(); c != "" {
			x.w.Header().Set("WWW-Authenticate", c)
		}
	} else {
		x.w.Header().Set("WWW-Authenticate", `Bearer error="invalid_token"`)
	}
	h.opts.Logger.Info("authentication failed", "requestId", x.ev.RequestID, "route", x.ev.Route, "err", err)
	h.reject(x, status, audit.ErrUnauthenticated, reason)
}

// reject answers with the gateway's own JSON error.
func (h *Handler) reject(x *exchange, status int, kind audit.ErrorKind, msg string) {
	x.ev.Error = kind
	x.w.Header().Set(HeaderRequestID, x.ev.RequestID)
	writeError(&x.w, status, msg, x.ev.RequestID)
}

// finish completes the audit event and the metrics of one request.
func (h *Handler) finish(x *exchange, body *countingReader) {
	ev := &x.ev
	ev.Duration = time.Since(ev.Time)
	ev.Status = x.w.status
	if ev.Status == 0 {
		ev.Status = http.StatusOK
	}
	ev.BytesOut = x.w.bytes
	if body != nil {
		ev.BytesIn = body.n
	}
	if h.opts.Metrics != nil {
		route := ev.Route
		if route == "" {
			route = "-"
		}
		h.opts.Metrics.ObserveRequest(route, ev.Status, ev.Duration)
		if isUpstreamError(ev.Error) {
			h.opts.Metrics.UpstreamError(route, ev.Error)
		}
	}
	if h.opts.Audit != nil {
		h.opts.Audit.Record(ev)
	}
}

// describe fills d with the plain request description that policy judges.
// principal is the caller's verified SPIFFE ID (ServeHTTP reads it once, for the
// audit event too), "" for a caller without one.
func describe(d *request.Request, r *http.Request, path, rawQuery string, peer netip.Addr, principal string) {
	*d = request.Request{
		Protocol: request.HTTP,
		Method:   r.Method,
		Host:     d.Host,
		HostPort: d.HostPort,
		Path:     path,
		RawQuery: rawQuery,
		Headers:  r.Header,
		Source:   request.Peer{IP: peer},
		RemoteIP: peer,
	}
	if la, ok := r.Context().Value(http.LocalAddrContextKey).(*net.TCPAddr); ok {
		ap := la.AddrPort()
		d.Destination.IP = ap.Addr().Unmap()
		d.Destination.Port = int(ap.Port())
	}
	d.Source.Principal = principal
	if r.TLS != nil {
		d.SNI = r.TLS.ServerName
	}
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

// isUpstreamError reports whether kind is a failure of the upstream exchange (as
// opposed to the gateway refusing the client), for the upstream-errors metric.
func isUpstreamError(kind audit.ErrorKind) bool {
	switch kind {
	case audit.ErrUpstreamTLS, audit.ErrUpstreamUnreachable, audit.ErrUpstreamProtocol, audit.ErrTimeout:
		return true
	}
	return false
}

// usesQuery reports whether the authorizer reads request.query[...]; one that
// does not say is assumed to.
func usesQuery(a Authorizer) bool {
	if q, ok := a.(interface{ UsesQuery() bool }); ok {
		return q.UsesQuery()
	}
	return true
}

// traceID returns the trace id of a W3C traceparent ("00-<32 hex>-<16 hex>-<2
// hex>"), or "" when the header is not one: a client's text never reaches the
// audit record unchecked.
func traceID(tp string) string {
	if len(tp) != 55 || tp[2] != '-' || tp[35] != '-' || tp[52] != '-' {
		return ""
	}
	id := tp[3:35]
	zero := true
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return ""
		}
		zero = zero && c == '0'
	}
	if zero {
		return ""
	}
	return id
}

// cipherNames maps cipher suite ids to IANA names. tls.CipherSuiteName builds
// the whole suite list on every call (about fifteen allocations), too much per
// request.
var cipherNames = func() map[uint16]string {
	m := make(map[uint16]string)
	for _, list := range [][]*tls.CipherSuite{tls.CipherSuites(), tls.InsecureCipherSuites()} {
		for _, cs := range list {
			m[cs.ID] = cs.Name
		}
	}
	return m
}()
