package policy

import (
	"fmt"
	"strings"

	"tollgate.dev/tollgate/internal/request"
)

// hostPort is what a hosts value asks of the port.
type hostPort uint8

const (
	anyPort   hostPort = iota // "name" or "name:*": whatever port the authority carried
	exactPort                 // "name:8443"
)

// hostMatch is one compiled hosts value, or one value of a
// request.headers[:authority] or [host] condition: the same attribute, so the
// same judgment, and a DENY written either way catches the same requests.
// Values are matched against the request's canonical authority
// (request.ParseAuthority), which the router reads too, so a spelling the router treats as one host ("Admin.Example.com.",
// "admin.example.com:8443") is one host for policy as well. Istio compares the
// authority as received instead, so there "admin.example.com" misses
// "admin.example.com:443" and "admin.example.com." — the DENY bypasses Istio's
// docs warn about.
//
// A value without a port matches the host on any port; "name:*" says the same
// in Istio's words; "name:8443" requires port 8443, where a Host without a port
// stands for the port the request arrived on (as routing reads it).
type hostMatch struct {
	name strMatch
	port hostPort
	n    int
}

// parseHostValue compiles one hosts value: "name", "name:port", "name:*",
// with a leading or trailing '*' on the name (suffix or prefix), "*" (any
// host) and "[v6]" forms. Exact names must be valid hosts; they are
// canonicalized as requests are (lower case, no trailing dot, A-labels).
func parseHostValue(v string) (hostMatch, error) {
	if v == "*" {
		return hostMatch{name: strMatch{kind: smPresent}}, nil
	}
	name, port := v, ""
	if strings.HasPrefix(v, "[") {
		if i := strings.IndexByte(v, ']'); i >= 0 {
			name, port = v[:i+1], v[i+1:]
			if port != "" && !strings.HasPrefix(port, ":") {
				return hostMatch{}, fmt.Errorf("invalid host %q", v)
			}
			port = strings.TrimPrefix(port, ":")
		}
	} else if i := strings.LastIndexByte(v, ':'); i >= 0 {
		name, port = v[:i], v[i+1:]
	}
	var h hostMatch
	switch {
	case port == "" && strings.HasSuffix(v, ":"):
		return hostMatch{}, fmt.Errorf("empty port in host %q", v)
	case port == "", port == "*":
	default:
		n, err := request.ParsePort(port)
		if err != nil {
			return hostMatch{}, fmt.Errorf("%v in host %q (want name, name:port or name:*)", err, v)
		}
		h.port, h.n = exactPort, n
	}
	var err error
	if h.name, err = hostPattern(parseStr(name, smPresent), v); err != nil {
		return hostMatch{}, err
	}
	return h, nil
}

// hostPattern puts the name part of a host value into the form the request's
// canonical host is compared in. An exact name is canonicalized as requests are
// (request.CanonicalHost: lower case, no trailing dot, A-labels) or refused; a
// prefix or suffix is lower-cased (a suffix also loses its trailing dot) and
// refused when it holds a character no canonical host has, since it could
// never match: a DENY on it would silently let everything through. v is the
// whole value, for messages.
func hostPattern(m strMatch, v string) (strMatch, error) {
	switch m.kind {
	case smExact:
		c, err := request.CanonicalHost(m.v)
		if err != nil {
			return strMatch{}, fmt.Errorf("%v (want a host name, an IP literal, or one with a leading or trailing '*')", err)
		}
		m.v = c
	case smPrefix, smSuffix:
		lit := strings.ToLower(m.v)
		if m.kind == smSuffix {
			lit = strings.TrimSuffix(lit, ".")
		}
		for i := 0; i < len(lit); i++ {
			switch c := lit[i]; {
			case c >= 0x80:
				return strMatch{}, fmt.Errorf("host %q: write internationalized names in A-labels (xn--) when they carry a '*'", v)
			case 'a' <= c && c <= 'z', '0' <= c && c <= '9', c == '-', c == '_', c == '.', c == '[', c == ']', c == ':':
			default:
				return strMatch{}, fmt.Errorf("host %q: character %q never occurs in a host, so the value could never match", v, c)
			}
		}
		m.v = lit
	}
	return m, nil
}

// parseSNIValue compiles one connection.sni value. The request's SNI is a
// host name without port (RFC 6066), judged in canonical form (matchSNI), so
// the value is canonicalized as a host is: "LOCALHOST" and "localhost." mean
// localhost, "bücher.example" means xn--bcher-kva.example.
func parseSNIValue(v string) (strMatch, error) {
	m := parseStr(v, smNonEmpty)
	if !strings.HasPrefix(v, "[") && strings.IndexByte(v, ':') >= 0 {
		return strMatch{}, fmt.Errorf("invalid server name %q: an SNI carries no port (want a host name)", v)
	}
	return hostPattern(m, v)
}

// matchSNI judges the request's SNI in canonical form. The exchange only
// lower-cases ASCII and drops the trailing dot, while a client may send a
// Unicode name ("BÜCHER.example") that routing and certificates know as
// xn--bcher-kva.example; the canonical SNI costs nothing when it already is.
// An SNI that is no valid host keeps its spelling: no canonical value equals it.
func matchSNI(ms []strMatch, sni string) bool {
	if c, err := request.CanonicalHost(sni); err == nil {
		sni = c
	}
	return anyStr(ms, sni)
}

// match judges the request's canonical authority.
func (h *hostMatch) match(r *request.Request) bool {
	if !h.name.match(r.Host) {
		return false
	}
	if h.port == exactPort {
		p := r.HostPort
		if p == 0 {
			p = r.Destination.Port
		}
		return p == h.n
	}
	return true
}

func anyHost(hs []hostMatch, r *request.Request) bool {
	for i := range hs {
		if hs[i].match(r) {
			return true
		}
	}
	return false
}
