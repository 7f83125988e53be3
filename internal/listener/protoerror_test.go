package listener

import (
	"bufio"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// hookRecorder is an OnProtocolError that records each call and answers as
// the gateway would: JSON with a request ID, Connection: close.
type hookRecorder struct {
	mu   sync.Mutex
	got  []ProtocolError
	keep bool // answer nil: keep the listener's own bytes
}

func (h *hookRecorder) hook(pe ProtocolError) []byte {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.got = append(h.got, pe)
	if h.keep {
		return nil
	}
	return gatewayAnswer(pe.Status, len(h.got))
}

func (h *hookRecorder) calls() []ProtocolError {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]ProtocolError(nil), h.got...)
}

func gatewayAnswer(status, n int) []byte {
	body := fmt.Sprintf(`{"error":%q,"request_id":"req-%d"}`, strings.ToLower(http.StatusText(status)), n)
	return fmt.Appendf(nil, "HTTP/1.1 %d %s\r\nContent-Type: application/json\r\nX-Request-Id: req-%d\r\nConnection: close\r\nContent-Length: %d\r\n\r\n%s",
		status, http.StatusText(status), n, len(body), body)
}

// dialH1 opens a TLS connection that offers only http/1.1.
func dialH1(tb testing.TB, pool *x509.CertPool, addr net.Addr) *tls.Conn {
	tb.Helper()
	conn, err := tls.Dial("tcp", addr.String(), &tls.Config{RootCAs: pool, ServerName: "a.example.com", NextProtos: []string{"http/1.1"}})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { conn.Close() })
	_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
	return conn
}

// exchange writes req on a new HTTP/1.1 connection and returns everything
// the server sends until it closes the connection.
func exchange(tb testing.TB, pool *x509.CertPool, addr net.Addr, req string) (reply string, local net.Addr) {
	tb.Helper()
	conn := dialH1(tb, pool, addr)
	if _, err := io.WriteString(conn, req); err != nil {
		tb.Fatal(err)
	}
	b, err := io.ReadAll(conn)
	if err != nil {
		tb.Fatalf("read reply: %v (got %q)", err, b)
	}
	return string(b), conn.LocalAddr()
}

// answerSummary is what a client sees of an HTTP/1.1 response: status,
// request ID, body, and whether it closes the connection.
func answerSummary(tb testing.TB, raw string) string {
	tb.Helper()
	resp, err := http.ReadResponse(bufio.NewReader(strings.NewReader(raw)), nil)
	if err != nil {
		tb.Fatalf("parse %q: %v", raw, err)
	}
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		tb.Fatalf("read body of %q: %v", raw, err)
	}
	return fmt.Sprintf("%d id=%q close=%v type=%q body=%q", resp.StatusCode, resp.Header.Get("X-Request-Id"), resp.Close, resp.Header.Get("Content-Type"), body)
}

// netHTTPAnswer is how net/http words the answers it writes itself.
func netHTTPAnswer(status int, reason, body string) string {
	return fmt.Sprintf("HTTP/1.1 %d %s%s%s", status, reason, readErrorHeaders, body)
}

// TestNetHTTPAnswersReplaced: each answer that net/http writes without a
// Handler goes through OnProtocolError, and the client gets the hook's
// bytes, or net/http's when the hook returns nil.
func TestNetHTTPAnswersReplaced(t *testing.T) {
	store, ca := newTestStore(t)
	huge := strings.Repeat("a", 16<<10) // over net/http's limit, twice MaxHeaderBytes plus 4 KiB slack
	large := strings.Repeat("a", 6<<10) // over MaxHeaderBytes, under net/http's limit
	tests := []struct {
		name        string
		req         string
		wantStatus  int
		wantReason  string
		wantNetHTTP string // net/http's answer, or a prefix of it (417 has a Date)
		wantRequest bool   // refused by the guard, which has the parsed request
	}{
		{name: "malformed request line", req: "GARBAGE\r\n\r\n", wantStatus: 400, wantReason: "Bad Request",
			wantNetHTTP: netHTTPAnswer(400, "Bad Request", "400 Bad Request")},
		{name: "missing Host", req: "GET / HTTP/1.1\r\n\r\n", wantStatus: 400, wantReason: "Bad Request: missing required Host header",
			wantNetHTTP: netHTTPAnswer(400, "Bad Request: missing required Host header", "400 Bad Request: missing required Host header")},
		{name: "malformed Host", req: "GET / HTTP/1.1\r\nHost: a b\r\n\r\n", wantStatus: 400, wantReason: "Bad Request: malformed Host header",
			wantNetHTTP: netHTTPAnswer(400, "Bad Request: malformed Host header", "400 Bad Request: malformed Host header")},
		{name: "invalid header name", req: "GET / HTTP/1.1\r\nHost: a.example.com\r\nBad Name: x\r\n\r\n", wantStatus: 400, wantReason: "Bad Request: invalid header name",
			wantNetHTTP: netHTTPAnswer(400, "Bad Request: invalid header name", "400 Bad Request: invalid header name")},
		{name: "conflicting Content-Length", req: "POST / HTTP/1.1\r\nHost: a.example.com\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", wantStatus: 400, wantReason: "Bad Request",
			wantNetHTTP: netHTTPAnswer(400, "Bad Request", "400 Bad Request")},
		{name: "unsupported transfer encoding", req: "POST / HTTP/1.1\r\nHost: a.example.com\r\nTransfer-Encoding: gzip\r\n\r\n", wantStatus: 501, wantReason: "Not Implemented: unsupported transfer encoding",
			wantNetHTTP: netHTTPAnswer(501, "Not Implemented", "Unsupported transfer encoding")},
		{name: "HTTP/2.0 request line", req: "GET / HTTP/2.0\r\nHost: a.example.com\r\n\r\n", wantStatus: 505, wantReason: "HTTP Version Not Supported: unsupported protocol version",
			wantNetHTTP: netHTTPAnswer(505, "HTTP Version Not Supported: unsupported protocol version", "505 HTTP Version Not Supported: unsupported protocol version")},
		{name: "unknown expectation", req: "GET / HTTP/1.1\r\nHost: a.example.com\r\nExpect: teapot\r\n\r\n", wantStatus: 417, wantReason: "Expectation Failed",
			wantNetHTTP: "HTTP/1.1 417 Expectation Failed\r\nConnection: close\r\nDate: "},
		{name: "header beyond net/http's limit", req: "GET / HTTP/1.1\r\nHost: a.example.com\r\nX-Huge: " + huge + "\r\n\r\n", wantStatus: 431, wantReason: "Request Header Fields Too Large",
			wantNetHTTP: netHTTPAnswer(431, "Request Header Fields Too Large", "431 Request Header Fields Too Large")},
		{name: "header over MaxHeaderBytes", req: "GET / HTTP/1.1\r\nHost: a.example.com\r\nX-Large: " + large + "\r\n\r\n", wantStatus: 431,
			wantReason: "Request Header Fields Too Large: header list over 4096 bytes", wantRequest: true,
			wantNetHTTP: "HTTP/1.1 431 Request Header Fields Too Large\r\nConnection: close\r\nContent-Type: application/json\r\n"},
	}
	for _, keep := range []bool{false, true} {
		for _, tt := range tests {
			t.Run(fmt.Sprintf("%s/keep=%v", tt.name, keep), func(t *testing.T) {
				rec := &hookRecorder{keep: keep}
				var handled atomic.Int32
				srv := startServer(t, Config{
					Certs: store, MaxHeaderBytes: 4 << 10, OnProtocolError: rec.hook,
					Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { handled.Add(1) }),
				})
				before := time.Now()
				reply, local := exchange(t, ca.Pool(), srv.Addr(), tt.req)
				after := time.Now()

				calls := rec.calls()
				if len(calls) != 1 {
					t.Fatalf("OnProtocolError called %d times; want once (reply %q)", len(calls), reply)
				}
				pe := calls[0]
				if pe.Status != tt.wantStatus || pe.Reason != tt.wantReason {
					t.Errorf("ProtocolError %d %q; want %d %q", pe.Status, pe.Reason, tt.wantStatus, tt.wantReason)
				}
				if (pe.Request != nil) != tt.wantRequest {
					t.Errorf("ProtocolError.Request = %v; want set: %v", pe.Request, tt.wantRequest)
				}
				if pe.RemoteAddr == nil || pe.RemoteAddr.String() != local.String() {
					t.Errorf("RemoteAddr %v; want the client's %v", pe.RemoteAddr, local)
				}
				if pe.LocalAddr == nil || pe.LocalAddr.String() != srv.Addr().String() {
					t.Errorf("LocalAddr %v; want the server's %v", pe.LocalAddr, srv.Addr())
				}
				if pe.TLS == nil || pe.TLS.ServerName != "a.example.com" || !pe.TLS.HandshakeComplete {
					t.Errorf("TLS state %+v; want the completed handshake for a.example.com", pe.TLS)
				}
				if pe.Time.Before(before) || pe.Time.After(after) {
					t.Errorf("Time %v; want between %v and %v", pe.Time, before, after)
				}
				if n := handled.Load(); n != 0 {
					t.Errorf("Handler called %d times; want never", n)
				}
				if keep {
					if !strings.HasPrefix(reply, tt.wantNetHTTP) {
						t.Errorf("with a nil answer, reply %q; want net/http's %q", reply, tt.wantNetHTTP)
					}
				} else if want := string(gatewayAnswer(tt.wantStatus, 1)); tt.wantRequest {
					// Sent through the ResponseWriter, which frames it anew.
					if got, want := answerSummary(t, reply), answerSummary(t, want); got != want {
						t.Errorf("reply %s; want the hook's %s", got, want)
					}
				} else if reply != want {
					t.Errorf("reply %q; want the hook's %q", reply, want)
				}
			})
		}
	}
}

// TestNetHTTPAnswerAfterKeepAlive: the write tracking starts over after each
// response, so net/http's answer to a second, malformed request on a kept-
// alive connection is caught too, and the first response is untouched.
func TestNetHTTPAnswerAfterKeepAlive(t *testing.T) {
	store, ca := newTestStore(t)
	rec := &hookRecorder{}
	srv := startServer(t, Config{Certs: store, OnProtocolError: rec.hook})
	conn := dialH1(t, ca.Pool(), srv.Addr())
	br := bufio.NewReader(conn)
	for i := range 2 {
		if _, err := io.WriteString(conn, "GET / HTTP/1.1\r\nHost: a.example.com\r\n\r\n"); err != nil {
			t.Fatal(err)
		}
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusOK || string(body) != "1 0" {
			t.Fatalf("request %d: %d %q; want 200 from the handler", i, resp.StatusCode, body)
		}
	}
	if _, err := io.WriteString(conn, "GET / HTTP/1.1\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	rest, err := io.ReadAll(br)
	if err != nil {
		t.Fatal(err)
	}
	if want := string(gatewayAnswer(400, 1)); string(rest) != want {
		t.Errorf("third reply %q; want %q", rest, want)
	}
	if calls := rec.calls(); len(calls) != 1 || calls[0].Reason != "Bad Request: missing required Host header" {
		t.Errorf("OnProtocolError calls %+v; want one for the missing Host", calls)
	}
}

// TestHandlerLookalikesPassUnchanged: a Handler's response is never taken
// for net/http's own answer, not even one that is byte for byte the same.
func TestHandlerLookalikesPassUnchanged(t *testing.T) {
	store, ca := newTestStore(t)
	canned400 := netHTTPAnswer(400, "Bad Request", "400 Bad Request")
	tests := []struct {
		name      string
		handler   http.HandlerFunc
		req       string
		sameBytes bool // the response parses as net/http's own answer
	}{
		{
			name: "400 text/plain Connection: close",
			req:  "GET / HTTP/1.1\r\nHost: a.example.com\r\n\r\n",
			handler: func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", "text/plain; charset=utf-8")
				w.Header().Set("Connection", "close")
				w.WriteHeader(http.StatusBadRequest)
				io.WriteString(w, "400 Bad Request")
			},
		},
		{
			// No Date, no Content-Length (identity coding), and the
			// Connection: close of a closing request, which net/http
			// writes after the handler's fields: net/http's bytes.
			name:      "byte-identical 400",
			req:       "GET / HTTP/1.1\r\nHost: a.example.com\r\nConnection: close\r\n\r\n",
			sameBytes: true,
			handler: func(w http.ResponseWriter, r *http.Request) {
				w.Header()["Date"] = nil
				w.Header().Set("Content-Type", "text/plain; charset=utf-8")
				w.Header().Set("Transfer-Encoding", "identity")
				w.WriteHeader(http.StatusBadRequest)
				io.WriteString(w, "400 Bad Request")
			},
		},
		{
			name:      "byte-identical 417",
			req:       "GET / HTTP/1.1\r\nHost: a.example.com\r\n\r\n",
			sameBytes: true,
			handler: func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Connection", "close")
				w.WriteHeader(http.StatusExpectationFailed)
			},
		},
		{
			name:      "hijacked, writing net/http's 400",
			req:       "GET / HTTP/1.1\r\nHost: a.example.com\r\n\r\n",
			sameBytes: true,
			handler: func(w http.ResponseWriter, r *http.Request) {
				c, _, err := http.NewResponseController(w).Hijack()
				if err != nil {
					t.Errorf("hijack: %v", err)
					return
				}
				defer c.Close()
				io.WriteString(c, canned400)
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := &hookRecorder{}
			srv := startServer(t, Config{Certs: store, OnProtocolError: rec.hook, Handler: tt.handler})
			reply, _ := exchange(t, ca.Pool(), srv.Addr(), tt.req)
			if calls := rec.calls(); len(calls) != 0 {
				t.Errorf("OnProtocolError called for a Handler's response: %+v", calls)
			}
			if !strings.HasPrefix(reply, "HTTP/1.1 4") || strings.Contains(reply, "req-") {
				t.Errorf("reply %q; want the Handler's own", reply)
			}
			if _, _, ok := parseOwnAnswer([]byte(reply)); ok != tt.sameBytes {
				t.Errorf("reply %q parses as net/http's own answer: %v; want %v (the test lost its point)", reply, ok, tt.sameBytes)
			}
		})
	}
}

// TestPlainHTTPThroughHook: plain HTTP on the TLS port is answered by the
// hook too, with no TLS state.
func TestPlainHTTPThroughHook(t *testing.T) {
	store, _ := newTestStore(t)
	rec := &hookRecorder{}
	srv := startServer(t, Config{Certs: store, OnProtocolError: rec.hook})
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
	if want := string(gatewayAnswer(400, 1)); string(reply) != want {
		t.Errorf("reply %q; want %q", reply, want)
	}
	calls := rec.calls()
	if len(calls) != 1 {
		t.Fatalf("OnProtocolError called %d times; want once", len(calls))
	}
	if pe := calls[0]; pe.Status != 400 || pe.Reason != "Bad Request: client sent an HTTP request to an HTTPS server" ||
		pe.TLS != nil || pe.RemoteAddr.String() != conn.LocalAddr().String() {
		t.Errorf("ProtocolError %+v; want 400 for plain HTTP from %v without TLS state", pe, conn.LocalAddr())
	}
}

// TestBadHookAnswer: an answer that is not one complete HTTP/1.1 refusal
// is not sent; the listener's own is.
func TestBadHookAnswer(t *testing.T) {
	store, ca := newTestStore(t)
	for _, tc := range []struct {
		name   string
		answer string
	}{
		{name: "not HTTP", answer: "oops"},
		{name: "success status", answer: "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"},
		{name: "truncated body", answer: "HTTP/1.1 400 Bad Request\r\nContent-Length: 10\r\n\r\nabc"},
		{name: "second response", answer: "HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\nHTTP/1.1 200 OK\r\n\r\n"},
		{name: "HTTP/1.0", answer: "HTTP/1.0 400 Bad Request\r\nContent-Length: 0\r\n\r\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := startServer(t, Config{Certs: store, OnProtocolError: func(ProtocolError) []byte { return []byte(tc.answer) }})
			reply, _ := exchange(t, ca.Pool(), srv.Addr(), "GARBAGE\r\n\r\n")
			if want := netHTTPAnswer(400, "Bad Request", "400 Bad Request"); reply != want {
				t.Errorf("reply %q; want net/http's %q", reply, want)
			}
		})
	}
}
