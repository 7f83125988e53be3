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

// hostMatch is one compiled hosts value. Values are matched against the
// request's canonical authority (request.ParseAuthority), which the router
// reads too, so a spelling the router treats as one host ("Admin.Example.com.",
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
	h.name = parseStr(name, smPresent)
	switch h.name.kind {
	case smExact:
		c, err := request.CanonicalHost(name)
		if err != nil {
			return hostMatch{}, fmt.Errorf("%v (want a host name, an IP literal, or one with a leading or trailing '*')", err)
		}
		h.name.v = c
	case smPrefix, smSuffix:
		lit := strings.ToLower(h.name.v)
		if h.name.kind == smSuffix {
			lit = strings.TrimSuffix(lit, ".")
		}
		for i := 0; i < len(lit); i++ {
			if lit[i] >= 0x80 {
				return hostMatch{}, fmt.Errorf("host %q: write internationalized names in A-labels (xn--) when they carry a '*'", v)
			}
		}
		h.name.v = lit
	}
	return h, nil
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
