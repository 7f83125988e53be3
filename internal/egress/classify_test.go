package egress

import (
	"errors"
	"net/netip"
	"testing"

	"tollgate.dev/tollgate/internal/request"
)

func TestClassify(t *testing.T) {
	tests := []struct {
		addr string
		want Class
	}{
		{"8.8.8.8", Public}, {"1.1.1.1", Public}, {"172.32.0.1", Public}, {"100.128.0.1", Public},
		{"192.0.1.1", Public}, {"198.20.0.1", Public}, {"223.255.255.255", Public},
		{"2606:4700::1111", Public}, {"2a00:1450::1", Public}, {"2001:200::1", Public},
		{"127.0.0.1", Loopback}, {"127.255.255.255", Loopback}, {"::1", Loopback},
		{"10.0.0.1", Private}, {"172.16.0.1", Private}, {"172.31.255.255", Private},
		{"192.168.1.1", Private}, {"fc00::1", Private}, {"fd12:3456::1", Private},
		{"169.254.169.254", LinkLocal}, {"169.254.0.1", LinkLocal}, {"fe80::1", LinkLocal},
		{"febf::1", LinkLocal}, {"fe80::1%eth0", LinkLocal},
		{"100.64.0.1", CGNAT}, {"100.127.255.255", CGNAT},
		{"224.0.0.1", Multicast}, {"239.255.255.250", Multicast}, {"ff02::1", Multicast},
		{"0.0.0.0", Unspecified}, {"::", Unspecified},
		{"0.1.2.3", Reserved}, {"240.0.0.1", Reserved}, {"255.255.255.255", Reserved},
		{"192.0.0.8", Reserved}, {"198.18.0.1", Reserved}, {"198.19.255.255", Reserved},
		{"192.88.99.1", Reserved}, {"100::1", Reserved}, {"fec0::1", Reserved},
		{"2001:10::1", Reserved}, {"2001:1ff::1", Reserved}, {"4000::1", Reserved}, {"::2:0:0:1", Reserved},
		{"::ffff:127.0.0.1", EmbedsIPv4}, {"::ffff:8.8.8.8", EmbedsIPv4}, {"::127.0.0.1", EmbedsIPv4},
		{"::ffff:0:7f00:1", EmbedsIPv4}, {"64:ff9b::7f00:1", EmbedsIPv4}, {"64:ff9b::a9fe:a9fe", EmbedsIPv4},
		{"64:ff9b:1::a00:1", EmbedsIPv4}, {"2002:7f00:1::1", EmbedsIPv4}, {"2002:a9fe:a9fe::", EmbedsIPv4},
		{"2001:0:4136:e378:8000:63bf:80ff:fffe", EmbedsIPv4},
		{"192.0.2.1", Documentation}, {"198.51.100.1", Documentation}, {"203.0.113.1", Documentation},
		{"2001:db8::1", Documentation}, {"3fff::1", Documentation}, {"3fff:fff::1", Documentation},
		// Outside both NAT64 prefixes, and below 2000::/3: not public either.
		{"64:ff9b:2::1", Reserved},
	}
	for _, tt := range tests {
		a := netip.MustParseAddr(tt.addr)
		if got := Classify(a); got != tt.want {
			t.Errorf("Classify(%s) = %v, want %v", tt.addr, got, tt.want)
		}
		if got, ref := Classify(a), refClassify(a); got != ref {
			t.Errorf("Classify(%s) = %v, reference says %v", tt.addr, got, ref)
		}
	}
	if got := Classify(netip.Addr{}); got != Unclassified {
		t.Errorf("Classify(zero Addr) = %v, want unclassified", got)
	}
}

func TestEmbeddedIPv4(t *testing.T) {
	tests := []struct{ addr, want string }{
		{"::ffff:127.0.0.1", "127.0.0.1"},
		{"::127.0.0.1", "127.0.0.1"},
		{"::ffff:0:7f00:1", "127.0.0.1"},
		{"64:ff9b::a9fe:a9fe", "169.254.169.254"},
		{"64:ff9b:1::a00:1", "10.0.0.1"},
		{"2002:7f00:1::1", "127.0.0.1"},
		{"2001:0:4136:e378:8000:63bf:80ff:fffe", "127.0.0.1"}, // Teredo: inverted
		{"2001:db8::1", ""},
		{"127.0.0.1", ""},
		{"::1", ""},
	}
	for _, tt := range tests {
		got, ok := EmbeddedIPv4(netip.MustParseAddr(tt.addr))
		if tt.want == "" {
			if ok {
				t.Errorf("EmbeddedIPv4(%s) = %s, want none", tt.addr, got)
			}
			continue
		}
		if !ok || got != netip.MustParseAddr(tt.want) {
			t.Errorf("EmbeddedIPv4(%s) = %s, %v, want %s", tt.addr, got, ok, tt.want)
		}
	}
}

func TestClassText(t *testing.T) {
	for c := range numClasses {
		b, _ := c.MarshalText()
		var back Class
		if err := back.UnmarshalText(b); err != nil || back != c {
			t.Errorf("class %d: %q read back as %v, %v", c, b, back, err)
		}
	}
	if got := Class(200).String(); got != "class(200)" {
		t.Errorf("Class(200).String() = %q", got)
	}
	var c Class
	if err := c.UnmarshalText([]byte("nope")); err == nil {
		t.Error("UnmarshalText(nope) succeeded")
	}
}

// TestParseTargetSpellings: every spelling of an address that a resolver
// would take for that address is read as that address (and never looked up);
// numeric names that are no address are refused.
func TestParseTargetSpellings(t *testing.T) {
	tests := []struct {
		host     string
		wantHost string
		wantAddr string // empty: a name
		wantErr  bool
	}{
		{host: "127.0.0.1", wantHost: "127.0.0.1", wantAddr: "127.0.0.1"},
		{host: "2130706433", wantHost: "127.0.0.1", wantAddr: "127.0.0.1"},
		{host: "0x7f.1", wantHost: "127.0.0.1", wantAddr: "127.0.0.1"},
		{host: "0X7F.0.0.1", wantHost: "127.0.0.1", wantAddr: "127.0.0.1"},
		{host: "127.1", wantHost: "127.0.0.1", wantAddr: "127.0.0.1"},
		{host: "127.0.1", wantHost: "127.0.0.1", wantAddr: "127.0.0.1"},
		{host: "0177.0.0.1", wantHost: "127.0.0.1", wantAddr: "127.0.0.1"},
		{host: "017700000001", wantHost: "127.0.0.1", wantAddr: "127.0.0.1"},
		{host: "0x7f000001", wantHost: "127.0.0.1", wantAddr: "127.0.0.1"},
		{host: "127.000.000.001", wantHost: "127.0.0.1", wantAddr: "127.0.0.1"},
		{host: "127.0.0.1.", wantHost: "127.0.0.1", wantAddr: "127.0.0.1"},
		{host: "０x7f.1", wantErr: true}, // IDNA maps it to "0x7f.1", which CanonicalHost refuses
		{host: "１２７.0.0.1", wantHost: "127.0.0.1", wantAddr: "127.0.0.1"},
		{host: "2852039166", wantHost: "169.254.169.254", wantAddr: "169.254.169.254"},
		{host: "0xa9.0xfe.0xa9.0xfe", wantHost: "169.254.169.254", wantAddr: "169.254.169.254"},
		{host: "0", wantHost: "0.0.0.0", wantAddr: "0.0.0.0"},
		{host: "[::ffff:127.0.0.1]", wantHost: "[::ffff:127.0.0.1]", wantAddr: "::ffff:127.0.0.1"},
		{host: "[0:0:0:0:0:ffff:7f00:1]", wantHost: "[::ffff:127.0.0.1]", wantAddr: "::ffff:127.0.0.1"},
		{host: "[::1]", wantHost: "[::1]", wantAddr: "::1"},
		{host: "::1", wantHost: "[::1]", wantAddr: "::1"},
		{host: "[0:0:0:0:0:0:0:1]", wantHost: "[::1]", wantAddr: "::1"},
		{host: "API.Example.COM.", wantHost: "api.example.com"},
		{host: "bücher.example", wantHost: "xn--bcher-kva.example"},
		{host: "127.0.0.1.nip.io", wantHost: "127.0.0.1.nip.io"},
		{host: "127.0.0.1.5", wantErr: true},
		{host: "256.1.1.1", wantErr: true},
		{host: "1.2.3.256", wantErr: true},
		{host: "08.1", wantErr: true},
		{host: "0x.1", wantErr: true},
		{host: "127..1", wantErr: true},
		{host: "a.123", wantErr: true},
		{host: "4294967296", wantErr: true},
		{host: "[127.0.0.1]", wantErr: true},
		{host: "[::1", wantErr: true},
		{host: "1::2::3", wantErr: true},
		{host: "", wantErr: true},
		{host: "a b", wantErr: true},
	}
	for _, tt := range tests {
		got, err := parseTarget(tt.host)
		if tt.wantErr {
			if !errors.Is(err, request.ErrHost) {
				t.Errorf("parseTarget(%q) = %+v, %v; want request.ErrHost", tt.host, got, err)
			}
			continue
		}
		if err != nil {
			t.Errorf("parseTarget(%q): %v", tt.host, err)
			continue
		}
		if got.host != tt.wantHost || got.literal != (tt.wantAddr != "") {
			t.Errorf("parseTarget(%q) = host %q literal %v; want %q literal %v",
				tt.host, got.host, got.literal, tt.wantHost, tt.wantAddr != "")
		}
		if tt.wantAddr != "" && got.addr != netip.MustParseAddr(tt.wantAddr) {
			t.Errorf("parseTarget(%q) = %s, want %s", tt.host, got.addr, tt.wantAddr)
		}
	}
}
