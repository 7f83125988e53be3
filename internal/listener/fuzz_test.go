package listener

import (
	"net/netip"
	"strings"
	"testing"
)

// FuzzLookup checks SNI lookup against properties and against crypto/x509's
// hostname verification, the check the client itself will run on the
// certificate we pick:
//
//   - a match is sound: the chosen certificate verifies for the name;
//   - a match is complete: if some certificate verifies for a hostname,
//     lookup finds one;
//   - case never changes the answer, nor does one trailing dot on a DNS name.
func FuzzLookup(f *testing.F) {
	fx := newLookupFixture(f)
	idx := fx.store.idx.Load()
	for _, seed := range []string{
		"", ".", "..", "a.example.com", "A.EXAMPLE.COM.", "foo.example.com", "a.b.example.com",
		"example.com", ".example.com", "*.example.com", "x.example.com", "b.example.net",
		"c.b.example.net", "\u212a.example.org", "k.example.org", "127.0.0.1", "::1",
		"::ffff:127.0.0.1", "[::1]", "10.0.0.1", "a..example.com", "-.example.com",
		"a_b.example.com", "*", "*.", "xn--bcher-kva.example.com", "a.example.com\x00",
		strings.Repeat("a.", 130) + "example.com",
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, name string) {
		c, matched := idx.lookup(name)
		if c == nil {
			t.Fatalf("lookup(%q) returned no certificate", name)
		}
		if !matched && c != idx.certs[0] {
			t.Fatalf("lookup(%q) fell back to a non-default certificate", name)
		}
		if matched {
			if err := c.Leaf.VerifyHostname(name); err != nil {
				t.Fatalf("lookup(%q) chose %q, which does not verify: %v", name, c.Leaf.DNSNames, err)
			}
		} else if isHostname(name) {
			for _, other := range idx.certs {
				if other.Leaf.VerifyHostname(name) == nil {
					t.Fatalf("lookup(%q) found no match, but %q verifies", name, other.Leaf.DNSNames)
				}
			}
		}

		// Case and a trailing dot do not matter.
		for _, variant := range []string{asciiUpper(name), asciiLower(name), name + "."} {
			if variant == name+"." && (strings.HasSuffix(name, ".") || isIP(name)) {
				continue // only one trailing dot is ignored, and only on DNS names
			}
			vc, vm := idx.lookup(variant)
			if vc != c || vm != matched {
				t.Fatalf("lookup(%q) = %q, %v; lookup(%q) = %q, %v", name, c.Leaf.DNSNames, matched, variant, vc.Leaf.DNSNames, vm)
			}
		}
	})
}

// isHostname reports whether s is a plain LDH hostname with an optional
// trailing dot: the only inputs where the completeness property is
// expected. For other inputs crypto/x509 falls back to byte-for-byte
// comparison (so "*.example.com" "verifies" against itself), which lookup
// deliberately does not copy.
func isHostname(s string) bool {
	s = strings.TrimSuffix(s, ".")
	if s == "" || len(s) > 253 {
		return false
	}
	for label := range strings.SplitSeq(s, ".") {
		if label == "" || len(label) > 63 {
			return false
		}
		for i := 0; i < len(label); i++ {
			b := label[i]
			if !('a' <= b && b <= 'z' || 'A' <= b && b <= 'Z' || '0' <= b && b <= '9' || b == '-') {
				return false
			}
		}
	}
	return true
}

func isIP(s string) bool {
	_, err := netip.ParseAddr(s)
	return err == nil
}

func asciiUpper(s string) string {
	b := []byte(s)
	for i, c := range b {
		if 'a' <= c && c <= 'z' {
			b[i] = c - ('a' - 'A')
		}
	}
	return string(b)
}

func asciiLower(s string) string {
	b := []byte(s)
	for i, c := range b {
		if 'A' <= c && c <= 'Z' {
			b[i] = c + ('a' - 'A')
		}
	}
	return string(b)
}
