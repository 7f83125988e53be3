package identity_test

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"log"
	"net"
	"net/http"
	"sync/atomic"
	"testing"
	"time"
)

// localListener listens on loopback only (never any other address).
func localListener(tb testing.TB) net.Listener {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		ln, err = net.Listen("tcp6", "[::1]:0")
	}
	if err != nil {
		tb.Fatalf("listen on loopback: %v", err)
	}
	tb.Cleanup(func() { _ = ln.Close() })
	return ln
}

// handshakeResult is what both ends of one TLS connection saw.
type handshakeResult struct {
	clientErr, serverErr     error
	clientState, serverState tls.ConnectionState
}

// handshake runs one TLS connection over loopback TCP. On success the server
// writes "ok", which the client reads: under TLS 1.3 the client learns of a
// rejected client certificate (and receives session tickets) only then.
func handshake(tb testing.TB, ln net.Listener, serverCfg, clientCfg *tls.Config) handshakeResult {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()

	type srvOut struct {
		err   error
		state tls.ConnectionState
	}
	srvc := make(chan srvOut, 1)
	go func() {
		raw, err := ln.Accept()
		if err != nil {
			srvc <- srvOut{err: err}
			return
		}
		defer raw.Close()
		_ = raw.SetDeadline(time.Now().Add(5 * time.Second))
		conn := tls.Server(raw, serverCfg)
		if err := conn.HandshakeContext(ctx); err != nil {
			srvc <- srvOut{err: err}
			return
		}
		st := conn.ConnectionState()
		_, err = conn.Write([]byte("ok"))
		// Wait for the client to finish reading before closing.
		_, _ = io.Copy(io.Discard, conn)
		srvc <- srvOut{err: err, state: st}
	}()

	var res handshakeResult
	raw, err := (&net.Dialer{}).DialContext(ctx, "tcp", ln.Addr().String())
	if err != nil {
		tb.Fatalf("dial: %v", err)
	}
	_ = raw.SetDeadline(time.Now().Add(5 * time.Second))
	conn := tls.Client(raw, clientCfg)
	if err := conn.HandshakeContext(ctx); err != nil {
		res.clientErr = err
	} else {
		buf := make([]byte, 2)
		if _, err := io.ReadFull(conn, buf); err != nil {
			res.clientErr = err
		} else if string(buf) != "ok" {
			res.clientErr = errors.New("unexpected payload " + string(buf))
		}
		res.clientState = conn.ConnectionState()
	}
	_ = conn.Close()
	out := <-srvc
	res.serverErr, res.serverState = out.err, out.state
	return res
}

// protocols runs f for HTTP/1.1 and HTTP/2 over TLS.
func protocols(t *testing.T, f func(t *testing.T, p http.Protocols)) {
	var h1, h2 http.Protocols
	h1.SetHTTP1(true)
	h2.SetHTTP2(true)
	t.Run("h1", func(t *testing.T) { f(t, h1) })
	t.Run("h2", func(t *testing.T) { f(t, h2) })
}

// httpsServer serves h over TLS with cfg on loopback and counts handler runs.
func httpsServer(t *testing.T, cfg *tls.Config, p http.Protocols, h http.HandlerFunc) (url string, calls *atomic.Int64) {
	t.Helper()
	calls = new(atomic.Int64)
	ln := localListener(t)
	srv := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			calls.Add(1)
			h(w, r)
		}),
		TLSConfig:         cfg,
		Protocols:         &p,
		ReadHeaderTimeout: 5 * time.Second,
		// Expected handshake failures would only clutter test output.
		ErrorLog: log.New(io.Discard, "", 0),
	}
	go func() { _ = srv.ServeTLS(ln, "", "") }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
	})
	return "https://" + ln.Addr().String() + "/", calls
}

func httpsClient(t *testing.T, cfg *tls.Config, p http.Protocols) *http.Client {
	t.Helper()
	tr := &http.Transport{TLSClientConfig: cfg, Protocols: &p}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 5 * time.Second}
}
