package ingress

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/textproto"
	"net/url"
	"strings"
	"sync/atomic"

	"golang.org/x/net/http/httpguts"

	"tollgate.dev/tollgate/internal/exchange"
)

// proxy forwards one route's requests to its upstream.
//
// It is a reverse proxy of the gateway's own rather than
// httputil.ReverseProxy, which it follows step by step (hop-by-hop headers,
// X-Forwarded-*, trailers, flushing, protocol switches, aborting a broken
// body) while doing less per request: ReverseProxy deep-copies the request
// and its headers (which hygiene has already made the gateway's own), copies
// every response header value one by one, parses the Content-Type to decide
// on flushing, and builds a client trace to relay 1xx responses. Here one
// allocation holds the outgoing request, its URL and the values the gateway
// sets; header values are shared, not copied.
//
// 1xx informational responses (103 Early Hints, 102 Processing) are not
// relayed: relaying them needs a client trace in the request's context, built
// for every request, for hints a client must do without anyway. The
// upstream's 1xx is consumed by the transport and the client gets the final
// response. 100-continue still works: the transport waits for the upstream's
// 100 before it sends the body, and the gateway's server sends the client its
// own 100 when the body is first read.
type proxy struct {
	transport    http.RoundTripper
	scheme, host string
	// base is a base path of upstream.url ("https://svc:8443/base"), without
	// its trailing slash: a prefix of every forwarded path, as in nginx's
	// proxy_pass ("/hello" is sent as "/base/hello"). config refuses a base
	// path with dot segments, empty segments, escapes or ';', so prefixing
	// can't turn the judged path into another resource; "/" is no base path.
	base string
	log  *slog.Logger
	// peer caches the SPIFFE ID of the upstream's last leaf certificate:
	// formatting the URI for every response would allocate each time.
	peer atomic.Pointer[peerID]
}

type peerID struct {
	leaf *x509.Certificate
	id   string
}

func newProxy(route *Route, log *slog.Logger) *proxy {
	target := route.Upstream
	return &proxy{
		transport: route.Transport,
		scheme:    target.Scheme,
		host:      target.Host,
		base:      strings.TrimSuffix(target.Path, "/"),
		log:       log,
	}
}

// outbound is one forwarded request: the request, its URL, the values of the
// headers the gateway sets, and the lent body, in one allocation.
type outbound struct {
	req  http.Request
	url  url.URL
	vals [3]string // X-Forwarded-For, X-Forwarded-Host, X-Request-Id
	body lentBody
}

// Shared header values. Nothing writes into a header value in place (net/http
// and this package replace or append to clipped slices), so one slice serves
// every request.
var (
	valueHTTP     = []string{"http"}
	valueHTTPS    = []string{"https"}
	valueTrailers = []string{"trailers"}
	valueUpgrade  = []string{"Upgrade"}
	// An empty User-Agent keeps the transport from sending Go's own.
	valueEmpty = []string{""}
)

// Indexes of outbound.vals. Each value is handed on as a slice of capacity
// one, so an append elsewhere copies instead of writing past it.
const (
	valXFF = iota
	valXFH
	valRequestID
)

// serve forwards r, whose URL is the judged path and query (setURL), as o,
// and answers the client from the upstream's response. The route's timeout is
// the transport's ResponseHeaderTimeout: it bounds the wait for the
// upstream's answer, not a streamed body or a WebSocket. The request's
// context cancels the upstream call when the client goes away.
func (p *proxy) serve(x *exchange.Exchange, o *outbound, r *http.Request) {
	ctx := r.Context()
	if err := p.outbound(o, r, x.Event.RequestID); err != nil {
		x.Fail(ctx, err)
		return
	}
	out := &o.req
	if out.Body != nil {
		// The transport may read the body after RoundTrip returns, but not
		// after this handler has (Go issue 46866).
		defer o.body.Close()
	}
	res, err := p.transport.RoundTrip(out)
	if err != nil {
		x.Fail(ctx, err)
		return
	}
	if id := p.peerID(res.TLS); id != "" {
		x.Event.Upstream.SPIFFEID = id
	}
	requestID := o.vals[valRequestID : valRequestID+1 : valRequestID+1]
	if res.StatusCode == http.StatusSwitchingProtocols {
		res.Header[exchange.HeaderRequestID] = requestID
		p.switchProtocols(x, out, res)
		return
	}
	removeHopByHop(res.Header)

	w := x.ResponseWriter()
	h := w.Header()
	// The client can quote the id when it reports a problem; the upstream's
	// own X-Request-Id is replaced.
	res.Header[exchange.HeaderRequestID] = requestID
	for k, vv := range res.Header {
		addValues(h, k, vv)
	}
	// The transport keeps the announced trailers in res.Trailer, not in a
	// Trailer header: announce them again.
	announced := len(res.Trailer)
	if announced > 0 {
		// Trailers need a chunked body on HTTP/1.1, and net/http's server
		// keeps a Content-Length it is given (an HTTP/2 upstream sends one
		// with trailers) and then drops the trailers. ReverseProxy loses
		// them so; the length is the framing of one hop, not the message.
		delete(h, "Content-Length")
		keys := make([]string, 0, announced)
		for k := range res.Trailer {
			keys = append(keys, k)
		}
		addValues(h, "Trailer", []string{strings.Join(keys, ", ")})
	}
	w.WriteHeader(res.StatusCode)

	// Flush as ReverseProxy does by default: after every write for
	// server-sent events and for a body of unknown length (a stream), never
	// for the rest. The headers of a stream go out at once.
	stream := res.ContentLength == -1 || isEventStream(res.Header["Content-Type"])
	if stream {
		w.Flush()
	}
	if err := p.copyBody(w, res.Body, stream); err != nil {
		res.Body.Close()
		// The status line is out: all that can be done with a broken body
		// is to abort the response, so the client can't take a truncated
		// body for a whole one. net/http recovers this panic quietly.
		panic(http.ErrAbortHandler)
	}
	res.Body.Close() // now, not deferred: it fills res.Trailer

	if len(res.Trailer) > 0 {
		// Force chunking, so net/http doesn't compute a Content-Length for a
		// short body and drop the trailers.
		w.Flush()
	}
	if len(res.Trailer) == announced {
		for k, vv := range res.Trailer {
			addValues(h, k, vv)
		}
		return
	}
	// Trailers the upstream did not announce (HTTP/2 needs no Trailer
	// header; gRPC's grpc-status is one): net/http sends those given with
	// TrailerPrefix.
	for k, vv := range res.Trailer {
		addValues(h, http.TrailerPrefix+k, vv)
	}
}

// outbound builds in o the request to send upstream from r, the inbound
// request, which is the gateway's own from here on. Its header map is reused, not
// copied, and so are its values: it is the map hygiene cleaned and policy
// judged, so the upstream gets what policy saw, less the hop-by-hop headers,
// plus the gateway's forwarding headers and request id. Nothing reads r
// again but net/http's server, which lets a handler change r.Header (it
// reads what it needs before the handler runs).
func (p *proxy) outbound(o *outbound, r *http.Request, requestID string) error {
	*o = outbound{req: *r, url: *r.URL}
	out, u, h := &o.req, &o.url, r.Header

	u.Scheme, u.Host = p.scheme, p.host
	if p.base != "" {
		u.Path = p.base + u.Path
		if u.RawPath != "" {
			u.RawPath = p.base + u.RawPath
		}
	}
	// u.RawQuery is the query policy and audit saw (setURL), forwarded as
	// is: not re-encoded, as ReverseProxy does with one it can't parse (a
	// ';', a bad escape).
	out.URL = u
	// Keep the (canonical) Host: policy matched on it, so the upstream gets
	// it too.
	out.Host = r.Host
	out.RequestURI, out.RemoteAddr, out.TLS = "", "", nil
	out.Close = false
	switch {
	case r.ContentLength == 0:
		// No body: nil lets the transport retry the request on a reused
		// connection that turns out closed (Go issue 16036).
		out.Body = nil
	case r.Body != nil:
		// The transport closes the body when it fails; closing the server's
		// body could hang on a client that waits for 100-continue.
		o.body.rc = r.Body
		out.Body = &o.body
	}

	upgrade := upgradeType(h)
	if upgrade != "" && !isPrint(upgrade) {
		return fmt.Errorf("client tried to switch to invalid protocol %q", upgrade)
	}
	te := httpguts.HeaderValuesContainsToken(h["Te"], "trailers")
	// In carries only what hygiene kept: a trusted proxy's X-Forwarded-For is
	// extended, anyone else's was removed, so the upstream sees just the peer.
	prior := h["X-Forwarded-For"]
	removeHopByHop(h)
	// Backends that care about trailers learn that the path supports them
	// (Go issue 21096), if the client said it does.
	if te {
		h["Te"] = valueTrailers
	}
	if upgrade != "" {
		h["Connection"] = valueUpgrade
		h["Upgrade"] = []string{upgrade}
	}
	// Forwarding headers are the gateway's to set: a trusted proxy's
	// Forwarded, X-Forwarded-Host and -Proto are not passed on (as
	// ReverseProxy's Rewrite mode removes them).
	delete(h, "Forwarded")
	delete(h, "X-Forwarded-Host")
	delete(h, "X-Forwarded-Proto")
	if ip, _, err := net.SplitHostPort(r.RemoteAddr); err == nil {
		if len(prior) > 0 {
			ip = strings.Join(prior, ", ") + ", " + ip
		}
		o.vals[valXFF] = ip
		h["X-Forwarded-For"] = o.vals[valXFF : valXFF+1 : valXFF+1]
	} else {
		delete(h, "X-Forwarded-For")
	}
	o.vals[valXFH] = r.Host
	h["X-Forwarded-Host"] = o.vals[valXFH : valXFH+1 : valXFH+1]
	if r.TLS != nil {
		h["X-Forwarded-Proto"] = valueHTTPS
	} else {
		h["X-Forwarded-Proto"] = valueHTTP
	}
	if _, ok := h["User-Agent"]; !ok {
		h["User-Agent"] = valueEmpty
	}
	o.vals[valRequestID] = requestID
	h[exchange.HeaderRequestID] = o.vals[valRequestID : valRequestID+1 : valRequestID+1]
	return nil
}

// peerID is the upstream's SPIFFE ID for the audit event: the one URI SAN of
// its leaf certificate, which the transport's VerifyConnection has checked.
func (p *proxy) peerID(cs *tls.ConnectionState) string {
	if cs == nil || len(cs.PeerCertificates) == 0 {
		return ""
	}
	leaf := cs.PeerCertificates[0]
	if c := p.peer.Load(); c != nil && c.leaf == leaf {
		return c.id
	}
	if len(leaf.URIs) != 1 {
		return ""
	}
	c := &peerID{leaf: leaf, id: leaf.URIs[0].String()}
	p.peer.Store(c)
	return c.id
}

// copyBody copies the upstream's body to the client with a pooled buffer,
// flushing after every write when stream is set.
func (p *proxy) copyBody(w *exchange.Response, body io.Reader, stream bool) error {
	buf := exchange.CopyBuffers.Get()
	defer exchange.CopyBuffers.Put(buf)
	for {
		n, rerr := body.Read(buf)
		if rerr != nil && rerr != io.EOF && rerr != context.Canceled {
			p.log.Debug("upstream body read failed", "err", rerr)
		}
		if n > 0 {
			nw, werr := w.Write(buf[:n])
			if werr != nil {
				return werr
			}
			if nw != n {
				return io.ErrShortWrite
			}
			if stream {
				w.Flush()
			}
		}
		if rerr != nil {
			if rerr == io.EOF {
				return nil
			}
			return rerr
		}
	}
}

// Hop-by-hop headers (RFC 9110 §7.6.1, and RFC 2616's list for the
// senders that still use it): they describe one connection, never the next.
var hopHeaders = []string{
	"Connection",
	"Proxy-Connection", // non-standard, still sent by libcurl
	"Keep-Alive",
	"Proxy-Authenticate",
	"Proxy-Authorization",
	"Te",
	"Trailer",
	"Transfer-Encoding",
	"Upgrade",
}

// removeHopByHop removes the headers Connection names, then the hop-by-hop
// headers. On a request, hygiene has already removed what Connection names
// beyond its standard options, before policy judged the headers.
func removeHopByHop(h http.Header) {
	for _, f := range h["Connection"] {
		for tok := range strings.SplitSeq(f, ",") {
			if tok = textproto.TrimString(tok); tok != "" {
				delete(h, connectionOption(tok))
			}
		}
	}
	for _, k := range hopHeaders {
		delete(h, k)
	}
}

// connectionOption is the header name a Connection token stands for, without
// allocating for the options every browser sends.
func connectionOption(tok string) string {
	switch {
	case asciiEqualFold(tok, "keep-alive"):
		return "Keep-Alive"
	case asciiEqualFold(tok, "close"):
		return "Close"
	case asciiEqualFold(tok, "upgrade"):
		return "Upgrade"
	}
	return textproto.CanonicalMIMEHeaderKey(tok)
}

// addValues adds vv to h[k]: a new key takes the slice as is (its values are
// not copied), an existing one (a Set-Cookie the login step set) is extended
// in a copy.
func addValues(h http.Header, k string, vv []string) {
	if prior, ok := h[k]; ok {
		h[k] = append(prior[:len(prior):len(prior)], vv...)
		return
	}
	h[k] = vv
}

// upgradeType is the protocol a message asks to switch to, or "".
func upgradeType(h http.Header) string {
	if !httpguts.HeaderValuesContainsToken(h["Connection"], "Upgrade") {
		return ""
	}
	if v := h["Upgrade"]; len(v) > 0 {
		return v[0]
	}
	return ""
}

// isEventStream reports whether a Content-Type is text/event-stream, as
// mime.ParseMediaType would find it, without allocating.
func isEventStream(ct []string) bool {
	if len(ct) == 0 {
		return false
	}
	base, _, _ := strings.Cut(ct[0], ";")
	return asciiEqualFold(strings.TrimSpace(base), "text/event-stream")
}

func asciiEqualFold(s, t string) bool {
	if len(s) != len(t) {
		return false
	}
	for i := 0; i < len(s); i++ {
		if lowerByte(s[i]) != lowerByte(t[i]) {
			return false
		}
	}
	return true
}

func lowerByte(c byte) byte {
	if 'A' <= c && c <= 'Z' {
		return c + 'a' - 'A'
	}
	return c
}

func isPrint(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < ' ' || s[i] > '~' {
			return false
		}
	}
	return true
}

// lentBody lends the client's request body to the transport, which closes
// the body it is given when it fails: closing the server's own body early
// could hang on a client waiting for 100-continue. Close only ends the loan;
// a read after it fails.
type lentBody struct {
	rc     io.ReadCloser
	closed atomic.Bool
}

var errBodyReturned = errors.New("ingress: read of a request body after the request ended")

func (b *lentBody) Read(p []byte) (int, error) {
	if b.closed.Load() {
		return 0, errBodyReturned
	}
	return b.rc.Read(p)
}

func (b *lentBody) Close() error {
	b.closed.Store(true)
	return nil
}
