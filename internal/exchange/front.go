package exchange

import (
	"crypto/tls"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"tollgate.dev/tollgate/internal/audit"
	"tollgate.dev/tollgate/internal/identity"
	"tollgate.dev/tollgate/internal/request"
)

// Recorder is the audit seam. Decided is called once the gateway has decided
// to forward a request, before anything is forwarded: a recorder that returns
// an error (a fail-closed audit that could not make the decision durable)
// makes the exchange answer 503 instead, so nothing unaudited goes out.
// Completed is called once per request when it is over, refused or not; the
// recorder owns the event from then on.
type Recorder interface {
	Decided(*audit.Event) error
	Completed(*audit.Event)
}

// Observer receives request metrics, labelled by front and route.
type Observer interface {
	ObserveRequest(front, route string, code int, d time.Duration)
	UpstreamError(front, route string, kind audit.ErrorKind)
}

// Options configure a Front; they are fixed for its life. Rules are the
// default for requests that begin without rules of their own (Begin).
type Options struct {
	// Name is the front's name, "ingress", "mesh" or "egress": the audit
	// event's kind, the metrics' front label, request.Request.Front.
	Name string
	Rules
	// RedactQueryValues records only the keys of a request's query in the
	// audit event, and the values of KeepQueryValues (egress, where a query
	// may carry anything a workload sends out). Off: only the values of
	// sensitive parameters are redacted (audit.RedactQuery).
	RedactQueryValues bool
	KeepQueryValues   []string
	Recorder          Recorder
	Metrics           Observer
	Logger            *slog.Logger
}

// Rules are what a front believes of a request's headers and host. They
// belong to the configuration a reload replaces, so the fronts carry them in
// the snapshot each request loads once, with its router and policies.
type Rules struct {
	// TrustedProxies are the peers whose forwarding headers and request id
	// are believed.
	TrustedProxies []netip.Prefix
	// Underscores says what to do with header names holding '_'.
	Underscores UnderscoreAction
	// Misdirected, when set, reports a request whose Host would have been
	// served another certificate than its SNI chose (domain fronting): 421.
	Misdirected func(sni, host string) bool
}

// Front is the per-request plumbing of one front (one listener).
type Front struct {
	opts Options
	kind audit.Kind
	// listener is the last listener address formatted for the audit event: a
	// front serves one listener, so formatting it per request would be waste.
	listener atomic.Pointer[addrText]
}

type addrText struct {
	ip   netip.Addr
	text string
}

// New returns a front.
func New(opts Options) *Front {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	return &Front{opts: opts, kind: audit.Kind(opts.Name)}
}

// Name is the front's name.
func (f *Front) Name() string { return f.opts.Name }

// Logger is the front's operational logger.
func (f *Front) Logger() *slog.Logger { return f.opts.Logger }

func (f *Front) listenerAddr(ip netip.Addr) string {
	if c := f.listener.Load(); c != nil && c.ip == ip {
		return c.text
	}
	c := &addrText{ip: ip, text: ip.String()}
	f.listener.Store(c)
	return c.text
}

// Begin starts the exchange of one request: ids, the event's connection and
// TLS facts, the canonical request description (authority, client address,
// destination, peer identity), and header hygiene. It always returns the
// exchange, whose Finish the caller must defer; ok is false when Begin has
// already refused the request (400 for an invalid host or an underscore
// header, 421 for a misdirected one, 403 for an upgrade the gateway does not
// relay). rules are the caller's snapshot's; nil: the front's Options.Rules.
func (f *Front) Begin(w http.ResponseWriter, r *http.Request, rules *Rules) (x *Exchange, ok bool) {
	x = new(Exchange)
	return x, f.BeginIn(x, w, r, rules)
}

// BeginIn is Begin with the exchange in x, which the caller allocated
// or took from Acquire. x is overwritten whole.
func (f *Front) BeginIn(x *Exchange, w http.ResponseWriter, r *http.Request, rules *Rules) (ok bool) {
	if rules == nil {
		rules = &f.opts.Rules
	}
	*x = Exchange{front: f, w: Response{ResponseWriter: w}, owner: x.owner}
	ev := &x.Event
	ev.Time = time.Now()
	ev.Kind = f.kind
	ev.Method, ev.Protocol, ev.UserAgent = r.Method, r.Proto, r.UserAgent()

	peer := clientAddr(r.RemoteAddr)
	ev.Client = audit.Endpoint{Address: peerText(peer.Addr(), r.RemoteAddr), Port: int(peer.Port())}
	q := &x.Req
	q.Protocol, q.Front, q.Method, q.Headers = request.HTTP, f.opts.Name, r.Method, r.Header
	q.Source.IP = peer.Addr()
	if la, ok := r.Context().Value(http.LocalAddrContextKey).(*net.TCPAddr); ok {
		ap := la.AddrPort()
		ip := ap.Addr().Unmap()
		q.Destination.IP, q.Destination.Port = ip, int(ap.Port())
		ev.Listener = audit.Endpoint{Address: f.listenerAddr(ip), Port: la.Port}
	}
	if tp := r.Header["Traceparent"]; len(tp) == 1 {
		ev.TraceID = traceID(tp[0])
	}
	if r.TLS != nil {
		q.SNI = canonicalSNI(r.TLS.ServerName)
		ev.SNI, ev.TLSVersion = q.SNI, tls.VersionName(r.TLS.Version)
		ev.TLSCipher = cipherNames[r.TLS.CipherSuite]
		if len(r.TLS.PeerCertificates) > 0 {
			// Only an SVID that identity's VerifyConnection accepted yields an
			// ID, so a certificate with a forged URI SAN can't name a principal.
			if id, ok := identity.PeerID(*r.TLS); ok {
				q.Source.Principal = id.String()
				ev.SourcePrincipal = q.Source.Principal
			}
		}
	}
	trusted := inPrefixes(peer.Addr(), rules.TrustedProxies)
	x.trusted = trusted
	ev.RequestID = r.Header.Get(HeaderRequestID)
	if !trusted || !validRequestID(ev.RequestID) {
		ev.RequestID = processIDs.next()
	}
	// Read before hygiene removes an untrusted peer's X-Forwarded-For.
	q.RemoteIP = request.ClientIP(peer.Addr(), r.Header["X-Forwarded-For"], rules.TrustedProxies)
	if r.Body != nil && r.Body != http.NoBody {
		x.body.ReadCloser = r.Body
		r.Body = &x.body
	}
	// HTTP/2's server gives a request without a body one that reads
	// nothing, with ContentLength 0.
	if x.owner != nil && (x.body.ReadCloser == nil || r.ContentLength == 0) {
		x.Event.Lend(x.owner)
	}

	// HTTP/2 carries the authority in :authority alone: a :path that is not
	// origin-form ("https://admin.example.com/x") is malformed (RFC 9113
	// §8.3.1), and reading either authority would leave the other unjudged.
	if r.ProtoMajor >= 2 && r.Method != http.MethodConnect && r.RequestURI != "*" && !strings.HasPrefix(r.RequestURI, "/") {
		x.Reject(http.StatusBadRequest, audit.ErrBadRequest, "unsupported request target")
		return false
	}
	if !hygiene(r.Header, trusted, rules.Underscores) {
		x.Reject(http.StatusBadRequest, audit.ErrBadRequest, "header names with underscores are not accepted")
		return false
	}
	// One canonical host for routing, policy, cookies and the upstream: a
	// spelling the router would treat as this host ("Admin.example.com.")
	// must not be judged as another by policy.
	a, err := request.ParseAuthority(r.Host)
	if err != nil {
		f.opts.Logger.Debug("host rejected", "requestId", ev.RequestID, "err", err)
		x.Reject(http.StatusBadRequest, audit.ErrBadRequest, "invalid host")
		return false
	}
	// HTTP/2 keeps a "host" field beside :authority in the header map; a
	// request whose two differ is ambiguous (RFC 9113 §8.3.1), and policy's
	// request.headers[host] must not read another host than routing did.
	if hs, ok := r.Header["Host"]; ok {
		for _, h := range hs {
			if ha, err := request.ParseAuthority(h); err != nil || ha != a {
				x.Reject(http.StatusBadRequest, audit.ErrBadRequest, "host and :authority differ")
				return false
			}
		}
		delete(r.Header, "Host")
	}
	q.Host, q.HostPort = a.Host, a.Port
	if !sameAuthority(r.Host, a) {
		r.Host = a.String()
	}
	ev.Host = r.Host
	if rules.Misdirected != nil && q.SNI != "" && rules.Misdirected(q.SNI, a.Host) {
		x.Reject(http.StatusMisdirectedRequest, audit.ErrBadRequest, "misdirected request: host and TLS server name differ")
		return false
	}
	if !upgradeAllowed(r) {
		x.Reject(http.StatusForbidden, audit.ErrBadRequest, "upgrade not allowed")
		return false
	}
	switch checkFormBody(r) {
	case 0:
	case http.StatusRequestEntityTooLarge:
		x.Reject(http.StatusRequestEntityTooLarge, audit.ErrBadRequest, "form body too large")
		return false
	default:
		x.Reject(http.StatusBadRequest, audit.ErrBadRequest, "method override in the request body")
		return false
	}
	return true
}

// sameAuthority reports whether raw is already a's canonical spelling, so the
// common case keeps the client's string instead of formatting a new one.
func sameAuthority(raw string, a request.Authority) bool {
	if a.Port == 0 {
		return raw == a.Host
	}
	if len(raw) <= len(a.Host)+1 || raw[:len(a.Host)] != a.Host || raw[len(a.Host)] != ':' {
		return false
	}
	p, err := strconv.Atoi(raw[len(a.Host)+1:])
	return err == nil && p == a.Port
}

// clientAddr parses the peer address of a request.
func clientAddr(remote string) netip.AddrPort {
	ap, err := netip.ParseAddrPort(remote)
	if err != nil {
		return netip.AddrPort{}
	}
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
}

// peerText is ip's text: the host part of remote (the peer address as
// net/http gives it) when that is already exactly ip's text, as it is for
// every plain address, so the common case formats nothing.
func peerText(ip netip.Addr, remote string) string {
	var buf [48]byte
	if host, _, err := net.SplitHostPort(remote); err == nil && ip.IsValid() && string(ip.AppendTo(buf[:0])) == host {
		return host
	}
	return ip.String()
}

func inPrefixes(a netip.Addr, ps []netip.Prefix) bool {
	for _, p := range ps {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

func lowerASCII(s string) string {
	for i := 0; i < len(s); i++ {
		if 'A' <= s[i] && s[i] <= 'Z' {
			return strings.ToLower(s)
		}
	}
	return s
}

// canonicalSNI is the TLS server name in the one canonical host form that
// routing and policy use (lower case, no trailing dot, A-labels), so that the
// audit event and the misdirected check name what policy judges. A name that
// can't be canonicalized is kept lower-cased: it can match no certificate or
// rule written for a real name.
func canonicalSNI(sni string) string {
	if sni == "" {
		return ""
	}
	if h, err := request.CanonicalHost(sni); err == nil {
		return h
	}
	return lowerASCII(strings.TrimSuffix(sni, "."))
}
