package policy

import (
	"errors"
	"fmt"
	"net/netip"
	"regexp"
	"regexp/syntax"
	"strconv"
	"strings"
	"tollgate.dev/tollgate/internal/config"
)

// principals compiles peer identities written as Istio does, without "spiffe://".
// Values naming the local trust domain, one of its aliases or "cluster.local" are
// expanded to every local trust domain (reference §5).
func (b *builder) principals(path string, vals []string) (matcher, bool) {
	m := matcher{attr: aPrincipal}
	ok := true
	for i, v := range vals {
		if strings.HasPrefix(strings.ToLower(v), "spiffe://") {
			if b.ext {
				// Tollgate documents may write the SPIFFE ID patterns routes use, so
				// one vocabulary names peers everywhere.
				s, err := spiffePattern(v)
				if err != nil {
					b.d.Errorf(fmt.Sprintf("%s[%d]", path, i), "%v", err)
					ok = false
					continue
				}
				m.strs = append(m.strs, s)
				continue
			}
			// Istio prepends spiffe:// itself, so this value would never match:
			// an ALLOW would deny everything and a DENY would let everything in.
			b.d.Errorf(fmt.Sprintf("%s[%d]", path, i), "write principals without the spiffe:// prefix (got %q, want %q): Istio would silently never match this value (apiVersion %s accepts SPIFFE ID patterns)",
				v, strings.TrimPrefix(v, v[:len("spiffe://")]), APIVersionTollgateV1)
			ok = false
			continue
		}
		for _, x := range b.expandPrincipal(v) {
			m.strs = append(m.strs, parseStr(x, smNonEmpty))
		}
	}
	return m, ok
}

func (b *builder) expandPrincipal(v string) []string {
	parts := strings.Split(v, "/")
	if len(parts) != 5 || parts[1] != "ns" || parts[3] != "sa" || strings.Contains(parts[0], "*") {
		return []string{v}
	}
	tds := b.opts.trustDomains()
	if parts[0] != "cluster.local" && !contains(tds, parts[0]) {
		return []string{v}
	}
	rest := strings.Join(parts[1:], "/")
	out := make([]string, 0, len(tds))
	for _, td := range tds {
		out = append(out, td+"/"+rest)
	}
	return out
}

// requestPrincipals splits each value at its last '/' into issuer and subject.
func (b *builder) requestPrincipals(vals []string) matcher {
	m := matcher{attr: aRequestPrincipal}
	for _, v := range vals {
		m.rps = append(m.rps, parseRequestPrincipal(v))
	}
	return m
}

func parseRequestPrincipal(v string) rpMatch {
	ptr := func(s strMatch) *strMatch { return &s }
	nonEmpty := strMatch{kind: smNonEmpty}
	if v == "*" {
		return rpMatch{iss: ptr(nonEmpty), sub: ptr(nonEmpty)}
	}
	if i := strings.LastIndexByte(v, '/'); i >= 0 {
		return rpMatch{iss: ptr(parseStr(v[:i], smNonEmpty)), sub: ptr(parseStr(v[i+1:], smNonEmpty))}
	}
	s := parseStr(v, smNonEmpty)
	switch s.kind {
	case smSuffix: // "*@example.com" constrains the subject
		return rpMatch{sub: ptr(s)}
	case smPrefix:
		return rpMatch{iss: ptr(s)}
	}
	return rpMatch{iss: ptr(s), sub: ptr(strMatch{kind: smExact})}
}

// namespaces is Istio's ".*/ns/<ns>/.*" over the peer principal; a '*' anywhere
// in the value becomes ".*", everything else is literal.
func (b *builder) namespaces(vals []string) matcher {
	m := matcher{attr: aNamespace}
	for _, v := range vals {
		if !strings.Contains(v, "*") {
			m.nsExa = append(m.nsExa, "/ns/"+v+"/")
			continue
		}
		parts := strings.Split(v, "*")
		for i := range parts {
			parts[i] = regexp.QuoteMeta(parts[i])
		}
		m.res = append(m.res, regexp.MustCompile(`^.*/ns/`+strings.Join(parts, ".*")+`/.*$`))
	}
	return m
}

func (b *builder) ips(path string, a attr, vals []string) (matcher, bool) {
	m := matcher{attr: a}
	var ok bool
	m.nets, ok = parseEach(b, path, vals, parseIPBlock)
	return m, ok
}

func parseIPBlock(v string) (netip.Prefix, error) {
	if strings.Contains(v, "/") {
		p, err := netip.ParsePrefix(v)
		if err != nil {
			return netip.Prefix{}, fmt.Errorf("invalid CIDR (got %q, want e.g. 10.0.0.0/8)", v)
		}
		return netip.PrefixFrom(p.Addr().Unmap(), p.Bits()).Masked(), nil
	}
	a, err := netip.ParseAddr(v)
	if err != nil || a.Zone() != "" {
		return netip.Prefix{}, fmt.Errorf("invalid IP address (got %q, want an IP or CIDR)", v)
	}
	a = a.Unmap()
	return netip.PrefixFrom(a, a.BitLen()), nil
}

const (
	maxServiceAccounts   = 16
	maxServiceAccountLen = 320
)

// serviceAccounts compiles "ns/sa" (or "sa" in the policy's namespace) into
// Istio's regex, with every value quoted (CVE-2026-39350: "my.sa" must not match
// "myxsa").
func (b *builder) serviceAccounts(path string, vals []string) (matcher, bool) {
	m := matcher{attr: aServiceAccount}
	ok := len(vals) <= maxServiceAccounts
	if !ok {
		b.d.Errorf(path, "too many service accounts (got %d, want at most %d)", len(vals), maxServiceAccounts)
	}
	for i, v := range vals {
		p := fmt.Sprintf("%s[%d]", path, i)
		ns, sa, found := strings.Cut(v, "/")
		if !found {
			ns, sa = b.ns, v
		}
		switch {
		case len(v) > maxServiceAccountLen:
			b.d.Errorf(p, "too long (got %d characters, want at most %d)", len(v), maxServiceAccountLen)
		case strings.Contains(v, "*"):
			b.d.Errorf(p, "wildcards are not allowed in serviceAccounts (got %q)", v)
		case strings.Count(v, "/") > 1 || ns == "" || sa == "":
			b.d.Errorf(p, `want "namespace/serviceaccount" or "serviceaccount" (got %q)`, v)
		default:
			m.res = append(m.res, regexp.MustCompile(`^spiffe://.+/ns/`+regexp.QuoteMeta(ns)+`/(.+/|)sa/`+regexp.QuoteMeta(sa)+`(/.+)?$`))
			continue
		}
		ok = false
	}
	return m, ok
}

// trustDomainValues compiles trustDomains: exact, "*", or one '*' at one end;
// values naming a local trust domain match every local trust domain.
func (b *builder) trustDomainValues(path string, vals []string) (matcher, bool) {
	m := matcher{attr: aTrustDomain}
	ok := true
	tds := b.opts.trustDomains()
	for i, v := range vals {
		n := strings.Count(v, "*")
		if strings.Contains(v, "/") || n > 1 || (n == 1 && !strings.HasPrefix(v, "*") && !strings.HasSuffix(v, "*")) {
			b.d.Errorf(fmt.Sprintf("%s[%d]", path, i), "invalid trust domain (got %q, want a name without '/' and at most one '*' at its start or end)", v)
			ok = false
			continue
		}
		if contains(tds, v) {
			for _, td := range tds {
				m.strs = append(m.strs, strMatch{kind: smExact, v: td})
			}
			continue
		}
		m.strs = append(m.strs, parseStr(v, smNonEmpty))
	}
	return m, ok
}

func (b *builder) ports(path string, vals []string) (matcher, bool) {
	m := matcher{attr: aPort}
	ok := true
	for i, v := range vals {
		n, err := parsePort(v)
		if err != nil {
			b.d.Errorf(fmt.Sprintf("%s[%d]", path, i), "%v", err)
			ok = false
			continue
		}
		m.ports = append(m.ports, n)
	}
	return m, ok
}

func parsePort(v string) (int, error) {
	n, err := strconv.ParseUint(v, 10, 32)
	if err != nil || n > 65535 {
		return 0, fmt.Errorf("invalid port (got %q, want an integer 0-65535)", v)
	}
	return int(n), nil
}

func (b *builder) paths(path string, vals []string) (matcher, bool) {
	m := matcher{attr: aPath, keyed: true}
	ok := true
	key := func(literal string, complete bool) {
		if k, ok := pathKey(literal, complete); ok {
			m.keys = appendKey(m.keys, k)
		} else {
			m.keyed = false
		}
	}
	for i, v := range vals {
		if !strings.Contains(v, "{*}") && !strings.Contains(v, "{**}") {
			s := parseStr(v, smNonEmpty)
			m.strs = append(m.strs, s)
			switch s.kind {
			case smExact:
				key(s.v, true)
			case smPrefix:
				key(s.v, false)
			default:
				m.keyed = false
			}
			continue
		}
		key(v[:strings.IndexByte(v, '{')], false)
		re, err := compileTemplate(v)
		if err != nil {
			b.d.Errorf(fmt.Sprintf("%s[%d]", path, i), "%v", err)
			ok = false
			continue
		}
		m.res = append(m.res, re)
	}
	return m, ok
}

func (b *builder) pathRegex(path string, vals []string) (matcher, bool) {
	m := matcher{attr: aPath}
	ok := true
	for i, v := range vals {
		// Compile the value alone first: a value with unbalanced parentheses such as
		// "a)|(b" would otherwise escape the anchors once wrapped.
		_, err := regexp.Compile(v)
		var re *regexp.Regexp
		if err == nil {
			re, err = regexp.Compile(`^(?:` + v + `)$`)
		}
		if err != nil {
			b.d.Errorf(fmt.Sprintf("%s[%d]", path, i), "invalid RE2 regular expression %q: %v", v, unwrapRegexpErr(err))
			ok = false
			continue
		}
		m.res = append(m.res, re)
	}
	return m, ok
}

func unwrapRegexpErr(err error) string {
	var e *syntax.Error
	if errors.As(err, &e) {
		return e.Code.String() + ": " + e.Expr
	}
	return err.Error()
}

// spiffePattern compiles a SPIFFE ID pattern as routes write them (see
// config.CheckSPIFFEPattern and identity.ParseMatcher) into a matcher on the
// principal without "spiffe://": "spiffe://td/p" is exactly td/p, "spiffe://td"
// any ID in td, and "spiffe://td/p/*" any ID below td/p/ (whole segments).
func spiffePattern(v string) (strMatch, error) {
	if err := config.CheckSPIFFEPattern(v); err != nil {
		return strMatch{}, err
	}
	rest := v[len("spiffe://"):]
	switch {
	case strings.HasSuffix(rest, "/*"):
		return strMatch{kind: smPrefix, v: strings.TrimSuffix(rest, "*")}, nil
	case !strings.Contains(rest, "/"):
		return strMatch{kind: smPrefix, v: rest + "/"}, nil
	default:
		return strMatch{kind: smExact, v: rest}, nil
	}
}
