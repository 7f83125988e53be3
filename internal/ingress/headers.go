package ingress

import (
	"crypto/rand"
	"encoding/hex"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"sync/atomic"
)

// Header names the gateway sets. A client can't send its own values for these:
// they are removed from every inbound request before the gateway sets them.
const (
	HeaderRequestID = "X-Request-Id"
)

// spoofable are inbound headers that carry identity or provenance. From an
// untrusted peer every one of them is removed (CVE-2020-8843: internal headers
// trusted from outside; CVE-2023-27487: x-envoy-original-path). From a trusted
// proxy they are kept; the proxy step then extends X-Forwarded-For, sets
// X-Forwarded-Host/-Proto itself, and (as ReverseProxy does) drops Forwarded.
var forwardingHeaders = []string{
	"X-Forwarded-For", "X-Forwarded-Host", "X-Forwarded-Proto", "X-Forwarded-Port",
	"X-Forwarded-Prefix", "Forwarded", "X-Real-Ip", "X-Original-Forwarded-For",
}

// alwaysStripped are removed whoever the peer is: only the gateway may set them.
var alwaysStripped = []string{
	"X-Forwarded-Client-Cert", "X-Original-Url", "X-Rewrite-Url", "X-Original-Uri",
}

// alwaysStrippedPrefixes are header-name prefixes only the gateway (or an Envoy
// behind it) may set.
var alwaysStrippedPrefixes = []string{"X-Tollgate-", "X-Envoy-", "X-Istio-"}

// sanitize removes client-supplied identity headers from h, the login's claim
// headers among them (X-Tollgate-*).
func sanitize(h http.Header, trusted bool) {
	dropConnectionNamed(h)
	if !trusted {
		for _, k := range forwardingHeaders {
			delete(h, k)
		}
	}
	for _, k := range alwaysStripped {
		delete(h, k)
	}
	for k := range h {
		for _, p := range alwaysStrippedPrefixes {
			if strings.HasPrefix(k, p) {
				delete(h, k)
			}
		}
	}
}

// dropConnectionNamed removes the headers a client names in Connection (other
// than the standard options). ReverseProxy removes them too, but only after
// policy has judged them, and after the gateway has set its own headers: a
// client could otherwise show policy a header the upstream never gets, or
// strip X-Request-Id or a claim header the gateway set (RFC 9110 §7.6.1).
// Connection keeps only the standard options, so ReverseProxy finds no name
// in it to remove from what the gateway sets later.
func dropConnectionNamed(h http.Header) {
	conn := h["Connection"]
	if conn == nil {
		return
	}
	var kept []string
	dropped := false
	for _, v := range conn {
		for tok := range strings.SplitSeq(v, ",") {
			tok = strings.TrimSpace(tok)
			switch {
			case tok == "":
			case strings.EqualFold(tok, "close"), strings.EqualFold(tok, "keep-alive"), strings.EqualFold(tok, "upgrade"):
				kept = append(kept, tok)
			default:
				delete(h, http.CanonicalHeaderKey(tok))
				dropped = true
			}
		}
	}
	switch {
	case !dropped:
	case len(kept) == 0:
		delete(h, "Connection")
	default:
		h["Connection"] = []string{strings.Join(kept, ", ")}
	}
}

// isTrusted reports whether the peer address is a trusted proxy.
func isTrusted(peer netip.Addr, trusted []netip.Prefix) bool {
	for _, p := range trusted {
		if p.Contains(peer) {
			return true
		}
	}
	return false
}

// requestIDs makes request ids: a random per-process prefix and a counter, unique
// across instances without a syscall per request.
type requestIDs struct {
	prefix string
	n      atomic.Uint64
}

func newRequestIDs() *requestIDs {
	var b [8]byte
	rand.Read(b[:])
	return &requestIDs{prefix: hex.EncodeToString(b[:]) + "-"}
}

func (g *requestIDs) next() string {
	return g.prefix + strconv.FormatUint(g.n.Add(1), 36)
}

// validRequestID accepts a trusted proxy's id only if it is short and plain, so it
// can't smuggle log-injection or header tricks.
func validRequestID(s string) bool {
	if s == "" || len(s) > 128 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_' || c == '.') {
			return false
		}
	}
	return true
}

// clientAddr parses the peer address of r.
func clientAddr(remote string) (netip.AddrPort, bool) {
	ap, err := netip.ParseAddrPort(remote)
	if err != nil {
		return netip.AddrPort{}, false
	}
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()), true
}
