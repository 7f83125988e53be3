package listener

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"syscall"
	"time"
)

// tlsListener accepts TCP connections and completes the TLS handshake itself,
// each in its own goroutine under a deadline, before handing the connection
// to http.Server. Doing it here rather than leaving it to http.Server gives:
//
//   - a handshake deadline of its own, so a client dribbling its ClientHello
//     (slowloris on the handshake) is cut off even when the HTTP timeouts
//     are long;
//   - an exact count of failed handshakes, without parsing http.Server's
//     log lines;
//   - a slow handshake never blocks the accept loop.
//
// http.Server sees an already-handshaken *tls.Conn (its own Handshake call is
// then a no-op) and still serves h2 by the negotiated ALPN protocol.
type tlsListener struct {
	tlsOptions
	inner net.Listener

	ctx    context.Context // cancelled by Close; ends pending handshakes
	cancel context.CancelFunc
	conns  chan net.Conn // handshaken connections, unbuffered
	errc   chan error    // the accept loop's terminal error, buffered 1

	closeOnce sync.Once
	wg        sync.WaitGroup // the accept loop, pending handshakes, sheds
}

// tlsOptions are the listener's settings, from Config.
type tlsOptions struct {
	conf    *tls.Config
	timeout time.Duration
	// table counts connections against MaxConnections (nil: no limit). A
	// connection holds a slot from accept until it closes, so a client
	// holds one at most for the handshake timeout while handshaking, the
	// header and read timeouts while sending a request, and the idle
	// timeout between requests, unless it is shed. There is no separate,
	// smaller cap on handshakes in progress: a handshake waits on the
	// client for most of its time, so such a cap would let a few stalled
	// clients shut every new client out until their deadlines.
	table *connTable
	// connH2 gives each HTTP/2 connection a server of its own, so that it
	// can be sent GOAWAY when shed (see newConnH2); only with a table.
	connH2      bool
	idleTimeout time.Duration
	onFail      func(HandshakeFailure)
	onLimit     func()
	onShed      func(reason string)
	log         *slog.Logger

	onProtocolError func(ProtocolError) []byte
}

func newTLSListener(inner net.Listener, o tlsOptions) *tlsListener {
	ctx, cancel := context.WithCancel(context.Background())
	l := &tlsListener{
		tlsOptions: o,
		inner:      inner,
		ctx:        ctx,
		cancel:     cancel,
		conns:      make(chan net.Conn),
		errc:       make(chan error, 1),
	}
	l.wg.Add(1)
	go l.acceptLoop()
	return l
}

// admit decides on a connection accepted while a connection limit is set,
// and returns it to handshake, or nil when it was closed instead. At the
// limit it sheds an idle connection to make room, refuses a source that
// holds its share, or else waits for a slot, until the listener closes
// (ok false).
func (l *tlsListener) admit(c net.Conn) (admittedConn net.Conn, ok bool) {
	key := sourceOf(c.RemoteAddr())
	paused := false
	for {
		e, victim, v := l.table.admit(key)
		switch v {
		case admitted:
			if victim != nil {
				l.shed(victim)
			}
			return &trackedConn{Conn: c, t: l.table, e: e}, true
		case refused:
			// Counted before the close, so that a client which has seen its
			// connection closed also finds it in the metric. Closed unread:
			// the client sees its connection reset or closed before the TLS
			// handshake, as from any server at capacity.
			if l.onShed != nil {
				l.onShed(ShedPerSource)
			}
			l.log.Debug("listener: full; new connection from a source at its share closed",
				"remote", c.RemoteAddr().String(), "source", key.String())
			_ = c.Close()
			return nil, true
		}
		if !paused {
			paused = true
			if l.onLimit != nil {
				l.onLimit()
			}
			l.log.Debug("listener: at the connection limit with no idle connection to shed; accepting paused",
				"limit", l.table.limitNow())
		}
		select {
		case <-l.table.wake:
		case <-l.ctx.Done():
			_ = c.Close()
			return nil, false
		}
	}
}

// shed makes victim, whose slot a new connection has taken, go away: an
// HTTP/2 connection with its own server gets GOAWAY, any other is closed.
// Either way only a connection that is idle, between requests, is shed.
func (l *tlsListener) shed(victim *tracked) {
	if l.onShed != nil {
		l.onShed(ShedIdle)
	}
	l.table.mu.Lock()
	c := victim.conn
	if victim.h2 != nil && !victim.closed {
		victim.drainTimer = time.AfterFunc(drainTimeout, func() {
			if c := l.table.drainExpired(victim); c != nil {
				_ = c.Close()
			}
		})
	}
	l.table.mu.Unlock()
	l.log.Debug("listener: full; idle connection shed", "remote", c.RemoteAddr().String())
	if victim.h2 != nil {
		goAway(victim.h2)
		return
	}
	// As http.Server does with idle connections on Shutdown, but not on
	// this goroutine: the TLS close_notify is a write that can wait on
	// the client (up to 5s).
	l.wg.Go(func() { _ = c.Close() })
}

// Accept returns the next connection whose handshake succeeded.
func (l *tlsListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case err := <-l.errc:
		l.errc <- err // keep it for later callers
		return nil, err
	case <-l.ctx.Done():
		return nil, net.ErrClosed
	}
}

// Close stops accepting, aborts pending handshakes and waits for their
// goroutines. Idempotent.
func (l *tlsListener) Close() error {
	var err error
	l.closeOnce.Do(func() {
		l.cancel()
		err = l.inner.Close()
		l.wg.Wait()
	})
	return err
}

func (l *tlsListener) Addr() net.Addr { return l.inner.Addr() }

func (l *tlsListener) acceptLoop() {
	defer l.wg.Done()
	var backoff time.Duration
	for {
		c, err := l.inner.Accept()
		if err != nil {
			if l.ctx.Err() != nil {
				return
			}
			var ne net.Error
			//lint:ignore SA1019 same test as http.Server.Serve: EMFILE and
			// friends are temporary and worth retrying after a pause.
			if errors.As(err, &ne) && ne.Temporary() && !errors.Is(err, net.ErrClosed) {
				backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
				l.log.Warn("listener: accept error; retrying", "error", err, "delay", backoff)
				select {
				case <-time.After(backoff):
					continue
				case <-l.ctx.Done():
					return
				}
			}
			l.errc <- err
			return
		}
		backoff = 0
		if l.table != nil {
			var ok bool
			if c, ok = l.admit(c); !ok {
				return
			}
			if c == nil {
				continue
			}
		}
		l.wg.Add(1)
		go l.handshake(c)
	}
}

func (l *tlsListener) handshake(raw net.Conn) {
	defer l.wg.Done()
	rc := &readCountingConn{Conn: raw}
	tc := tls.Server(rc, l.conf)
	ctx, cancel := context.WithTimeout(l.ctx, l.timeout)
	err := tc.HandshakeContext(ctx)
	cancel()
	if err != nil {
		l.handshakeFailed(tc, rc, err)
		return
	}
	// HTTP/2 needs the *tls.Conn itself: http.Server dispatches it by
	// ALPN only then. HTTP/1.x gets the wrapper that catches net/http's
	// own answers.
	var c net.Conn = tc
	h2 := tc.ConnectionState().NegotiatedProtocol == "h2"
	if !h2 {
		c = newProtoConn(tc, l.tlsOptions)
	}
	if tr, ok := raw.(*trackedConn); ok {
		if h2 && l.connH2 {
			tr.e.h2 = newConnH2(l.idleTimeout)
		}
		l.table.serving(tr.e, c)
	}
	select {
	case l.conns <- c:
	case <-l.ctx.Done():
		tc.Close()
	}
}

func (l *tlsListener) handshakeFailed(tc *tls.Conn, rc *readCountingConn, err error) {
	defer tc.Close()
	if l.ctx.Err() != nil {
		return // shutting down, not the client's fault
	}
	if rc.n == 0 && errors.Is(err, io.EOF) {
		// Connected and closed without a byte: a TCP health check or port
		// probe, not a failed handshake. Counting it would drown the
		// metric in load-balancer noise.
		l.log.Debug("listener: connection closed before TLS handshake", "remote", raw(tc))
		return
	}
	hf := HandshakeFailure{RemoteAddr: tc.NetConn().RemoteAddr(), LocalAddr: tc.NetConn().LocalAddr(), Time: time.Now(),
		ServerName: tc.ConnectionState().ServerName, Reason: handshakeReason(err)}
	var rhe tls.RecordHeaderError
	if errors.As(err, &rhe) && rhe.Conn != nil && looksLikeHTTP(rhe.RecordHeader) {
		hf.Reason = HandshakePlainHTTP
		// Plain HTTP on the TLS port: say so, as http.Server does, rather
		// than leave the client with a dropped connection.
		answer := []byte(plainHTTPAnswer)
		if l.onProtocolError != nil {
			pe := ProtocolError{
				Status: http.StatusBadRequest, Reason: "Bad Request: client sent an HTTP request to an HTTPS server",
				RemoteAddr: rhe.Conn.RemoteAddr(), LocalAddr: rhe.Conn.LocalAddr(), Time: time.Now(),
			}
			answer = substitute(answer, pe, l.onProtocolError, l.log)
		}
		_ = rhe.Conn.SetWriteDeadline(time.Now().Add(time.Second))
		_, _ = rhe.Conn.Write(answer)
		err = errors.New("client sent an HTTP request to an HTTPS server")
	}
	l.log.Debug("listener: TLS handshake failed", "remote", raw(tc), "error", err)
	if l.onFail != nil {
		l.onFail(hf)
	}
}

// HandshakeFailure describes a failed TLS handshake.
type HandshakeFailure struct {
	RemoteAddr, LocalAddr net.Addr
	Time                  time.Time
	// ServerName is the SNI of the ClientHello, if the handshake got as far
	// as taking it (not for a version refused outright).
	ServerName string
	// Reason is one of the Handshake* words: a small vocabulary, never the
	// error's text (which may carry what the peer sent).
	Reason string
}

// Why handshakes fail, as HandshakeFailure.Reason says it.
const (
	HandshakeTimeout         = "timeout"
	HandshakeNoClientCert    = "no_client_certificate"
	HandshakeBadClientCert   = "bad_client_certificate"
	HandshakePeerRejected    = "rejected_by_client" // the client sent an alert: it refused our certificate or settings
	HandshakeUnsupported     = "unsupported_parameters"
	HandshakeNotTLS          = "not_tls"
	HandshakePlainHTTP       = "plain_http" // answered 400 and reported through OnProtocolError too
	HandshakeConnectionReset = "connection_closed"
	HandshakeOther           = "handshake_failed"
)

// handshakeReason classifies a handshake error.
func handshakeReason(err error) string {
	var (
		alert   tls.AlertError
		netErr  net.Error
		rhe     tls.RecordHeaderError
		unknown x509.UnknownAuthorityError
		invalid x509.CertificateInvalidError
		host    x509.HostnameError
		cverr   *tls.CertificateVerificationError
	)
	msg := err.Error()
	switch {
	case errors.Is(err, context.DeadlineExceeded), errors.As(err, &netErr) && netErr.Timeout():
		return HandshakeTimeout
	case strings.Contains(msg, "didn't provide a certificate"):
		return HandshakeNoClientCert
	case errors.As(err, &cverr), errors.As(err, &unknown), errors.As(err, &invalid), errors.As(err, &host),
		strings.Contains(msg, "client certificate"), strings.Contains(msg, "SPIFFE"), strings.Contains(msg, "spiffe"):
		return HandshakeBadClientCert
	case errors.As(err, &alert), strings.HasPrefix(msg, "remote error:"):
		return HandshakePeerRejected
	case errors.As(err, &rhe):
		return HandshakeNotTLS
	case strings.Contains(msg, "no cipher suite"), strings.Contains(msg, "protocol version"),
		strings.Contains(msg, "no application protocol"), strings.Contains(msg, "unsupported"):
		return HandshakeUnsupported
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, syscall.ECONNRESET):
		return HandshakeConnectionReset
	}
	return HandshakeOther
}

// plainHTTPAnswer is http.Server's answer to plain HTTP on a TLS port.
const plainHTTPAnswer = "HTTP/1.0 400 Bad Request\r\n\r\nClient sent an HTTP request to an HTTPS server.\n"

func raw(tc *tls.Conn) string { return tc.NetConn().RemoteAddr().String() }

func looksLikeHTTP(hdr [5]byte) bool {
	for _, m := range []string{"GET /", "HEAD ", "POST ", "PUT /", "OPTIO", "DELET", "PATCH", "CONNE", "TRACE"} {
		if bytes.Equal(hdr[:], []byte(m)) {
			return true
		}
	}
	return false
}

// readCountingConn counts bytes read, to tell a silent probe from a client
// that started a handshake. n is only read by the handshake goroutine,
// before the connection is handed on.
type readCountingConn struct {
	net.Conn
	n int64
}

func (c *readCountingConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.n += int64(n)
	return n, err
}
