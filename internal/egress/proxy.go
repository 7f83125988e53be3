package egress

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/http/httputil"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"tollgate.dev/tollgate/internal/audit"
	"tollgate.dev/tollgate/internal/exchange"
	"tollgate.dev/tollgate/internal/request"
)

// DialFunc dials a destination address ("host:port"). The SSRF guard's
// DialContext is the one the gateway uses: it resolves once, checks every
// address, and dials only a checked one.
type DialFunc func(ctx context.Context, network, addr string) (net.Conn, error)

// Normalizer turns the path-and-query of a request-target into the one
// normalized path and the raw query to forward (the ingress's normalizer).
type Normalizer func(target string) (path, rawQuery string, err error)

// Snapshot is everything a call reads that can change at run time; a reload
// swaps in a new one whole.
type Snapshot struct {
	Destinations *Registry
	// Authorize is nil when no policy applies to the egress listener: then
	// every call to a registered destination is allowed, as in Istio.
	Authorize exchange.Authorizer
	// Normalize is the path normalizer (egress.normalization).
	Normalize Normalizer
	// Rules are the front's header rules; nil: the front's own.
	Rules *exchange.Rules
}

// ProxyOptions configure a Proxy; they are fixed for its life.
type ProxyOptions struct {
	// Front is the shared per-request plumbing of the egress listener.
	Front *exchange.Front
	Dial  DialFunc
	// DialTimeout bounds TCP + TLS to a destination; ResponseHeaderTimeout
	// the wait for its response headers.
	DialTimeout, ResponseHeaderTimeout time.Duration
	Logger                             *slog.Logger
	// Tunnel runs CONNECT tunnels; the zero value takes the defaults.
	Tunnel Tunnel
	// Credentials are injected into HTTP calls to a destination, by the
	// destination's host pattern (Destination.Host).
	Credentials map[string]*Credentials
	// AllowAny (Istio's outboundTrafficPolicy ALLOW_ANY) lets calls go to
	// hosts no ServiceEntry declares: HTTP is originated over TLS verified
	// against the system roots (port 80 to 443, other ports as asked), and a
	// CONNECT tunnels to the port asked. Policy and the SSRF guard still
	// judge every call. Off (REGISTRY_ONLY), an undeclared host is a 403.
	AllowAny bool
	// RootCAs verify destinations whose DestinationRule names no
	// caCertificates (and every ALLOW_ANY destination); nil: the system
	// roots.
	RootCAs *x509.CertPool
}

// Proxy is the egress listener's handler: a forward proxy on the shared
// exchange. A workload sends plain HTTP inside its mTLS connection, in
// absolute form ("GET http://api.example.com/v1/x") or origin form with Host;
// the proxy finds the destination, judges the call by who is calling and
// exactly what is called, then originates TLS to the destination and
// forwards the judged request.
type Proxy struct {
	opts  ProxyOptions
	front *exchange.Front
	snap  atomic.Pointer[Snapshot]
	rp    *httputil.ReverseProxy

	mu    sync.Mutex
	pools map[*Port]*http.Transport // one keep-alive pool per destination port
	// anyDests are the destinations made for hosts the registry doesn't
	// declare, under AllowAny.
	anyDests map[anyKey]*Destination
}

// NewProxy returns a proxy serving snap.
func NewProxy(opts ProxyOptions, snap *Snapshot) *Proxy {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	p := &Proxy{opts: opts, front: opts.Front, pools: map[*Port]*http.Transport{}, anyDests: map[anyKey]*Destination{}}
	p.rp = &httputil.ReverseProxy{
		Rewrite:        p.rewrite,
		BufferPool:     &exchange.CopyBuffers,
		Transport:      roundTripper{p},
		ErrorLog:       slog.NewLogLogger(opts.Logger.Handler(), slog.LevelDebug),
		ModifyResponse: modifyResponse,
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			if x := exchange.FromContext(r.Context()); x != nil {
				var denied *DeniedError
				var unresolved *ResolveError
				switch {
				case errors.As(err, &denied):
					// The SSRF guard refused every address the name resolved
					// to: nothing was dialled.
					opts.Logger.Info("egress destination refused by the SSRF guard",
						"requestId", x.Event.RequestID, "host", denied.Host, "addr", denied.Addr, "class", denied.Class.String(), "reason", denied.Reason)
					if denied.Addr.IsValid() {
						x.Event.Upstream.Address = denied.Addr.String()
					}
					refuse(x, http.StatusForbidden, "destination_address_denied", "destination address not allowed")
				case errors.As(err, &unresolved):
					opts.Logger.Info("egress destination did not resolve", "requestId", x.Event.RequestID, "host", unresolved.Host, "err", unresolved.Err)
					x.ResponseWriter().Header().Set(exchange.HeaderError, "destination_unresolved")
					x.Event.Error = audit.ErrUpstreamUnreachable
					x.Reject(http.StatusBadGateway, audit.ErrUpstreamUnreachable, "destination did not resolve")
				default:
					x.Fail(r.Context(), err)
				}
				return
			}
			status, _ := exchange.Classify(r.Context(), err)
			w.WriteHeader(status)
		},
	}
	p.Swap(snap)
	return p
}

// Swap installs a new snapshot for calls that start from now on. Pools of
// ports the new snapshot no longer has are closed once idle.
func (p *Proxy) Swap(s *Snapshot) {
	old := p.snap.Swap(s)
	if old == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	for port, t := range p.pools {
		t.CloseIdleConnections()
		delete(p.pools, port)
	}
}

// Snapshot returns the snapshot in use.
func (p *Proxy) Snapshot() *Snapshot { return p.snap.Load() }

// Close closes every pooled connection that is idle.
func (p *Proxy) Close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, t := range p.pools {
		t.CloseIdleConnections()
	}
}

// call is what the proxy decided for one request, for the rewrite and the
// round trip.
type call struct {
	x     *exchange.Exchange
	dest  *Destination
	port  *Port
	trace httptrace.ClientTrace
}

type callKey struct{}

func (p *Proxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	snap := p.snap.Load()
	x, ok := p.front.Begin(w, r, snap.Rules)
	defer x.Finish()
	if !ok {
		return
	}
	ev := &x.Event
	if r.Method == http.MethodConnect {
		p.connect(x, snap, w, r)
		return
	}
	// A workload asks for http:// (the gateway originates TLS); an https://
	// target would need the workload's own TLS inside a tunnel (CONNECT).
	if r.URL.Scheme != "" && r.URL.Scheme != "http" {
		refuse(x, http.StatusBadRequest, "scheme", "send http:// requests through this proxy; the gateway originates TLS")
		return
	}
	if r.URL.User != nil {
		// "http://allowed.example@evil.example/": whatever a parser makes of
		// userinfo, it is never a destination.
		refuse(x, http.StatusBadRequest, "userinfo", "userinfo in the request target is not accepted")
		return
	}
	target, err := exchange.PathOfTarget(r.RequestURI)
	if err != nil {
		refuse(x, http.StatusBadRequest, "target", "unsupported request target")
		return
	}
	path, rawQuery, err := snap.Normalize(target)
	if err != nil {
		refuse(x, http.StatusBadRequest, "path", "invalid request path")
		return
	}
	x.SetTarget(path, rawQuery)

	q := &x.Req
	port := q.HostPort
	if port == 0 {
		port = 80
	}
	// The destination port is what the workload asked for, not the
	// listener's: policy's `ports` and destination.port judge it.
	q.Destination.Port, q.Destination.IP = port, netip.Addr{}
	dest, dp, found := p.lookup(snap, q.Host, port, false)
	switch {
	case !found:
		refuse(x, http.StatusForbidden, "destination_not_registered", "destination not allowed")
		return
	case dp.Mode == ModePassthrough:
		// A raw tunnel port never carries an HTTP request the gateway could
		// not judge; and an HTTP request is never sent there in clear.
		refuse(x, http.StatusForbidden, "destination_passthrough", "destination takes CONNECT only")
		return
	}
	ev.Route = dest.Ref
	ev.Upstream.URL = dp.targetOrigin(q.Host)
	creds := p.opts.Credentials[dest.Host]
	if creds != nil {
		// The workload's own copies go before policy judges the call: the
		// destination gets the gateway's value, never a client's.
		for _, name := range creds.Names() {
			for k := range r.Header {
				if strings.EqualFold(k, name) {
					delete(r.Header, k)
				}
			}
		}
	}
	if snap.Authorize != nil && !x.Authorize(snap.Authorize) {
		return
	}
	if !x.Admit() {
		return
	}
	if creds != nil {
		// Added after authorization: policy never sees the secret, and a
		// call it refused never carries it.
		if err := creds.Apply(r.Context(), r.Header); err != nil {
			p.opts.Logger.Error("egress credential unavailable; refusing the call", "requestId", ev.RequestID, "destination", dest.Ref, "err", err)
			x.ResponseWriter().Header().Set(exchange.HeaderError, "credential_unavailable")
			x.Reject(http.StatusServiceUnavailable, audit.ErrInternal, "credential unavailable")
			return
		}
	}
	r.Header.Set(exchange.HeaderRequestID, ev.RequestID)
	c := &call{x: x, dest: dest, port: dp}
	// The address the request went to, pooled connection or new, for the
	// audit record.
	c.trace.GotConn = func(info httptrace.GotConnInfo) {
		ev.Upstream.Address = info.Conn.RemoteAddr().String()
	}
	// One clone of the request carries all three: the exchange, the call,
	// the trace.
	ctx := httptrace.WithClientTrace(context.WithValue(x.Context(r.Context()), callKey{}, c), &c.trace)
	p.rp.ServeHTTP(x.ResponseWriter(), r.WithContext(ctx))
}

// rewrite sends the judged request to the destination over TLS: the
// normalized path, the query as sent, the canonical host.
func (p *Proxy) rewrite(pr *httputil.ProxyRequest) {
	c := pr.In.Context().Value(callKey{}).(*call)
	q := &c.x.Req
	pr.Out.URL.Scheme = "https"
	pr.Out.URL.Host = c.port.targetHostPort(q.Host)
	pr.Out.URL.Path = pr.In.URL.Path
	pr.Out.URL.RawPath = q.Path
	pr.Out.URL.RawQuery = q.RawQuery
	pr.Out.URL.User = nil
	// The destination sees its own name; a non-default target port is part
	// of it.
	pr.Out.Host = q.Host
	if c.port.Target != 443 {
		pr.Out.Host = pr.Out.URL.Host
	}
	// Nothing about the workload's network leaves: no X-Forwarded-*.
	for k := range pr.Out.Header {
		if len(k) > 12 && k[:12] == "X-Forwarded-" {
			delete(pr.Out.Header, k)
		}
	}
	delete(pr.Out.Header, "Forwarded")
}

func modifyResponse(resp *http.Response) error {
	x := exchange.FromContext(resp.Request.Context())
	if x == nil {
		return nil
	}
	resp.Header.Set(exchange.HeaderRequestID, x.Event.RequestID)
	if resp.TLS != nil {
		x.Event.Upstream.TLSVersion = tls.VersionName(resp.TLS.Version)
	}
	return nil
}

// roundTripper picks the pool of the call's destination port.
type roundTripper struct{ p *Proxy }

func (rt roundTripper) RoundTrip(req *http.Request) (*http.Response, error) {
	c := req.Context().Value(callKey{}).(*call)
	return rt.p.pool(c.port).RoundTrip(req)
}

// pool returns the keep-alive pool of a destination port, made on first use
// from the TLS settings read at load.
func (p *Proxy) pool(port *Port) *http.Transport {
	p.mu.Lock()
	defer p.mu.Unlock()
	if t, ok := p.pools[port]; ok {
		return t
	}
	tlsCfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if port.tlsConfig != nil {
		tlsCfg = port.tlsConfig.Clone()
	}
	if tlsCfg.RootCAs == nil {
		tlsCfg.RootCAs = p.opts.RootCAs
	}
	if port.TLS != nil && port.TLS.SNI != "" {
		tlsCfg.ServerName = port.TLS.SNI
	}
	t := &http.Transport{
		DialContext:           p.opts.Dial,
		TLSClientConfig:       tlsCfg,
		TLSHandshakeTimeout:   p.opts.DialTimeout,
		ResponseHeaderTimeout: p.opts.ResponseHeaderTimeout,
		ForceAttemptHTTP2:     true,
		MaxIdleConnsPerHost:   64,
		IdleConnTimeout:       90 * time.Second,
		// Proxy must stay nil: the gateway is the proxy.
	}
	p.pools[port] = t
	return t
}

// refuse answers a call the proxy won't make, with the reason also in
// X-Tollgate-Error for clients that only show headers (as Smokescreen's
// X-Smokescreen-Error).
func refuse(x *exchange.Exchange, status int, reason, msg string) {
	x.ResponseWriter().Header().Set(exchange.HeaderError, reason)
	kind := audit.ErrBadRequest
	if status == http.StatusForbidden {
		kind = audit.ErrDestinationDenied
	}
	x.Reject(status, kind, msg)
}

// connect serves a CONNECT to a passthrough destination: the workload speaks
// TLS to the destination itself, inside the tunnel. The call is judged with
// Istio's TCP rules (ALLOW rules that need HTTP fields don't match; DENY
// rules widen) on the destination port, the caller, and connection.sni,
// which is the CONNECT host: the tunnel then refuses a ClientHello that names
// another (or hides its name with ECH) before anything is dialled.
func (p *Proxy) connect(x *exchange.Exchange, snap *Snapshot, w http.ResponseWriter, r *http.Request) {
	q := &x.Req
	if q.HostPort == 0 {
		refuse(x, http.StatusBadRequest, "target", "CONNECT needs host:port")
		return
	}
	port := q.HostPort
	q.Protocol, q.Method, q.Path, q.RawQuery = request.TCP, "", "", ""
	q.Destination.Port, q.Destination.IP = port, netip.Addr{}
	// The name the tunnel will require of the ClientHello.
	q.SNI = q.Host
	x.Event.SNI = q.Host
	dest, dp, found := p.lookup(snap, q.Host, port, true)
	switch {
	case !found:
		refuse(x, http.StatusForbidden, "destination_not_registered", "destination not allowed")
		return
	case dp.Mode != ModePassthrough:
		// A port the gateway originates TLS to (and judges by method, path
		// and query) is never reachable by a raw tunnel that would skip
		// those rules.
		refuse(x, http.StatusForbidden, "destination_not_passthrough", "destination takes HTTP requests only; send http:// through this proxy")
		return
	}
	x.Event.Route = dest.Ref
	target := net.JoinHostPort(q.Host, strconv.Itoa(dp.Target))
	x.Event.Upstream.URL = "tls://" + target
	if snap.Authorize != nil && !x.Authorize(snap.Authorize) {
		return
	}
	if !x.Admit() {
		return
	}
	var stream TunnelStream
	if r.ProtoMajor == 1 {
		conn, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			x.Fail(r.Context(), err)
			return
		}
		if _, err := io.WriteString(conn, "HTTP/1.1 200 Connection Established\r\n"+exchange.HeaderRequestID+": "+x.Event.RequestID+"\r\n\r\n"); err != nil {
			conn.Close()
			return
		}
		stream = ConnStream(conn, brw.Reader)
	} else {
		x.ResponseWriter().Header().Set(exchange.HeaderRequestID, x.Event.RequestID)
		x.ResponseWriter().WriteHeader(http.StatusOK)
		http.NewResponseController(w).Flush()
		stream = RequestStream(r.Body, w)
	}
	dial := func(ctx context.Context) (net.Conn, error) {
		conn, err := p.opts.Dial(ctx, "tcp", target)
		if err == nil {
			x.Event.Upstream.Address = conn.RemoteAddr().String()
		}
		return conn, err
	}
	res := p.opts.Tunnel.Run(r.Context(), stream, q.Host, dial)
	// The audit event counts from the client (in) and to it (out).
	x.SetTunnelBytes(res.BytesOut, res.BytesIn)
	if res.Err != nil && !errors.Is(res.Err, io.EOF) {
		var mismatch *SNIMismatchError
		var denied *DeniedError
		switch {
		case errors.As(res.Err, &mismatch), errors.Is(res.Err, ErrECH), errors.Is(res.Err, ErrNoSNI), errors.As(res.Err, &denied):
			x.Event.Error = audit.ErrDestinationDenied
		case errors.Is(res.Err, ErrHelloTimeout), errors.Is(res.Err, ErrTunnelIdle):
			x.Event.Error = audit.ErrTimeout
		}
		p.opts.Logger.Info("egress tunnel ended", "requestId", x.Event.RequestID, "host", q.Host, "err", res.Err)
	}
}

// lookup finds the destination port of a call: the registry's, or, with
// AllowAny, one made for a host it doesn't declare (never for a declared
// host whose port is undeclared: the declaration says which ports there
// are). An IP literal is never a destination.
func (p *Proxy) lookup(snap *Snapshot, host string, port int, tunnel bool) (*Destination, *Port, bool) {
	d, dp, found := snap.Destinations.Lookup(host, port)
	if found || d != nil || !p.opts.AllowAny || isIP(host) {
		return d, dp, found
	}
	key := anyKey{host, port, tunnel}
	p.mu.Lock()
	defer p.mu.Unlock()
	if d, ok := p.anyDests[key]; ok {
		return d, &d.Ports[0], true
	}
	if len(p.anyDests) >= maxAnyDestinations {
		// Bounded: a workload asking for ever new names must not grow the
		// destinations and their pools without end. Start over; calls in
		// flight keep their pools, which close once idle.
		for _, old := range p.anyDests {
			if t, ok := p.pools[&old.Ports[0]]; ok {
				t.CloseIdleConnections()
				delete(p.pools, &old.Ports[0])
			}
		}
		clear(p.anyDests)
	}
	pt := Port{Number: port, Target: port, Protocol: "TLS", Mode: ModePassthrough}
	if !tunnel {
		pt.Protocol, pt.Mode = "HTTP", ModeOriginate
		if port == 80 {
			pt.Target = 443
		}
	}
	d = &Destination{Host: host, Ports: []Port{pt}, Ref: "ALLOW_ANY"}
	p.anyDests[key] = d
	return d, &d.Ports[0], true
}

// anyKey names a destination made for ALLOW_ANY.
type anyKey struct {
	host   string
	port   int
	tunnel bool
}

// maxAnyDestinations bounds the destinations (and pools) made for ALLOW_ANY.
const maxAnyDestinations = 1024
