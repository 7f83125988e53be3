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

// strMatch is one compiled value. fold makes it ASCII case-insensitive (hosts only,
// CVE-2021-39155: "Host: Secret.com" must not slip past a DENY on secret.com).
type strMatch struct {
	kind strKind
	fold bool
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
		if m.fold {
			return asciiEqualFold(s, m.v)
		}
		return s == m.v
	case smPrefix:
		if len(s) < len(m.v) {
			return false
		}
		if m.fold {
			return asciiEqualFold(s[:len(m.v)], m.v)
		}
		return s[:len(m.v)] == m.v
	case smSuffix:
		if len(s) < len(m.v) {
			return false
		}
		if m.fold {
			return asciiEqualFold(s[len(s)-len(m.v):], m.v)
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

// asciiEqualFold compares ignoring ASCII case only, as Envoy's ignore_case does.
// Unicode folding (strings.EqualFold) would let "\u212A.example" (Kelvin sign)
// match a policy for "k.example", which no backend would treat as the same host.
func asciiEqualFold(a, b string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := 0; i < len(a); i++ {
		x, y := a[i], b[i]
		if x == y {
			continue
		}
		if 'A' <= x && x <= 'Z' {
			x += 'a' - 'A'
		}
		if 'A' <= y && y <= 'Z' {
			y += 'a' - 'A'
		}
		if x != y {
			return false
		}
	}
	return true
}

// hostKey is the index key of a host: lower-cased, without any port. It cuts at
// the first ':' (or after the closing ']' of an IPv6 literal), so every host a
// value can match has the same key as the value.
func hostKey(dst []byte, h string) []byte {
	end := len(h)
	if strings.HasPrefix(h, "[") {
		if i := strings.IndexByte(h, ']'); i >= 0 {
			end = i + 1
		}
	} else if i := strings.IndexByte(h, ':'); i >= 0 {
		end = i
	}
	for i := 0; i < end; i++ {
		c := h[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		dst = append(dst, c)
	}
	return dst
}

// hostKeyComplete reports whether a host prefix value already fixes the key of every
// host it matches (it contains the end of the host name).
func hostKeyComplete(prefix string) bool {
	if strings.HasPrefix(prefix, "[") {
		return strings.IndexByte(prefix, ']') >= 0
	}
	return strings.IndexByte(prefix, ':') >= 0
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
