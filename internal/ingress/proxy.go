package ingress

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httputil"

	"tollgate.dev/tollgate/internal/audit"
)

// proxy forwards one route's requests to its upstream.
type proxy struct {
	rp    *httputil.ReverseProxy
	route *Route
	h     *Handler
}

type exchangeKey struct{}

func newProxy(route *Route, h *Handler) *proxy {
	p := &proxy{route: route, h: h}
	target := route.Upstream
	p.rp = &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.Out.URL.Scheme = target.Scheme
			pr.Out.URL.Host = target.Host
			// ReverseProxy re-encodes a query it can't parse (a ';', a bad escape)
			// after Rewrite unless RawQuery is set here: the upstream must get
			// the query as sent, which is what policy and audit saw.
			pr.Out.URL.RawQuery = pr.In.URL.RawQuery
			// Keep the client's Host: policy matched on it, so the upstream gets it too.
			pr.Out.Host = pr.In.Host
			// In carries only what sanitize kept: a trusted proxy's X-Forwarded-For is
			// extended, anyone else's was removed, so the upstream sees just the peer.
			if xff := pr.In.Header["X-Forwarded-For"]; xff != nil {
				pr.Out.Header["X-Forwarded-For"] = xff
			}
			pr.SetXForwarded()
		},
		Transport: route.Transport,
		ErrorLog:  slog.NewLogLogger(h.opts.Logger.Handler(), slog.LevelDebug),
		ModifyResponse: func(resp *http.Response) error {
			x, _ := resp.Request.Context().Value(exchangeKey{}).(*exchange)
			if x == nil {
				return nil
			}
			// The client can quote the id when it reports a problem.
			resp.Header.Set(HeaderRequestID, x.ev.RequestID)
			if resp.TLS != nil && len(resp.TLS.PeerCertificates) > 0 {
				if uris := resp.TLS.PeerCertificates[0].URIs; len(uris) == 1 {
					x.ev.Upstream.SPIFFEID = uris[0].String()
				}
			}
			return nil
		},
		ErrorHandler: p.fail,
	}
	return p
}

func (p *proxy) serve(x *exchange, r *http.Request) {
	// The route's timeout is the transport's ResponseHeaderTimeout: it bounds the
	// wait for the upstream's answer, not a streamed body or a WebSocket.
	p.rp.ServeHTTP(&x.w, r.WithContext(context.WithValue(r.Context(), exchangeKey{}, x)))
}

// fail maps a round-trip error to the client's answer.
func (p *proxy) fail(w http.ResponseWriter, r *http.Request, err error) {
	x, _ := r.Context().Value(exchangeKey{}).(*exchange)
	status, kind := classify(r.Context(), err)
	if x == nil {
		w.WriteHeader(status)
		return
	}
	x.ev.Error = kind
	p.h.opts.Logger.Warn("upstream request failed",
		"requestId", x.ev.RequestID, "route", p.route.Name, "kind", string(kind), "err", err)
	if kind == audit.ErrClientCanceled {
		x.w.status = status // nobody is listening; record it, write nothing
		return
	}
	writeError(w, status, statusText(kind), x.ev.RequestID)
}

// responseRecorder counts what the client got. It unwraps for
// http.ResponseController, so flushing and upgrades (WebSockets) pass through.
type responseRecorder struct {
	http.ResponseWriter
	status int
	bytes  int64
}

func (w *responseRecorder) WriteHeader(code int) {
	if w.status == 0 && code >= 200 {
		w.status = code
	}
	if code == http.StatusSwitchingProtocols {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *responseRecorder) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	n, err := w.ResponseWriter.Write(b)
	w.bytes += int64(n)
	return n, err
}

func (w *responseRecorder) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// Flush lets streamed responses through without a ResponseController lookup.
func (w *responseRecorder) Flush() {
	http.NewResponseController(w.ResponseWriter).Flush()
}

// countingReader counts request body bytes.
type countingReader struct {
	io.ReadCloser
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.ReadCloser.Read(p)
	c.n += int64(n)
	return n, err
}

func countingBody(r *http.Request) *countingReader {
	if r.Body == nil || r.Body == http.NoBody {
		return nil
	}
	c := &countingReader{ReadCloser: r.Body}
	r.Body = c
	return c
}
