package egress

import (
	"context"
	"encoding/binary"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"

	"tollgate.dev/tollgate/internal/request"
)

// Resolver looks up a name's addresses. *net.Resolver satisfies it, as do
// *DNSResolver (the servers named in the config) and *Cache. network is "ip",
// "ip4" or "ip6".
type Resolver interface {
	LookupNetIP(ctx context.Context, network, host string) ([]netip.Addr, error)
}

// TTLResolver is a Resolver that also says how long its answer may be kept:
// the smallest TTL of the records that produced it. A Cache honours it.
type TTLResolver interface {
	Resolver
	LookupNetIPTTL(ctx context.Context, network, host string) ([]netip.Addr, time.Duration, error)
}

// hostTarget is a host as the guard reads it: an address (literal) or a
// canonical name to look up. It is parsed once, so every spelling of a name
// shares one cache entry and no spelling of an address is ever looked up.
type hostTarget struct {
	host    string // canonical: name, dotted quad, or "[v6]"
	addr    netip.Addr
	literal bool
}

// parseTarget reads a host ("name", "1.2.3.4", "[v6]", or a bare "v6" as
// net.SplitHostPort leaves it). Addresses are recognised in every spelling
// a resolver would accept (inet_aton's "127.1", "0x7f.1", "2130706433",
// "0177.0.0.1"; a trailing dot): passed to getaddrinfo or a DNS stub, those
// reach the address, so they are classified here and never looked up. A name
// whose last label is numeric but is no address is refused
// (request.ErrHost), since readers disagree on what it means.
func parseTarget(host string) (hostTarget, error) {
	h := host
	if strings.HasPrefix(h, "[") {
		if !strings.HasSuffix(h, "]") {
			return hostTarget{}, fmt.Errorf("%w: unclosed '[' in %q", request.ErrHost, clipHost(host))
		}
		h = h[1 : len(h)-1]
		if a, err := netip.ParseAddr(h); err != nil || !a.Is6() {
			return hostTarget{}, fmt.Errorf("%w: %q is not an IPv6 literal", request.ErrHost, clipHost(host))
		}
	}
	if strings.IndexByte(h, ':') >= 0 {
		a, err := netip.ParseAddr(h)
		if err != nil {
			return hostTarget{}, fmt.Errorf("%w: %q is not an IPv6 literal", request.ErrHost, clipHost(host))
		}
		return literalTarget(a), nil
	}
	if a, ok := ParseLegacyIPv4(strings.TrimSuffix(h, ".")); ok {
		return literalTarget(a), nil
	}
	name, err := request.CanonicalHost(h)
	if err != nil {
		return hostTarget{}, err
	}
	// IDNA maps full-width digits and dots to ASCII ("１２７.0.0.1"), so
	// the canonical form of a name can be an address.
	if a, ok := ParseLegacyIPv4(name); ok {
		return literalTarget(a), nil
	}
	return hostTarget{host: name}, nil
}

func literalTarget(a netip.Addr) hostTarget {
	t := hostTarget{addr: a, literal: true, host: a.String()}
	if a.Is6() {
		t.host = "[" + t.host + "]"
	}
	return t
}

// ParseLegacyIPv4 reads s as inet_aton(3) reads an IPv4 address: one to four
// parts separated by dots, each decimal, octal (leading "0") or hexadecimal
// ("0x"); the last part fills the bytes that remain ("127.1" is 127.0.0.1,
// "2130706433" is 127.0.0.1, "0x7f.1" too). No sign, no spaces, no empty
// part, no value out of range. Canonical dotted quads are read the same way.
func ParseLegacyIPv4(s string) (netip.Addr, bool) {
	var parts [4]uint32
	n := 0
	for i := 0; ; {
		if n == len(parts) || i >= len(s) || s[i] < '0' || s[i] > '9' {
			return netip.Addr{}, false
		}
		base, j := uint64(10), i
		if s[j] == '0' {
			if j+1 < len(s) && s[j+1]|0x20 == 'x' {
				base, j = 16, j+2
			} else {
				base = 8
			}
		}
		start, v := j, uint64(0)
		for ; j < len(s) && s[j] != '.'; j++ {
			d := digitValue(s[j])
			if d >= base {
				return netip.Addr{}, false
			}
			if v = v*base + d; v > 0xffff_ffff {
				return netip.Addr{}, false
			}
		}
		if j == start { // "0x" without digits
			return netip.Addr{}, false
		}
		parts[n] = uint32(v)
		n++
		if j == len(s) {
			break
		}
		i = j + 1
	}
	var x uint32
	for k := range n - 1 {
		if parts[k] > 0xff {
			return netip.Addr{}, false
		}
		x |= parts[k] << (24 - 8*k)
	}
	last := parts[n-1]
	if last > 0xffff_ffff>>(8*(n-1)) {
		return netip.Addr{}, false
	}
	x |= last
	var b [4]byte
	binary.BigEndian.PutUint32(b[:], x)
	return netip.AddrFrom4(b), true
}

func digitValue(c byte) uint64 {
	switch {
	case '0' <= c && c <= '9':
		return uint64(c - '0')
	case 'a' <= c|0x20 && c|0x20 <= 'f':
		return uint64(c|0x20-'a') + 10
	}
	return 99
}

func clipHost(s string) string {
	if len(s) > 64 {
		return s[:64] + "…"
	}
	return s
}

// Cache keeps a Resolver's answers, each no longer than its TTL (when the
// Resolver is a TTLResolver) and never longer than the Cache's maximum age.
//
// *net.Resolver hides TTLs, so wrap it only with a short maximum age on
// purpose, or not at all: the host's stub resolver (systemd-resolved, nscd)
// already caches by TTL. DNSResolver reports TTLs; wrap it with the
// maximum age the operator accepts.
//
// Errors are not cached. Concurrent misses for one name each look it up.
type Cache struct {
	r          Resolver
	ttl        TTLResolver // r, when it reports TTLs
	maxAge     time.Duration
	maxEntries int

	mu sync.Mutex
	m  map[cacheKey]cacheEntry
}

type cacheKey struct{ network, host string }

type cacheEntry struct {
	addrs   []netip.Addr
	expires time.Time
}

// defaultCacheEntries bounds the memory a caller can make the cache hold by
// asking for many names.
const defaultCacheEntries = 4096

// NewCache wraps r. maxAge ≤ 0 keeps nothing.
func NewCache(r Resolver, maxAge time.Duration) *Cache {
	c := &Cache{r: r, maxAge: maxAge, maxEntries: defaultCacheEntries, m: make(map[cacheKey]cacheEntry)}
	c.ttl, _ = r.(TTLResolver)
	return c
}

// LookupNetIP answers from the cache while the entry is fresh, else asks the
// wrapped Resolver. The host is used as given: the Guard passes canonical
// names, so spellings of one name share an entry.
func (c *Cache) LookupNetIP(ctx context.Context, network, host string) ([]netip.Addr, error) {
	k := cacheKey{network, host}
	now := time.Now()
	c.mu.Lock()
	e, ok := c.m[k]
	c.mu.Unlock()
	if ok && now.Before(e.expires) {
		return slices.Clone(e.addrs), nil
	}
	var (
		addrs []netip.Addr
		age   = c.maxAge
		err   error
	)
	if c.ttl != nil {
		var ttl time.Duration
		addrs, ttl, err = c.ttl.LookupNetIPTTL(ctx, network, host)
		age = min(age, ttl)
	} else {
		addrs, err = c.r.LookupNetIP(ctx, network, host)
	}
	if err != nil || age <= 0 || len(addrs) == 0 {
		return addrs, err
	}
	c.store(k, cacheEntry{addrs: slices.Clone(addrs), expires: time.Now().Add(age)})
	return addrs, nil
}

func (c *Cache) store(k cacheKey, e cacheEntry) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.m) >= c.maxEntries {
		now := time.Now()
		for key, old := range c.m {
			if !now.Before(old.expires) {
				delete(c.m, key)
			}
		}
		for key := range c.m { // still full: drop any one (map order is random)
			if len(c.m) < c.maxEntries {
				break
			}
			delete(c.m, key)
		}
	}
	c.m[k] = e
}
