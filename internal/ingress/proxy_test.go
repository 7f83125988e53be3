package ingress

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"io"
	"mime"
	"net/http"
	"net/http/httptrace"
	"net/netip"
	"net/textproto"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"tollgate.dev/tollgate/internal/audit"
)

// newProxyTestbed is a testbed whose gateway speaks HTTP/2 or only HTTP/1.1
// to the upstream.
func newProxyTestbed(t *testing.T, upstreamH2 bool, o testbedOptions) *testbed {
	t.Helper()
	if !upstreamH2 {
		o.routes = func(up *url.URL, tr http.RoundTripper) []*Route {
			h1 := tr.(*http.Transport).Clone()
			h1.ForceAttemptHTTP2 = false
			h1.TLSNextProto = map[string]func(string, *tls.Conn) http.RoundTripper{}
			h1.TLSClientConfig.NextProtos = []string{"http/1.1"}
			t.Cleanup(h1.CloseIdleConnections)
			return []*Route{{Name: "web", Host: "*", PathPrefix: "/", Upstream: up, Transport: h1}}
		}
	}
	return newTestbed(t, o)
}

func byRequestID(id string) func(*audit.Event) bool {
	return func(ev *audit.Event) bool { return ev.RequestID == id }
}

// forEachLeg runs f over every pair of client and upstream protocols, with
// one testbed (o) per upstream protocol. Hop-by-hop headers, trailers and
// protocol switches differ between the two; an HTTP/2 upstream sends
// trailers the gateway was not told of.
func forEachLeg(t *testing.T, o testbedOptions, f func(t *testing.T, tb *testbed, c *http.Client, upstreamH2 bool)) {
	t.Helper()
	for _, up := range protocols {
		tb := newProxyTestbed(t, up.h2, o)
		for _, p := range protocols {
			t.Run("upstream "+up.name+"/client "+p.name, func(t *testing.T) { f(t, tb, tb.client(p.h2), up.h2) })
		}
	}
}

// getResponse GETs target from the front; the body is closed at the end of
// the test.
func getResponse(t *testing.T, tb *testbed, c *http.Client, target string) *http.Response {
	t.Helper()
	resp, err := c.Get(tb.front.URL + target)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	return resp
}

func wantUpstreamProto(t *testing.T, e echo, h2 bool) {
	t.Helper()
	want := map[bool]string{false: "HTTP/1.1", true: "HTTP/2.0"}[h2]
	if e.Proto != want {
		t.Fatalf("the upstream was reached over %s, want %s", e.Proto, want)
	}
}

// TestForwardedRequestHeaders sends request heads exactly as written (Go's
// clients can't send most hop-by-hop headers) and checks what the upstream
// received: hop-by-hop headers and the headers Connection names removed,
// TE reduced to "trailers", the forwarding headers the gateway's own.
func TestForwardedRequestHeaders(t *testing.T) {
	tests := []struct {
		name    string
		trusted bool
		head    string            // header lines, each ending in "\r\n"
		want    map[string]string // the upstream gets these, joined by ", "
		absent  []string          // and not these
	}{
		{
			name: "hop-by-hop headers",
			head: "Connection: keep-alive\r\nKeep-Alive: timeout=5\r\nProxy-Connection: keep-alive\r\nProxy-Authorization: Basic Zm9vOmJhcg==\r\n" +
				"Te: gzip\r\nTrailer: X-Checksum\r\nUpgrade: websocket\r\nX-Kept: yes\r\n",
			want:   map[string]string{"X-Kept": "yes"},
			absent: []string{"Connection", "Keep-Alive", "Proxy-Connection", "Proxy-Authorization", "Te", "Trailer", "Upgrade"},
		},
		{
			name:   "headers named in Connection",
			head:   "Connection: close, X-Hop\r\nX-Hop: 1\r\nClose: yes\r\nX-Kept: yes\r\n",
			want:   map[string]string{"X-Kept": "yes"},
			absent: []string{"Connection", "X-Hop", "Close"},
		},
		{
			name: "TE trailers is kept alone",
			head: "Te: deflate, trailers\r\n",
			want: map[string]string{"Te": "trailers"},
		},
		{
			name:   "no User-Agent stays none",
			head:   "",
			absent: []string{"User-Agent"},
		},
		{
			name: "User-Agent passes",
			head: "User-Agent: curl/8.5.0\r\n",
			want: map[string]string{"User-Agent": "curl/8.5.0"},
		},
		{
			name: "untrusted forwarding headers are replaced",
			head: "X-Forwarded-For: 6.6.6.6\r\nX-Forwarded-Host: evil.example\r\nX-Forwarded-Proto: http\r\nForwarded: for=6.6.6.6\r\nX-Forwarded-Port: 1\r\n",
			want: map[string]string{
				"X-Forwarded-For": "127.0.0.1", "X-Forwarded-Host": "localhost", "X-Forwarded-Proto": "https",
			},
			absent: []string{"Forwarded", "X-Forwarded-Port"},
		},
		{
			name:    "a trusted proxy's X-Forwarded-For is extended",
			trusted: true,
			head: "X-Forwarded-For: 6.6.6.6\r\nX-Forwarded-For: 7.7.7.7, 8.8.8.8\r\nX-Forwarded-Host: front.example\r\n" +
				"X-Forwarded-Proto: http\r\nForwarded: for=6.6.6.6\r\nX-Forwarded-Port: 8443\r\n",
			want: map[string]string{
				"X-Forwarded-For": "6.6.6.6, 7.7.7.7, 8.8.8.8, 127.0.0.1", "X-Forwarded-Host": "localhost", "X-Forwarded-Proto": "https",
				"X-Forwarded-Port": "8443",
			},
			absent: []string{"Forwarded"},
		},
	}
	for _, up := range protocols {
		for _, trusted := range []bool{false, true} {
			var opts testbedOptions
			if trusted {
				opts.trusted = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}
			}
			tb := newProxyTestbed(t, up.h2, opts)
			for _, tc := range tests {
				if tc.trusted != trusted {
					continue
				}
				t.Run("upstream "+up.name+"/"+tc.name, func(t *testing.T) {
					status, body := tb.rawRequest("GET /x HTTP/1.1\r\nHost: localhost\r\n" + tc.head + "\r\n")
					if status != 200 {
						t.Fatalf("status %d: %s", status, body)
					}
					var e echo
					if err := json.Unmarshal([]byte(body), &e); err != nil {
						t.Fatalf("upstream answer %q: %v", body, err)
					}
					wantUpstreamProto(t, e, up.h2)
					h := http.Header(e.Header)
					for k, v := range tc.want {
						if got := strings.Join(h.Values(k), ", "); got != v {
							t.Errorf("%s = %q, want %q", k, got, v)
						}
					}
					for _, k := range tc.absent {
						if v, ok := h[k]; ok {
							t.Errorf("%s reached the upstream: %q", k, v)
						}
					}
					// The id is the gateway's, not a client's, and names this request.
					if id := h.Get("X-Request-Id"); id == "" || tb.events.find(t, byRequestID(id)).Path != "/x" {
						t.Errorf("X-Request-Id = %q, not the id of this request's event", id)
					}
				})
			}
		}
	}
}

// TestForwardedOverClients: what the gateway sets is the same whichever
// protocols the two legs speak, and the client gets the request id the
// upstream got.
func TestForwardedOverClients(t *testing.T) {
	forEachLeg(t, testbedOptions{}, func(t *testing.T, tb *testbed, c *http.Client, upstreamH2 bool) {
		req, _ := http.NewRequest("GET", tb.front.URL+"/x?q=1", nil)
		req.Header["User-Agent"] = []string{""} // send none
		req.Header.Set("Proxy-Authorization", "Basic Zm9vOmJhcg==")
		req.Header.Set("Te", "trailers")
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var e echo
		if err := json.NewDecoder(resp.Body).Decode(&e); err != nil {
			t.Fatal(err)
		}
		wantUpstreamProto(t, e, upstreamH2)
		h := http.Header(e.Header)
		got := map[string][]string{}
		for _, k := range []string{"X-Forwarded-For", "X-Forwarded-Proto", "Te", "User-Agent", "Proxy-Authorization"} {
			if v, ok := h[k]; ok {
				got[k] = v
			}
		}
		want := map[string][]string{"X-Forwarded-For": {"127.0.0.1"}, "X-Forwarded-Proto": {"https"}, "Te": {"trailers"}}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("upstream headers (-want +got):\n%s", diff)
		}
		if xfh := h.Get("X-Forwarded-Host"); xfh != tb.front.Listener.Addr().String() {
			t.Errorf("X-Forwarded-Host = %q, want %q", xfh, tb.front.Listener.Addr())
		}
		if e.RequestURI != "/x?q=1" {
			t.Errorf("upstream saw %q", e.RequestURI)
		}
		id := resp.Header.Values("X-Request-Id")
		if len(id) != 1 || id[0] != h.Get("X-Request-Id") {
			t.Fatalf("client got X-Request-Id %q, upstream %q", id, h.Get("X-Request-Id"))
		}
		ev := tb.events.find(t, byRequestID(id[0]))
		if ev.Upstream.SPIFFEID != upstreamID {
			t.Errorf("event's upstream SPIFFE ID %q, want %q", ev.Upstream.SPIFFEID, upstreamID)
		}
	})
}

// TestResponseHeaders: the upstream's hop-by-hop headers (and those its
// Connection names) stop at the gateway; its X-Request-Id is replaced by the
// gateway's; everything else passes with every value.
func TestResponseHeaders(t *testing.T) {
	upstream := func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Connection", "X-Up-Hop")
		h.Set("X-Up-Hop", "1")
		h.Set("Keep-Alive", "timeout=5")
		h.Set("Proxy-Authenticate", `Basic realm="up"`)
		h.Set("X-Request-Id", "upstream-chosen")
		h["Set-Cookie"] = []string{"a=1", "b=2"}
		h.Set("Cache-Control", "no-cache")
		io.WriteString(w, "ok")
	}
	forEachLeg(t, testbedOptions{upstreamHandler: upstream}, func(t *testing.T, tb *testbed, c *http.Client, upstreamH2 bool) {
		resp := getResponse(t, tb, c, "/x")
		io.Copy(io.Discard, resp.Body)
		if resp.StatusCode != 200 {
			t.Fatalf("status %d", resp.StatusCode)
		}
		hop := []string{"Keep-Alive", "Proxy-Authenticate"}
		if !upstreamH2 {
			// HTTP/2 has no Connection header (the upstream's server
			// drops it), so there X-Up-Hop is an ordinary header.
			hop = append(hop, "X-Up-Hop")
		}
		for _, k := range hop {
			if v, ok := resp.Header[k]; ok {
				t.Errorf("%s reached the client: %q", k, v)
			}
		}
		got := map[string][]string{}
		for _, k := range []string{"Set-Cookie", "Cache-Control"} {
			got[k] = resp.Header.Values(k)
		}
		want := map[string][]string{"Set-Cookie": {"a=1", "b=2"}, "Cache-Control": {"no-cache"}}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("response headers (-want +got):\n%s", diff)
		}
		// The gateway's id, once, in place of the upstream's.
		if id := resp.Header.Values("X-Request-Id"); len(id) != 1 || tb.events.find(t, byRequestID(id[0])).Path != "/x" {
			t.Errorf("X-Request-Id = %q, want the gateway's id of this request", id)
		}
	})
}

// TestTrailers: trailers the upstream announced and trailers it did not
// (HTTP/2 needs no announcement; gRPC's grpc-status comes so) reach the
// client, over every pair of protocols. An HTTP/2 upstream sends a
// Content-Length with them, which would keep an HTTP/1.1 client's response
// from being chunked and so from carrying trailers.
func TestTrailers(t *testing.T) {
	upstream := func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Trailer", "X-Announced")
		w.Header().Set("Content-Type", "application/grpc")
		io.WriteString(w, "body")
		w.Header().Set("X-Announced", "a")
		w.Header().Set(http.TrailerPrefix+"Grpc-Status", "0")
	}
	forEachLeg(t, testbedOptions{upstreamHandler: upstream}, func(t *testing.T, tb *testbed, c *http.Client, _ bool) {
		resp := getResponse(t, tb, c, "/x")
		body, err := io.ReadAll(resp.Body)
		if err != nil || string(body) != "body" {
			t.Fatalf("body %q, %v", body, err)
		}
		got := map[string]string{"X-Announced": resp.Trailer.Get("X-Announced"), "Grpc-Status": resp.Trailer.Get("Grpc-Status")}
		if diff := cmp.Diff(map[string]string{"X-Announced": "a", "Grpc-Status": "0"}, got); diff != "" {
			t.Errorf("trailers (-want +got):\n%s", diff)
		}
	})
}

// TestStreamsAreFlushed: a server-sent event stream is flushed write by
// write even when its length is known, a body of unknown length too, and a
// stream's headers go out before its first byte.
func TestStreamsAreFlushed(t *testing.T) {
	var releases sync.Map // id -> chan struct{}
	upstream := func(w http.ResponseWriter, r *http.Request) {
		v, _ := releases.Load(r.URL.Query().Get("id"))
		release := v.(chan struct{})
		wait := func() {
			select {
			case <-release:
			case <-time.After(3 * time.Second):
				// The client never got what it waited for: say so in the body.
				io.WriteString(w, "[gave up]")
			}
		}
		first, second := "data: 1\n\n", "data: 2\n\n"
		switch r.URL.Path {
		case "/sse-length":
			w.Header().Set("Content-Type", "text/event-stream; charset=utf-8")
			w.Header().Set("Content-Length", "18")
		case "/sse-case":
			w.Header().Set("Content-Type", "Text/Event-Stream")
			w.Header().Set("Content-Length", "18")
		case "/headers-first":
			w.Header().Set("Content-Type", "text/plain")
			w.WriteHeader(200)
			w.(http.Flusher).Flush()
			wait()
			io.WriteString(w, first+second)
			return
		default: // "/unknown-length"
			w.Header().Set("Content-Type", "text/plain")
		}
		io.WriteString(w, first)
		w.(http.Flusher).Flush()
		wait()
		io.WriteString(w, second)
	}
	var n atomic.Int64
	forEachLeg(t, testbedOptions{upstreamHandler: upstream}, func(t *testing.T, tb *testbed, c *http.Client, _ bool) {
		for _, path := range []string{"/sse-length", "/sse-case", "/unknown-length", "/headers-first"} {
			t.Run(path, func(t *testing.T) {
				id := strconv.FormatInt(n.Add(1), 10)
				release := make(chan struct{})
				releases.Store(id, release)
				resp := getResponse(t, tb, c, path+"?id="+id)
				br := bufio.NewReader(resp.Body)
				if path != "/headers-first" {
					first, err := br.ReadString('\n')
					if err != nil || first != "data: 1\n" {
						t.Fatalf("first line %q, %v", first, err)
					}
				}
				close(release)
				rest, err := io.ReadAll(br)
				if err != nil || strings.Contains(string(rest), "[gave up]") {
					t.Errorf("the client waited for the upstream to finish: %q, %v", rest, err)
				}
			})
		}
	})
}

// TestInformationalResponses: 1xx responses are not relayed (see proxy),
// and 100-continue still works end to end: the client is told to go on, the
// upstream gets the body.
func TestInformationalResponses(t *testing.T) {
	upstream := func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/hints" {
			w.Header().Set("Link", "</style.css>; rel=preload")
			w.WriteHeader(http.StatusEarlyHints)
			w.Header().Del("Link")
			io.WriteString(w, "page")
			return
		}
		b, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(w, err.Error(), 500)
			return
		}
		w.Write(b)
	}
	forEachLeg(t, testbedOptions{upstreamHandler: upstream}, func(t *testing.T, tb *testbed, c *http.Client, _ bool) {
		t.Run("103 not relayed", func(t *testing.T) {
			var got1xx atomic.Int32
			ctx := httptrace.WithClientTrace(context.Background(), &httptrace.ClientTrace{
				Got1xxResponse: func(int, textproto.MIMEHeader) error { got1xx.Add(1); return nil },
			})
			req, _ := http.NewRequestWithContext(ctx, "GET", tb.front.URL+"/hints", nil)
			status, body, _ := tb.do(c, req)
			if status != 200 || string(body) != "page" {
				t.Fatalf("status %d, body %q", status, body)
			}
			if n := got1xx.Load(); n != 0 {
				t.Errorf("the client got %d informational responses, want none", n)
			}
		})
		t.Run("100-continue", func(t *testing.T) {
			var continued atomic.Bool
			ctx := httptrace.WithClientTrace(context.Background(), &httptrace.ClientTrace{
				Got100Continue: func() { continued.Store(true) },
			})
			req, _ := http.NewRequestWithContext(ctx, "POST", tb.front.URL+"/upload", strings.NewReader("payload"))
			req.Header.Set("Expect", "100-continue")
			// Long enough that a missing 100 Continue shows.
			c.Transport.(*http.Transport).ExpectContinueTimeout = 5 * time.Second
			start := time.Now()
			status, body, _ := tb.do(c, req)
			if status != 200 || string(body) != "payload" {
				t.Fatalf("status %d, body %q", status, body)
			}
			if !continued.Load() || time.Since(start) > 4*time.Second {
				t.Errorf("no 100 Continue reached the client (after %v)", time.Since(start))
			}
		})
	})
}

// TestUpgrades: a WebSocket upgrade is built by the same outbound as every
// request (the upstream gets the gateway's forwarding headers and request
// id), the 101 carries the request id back, and an upstream that switches
// to another protocol than asked is refused.
func TestUpgrades(t *testing.T) {
	upstream := func(w http.ResponseWriter, r *http.Request) {
		conn, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			return
		}
		defer conn.Close()
		proto := "websocket"
		if r.URL.Path == "/other" {
			proto = "h2c"
		}
		seen := strings.Join([]string{r.Header.Get("Connection"), r.Header.Get("Upgrade"), r.Header.Get("X-Forwarded-For"),
			r.Header.Get("X-Forwarded-Proto"), r.Header.Get("X-Request-Id")}, "|")
		brw.WriteString("HTTP/1.1 101 Switching Protocols\r\nUpgrade: " + proto + "\r\nConnection: Upgrade\r\nX-Seen: " + seen + "\r\n\r\n")
		brw.Flush()
		line, _ := brw.ReadString('\n')
		brw.WriteString("echo:" + line)
		brw.Flush()
	}
	tb := newTestbed(t, testbedOptions{upstreamHandler: upstream})
	dial := func(t *testing.T, path string) (*http.Response, *bufio.Reader, *tls.Conn) {
		conn, err := tls.Dial("tcp", tb.front.Listener.Addr().String(), &tls.Config{RootCAs: tb.roots, ServerName: "localhost", NextProtos: []string{"http/1.1"}})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.Close() })
		conn.SetDeadline(time.Now().Add(5 * time.Second))
		io.WriteString(conn, "GET "+path+" HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
		br := bufio.NewReader(conn)
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatal(err)
		}
		return resp, br, conn
	}
	t.Run("websocket", func(t *testing.T) {
		resp, br, conn := dial(t, "/ws")
		if resp.StatusCode != http.StatusSwitchingProtocols {
			t.Fatalf("status %d", resp.StatusCode)
		}
		id := resp.Header.Get("X-Request-Id")
		if want := "Upgrade|websocket|127.0.0.1|https|" + id; id == "" || resp.Header.Get("X-Seen") != want {
			t.Errorf("upstream saw %q, want %q (client got request id %q)", resp.Header.Get("X-Seen"), want, id)
		}
		io.WriteString(conn, "ping\n")
		if got, err := br.ReadString('\n'); err != nil || got != "echo:ping\n" {
			t.Errorf("tunnel echo %q, %v", got, err)
		}
	})
	t.Run("switch to another protocol", func(t *testing.T) {
		resp, _, _ := dial(t, "/other")
		body, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusBadGateway {
			t.Fatalf("status %d, want 502: %s", resp.StatusCode, body)
		}
		_, id := errorBody(t, body)
		if ev := tb.events.find(t, byRequestID(id)); ev.Error != audit.ErrUpstreamProtocol {
			t.Errorf("event error %q, want %q", ev.Error, audit.ErrUpstreamProtocol)
		}
	})
}

// TestBrokenBodyIsAborted: when the upstream's body breaks off after the
// status line is out, the client's response breaks off too, rather than end
// as if the truncated body were whole.
func TestBrokenBodyIsAborted(t *testing.T) {
	upstream := func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "partial")
		w.(http.Flusher).Flush()
		panic(http.ErrAbortHandler)
	}
	forEachLeg(t, testbedOptions{upstreamHandler: upstream}, func(t *testing.T, tb *testbed, c *http.Client, _ bool) {
		if body, err := io.ReadAll(getResponse(t, tb, c, "/x").Body); err == nil {
			t.Errorf("the client read %q as a whole body", body)
		}
	})
}

// TestClientGoneCancelsUpstream: when the client goes away, the upstream
// request is canceled, not left to run to its end.
func TestClientGoneCancelsUpstream(t *testing.T) {
	started, canceled := make(chan struct{}, 1), make(chan struct{}, 1)
	upstream := func(w http.ResponseWriter, r *http.Request) {
		started <- struct{}{}
		select {
		case <-r.Context().Done():
			canceled <- struct{}{}
		case <-time.After(5 * time.Second):
		}
	}
	forEachLeg(t, testbedOptions{upstreamHandler: upstream}, func(t *testing.T, tb *testbed, c *http.Client, _ bool) {
		ctx, cancel := context.WithCancel(context.Background())
		path := "/slow/" + strings.ReplaceAll(t.Name(), " ", "_")
		req, _ := http.NewRequestWithContext(ctx, "GET", tb.front.URL+path, nil)
		errc := make(chan error, 1)
		go func() {
			resp, err := c.Do(req)
			if err == nil {
				resp.Body.Close()
			}
			errc <- err
		}()
		select {
		case <-started:
		case <-time.After(5 * time.Second):
			t.Fatal("the request never reached the upstream")
		}
		cancel()
		if err := <-errc; !errors.Is(err, context.Canceled) {
			t.Errorf("client: %v", err)
		}
		select {
		case <-canceled:
		case <-time.After(3 * time.Second):
			t.Error("the upstream request was not canceled when the client went away")
		}
		if ev := tb.events.find(t, func(ev *audit.Event) bool { return ev.Path == path }); ev.Error != audit.ErrClientCanceled {
			t.Errorf("event error %q, want %q", ev.Error, audit.ErrClientCanceled)
		}
	})
}

func TestRemoveHopByHop(t *testing.T) {
	tests := []struct {
		name string
		in   http.Header
		want http.Header
	}{
		{
			name: "the standard list",
			in: http.Header{"Connection": {"keep-alive"}, "Proxy-Connection": {"x"}, "Keep-Alive": {"timeout=5"}, "Proxy-Authenticate": {"Basic"},
				"Proxy-Authorization": {"Basic x"}, "Te": {"trailers"}, "Trailer": {"X-A"}, "Transfer-Encoding": {"chunked"}, "Upgrade": {"websocket"},
				"X-Kept": {"1"}},
			want: http.Header{"X-Kept": {"1"}},
		},
		{
			name: "named in Connection, any case, several values",
			in:   http.Header{"Connection": {"x-one,  X-TWO ", "close"}, "X-One": {"1"}, "X-Two": {"2"}, "Close": {"c"}, "X-Kept": {"1"}},
			want: http.Header{"X-Kept": {"1"}},
		},
		{
			name: "empty tokens",
			in:   http.Header{"Connection": {" , ,"}, "X-Kept": {"1"}},
			want: http.Header{"X-Kept": {"1"}},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			removeHopByHop(tc.in)
			if diff := cmp.Diff(tc.want, tc.in); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}

func TestAddValues(t *testing.T) {
	shared := []string{"up=1"}
	h := http.Header{"Set-Cookie": {"session=refreshed"}}
	addValues(h, "Set-Cookie", shared)
	addValues(h, "Cache-Control", []string{"no-store"})
	want := http.Header{"Set-Cookie": {"session=refreshed", "up=1"}, "Cache-Control": {"no-store"}}
	if diff := cmp.Diff(want, h); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
	// A value handed on as is must not be written into later.
	addValues(h, "Cache-Control", []string{"private"})
	if shared[0] != "up=1" {
		t.Errorf("a shared value was overwritten: %q", shared)
	}
}

// FuzzIsEventStream checks the allocation-free check against
// mime.ParseMediaType, which httputil.ReverseProxy uses for the same choice.
func FuzzIsEventStream(f *testing.F) {
	for _, s := range []string{"text/event-stream", "text/event-stream; charset=utf-8", "Text/Event-Stream", " text/event-stream ;x=y",
		"text/event-streams", "text/plain", "", ";", "text/event-stream;;", "text/event-ſtream", "\u00a0text/event-stream", "text/event-stream; a"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, ct string) {
		base, _, _ := mime.ParseMediaType(ct)
		if want, got := base == "text/event-stream", isEventStream([]string{ct}); got != want {
			t.Errorf("isEventStream(%q) = %v, mime.ParseMediaType says %v", ct, got, want)
		}
	})
}

// FuzzConnectionOption checks the allocation-free names of Connection
// options against textproto's canonical form, which Header.Del uses.
func FuzzConnectionOption(f *testing.F) {
	for _, s := range []string{"close", "Close", "keep-alive", "KEEP-ALIVE", "upgrade", "Upgrade", "x-hop", "te", "keep_alive", "clos", "ﬀ"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, tok string) {
		if got, want := connectionOption(tok), textproto.CanonicalMIMEHeaderKey(tok); got != want {
			t.Errorf("connectionOption(%q) = %q, want %q", tok, got, want)
		}
	})
}

// TestOutboundAllocatesNothing: the outgoing request, its URL and the values
// the gateway sets live in the handler's one allocation per request
// (inflight); the inbound headers are reused. (A base path costs the two
// strings it makes.)
func TestOutboundAllocatesNothing(t *testing.T) {
	r := httptestRequest("GET", "https://app.example/api/v1/items/42?x=1")
	r.RemoteAddr, r.TLS = "192.0.2.1:5555", &tls.ConnectionState{}
	setURL(r, "/api/v1/items/42", "x=1")
	// The client's headers, again before each run.
	reset := func() {
		clear(r.Header)
		r.Header["User-Agent"], r.Header["Accept"], r.Header["Connection"], r.Header["Te"] = userAgent, accept, keepAlive, valueTrailers
	}
	for _, tc := range []struct {
		upstream, wantURL string
		wantAllocs        float64
	}{
		{upstream: "https://127.0.0.1:8443", wantURL: "https://127.0.0.1:8443/api/v1/items/42?x=1", wantAllocs: 0},
		{upstream: "https://127.0.0.1:8443/base/", wantURL: "https://127.0.0.1:8443/base/api/v1/items/42?x=1", wantAllocs: 2},
	} {
		up, _ := url.Parse(tc.upstream)
		p := newProxy(&Route{Upstream: up, Transport: http.DefaultTransport}, nil)
		o := new(outbound)
		n := testing.AllocsPerRun(100, func() {
			reset()
			if err := p.outbound(o, r, "req-1"); err != nil {
				t.Fatal(err)
			}
		})
		if n != tc.wantAllocs {
			t.Errorf("%s: outbound allocates %v times, want %v", tc.upstream, n, tc.wantAllocs)
		}
		reset()
		p.outbound(o, r, "req-1")
		if got := o.req.URL.String(); got != tc.wantURL {
			t.Errorf("URL %q, want %q", got, tc.wantURL)
		}
		want := http.Header{"User-Agent": userAgent, "Accept": accept, "Te": {"trailers"}, "X-Forwarded-For": {"192.0.2.1"},
			"X-Forwarded-Host": {"app.example"}, "X-Forwarded-Proto": {"https"}, "X-Request-Id": {"req-1"}}
		if diff := cmp.Diff(want, o.req.Header); diff != "" {
			t.Errorf("headers (-want +got):\n%s", diff)
		}
	}
}

var userAgent, accept, keepAlive = []string{"curl/8"}, []string{"*/*"}, []string{"keep-alive"}
