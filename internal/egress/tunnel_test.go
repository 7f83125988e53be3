package egress

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"tollgate.dev/tollgate/internal/testkit"
)

// wireConn counts the bytes that cross a connection below TLS.
type wireConn struct {
	net.Conn
	read, written atomic.Int64
}

func (c *wireConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.read.Add(int64(n))
	return n, err
}

func (c *wireConn) Write(p []byte) (int, error) {
	n, err := c.Conn.Write(p)
	c.written.Add(int64(n))
	return n, err
}

func (c *wireConn) CloseWrite() error { return c.Conn.(*net.TCPConn).CloseWrite() }

// tunnelDest is the outside service: a TLS server on loopback that counts the
// connections it accepts and the bytes on its wire.
type tunnelDest struct {
	addr     string
	accepted atomic.Int32
	wire     chan *wireConn // each connection, once its handler is done
}

// startTunnelDest serves handle on 127.0.0.2 with a certificate for the
// test names, until the test ends.
func startTunnelDest(tb testing.TB, ca *testkit.CA, handle func(*tls.Conn)) *tunnelDest {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.2:0")
	if err != nil {
		tb.Fatal(err)
	}
	cfg := &tls.Config{Certificates: []tls.Certificate{ca.Issue(tb, "api.example.test", "evil.example.test")}}
	d := &tunnelDest{addr: ln.Addr().String(), wire: make(chan *wireConn, 16)}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			d.accepted.Add(1)
			wg.Add(1)
			go func() {
				defer wg.Done()
				w := &wireConn{Conn: c}
				tc := tls.Server(w, cfg)
				if tc.Handshake() == nil {
					handle(tc)
				}
				_ = tc.Close()
				d.wire <- w
			}()
		}
	}()
	tb.Cleanup(func() {
		_ = ln.Close()
		wg.Wait()
	})
	return d
}

// serveRequest is the destination's protocol: read an 8-byte header (request
// size, reply size), the request, send the reply, half-close (TLS
// close_notify, then TCP FIN), and read until the workload closes.
func serveRequest(c *tls.Conn) {
	var hdr [8]byte
	if _, err := io.ReadFull(c, hdr[:]); err != nil {
		return
	}
	if _, err := io.CopyN(io.Discard, c, int64(binary.BigEndian.Uint32(hdr[:4]))); err != nil {
		return
	}
	if _, err := c.Write(pattern(int(binary.BigEndian.Uint32(hdr[4:])))); err != nil {
		return
	}
	_ = c.CloseWrite()
	_ = c.NetConn().(interface{ CloseWrite() error }).CloseWrite()
	_, _ = io.Copy(io.Discard, c)
}

func pattern(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i % 251)
	}
	return b
}

// tunnelRig is a gateway's side of a CONNECT tunnel: the workload's
// connection (as a front hands it over after its 200) and a dial function
// that counts its calls.
type tunnelRig struct {
	workload *wireConn // the workload's end
	gateway  net.Conn  // the gateway's end
	dials    atomic.Int32
	dest     *tunnelDest
}

func newTunnelRig(tb testing.TB, dest *tunnelDest) *tunnelRig {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, _ := ln.Accept()
		accepted <- c
	}()
	w, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		tb.Fatal(err)
	}
	g := <-accepted
	if g == nil {
		tb.Fatal("accept failed")
	}
	r := &tunnelRig{workload: &wireConn{Conn: w}, gateway: g, dest: dest}
	tb.Cleanup(func() {
		_ = w.Close()
		_ = g.Close()
	})
	return r
}

func (r *tunnelRig) dial(ctx context.Context) (net.Conn, error) {
	r.dials.Add(1)
	var d net.Dialer
	return d.DialContext(ctx, "tcp", r.dest.addr)
}

// run runs the tunnel in the background; the result arrives on the channel.
func (r *tunnelRig) run(ctx context.Context, tn Tunnel, host string) <-chan TunnelResult {
	res := make(chan TunnelResult, 1)
	go func() { res <- tn.Run(ctx, ConnStream(r.gateway, nil), host, r.dial) }()
	return res
}

func waitResult(tb testing.TB, res <-chan TunnelResult) TunnelResult {
	tb.Helper()
	select {
	case r := <-res:
		return r
	case <-time.After(10 * time.Second):
		tb.Fatal("the tunnel did not end")
		return TunnelResult{}
	}
}

// An allowed tunnel carries a TLS session end to end: the handshake
// completes with the destination, data flows both ways, and the counts are
// the bytes on the destination's wire and on the workload's.
func TestTunnelSplices(t *testing.T) {
	ca := testkit.NewCA(t)
	dest := startTunnelDest(t, ca, serveRequest)
	rig := newTunnelRig(t, dest)
	res := rig.run(t.Context(), Tunnel{}, "API.Example.test.")

	const reqSize, replySize = 300_000, 1_000_000
	c := tls.Client(rig.workload, &tls.Config{ServerName: "api.example.test", RootCAs: ca.Pool(), NextProtos: []string{"h2"}})
	if err := c.Handshake(); err != nil {
		t.Fatalf("handshake through the tunnel: %v", err)
	}
	go func() {
		var hdr [8]byte
		binary.BigEndian.PutUint32(hdr[:4], reqSize)
		binary.BigEndian.PutUint32(hdr[4:], replySize)
		_, _ = c.Write(append(hdr[:], pattern(reqSize)...))
	}()
	reply, err := io.ReadAll(c) // until the destination's close_notify
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(reply, pattern(replySize)) {
		t.Fatalf("reply of %d bytes differs from what the destination sent", len(reply))
	}
	// The gateway passes the destination's FIN on: the TCP stream ends too.
	if n, err := rig.workload.Read(make([]byte, 1)); n != 0 || err != io.EOF {
		t.Fatalf("after the reply: %d, %v; want EOF", n, err)
	}
	_ = c.Close()

	got := waitResult(t, res)
	if got.Err != nil {
		t.Fatalf("Err = %v", got.Err)
	}
	if got.SNI != "api.example.test" {
		t.Errorf("SNI = %q", got.SNI)
	}
	w := <-dest.wire
	if got.BytesOut != w.read.Load() || got.BytesOut != rig.workload.written.Load() {
		t.Errorf("BytesOut = %d; destination read %d, workload wrote %d", got.BytesOut, w.read.Load(), rig.workload.written.Load())
	}
	if got.BytesIn != w.written.Load() || got.BytesIn != rig.workload.read.Load() {
		t.Errorf("BytesIn = %d; destination wrote %d, workload read %d", got.BytesIn, w.written.Load(), rig.workload.read.Load())
	}
	if got.BytesOut < reqSize || got.BytesIn < replySize {
		t.Errorf("counts %d out, %d in: less than the plaintext", got.BytesOut, got.BytesIn)
	}
	if rig.dials.Load() != 1 {
		t.Errorf("dialled %d times", rig.dials.Load())
	}
}

// A refused tunnel opens no connection outward, and the workload sees its
// connection closed (after an alert that says why, if it spoke TLS).
func TestTunnelRefuses(t *testing.T) {
	ca := testkit.NewCA(t)
	tlsHello := func(cfg *tls.Config) func(net.Conn) error {
		return func(c net.Conn) error {
			cfg.RootCAs = ca.Pool()
			return tls.Client(c, cfg).Handshake()
		}
	}
	send := func(b []byte) func(net.Conn) error {
		return func(c net.Conn) error {
			_, err := c.Write(b)
			return err
		}
	}
	tests := []struct {
		name      string
		host      string
		tunnel    Tunnel
		workload  func(net.Conn) error
		wantErr   error
		wantAlert string // in the workload's handshake error
	}{
		{
			// The attack Smokescreen lets through: CONNECT to an allowed
			// name, then a hello for another one served at the same place.
			name:      "SNI for another name",
			host:      "api.example.test",
			workload:  tlsHello(&tls.Config{ServerName: "evil.example.test"}),
			wantErr:   &SNIMismatchError{Want: "api.example.test", Got: "evil.example.test"},
			wantAlert: "unrecognized name",
		},
		{
			name:      "subdomain of the CONNECT host",
			host:      "example.test",
			workload:  tlsHello(&tls.Config{ServerName: "api.example.test"}),
			wantErr:   &SNIMismatchError{Want: "example.test", Got: "api.example.test"},
			wantAlert: "unrecognized name",
		},
		{
			// The outer name matches, but the real one is encrypted.
			name: "ECH with the CONNECT host as outer name",
			host: "api.example.test",
			workload: tlsHello(&tls.Config{
				ServerName:                     "evil.example.test",
				MinVersion:                     tls.VersionTLS13,
				EncryptedClientHelloConfigList: testECHConfigList(t, "api.example.test"),
			}),
			wantErr:   ErrECH,
			wantAlert: "access denied",
		},
		{
			name:      "no SNI",
			host:      "api.example.test",
			workload:  tlsHello(&tls.Config{InsecureSkipVerify: true}),
			wantErr:   ErrNoSNI,
			wantAlert: "missing extension",
		},
		{
			name:      "CONNECT to an address",
			host:      "127.0.0.2",
			workload:  tlsHello(&tls.Config{ServerName: "127.0.0.2"}),
			wantErr:   ErrNoSNI,
			wantAlert: "missing extension",
		},
		{
			name:     "IP in SNI",
			host:     "127.0.0.2",
			workload: send(helloOf(helloSNI(0, "127.0.0.2"))),
			wantErr:  ErrInvalidSNI,
		},
		{
			name:     "not TLS",
			host:     "api.example.test",
			workload: send([]byte("GET / HTTP/1.1\r\nHost: api.example.test\r\n\r\n")),
			wantErr:  ErrNotTLS,
		},
		{
			// A slowloris: three bytes of a hello, then nothing.
			name:     "no hello before the deadline",
			host:     "api.example.test",
			tunnel:   Tunnel{HelloTimeout: 50 * time.Millisecond},
			workload: send([]byte{22, 3, 1}),
			wantErr:  ErrHelloTimeout,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dest := startTunnelDest(t, ca, serveRequest)
			rig := newTunnelRig(t, dest)
			res := rig.run(t.Context(), tt.tunnel, tt.host)
			werr := make(chan error, 1)
			go func() { werr <- tt.workload(rig.workload) }()

			got := waitResult(t, res)
			var want *SNIMismatchError
			if errors.As(tt.wantErr, &want) {
				var mismatch *SNIMismatchError
				if !errors.As(got.Err, &mismatch) || *mismatch != *want {
					t.Fatalf("Err = %v, want %v", got.Err, want)
				}
			} else if !errors.Is(got.Err, tt.wantErr) {
				t.Fatalf("Err = %v, want %v", got.Err, tt.wantErr)
			}
			if err := <-werr; tt.wantAlert != "" && (err == nil || !strings.Contains(err.Error(), tt.wantAlert)) {
				t.Errorf("workload's handshake: %v, want the alert %q", err, tt.wantAlert)
			}
			// The workload's connection is closed: whatever it reads ends.
			_ = rig.workload.SetReadDeadline(time.Now().Add(5 * time.Second))
			if _, err := io.Copy(io.Discard, rig.workload); err != nil && !errors.Is(err, net.ErrClosed) && !strings.Contains(err.Error(), "reset") {
				t.Errorf("workload's connection not closed: %v", err)
			}
			if n := rig.dials.Load(); n != 0 {
				t.Errorf("dialled %d times for a refused tunnel", n)
			}
			if n := dest.accepted.Load(); n != 0 {
				t.Errorf("destination accepted %d connections", n)
			}
		})
	}
}

// The SNI and the CONNECT host are compared in canonical form, and a
// matching tunnel whose dial fails reports the dial's error.
func TestTunnelComparesCanonicalHosts(t *testing.T) {
	for _, tt := range []struct{ host, sni string }{
		{"api.example.com", "API.Example.com."},
		{"API.EXAMPLE.COM.", "api.example.com"},
		{"xn--bcher-kva.example", "XN--BCHER-KVA.example"},
	} {
		client, gateway := net.Pipe()
		go func() {
			_, _ = client.Write(helloOf(helloSNI(0, tt.sni)))
			_, _ = io.Copy(io.Discard, client)
			_ = client.Close()
		}()
		dialErr := errors.New("dial refused by the test")
		dials := 0
		res := Tunnel{}.Run(t.Context(), ConnStream(gateway, nil), tt.host, func(context.Context) (net.Conn, error) {
			dials++
			return nil, dialErr
		})
		if !errors.Is(res.Err, dialErr) || dials != 1 || res.SNI != tt.sni {
			t.Errorf("host %q, SNI %q: %+v after %d dials; want a match, then the dial's error", tt.host, tt.sni, res, dials)
		}
	}
}

// A tunnel through which nothing passes ends at the idle timeout; a
// cancelled context (the gateway shutting down) ends it at once.
func TestTunnelEnds(t *testing.T) {
	ca := testkit.NewCA(t)
	for _, tt := range []struct {
		name    string
		tunnel  Tunnel
		cancel  bool
		wantErr error
	}{
		{name: "idle", tunnel: Tunnel{IdleTimeout: 500 * time.Millisecond}, wantErr: ErrTunnelIdle},
		{name: "shutdown", cancel: true, wantErr: context.Canceled},
	} {
		t.Run(tt.name, func(t *testing.T) {
			dest := startTunnelDest(t, ca, serveRequest)
			rig := newTunnelRig(t, dest)
			ctx, cancel := context.WithCancel(t.Context())
			defer cancel()
			res := rig.run(ctx, tt.tunnel, "api.example.test")
			c := tls.Client(rig.workload, &tls.Config{ServerName: "api.example.test", RootCAs: ca.Pool()})
			if err := c.Handshake(); err != nil {
				t.Fatal(err)
			}
			if tt.cancel {
				cancel()
			}
			got := waitResult(t, res)
			if !errors.Is(got.Err, tt.wantErr) {
				t.Fatalf("Err = %v, want %v", got.Err, tt.wantErr)
			}
			if got.BytesIn == 0 || got.BytesOut == 0 {
				t.Errorf("handshake bytes not counted: %+v", got)
			}
			_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
			if _, err := c.Read(make([]byte, 1)); err == nil || errors.Is(err, context.DeadlineExceeded) {
				t.Errorf("workload read %v, want the tunnel closed", err)
			}
		})
	}
}

// BenchmarkTunnel measures bulk throughput, workload to destination over
// TLS, through the tunnel and, for the ratio, directly.
func BenchmarkTunnel(b *testing.B) {
	ca := testkit.NewCA(b)
	sink := func(c *tls.Conn) { _, _ = io.Copy(io.Discard, c) }
	chunk := pattern(64 << 10)
	for _, via := range []string{"direct", "tunnel"} {
		b.Run(via, func(b *testing.B) {
			dest := startTunnelDest(b, ca, sink)
			var (
				conn net.Conn
				res  <-chan TunnelResult
			)
			if via == "direct" {
				c, err := net.Dial("tcp", dest.addr)
				if err != nil {
					b.Fatal(err)
				}
				defer c.Close()
				conn = c
			} else {
				rig := newTunnelRig(b, dest)
				res = rig.run(b.Context(), Tunnel{}, "api.example.test")
				conn = rig.workload
			}
			c := tls.Client(conn, &tls.Config{ServerName: "api.example.test", RootCAs: ca.Pool()})
			if err := c.Handshake(); err != nil {
				b.Fatal(err)
			}
			b.SetBytes(int64(len(chunk)))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := c.Write(chunk); err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			// Close cleanly: close_notify and FIN, then the sink's.
			_ = c.CloseWrite()
			_ = conn.(interface{ CloseWrite() error }).CloseWrite()
			_, _ = io.Copy(io.Discard, c)
			_ = c.Close()
			if res != nil {
				if r := waitResult(b, res); r.Err != nil {
					b.Fatalf("tunnel: %v", r.Err)
				}
			}
		})
	}
}

// h2Conn is the workload's end of an HTTP/2 CONNECT stream, as a net.Conn
// for its TLS client: it writes the request body and reads the response.
type h2Conn struct {
	helloCaptureConn
	r io.ReadCloser
	w *io.PipeWriter
}

func (c *h2Conn) Read(p []byte) (int, error)  { return c.r.Read(p) }
func (c *h2Conn) Write(p []byte) (int, error) { return c.w.Write(p) }
func (c *h2Conn) Close() error                { _ = c.w.Close(); return c.r.Close() }

// The same tunnel works over HTTP/2, where the workload's end is a request
// body and a response: the TLS session goes through end to end, and the
// destination's close ends the stream.
func TestTunnelOverHTTP2(t *testing.T) {
	ca := testkit.NewCA(t)
	dest := startTunnelDest(t, ca, serveRequest)
	results := make(chan TunnelResult, 1)
	dials := atomic.Int32{}
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodConnect || r.ProtoMajor != 2 {
			http.Error(w, "want an HTTP/2 CONNECT", http.StatusBadRequest)
			return
		}
		w.WriteHeader(http.StatusOK)
		_ = http.NewResponseController(w).Flush()
		host, _, _ := net.SplitHostPort(r.Host)
		results <- Tunnel{}.Run(r.Context(), RequestStream(r.Body, w), host, func(ctx context.Context) (net.Conn, error) {
			dials.Add(1)
			var d net.Dialer
			return d.DialContext(ctx, "tcp", dest.addr)
		})
	}))
	srv.EnableHTTP2 = true
	srv.StartTLS()
	defer srv.Close()

	pr, pw := io.Pipe()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodConnect, srv.URL, pr)
	if err != nil {
		t.Fatal(err)
	}
	req.Host = "api.example.test:443"
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK || resp.ProtoMajor != 2 {
		t.Fatalf("CONNECT: %s over %s", resp.Status, resp.Proto)
	}
	c := tls.Client(&h2Conn{r: resp.Body, w: pw}, &tls.Config{ServerName: "api.example.test", RootCAs: ca.Pool()})
	defer c.Close()
	if err := c.Handshake(); err != nil {
		t.Fatalf("handshake through the HTTP/2 tunnel: %v", err)
	}
	const reqSize, replySize = 50_000, 200_000
	var hdr [8]byte
	binary.BigEndian.PutUint32(hdr[:4], reqSize)
	binary.BigEndian.PutUint32(hdr[4:], replySize)
	go func() { _, _ = c.Write(append(hdr[:], pattern(reqSize)...)) }()
	reply, err := io.ReadAll(c)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(reply, pattern(replySize)) {
		t.Fatalf("reply of %d bytes differs from what the destination sent", len(reply))
	}
	got := waitResult(t, results)
	if got.Err != nil || got.SNI != "api.example.test" || dials.Load() != 1 {
		t.Fatalf("result %+v after %d dials", got, dials.Load())
	}
	if w := <-dest.wire; got.BytesIn != w.written.Load() || got.BytesOut < reqSize {
		t.Errorf("BytesIn = %d, destination wrote %d; BytesOut = %d", got.BytesIn, w.written.Load(), got.BytesOut)
	}
}
