package egress

import (
	"encoding/binary"
	"fmt"
	"net/netip"
)

// Class is what an address is, for the SSRF guard: only Public is reachable
// unless an allow-list admits the address.
type Class uint8

// The zero Class is Unclassified, so a Class that was never set is refused.
const (
	// Unclassified is the zero value and the class of an invalid address.
	Unclassified Class = iota
	// Public is global unicast: 2000::/3 and the IPv4 space outside every
	// range below.
	Public
	// Loopback is 127.0.0.0/8 and ::1: the gateway's own host.
	Loopback
	// Private is RFC 1918 (10/8, 172.16/12, 192.168/16) and IPv6 ULA fc00::/7:
	// the inside of the network the gateway guards.
	Private
	// LinkLocal is 169.254.0.0/16 and fe80::/10; 169.254.169.254 is the
	// cloud metadata service that hands out instance credentials.
	LinkLocal
	// CGNAT is the shared address space 100.64.0.0/10 (RFC 6598): inside a
	// provider's network, not the Internet (smokescreen#265 missed it).
	CGNAT
	// Multicast is 224.0.0.0/4 and ff00::/8.
	Multicast
	// Unspecified is 0.0.0.0 and "::": connecting to it reaches the local
	// host on most systems.
	Unspecified
	// Reserved is every other range that is not global unicast: 0.0.0.0/8,
	// 192.0.0.0/24, 198.18.0.0/15 (benchmarking), 192.88.99.0/24 (6to4
	// relays), 240.0.0.0/4 (with the broadcast address), ::/8 outside the
	// forms below, 2001::/23 (IETF protocol assignments, ORCHID), and IPv6
	// outside 2000::/3.
	Reserved
	// EmbedsIPv4 is an IPv6 address that carries an IPv4 address and reaches
	// it through a translator or tunnel: IPv4-mapped ::ffff:0:0/96,
	// IPv4-compatible ::/96, SIIT ::ffff:0:0:0/96, NAT64 64:ff9b::/96 and
	// 64:ff9b:1::/48, 6to4 2002::/16, Teredo 2001::/32. They are refused
	// whatever they embed (smokescreen#277: NAT64, 6to4 and Teredo forms of
	// private addresses got past its checks); EmbeddedIPv4 names the address
	// for the audit record.
	EmbedsIPv4
	// Documentation is 192.0.2.0/24, 198.51.100.0/24, 203.0.113.0/24,
	// 2001:db8::/32 and 3fff::/20: never routed.
	Documentation
	// Own is an address of the gateway itself. Classify never returns it;
	// the Guard does, from the interface addresses and the configured ones.
	// Dialling itself would loop the proxy or reach its admin listener
	// (smokescreen#282).
	Own
	numClasses
)

var classNames = [numClasses]string{
	Unclassified:  "unclassified",
	Public:        "public",
	Loopback:      "loopback",
	Private:       "private",
	LinkLocal:     "link-local",
	CGNAT:         "cgnat",
	Multicast:     "multicast",
	Unspecified:   "unspecified",
	Reserved:      "reserved",
	EmbedsIPv4:    "embeds-ipv4",
	Documentation: "documentation",
	Own:           "own",
}

// String is the class's name as the audit record writes it ("link-local").
func (c Class) String() string {
	if c < numClasses {
		return classNames[c]
	}
	return fmt.Sprintf("class(%d)", uint8(c))
}

// MarshalText writes the name, so JSON audit records read "loopback", not 2.
func (c Class) MarshalText() ([]byte, error) { return []byte(c.String()), nil }

// UnmarshalText reads what MarshalText writes.
func (c *Class) UnmarshalText(b []byte) error {
	for i, n := range classNames {
		if n == string(b) {
			*c = Class(i)
			return nil
		}
	}
	return fmt.Errorf("unknown address class %q", b)
}

// Classify says what a is. An IPv6 zone is ignored. It is a pure function
// of the address: the Guard adds Own and the allow- and deny-lists.
//
// It reads the bits directly (no allocation, no table walk);
// FuzzClassifyDifferential holds it against a plain list of prefixes.
func Classify(a netip.Addr) Class {
	switch {
	case a.Is4():
		return classify4(a.As4())
	case a.Is6():
		return classify6(a.As16())
	}
	return Unclassified
}

func classify4(b [4]byte) Class {
	switch {
	case b == [4]byte{}:
		return Unspecified
	case b[0] == 0: // "this network" (RFC 791); Linux connects 0.x.y.z locally
		return Reserved
	case b[0] == 127:
		return Loopback
	case b[0] == 10, b[0] == 172 && b[1]&0xf0 == 16, b[0] == 192 && b[1] == 168:
		return Private
	case b[0] == 169 && b[1] == 254:
		return LinkLocal
	case b[0] == 100 && b[1]&0xc0 == 64:
		return CGNAT
	case b[0]&0xf0 == 224:
		return Multicast
	case b[0]&0xf0 == 240:
		return Reserved
	case b[0] == 192 && b[1] == 0 && b[2] == 2, b[0] == 198 && b[1] == 51 && b[2] == 100,
		b[0] == 203 && b[1] == 0 && b[2] == 113:
		return Documentation
	case b[0] == 192 && b[1] == 0 && b[2] == 0, b[0] == 198 && b[1]&0xfe == 18,
		b[0] == 192 && b[1] == 88 && b[2] == 99:
		return Reserved
	}
	return Public
}

func classify6(b [16]byte) Class {
	hi, lo := binary.BigEndian.Uint64(b[:8]), binary.BigEndian.Uint64(b[8:])
	switch {
	case hi == 0:
		switch {
		case lo == 0:
			return Unspecified
		case lo == 1:
			return Loopback
		case lo>>32 == 0xffff, lo>>32 == 0, lo>>32 == 0xffff_0000:
			// mapped, IPv4-compatible, SIIT
			return EmbedsIPv4
		}
		return Reserved
	case hi == 0x0064_ff9b_0000_0000 && lo>>32 == 0, hi>>16 == 0x0064_ff9b_0001:
		return EmbedsIPv4 // NAT64, well-known and local-use prefixes
	case hi>>48 == 0x2002, hi>>32 == 0x2001_0000:
		return EmbedsIPv4 // 6to4, Teredo
	case hi>>32 == 0x2001_0db8, hi>>44 == 0x3fff0:
		return Documentation
	case hi>>41 == 0x2001_0000>>9:
		return Reserved // 2001::/23
	case b[0]&0xfe == 0xfc:
		return Private
	case b[0] == 0xfe && b[1]&0xc0 == 0x80:
		return LinkLocal
	case b[0] == 0xff:
		return Multicast
	case b[0]&0xe0 == 0x20:
		return Public
	}
	return Reserved
}

// EmbeddedIPv4 returns the IPv4 address that an EmbedsIPv4 address carries:
// the low 32 bits of the mapped, compatible, SIIT and NAT64 forms (for
// 64:ff9b:1::/48, as if its /96 layout were used), bits 16–47 of 6to4, and
// the inverted low 32 bits of Teredo (the client's address). ok is false for
// any other address.
func EmbeddedIPv4(a netip.Addr) (v4 netip.Addr, ok bool) {
	if !a.Is6() || Classify(a) != EmbedsIPv4 {
		return netip.Addr{}, false
	}
	b := a.As16()
	var v [4]byte
	switch {
	case b[0] == 0x20 && b[1] == 0x02:
		copy(v[:], b[2:6])
	case b[0] == 0x20 && b[1] == 0x01:
		for i := range v {
			v[i] = ^b[12+i]
		}
	default:
		copy(v[:], b[12:])
	}
	return netip.AddrFrom4(v), true
}
