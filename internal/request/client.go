package request

import (
	"net/netip"
	"strings"
)

// ClientIP returns the original client of a request that arrived from peer
// with the X-Forwarded-For field lines xff: Istio's remote.ip. Only a peer in
// trusted (a load balancer or proxy of the operator's) may speak for someone
// else; then the chain is read from the right, each address that is itself a
// trusted proxy is skipped, and the first one that is not is the client. An
// entry that does not parse ends the walk at the trusted hop that added it:
// the nearest address vouched for. From an untrusted peer the header is the
// client's own word and the peer is the client.
//
// Addresses are unmapped (::ffff:1.2.3.4 is 1.2.3.4), so a prefix written
// for IPv4 sees them.
func ClientIP(peer netip.Addr, xff []string, trusted []netip.Prefix) netip.Addr {
	peer = peer.Unmap()
	if len(xff) == 0 || !inPrefixes(peer, trusted) {
		return peer
	}
	client := peer
	for i := len(xff) - 1; i >= 0; i-- {
		line := xff[i]
		for line != "" {
			var entry string
			if j := strings.LastIndexByte(line, ','); j >= 0 {
				entry, line = line[j+1:], line[:j]
			} else {
				entry, line = line, ""
			}
			entry = strings.TrimSpace(entry)
			if entry == "" {
				continue
			}
			a, ok := parseForwardedAddr(entry)
			if !ok {
				return client
			}
			client = a
			if !inPrefixes(a, trusted) {
				return a
			}
		}
	}
	return client
}

// parseForwardedAddr reads one X-Forwarded-For entry: an address, optionally
// with a port ("1.2.3.4:5678", "[2001:db8::1]:80"), as proxies write them.
func parseForwardedAddr(s string) (netip.Addr, bool) {
	if a, err := netip.ParseAddr(s); err == nil && a.Zone() == "" {
		return a.Unmap(), true
	}
	if ap, err := netip.ParseAddrPort(s); err == nil && ap.Addr().Zone() == "" {
		return ap.Addr().Unmap(), true
	}
	return netip.Addr{}, false
}

func inPrefixes(a netip.Addr, ps []netip.Prefix) bool {
	for _, p := range ps {
		if p.Contains(a) {
			return true
		}
	}
	return false
}
