package request

import (
	"errors"
	"net/netip"
	"strings"
	"testing"
)

func TestParseAuthority(t *testing.T) {
	for _, tc := range []struct {
		name, in string
		want     Authority
		wantErr  bool
	}{
		{name: "plain", in: "admin.example.com", want: Authority{Host: "admin.example.com"}},
		{name: "trailing dot", in: "admin.example.com.", want: Authority{Host: "admin.example.com"}},
		{name: "trailing dot with port", in: "admin.example.com.:8443", want: Authority{Host: "admin.example.com", Port: 8443}},
		{name: "upper case", in: "ADMIN.Example.COM", want: Authority{Host: "admin.example.com"}},
		{name: "port", in: "admin.example.com:443", want: Authority{Host: "admin.example.com", Port: 443}},
		{name: "underscore", in: "_svc.internal", want: Authority{Host: "_svc.internal"}},
		{name: "ipv4", in: "127.0.0.1:8443", want: Authority{Host: "127.0.0.1", Port: 8443}},
		{name: "ipv6", in: "[::1]:8443", want: Authority{Host: "[::1]", Port: 8443}},
		{name: "ipv6 not RFC 5952", in: "[0:0:0:0:0:0:0:1]", want: Authority{Host: "[::1]"}},
		{name: "ipv6 upper", in: "[2001:DB8::1]", want: Authority{Host: "[2001:db8::1]"}},
		{name: "idn unicode", in: "bücher.example", want: Authority{Host: "xn--bcher-kva.example"}},
		{name: "idn a-label", in: "XN--BCHER-KVA.example", want: Authority{Host: "xn--bcher-kva.example"}},
		{name: "fullwidth letters", in: "ａｄｍｉｎ.example.com", want: Authority{Host: "admin.example.com"}},
		{name: "ideographic full stop", in: "admin\u3002example\u3002com", want: Authority{Host: "admin.example.com"}},
		{name: "kelvin sign", in: "\u212a.example", want: Authority{Host: "k.example"}},

		{name: "empty", in: "", wantErr: true},
		{name: "IPv4-mapped IPv6", in: "[::ffff:127.0.0.1]", wantErr: true},
		{name: "IPv4-mapped IPv6, hex", in: "[::ffff:7f00:1]:443", wantErr: true},
		{name: "only dot", in: ".", wantErr: true},
		{name: "two trailing dots", in: "a.example..", wantErr: true},
		{name: "empty label", in: "a..example", wantErr: true},
		{name: "leading dot", in: ".a.example", wantErr: true},
		{name: "empty port", in: "a.example:", wantErr: true},
		{name: "port zero", in: "a.example:0", wantErr: true},
		{name: "port leading zero", in: "a.example:0443", wantErr: true},
		{name: "port too big", in: "a.example:65536", wantErr: true},
		{name: "port sign", in: "a.example:+443", wantErr: true},
		{name: "two colons", in: "a.example:80:80", wantErr: true},
		{name: "brackets around a name", in: "[admin.example.com]", wantErr: true},
		{name: "brackets around ipv4", in: "[127.0.0.1]", wantErr: true},
		{name: "ipv6 zone", in: "[fe80::1%25eth0]", wantErr: true},
		{name: "ipvfuture", in: "[v1.x]", wantErr: true},
		{name: "unclosed bracket", in: "[::1", wantErr: true},
		{name: "text after bracket", in: "[::1]x", wantErr: true},
		{name: "bare ipv6", in: "::1", wantErr: true},
		{name: "percent", in: "adm%69n.example", wantErr: true},
		{name: "sub-delim", in: "admin;x.example", wantErr: true},
		{name: "userinfo", in: "user@admin.example", wantErr: true},
		{name: "space", in: "admin .example", wantErr: true},
		{name: "star", in: "*.example", wantErr: true},
		{name: "slash", in: "a.example/x", wantErr: true},
		{name: "nul", in: "a.example\x00.evil", wantErr: true},
		{name: "label dash", in: "-a.example", wantErr: true},
		{name: "label too long", in: strings.Repeat("a", 64) + ".example", wantErr: true},
		{name: "name too long", in: strings.Repeat("a.", 127) + "ab", wantErr: true},
		{name: "short ipv4", in: "127.1", wantErr: true},
		{name: "hex ipv4", in: "0x7f.0.0.1", wantErr: true},
		{name: "decimal ipv4", in: "2130706433", wantErr: true},
		{name: "octal ipv4", in: "0177.0.0.1", wantErr: true},
		{name: "numeric last label", in: "a.example.123", wantErr: true},
		{name: "bad punycode", in: "xn--zz.example", wantErr: true},
		{name: "invalid utf-8", in: "\xff.example", wantErr: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseAuthority(tc.in)
			if tc.wantErr {
				if !errors.Is(err, ErrHost) {
					t.Fatalf("ParseAuthority(%q) = %+v, %v; want ErrHost", tc.in, got, err)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("ParseAuthority(%q) = %+v, %v; want %+v", tc.in, got, err, tc.want)
			}
		})
	}
}

func TestCanonicalHostDoesNotAllocate(t *testing.T) {
	for _, h := range []string{"admin.example.com", "127.0.0.1", "[::1]"} {
		if n := testing.AllocsPerRun(100, func() { CanonicalHost(h) }); n != 0 {
			t.Errorf("CanonicalHost(%q): %v allocations, want 0", h, n)
		}
	}
}

func TestHostIP(t *testing.T) {
	for _, tc := range []struct {
		host string
		want string
	}{{"127.0.0.1", "127.0.0.1"}, {"[::1]", "::1"}, {"a.example", ""}} {
		a, ok := HostIP(tc.host)
		if got := map[bool]string{true: a.String(), false: ""}[ok]; got != tc.want {
			t.Errorf("HostIP(%q) = %q, want %q", tc.host, got, tc.want)
		}
	}
}

// FuzzParseAuthority checks the properties every reader of a host relies on:
// the canonical form is a fixed point, is made only of the characters a
// canonical host may have, and round-trips through Authority.String.
func FuzzParseAuthority(f *testing.F) {
	for _, s := range []string{"a.example", "A.Example.:8443", "[::1]:1", "bücher.example", "127.0.0.1", "0x7f.1", "[v1.x]", "xn--bcher-kva.example", "a..b", "ａ.example", "a\u3002b", "_x.y:65535"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		a, err := ParseAuthority(s)
		if err != nil {
			if !errors.Is(err, ErrHost) {
				t.Fatalf("ParseAuthority(%q): error %v does not wrap ErrHost", s, err)
			}
			return
		}
		if a.Port < 0 || a.Port > 65535 {
			t.Fatalf("ParseAuthority(%q): port %d", s, a.Port)
		}
		again, err := ParseAuthority(a.String())
		if err != nil || again != a {
			t.Fatalf("ParseAuthority(%q) = %+v, but its String %q parses as %+v, %v", s, a, a.String(), again, err)
		}
		if c, err := CanonicalHost(a.Host); err != nil || c != a.Host {
			t.Fatalf("CanonicalHost(%q) = %q, %v; want the fixed point", a.Host, c, err)
		}
		if strings.HasPrefix(a.Host, "[") {
			ip, ok := HostIP(a.Host)
			if !ok || !ip.Is6() || "["+ip.String()+"]" != a.Host {
				t.Fatalf("ParseAuthority(%q): bracketed host %q is not a canonical IPv6 literal", s, a.Host)
			}
			return
		}
		for i := 0; i < len(a.Host); i++ {
			c := a.Host[i]
			if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-' || c == '_' || c == '.') {
				t.Fatalf("ParseAuthority(%q): host %q has byte %q", s, a.Host, c)
			}
		}
		if strings.HasSuffix(a.Host, ".") || strings.Contains(a.Host, "..") {
			t.Fatalf("ParseAuthority(%q): host %q has an empty label", s, a.Host)
		}
		if ip, err := netip.ParseAddr(a.Host); err == nil && !ip.Is4() {
			t.Fatalf("ParseAuthority(%q): unbracketed non-IPv4 address %q", s, a.Host)
		}
	})
}
