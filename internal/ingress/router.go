package ingress

import (
	"net/http"
	"net/url"
	"slices"
	"strings"

	"tollgate.dev/tollgate/internal/request"
)

// Route sends requests whose host and path match to one upstream.
type Route struct {
	Name string
	// Host is "*", "name", "name:port" or "*.domain" (one label); case-insensitive.
	Host string
	// PathPrefix matches whole segments ("/api" matches "/api" and "/api/x", not "/apix").
	PathPrefix string
	Upstream   *url.URL
	// UpstreamIDs describes the SPIFFE IDs the upstream may present, for logs.
	UpstreamIDs string
	// Transport reaches the upstream (mTLS with the gateway's SVID, pooled).
	Transport http.RoundTripper

	proxy *proxy
	// upstreamURL is Upstream.String(), formatted once for every audit event.
	upstreamURL string
	// parsed host pattern: the canonical name (without "*." for a wildcard)
	// and the port, 0 for any
	hostName string
	hostPort int
	wildcard bool
}

// Router picks the route for a host and normalized path: the most specific host
// pattern wins (exact with port, exact, wildcard, "*"), then the longest prefix.
type Router struct {
	routes []*Route
}

// NewRouter orders routes by specificity. Routes must be valid (config validates).
func NewRouter(routes []*Route) *Router {
	rs := slices.Clone(routes)
	for _, r := range rs {
		r.parseHost()
		r.upstreamURL = r.Upstream.String()
	}
	slices.SortStableFunc(rs, func(a, b *Route) int {
		if sa, sb := a.hostScore(), b.hostScore(); sa != sb {
			return sb - sa
		}
		return len(b.PathPrefix) - len(a.PathPrefix)
	})
	return &Router{routes: rs}
}

// Routes returns the routes in match order.
func (rt *Router) Routes() []*Route { return rt.routes }

// parseHost reads the route's host pattern with the one host canonicalizer
// (request.ParseAuthority) that requests go through, so a route and the
// requests for it can't disagree on a spelling. Config validation has
// refused patterns that don't parse.
func (r *Route) parseHost() {
	if r.Host == "*" {
		r.hostName = "*"
		return
	}
	h, wild := strings.CutPrefix(r.Host, "*.")
	a, _ := request.ParseAuthority(h)
	r.hostName, r.hostPort, r.wildcard = a.Host, a.Port, wild
}

func (r *Route) hostScore() int {
	switch {
	case r.hostName == "*":
		return 0
	case r.wildcard:
		return 1 + boolInt(r.hostPort != 0)
	default:
		return 3 + boolInt(r.hostPort != 0)
	}
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// Match returns the route for a canonical authority and the normalized path,
// or nil. defaultPort is the port an authority without one stands for (the
// listener's).
func (rt *Router) Match(a request.Authority, path string, defaultPort int) *Route {
	port := defaultPort
	if a.Port != 0 {
		port = a.Port
	}
	for _, r := range rt.routes {
		if r.matchHost(a.Host, port) && matchPrefix(r.PathPrefix, path) {
			return r
		}
	}
	return nil
}

func (r *Route) matchHost(name string, port int) bool {
	if r.hostPort != 0 && r.hostPort != port {
		return false
	}
	switch {
	case r.hostName == "*":
		return true
	case r.wildcard:
		// One label only: "*.example.com" must not match "a.b.example.com"
		// (CVE-2020-15104 was a wildcard that matched several labels).
		label, rest, ok := strings.Cut(name, ".")
		return ok && label != "" && rest == r.hostName
	default:
		return name == r.hostName
	}
}

// matchPrefix matches whole path segments.
func matchPrefix(prefix, path string) bool {
	if prefix == "/" {
		return true
	}
	if !strings.HasPrefix(path, prefix) {
		return false
	}
	return len(path) == len(prefix) || strings.HasSuffix(prefix, "/") || path[len(prefix)] == '/'
}
