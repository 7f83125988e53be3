package listener

import (
	"context"
	"errors"
	"net"
	"net/http"
	"time"
)

// Go's HTTP/2 server (the one bundled in net/http) sends GOAWAY on its own
// in two cases: when a connection has been idle for IdleTimeout, and to
// every connection of an http.Server on Shutdown. It offers no call that
// sends GOAWAY to one connection. Writing a GOAWAY frame onto the
// connection from outside would race with the server's own frames and
// could not name the last stream the server has taken on, so it could cut
// a request the client had just sent.
//
// So when the listener sheds connections (MaxConnections), each HTTP/2
// connection is served by an HTTP/2 server of its own: a throwaway
// http.Server, which net/http sets up for HTTP/2 as Serve sets up every
// server (Serve is called with a listener that fails at once; x/net/http2
// reaches net/http's HTTP/2 server from Go 1.27 on the same way), and
// whose TLSNextProto["h2"] then serves the connection. Its Shutdown is
// that one connection's graceful shutdown, exactly what Server.Shutdown
// does to every connection:
//
//   - one GOAWAY frame, error code NO_ERROR, Last-Stream-ID the highest
//     stream the client has opened, so that every request the server has
//     taken on is served to its end, and the client knows any later one was
//     not processed and sends it again on a new connection (RFC 9113 §6.8);
//   - streams the client opens after the GOAWAY are discarded;
//   - when no stream is open and the GOAWAY has been written, the TCP
//     connection is closed one second later (so that it ends with a FIN,
//     not a RST that could destroy the GOAWAY before the client reads it;
//     golang.org/issue/18701), or earlier when the client closes it.
//
// The throwaway server serves nothing by itself: the connection is handed
// to it with the listener's http.Server as the base configuration, so that
// the listener's timeouts, header limits, HTTP2 settings, ConnState hook and
// Handler apply exactly as they do to HTTP/2 connections it serves itself.
// Only the idle timeout is read from the throwaway server, and it is the
// listener's. It costs about 1.6 KB and a few microseconds per connection.
// TestShedIdle checks the GOAWAY frame on the wire, so a Go release that
// changes any of this fails it.

// newConnH2 returns the HTTP/2 server of one connection, or nil if net/http
// no longer sets up HTTP/2 this way (or HTTP/2 is off, GODEBUG=http2server=0):
// then HTTP/2 connections are served as usual and shed by closing them.
func newConnH2(idleTimeout time.Duration) *http.Server {
	s := &http.Server{IdleTimeout: idleTimeout}
	_ = s.Serve(noConns{}) // returns at once, with HTTP/2 set up
	if s.TLSNextProto["h2"] == nil {
		return nil
	}
	return s
}

// goAway starts the graceful shutdown of s's one connection (see above);
// it does not wait.
func goAway(s *http.Server) {
	// Shutdown starts the HTTP/2 shutdown in a goroutine of its own and,
	// as the server tracks no connection itself, returns at once.
	_ = s.Shutdown(context.Background())
}

// noConns is a listener that has none: Serve returns at once.
type noConns struct{}

var errNoConns = errors.New("listener: no connections")

func (noConns) Accept() (net.Conn, error) { return nil, errNoConns }
func (noConns) Close() error              { return nil }
func (noConns) Addr() net.Addr            { return &net.TCPAddr{} }
