package listener

import (
	"crypto/tls"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"tollgate.dev/tollgate/internal/filewatch"
	"tollgate.dev/tollgate/internal/testkit"
)

// lookupFixture is a store with a default, a wildcard, an exact name under
// the wildcard (listed after it), and a duplicate claim.
type lookupFixture struct {
	store *CertStore
	names map[*tls.Certificate]string // serving cert → fixture name
}

func newLookupFixture(tb testing.TB) *lookupFixture {
	tb.Helper()
	ca := testkit.NewCA(tb)
	certs := []struct {
		name string
		sans []string
	}{
		{"default", []string{"a.example.com", "127.0.0.1", "::1"}},
		{"wildcard", []string{"*.example.com", "*.b.example.net"}},
		{"exact", []string{"x.example.com", "k.example.org", "B.EXAMPLE.NET", "dot.example.org."}},
		{"dup", []string{"a.example.com", "x.example.com"}},
	}
	var tc []tls.Certificate
	for _, c := range certs {
		tc = append(tc, ca.Issue(tb, c.sans...))
	}
	s, err := NewStaticCertStore(tc...)
	if err != nil {
		tb.Fatal(err)
	}
	f := &lookupFixture{store: s, names: map[*tls.Certificate]string{}}
	for i, c := range s.idx.Load().certs {
		f.names[c] = certs[i].name
	}
	return f
}

func TestLookup(t *testing.T) {
	f := newLookupFixture(t)
	tests := []struct {
		name       string
		serverName string
		want       string
		wantMatch  bool
	}{
		{name: "no SNI gets default", serverName: "", want: "default"},
		{name: "exact", serverName: "a.example.com", want: "default", wantMatch: true},
		{name: "case and trailing dot", serverName: "A.Example.COM.", want: "default", wantMatch: true},
		{name: "exact beats wildcard listed earlier", serverName: "x.example.com", want: "exact", wantMatch: true},
		{name: "first claim wins", serverName: "X.EXAMPLE.COM", want: "exact", wantMatch: true},
		{name: "SAN written in upper case", serverName: "b.example.net", want: "exact", wantMatch: true},
		{name: "SAN with trailing dot ignored", serverName: "dot.example.org", want: "default"},
		{name: "wildcard label syntax", serverName: "-x.example.com", want: "default"},
		{name: "wildcard label underscore", serverName: "x_y.example.com", want: "wildcard", wantMatch: true},
		{name: "wildcard one label", serverName: "foo.example.com", want: "wildcard", wantMatch: true},
		{name: "wildcard case-insensitive", serverName: "FOO.Example.Com.", want: "wildcard", wantMatch: true},
		{name: "second wildcard", serverName: "c.b.example.net", want: "wildcard", wantMatch: true},
		// CVE-2020-15104: a wildcard must not cover more than one label.
		{name: "wildcard not two labels", serverName: "a.b.example.com", want: "default"},
		{name: "wildcard not zero labels", serverName: "example.com", want: "default"},
		{name: "wildcard not empty label", serverName: ".example.com", want: "default"},
		{name: "literal star is not a label", serverName: "*.example.com", want: "default"},
		// Kelvin sign lower-cases to "k" under Unicode rules, not under ASCII.
		{name: "no unicode case folding", serverName: "\u212a.example.org", want: "default"},
		{name: "k exact", serverName: "K.example.org", want: "exact", wantMatch: true},
		{name: "IPv4 SAN", serverName: "127.0.0.1", want: "default", wantMatch: true},
		{name: "IPv4-mapped IPv6", serverName: "::ffff:127.0.0.1", want: "default", wantMatch: true},
		{name: "IPv6 SAN", serverName: "::1", want: "default", wantMatch: true},
		{name: "IP with trailing dot is not an IP", serverName: "127.0.0.1.", want: "default"},
		{name: "IP not matched by wildcard", serverName: "10.0.0.1", want: "default"},
		{name: "unknown", serverName: "unknown.test", want: "default"},
		{name: "two trailing dots", serverName: "a.example.com..", want: "default"},
		{name: "too long", serverName: strings.Repeat("a", 250) + ".example.com", want: "default"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, matched := f.store.idx.Load().lookup(tt.serverName)
			if got := f.names[c]; got != tt.want || matched != tt.wantMatch {
				t.Errorf("lookup(%q) = %s, matched %v; want %s, matched %v", tt.serverName, got, matched, tt.want, tt.wantMatch)
			}
			gc, err := f.store.GetCertificate(&tls.ClientHelloInfo{ServerName: tt.serverName})
			if err != nil || gc != c {
				t.Errorf("GetCertificate(%q) = %s, %v; want %s", tt.serverName, f.names[gc], err, tt.want)
			}
		})
	}
}

func TestNewCertStoreErrors(t *testing.T) {
	ca := testkit.NewCA(t)
	dir := t.TempDir()
	good := writePair(t, dir, "good", ca.Issue(t, "good.example.com"))
	other := writePair(t, dir, "other", ca.Issue(t, "other.example.com"))
	noSAN := writePair(t, dir, "nosan", ca.Issue(t))
	garbage := filepath.Join(dir, "garbage.pem")
	if err := os.WriteFile(garbage, []byte("not a pem file\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(dir, "missing.pem")
	huge := filepath.Join(dir, "huge.pem")
	if err := os.WriteFile(huge, make([]byte, maxPEMFileSize+1), 0o600); err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name    string
		certs   []CertFile
		opts    CertStoreOptions // PollInterval -1 when zero
		wantIs  error
		wantSub []string // substrings the error must contain
	}{
		{name: "none", certs: nil, wantSub: []string{"no certificate files"}},
		{name: "empty key path", certs: []CertFile{{Cert: good.Cert}}, wantSub: []string{"certificate 0", "key files are required"}},
		{name: "missing cert", certs: []CertFile{{Cert: missing, Key: good.Key}}, wantIs: os.ErrNotExist, wantSub: []string{"missing.pem"}},
		{name: "missing key", certs: []CertFile{{Cert: good.Cert, Key: missing}}, wantIs: os.ErrNotExist, wantSub: []string{"read key file", "missing.pem"}},
		{name: "garbage cert", certs: []CertFile{{Cert: garbage, Key: good.Key}}, wantSub: []string{"garbage.pem", "failed to find any PEM data"}},
		{name: "garbage key", certs: []CertFile{{Cert: good.Cert, Key: garbage}}, wantSub: []string{"good.crt", "garbage.pem"}},
		{name: "key of another cert", certs: []CertFile{{Cert: good.Cert, Key: other.Key}}, wantSub: []string{"good.crt", "other.key", "private key does not match public key"}},
		{name: "second cert without SAN", certs: []CertFile{good, noSAN}, wantIs: errNoSAN, wantSub: []string{"nosan.crt"}},
		{name: "directory as cert", certs: []CertFile{{Cert: dir, Key: good.Key}}, wantIs: filewatch.ErrNotRegular, wantSub: []string{"read certificate file", dir, "a directory"}},
		{name: "huge key", certs: []CertFile{{Cert: good.Cert, Key: huge}}, wantIs: filewatch.ErrTooLarge, wantSub: []string{"read key file", "huge.pem", "larger than 1048576 bytes"}},
		{name: "negative settle", certs: []CertFile{good}, opts: CertStoreOptions{Settle: -time.Second}, wantSub: []string{"listener: negative settle interval -1s"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			opts := tt.opts
			if opts.PollInterval == 0 {
				opts.PollInterval = -1
			}
			s, err := NewCertStore(tt.certs, opts)
			if err == nil {
				s.Close()
				t.Fatal("NewCertStore succeeded; want error")
			}
			if tt.wantIs != nil && !errors.Is(err, tt.wantIs) {
				t.Errorf("error %q is not %v", err, tt.wantIs)
			}
			for _, sub := range tt.wantSub {
				if !strings.Contains(err.Error(), sub) {
					t.Errorf("error %q does not contain %q", err, sub)
				}
			}
		})
	}
}

func TestNewCertStoreDefaultWithoutSAN(t *testing.T) {
	ca := testkit.NewCA(t)
	dir := t.TempDir()
	noSAN := writePair(t, dir, "nosan", ca.Issue(t))
	good := writePair(t, dir, "good", ca.Issue(t, "good.example.com"))
	s, err := NewCertStore([]CertFile{noSAN, good}, CertStoreOptions{PollInterval: -1})
	if err != nil {
		t.Fatalf("a SAN-less default certificate must load: %v", err)
	}
	defer s.Close()
	c, _ := s.GetCertificate(&tls.ClientHelloInfo{ServerName: "unknown.example"})
	if len(c.Leaf.DNSNames) != 0 {
		t.Errorf("default cert has DNS names %q; want the SAN-less one", c.Leaf.DNSNames)
	}
}

func TestNewStaticCertStoreErrors(t *testing.T) {
	ca := testkit.NewCA(t)
	good := ca.Issue(t, "a.example.com")
	tests := []struct {
		name    string
		certs   []tls.Certificate
		wantSub string
	}{
		{name: "none", certs: nil, wantSub: "no certificates"},
		{name: "no chain", certs: []tls.Certificate{{PrivateKey: good.PrivateKey}}, wantSub: "certificate 0: certificate has no chain"},
		{name: "no key", certs: []tls.Certificate{good, {Certificate: good.Certificate}}, wantSub: "certificate 1: certificate has no private key"},
		{name: "bad DER", certs: []tls.Certificate{{Certificate: [][]byte{{1, 2, 3}}, PrivateKey: good.PrivateKey}}, wantSub: "parse leaf certificate"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := NewStaticCertStore(tt.certs...)
			if err == nil || !strings.Contains(err.Error(), tt.wantSub) {
				t.Errorf("NewStaticCertStore error = %v; want containing %q", err, tt.wantSub)
			}
		})
	}
	// A certificate without Leaf gets it parsed.
	noLeaf := good
	noLeaf.Leaf = nil
	s, err := NewStaticCertStore(noLeaf)
	if err != nil {
		t.Fatal(err)
	}
	if c, _ := s.GetCertificate(&tls.ClientHelloInfo{ServerName: "a.example.com"}); c.Leaf == nil {
		t.Error("leaf not parsed")
	}
	if err := s.Reload(); err != nil {
		t.Errorf("static Reload = %v; want nil", err)
	}
	if err := s.Close(); err != nil {
		t.Errorf("static Close = %v; want nil", err)
	}
}

func BenchmarkGetCertificate(b *testing.B) {
	f := newLookupFixture(b)
	for _, name := range []string{"a.example.com", "Foo.Example.Com", "unknown.test"} {
		hello := &tls.ClientHelloInfo{ServerName: name}
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := f.store.GetCertificate(hello); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
