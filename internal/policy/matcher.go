package policy

import (
	"net/netip"
	"regexp"
	"strings"

	"tollgate.dev/tollgate/internal/request"
)

// attr names the request attribute a matcher reads.
type attr uint8

const (
	aHost attr = iota
	aMethod
	aPath
	aPort
	aPrincipal
	aNamespace
	aServiceAccount
	aTrustDomain
	aRequestPrincipal
	aSourceIP
	aRemoteIP
	aDestIP
	aSNI
	aHeader
	aQuery
	aAudiences
	aPresenter
	aClaim
)

// httpOnly reports whether the attribute exists only for HTTP (reference §10).
func (a attr) httpOnly() bool {
	switch a {
	case aHost, aMethod, aPath, aRequestPrincipal, aHeader, aQuery, aAudiences, aPresenter, aClaim:
		return true
	}
	return false
}

// pseudo names the HTTP/2 pseudo-headers a request.headers[...] key may read.
type pseudo uint8

const (
	psNone pseudo = iota
	psMethod
	psAuthority
	psPath
)

// matcher is one compiled field of a source, operation or condition: OR over its
// values, negated for the not… forms. Everything is decided at load; evaluation
// neither allocates nor compiles.
type matcher struct {
	attr attr
	neg  bool
	// strict selects how repeated headers and query parameters are judged: in ALLOW
	// policies (strict) values must hold for every occurrence and notValues for
	// none; in DENY/AUDIT policies values need one occurrence and notValues fails
	// only if every occurrence matches. Either way the result fails closed.
	strict bool

	strs  []strMatch
	hosts []hostMatch
	res   []*regexp.Regexp // path templates, pathRegex, serviceAccounts, wildcard namespaces
	nsExa []string         // namespaces without wildcard, as "/ns/<ns>/"
	nets  []netip.Prefix
	ports []int
	rps   []rpMatch

	name   string // header (lower case) or query parameter name
	pseudo pseudo
	claim  []string
	split  bool // claim is space-delimited (scope, permission)

	// keys are the index keys of a positive hosts or paths matcher: the host
	// without port, or the leading literal path segments, of every request it
	// can match.
	// keyed is false when some value cannot be keyed (a suffix, "*", a regex).
	keys  []string
	keyed bool
}

// rpMatch is one requestPrincipals value split at its last '/' (reference §6).
// A nil side is unconstrained.
type rpMatch struct {
	iss, sub *strMatch
}

// evalCtx carries what Decide derives from a request once.
type evalCtx struct {
	r  *request.Request
	id string // peer SPIFFE ID without "spiffe://"
	td string // its trust domain
}

func newCtx(r *request.Request) evalCtx {
	c := evalCtx{r: r}
	if id, ok := strings.CutPrefix(r.Source.Principal, "spiffe://"); ok {
		c.id = id
		if i := strings.IndexByte(id, '/'); i > 0 {
			c.td = id[:i]
		}
	}
	return c
}

// eval reports whether the field holds for the request. An absent attribute never
// satisfies a positive matcher and always satisfies a negative one.
func (m *matcher) eval(c *evalCtx) bool {
	r := c.r
	var hit bool
	switch m.attr {
	case aHost:
		hit = r.Host != "" && anyHost(m.hosts, r)
	case aMethod:
		hit = r.Method != "" && anyStr(m.strs, r.Method)
	case aPath:
		hit = r.Path != "" && m.matchPath(r.Path)
	case aPort:
		hit = r.Destination.Port > 0 && m.matchPort(r.Destination.Port)
	case aPrincipal:
		hit = m.matchPrincipal(c)
	case aNamespace:
		hit = m.matchNamespace(r.Source.Principal)
	case aServiceAccount:
		hit = r.Source.Principal != "" && anyRegexp(m.res, r.Source.Principal)
	case aTrustDomain:
		hit = c.td != "" && anyStr(m.strs, c.td)
	case aRequestPrincipal:
		hit = r.Auth != nil && m.matchRequestPrincipal(r.Auth)
	case aSourceIP:
		hit = m.matchIP(r.Source.IP)
	case aRemoteIP:
		hit = m.matchIP(r.RemoteIP)
	case aDestIP:
		hit = m.matchIP(r.Destination.IP)
	case aSNI:
		hit = r.SNI != "" && matchSNI(m.strs, r.SNI)
	case aPresenter:
		hit = r.Auth != nil && r.Auth.Presenter != "" && anyStr(m.strs, r.Auth.Presenter)
	case aAudiences:
		if r.Auth != nil {
			for _, a := range r.Auth.Audiences {
				if anyStr(m.strs, a) {
					hit = true
					break
				}
			}
		}
	case aClaim:
		hit = r.Auth != nil && m.matchClaim(r.Auth.Claims)
	case aHeader, aQuery:
		return m.evalRepeated(c)
	}
	return hit != m.neg
}

func anyRegexp(res []*regexp.Regexp, s string) bool {
	for _, re := range res {
		if re.MatchString(s) {
			return true
		}
	}
	return false
}

func (m *matcher) matchPath(p string) bool {
	return anyStr(m.strs, p) || anyRegexp(m.res, p)
}

func (m *matcher) matchPort(p int) bool {
	for _, x := range m.ports {
		if x == p {
			return true
		}
	}
	return false
}

func (m *matcher) matchIP(a netip.Addr) bool {
	if !a.IsValid() {
		return false
	}
	a = a.Unmap()
	for _, n := range m.nets {
		if n.Contains(a) {
			return true
		}
	}
	return false
}

// matchPrincipal compares policy values, written without "spiffe://", with the
// peer's SPIFFE ID; "*" means any authenticated peer.
func (m *matcher) matchPrincipal(c *evalCtx) bool {
	p := c.r.Source.Principal
	if p == "" {
		return false
	}
	for i := range m.strs {
		s := &m.strs[i]
		if s.kind == smNonEmpty {
			return true
		}
		if c.id != "" && s.match(c.id) {
			return true
		}
	}
	return false
}

// matchNamespace is Istio's regex ".*/ns/<ns>/.*" over the whole peer principal.
func (m *matcher) matchNamespace(p string) bool {
	if p == "" {
		return false
	}
	for _, ns := range m.nsExa {
		if strings.Contains(p, ns) {
			return true
		}
	}
	return anyRegexp(m.res, p)
}

func (m *matcher) matchRequestPrincipal(a *request.Auth) bool {
	for _, rp := range m.rps {
		if (rp.iss == nil || rp.iss.match(a.Issuer)) && (rp.sub == nil || rp.sub.match(a.Subject)) {
			return true
		}
	}
	return false
}

// matchClaim follows the claim path through nested objects. A string claim must
// match a value; a list claim matches if any string element does; other types
// never match ("true" is not true).
func (m *matcher) matchClaim(claims map[string]any) bool {
	var v any = claims
	for _, k := range m.claim {
		obj, ok := v.(map[string]any)
		if !ok {
			return false
		}
		if v, ok = obj[k]; !ok {
			return false
		}
	}
	switch x := v.(type) {
	case string:
		if m.split {
			return m.anySpaceToken(x)
		}
		return anyStr(m.strs, x)
	case []any:
		for _, e := range x {
			if s, ok := e.(string); ok && anyStr(m.strs, s) {
				return true
			}
		}
	case []string:
		for _, s := range x {
			if anyStr(m.strs, s) {
				return true
			}
		}
	}
	return false
}

// anySpaceToken matches each space-delimited token of a scope-like claim.
func (m *matcher) anySpaceToken(s string) bool {
	for s != "" {
		tok := s
		if i := strings.IndexByte(s, ' '); i >= 0 {
			tok, s = s[:i], s[i+1:]
		} else {
			s = ""
		}
		if tok != "" && anyStr(m.strs, tok) {
			return true
		}
	}
	return false
}

// evalRepeated judges a header or query parameter that may occur several times.
func (m *matcher) evalRepeated(c *evalCtx) bool {
	var anyHit, allHit bool
	switch {
	case m.attr == aHeader && m.pseudo == psAuthority:
		// Judged as hosts are (hostMatch): the canonical host that routing
		// reads, and its port the way Istio's "name", "name:port" and "name:*"
		// ask for it. Comparing the text "host:port" instead let
		// "Host: a.example:443" past a DENY on a.example.
		anyHit = c.r.Host != "" && anyHost(m.hosts, c.r)
		allHit = anyHit
	case m.attr == aHeader && m.pseudo != psNone:
		v, ok := m.pseudoValue(c.r)
		if ok {
			anyHit = anyStr(m.strs, v)
			allHit = anyHit
		}
	default:
		var vals []string
		if m.attr == aHeader {
			vals = c.r.Headers[m.name]
		} else {
			vals = c.r.Query[m.name]
		}
		allHit = len(vals) > 0
		for _, v := range vals {
			if m.attr == aHeader {
				v = trimOWS(v)
			}
			if anyStr(m.strs, v) {
				anyHit = true
			} else {
				allHit = false
				// RFC 9110 lets a list header's field lines be joined with commas, so
				// "x-role: user, admin" means what two lines "user" and "admin" mean.
				// "Some occurrence matches" must see both forms (the joined form is
				// how CVE-2026-26308 hid a value from a DENY; an ALLOW notValues
				// has the same hole), so it also looks at each element. "Every
				// occurrence matches" stays on whole values: an element never
				// helps a value pass an ALLOW.
				if m.attr == aHeader && !anyHit && strings.IndexByte(v, ',') >= 0 {
					anyHit = anyElement(m.strs, v)
				}
			}
		}
	}
	switch {
	case !m.neg && m.strict:
		return allHit
	case !m.neg:
		return anyHit
	case m.strict:
		return !anyHit
	default:
		return !allHit
	}
}

func (m *matcher) pseudoValue(r *request.Request) (string, bool) {
	switch m.pseudo {
	case psMethod:
		return r.Method, r.Method != ""
	case psPath:
		if r.Path == "" {
			return "", false
		}
		if r.RawQuery != "" {
			// Rare (only [:path] conditions with a query); allocating here is fine.
			return r.Path + "?" + r.RawQuery, true
		}
		return r.Path, true
	}
	return "", false
}

// anyElement reports whether any comma-separated element of a list header value
// matches.
func anyElement(ms []strMatch, v string) bool {
	for e := range strings.SplitSeq(v, ",") {
		if anyStr(ms, trimOWS(e)) {
			return true
		}
	}
	return false
}
