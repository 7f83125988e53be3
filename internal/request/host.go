package request

import (
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"

	"golang.org/x/net/idna"
)

// ErrHost is returned (wrapped) for a host or authority that can't be
// canonicalized. A front answers 400 to such a request: a host that two
// readers could take for two different names is never routed or judged.
var ErrHost = errors.New("invalid host")

// maxHostLen is DNS's limit on a name in text form (RFC 1035 §2.3.4, without
// the trailing dot).
const maxHostLen = 253

// Authority is a request's host and port, canonicalized once by the front and
// read by routing, policy, cookies and the audit event alike.
type Authority struct {
	// Host is the canonical host: a DNS name in lower case, in A-labels
	// (IDNA), without a trailing dot; a dotted-quad IPv4 address; or an IPv6
	// address in brackets ("[2001:db8::1]", RFC 5952 form).
	Host string
	// Port is the port the authority carried, 0 when it carried none.
	Port int
}

// String is the canonical authority: "host" or "host:port". It is what the
// upstream receives as Host, so what policy judged is what it gets.
func (a Authority) String() string {
	if a.Port == 0 {
		return a.Host
	}
	return a.Host + ":" + strconv.Itoa(a.Port)
}

// ParseAuthority canonicalizes an authority as received (a Host header,
// HTTP/2 :authority, the authority of an absolute-form target or of a
// CONNECT): "host", "host:port", "[v6]" or "[v6]:port". See CanonicalHost
// for the host rules. The port, when present, is 1 to 65535 in plain decimal
// digits without leading zeros; "host:" with an empty port is refused (two
// readers disagree on it).
func ParseAuthority(s string) (Authority, error) {
	host, portText := s, ""
	if strings.HasPrefix(s, "[") {
		end := strings.IndexByte(s, ']')
		if end < 0 {
			return Authority{}, fmt.Errorf("%w: unclosed '[' in %q", ErrHost, clip(s))
		}
		host, portText = s[:end+1], s[end+1:]
		if portText != "" {
			if portText[0] != ':' {
				return Authority{}, fmt.Errorf("%w: text after ']' in %q", ErrHost, clip(s))
			}
			portText = portText[1:]
			if portText == "" {
				return Authority{}, fmt.Errorf("%w: empty port in %q", ErrHost, clip(s))
			}
		}
	} else if i := strings.LastIndexByte(s, ':'); i >= 0 {
		host, portText = s[:i], s[i+1:]
		if portText == "" {
			return Authority{}, fmt.Errorf("%w: empty port in %q", ErrHost, clip(s))
		}
	}
	a := Authority{}
	if portText != "" {
		p, err := ParsePort(portText)
		if err != nil {
			return Authority{}, fmt.Errorf("%w: %v in %q", ErrHost, err, clip(s))
		}
		a.Port = p
	}
	h, err := CanonicalHost(host)
	if err != nil {
		return Authority{}, err
	}
	a.Host = h
	return a, nil
}

// ParsePort reads a port: 1 to 65535 in decimal digits, no sign, no leading
// zero ("0443" is refused: some readers take it as octal).
func ParsePort(s string) (int, error) {
	if s == "" || len(s) > 5 || s[0] == '0' {
		return 0, fmt.Errorf("invalid port %q", clip(s))
	}
	n := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < '0' || c > '9' {
			return 0, fmt.Errorf("invalid port %q", clip(s))
		}
		n = n*10 + int(c-'0')
	}
	if n > 65535 {
		return 0, fmt.Errorf("invalid port %q", clip(s))
	}
	return n, nil
}

// CanonicalHost returns the one spelling of a host that every part of the
// gateway compares: lower case, one trailing dot removed, Unicode names
// turned into A-labels (IDNA 2008, UTS #46 lookup mapping), IPv6 literals in
// brackets and RFC 5952 form. It refuses (ErrHost) what is not a valid
// RFC 3986 reg-name or IP literal that DNS could serve:
//
//   - an empty host, an empty label ("a..b"), a label over 63 or a name over
//     253 bytes, a label beginning or ending with '-';
//   - characters other than letters, digits, '-', '_' and '.', after IDNA
//     mapping: percent-encoding, sub-delims (";", "!", "*" …), spaces, '@';
//   - brackets around anything but an IPv6 address (no zone, no IPvFuture);
//   - a name whose last label is numeric but which is not a dotted-quad IPv4
//     address ("127.1", "0x7f.0.0.1", "2130706433"): resolvers read those as
//     addresses (inet_aton), so a policy written for names would not see them.
//
// The common case, a host already canonical, costs no allocation.
func CanonicalHost(s string) (string, error) {
	if s == "" {
		return "", fmt.Errorf("%w: empty host", ErrHost)
	}
	if s[0] == '[' {
		return canonicalIPv6(s)
	}
	if isCanonicalASCII(s) {
		return s, nil
	}
	h := strings.TrimSuffix(s, ".")
	if h == "" {
		return "", fmt.Errorf("%w: %q", ErrHost, clip(s))
	}
	if needsIDNA(h) {
		a, err := idnaProfile.ToASCII(h)
		if err != nil {
			return "", fmt.Errorf("%w: %q is not a valid internationalized name", ErrHost, clip(s))
		}
		// UTS #46 maps some characters to '.' (ideographic full stop) or to
		// nothing; a mapped name ending in a dot was "name." in disguise.
		h = strings.TrimSuffix(a, ".")
	} else {
		h = strings.ToLower(h)
	}
	if !isCanonicalASCII(h) {
		return "", fmt.Errorf("%w: %q", ErrHost, clip(s))
	}
	return h, nil
}

// idnaProfile is the lookup profile (what a browser does before a DNS query),
// with the STD3 ASCII rules off so that '_' (seen in internal service names)
// survives; isCanonicalASCII checks the characters afterwards.
var idnaProfile = idna.New(
	idna.MapForLookup(),
	idna.StrictDomainName(false),
	idna.BidiRule(),
	idna.ValidateLabels(true),
	idna.VerifyDNSLength(false),
)

// needsIDNA reports whether h has bytes beyond ASCII, or labels in "xn--"
// form whose Unicode has to be validated.
func needsIDNA(h string) bool {
	for i := 0; i < len(h); i++ {
		if h[i] >= 0x80 {
			return true
		}
	}
	return strings.Contains(strings.ToLower(h), "xn--")
}

// isCanonicalASCII reports whether h is already in canonical form: a
// lower-case LDH(+'_') name with valid labels and no trailing dot, or a
// dotted-quad IPv4 address. Names with a numeric last label must be IPv4.
func isCanonicalASCII(h string) bool {
	if len(h) == 0 || len(h) > maxHostLen {
		return false
	}
	labelStart := 0
	for i := 0; i <= len(h); i++ {
		if i < len(h) && h[i] != '.' {
			c := h[i]
			if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-' || c == '_') {
				return false
			}
			continue
		}
		label := h[labelStart:i]
		if len(label) == 0 || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		labelStart = i + 1
	}
	last := h[strings.LastIndexByte(h, '.')+1:]
	if numericLabel(last) {
		a, err := netip.ParseAddr(h)
		return err == nil && a.Is4()
	}
	if strings.HasPrefix(h, "xn--") || strings.Contains(h, ".xn--") {
		// Punycode labels are canonical only if they decode to valid IDNA.
		u, err := idnaProfile.ToUnicode(h)
		if err != nil {
			return false
		}
		a, err := idnaProfile.ToASCII(u)
		return err == nil && a == h
	}
	return true
}

// numericLabel reports whether a label reads as a number to inet_aton:
// decimal digits, or "0x" followed by hex digits (also "0x" alone).
func numericLabel(l string) bool {
	if l == "" {
		return false
	}
	if len(l) >= 2 && l[0] == '0' && (l[1] == 'x' || l[1] == 'X') {
		for i := 2; i < len(l); i++ {
			c := l[i]
			if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F') {
				return false
			}
		}
		return true
	}
	for i := 0; i < len(l); i++ {
		if l[i] < '0' || l[i] > '9' {
			return false
		}
	}
	return true
}

// canonicalIPv6 checks "[addr]" and returns it in RFC 5952 form.
func canonicalIPv6(s string) (string, error) {
	if len(s) < 2 || s[len(s)-1] != ']' {
		return "", fmt.Errorf("%w: %q", ErrHost, clip(s))
	}
	inner := s[1 : len(s)-1]
	a, err := netip.ParseAddr(inner)
	// Zones (RFC 6874 "%25eth0") name an interface of the client's machine,
	// not of ours; IPv4 in brackets and IPvFuture are not IPv6 literals.
	if err != nil || !a.Is6() || a.Zone() != "" {
		return "", fmt.Errorf("%w: %q is not an IPv6 literal", ErrHost, clip(s))
	}
	// An IPv4-mapped address is an IPv4 host in another spelling: a policy
	// on hosts: ["127.0.0.1"] would not see "[::ffff:127.0.0.1]", which the
	// upstream's stack reaches as 127.0.0.1. Refused, as non-canonical IPv4
	// spellings are.
	if a.Is4In6() {
		return "", fmt.Errorf("%w: %q is an IPv4 address in IPv6 form (write it as IPv4)", ErrHost, clip(s))
	}
	var buf [64]byte
	if c := a.AppendTo(buf[:0]); string(c) != inner {
		return "[" + string(c) + "]", nil
	}
	return s, nil
}

// HostIP returns the address of a canonical host that is an IP literal.
func HostIP(host string) (netip.Addr, bool) {
	if strings.HasPrefix(host, "[") && strings.HasSuffix(host, "]") {
		host = host[1 : len(host)-1]
	} else if len(host) == 0 || host[len(host)-1] < '0' || host[len(host)-1] > '9' {
		return netip.Addr{}, false
	}
	a, err := netip.ParseAddr(host)
	return a, err == nil
}

// clip shortens client text quoted in an error.
func clip(s string) string {
	if len(s) > 64 {
		return s[:64] + "…"
	}
	return s
}
