package listener

import (
	"bufio"
	"errors"
	"io"
	"net/http"
	"slices"
	"sync"
	"testing"
	"time"
)

// TestCloseAfterAmbiguousFraming: after a request whose body framing a
// proxy in front may have read differently (RFC 9112 §6.1: Content-Length
// with Transfer-Encoding, or Transfer-Encoding on HTTP/1.0), the server
// answers it and closes the connection, so bytes after it, such as a
// smuggled request, are never served.
func TestCloseAfterAmbiguousFraming(t *testing.T) {
	store, ca := newTestStore(t)
	const smuggled = "GET /smuggled HTTP/1.1\r\nHost: a.example.com\r\n\r\n"
	tests := []struct {
		name      string
		req       string
		handler   func(w http.ResponseWriter) // extra handler behaviour
		wantPaths []string                    // requests served, in order
		wantClose bool                        // the connection ends after the last response
	}{
		{
			name:      "Content-Length and chunked",
			req:       "POST / HTTP/1.1\r\nHost: a.example.com\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + smuggled,
			wantPaths: []string{"/"}, wantClose: true,
		},
		{
			name:      "chunked and Content-Length",
			req:       "POST / HTTP/1.1\r\nHost: a.example.com\r\nTransfer-Encoding: chunked\r\nContent-Length: 48\r\n\r\n0\r\n\r\n" + smuggled,
			wantPaths: []string{"/"}, wantClose: true,
		},
		{
			// Indistinguishable from the above once net/http has parsed it.
			name:      "chunked alone",
			req:       "POST / HTTP/1.1\r\nHost: a.example.com\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n" + smuggled,
			wantPaths: []string{"/"}, wantClose: true,
		},
		{
			name:      "HTTP/1.0 keep-alive with Transfer-Encoding",
			req:       "POST / HTTP/1.0\r\nHost: a.example.com\r\nConnection: keep-alive\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + smuggled,
			wantPaths: []string{"/"}, wantClose: true,
		},
		{
			name: "handler removes Connection: close",
			req:  "POST / HTTP/1.1\r\nHost: a.example.com\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + smuggled,
			handler: func(w http.ResponseWriter) {
				w.Header().Del("Connection")
			},
			wantPaths: []string{"/"}, wantClose: true,
		},
		{
			// The control: plain Content-Length framing keeps the
			// connection, and the pipelined request is served.
			name:      "Content-Length alone",
			req:       "POST / HTTP/1.1\r\nHost: a.example.com\r\nContent-Length: 5\r\n\r\nhello" + smuggled,
			wantPaths: []string{"/", "/smuggled"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var mu sync.Mutex
			var paths []string
			srv := startServer(t, Config{Certs: store, IdleTimeout: 30 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				mu.Lock()
				paths = append(paths, r.URL.Path)
				mu.Unlock()
				io.Copy(io.Discard, r.Body)
				if tt.handler != nil {
					tt.handler(w)
				}
				io.WriteString(w, "ok")
			})})
			conn := dialH1(t, ca.Pool(), srv.Addr())
			if _, err := io.WriteString(conn, tt.req); err != nil {
				t.Fatal(err)
			}
			br := bufio.NewReader(conn)
			for i := range tt.wantPaths {
				resp, err := http.ReadResponse(br, nil)
				if err != nil {
					t.Fatalf("response %d: %v", i+1, err)
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				last := i == len(tt.wantPaths)-1
				if last && tt.wantClose && tt.handler == nil && !resp.Close {
					t.Errorf("response %d lacks Connection: close (header %v)", i+1, resp.Header)
				}
			}
			// Well before IdleTimeout: a connection left open shows as a
			// timeout here.
			wait := 2 * time.Second
			if !tt.wantClose {
				wait = 200 * time.Millisecond // only to see that nothing more comes
			}
			_ = conn.SetReadDeadline(time.Now().Add(wait))
			_, err := br.ReadByte()
			if tt.wantClose && !errors.Is(err, io.EOF) {
				t.Errorf("after the response: %v; want EOF, the server closing the connection", err)
			}
			if !tt.wantClose && err == nil {
				t.Error("unexpected bytes after the responses")
			}
			mu.Lock()
			defer mu.Unlock()
			if !slices.Equal(paths, tt.wantPaths) {
				t.Errorf("served %q; want %q", paths, tt.wantPaths)
			}
		})
	}
}
