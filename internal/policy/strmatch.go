package policy

import "strings"

// strKind is one of Istio's value forms (reference §3).
type strKind uint8

const (
	smExact    strKind = iota // "v"
	smPrefix                  // "v*"
	smSuffix                  // "*v"
	smNonEmpty                // "*" on most attributes: present and non-empty (regex .+)
	smPresent                 // "*" on hosts, methods, headers: present, possibly empty
)

// strMatch is one compiled value. Hosts are matched in their canonical, lower-case
// form (hosts.go), so no value needs case folding (CVE-2021-39155: "Host:
// Secret.com" must not slip past a DENY on secret.com).
type strMatch struct {
	kind strKind
	v    string
}

// parseStr turns a policy value into a matcher. star is what a lone "*" means for
// the attribute. A '*' anywhere but at one end is a literal character, as in Istio.
func parseStr(v string, star strKind) strMatch {
	switch {
	case v == "*":
		return strMatch{kind: star}
	case strings.HasPrefix(v, "*"):
		return strMatch{kind: smSuffix, v: v[1:]}
	case strings.HasSuffix(v, "*"):
		return strMatch{kind: smPrefix, v: v[:len(v)-1]}
	}
	return strMatch{kind: smExact, v: v}
}

// match reports whether the present value s matches. Callers handle absence.
func (m *strMatch) match(s string) bool {
	switch m.kind {
	case smExact:
		return s == m.v
	case smPrefix:
		if len(s) < len(m.v) {
			return false
		}
		return s[:len(m.v)] == m.v
	case smSuffix:
		if len(s) < len(m.v) {
			return false
		}
		return s[len(s)-len(m.v):] == m.v
	case smNonEmpty:
		return s != ""
	case smPresent:
		return true
	}
	return false
}

func anyStr(ms []strMatch, s string) bool {
	for i := range ms {
		if ms[i].match(s) {
			return true
		}
	}
	return false
}

// trimOWS removes the optional whitespace around a header value, so that
// "admin " is judged as the "admin" a backend sees (CVE-2019-18802).
func trimOWS(s string) string {
	for len(s) > 0 && (s[0] == ' ' || s[0] == '\t') {
		s = s[1:]
	}
	for len(s) > 0 && (s[len(s)-1] == ' ' || s[len(s)-1] == '\t') {
		s = s[:len(s)-1]
	}
	return s
}
