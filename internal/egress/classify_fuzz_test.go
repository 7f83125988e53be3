package egress

import (
	"encoding/binary"
	"net/netip"
	"strconv"
	"strings"
	"testing"
)

// refPrefixes is the classification written as a plain list, most specific
// first, read by netip.Prefix.Contains: the reference that Classify's bit
// tests are held against.
var refPrefixes = []struct {
	p string
	c Class
}{
	{"0.0.0.0/32", Unspecified},
	{"0.0.0.0/8", Reserved},
	{"127.0.0.0/8", Loopback},
	{"10.0.0.0/8", Private},
	{"172.16.0.0/12", Private},
	{"192.168.0.0/16", Private},
	{"169.254.0.0/16", LinkLocal},
	{"100.64.0.0/10", CGNAT},
	{"224.0.0.0/4", Multicast},
	{"240.0.0.0/4", Reserved},
	{"192.0.2.0/24", Documentation},
	{"198.51.100.0/24", Documentation},
	{"203.0.113.0/24", Documentation},
	{"192.0.0.0/24", Reserved},
	{"198.18.0.0/15", Reserved},
	{"192.88.99.0/24", Reserved},
	{"0.0.0.0/0", Public},

	{"::/128", Unspecified},
	{"::1/128", Loopback},
	{"::ffff:0:0/96", EmbedsIPv4},
	{"::/96", EmbedsIPv4},
	{"::ffff:0:0:0/96", EmbedsIPv4},
	{"64:ff9b::/96", EmbedsIPv4},
	{"64:ff9b:1::/48", EmbedsIPv4},
	{"::/8", Reserved},
	{"2002::/16", EmbedsIPv4},
	{"2001::/32", EmbedsIPv4},
	{"2001:db8::/32", Documentation},
	{"3fff::/20", Documentation},
	{"2001::/23", Reserved},
	{"fc00::/7", Private},
	{"fe80::/10", LinkLocal},
	{"ff00::/8", Multicast},
	{"2000::/3", Public},
	{"::/0", Reserved},
}

var refParsed = func() []netip.Prefix {
	ps := make([]netip.Prefix, len(refPrefixes))
	for i, r := range refPrefixes {
		ps[i] = netip.MustParsePrefix(r.p)
	}
	return ps
}()

func refClassify(a netip.Addr) Class {
	a = a.WithZone("")
	for i, p := range refParsed {
		if p.Contains(a) {
			return refPrefixes[i].c
		}
	}
	return Unclassified
}

// FuzzClassifyDifferential holds Classify against refClassify for IPv4, IPv6
// and IPv4-mapped addresses. Properties beyond agreement: the zone never
// changes the class, and an address that EmbeddedIPv4 unpacks is EmbedsIPv4.
func FuzzClassifyDifferential(f *testing.F) {
	for _, r := range refPrefixes {
		p := netip.MustParsePrefix(r.p)
		b := p.Addr().As16()
		f.Add(b[:], p.Addr().Is4())
		last := p.Masked().Addr().AsSlice() // the last address of the prefix
		for i := p.Bits(); i < len(last)*8; i++ {
			last[i/8] |= 0x80 >> (i % 8)
		}
		if l, ok := netip.AddrFromSlice(last); ok {
			b = l.As16()
			f.Add(b[:], l.Is4())
		}
	}
	f.Fuzz(func(t *testing.T, raw []byte, is4 bool) {
		var b [16]byte
		copy(b[:], raw)
		a := netip.AddrFrom16(b)
		if is4 {
			a = netip.AddrFrom4([4]byte(b[:4]))
		}
		got, want := Classify(a), refClassify(a)
		if got != want {
			t.Fatalf("Classify(%s) = %v, reference %v", a, got, want)
		}
		if a.Is6() {
			if z := Classify(a.WithZone("eth0")); z != got {
				t.Fatalf("Classify(%s%%eth0) = %v, without zone %v", a, z, got)
			}
		}
		if _, ok := EmbeddedIPv4(a); ok != (got == EmbedsIPv4) {
			t.Fatalf("EmbeddedIPv4(%s) ok = %v, class %v", a, ok, got)
		}
	})
}

// refParseLegacyIPv4 is inet_aton written with strings.Split and
// strconv.ParseUint (base 0 reads "0x" as hex and a leading 0 as octal; the
// forms strconv accepts and inet_aton does not — "0o", "0b", "_" — are
// refused first).
func refParseLegacyIPv4(s string) (netip.Addr, bool) {
	parts := strings.Split(s, ".")
	if len(parts) > 4 {
		return netip.Addr{}, false
	}
	vals := make([]uint64, len(parts))
	for i, p := range parts {
		digits := p
		if len(p) >= 2 && p[0] == '0' && (p[1] == 'x' || p[1] == 'X') {
			digits = p[2:]
			if digits == "" || strings.Trim(digits, "0123456789abcdefABCDEF") != "" {
				return netip.Addr{}, false
			}
		} else if p == "" || strings.Trim(p, "0123456789") != "" {
			return netip.Addr{}, false
		}
		v, err := strconv.ParseUint(p, 0, 32)
		if err != nil {
			return netip.Addr{}, false
		}
		vals[i] = v
	}
	var x uint64
	for i, v := range vals[:len(vals)-1] {
		if v > 255 {
			return netip.Addr{}, false
		}
		x |= v << (24 - 8*i)
	}
	last := vals[len(vals)-1]
	if last >= 1<<(32-8*(len(vals)-1)) {
		return netip.Addr{}, false
	}
	x |= last
	var b [4]byte
	binary.BigEndian.PutUint32(b[:], uint32(x))
	return netip.AddrFrom4(b), true
}

// FuzzParseLegacyIPv4 holds ParseLegacyIPv4 (one pass, no allocation)
// against refParseLegacyIPv4. Properties: a canonical dotted quad reads as
// netip.ParseAddr reads it, and parseTarget never lets a host that
// ParseLegacyIPv4 reads as an address go to a resolver.
func FuzzParseLegacyIPv4(f *testing.F) {
	for _, s := range []string{
		"127.0.0.1", "2130706433", "0x7f.1", "127.1", "127.0.1", "0177.0.0.1", "017700000001",
		"0x7f000001", "0X7F.0.0.1", "127.000.000.001", "0", "0x", "0x.1", "08", "09.1", "1.2.3.4.5",
		"256.1.1.1", "1.2.3.256", "1.65536", "1.2.65536", "4294967295", "4294967296", "0xffffffff",
		"0x100000000", "00000000000000000000000000127.1", "0o17", "0b1", "1_000", "+1", "-1", " 1",
		"1 ", "1..2", ".1", "1.", "0xg", "0x7F.0xff.0xFF.0x1", "0.0.0.0", "255.255.255.255",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got, ok := ParseLegacyIPv4(s)
		want, wok := refParseLegacyIPv4(s)
		if ok != wok || got != want {
			t.Fatalf("ParseLegacyIPv4(%q) = %v, %v; reference %v, %v", s, got, ok, want, wok)
		}
		if a, err := netip.ParseAddr(s); err == nil && a.Is4() && (!ok || got != a) {
			t.Fatalf("ParseLegacyIPv4(%q) = %v, %v; netip reads %v", s, got, ok, a)
		}
		if ok {
			tg, err := parseTarget(s)
			if err != nil || !tg.literal || tg.addr != got {
				t.Fatalf("parseTarget(%q) = %+v, %v; want the literal %v", s, tg, err, got)
			}
		}
		if tg, err := parseTarget(s); err == nil && !tg.literal {
			if _, isAddr := ParseLegacyIPv4(tg.host); isAddr {
				t.Fatalf("parseTarget(%q) = name %q, which is an address", s, tg.host)
			}
		}
	})
}
