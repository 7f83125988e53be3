package ingress

import (
	"log/slog"
	"net/http"
	"net/http/httputil"
	"strings"

	"tollgate.dev/tollgate/internal/exchange"
)

// proxy forwards one route's requests to its upstream.
type proxy struct {
	rp    *httputil.ReverseProxy
	route *Route
}

func newProxy(route *Route, log *slog.Logger) *proxy {
	p := &proxy{route: route}
	target := route.Upstream
	// A base path in upstream.url ("https://svc:8443/base") is a prefix of
	// every forwarded path, as in nginx's proxy_pass: "/hello" is sent as
	// "/base/hello". config refuses a base path with dot segments, empty
	// segments, escapes or ';', so prefixing can't turn the judged path into
	// another resource; "/" is no base path.
	base := strings.TrimSuffix(target.Path, "/")
	p.rp = &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.Out.URL.Scheme = target.Scheme
			pr.Out.URL.Host = target.Host
			if base != "" {
				pr.Out.URL.Path = base + pr.In.URL.Path
				if pr.In.URL.RawPath != "" {
					pr.Out.URL.RawPath = base + pr.In.URL.RawPath
				}
			}
			// ReverseProxy re-encodes a query it can't parse (a ';', a bad escape)
			// after Rewrite unless RawQuery is set here: the upstream must get
			// the query as sent, which is what policy and audit saw.
			pr.Out.URL.RawQuery = pr.In.URL.RawQuery
			// Keep the (canonical) Host: policy matched on it, so the upstream gets it too.
			pr.Out.Host = pr.In.Host
			// In carries only what hygiene kept: a trusted proxy's X-Forwarded-For is
			// extended, anyone else's was removed, so the upstream sees just the peer.
			if xff := pr.In.Header["X-Forwarded-For"]; xff != nil {
				pr.Out.Header["X-Forwarded-For"] = xff
			}
			pr.SetXForwarded()
		},
		Transport:  route.Transport,
		BufferPool: &exchange.CopyBuffers,
		ErrorLog:   slog.NewLogLogger(log.Handler(), slog.LevelDebug),
		ModifyResponse: func(resp *http.Response) error {
			x := exchange.FromContext(resp.Request.Context())
			if x == nil {
				return nil
			}
			// The client can quote the id when it reports a problem.
			resp.Header.Set(exchange.HeaderRequestID, x.Event.RequestID)
			if resp.TLS != nil && len(resp.TLS.PeerCertificates) > 0 {
				if uris := resp.TLS.PeerCertificates[0].URIs; len(uris) == 1 {
					x.Event.Upstream.SPIFFEID = uris[0].String()
				}
			}
			return nil
		},
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			x := exchange.FromContext(r.Context())
			if x == nil {
				status, _ := exchange.Classify(r.Context(), err)
				w.WriteHeader(status)
				return
			}
			x.Fail(r.Context(), err)
		},
	}
	return p
}

func (p *proxy) serve(x *exchange.Exchange, r *http.Request) {
	// The route's timeout is the transport's ResponseHeaderTimeout: it bounds the
	// wait for the upstream's answer, not a streamed body or a WebSocket.
	p.rp.ServeHTTP(x.ResponseWriter(), x.WithContext(r))
}
