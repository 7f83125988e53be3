package listener

import (
	"context"
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"sync/atomic"
	"testing"
	"time"
)

// TestMaxConnections: at the limit, with no idle connection to shed, a new
// connection from a source under its share waits until a slot frees; one
// from a source at its share is closed at accept.
func TestMaxConnections(t *testing.T) {
	store, ca := newTestStore(t)
	var limited, perSource atomic.Int32
	srv := startServer(t, Config{Certs: store, MaxConnections: 2,
		OnConnectionLimit: func() { limited.Add(1) },
		OnConnectionShed: func(reason string) {
			if reason == ShedPerSource {
				perSource.Add(1)
			}
		}})
	conf := &tls.Config{RootCAs: ca.Pool(), ServerName: "a.example.com"}
	dial := func(from string) (*tls.Conn, error) {
		d := dialerFrom(from)
		d.Deadline = time.Now().Add(5 * time.Second)
		return tls.DialWithDialer(d, "tcp", srv.Addr().String(), conf)
	}

	// A connection whose handshake fails gives its slot back.
	bad, err := net.Dial("tcp", srv.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	bad.Write([]byte("\x16\x03\x01\x00\x05garbage"))
	bad.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.Copy(io.Discard, bad); err != nil { // an alert, then EOF
		t.Fatalf("server did not close a garbage handshake: %v", err)
	}
	bad.Close()

	// Two connections that never send a request: not idle, never shed.
	c1, err := dial("127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	c2, err := dial("127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()

	// The third, from another source, is not served while two are open:
	// the server holds it, unread, until a slot frees.
	third := make(chan error, 1)
	go func() {
		c3, err := dial("127.0.0.2")
		if err == nil {
			c3.Close()
		}
		third <- err
	}()
	waitFor(t, "the connection limit to be reported", func() bool { return limited.Load() >= 1 })
	select {
	case err := <-third:
		t.Fatalf("third connection finished its handshake (err %v) while two were open", err)
	case <-time.After(200 * time.Millisecond):
	}
	c1.Close()
	select {
	case err := <-third:
		if err != nil {
			t.Fatalf("third connection after a slot freed: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("third connection was not accepted after the first closed")
	}

	// Full again (c2 and a fourth from 127.0.0.2), two sources, one slot
	// each: a new connection from 127.0.0.1 is over its share.
	waitFor(t, "the third to be closed", func() bool { return tableOf(srv).stats().open == 1 })
	c4, err := dial("127.0.0.2")
	if err != nil {
		t.Fatal(err)
	}
	defer c4.Close()
	waitFor(t, "two connections open", func() bool { return tableOf(srv).stats().open == 2 })
	if c5, err := dial("127.0.0.1"); err == nil {
		c5.Close()
		t.Fatal("a connection from a source at its share was served while the listener was full")
	}
	if got := perSource.Load(); got != 1 {
		t.Errorf("%d connections refused per source; want 1", got)
	}
}

// TestMaxConnectionsSlotReturned: with room for one connection, each way a
// connection can end gives its slot back, so the next client is served.
func TestMaxConnectionsSlotReturned(t *testing.T) {
	store, ca := newTestStore(t)
	hijack := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/hijack" {
			echoHandler.ServeHTTP(w, r)
			return
		}
		c, _, err := http.NewResponseController(w).Hijack()
		if err != nil {
			t.Errorf("hijack: %v", err)
			return
		}
		io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
		c.Close()
	})
	srv := startServer(t, Config{Certs: store, MaxConnections: 1, Handler: hijack})
	for _, tc := range []struct {
		name  string
		proto proto
		path  string
	}{
		{"HTTP/1.1 keep-alive closed by the client", h1, "/"},
		{"HTTP/2 closed by the client", h2, "/"},
		{"hijacked and closed by the handler", h1, "/hijack"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newClient(t, ca.Pool(), srv.Addr(), "a.example.com", tc.proto)
			resp, err := c.Get("https://a.example.com" + tc.path)
			if err != nil {
				t.Fatal(err)
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			c.CloseIdleConnections()
			waitFor(t, "the slot to be given back", func() bool { return tableOf(srv).stats().open == 0 })
			// A fresh client (its own connection) gets the slot.
			next := newClient(t, ca.Pool(), srv.Addr(), "a.example.com", h1)
			if resp, _ := get(t, next, "a.example.com", nil); resp.StatusCode != http.StatusOK {
				t.Fatalf("next client: status %d", resp.StatusCode)
			}
			next.CloseIdleConnections()
			waitFor(t, "the slot to be given back", func() bool { return tableOf(srv).stats().open == 0 })
		})
	}
}

// TestShutdownAtConnectionLimit: Shutdown returns while accepting is paused
// at the limit and a client waits.
func TestShutdownAtConnectionLimit(t *testing.T) {
	store, ca := newTestStore(t)
	var limited atomic.Int32
	entered, release := make(chan struct{}), make(chan struct{})
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		close(entered)
		<-release
	})
	srv := startServer(t, Config{Certs: store, MaxConnections: 1, Handler: h, OnConnectionLimit: func() { limited.Add(1) }})
	// A request in flight: its connection holds the slot and is not idle.
	c := newClient(t, ca.Pool(), srv.Addr(), "a.example.com", h1)
	inFlight := make(chan error, 1)
	go func() {
		resp, err := c.Get("https://a.example.com/")
		if err == nil {
			resp.Body.Close()
		}
		inFlight <- err
	}()
	<-entered
	waiting, err := dialerFrom("127.0.0.2").Dial("tcp", srv.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer waiting.Close()
	waitFor(t, "the connection limit to be reached", func() bool { return limited.Load() >= 1 })
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	stopped := make(chan error, 1)
	go func() { stopped <- srv.Shutdown(ctx) }()
	close(release)
	if err := <-stopped; err != nil {
		t.Fatalf("Shutdown at the connection limit: %v", err)
	}
	if err := <-inFlight; err != nil {
		t.Errorf("request in flight during Shutdown: %v", err)
	}
}
