package request

import (
	"net/netip"
	"strings"
	"testing"
)

// FuzzClientIPChain checks ClientIP against the rule it implements, over any
// peer, any set of trusted prefixes and X-Forwarded-For split over any number
// of field lines (FuzzClientIP fixes the prefixes and sends one line).
//
// Properties:
//   - the answer is the peer, or an address written in the header;
//   - from an untrusted peer it is the peer: the header is the client's word;
//   - it is never an address left of the rightmost untrusted hop (a client
//     can write anything left of what the operator's proxies appended), nor
//     left of an entry that doesn't parse: refChainClient, a walk over the
//     flattened list, names the one answer;
//   - field lines are one list: splitting a line at its commas changes nothing.
func FuzzClientIPChain(f *testing.F) {
	const lb = "127.0.0.0/8,2001:db8:1::/48"
	// The table of TestClientIP; '\n' separates field lines.
	for _, tc := range [][3]string{
		{"127.0.0.1", "", lb},
		{"198.51.100.7", "1.2.3.4", lb},
		{"127.0.0.1", "1.2.3.4", ""},
		{"127.0.0.1", "1.2.3.4", lb},
		{"127.0.0.1", "6.6.6.6, 1.2.3.4", lb},
		{"127.0.0.1", "1.2.3.4, 127.0.0.2,127.0.0.3", lb},
		{"127.0.0.1", "6.6.6.6\n1.2.3.4, 127.0.0.9", lb},
		{"127.0.0.1", "127.0.0.5, 127.0.0.6", lb},
		{"127.0.0.1", "1.2.3.4, garbage, 127.0.0.2", lb},
		{"127.0.0.1", "1.2.3.4, unknown", lb},
		{"127.0.0.1", "1.2.3.4:5555", lb},
		{"127.0.0.1", "[2001:db8::7]:80", lb},
		{"::ffff:127.0.0.1", "::ffff:1.2.3.4", lb},
		{"127.0.0.1", " , 1.2.3.4 ,, ", lb},
		{"127.0.0.1", "fe80::1%eth0", lb},
		{"2001:db8:1::1", "::ffff:127.0.0.1,2001:db8:1::2\n\n", lb + ",::ffff:0:0/96"},
		{"10.0.0.1", "1.2.3.4,10.0.0.2:80,[::ffff:10.0.0.3]:1", "0.0.0.0/0"},
	} {
		f.Add(tc[0], tc[1], tc[2])
	}
	f.Fuzz(func(t *testing.T, peerText, xffText, trustedText string) {
		peer, err := netip.ParseAddr(peerText)
		if err != nil {
			return
		}
		var trusted []netip.Prefix
		for _, p := range strings.Split(trustedText, ",") {
			if pf, err := netip.ParsePrefix(strings.TrimSpace(p)); err == nil {
				trusted = append(trusted, pf)
			}
		}
		var lines []string
		if xffText != "" {
			lines = strings.Split(xffText, "\n")
		}
		got := ClientIP(peer, lines, trusted)

		// The peer may carry a zone (a link-local connection); an address
		// from the header never does.
		if !got.IsValid() || got.Is4In6() || got != peer.Unmap() && got.Zone() != "" {
			t.Fatalf("ClientIP(%s, %q, %v) = %v, not a plain address", peer, lines, trusted, got)
		}
		if want := refChainClient(peer, lines, trusted); got != want {
			t.Fatalf("ClientIP(%s, %q, %v) = %s, want %s", peer, lines, trusted, got, want)
		}
		if got != peer.Unmap() {
			if !inPrefixes(peer.Unmap(), trusted) {
				t.Fatalf("ClientIP(%s, %q, %v) = %s from an untrusted peer", peer, lines, trusted, got)
			}
			found := false
			for _, e := range entries(lines) {
				if a, ok := refParseEntry(e); ok && a == got {
					found = true
				}
			}
			if !found {
				t.Fatalf("ClientIP(%s, %q, %v) = %s, which the header does not name", peer, lines, trusted, got)
			}
		}
		if split := entries(lines); len(split) > 0 {
			if again := ClientIP(peer, split, trusted); again != got {
				t.Fatalf("ClientIP over %q = %s, over the same entries one per line %s", lines, got, again)
			}
		}
	})
}

// entries flattens X-Forwarded-For field lines into their non-empty entries,
// left to right.
func entries(lines []string) []string {
	var out []string
	for _, l := range lines {
		for _, e := range strings.Split(l, ",") {
			if e = strings.TrimSpace(e); e != "" {
				out = append(out, e)
			}
		}
	}
	return out
}

// refChainClient walks the flattened list from the right: the peer vouches
// for the entry it appended, each trusted entry for the one left of it. The
// first untrusted address is the client; an unreadable entry leaves the last
// address vouched for.
func refChainClient(peer netip.Addr, lines []string, trusted []netip.Prefix) netip.Addr {
	client := peer.Unmap()
	if !inPrefixes(client, trusted) {
		return client
	}
	es := entries(lines)
	for i := len(es) - 1; i >= 0; i-- {
		a, ok := refParseEntry(es[i])
		if !ok {
			return client
		}
		client = a
		if !inPrefixes(a, trusted) {
			return a
		}
	}
	return client
}

// refParseEntry reads "addr", "v4:port" or "[v6]:port" without a zone.
func refParseEntry(e string) (netip.Addr, bool) {
	if strings.HasPrefix(e, "[") || strings.Count(e, ":") == 1 {
		ap, err := netip.ParseAddrPort(e)
		if err != nil {
			// "[v6]" without a port is not an address either.
			return netip.Addr{}, false
		}
		return ap.Addr().Unmap(), ap.Addr().Zone() == ""
	}
	a, err := netip.ParseAddr(e)
	return a.Unmap(), err == nil && a.Zone() == ""
}
