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

func TestMaxConnections(t *testing.T) {
	store, ca := newTestStore(t)
	var limited atomic.Int32
	srv := startServer(t, Config{Certs: store, MaxConnections: 2, OnConnectionLimit: func() { limited.Add(1) }})
	conf := &tls.Config{RootCAs: ca.Pool(), ServerName: "a.example.com"}
	dial := func() (*tls.Conn, error) {
		return tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second, Deadline: time.Now().Add(5 * time.Second)}, "tcp", srv.Addr().String(), conf)
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

	c1, err := dial()
	if err != nil {
		t.Fatal(err)
	}
	c2, err := dial()
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()

	// The third is not accepted while two are open: the kernel completes its
	// TCP handshake, but the server reads nothing until a slot frees.
	third := make(chan error, 1)
	go func() {
		c3, err := dial()
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
			// A fresh client (its own connection) gets the slot back.
			next := newClient(t, ca.Pool(), srv.Addr(), "a.example.com", h1)
			if resp, _ := get(t, next, "a.example.com", nil); resp.StatusCode != http.StatusOK {
				t.Fatalf("next client: status %d", resp.StatusCode)
			}
			next.CloseIdleConnections()
		})
	}
}

// TestShutdownAtConnectionLimit: Shutdown returns while accepting is paused
// at the limit and a client waits in the backlog.
func TestShutdownAtConnectionLimit(t *testing.T) {
	store, ca := newTestStore(t)
	var limited atomic.Int32
	srv := startServer(t, Config{Certs: store, MaxConnections: 1, OnConnectionLimit: func() { limited.Add(1) }})
	c := newClient(t, ca.Pool(), srv.Addr(), "a.example.com", h1)
	if resp, _ := get(t, c, "a.example.com", nil); resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d", resp.StatusCode)
	}
	waiting, err := net.Dial("tcp", srv.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer waiting.Close()
	waitFor(t, "the connection limit to be reached", func() bool { return limited.Load() >= 1 })
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown at the connection limit: %v", err)
	}
}
