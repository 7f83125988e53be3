package egress

import (
	"bytes"
	"crypto/tls"
	"testing"
)

// FuzzClientHello checks PeekClientHello on any bytes a workload can send:
// it never panics, never reads more than max bytes, returns as raw exactly
// the prefix it read, returns only valid names that the hello carries, and
// agrees with crypto/tls's server on every name both read.
func FuzzClientHello(f *testing.F) {
	for _, cfg := range []*tls.Config{
		{ServerName: "api.example.com", NextProtos: []string{"h2", "http/1.1"}},
		{ServerName: "xn--bcher-kva.example", MaxVersion: tls.VersionTLS12},
		{InsecureSkipVerify: true},
		{ServerName: "in.example", MinVersion: tls.VersionTLS13, EncryptedClientHelloConfigList: testECHConfigList(f, "out.example")},
	} {
		raw := captureHello(f, cfg)
		f.Add(raw, uint16(0))
		f.Add(helloRecords(unrecord(f, raw), 5), uint16(len(raw)+200))
	}
	f.Add(helloOf(helloSNI(0, "API.Example.com.")), uint16(0))
	f.Add(helloOf(helloSNI(0, "a.example", "b.example")), uint16(0))
	f.Add(helloOf(helloSNI(0, "a.example"), helloSNI(0, "b.example")), uint16(0))
	f.Add(helloOf(helloSNI(0, "127.0.0.1"), helloALPN("h2")), uint16(300))

	f.Fuzz(func(t *testing.T, in []byte, max16 uint16) {
		max := int(max16)
		r := &countingReader{r: bytes.NewReader(in)}
		hello, raw, err := PeekClientHello(r, max)
		if max <= 0 {
			max = DefaultMaxClientHello
		}
		if r.n > max || len(raw) > max {
			t.Fatalf("read %d bytes (raw %d), max %d", r.n, len(raw), max)
		}
		if !bytes.Equal(raw, in[:r.n]) {
			t.Fatalf("raw is not the %d bytes read", r.n)
		}
		if err != nil {
			if hello.ServerName != "" {
				t.Fatalf("error %v with a name %q", err, hello.ServerName)
			}
			theirs, parsed := cryptoTLSServerName(in)
			checkAgreement(t, in, hello, err, theirs, parsed)
			return
		}
		// In the handshake bytes: a fragmented hello may cut the name
		// between records.
		if hello.ServerName == "" || !bytes.Contains(unrecord(t, raw), []byte(hello.ServerName)) {
			t.Fatalf("name %q is not in the hello", hello.ServerName)
		}
		for i := 0; i < len(hello.ServerName); i++ {
			c := hello.ServerName[i]
			if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '.') {
				t.Fatalf("name %q has byte 0x%02x", hello.ServerName, c)
			}
		}
		if hello.Host == "" {
			t.Fatalf("name %q without a canonical host", hello.ServerName)
		}
		theirs, parsed := cryptoTLSServerName(raw)
		checkAgreement(t, raw, hello, err, theirs, parsed)
	})
}
