package request

import (
	"net/netip"
	"testing"
)

func TestClientIP(t *testing.T) {
	lb := []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("2001:db8:1::/48")}
	for _, tc := range []struct {
		name    string
		peer    string
		xff     []string
		trusted []netip.Prefix
		want    string
	}{
		{name: "no header", peer: "127.0.0.1", trusted: lb, want: "127.0.0.1"},
		{name: "untrusted peer ignores header", peer: "198.51.100.7", xff: []string{"1.2.3.4"}, trusted: lb, want: "198.51.100.7"},
		{name: "no trusted proxies", peer: "127.0.0.1", xff: []string{"1.2.3.4"}, want: "127.0.0.1"},
		{name: "trusted peer, one hop", peer: "127.0.0.1", xff: []string{"1.2.3.4"}, trusted: lb, want: "1.2.3.4"},
		{name: "client-forged left entries ignored", peer: "127.0.0.1", xff: []string{"6.6.6.6, 1.2.3.4"}, trusted: lb, want: "1.2.3.4"},
		{name: "trusted hops skipped", peer: "127.0.0.1", xff: []string{"1.2.3.4, 127.0.0.2,127.0.0.3"}, trusted: lb, want: "1.2.3.4"},
		{name: "several field lines in order", peer: "127.0.0.1", xff: []string{"6.6.6.6", "1.2.3.4, 127.0.0.9"}, trusted: lb, want: "1.2.3.4"},
		{name: "all trusted: leftmost", peer: "127.0.0.1", xff: []string{"127.0.0.5, 127.0.0.6"}, trusted: lb, want: "127.0.0.5"},
		{name: "garbage stops at the hop that added it", peer: "127.0.0.1", xff: []string{"1.2.3.4, garbage, 127.0.0.2"}, trusted: lb, want: "127.0.0.2"},
		{name: "garbage right after the peer", peer: "127.0.0.1", xff: []string{"1.2.3.4, unknown"}, trusted: lb, want: "127.0.0.1"},
		{name: "with port", peer: "127.0.0.1", xff: []string{"1.2.3.4:5555"}, trusted: lb, want: "1.2.3.4"},
		{name: "ipv6 with port", peer: "127.0.0.1", xff: []string{"[2001:db8::7]:80"}, trusted: lb, want: "2001:db8::7"},
		{name: "mapped", peer: "::ffff:127.0.0.1", xff: []string{"::ffff:1.2.3.4"}, trusted: lb, want: "1.2.3.4"},
		{name: "empty entries", peer: "127.0.0.1", xff: []string{" , 1.2.3.4 ,, "}, trusted: lb, want: "1.2.3.4"},
		{name: "zone refused", peer: "127.0.0.1", xff: []string{"fe80::1%eth0"}, trusted: lb, want: "127.0.0.1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := ClientIP(netip.MustParseAddr(tc.peer), tc.xff, tc.trusted)
			if got.String() != tc.want {
				t.Errorf("ClientIP = %s, want %s", got, tc.want)
			}
		})
	}
}

// FuzzClientIP: the answer is always the peer or an address written in the
// header, and never an address in the header when the peer is not trusted.
func FuzzClientIP(f *testing.F) {
	f.Add("127.0.0.1", "1.2.3.4, 127.0.0.2")
	f.Add("198.51.100.1", "1.2.3.4")
	f.Add("127.0.0.1", "x,,[::1]:9, 1.1.1.1:80")
	trusted := []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}
	f.Fuzz(func(t *testing.T, peer, xff string) {
		p, err := netip.ParseAddr(peer)
		if err != nil {
			return
		}
		got := ClientIP(p, []string{xff}, trusted)
		if !got.IsValid() {
			t.Fatalf("ClientIP(%s, %q) is invalid", p, xff)
		}
		if got == p.Unmap() {
			return
		}
		if !trusted[0].Contains(p.Unmap()) {
			t.Fatalf("ClientIP(%s, %q) = %s from an untrusted peer", p, xff, got)
		}
	})
}
