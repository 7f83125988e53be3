package listener

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/netip"
	"strings"
)

// certIndex is an immutable name → certificate table. A new one is built on
// every successful reload and swapped in whole, so a handshake never sees a
// half-updated table.
type certIndex struct {
	// certs holds the serving certificates in configuration order; certs[0]
	// is the default for an absent or unknown SNI.
	certs []*tls.Certificate
	// exact maps a lower-case DNS name without trailing dot to its
	// certificate.
	exact map[string]*tls.Certificate
	// ips maps an IP SAN (IPv4-mapped addresses unmapped) to its certificate.
	ips map[netip.Addr]*tls.Certificate
	// wildcard maps the parent domain of a "*.parent" SAN to its certificate.
	wildcard map[string]*tls.Certificate
}

// newCertIndex indexes certs by their DNS and IP SANs. When several
// certificates claim the same name, the first in configuration order wins,
// so the operator's order is the tie-break.
func newCertIndex(certs []*tls.Certificate) (*certIndex, error) {
	if len(certs) == 0 {
		return nil, errors.New("no certificates")
	}
	idx := &certIndex{
		certs:    certs,
		exact:    make(map[string]*tls.Certificate),
		ips:      make(map[netip.Addr]*tls.Certificate),
		wildcard: make(map[string]*tls.Certificate),
	}
	for _, c := range certs {
		leaf := c.Leaf
		if leaf == nil {
			return nil, errors.New("certificate has no parsed leaf")
		}
		for _, san := range leaf.DNSNames {
			if strings.HasSuffix(san, ".") {
				// crypto/x509 (and so the client) never matches a
				// hostname against a SAN with a trailing dot.
				continue
			}
			name, ok := normalizeName(san)
			if !ok {
				continue
			}
			if parent, ok := strings.CutPrefix(name, "*."); ok {
				// Only a whole leftmost "*" label over a valid parent is a
				// wildcard, as in crypto/x509. Partial wildcards
				// ("f*.example.com") are not honoured.
				if validHostname(parent) {
					if _, dup := idx.wildcard[parent]; !dup {
						idx.wildcard[parent] = c
					}
				}
				continue
			}
			if _, dup := idx.exact[name]; !dup {
				idx.exact[name] = c
			}
		}
		for _, ip := range leaf.IPAddresses {
			addr, ok := netip.AddrFromSlice(ip)
			if !ok {
				continue
			}
			key := addr.Unmap()
			if _, dup := idx.ips[key]; !dup {
				idx.ips[key] = c
			}
		}
	}
	return idx, nil
}

// lookup returns the certificate for a client's server name and whether a SAN
// matched; on no match it returns the default certificate and false.
//
// Matching is exact first, then a single-label wildcard: "*.example.com"
// matches "a.example.com" but neither "example.com" nor "a.b.example.com".
// Letting a wildcard span several labels is the bug behind CVE-2020-15104,
// where a certificate was accepted for names its SAN did not cover.
func (idx *certIndex) lookup(serverName string) (*tls.Certificate, bool) {
	name, ok := normalizeName(serverName)
	if !ok {
		return idx.certs[0], false
	}
	// The trailing dot is a DNS notion: "::1." or "127.0.0.1." is a
	// (strange) DNS name, not an IP, as crypto/x509 sees it too.
	if mayBeIP(name) && !strings.HasSuffix(serverName, ".") {
		if addr, err := netip.ParseAddr(name); err == nil {
			// An IP matches IP SANs only, never a DNS name or wildcard.
			if c, ok := idx.ips[addr.Unmap()]; ok {
				return c, true
			}
			return idx.certs[0], false
		}
	}
	if c, ok := idx.exact[name]; ok {
		return c, true
	}
	label, parent, found := strings.Cut(name, ".")
	// The label the wildcard stands for must be a real hostname label:
	// "*.example.com" must not answer for ".example.com", for a client that
	// literally sends "*.example.com", or for a label crypto/x509 would
	// refuse, so the client accepts whatever a wildcard picks.
	if found && validLabel(label) && parent != "" {
		if c, ok := idx.wildcard[parent]; ok {
			return c, true
		}
	}
	return idx.certs[0], false
}

// mayBeIP is a cheap pre-check that spares hostnames the allocation of a
// failed netip.ParseAddr: an IP has a colon or ends in a digit, while a
// top-level domain is never numeric.
func mayBeIP(s string) bool {
	last := s[len(s)-1]
	return '0' <= last && last <= '9' || strings.IndexByte(s, ':') >= 0
}

// normalizeName lower-cases ASCII letters and drops one trailing dot. Only
// ASCII is folded, like crypto/x509: strings.ToLower would turn the Kelvin
// sign (U+212A) into "k" and let "\u212a.example.com" pick the certificate
// of "k.example.com". A name with non-ASCII bytes or beyond the DNS length
// limit matches nothing.
func normalizeName(s string) (string, bool) {
	s = strings.TrimSuffix(s, ".")
	if s == "" || len(s) > 253 {
		return "", false
	}
	upper := false
	for i := 0; i < len(s); i++ {
		b := s[i]
		if b >= 0x80 {
			return "", false
		}
		if 'A' <= b && b <= 'Z' {
			upper = true
		}
	}
	if !upper {
		return s, true
	}
	buf := []byte(s)
	for i, b := range buf {
		if 'A' <= b && b <= 'Z' {
			buf[i] = b + ('a' - 'A')
		}
	}
	return string(buf), true
}

// validHostname applies crypto/x509's hostname syntax to a lower-case name:
// non-empty labels of letters, digits, '_' and '-' (not leading).
func validHostname(s string) bool {
	if s == "" {
		return false
	}
	for label := range strings.SplitSeq(s, ".") {
		if !validLabel(label) {
			return false
		}
	}
	return true
}

func validLabel(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		b := s[i]
		switch {
		case 'a' <= b && b <= 'z', 'A' <= b && b <= 'Z', '0' <= b && b <= '9', b == '_':
		case b == '-' && i != 0:
		default:
			return false
		}
	}
	return true
}

// prepareCertificate makes sure c carries its parsed leaf, which the index
// reads the SANs from.
func prepareCertificate(c tls.Certificate) (*tls.Certificate, error) {
	if len(c.Certificate) == 0 {
		return nil, errors.New("certificate has no chain")
	}
	if c.PrivateKey == nil {
		return nil, errors.New("certificate has no private key")
	}
	if c.Leaf == nil {
		leaf, err := x509.ParseCertificate(c.Certificate[0])
		if err != nil {
			return nil, fmt.Errorf("parse leaf certificate: %w", err)
		}
		c.Leaf = leaf
	}
	return &c, nil
}
