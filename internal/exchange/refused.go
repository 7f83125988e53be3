package exchange

import (
	"crypto/tls"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"tollgate.dev/tollgate/internal/audit"
	"tollgate.dev/tollgate/internal/listener"
	"tollgate.dev/tollgate/internal/request"
)

// maxRefusedPath bounds the path an audit event keeps of a request refused
// unparsed: a header-size refusal may come with a request line of megabytes.
const maxRefusedPath = 1024

// HandshakeFailed records a failed TLS handshake (the listener's
// OnTLSHandshakeError) as a connection record: the client, the listener,
// the SNI if it was sent and why it failed; no request was read. Plain HTTP
// on the TLS port is recorded by Refused, which answers it.
func (f *Front) HandshakeFailed(hf listener.HandshakeFailure) {
	if hf.Reason == listener.HandshakePlainHTTP {
		return
	}
	rec := f.opts.Recorder
	if rec == nil {
		return
	}
	ev := &audit.Event{Time: hf.Time, Kind: f.kind, Error: audit.ErrTLSHandshake, TLSError: hf.Reason,
		RequestID: processIDs.next(), SNI: canonicalSNI(hf.ServerName)}
	if ev.Time.IsZero() {
		ev.Time = time.Now()
	}
	if peer := tcpAddrPort(hf.RemoteAddr); peer.IsValid() {
		ev.Client = audit.Endpoint{Address: peer.Addr().String(), Port: int(peer.Port())}
	}
	if local := tcpAddrPort(hf.LocalAddr); local.IsValid() {
		ev.Listener = audit.Endpoint{Address: f.listenerAddr(local.Addr()), Port: int(local.Port())}
	}
	rec.Completed(ev)
}

// Refused answers and audits a request the listener refused before any
// handler saw it (malformed HTTP/1.x, an unsupported Expect, version or
// Transfer-Encoding, plain HTTP on the TLS port, too many or too large
// headers). It is the listener's OnProtocolError: without it these answers
// would be net/http's plain text, with no request id, no audit event and no
// metric, and a probe of the parser would leave no trace.
//
// It returns the complete HTTP/1.1 response to send: the gateway's JSON
// error with a fresh request id (never the client's: nothing of a refused
// request is trusted), and Connection: close.
func (f *Front) Refused(pe listener.ProtocolError) []byte {
	ev := &audit.Event{Time: pe.Time, Kind: f.kind, Status: pe.Status, Error: audit.ErrBadRequest}
	if ev.Time.IsZero() {
		ev.Time = time.Now()
	}
	ev.RequestID = processIDs.next()
	if peer := tcpAddrPort(pe.RemoteAddr); peer.IsValid() {
		ev.Client = audit.Endpoint{Address: peer.Addr().String(), Port: int(peer.Port())}
	}
	if local := tcpAddrPort(pe.LocalAddr); local.IsValid() {
		ev.Listener = audit.Endpoint{Address: f.listenerAddr(local.Addr()), Port: int(local.Port())}
	}
	if pe.TLS != nil {
		ev.SNI = canonicalSNI(pe.TLS.ServerName)
		ev.TLSVersion = tls.VersionName(pe.TLS.Version)
		ev.TLSCipher = cipherNames[pe.TLS.CipherSuite]
	}
	if r := pe.Request; r != nil {
		ev.Method, ev.Protocol, ev.UserAgent = r.Method, r.Proto, r.UserAgent()
		if a, err := request.ParseAuthority(r.Host); err == nil {
			ev.Host = a.String()
		}
		if r.URL != nil {
			ev.Path = truncate(r.URL.EscapedPath(), maxRefusedPath)
			ev.Query = audit.RedactQuery(truncate(r.URL.RawQuery, maxRefusedPath), nil)
		}
	}
	msg := refusalText(pe.Status)
	f.opts.Logger.Debug("request refused by the listener",
		"requestId", ev.RequestID, "front", f.opts.Name, "status", pe.Status, "reason", pe.Reason)
	body := ErrorBody(msg, ev.RequestID)
	ev.BytesOut = int64(len(body))
	if m := f.opts.Metrics; m != nil {
		m.ObserveRequest(f.opts.Name, "-", pe.Status, time.Since(ev.Time))
	}
	if rec := f.opts.Recorder; rec != nil {
		rec.Completed(ev)
	}
	var b strings.Builder
	b.Grow(256 + len(body))
	b.WriteString("HTTP/1.1 ")
	b.WriteString(strconv.Itoa(pe.Status))
	b.WriteByte(' ')
	b.WriteString(http.StatusText(pe.Status))
	b.WriteString("\r\nContent-Type: application/json\r\nCache-Control: no-store\r\nX-Content-Type-Options: nosniff\r\n")
	b.WriteString(HeaderRequestID + ": " + ev.RequestID + "\r\n")
	b.WriteString("Connection: close\r\nContent-Length: ")
	b.WriteString(strconv.Itoa(len(body)))
	b.WriteString("\r\n\r\n")
	b.Write(body)
	return []byte(b.String())
}

// refusalText is the safe message of a listener refusal. The listener's
// reason is fixed text too, but these say what to fix without naming the
// parser.
func refusalText(status int) string {
	switch status {
	case http.StatusRequestHeaderFieldsTooLarge:
		return "request headers too large"
	case http.StatusExpectationFailed:
		return "unsupported expectation"
	case http.StatusNotImplemented:
		return "unsupported transfer encoding"
	case http.StatusHTTPVersionNotSupported:
		return "unsupported HTTP version"
	default:
		return "malformed request"
	}
}

func tcpAddrPort(a net.Addr) netip.AddrPort {
	if t, ok := a.(*net.TCPAddr); ok {
		ap := t.AddrPort()
		return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
	}
	return netip.AddrPort{}
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}
