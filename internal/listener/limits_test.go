package listener

import (
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"tollgate.dev/tollgate/internal/testkit"
)

func newTestStore(tb testing.TB) (*CertStore, *testkit.CA) {
	tb.Helper()
	ca := testkit.NewCA(tb)
	store, err := NewStaticCertStore(ca.Issue(tb, "a.example.com", "127.0.0.1"))
	if err != nil {
		tb.Fatal(err)
	}
	return store, ca
}

// TestReadHeaderTimeoutDribble: a client that sends its headers one byte
// every 100ms (slowloris) is cut off at ReadHeaderTimeout.
func TestReadHeaderTimeoutDribble(t *testing.T) {
	store, ca := newTestStore(t)
	const timeout = 300 * time.Millisecond
	srv := startServer(t, Config{Certs: store, ReadHeaderTimeout: timeout, HandshakeTimeout: 5 * time.Second})

	start := time.Now() // before the dial: the server's clock can start before Dial returns
	conn, err := tls.Dial("tcp", srv.Addr().String(), &tls.Config{RootCAs: ca.Pool(), ServerName: "a.example.com"})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	closed := make(chan error, 1)
	go func() {
		_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
		_, err := io.ReadAll(conn)
		closed <- err
	}()
	if _, err := io.WriteString(conn, "GET / HTTP/1.1\r\nHost: a.example.com\r\n"); err != nil {
		t.Fatal(err)
	}
	dribble := []byte("X-Slow: " + strings.Repeat("a", 40)) // 4.8s at 100ms a byte
	var elapsed time.Duration
loop:
	for _, b := range dribble {
		select {
		case err := <-closed:
			elapsed = time.Since(start)
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				t.Fatalf("client read timed out; the server never closed the connection")
			}
			break loop
		case <-time.After(100 * time.Millisecond):
		}
		if _, err := conn.Write([]byte{b}); err != nil {
			break // the server closed; the reader reports when
		}
	}
	if elapsed == 0 {
		select {
		case <-closed:
			elapsed = time.Since(start)
		case <-time.After(5 * time.Second):
			t.Fatal("server did not close a dribbling connection")
		}
	}
	if elapsed < timeout-50*time.Millisecond || elapsed > timeout+time.Second {
		t.Errorf("connection closed after %v; want about %v", elapsed, timeout)
	}
}

// TestHandshakeTimeoutDribble: a client that sends its ClientHello one byte
// every 100ms is cut off at HandshakeTimeout, and the failure is counted.
func TestHandshakeTimeoutDribble(t *testing.T) {
	store, _ := newTestStore(t)
	const timeout = 300 * time.Millisecond
	var failures atomic.Int64
	srv := startServer(t, Config{
		Certs: store, HandshakeTimeout: timeout, ReadHeaderTimeout: 5 * time.Second,
		OnTLSHandshakeError: func(HandshakeFailure) { failures.Add(1) },
	})
	hello := clientHello(t)

	start := time.Now() // before the dial: the server's clock starts at accept
	conn, err := net.Dial("tcp", srv.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	closed := make(chan struct{})
	go func() {
		defer close(closed)
		_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
		_, _ = io.ReadAll(conn)
	}()
	for _, b := range hello[:min(len(hello), 50)] { // at most 5s
		if _, err := conn.Write([]byte{b}); err != nil {
			break
		}
		select {
		case <-closed:
		case <-time.After(100 * time.Millisecond):
			continue
		}
		break
	}
	select {
	case <-closed:
	case <-time.After(5 * time.Second):
		t.Fatal("server did not close a dribbled handshake")
	}
	if elapsed := time.Since(start); elapsed < timeout-50*time.Millisecond || elapsed > timeout+time.Second {
		t.Errorf("connection closed after %v; want about %v", elapsed, timeout)
	}
	waitFor(t, "handshake failure counted", func() bool { return failures.Load() == 1 })
}

// clientHello returns the bytes of a real TLS ClientHello record.
func clientHello(tb testing.TB) []byte {
	tb.Helper()
	c, s := net.Pipe()
	defer s.Close()
	go func() {
		_ = tls.Client(c, &tls.Config{ServerName: "a.example.com"}).Handshake()
		c.Close()
	}()
	hdr := make([]byte, 5)
	if _, err := io.ReadFull(s, hdr); err != nil {
		tb.Fatal(err)
	}
	body := make([]byte, int(hdr[3])<<8|int(hdr[4]))
	if _, err := io.ReadFull(s, body); err != nil {
		tb.Fatal(err)
	}
	return append(hdr, body...)
}

func TestHeaderBytesLimit(t *testing.T) {
	store, ca := newTestStore(t)
	srv := startServer(t, Config{Certs: store, MaxHeaderBytes: 4 << 10})
	c := newClient(t, ca.Pool(), srv.Addr(), "a.example.com", h1)

	resp, _ := get(t, c, "a.example.com", http.Header{"X-Fits": {strings.Repeat("a", 2<<10)}})
	if resp.StatusCode != http.StatusOK {
		t.Errorf("2 KiB header: status %d; want 200", resp.StatusCode)
	}
	// net/http allows 4 KiB of slack over MaxHeaderBytes; go well past it.
	resp, _ = get(t, c, "a.example.com", http.Header{"X-Huge": {strings.Repeat("a", 16<<10)}})
	if resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
		t.Errorf("16 KiB header: status %d; want 431", resp.StatusCode)
	}
}

func TestHeaderCountLimit(t *testing.T) {
	store, ca := newTestStore(t)
	const max = 20
	srv := startServer(t, Config{Certs: store, MaxHeaderCount: max})
	for _, p := range bothProtos {
		t.Run(string(p), func(t *testing.T) {
			c := newClient(t, ca.Pool(), srv.Addr(), "a.example.com", p)
			// The client adds headers of its own (User-Agent, ...);
			// learn how many, to test the exact boundary.
			_, body := get(t, c, "a.example.com", nil)
			var major, base int
			if _, err := fmt.Sscanf(body, "%d %d", &major, &base); err != nil {
				t.Fatalf("echo body %q: %v", body, err)
			}
			distinct := func(n int) http.Header {
				h := http.Header{}
				for i := range n {
					h.Set(fmt.Sprintf("X-H-%d", i), "v")
				}
				return h
			}
			tests := []struct {
				name       string
				hdr        http.Header
				wantStatus int
				wantBody   string
			}{
				{name: "at limit", hdr: distinct(max - base), wantStatus: http.StatusOK, wantBody: fmt.Sprintf("%d %d", major, max)},
				{name: "one over", hdr: distinct(max - base + 1), wantStatus: http.StatusRequestHeaderFieldsTooLarge, wantBody: headerCountBody},
				{name: "repeated name counts each", hdr: http.Header{"X-Dup": slices.Repeat([]string{"v"}, max)}, wantStatus: http.StatusRequestHeaderFieldsTooLarge, wantBody: headerCountBody},
				{name: "far over", hdr: distinct(500), wantStatus: http.StatusRequestHeaderFieldsTooLarge, wantBody: headerCountBody},
			}
			for _, tt := range tests {
				t.Run(tt.name, func(t *testing.T) {
					resp, body := get(t, c, "a.example.com", tt.hdr)
					if resp.StatusCode != tt.wantStatus || body != tt.wantBody {
						t.Errorf("status %d body %q; want %d %q", resp.StatusCode, body, tt.wantStatus, tt.wantBody)
					}
					if resp.StatusCode != http.StatusOK && resp.Header.Get("Content-Type") != "application/json" {
						t.Errorf("Content-Type %q; want application/json", resp.Header.Get("Content-Type"))
					}
				})
			}
		})
	}
}

// TestHandshakeFailureCounting: plain HTTP on the TLS port is answered
// with 400 and counted; a bare connect-and-close (a TCP health check) is
// logged but not counted.
func TestHandshakeFailureCounting(t *testing.T) {
	store, _ := newTestStore(t)
	var failures atomic.Int64
	var logs testkit.Buffer
	srv := startServer(t, Config{
		Certs:               store,
		OnTLSHandshakeError: func(HandshakeFailure) { failures.Add(1) },
		Logger:              slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
	})

	probe, err := net.Dial("tcp", srv.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	probe.Close()
	waitFor(t, "probe logged", func() bool { return strings.Contains(logs.String(), "connection closed before TLS handshake") })
	if got := failures.Load(); got != 0 {
		t.Errorf("health-check probe counted as %d handshake failures; want 0", got)
	}

	conn, err := net.Dial("tcp", srv.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(conn, "GET / HTTP/1.1\r\nHost: a.example.com\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	reply, err := io.ReadAll(conn)
	if err != nil {
		t.Fatal(err)
	}
	if want := "HTTP/1.0 400 Bad Request\r\n"; !strings.HasPrefix(string(reply), want) {
		t.Errorf("plain HTTP got %q; want prefix %q", reply, want)
	}
	waitFor(t, "plain HTTP counted", func() bool { return failures.Load() == 1 })
}

// TestHeaderLimitsThroughHook: requests over the header count or size limit
// are refused through OnProtocolError over HTTP/1.1 and HTTP/2, the client
// gets the hook's answer, and the hook gets the parsed request. Before the
// size check moved into the guard, an HTTP/2 request over MaxHeaderBytes
// got net/http's own 431 (or Go's client refused to send it).
func TestHeaderLimitsThroughHook(t *testing.T) {
	store, ca := newTestStore(t)
	const maxCount, maxBytes = 20, 4 << 10
	const clientFields = 2 // User-Agent and Accept-Encoding, added by Go's client
	kib := strings.Repeat("a", 1<<10)
	many := http.Header{}
	for i := range maxCount + 5 {
		many.Set(fmt.Sprintf("X-H-%d", i), "v")
	}
	for _, p := range bothProtos {
		t.Run(string(p), func(t *testing.T) {
			rec := &hookRecorder{}
			var handled atomic.Int32
			srv := startServer(t, Config{
				Certs: store, MaxHeaderCount: maxCount, MaxHeaderBytes: maxBytes, OnProtocolError: rec.hook,
				Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { handled.Add(1) }),
			})
			c := newClient(t, ca.Pool(), srv.Addr(), "a.example.com", p)
			tests := []struct {
				name       string
				hdr        http.Header
				wantReason string // "": served
			}{
				{name: "fits", hdr: http.Header{"X-A": {kib}, "X-B": {kib}}},
				{name: "too many fields", hdr: many, wantReason: fmt.Sprintf("Request Header Fields Too Large: %d header fields, limit %d", maxCount+5+clientFields, maxCount)},
				{name: "list too large", hdr: http.Header{"X-A": {kib}, "X-B": {kib}, "X-C": {kib}, "X-D": {kib}, "X-E": {kib}},
					wantReason: "Request Header Fields Too Large: header list over 4096 bytes"},
			}
			for _, tt := range tests {
				t.Run(tt.name, func(t *testing.T) {
					callsBefore, handledBefore := len(rec.calls()), handled.Load()
					resp, body := get(t, c, "a.example.com", tt.hdr)
					calls := rec.calls()[callsBefore:]
					if tt.wantReason == "" {
						if resp.StatusCode != http.StatusOK || len(calls) != 0 || handled.Load() != handledBefore+1 {
							t.Errorf("status %d, %d hook calls, handler calls %d; want 200 from the handler", resp.StatusCode, len(calls), handled.Load()-handledBefore)
						}
						return
					}
					if len(calls) != 1 {
						t.Fatalf("OnProtocolError called %d times; want once", len(calls))
					}
					pe := calls[0]
					if pe.Status != http.StatusRequestHeaderFieldsTooLarge || pe.Reason != tt.wantReason {
						t.Errorf("ProtocolError %d %q; want 431 %q", pe.Status, pe.Reason, tt.wantReason)
					}
					if pe.Request == nil || pe.Request.ProtoMajor != resp.ProtoMajor || pe.TLS == nil || pe.RemoteAddr == nil || pe.LocalAddr.String() != srv.Addr().String() {
						t.Errorf("ProtocolError %+v; want the request, TLS state and addresses", pe)
					}
					n := len(rec.calls())
					wantBody := fmt.Sprintf(`{"error":"request header fields too large","request_id":"req-%d"}`, n)
					if resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge || body != wantBody || resp.Header.Get("X-Request-Id") != fmt.Sprintf("req-%d", n) {
						t.Errorf("got %d %q (X-Request-Id %q); want the hook's 431 %q", resp.StatusCode, body, resp.Header.Get("X-Request-Id"), wantBody)
					}
					if wantClose := p == h1; resp.Close != wantClose {
						t.Errorf("response closes the connection: %v; want %v", resp.Close, wantClose)
					}
					if handled.Load() != handledBefore {
						t.Error("Handler called for a refused request")
					}
				})
			}
		})
	}
}

// TestHTTP2AnswersWithoutHandler pins down what Go's HTTP/2 server still
// answers on its own, unseen by Handler and OnProtocolError, so that a Go
// upgrade that changes it is noticed: connection-specific header fields
// (400) and a header list over the advertised SETTINGS_MAX_HEADER_LIST_SIZE
// (431). Within the advertised size, a list over MaxHeaderBytes goes
// through the hook even from a client that ignores the setting.
func TestHTTP2AnswersWithoutHandler(t *testing.T) {
	store, ca := newTestStore(t)
	rec := &hookRecorder{}
	var handled atomic.Int32
	srv := startServer(t, Config{
		Certs: store, MaxHeaderBytes: 4 << 10, OnProtocolError: rec.hook,
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { handled.Add(1) }),
	})
	kib := strings.Repeat("a", 1<<10)
	fields := func(n int) [][2]string {
		var fs [][2]string
		for i := range n {
			fs = append(fs, [2]string{fmt.Sprintf("x-h-%d", i), kib})
		}
		return fs
	}
	for _, tc := range []struct {
		name       string
		fields     [][2]string
		wantStatus int
		wantHook   bool
	}{
		{name: "connection header", fields: [][2]string{{"connection", "close"}}, wantStatus: http.StatusBadRequest},
		{name: "transfer-encoding header", fields: [][2]string{{"transfer-encoding", "chunked"}}, wantStatus: http.StatusBadRequest},
		{name: "TE other than trailers", fields: [][2]string{{"te", "gzip"}}, wantStatus: http.StatusBadRequest},
		// 4 KiB limit, 8 KiB (plus 320 bytes) advertised.
		{name: "list over the advertised size", fields: fields(10), wantStatus: http.StatusRequestHeaderFieldsTooLarge},
		{name: "list within the advertised size", fields: fields(5), wantStatus: http.StatusRequestHeaderFieldsTooLarge, wantHook: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := len(rec.calls())
			status, goAway := h2Raw(t, ca.Pool(), srv.Addr(), tc.fields)
			if status != tc.wantStatus || goAway != 0 {
				t.Errorf("status %d, GOAWAY %v; want %d", status, goAway, tc.wantStatus)
			}
			if got := len(rec.calls()) - before; got != map[bool]int{false: 0, true: 1}[tc.wantHook] {
				t.Errorf("OnProtocolError called %d times; want hook: %v", got, tc.wantHook)
			}
			if n := handled.Load(); n != 0 {
				t.Errorf("Handler called %d times; want never", n)
			}
		})
	}
}

// SetLimits changes the header limits of a running server for the next
// request, over HTTP/1.1 and HTTP/2, on connections already open too; it
// names what it can't change live, and changes nothing of it.
func TestSetLimitsLive(t *testing.T) {
	store, ca := newTestStore(t)
	srv := startServer(t, Config{Certs: store, MaxHeaderCount: 40, MaxHeaderBytes: 8 << 10, MaxConnections: 10})
	for _, p := range bothProtos {
		t.Run(string(p), func(t *testing.T) {
			c := newClient(t, ca.Pool(), srv.Addr(), "a.example.com", p)
			many := http.Header{}
			for i := range 25 {
				many.Set(fmt.Sprintf("X-H-%d", i), "v")
			}
			big := http.Header{"X-Big": {strings.Repeat("a", 6<<10)}}
			for _, step := range []struct {
				limits     Limits
				notApplied []string
				many, big  int // statuses
			}{
				{Limits{MaxHeaderCount: 40, MaxHeaderBytes: 8 << 10, MaxConnections: 10}, nil, 200, 200},
				{Limits{MaxHeaderCount: 20, MaxHeaderBytes: 4 << 10, MaxConnections: 10}, nil, 431, 431},
				// Above twice the start's bytes: kept at 4 KiB.
				{Limits{MaxHeaderCount: 40, MaxHeaderBytes: 64 << 10, MaxConnections: 10}, []string{"MaxHeaderBytes"}, 200, 431},
				{Limits{MaxHeaderCount: 40, MaxHeaderBytes: 16 << 10, MaxConnections: 0}, []string{"MaxConnections"}, 200, 200},
			} {
				if got := srv.SetLimits(step.limits); !slices.Equal(got, step.notApplied) {
					t.Errorf("SetLimits(%+v) could not apply %v, want %v", step.limits, got, step.notApplied)
				}
				if resp, _ := get(t, c, "a.example.com", many); resp.StatusCode != step.many {
					t.Errorf("%+v: 25 headers: %d, want %d", step.limits, resp.StatusCode, step.many)
				}
				if resp, _ := get(t, c, "a.example.com", big); resp.StatusCode != step.big {
					t.Errorf("%+v: 6 KiB header: %d, want %d", step.limits, resp.StatusCode, step.big)
				}
			}
			srv.SetLimits(Limits{MaxHeaderCount: 40, MaxHeaderBytes: 8 << 10, MaxConnections: 10})
		})
	}
	if got := tableOf(srv).limitNow(); got != 10 {
		t.Errorf("connection limit %d, want 10", got)
	}
	srv.SetLimits(Limits{MaxConnections: 3, MaxConnectionsPerSource: 2})
	tbl := tableOf(srv)
	tbl.mu.Lock()
	limit, per := tbl.limit, tbl.perSource
	tbl.mu.Unlock()
	if limit != 3 || per != 2 {
		t.Errorf("connection limits %d/%d, want 3/2", limit, per)
	}
}
