package listener

import (
	"context"
	"crypto/tls"
	"log/slog"
	"net"
	"net/http"
	"sync/atomic"
	"time"
)

// protoConn is an HTTP/1.x connection as http.Server sees it: the TLS
// connection, plus what it takes to tell net/http's own answers from a
// Handler's response. (HTTP/2 connections are handed to http.Server as the
// bare *tls.Conn, which it needs to dispatch them by ALPN.)
//
// On an HTTP/1.x connection net/http writes a response in one of two ways:
// a Handler's, through the response writer, or one of its own (see
// parseOwnAnswer), which it writes after the previous response is complete
// and before the next Handler runs. The guard handler marks the start of
// each Handler call (inHandler); the ConnState hook marks the end of each
// response (net/http reports StateIdle only after flushing it). A write
// outside that window is net/http's own, and one that parses as a known
// answer goes to OnProtocolError. A hijacked connection belongs to its
// Handler and is never looked at again.
type protoConn struct {
	*tls.Conn // ConnectionState and CloseWrite, which net/http looks for, come from it
	onErr     func(ProtocolError) []byte
	log       *slog.Logger

	inHandler atomic.Bool
	hijacked  atomic.Bool
	// closeAfter is set by the guard on a request after whose response the
	// connection must close; it is never cleared.
	closeAfter atomic.Bool
}

func newProtoConn(tc *tls.Conn, o tlsOptions) *protoConn {
	return &protoConn{Conn: tc, onErr: o.onProtocolError, log: o.log}
}

func (c *protoConn) Write(p []byte) (int, error) {
	if c.onErr == nil || c.inHandler.Load() || c.hijacked.Load() {
		return c.Conn.Write(p)
	}
	status, reason, ok := parseOwnAnswer(p)
	if !ok {
		// A newer Go may have added an answer; it still goes out, and the
		// log says which one needs recognising.
		c.log.Warn("listener: net/http wrote an answer the listener does not recognise; OnProtocolError not called",
			"first_line", firstLine(p), "remote", c.RemoteAddr().String())
		return c.Conn.Write(p)
	}
	st := c.Conn.ConnectionState()
	pe := ProtocolError{
		Status: status, Reason: reason,
		RemoteAddr: c.RemoteAddr(), LocalAddr: c.LocalAddr(),
		TLS: &st, Time: time.Now(),
	}
	if _, err := c.Conn.Write(substitute(p, pe, c.onErr, c.log)); err != nil {
		return 0, err
	}
	return len(p), nil
}

// handlerStarted is called by the guard as a Handler starts on a request
// of this connection. It reports false if the request must not be served.
func (c *protoConn) handlerStarted() bool {
	c.inHandler.Store(true)
	return !c.closeAfter.Load()
}

// stateChanged is called from http.Server's ConnState hook.
func (c *protoConn) stateChanged(s http.ConnState) {
	switch s {
	case http.StateIdle:
		c.inHandler.Store(false)
		if c.closeAfter.Load() {
			// The guard set "Connection: close" on the response and the
			// Handler removed it, so net/http means to read another
			// request. Close instead; a request it already buffered is
			// refused by handlerStarted.
			c.log.Warn("listener: handler removed Connection: close from a response after which the connection must close; closing it",
				"remote", c.RemoteAddr().String())
			_ = c.Conn.Close()
		}
	case http.StateHijacked:
		c.hijacked.Store(true)
	}
}

// connKey is the request context key of the connection http.Server
// accepted: a *protoConn for HTTP/1.x, a *tls.Conn for HTTP/2.
type connKey struct{}

// trackedKey is the request context key of the connection's *tracked, with
// a connection limit.
type trackedKey struct{}

func withConn(ctx context.Context, c net.Conn) context.Context {
	return context.WithValue(ctx, connKey{}, c)
}
