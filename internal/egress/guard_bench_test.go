package egress

import (
	"net/netip"
	"testing"
)

func BenchmarkClassify(b *testing.B) {
	addrs := []netip.Addr{
		netip.MustParseAddr("8.8.8.8"), netip.MustParseAddr("10.1.2.3"), netip.MustParseAddr("169.254.169.254"),
		netip.MustParseAddr("2606:4700::1111"), netip.MustParseAddr("64:ff9b::a9fe:a9fe"), netip.MustParseAddr("::1"),
	}
	b.ReportAllocs()
	var sink Class
	for b.Loop() {
		for _, a := range addrs {
			sink += Classify(a)
		}
	}
	_ = sink
}

func BenchmarkGuardCheck(b *testing.B) {
	r := newFakeResolver(map[string][]string{"api.example.test": {"93.184.215.14,2606:2800:21f:cb07:6820:80da:af6b:8b2c"}})
	g, err := NewGuard(GuardOptions{Resolver: r, interfaceAddrs: noInterfaces,
		Allow: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}})
	if err != nil {
		b.Fatal(err)
	}
	for _, host := range []string{"api.example.test", "0x7f.1"} {
		b.Run(host, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				r.asked = r.asked[:0]
				_, _ = g.Check(b.Context(), host, 443)
			}
		})
	}
}
