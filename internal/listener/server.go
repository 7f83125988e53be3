package listener

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"sync"
	"time"

	"tollgate.dev/tollgate/internal/config"
)

// Defaults for the zero values of [Config]: the gateway's documented defaults
// (one place, package config), and a stream limit the gateway file does not set.
const (
	DefaultReadHeaderTimeout    = config.DefaultReadHeaderTimeout
	DefaultIdleTimeout          = config.DefaultIdleTimeout
	DefaultMaxHeaderBytes       = config.DefaultMaxHeaderBytes
	DefaultMaxHeaderCount       = config.DefaultMaxHeaderCount
	DefaultMaxConcurrentStreams = 100
)

// CertSource picks the server certificate for a handshake. [*CertStore]
// implements it.
type CertSource interface {
	GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error)
}

// Config describes a [Server]. Zero durations and sizes take the defaults
// above, except ReadTimeout and WriteTimeout, where zero means no limit
// (a whole-request or whole-response bound would cut off legitimate large
// uploads and streamed responses; ReadHeaderTimeout and IdleTimeout bound
// idle clients instead). Negative values are rejected.
type Config struct {
	// Addr is the address Start listens on when given no listener, e.g. ":8443".
	Addr string
	// Handler serves every request that passed the listener's limits. Required.
	Handler http.Handler
	// Certs supplies server certificates. Required.
	Certs CertSource
	// ClientAuth, if set, adjusts the tls.Config to require client
	// certificates (the identity package supplies it). It may set
	// ClientAuth, ClientCAs, VerifyConnection, GetConfigForClient and the
	// like; New refuses a config the hook left below TLS 1.2, with other
	// TLS 1.2 suites, without h2/http/1.1 or without a certificate, and a
	// GetConfigForClient result is checked the same way per handshake.
	ClientAuth func(*tls.Config)

	// HandshakeTimeout bounds the whole TLS handshake, including a client
	// sending its ClientHello slowly. Default: ReadHeaderTimeout.
	HandshakeTimeout time.Duration
	// ReadHeaderTimeout bounds reading a request's headers (HTTP/1.1).
	ReadHeaderTimeout time.Duration
	// ReadTimeout bounds reading a whole request, body included. Zero: none.
	ReadTimeout time.Duration
	// WriteTimeout bounds writing a response. Zero: none.
	WriteTimeout time.Duration
	// IdleTimeout closes keep-alive connections (HTTP/1.1 and HTTP/2) idle
	// this long.
	IdleTimeout time.Duration
	// MaxHeaderBytes bounds a request's header list, measured for
	// HTTP/1.1 and HTTP/2 alike as HTTP/2 does (RFC 9113 §6.5.2: name and
	// value plus 32 bytes a field, pseudo-headers, or the request line and
	// Host, included); beyond it the server answers 431 without calling
	// Handler. net/http is set to twice this, so that requests up to that
	// size are refused here, through OnProtocolError; HTTP/1.1 requests
	// beyond it get net/http's 431, which OnProtocolError replaces too,
	// and HTTP/2 clients are told (SETTINGS_MAX_HEADER_LIST_SIZE) not to
	// send more.
	MaxHeaderBytes int
	// MaxHeaderCount bounds the number of request header fields; beyond it
	// the server answers 431 without calling Handler.
	MaxHeaderCount int
	// MaxConcurrentStreams bounds the HTTP/2 streams open per connection.
	MaxConcurrentStreams int
	// MaxConnections bounds the open connections, handshaking and idle
	// keep-alive ones included. Zero: no limit. When the server is full, it
	// accepts the next connection to see where it comes from, and then:
	//
	//   - if its source already holds its share (MaxConnectionsPerSource),
	//     sheds an idle connection of that source's own (as below), so that
	//     clients behind one address still get in while it does not grow;
	//     with none, closes the new one at once, unread
	//     (OnConnectionShed(ShedPerSource)), so that one source's new
	//     connections cannot keep others waiting (the only source holding
	//     connections waits instead, as below);
	//   - else sheds an idle keep-alive connection to make room, one that
	//     has served a request and is between requests (never one
	//     handshaking, waiting for its first request or with a request in
	//     flight): the least recently used one of the source holding the
	//     most connections (OnConnectionShed(ShedIdle)). An HTTP/1.x
	//     connection is closed, as net/http closes idle connections on
	//     Shutdown; a request it sent as it was closed never reaches
	//     Handler. An HTTP/2 connection is sent GOAWAY (NO_ERROR, the last
	//     stream it opened): requests it opened before are served to the
	//     end, later ones the client sends again on a new connection, and the
	//     connection closes once it has none in flight (see h2goaway.go);
	//   - else stops accepting until a connection closes or turns idle
	//     (OnConnectionLimit); new clients wait in the kernel's backlog.
	//
	// A shed connection gives its slot to the new one at once. Until it has
	// closed, the server holds it on top of the limit: at most
	// MaxConnections/8 (at least 16) at a time, HTTP/2 ones for about a
	// second, at most 5 s unless a request is in flight on them; beyond
	// that, accepting waits. A connection holds its slot at most
	// HandshakeTimeout, ReadHeaderTimeout/ReadTimeout or IdleTimeout at a
	// time, so keep those short where the limit is tight.
	MaxConnections int
	// MaxConnectionsPerSource is how many connections one source may hold
	// while the server is full (see MaxConnections); below the limit it
	// does not apply. A source is the client's IPv4 address or the /64 of
	// its IPv6 address, as the TCP peer (behind a proxy or load balancer
	// that is the proxy). Zero: a fair share, MaxConnections divided by the
	// number of sources holding connections (the new one's included),
	// rounded up. Ignored without MaxConnections.
	MaxConnectionsPerSource int

	// Logger receives net/http's internal errors (at warn) and handshake
	// failures (at debug). Default: discard.
	Logger *slog.Logger
	// OnTLSHandshakeError, if set, is called once per failed TLS handshake
	// (for a metric and an audit record). A connection closed before
	// sending any byte, such as a TCP health check, is not reported.
	OnTLSHandshakeError func(HandshakeFailure)
	// OnConnectionLimit, if set, is called each time accepting pauses at
	// MaxConnections (there was no idle connection to shed).
	OnConnectionLimit func()
	// OnConnectionShed, if set, is called once for each connection shed at
	// MaxConnections, with why: ShedIdle or ShedPerSource. It is called on
	// the accept loop: it must not block.
	OnConnectionShed func(reason string)
	// OnHTTP2Error, if set, is called with a short word for each HTTP/2
	// stream or connection the server refuses without a Handler (a header
	// list over the advertised limit, connection-specific or upper-case
	// fields, a malformed pseudo-header, a content-length mismatch, ...).
	// Go's HTTP/2 server gives no hook to answer those in the gateway's own
	// words or to see their request: this is how they are counted.
	OnHTTP2Error func(errType string)
	// OnConnState, if set, is called on each connection state change, as
	// http.Server.ConnState, after the handshake has completed. The
	// net.Conn is the *tls.Conn for HTTP/2 and a wrapper of it for
	// HTTP/1.x: use it as a key, not for type assertions.
	OnConnState func(net.Conn, http.ConnState)

	// OnProtocolError, if set, is called once for each request refused
	// before Handler could see it: net/http's own HTTP/1.x answers to
	// requests it cannot read (400 malformed, 417 unknown Expect, 431
	// header too large, 501 unsupported Transfer-Encoding, 505 unsupported
	// version), plain HTTP sent to the TLS port (400), and the header
	// count and size limits above (431, HTTP/1.1 and HTTP/2). It is the
	// place to record the audit event, and returns the complete HTTP/1.1
	// response to send instead (status line, headers, body; it should say
	// "Connection: close", as the listener closes HTTP/1.x connections
	// after it). For HTTP/2 the listener sends its status, end-to-end
	// header fields and body on the stream. nil, or bytes that are not
	// exactly one HTTP/1.1 response with a 4xx or 5xx status, keep the
	// listener's own answer. It is called on the connection's goroutine.
	//
	// Not covered, because Go's HTTP/2 server answers them without a
	// Handler and without a hook: a header list over the advertised
	// SETTINGS_MAX_HEADER_LIST_SIZE (431; the setting is advisory, but
	// clients that honour it, such as Go's, never send one), and the connection-specific header fields Connection,
	// Keep-Alive, Proxy-Connection, Transfer-Encoding and Upgrade, or TE
	// other than "trailers" (400). Malformed HTTP/2 requests get a stream
	// or connection error (RST_STREAM, GOAWAY) and no response at all.
	OnProtocolError func(ProtocolError) []byte
}

// Server is an HTTPS server with the gateway's TLS settings and limits.
// Start it once; Shutdown or Close it once or many times.
type Server struct {
	srv   *http.Server
	tlsLn tlsOptions
	addr  string
	guard *guard
	// table tracks connections when started with MaxConnections; nil
	// without.
	table *connTable
	// headerBytes is MaxHeaderBytes at New: net/http's own ceiling is set
	// from it (netHTTPHeaderBytes) and stays.
	headerBytes int

	mu      sync.Mutex
	ln      *tlsListener // set by Start
	started bool
	stopped bool          // Shutdown or Close called
	done    chan struct{} // closed when Serve has returned
	err     error         // why Serve returned; nil after Shutdown/Close

	stopOnce sync.Once
	stopErr  error
}

// Limits are the limits SetLimits changes on a running server (the fields
// of Config of the same names; zero means the default, or no connection
// limit).
type Limits struct {
	MaxHeaderBytes, MaxHeaderCount          int
	MaxConnections, MaxConnectionsPerSource int
}

// SetLimits puts l in force for requests and connections from now on, and
// returns the names of the fields it could not change on a running server:
// MaxHeaderBytes above twice its value at New (net/http's own ceiling,
// set from it, refuses larger headers unseen), and MaxConnections from or
// to zero (connections are tracked only when a limit was set at New).
// Connections over a lowered limit stay; idle ones are shed as new ones
// come.
func (s *Server) SetLimits(l Limits) (notApplied []string) {
	notApplied = s.NotApplicable(l)
	l = withDefaults(l)
	cur := s.guard.limits.Load()
	next := headerLimits{count: l.MaxHeaderCount, bytes: l.MaxHeaderBytes}
	if slices.Contains(notApplied, "MaxHeaderBytes") {
		next.bytes = cur.bytes
	}
	if next != *cur {
		s.guard.limits.Store(&next)
	}
	if s.table != nil && !slices.Contains(notApplied, "MaxConnections") {
		s.table.setLimits(l.MaxConnections, l.MaxConnectionsPerSource)
	}
	return notApplied
}

// NotApplicable names the fields of l that SetLimits could not change on
// this server (see SetLimits).
func (s *Server) NotApplicable(l Limits) []string {
	l = withDefaults(l)
	var out []string
	if l.MaxHeaderBytes > netHTTPHeaderBytes(s.headerBytes) {
		out = append(out, "MaxHeaderBytes")
	}
	if (s.table == nil) != (l.MaxConnections == 0) {
		out = append(out, "MaxConnections")
	}
	return out
}

func withDefaults(l Limits) Limits {
	if l.MaxHeaderBytes == 0 {
		l.MaxHeaderBytes = DefaultMaxHeaderBytes
	}
	if l.MaxHeaderCount == 0 {
		l.MaxHeaderCount = DefaultMaxHeaderCount
	}
	return l
}

// ErrServerStarted is returned by Start on a Server already started.
var ErrServerStarted = errors.New("listener: server already started")

// New checks cfg, fills in defaults and builds a Server; nothing listens
// until Start.
func New(cfg Config) (*Server, error) {
	if cfg.Handler == nil {
		return nil, errors.New("listener: config: Handler is required")
	}
	if cfg.Certs == nil {
		return nil, errors.New("listener: config: Certs is required")
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{
		{"HandshakeTimeout", cfg.HandshakeTimeout},
		{"ReadHeaderTimeout", cfg.ReadHeaderTimeout},
		{"ReadTimeout", cfg.ReadTimeout},
		{"WriteTimeout", cfg.WriteTimeout},
		{"IdleTimeout", cfg.IdleTimeout},
	} {
		if d.v < 0 {
			return nil, fmt.Errorf("listener: config: %s must not be negative (got %s)", d.name, d.v)
		}
	}
	for _, n := range []struct {
		name string
		v    int
	}{
		{"MaxHeaderBytes", cfg.MaxHeaderBytes},
		{"MaxHeaderCount", cfg.MaxHeaderCount},
		{"MaxConcurrentStreams", cfg.MaxConcurrentStreams},
		{"MaxConnections", cfg.MaxConnections},
		{"MaxConnectionsPerSource", cfg.MaxConnectionsPerSource},
	} {
		if n.v < 0 {
			return nil, fmt.Errorf("listener: config: %s must not be negative (got %d)", n.name, n.v)
		}
	}
	if cfg.ReadHeaderTimeout == 0 {
		cfg.ReadHeaderTimeout = DefaultReadHeaderTimeout
	}
	if cfg.HandshakeTimeout == 0 {
		cfg.HandshakeTimeout = cfg.ReadHeaderTimeout
	}
	if cfg.IdleTimeout == 0 {
		cfg.IdleTimeout = DefaultIdleTimeout
	}
	if cfg.MaxHeaderBytes == 0 {
		cfg.MaxHeaderBytes = DefaultMaxHeaderBytes
	}
	if cfg.MaxHeaderCount == 0 {
		cfg.MaxHeaderCount = DefaultMaxHeaderCount
	}
	if cfg.MaxConcurrentStreams == 0 {
		cfg.MaxConcurrentStreams = DefaultMaxConcurrentStreams
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}

	tlsConf, err := newTLSConfig(cfg.Certs, cfg.ClientAuth)
	if err != nil {
		return nil, err
	}

	var protocols http.Protocols
	protocols.SetHTTP1(true)
	protocols.SetHTTP2(true)
	onConnState := cfg.OnConnState
	var table *connTable
	if cfg.MaxConnections > 0 {
		table = newConnTable(cfg.MaxConnections, cfg.MaxConnectionsPerSource)
	}
	g := &guard{
		next:    cfg.Handler,
		onErr:   cfg.OnProtocolError,
		log:     cfg.Logger,
		tracked: table != nil,
	}
	g.limits.Store(&headerLimits{count: cfg.MaxHeaderCount, bytes: cfg.MaxHeaderBytes})
	srv := &http.Server{
		Handler:           g,
		ReadHeaderTimeout: cfg.ReadHeaderTimeout,
		ReadTimeout:       cfg.ReadTimeout,
		WriteTimeout:      cfg.WriteTimeout,
		IdleTimeout:       cfg.IdleTimeout,
		MaxHeaderBytes:    netHTTPHeaderBytes(cfg.MaxHeaderBytes),
		// "OPTIONS *" goes to Handler like any other request, rather
		// than being answered by net/http unseen by policy and audit.
		DisableGeneralOptionsHandler: true,
		// The guard finds the connection of a request through this.
		ConnContext: func(ctx context.Context, c net.Conn) context.Context {
			ctx = withConn(ctx, c)
			if table != nil {
				if e := table.lookup(c); e != nil {
					ctx = context.WithValue(ctx, trackedKey{}, e)
				}
			}
			return ctx
		},
		ConnState: func(c net.Conn, s http.ConnState) {
			if pc, ok := c.(*protoConn); ok {
				pc.stateChanged(s)
			}
			if table != nil {
				table.stateChanged(c, s)
			}
			if onConnState != nil {
				onConnState(c, s)
			}
		},
		ErrorLog: slog.NewLogLogger(cfg.Logger.Handler(), slog.LevelWarn),
		// TLS is terminated by tlsListener, so http.Server gets no
		// TLSConfig; with none, Serve still wires up HTTP/2 for
		// connections that negotiated "h2".
		Protocols: &protocols,
		HTTP2: &http.HTTP2Config{
			MaxConcurrentStreams: cfg.MaxConcurrentStreams,
			CountError:           cfg.OnHTTP2Error,
		},
	}
	connH2 := false
	if table != nil {
		// Shedding an idle HTTP/2 connection sends it GOAWAY through a
		// server of its own (see h2goaway.go). shared serves HTTP/2
		// connections should one not get its own, which happens only if
		// net/http changed how it sets up HTTP/2: then they are shed by
		// closing them.
		if shared := newConnH2(cfg.IdleTimeout); shared != nil {
			connH2 = true
			srv.TLSNextProto = map[string]func(*http.Server, *tls.Conn, http.Handler){
				"h2": func(hs *http.Server, tc *tls.Conn, h http.Handler) {
					own := shared
					if e := table.lookup(tc); e != nil && e.h2 != nil {
						own = e.h2
					}
					own.TLSNextProto["h2"](hs, tc, h)
				},
			}
			// What Shutdown does for the HTTP/2 connections of the
			// server: GOAWAY to each.
			srv.RegisterOnShutdown(func() {
				for _, s := range append(table.h2Servers(), shared) {
					goAway(s)
				}
			})
		} else {
			cfg.Logger.Warn("listener: net/http did not set up HTTP/2 as expected (GODEBUG=http2server=0?); " +
				"idle HTTP/2 connections are closed when shed, without GOAWAY")
		}
	}
	return &Server{
		srv:         srv,
		guard:       g,
		table:       table,
		headerBytes: cfg.MaxHeaderBytes,
		tlsLn: tlsOptions{
			conf:        tlsConf,
			timeout:     cfg.HandshakeTimeout,
			table:       table,
			connH2:      connH2,
			idleTimeout: cfg.IdleTimeout,
			onFail:      cfg.OnTLSHandshakeError,
			onLimit:     cfg.OnConnectionLimit,
			onShed:      cfg.OnConnectionShed,
			log:         cfg.Logger,

			onProtocolError: cfg.OnProtocolError,
		},
		addr: cfg.Addr,
		done: make(chan struct{}),
	}, nil
}

// Start serves on ln, or on a new TCP listener on Config.Addr if ln is nil,
// and returns once listening; serving goes on in the background until
// Shutdown or Close. ln must be a plain (not TLS) listener; once Start
// succeeds the Server owns it and closes it, if Start fails it stays the
// caller's.
func (s *Server) Start(ln net.Listener) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopped {
		return http.ErrServerClosed
	}
	if s.started {
		return ErrServerStarted
	}
	if ln == nil {
		var err error
		ln, err = net.Listen("tcp", s.addr)
		if err != nil {
			return fmt.Errorf("listener: %w", err)
		}
	}
	s.started = true
	s.ln = newTLSListener(ln, s.tlsLn)
	go s.serve(s.ln)
	return nil
}

func (s *Server) serve(ln *tlsListener) {
	err := s.srv.Serve(ln)
	if errors.Is(err, http.ErrServerClosed) {
		err = nil
	}
	// Serve closes ln on return, but only via http.Server's wrapper when
	// it was the one that failed; close it here too so its goroutines end.
	_ = ln.Close()
	s.mu.Lock()
	s.err = err
	s.mu.Unlock()
	close(s.done)
}

// Addr is the bound address, or nil before Start.
func (s *Server) Addr() net.Addr {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ln == nil {
		return nil
	}
	return s.ln.Addr()
}

// Done is closed when the server has stopped serving, after Shutdown or
// Close or because the listener failed; Err then says why.
func (s *Server) Done() <-chan struct{} { return s.done }

// Err is why the server stopped: nil while running and after a Shutdown
// or Close, the listener's error if it failed on its own.
func (s *Server) Err() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err
}

// Shutdown stops accepting connections and pending handshakes at once,
// closes idle connections, sends HTTP/2 GOAWAY, and waits for in-flight
// requests to finish. When ctx ends first, the remaining connections are
// closed and ctx's error is returned. Shutdown returns after the serving
// goroutines have ended. It is idempotent: later calls wait for the first
// and return its result.
func (s *Server) Shutdown(ctx context.Context) error {
	s.stopOnce.Do(func() {
		s.mu.Lock()
		s.stopped = true
		started := s.started
		s.mu.Unlock()
		if !started {
			close(s.done) // nothing to wait for; Start now refuses
			return
		}
		err := s.srv.Shutdown(ctx)
		if err != nil {
			// Deadline passed with requests in flight: cut them.
			_ = s.srv.Close()
		}
		<-s.done
		s.stopErr = err
	})
	return s.stopErr
}

// Close closes the listener and every connection now, without waiting for
// in-flight requests. Idempotent, like Shutdown.
func (s *Server) Close() error {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	err := s.Shutdown(ctx)
	if errors.Is(err, context.Canceled) {
		return nil
	}
	return err
}
