package egress

import (
	"bytes"
	"crypto/ecdh"
	"crypto/rand"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"runtime"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// helloCaptureConn records what a crypto/tls client writes and ends its
// handshake at the first read: the ClientHello, as a real client sends it.
type helloCaptureConn struct{ bytes.Buffer }

func (c *helloCaptureConn) Read([]byte) (int, error)         { return 0, io.EOF }
func (c *helloCaptureConn) Close() error                     { return nil }
func (c *helloCaptureConn) LocalAddr() net.Addr              { return &net.TCPAddr{} }
func (c *helloCaptureConn) RemoteAddr() net.Addr             { return &net.TCPAddr{} }
func (c *helloCaptureConn) SetDeadline(time.Time) error      { return nil }
func (c *helloCaptureConn) SetReadDeadline(time.Time) error  { return nil }
func (c *helloCaptureConn) SetWriteDeadline(time.Time) error { return nil }

// captureHello returns the ClientHello records a crypto/tls client sends.
func captureHello(tb testing.TB, cfg *tls.Config) []byte {
	tb.Helper()
	c := &helloCaptureConn{}
	if err := tls.Client(c, cfg).Handshake(); err == nil {
		tb.Fatal("handshake against a capture succeeded")
	}
	if c.Len() == 0 {
		tb.Fatal("crypto/tls sent no ClientHello")
	}
	return bytes.Clone(c.Bytes())
}

// testECHConfigList is an ECHConfigList (RFC 9849 §4) for a fresh X25519
// key whose public (outer) name is publicName: enough for crypto/tls to
// send a real encrypted ClientHello.
func testECHConfigList(tb testing.TB, publicName string) []byte {
	tb.Helper()
	key, err := ecdh.X25519().GenerateKey(rand.Reader)
	if err != nil {
		tb.Fatal(err)
	}
	pub := key.PublicKey().Bytes()
	var c []byte
	c = append(c, 1)          // config_id
	c = append(c, 0x00, 0x20) // DHKEM(X25519, HKDF-SHA256)
	c = appendVec16(c, pub)
	c = appendVec16(c, []byte{0, 1, 0, 1}) // HKDF-SHA256, AES-128-GCM
	c = append(c, 0)                       // maximum_name_length
	c = append(c, byte(len(publicName)))
	c = append(c, publicName...)
	c = appendVec16(c, nil) // extensions
	cfg := appendVec16([]byte{0xfe, 0x0d}, c)
	return appendVec16(nil, cfg)
}

func appendVec16(b, v []byte) []byte {
	return append(append(b, byte(len(v)>>8), byte(len(v))), v...)
}

// Hand-built ClientHellos, for what crypto/tls refuses to send.

func helloExt(typ uint16, data []byte) []byte {
	return appendVec16([]byte{byte(typ >> 8), byte(typ)}, data)
}

// helloSNI is a server_name extension with one entry of name type typ per
// name.
func helloSNI(typ byte, names ...string) []byte {
	var list []byte
	for _, n := range names {
		list = appendVec16(append(list, typ), []byte(n))
	}
	return helloExt(extServerName, appendVec16(nil, list))
}

func helloALPN(protos ...string) []byte {
	var list []byte
	for _, p := range protos {
		list = append(append(list, byte(len(p))), p...)
	}
	return helloExt(extALPN, appendVec16(nil, list))
}

// helloMsg is a ClientHello handshake message with the given extensions
// (none at all, not even the length, if exts is nil).
func helloMsg(exts ...[]byte) []byte {
	body := []byte{3, 3}
	body = append(body, make([]byte, 32)...) // random
	body = append(body, 0)                   // session id
	body = appendVec16(body, []byte{0x13, 0x01})
	body = append(body, 1, 0) // compression: null
	if exts != nil {
		body = appendVec16(body, bytes.Join(exts, nil))
	}
	n := len(body)
	return append([]byte{helloTypeClientHello, byte(n >> 16), byte(n >> 8), byte(n)}, body...)
}

// helloRecords cuts a handshake message into records of at most size bytes.
func helloRecords(msg []byte, size int) []byte {
	var out []byte
	for len(msg) > 0 {
		n := min(size, len(msg))
		out = append(out, helloRecordHandshake, 3, 1, byte(n>>8), byte(n))
		out = append(out, msg[:n]...)
		msg = msg[n:]
	}
	return out
}

// helloOf is a hand-built hello in one record.
func helloOf(exts ...[]byte) []byte { return helloRecords(helloMsg(exts...), helloMaxRecordPayload) }

// unrecord returns the handshake bytes of records (the inverse of
// helloRecords).
func unrecord(tb testing.TB, raw []byte) []byte {
	tb.Helper()
	var msg []byte
	for len(raw) > 0 {
		n := int(raw[3])<<8 | int(raw[4])
		msg = append(msg, raw[5:5+n]...)
		raw = raw[5+n:]
	}
	return msg
}

func TestPeekClientHello(t *testing.T) {
	real := func(name string, alpn ...string) []byte {
		return captureHello(t, &tls.Config{ServerName: name, NextProtos: alpn})
	}
	api := real("api.example.com", "h2", "http/1.1")
	apiMsg := unrecord(t, api)
	echHello := captureHello(t, &tls.Config{
		ServerName:                     "hidden.example.com",
		MinVersion:                     tls.VersionTLS13,
		EncryptedClientHelloConfigList: testECHConfigList(t, "public.example.com"),
	})
	tooLong := helloMsg(helloSNI(0, "a.example"))
	tooLong[1], tooLong[2], tooLong[3] = 0xff, 0xff, 0xff

	tests := []struct {
		name     string
		in       []byte
		max      int
		wantSNI  string
		wantHost string
		wantALPN []string
		wantECH  bool
		wantErr  error
	}{
		{name: "crypto/tls with ALPN", in: api, wantSNI: "api.example.com", wantHost: "api.example.com", wantALPN: []string{"h2", "http/1.1"}},
		{name: "crypto/tls upper case", in: real("API.Example.COM"), wantSNI: "API.Example.COM", wantHost: "api.example.com"},
		{name: "crypto/tls punycode", in: real("xn--bcher-kva.example"), wantSNI: "xn--bcher-kva.example", wantHost: "xn--bcher-kva.example"},
		{name: "crypto/tls 1.2 only", in: captureHello(t, &tls.Config{ServerName: "old.example", MaxVersion: tls.VersionTLS12}), wantSNI: "old.example", wantHost: "old.example"},
		{name: "crypto/tls without a name", in: captureHello(t, &tls.Config{InsecureSkipVerify: true}), wantErr: ErrNoSNI},
		{name: "crypto/tls to an address sends no SNI", in: real("10.0.0.1"), wantErr: ErrNoSNI},
		{name: "crypto/tls ECH", in: echHello, wantSNI: "public.example.com", wantHost: "public.example.com", wantECH: true},
		{name: "fragmented, 1 byte per record", in: helloRecords(apiMsg, 1), wantSNI: "api.example.com", wantHost: "api.example.com", wantALPN: []string{"h2", "http/1.1"}},
		{name: "fragmented, 7 bytes per record", in: helloRecords(apiMsg, 7), wantSNI: "api.example.com", wantHost: "api.example.com", wantALPN: []string{"h2", "http/1.1"}},
		{name: "trailing dot", in: helloOf(helloSNI(0, "API.Example.com.")), wantSNI: "API.Example.com.", wantHost: "api.example.com"},
		{name: "ECH extension injected", in: helloOf(helloSNI(0, "api.example.com"), helloExt(extECH, []byte{0, 1, 2})), wantSNI: "api.example.com", wantHost: "api.example.com", wantECH: true},
		{name: "draft ESNI extension", in: helloOf(helloSNI(0, "api.example.com"), helloExt(extESNI, nil)), wantSNI: "api.example.com", wantHost: "api.example.com", wantECH: true},

		{name: "nothing", in: nil, wantErr: io.EOF},
		{name: "truncated", in: api[:len(api)-1], wantErr: io.ErrUnexpectedEOF},
		{name: "truncated header", in: api[:3], wantErr: ErrMalformedHello},
		{name: "application data record", in: append([]byte{23}, api[1:]...), wantErr: ErrNotTLS},
		{name: "plain HTTP", in: []byte("GET / HTTP/1.1\r\nHost: a\r\n\r\n"), wantErr: ErrNotTLS},
		{name: "SSLv2", in: []byte{0x80, 0x2e, 0x01, 0x03, 0x01, 0, 0}, wantErr: ErrNotTLS},
		{name: "alert between fragments", in: append(append(helloRecords(apiMsg[:10], 10), 21, 3, 3, 0, 2, 1, 0), helloRecords(apiMsg[10:], 1<<14)...), wantErr: ErrMalformedHello},
		{name: "empty record", in: append([]byte{22, 3, 1, 0, 0}, api...), wantErr: ErrMalformedHello},
		{name: "record over 2^14", in: []byte{22, 3, 1, 0x40, 0x01}, wantErr: ErrMalformedHello},
		{name: "huge handshake length", in: helloRecords(tooLong, 1<<14), wantErr: ErrHelloTooLarge},
		{name: "over max", in: api, max: 100, wantErr: ErrHelloTooLarge},
		{name: "server hello", in: helloRecords(append([]byte{2}, apiMsg[1:]...), 1<<14), wantErr: ErrMalformedHello},
		{name: "bytes after the hello in its record", in: helloRecords(append(bytes.Clone(apiMsg), 1, 0, 0, 0), 1<<14), wantErr: ErrMalformedHello},
		{name: "no extensions", in: helloRecords(helloMsg(), 1<<14), wantErr: ErrNoSNI},
		{name: "no server_name", in: helloOf(helloALPN("h2")), wantErr: ErrNoSNI},
		{name: "two names", in: helloOf(helloSNI(0, "api.example.com", "evil.example")), wantErr: ErrInvalidSNI},
		{name: "name type 1", in: helloOf(helloSNI(1, "api.example.com")), wantErr: ErrInvalidSNI},
		{name: "empty name", in: helloOf(helloSNI(0, "")), wantErr: ErrInvalidSNI},
		{name: "dot", in: helloOf(helloSNI(0, ".")), wantErr: ErrInvalidSNI},
		{name: "empty label", in: helloOf(helloSNI(0, "a..example")), wantErr: ErrInvalidSNI},
		{name: "IPv4", in: helloOf(helloSNI(0, "127.0.0.1")), wantErr: ErrInvalidSNI},
		{name: "IPv4 short form", in: helloOf(helloSNI(0, "127.1")), wantErr: ErrInvalidSNI},
		{name: "IPv4 hex", in: helloOf(helloSNI(0, "0x7f.1")), wantErr: ErrInvalidSNI},
		{name: "IPv4 number", in: helloOf(helloSNI(0, "2130706433")), wantErr: ErrInvalidSNI},
		{name: "IPv6", in: helloOf(helloSNI(0, "::1")), wantErr: ErrInvalidSNI},
		{name: "underscore", in: helloOf(helloSNI(0, "a_b.example")), wantErr: ErrInvalidSNI},
		{name: "NUL", in: helloOf(helloSNI(0, "api.example.com\x00.evil.example")), wantErr: ErrInvalidSNI},
		{name: "UTF-8", in: helloOf(helloSNI(0, "bücher.example")), wantErr: ErrInvalidSNI},
		{name: "bad punycode", in: helloOf(helloSNI(0, "xn--a.example")), wantErr: ErrInvalidSNI},
		{name: "duplicate server_name", in: helloOf(helloSNI(0, "api.example.com"), helloSNI(0, "evil.example")), wantErr: ErrMalformedHello},
		{name: "duplicate other extension", in: helloOf(helloSNI(0, "api.example.com"), helloExt(99, nil), helloExt(99, nil)), wantErr: ErrMalformedHello},
		{name: "server_name list overruns", in: helloOf(helloExt(extServerName, []byte{0, 9, 0, 0, 1, 'a'})), wantErr: ErrMalformedHello},
		{name: "server_name empty list", in: helloOf(helloExt(extServerName, []byte{0, 0})), wantErr: ErrMalformedHello},
		{name: "ALPN empty protocol", in: helloOf(helloSNI(0, "a.example"), helloALPN("h2", "")), wantErr: ErrMalformedHello},
		{name: "extension overruns", in: helloOf(helloSNI(0, "a.example"), []byte{0, 99, 0xff, 0xff}), wantErr: ErrMalformedHello},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// What follows a complete hello (early data) stays unread.
			full := bytes.Clone(tt.in)
			if tt.wantErr == nil {
				full = append(full, "early data"...)
			}
			in := bytes.NewReader(full)
			hello, raw, err := PeekClientHello(in, tt.max)
			if !errors.Is(err, tt.wantErr) || (err == nil) != (tt.wantErr == nil) {
				t.Fatalf("err = %v, want %v", err, tt.wantErr)
			}
			read := int(in.Size()) - in.Len()
			if !bytes.Equal(raw, full[:read]) {
				t.Errorf("raw is not the %d bytes read", read)
			}
			if max := tt.max; max > 0 && read > max {
				t.Errorf("read %d bytes, more than max %d", read, max)
			}
			if err != nil {
				return
			}
			if read != len(tt.in) {
				t.Errorf("read %d bytes, want exactly the hello's %d", read, len(tt.in))
			}
			want := ClientHelloInfo{ServerName: tt.wantSNI, Host: tt.wantHost, ALPN: tt.wantALPN, ECH: tt.wantECH}
			if diff := cmp.Diff(want, hello); diff != "" {
				t.Errorf("hello (-want +got):\n%s", diff)
			}
		})
	}
}

// A peer that declares huge lengths gets no allocation or read beyond max.
func TestPeekClientHelloBoundsReads(t *testing.T) {
	for _, in := range [][]byte{
		// A hello declaring 4000 bytes, sent a byte per record: the record
		// headers count too.
		helloRecords([]byte{1, 0, 0x0f, 0xa0}, 1),
		// A record declaring 2^14 bytes.
		{22, 3, 1, 0x40, 0x00},
	} {
		r := &countingReader{r: io.MultiReader(bytes.NewReader(in), infiniteRecords{})}
		const max = 4096
		_, raw, err := PeekClientHello(r, max)
		if err == nil {
			t.Fatal("an endless hello was accepted")
		}
		if r.n > max || len(raw) > max || cap(raw) > max {
			t.Errorf("read %d bytes, raw %d/%d, max %d", r.n, len(raw), cap(raw), max)
		}
	}
	// A hello declaring 16 MiB costs what max allows, not what it declares.
	huge := helloRecords(append([]byte{1, 0xff, 0xff, 0xff}, make([]byte, 20000)...), 1<<14)
	r := bytes.NewReader(huge)
	const runs, max = 100, 1024
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	for range runs {
		r.Reset(huge)
		if _, _, err := PeekClientHello(r, max); !errors.Is(err, ErrHelloTooLarge) {
			t.Fatal(err)
		}
	}
	runtime.ReadMemStats(&after)
	if perRun := (after.TotalAlloc - before.TotalAlloc) / runs; perRun > 2*max {
		t.Errorf("%d bytes allocated per refusal of a huge hello, max %d", perRun, max)
	}
}

// infiniteRecords is an endless run of 1-byte handshake records.
type infiniteRecords struct{}

func (infiniteRecords) Read(p []byte) (int, error) {
	rec := []byte{22, 3, 1, 0, 1, 0}
	for i := range p {
		p[i] = rec[i%len(rec)]
	}
	return len(p), nil
}

type countingReader struct {
	r io.Reader
	n int
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += n
	return n, err
}

// cryptoTLSServerName is the server name crypto/tls's server reads from raw,
// and whether it parsed the hello at all.
func cryptoTLSServerName(raw []byte) (string, bool) {
	var (
		name   string
		parsed bool
	)
	stop := errors.New("stop")
	conn := &replayConn{r: bytes.NewReader(raw)}
	srv := tls.Server(conn, &tls.Config{GetConfigForClient: func(h *tls.ClientHelloInfo) (*tls.Config, error) {
		name, parsed = h.ServerName, true
		return nil, stop
	}})
	_ = srv.Handshake()
	return name, parsed
}

// replayConn feeds recorded bytes to a crypto/tls server and drops its
// answers.
type replayConn struct {
	helloCaptureConn
	r io.Reader
}

func (c *replayConn) Read(p []byte) (int, error) { return c.r.Read(p) }

// Differential: where crypto/tls's server reads a ClientHello, PeekClientHello
// reads the same server name, or refuses the hello for a rule crypto/tls does
// not apply (a trailing dot it refuses itself, a name it would skip).
func TestPeekClientHelloAgreesWithCryptoTLS(t *testing.T) {
	for _, raw := range differentialHellos(t) {
		ours, _, err := PeekClientHello(bytes.NewReader(raw), 0)
		theirs, parsed := cryptoTLSServerName(raw)
		checkAgreement(t, raw, ours, err, theirs, parsed)
	}
}

func differentialHellos(tb testing.TB) [][]byte {
	var hellos [][]byte
	for _, cfg := range []*tls.Config{
		{ServerName: "api.example.com"},
		{ServerName: "API.example.COM", NextProtos: []string{"h2"}},
		{ServerName: "xn--bcher-kva.example", MaxVersion: tls.VersionTLS12},
		{ServerName: "a.b.c.d.example", MinVersion: tls.VersionTLS13},
		{InsecureSkipVerify: true},
	} {
		raw := captureHello(tb, cfg)
		hellos = append(hellos, raw, helloRecords(unrecord(tb, raw), 3))
	}
	return append(hellos,
		helloOf(helloSNI(0, "trailing.example.")),
		helloOf(helloSNI(1, "other.example")),
		helloOf(helloSNI(0, "a.example", "b.example")),
		helloOf(helloSNI(0, "10.1.2.3")),
		helloOf(helloSNI(0, "a_b.example")),
		helloOf(helloSNI(0, "a.example"), helloSNI(0, "b.example")),
	)
}

// checkAgreement fails when PeekClientHello reads a name that crypto/tls
// reads differently, or refuses a hello crypto/tls reads for a reason other
// than its stricter rules.
func checkAgreement(tb testing.TB, raw []byte, ours ClientHelloInfo, err error, theirs string, parsed bool) {
	tb.Helper()
	if err == nil {
		if !parsed {
			// crypto/tls refuses what the gateway does not read (a malformed
			// key_share, a trailing dot in the name, which the gateway
			// canonicalizes away); the destination will refuse it too. What
			// matters is that no reader sees another name.
			return
		}
		if ours.ServerName != theirs {
			tb.Fatalf("SNI %q, crypto/tls reads %q\n%x", ours.ServerName, theirs, raw)
		}
		return
	}
	if !parsed {
		return
	}
	switch {
	case errors.Is(err, ErrNoSNI) && theirs == "":
	case errors.Is(err, ErrInvalidSNI), errors.Is(err, ErrNotTLS):
		// Stricter: name types crypto/tls skips, addresses and bytes RFC 6066
		// forbids, record versions it tolerates.
	case errors.Is(err, ErrMalformedHello), errors.Is(err, ErrHelloTooLarge):
		// Stricter: bytes after the hello, which crypto/tls refuses only
		// after GetConfigForClient; zero-length records.
	default:
		tb.Fatalf("refused (%v) a hello crypto/tls reads as %q\n%x", err, theirs, raw)
	}
}

func BenchmarkPeekClientHello(b *testing.B) {
	raw := captureHello(b, &tls.Config{ServerName: "api.example.com", NextProtos: []string{"h2", "http/1.1"}})
	b.SetBytes(int64(len(raw)))
	b.ReportAllocs()
	r := bytes.NewReader(raw)
	for b.Loop() {
		r.Reset(raw)
		if _, _, err := PeekClientHello(r, 0); err != nil {
			b.Fatal(err)
		}
	}
}
