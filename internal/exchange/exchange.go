package exchange

import (
	"context"
	"errors"
	"net/http"
	"sync"
	"time"

	"tollgate.dev/tollgate/internal/audit"
	"tollgate.dev/tollgate/internal/policy/pathnorm"
	"tollgate.dev/tollgate/internal/request"
)

// Authorizer judges a described request; the decision record goes into the
// audit event as is. The zero decision is a deny (fail closed). It is
// returned by value: the exchange keeps it in its own allocation.
type Authorizer interface {
	Authorize(*request.Request) request.Decision
}

// Exchange is the state of one request, shared by the front's steps and its
// proxy's callbacks.
type Exchange struct {
	// Event is the request's audit record, filled as the exchange goes.
	Event audit.Event
	// Req is the canonical request description: what routing, policy, audit
	// and the upstream all see.
	Req request.Request

	front *Front
	w     Response
	// body counts the request body (its ReadCloser is nil without one); it,
	// auth, user and decision live here so that they cost no allocation of
	// their own.
	body     countingReader
	auth     audit.Auth
	user     request.Auth
	decision request.Decision
	trusted  bool
	// queryDone: Req.Query is decoded (or queryErr says why it can't be).
	queryDone bool
	queryErr  error
	// tunnel holds the byte counts of a tunnel (CONNECT), which bypasses the
	// counting writer and reader once the connection is handed over.
	tunnel *[2]int64
	// owner is the pool entry holding x (Acquire), nil for an exchange
	// allocated on its own.
	owner *pooled
}

// pooled is an exchange in the pool: the owner its event is lent to the
// recorder for (audit.Event.Lend).
type pooled struct{ x Exchange }

// ReleaseEvent puts the exchange back in the pool (audit.Releaser).
func (p *pooled) ReleaseEvent() { exchanges.Put(p) }

var exchanges = sync.Pool{New: func() any { return new(pooled) }}

// Acquire returns an exchange for BeginIn from a pool. The front lends its
// event to the Recorder, and the exchange goes back to the pool once the
// recorder has written the event (audit.Event.Release): the caller must not
// keep x, or anything that points into it, past Finish. An exchange whose
// request has a body (ContentLength not 0) is not lent: a transport may
// still read the body, which the exchange wraps, after the handler has
// returned (Go issue 46866); the garbage collector takes that one.
func Acquire() *Exchange {
	p := exchanges.Get().(*pooled)
	p.x.owner = p
	return &p.x
}

// SetTunnelBytes records what a tunnel carried each way, for the audit
// event: in from the client, out to it.
func (x *Exchange) SetTunnelBytes(in, out int64) { x.tunnel = &[2]int64{in, out} }

// ResponseWriter is the counting writer the front answers through.
func (x *Exchange) ResponseWriter() *Response { return &x.w }

// SetUser records the verified identity: the request description gets its
// own copy of it (a verified token's identity is shared by every request
// that presents the token, so it is never handed on to be changed), the
// event its principal. Neither costs an allocation.
func (x *Exchange) SetUser(a *request.Auth) {
	x.user = *a
	x.Req.Auth = &x.user
	x.auth = audit.Auth{Principal: a.Principal, Issuer: a.Issuer, Subject: a.Subject}
	x.Event.Auth = &x.auth
}

// DecodeQuery decodes the query into Req.Query now, when a reads it, so that
// a step before Authorize that reads parameters (the JWT extraction) reads
// the very map the policy will judge, and the query is decoded once. A query
// that can't be decoded is left undecoded and its error kept: Authorize
// refuses it. Until then the request goes on, so that the step before can
// report it in its own terms.
func (x *Exchange) DecodeQuery(a Authorizer) {
	if x.Req.RawQuery != "" && usesQuery(a) {
		x.decodeQuery()
	}
}

// decodeQuery fills Req.Query from Req.RawQuery once and returns why it
// can't.
func (x *Exchange) decodeQuery() error {
	if !x.queryDone {
		x.queryDone = true
		x.Req.Query, x.queryErr = pathnorm.ParseQuery(x.Req.RawQuery)
	}
	return x.queryErr
}

// Trusted reports whether the direct peer is a trusted proxy.
func (x *Exchange) Trusted() bool { return x.trusted }

// Front is the front the request arrived at.
func (x *Exchange) Front() *Front { return x.front }

// SetTarget records the normalized path and the query to forward, with
// method-override parameters removed (the upstream must act on the method
// policy judged).
func (x *Exchange) SetTarget(path, rawQuery string) {
	rawQuery = stripMethodOverride(rawQuery)
	x.Req.Path, x.Req.RawQuery = path, rawQuery
	x.Req.Query, x.queryDone, x.queryErr = nil, false, nil
	x.Event.Path = path
	if o := &x.front.opts; o.RedactQueryValues {
		x.Event.Query = audit.RedactQueryExcept(rawQuery, o.KeepQueryValues)
	} else {
		x.Event.Query = audit.RedactQuery(rawQuery, nil)
	}
}

// Reject answers with the gateway's own JSON error: status, a short safe
// message, the request id.
func (x *Exchange) Reject(status int, kind audit.ErrorKind, msg string) {
	x.Event.Error = kind
	x.w.Header().Set(HeaderRequestID, x.Event.RequestID)
	WriteError(&x.w, status, msg, x.Event.RequestID)
}

// Authorize asks a about the request, records its decision in the event, and
// answers 403 unless it allows. A query that policy reads is decoded once
// here; one that can't be decoded one way only (';' separators, which
// backends split differently) is refused (400) rather than judged on a guess.
func (x *Exchange) Authorize(a Authorizer) bool {
	q := &x.Req
	if q.RawQuery != "" && usesQuery(a) {
		if err := x.decodeQuery(); err != nil {
			x.Reject(http.StatusBadRequest, audit.ErrBadRequest, "invalid query")
			return false
		}
	}
	x.decision = a.Authorize(q)
	x.Event.Decision = &x.decision
	if !x.decision.Allow {
		// Fail closed: anything but an explicit allow is a deny.
		x.Reject(http.StatusForbidden, "", "access denied")
		return false
	}
	return true
}

// usesQuery reports whether the authorizer reads request.query[...]; one that
// does not say is assumed to.
func usesQuery(a Authorizer) bool {
	if q, ok := a.(interface{ UsesQuery() bool }); ok {
		return q.UsesQuery()
	}
	return true
}

// Admit hands the decided request to the audit seam before anything is
// forwarded. A recorder that refuses (the fail-closed audit) gets a 503: no
// request leaves unaudited.
func (x *Exchange) Admit() bool {
	rec := x.front.opts.Recorder
	if rec == nil {
		return true
	}
	if err := rec.Decided(&x.Event); err != nil {
		x.front.opts.Logger.Error("audit refused the request; answering 503", "requestId", x.Event.RequestID, "err", err)
		x.Reject(http.StatusServiceUnavailable, audit.ErrInternal, "audit unavailable")
		return false
	}
	return true
}

// Fail answers an upstream round trip that failed: its status and kind by
// Classify, the cause in the log, a safe message to the client (nothing
// when the client is gone).
func (x *Exchange) Fail(ctx context.Context, err error) {
	if errors.Is(err, ErrMethodOverrideInBody) {
		// The multipart guard cut the body off at a part naming a method
		// override: the client's request, not the upstream, is at fault.
		x.Reject(http.StatusBadRequest, audit.ErrBadRequest, "method override in the request body")
		return
	}
	status, kind := Classify(ctx, err)
	x.Event.Error = kind
	x.front.opts.Logger.Warn("upstream request failed",
		"requestId", x.Event.RequestID, "front", x.front.opts.Name, "route", x.Event.Route, "kind", string(kind), "err", err)
	if kind == audit.ErrClientCanceled {
		x.w.status = status // nobody is listening; record it, write nothing
		return
	}
	x.w.Header().Set(HeaderRequestID, x.Event.RequestID)
	WriteError(&x.w, status, StatusText(kind), x.Event.RequestID)
}

// Finish completes the audit event and the metrics of the request. Call it
// once, deferred right after Begin.
func (x *Exchange) Finish() {
	ev := &x.Event
	ev.Duration = time.Since(ev.Time)
	ev.Status = x.w.status
	if ev.Status == 0 {
		ev.Status = http.StatusOK
	}
	ev.BytesOut = x.w.bytes
	ev.BytesIn = x.body.n.Load()
	if t := x.tunnel; t != nil {
		ev.BytesIn, ev.BytesOut = t[0], t[1]
	}
	f := x.front
	if m := f.opts.Metrics; m != nil {
		route := ev.Route
		if route == "" {
			route = "-"
		}
		m.ObserveRequest(f.opts.Name, route, ev.Status, ev.Duration)
		if isUpstreamError(ev.Error) {
			m.UpstreamError(f.opts.Name, route, ev.Error)
		}
	}
	if f.opts.Recorder != nil {
		f.opts.Recorder.Completed(ev)
		return
	}
	ev.Release()
}

type exchangeKey struct{}

// Context returns ctx carrying x, for callbacks (a ReverseProxy's
// ModifyResponse and ErrorHandler) that only get the request; a front adds
// values of its own before it clones the request once.
func (x *Exchange) Context(ctx context.Context) context.Context {
	return context.WithValue(ctx, exchangeKey{}, x)
}

// FromContext returns the exchange a context carries, or nil.
func FromContext(ctx context.Context) *Exchange {
	x, _ := ctx.Value(exchangeKey{}).(*Exchange)
	return x
}
