package oidc

import (
	"bytes"
	"strings"
	"testing"

	"tollgate.dev/tollgate/internal/request"
)

// FuzzCookieHost checks the host a sealed cookie is bound to (cookieAAD) and
// the login's Host check (hostOK) against the front's canonical authority
// (request.ParseAuthority), which is what r.Host holds when the login runs.
//
// Properties:
//   - cookieHost is lower case;
//   - for a canonical authority it is the canonical host without brackets,
//     a fixed point, whatever the port ("port does not matter" in TestSealOpen);
//   - two authorities share a cookie binding only if they are one host, so a
//     cookie set for one host never opens on another;
//   - with AllowedHosts set, a Host the login accepts, raw or canonical, is
//     that host: a forged Host can't get the provider's code sent elsewhere.
func FuzzCookieHost(f *testing.F) {
	// The table of TestCookieHost, paired with hosts of TestSealOpen.
	for _, s := range [][2]string{
		{"gw.example", "gw.example:443"}, {"GW.Example:8443", "gw2.example"}, {"127.0.0.1:443", "127.0.0.1"},
		{"[::1]:8443", "[::1]"}, {"[::1]", "::1"}, {"::1", "[0:0::1]:1"}, {"gw.example.", "gw.example"},
		{"bücher.example", "xn--bcher-kva.example"}, {"[::ffff:1.2.3.4]", "1.2.3.4"}, {"a:b:c", "a"},
	} {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, s1, s2 string) {
		for _, s := range []string{s1, s2} {
			if h := cookieHost(s); strings.ToLower(h) != h {
				t.Fatalf("cookieHost(%q) = %q", s, h)
			}
		}
		a, err1 := request.ParseAuthority(s1)
		b, err2 := request.ParseAuthority(s2)
		if err1 != nil || err2 != nil {
			return // the front answers 400; the login never sees it
		}
		for _, x := range []request.Authority{a, b} {
			want := strings.TrimSuffix(strings.TrimPrefix(x.Host, "["), "]")
			if got := cookieHost(x.String()); got != want || cookieHost(got) != got {
				t.Fatalf("cookieHost(%q) = %q, want %q, a fixed point", x.String(), got, want)
			}
		}
		aadA, aadB := cookieAAD(nil, "s", a.String()), cookieAAD(nil, "s", b.String())
		if bytes.Equal(aadA, aadB) != (a.Host == b.Host) {
			t.Fatalf("cookie binding of %q and %q: equal=%v, same host=%v", a, b, bytes.Equal(aadA, aadB), a.Host == b.Host)
		}
		l := &Login{cfg: LoginConfig{AllowedHosts: []string{b.String()}}}
		for _, host := range []string{s1, a.String()} {
			if l.hostOK(host) && a.Host != b.Host {
				t.Fatalf("AllowedHosts %q: Host %q (host %q) accepted", b, host, a.Host)
			}
		}
	})
}
