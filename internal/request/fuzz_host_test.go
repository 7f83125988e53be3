package request

import (
	"errors"
	"net"
	"net/netip"
	"strings"
	"testing"

	"golang.org/x/net/idna"
)

// FuzzCanonicalHostDifferential holds ParseAuthority and CanonicalHost (tuned:
// a no-allocation fast path, one pass over the labels, inet_aton rules) against
// refParseAuthority, a plain reading of their documented rules built on
// net.SplitHostPort, strings.Split and netip. The four host parsers we had
// disagreed on a spelling of one host (a route/policy bypass); two readings
// of the rules that disagree are caught here instead.
//
// Properties, beyond agreement (accept/refuse, host and port):
//   - the canonical host is a fixed point of CanonicalHost, lower case, with
//     no trailing dot, and round-trips through Authority.String;
//   - the port does not change the host: "h" and "h:443" give the same host.
func FuzzCanonicalHostDifferential(f *testing.F) {
	for _, s := range []string{
		// The table of TestParseAuthority.
		"admin.example.com", "admin.example.com.", "admin.example.com.:8443", "ADMIN.Example.COM",
		"admin.example.com:443", "_svc.internal", "127.0.0.1:8443", "[::1]:8443", "[0:0:0:0:0:0:0:1]",
		"[2001:DB8::1]", "bücher.example", "XN--BCHER-KVA.example", "ａｄｍｉｎ.example.com",
		"admin\u3002example\u3002com", "\u212a.example", "", ".", "a.example..", "a..example", ".a.example",
		"a.example:", "a.example:0", "a.example:0443", "a.example:65536", "a.example:+443", "a.example:80:80",
		"[admin.example.com]", "[127.0.0.1]", "[fe80::1%25eth0]", "[v1.x]", "[::1", "[::1]x", "::1",
		"adm%69n.example", "admin;x.example", "user@admin.example", "admin .example", "*.example",
		"a.example/x", "a.example\x00.evil", "-a.example", strings.Repeat("a", 64) + ".example",
		strings.Repeat("a.", 127) + "ab", "127.1", "0x7f.0.0.1", "2130706433", "0177.0.0.1", "a.example.123",
		"xn--zz.example", "\xff.example",
		// Boundaries of the fast path.
		"a.xn--bcher-kva", "axn--b.example", "a-.example", "a.0x", "a.0X1f", "1.2.3.4.", "[::ffff:1.2.3.4]",
		"A.", "a.example\u3002", "[::1]:", "]:80", "[]:80", "a.b.c.d.e:65535", "_:1",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got, err := ParseAuthority(s)
		want, wantErr := refParseAuthority(s)
		if (err != nil) != (wantErr != nil) || got != want {
			t.Fatalf("ParseAuthority(%q) = %+v, %v; the reference reads %+v, %v", s, got, err, want, wantErr)
		}
		if err != nil {
			if !errors.Is(err, ErrHost) {
				t.Fatalf("ParseAuthority(%q): error %v does not wrap ErrHost", s, err)
			}
			return
		}
		if c, err := CanonicalHost(got.Host); err != nil || c != got.Host {
			t.Fatalf("CanonicalHost(%q) = %q, %v; not a fixed point", got.Host, c, err)
		}
		if strings.ToLower(got.Host) != got.Host || strings.HasSuffix(got.Host, ".") {
			t.Fatalf("ParseAuthority(%q): host %q is not lower case without a trailing dot", s, got.Host)
		}
		if again, err := ParseAuthority(got.String()); err != nil || again != got {
			t.Fatalf("%+v.String() = %q reads back as %+v, %v", got, got.String(), again, err)
		}
		if got.Port == 0 {
			if withPort, err := ParseAuthority(s + ":443"); err != nil || withPort.Host != got.Host {
				t.Fatalf("ParseAuthority(%q) has host %q, but with a port: %+v, %v", s, got.Host, withPort, err)
			}
		}
	})
}

// refIDNA is the IDNA profile the documentation of CanonicalHost names
// (UTS #46 lookup, STD3 rules off so '_' survives), built here on its own.
var refIDNA = idna.New(idna.MapForLookup(), idna.StrictDomainName(false), idna.BidiRule(),
	idna.ValidateLabels(true), idna.VerifyDNSLength(false))

// refParseAuthority is ParseAuthority written plainly from its documentation.
func refParseAuthority(s string) (Authority, error) {
	host, port, err := net.SplitHostPort(s)
	switch {
	case err != nil:
		// No port: the whole text is the host; a ':' outside brackets is
		// refused by the host rules below.
		host, port = s, ""
	case strings.HasPrefix(s, "["):
		host = "[" + host + "]"
		if port == "" {
			return Authority{}, ErrHost
		}
	case port == "" || strings.ContainsAny(host, "[]"):
		return Authority{}, ErrHost
	}
	a := Authority{}
	if port != "" {
		if port[0] == '0' || len(port) > 5 || strings.Trim(port, "0123456789") != "" {
			return Authority{}, ErrHost
		}
		for _, c := range port {
			a.Port = a.Port*10 + int(c-'0')
		}
		if a.Port > 65535 {
			return Authority{}, ErrHost
		}
	}
	h, err := refCanonicalHost(host)
	if err != nil {
		return Authority{}, err
	}
	a.Host = h
	return a, nil
}

// refCanonicalHost is CanonicalHost written plainly from its documentation.
func refCanonicalHost(s string) (string, error) {
	if strings.HasPrefix(s, "[") {
		inner, ok := strings.CutSuffix(s[1:], "]")
		a, err := netip.ParseAddr(inner)
		if !ok || err != nil || !a.Is6() || a.Zone() != "" || a.Is4In6() {
			return "", ErrHost
		}
		return "[" + a.String() + "]", nil
	}
	h := strings.TrimSuffix(s, ".")
	ascii := true
	for _, r := range h {
		if r >= 0x80 {
			ascii = false
		}
	}
	if !ascii || strings.Contains(strings.ToLower(h), "xn--") {
		a, err := refIDNA.ToASCII(h)
		if err != nil {
			return "", ErrHost
		}
		h = strings.TrimSuffix(a, ".")
	} else {
		h = strings.ToLower(h)
	}
	if h == "" || len(h) > maxHostLen {
		return "", ErrHost
	}
	labels := strings.Split(h, ".")
	punycode := false
	for _, l := range labels {
		if l == "" || len(l) > 63 || strings.HasPrefix(l, "-") || strings.HasSuffix(l, "-") {
			return "", ErrHost
		}
		if strings.Trim(l, "abcdefghijklmnopqrstuvwxyz0123456789-_") != "" {
			return "", ErrHost
		}
		punycode = punycode || strings.HasPrefix(l, "xn--")
	}
	// inet_aton reads a last label of digits, or of "0x" and hex digits, as
	// part of an address: only a dotted quad netip accepts is allowed.
	last := labels[len(labels)-1]
	hex, isHex := strings.CutPrefix(last, "0x")
	if strings.Trim(last, "0123456789") == "" || isHex && strings.Trim(hex, "0123456789abcdef") == "" {
		if a, err := netip.ParseAddr(h); err != nil || !a.Is4() {
			return "", ErrHost
		}
		return h, nil
	}
	if punycode {
		u, err := refIDNA.ToUnicode(h)
		if err != nil {
			return "", ErrHost
		}
		if a, err := refIDNA.ToASCII(u); err != nil || a != h {
			return "", ErrHost
		}
	}
	return h, nil
}
