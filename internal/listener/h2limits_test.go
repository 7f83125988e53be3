package listener

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// TestHeaderBytesLimitH2 sends HTTP/2 requests with a raw framer: Go's client
// refuses to send a header list over the server's advertised
// SETTINGS_MAX_HEADER_LIST_SIZE, and an attacker's client would not.
func TestHeaderBytesLimitH2(t *testing.T) {
	store, ca := newTestStore(t)
	srv := startServer(t, Config{Certs: store, MaxHeaderBytes: 4 << 10})
	kib := strings.Repeat("a", 1<<10)
	for _, tc := range []struct {
		name       string
		fields     [][2]string
		wantStatus int
		wantGoAway http2.ErrCode // when the server closes the connection instead of answering
	}{
		{name: "fits", fields: [][2]string{{"x-a", kib}, {"x-b", kib}}, wantStatus: http.StatusOK},
		{name: "list over the advertised limit", wantStatus: http.StatusRequestHeaderFieldsTooLarge,
			fields: [][2]string{{"x-a", kib}, {"x-b", kib}, {"x-c", kib}, {"x-d", kib}, {"x-e", kib}, {"x-f", kib}, {"x-g", kib}, {"x-h", kib}}},
		// One string longer than the whole limit is refused by the HPACK decoder
		// before it is buffered: the connection goes, as for any compression error.
		{name: "one field over the limit", fields: [][2]string{{"x-big", strings.Repeat(kib, 12)}}, wantGoAway: http2.ErrCodeCompression},
	} {
		t.Run(tc.name, func(t *testing.T) {
			status, goAway := h2Raw(t, ca.Pool(), srv.Addr(), tc.fields)
			if status != tc.wantStatus || goAway != tc.wantGoAway {
				t.Errorf("status %d, GOAWAY %v; want %d, %v", status, goAway, tc.wantStatus, tc.wantGoAway)
			}
		})
	}
}

// h2Raw opens an HTTP/2 connection, sends one GET with fields, ignoring the
// server's limits, and returns the response status or the GOAWAY error code.
func h2Raw(t *testing.T, pool *x509.CertPool, addr net.Addr, fields [][2]string) (int, http2.ErrCode) {
	t.Helper()
	pseudo := [][2]string{{":method", "GET"}, {":scheme", "https"}, {":authority", "a.example.com"}, {":path", "/"}}
	status, goAway, reset := h2RawPseudo(t, pool, addr, pseudo, fields)
	if reset != 0 {
		t.Fatalf("stream reset: %v", reset)
	}
	return status, goAway
}

// h2RawPseudo is h2Raw with the pseudo-header fields given, and a stream
// reset returned rather than fatal.
func h2RawPseudo(t *testing.T, pool *x509.CertPool, addr net.Addr, pseudo, fields [][2]string) (int, http2.ErrCode, http2.ErrCode) {
	t.Helper()
	conn, err := tls.Dial("tcp", addr.String(), &tls.Config{RootCAs: pool, ServerName: "a.example.com", NextProtos: []string{"h2"}})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	if p := conn.ConnectionState().NegotiatedProtocol; p != "h2" {
		t.Fatalf("ALPN %q; want h2", p)
	}
	if _, err := conn.Write([]byte(http2.ClientPreface)); err != nil {
		t.Fatal(err)
	}
	fr := http2.NewFramer(conn, conn)
	fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
	if err := fr.WriteSettings(); err != nil {
		t.Fatal(err)
	}
	var block bytes.Buffer
	enc := hpack.NewEncoder(&block)
	for _, f := range pseudo {
		enc.WriteField(hpack.HeaderField{Name: f[0], Value: f[1]})
	}
	for _, f := range fields {
		enc.WriteField(hpack.HeaderField{Name: f[0], Value: f[1]})
	}
	// Within the default 16 KiB frame size, so one HEADERS frame carries it all.
	if err := fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: block.Bytes(), EndStream: true, EndHeaders: true}); err != nil {
		t.Fatal(err)
	}
	for {
		f, err := fr.ReadFrame()
		if err != nil {
			t.Fatalf("read frame: %v", err)
		}
		switch f := f.(type) {
		case *http2.SettingsFrame:
			if !f.IsAck() {
				fr.WriteSettingsAck()
			}
		case *http2.MetaHeadersFrame:
			if f.StreamID == 1 {
				status, err := strconv.Atoi(f.PseudoValue("status"))
				if err != nil {
					t.Fatalf("status %q", f.PseudoValue("status"))
				}
				return status, 0, 0
			}
		case *http2.RSTStreamFrame:
			return 0, 0, f.ErrCode
		case *http2.GoAwayFrame:
			return 0, f.ErrCode, 0
		}
	}
}

// HTTP/2 requests Go's HTTP/2 server refuses without a handler (here one
// without :path) get no request id and no audit event, as net/http has no
// hook for them; they are counted through OnHTTP2Error instead.
func TestHTTP2ErrorsAreCounted(t *testing.T) {
	store, ca := newTestStore(t)
	var mu sync.Mutex
	var got []string
	srv := startServer(t, Config{Certs: store, OnHTTP2Error: func(errType string) {
		mu.Lock()
		got = append(got, errType)
		mu.Unlock()
	}})
	// No :path: the stream is reset (PROTOCOL_ERROR) before any handler.
	_, _, reset := h2RawPseudo(t, ca.Pool(), srv.Addr(), [][2]string{{":method", "GET"}, {":scheme", "https"}, {":authority", "a.example.com"}}, nil)
	if reset != http2.ErrCodeProtocol {
		t.Fatalf("reset %v, want PROTOCOL_ERROR", reset)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(got) == 0 {
		t.Error("the refused stream was not counted")
	}
}
