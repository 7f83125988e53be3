package listener

import (
	"crypto/tls"
	"io"
	"net"
	"sync/atomic"
	"testing"
	"time"
)

func TestMaxConnections(t *testing.T) {
	store, ca := newTestStore(t)
	var limited atomic.Int32
	srv := startServer(t, Config{Certs: store, MaxConnections: 2, OnConnectionLimit: func() { limited.Add(1) }})
	conf := &tls.Config{RootCAs: ca.pool, ServerName: "a.example.com"}
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
