package listener

import "strings"

// Misdirected reports whether a request whose TLS handshake sent SNI sni
// and whose Host (or :authority) is host would be served under a different
// certificate than its connection was: that is, whether the certificate
// the store picks for host, its port removed and case and one trailing
// dot ignored, is not the one it picks for sni. Both go through the same
// lookup as the handshake, unknown names included (they get the default
// certificate), against the certificates serving now.
//
// A client that names one site in SNI and another in Host is domain
// fronting: it gets through SNI-based filtering, and past the certificate
// check, to a site the connection was not set up for. The gateway answers
// such requests 421 Misdirected Request (RFC 9110 §15.5.20), on which a
// browser that reused a connection for another host (HTTP/2 connection
// coalescing: the certificate covers both names, but the store serves
// the other from a certificate of its own) retries on a new connection.
// A request without SNI is never misdirected: a client
// that sent none (one connecting by IP) was served the default
// certificate and named nothing to compare with. An empty host is a name
// no certificate covers.
func (s *CertStore) Misdirected(sni, host string) bool {
	if sni == "" {
		return false
	}
	idx := s.idx.Load() // once, so that a reload can't come in between
	byHost, _ := idx.lookup(hostOnly(host))
	bySNI, _ := idx.lookup(sni)
	return byHost != bySNI
}

// hostOnly removes the port from a Host value: "a.example.com:8443" and
// "[::1]:8443" give "a.example.com" and "::1". A bare IPv6 address (more
// than one colon, no brackets) is not a valid Host but is left whole
// rather than cut at its last colon.
func hostOnly(host string) string {
	if rest, ok := strings.CutPrefix(host, "["); ok {
		if addr, _, ok := strings.Cut(rest, "]"); ok {
			return addr
		}
		return host
	}
	if i := strings.LastIndexByte(host, ':'); i >= 0 && strings.IndexByte(host, ':') == i {
		return host[:i]
	}
	return host
}
