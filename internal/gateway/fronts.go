package gateway

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync"

	"tollgate.dev/tollgate/internal/config"
	"tollgate.dev/tollgate/internal/exchange"
	"tollgate.dev/tollgate/internal/ingress"
	"tollgate.dev/tollgate/internal/listener"
)

// front is one listener of the gateway with its per-request plumbing: the
// ingress for external clients, the mesh listener for in-mesh callers, and
// (next) the egress. Every front is built, started, swapped on reload and
// drained the same way; what differs between them is in frontSpec.
type front struct {
	frontConfig
	ex      *exchange.Front
	handler frontHandler
	server  *listener.Server
	// trustsProxies: the front believes forwarding headers from
	// ingress.trustedProxies (callers in the mesh are not proxies).
	trustsProxies bool
	// misdirected is the front's domain-fronting check, or nil; in force
	// unless ingress.misdirectedRequests is ALLOW.
	misdirected func(sni, host string) bool
}

// frontHandler is a front's request handler: the ingress's router and
// reverse proxy, or the egress's forward proxy. swap installs the live set l
// and the policy set c (nil: no policy files) as one snapshot, with what
// they hold for front f's scope, and returns log attributes that count it.
type frontHandler interface {
	http.Handler
	swap(c *Compiled, l *liveSet, f *front) []any
}

// ingressHandler adapts the ingress and mesh fronts' handler.
type ingressHandler struct{ *ingress.Handler }

func (h ingressHandler) swap(c *Compiled, l *liveSet, f *front) []any {
	s := *h.Snapshot()
	s.Router, s.Normalize, s.Rules = l.router, l.ingressNorm, f.rules(l.cfg)
	if f.name == "ingress" {
		s.Logins = l.logins
	}
	var counts []any
	if c != nil {
		w := frontWorkload(l.cfg, f.name)
		engine, authn := c.Policies.EngineFor(w), c.Authn.ForWorkload(w)
		s.Authorize, s.Authenticate = authorizer{engine}, authn
		counts = []any{f.name + "Policies", engine.Len(), f.name + "JWTRules", authn.Len()}
	}
	h.Swap(&s)
	return counts
}

// frontWorkload is the scope of the front named name under cfg.
func frontWorkload(cfg *config.Gateway, name string) config.Workload {
	return frontConfigIn(cfg, name).workload
}

// frontConfig is where a front is configured: its name, the field of its
// listen address, the address, and the scope policy documents are chosen by.
type frontConfig struct {
	name, field, listen string
	workload            config.Workload
	// timeouts and limits are the listener's (the mesh listener shares the
	// ingress's).
	timeouts *config.Timeouts
	limits   *config.Limits
}

// configuredFronts are the fronts cfg configures, in the order the gateway
// builds them: the one list that the gateway, `gateway check` (documents
// that apply to no listener) and the policy reload rules go by.
func configuredFronts(cfg *config.Gateway) []frontConfig {
	var fs []frontConfig
	if in := cfg.Ingress; in != nil {
		fs = append(fs, frontConfig{name: "ingress", field: "ingress.listen", listen: in.Listen, workload: in.Workload(),
			timeouts: &in.Timeouts, limits: &in.Limits})
		if m := in.Mesh; m != nil {
			fs = append(fs, frontConfig{name: "mesh", field: "ingress.mesh.listen", listen: m.Listen, workload: m.Workload(),
				timeouts: &in.Timeouts, limits: &in.Limits})
		}
	}
	if e := cfg.Egress; e != nil {
		fs = append(fs, frontConfig{name: "egress", field: "egress.listen", listen: e.Listen, workload: e.Workload(),
			timeouts: &e.Timeouts, limits: &e.Limits})
	}
	return fs
}

// frontSpec is what one front's listener has of its own; everything else
// (timeouts, limits, the protocol-error answer, metrics) is the same for all.
type frontSpec struct {
	certs      listener.CertSource
	clientAuth func(*tls.Config)
}

// newExchange returns the per-request plumbing of a front named name; its
// header and host rules come with each snapshot (front.rules).
func (g *Gateway) newExchange(name string) *exchange.Front {
	opts := exchange.Options{
		Name:     name,
		Recorder: g.audit,
		Metrics:  metricsAdapter{g.metrics},
		Logger:   g.log,
	}
	if e := g.cfg.Egress; name == "egress" && e != nil {
		opts.RedactQueryValues, opts.KeepQueryValues = true, e.AuditQueryValues
	}
	return exchange.New(opts)
}

// underscoreAction maps the validated configuration name to the exchange's
// action; anything else rejects (fail closed).
func underscoreAction(name string) exchange.UnderscoreAction {
	for i, n := range exchange.UnderscoreActions {
		if n == name {
			return exchange.UnderscoreAction(i)
		}
	}
	return exchange.RejectUnderscores
}

// frontConfig returns the configuration of the front named name.
func (g *Gateway) frontConfig(name string) frontConfig { return frontConfigIn(g.cfg, name) }

// frontConfigIn returns the configuration of the front named name under cfg.
func frontConfigIn(cfg *config.Gateway, name string) frontConfig {
	for _, fc := range configuredFronts(cfg) {
		if fc.name == name {
			return fc
		}
	}
	panic("gateway: no front named " + name) // a programming error: names are constants
}

// openFront builds f's listener with the settings every front shares, and
// adds it to the gateway's fronts.
func (g *Gateway) openFront(f *front, spec frontSpec) error {
	t, l := f.timeouts, f.limits
	metrics := g.metrics
	srv, err := listener.New(listener.Config{
		Addr:              f.listen,
		Handler:           f.handler,
		Certs:             spec.certs,
		ClientAuth:        spec.clientAuth,
		ReadHeaderTimeout: t.ReadHeader,
		ReadTimeout:       t.Read,
		WriteTimeout:      t.Write,
		IdleTimeout:       t.Idle,
		MaxHeaderBytes:    l.MaxHeaderBytes,
		MaxHeaderCount:    l.MaxHeaderCount,
		MaxConnections:    l.MaxConnections,
		// A source's share of a full listener: its idle connections go
		// first, its new ones are refused (listener.Config).
		MaxConnectionsPerSource: l.MaxConnectionsPerSource,
		Logger:                  g.log,
		OnTLSHandshakeError: func(hf listener.HandshakeFailure) {
			metrics.TLSHandshakeError(f.name)
			// Every connection that reaches a listener leaves a record,
			// even one that never got to send a request.
			f.ex.HandshakeFailed(hf)
		},
		OnConnectionLimit: func() { metrics.ConnectionLimitReached(f.name) },
		OnConnectionShed:  func(reason string) { metrics.ConnectionShed(f.name, reason) },
		OnHTTP2Error:      func(errType string) { metrics.HTTP2Error(f.name, errType) },
		// Requests net/http refuses unparsed get the gateway's JSON error,
		// a request id and an audit event like every other.
		OnProtocolError: f.ex.Refused,
	})
	if err != nil {
		return fmt.Errorf("%s listener: %w", f.name, err)
	}
	f.server = srv
	g.fronts = append(g.fronts, f)
	g.health.AddCheck(f.name+"-listener", func() error {
		if srv.Addr() == nil {
			return fmt.Errorf("%s listener not bound", f.name)
		}
		return nil
	})
	return nil
}

// startFronts binds every front's listener; on an error the ones already
// started are left for Shutdown to stop.
func (g *Gateway) startFronts() error {
	for _, f := range g.fronts {
		ln, err := net.Listen("tcp", f.listen)
		if err != nil {
			return &ListenError{Field: f.field, Addr: f.listen, Err: err}
		}
		if err := f.server.Start(ln); err != nil {
			ln.Close()
			return &ListenError{Field: f.field, Addr: f.listen, Err: err}
		}
	}
	return nil
}

// shutdownFronts stops every front's listener at once and waits for their
// in-flight requests until ctx is done.
func (g *Gateway) shutdownFronts(ctx context.Context) error {
	var wg sync.WaitGroup
	errs := make([]error, len(g.fronts))
	for i, f := range g.fronts {
		if f.server == nil {
			continue
		}
		wg.Go(func() { errs[i] = f.server.Shutdown(ctx) })
	}
	wg.Wait()
	return errors.Join(errs...)
}

// frontAddr is the bound address of the front named name, or nil.
func (g *Gateway) frontAddr(name string) net.Addr {
	for _, f := range g.fronts {
		if f.name == name && f.server != nil {
			return f.server.Addr()
		}
	}
	return nil
}

// ListenError is a listener that could not be bound, named by the
// configuration field that sets its address.
type ListenError struct {
	Field, Addr string
	Err         error
}

func (e *ListenError) Error() string {
	return fmt.Sprintf("%s %s: %v", e.Field, e.Addr, e.Err)
}

func (e *ListenError) Unwrap() error { return e.Err }

// rules are f's header and host rules under cfg.
func (f *front) rules(cfg *config.Gateway) *exchange.Rules {
	r := &exchange.Rules{Misdirected: f.misdirected}
	if e := cfg.Egress; f.name == "egress" && e != nil {
		r.Underscores = underscoreAction(e.HeadersWithUnderscores)
		return r
	}
	if in := cfg.Ingress; in != nil {
		r.Underscores = underscoreAction(in.HeadersWithUnderscores)
		if f.trustsProxies {
			r.TrustedProxies = config.ParsePrefixes(in.TrustedProxies)
		}
		if in.MisdirectedRequests == "ALLOW" {
			r.Misdirected = nil
		}
	}
	return r
}
