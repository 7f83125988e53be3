package audit

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// SyslogOptions configures a SyslogSink.
type SyslogOptions struct {
	// Address is the receiver's host:port (6514 is syslog over TLS).
	Address string
	// TLS verifies the receiver (RootCAs, ServerName) and may present a
	// client certificate. Required: audit records don't cross a network in
	// the clear.
	TLS *tls.Config
	// Hostname is the HOSTNAME field; empty: os.Hostname().
	Hostname string
	// DialTimeout bounds connecting and the handshake (default 5s).
	DialTimeout time.Duration
}

// SyslogSink sends each record as an RFC 5424 message over TLS (RFC 5425),
// framed by octet counting: "<len> <PRI>1 TIME HOST tollgate PID audit - JSON".
// The facility is 13 (log audit); the severity is 6 (informational), 4
// (warning) for a denial or a gap record.
//
// Syslog has no acknowledgement: a record counts as delivered once it is
// written to the TLS connection. The sink notices a receiver that closed
// the connection and connects again before the next write (see
// syslogConn); a write that fails closes the connection and is reported, so
// the Logger retries the record on a new one. A receiver that stops may not
// have read, or not yet stored, what was last written to it: so the
// messages written in the replayWindow before a connection is found gone
// are sent again first on the next one (at least once: a receiver may get
// them twice; the record's id tells). A receiver that dies without
// closing, with records in its socket buffer older than that, loses them.
type SyslogSink struct {
	opts   SyslogOptions
	host   string
	procid string
	dialer *tls.Dialer

	mu     sync.Mutex
	conn   *syslogConn
	buf    []byte
	closed bool
	// recent are the messages written on conn in the last replayWindow
	// (at most replayMax of them), oldest first; replay those of a
	// connection found gone, to be sent first on the next one.
	recent []sentMessage
	replay []sentMessage
}

// sentMessage is one framed message and when it was written.
type sentMessage struct {
	at  time.Time
	msg []byte
}

// The replay window: what a receiver that stops may have read but not
// stored. rsyslog, stopped, loses what it had read into its queue; a second
// covers that at any rate this sink writes.
const (
	replayWindow = 2 * time.Second
	replayMax    = 4096
)

// connGone retires the current connection: the messages written on it
// within the replay window go first on the next one. The caller holds mu.
func (s *SyslogSink) connGone() {
	s.conn.close()
	s.conn = nil
	cut := time.Now().Add(-replayWindow)
	for _, m := range s.recent {
		if m.at.After(cut) {
			s.replay = append(s.replay, m)
		}
	}
	if n := len(s.replay); n > replayMax {
		s.replay = s.replay[n-replayMax:]
	}
	s.recent = s.recent[:0]
}

// remember keeps msg as written now, dropping what is past the window.
func (s *SyslogSink) remember(msg []byte) {
	now := time.Now()
	cut := now.Add(-replayWindow)
	i := 0
	for i < len(s.recent) && (s.recent[i].at.Before(cut) || len(s.recent)-i >= replayMax) {
		i++
	}
	if i > 0 {
		s.recent = append(s.recent[:0], s.recent[i:]...)
	}
	s.recent = append(s.recent, sentMessage{at: now, msg: append([]byte(nil), msg...)})
}

// syslogConn is a connection to the receiver and the goroutine that reads
// it. A receiver sends nothing on it but TLS housekeeping, so the read
// ending means the receiver closed (or broke) the connection: writing on
// would put records in a socket buffer nobody reads, a loss no error
// reports. A receiver that restarts closes its connections; this catches
// that, though not one that dies without a FIN. Write also asks the kernel
// (peerClosed): the reader may not have run yet when the next record comes.
type syslogConn struct {
	*tls.Conn
	gone atomic.Bool
	done chan struct{}
}

func newSyslogConn(c *tls.Conn) *syslogConn {
	sc := &syslogConn{Conn: c, done: make(chan struct{})}
	go func() {
		defer close(sc.done)
		_, _ = io.Copy(io.Discard, c)
		sc.gone.Store(true)
	}()
	return sc
}

func (sc *syslogConn) close() {
	_ = sc.Close()
	<-sc.done
}

// Facility 13 is "log audit" (RFC 5424 §6.2.1).
const (
	syslogFacility = 13
	sevWarning     = 4
	sevInfo        = 6
)

// NewSyslogSink returns a sink for opts; it connects on the first write.
func NewSyslogSink(opts SyslogOptions) (*SyslogSink, error) {
	if opts.TLS == nil {
		return nil, errors.New("audit: syslog sink needs TLS")
	}
	if _, _, err := net.SplitHostPort(opts.Address); err != nil {
		return nil, fmt.Errorf("audit: syslog address %q: %w", opts.Address, err)
	}
	host := opts.Hostname
	if host == "" {
		host, _ = os.Hostname()
	}
	host = syslogField(host, 255)
	if opts.DialTimeout == 0 {
		opts.DialTimeout = 5 * time.Second
	}
	return &SyslogSink{
		opts:   opts,
		host:   host,
		procid: strconv.Itoa(os.Getpid()),
		dialer: &tls.Dialer{NetDialer: &net.Dialer{Timeout: opts.DialTimeout}, Config: opts.TLS},
	}, nil
}

// syslogField makes s a valid RFC 5424 header field: printable US-ASCII
// without spaces, at most n characters, "-" when empty.
func syslogField(s string, n int) string {
	b := []byte(s)
	for i, c := range b {
		if c < 33 || c > 126 {
			b[i] = '_'
		}
	}
	if len(b) > n {
		b = b[:n]
	}
	if len(b) == 0 {
		return "-"
	}
	return string(b)
}

// Write sends line as one message.
func (s *SyslogSink) Write(ctx context.Context, line []byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return ErrClosed
	}
	// A receiver that closed the connection gets a new one, before this
	// record would vanish into the old one's socket buffer.
	if s.conn != nil && (s.conn.gone.Load() || peerClosed(s.conn.NetConn())) {
		s.connGone()
	}
	if s.conn == nil {
		c, err := s.dialer.DialContext(ctx, "tcp", s.opts.Address)
		if err != nil {
			return fmt.Errorf("audit: syslog connect %s: %w", s.opts.Address, err)
		}
		s.conn = newSyslogConn(c.(*tls.Conn))
	}
	if dl, ok := ctx.Deadline(); ok {
		_ = s.conn.SetWriteDeadline(dl)
	} else {
		_ = s.conn.SetWriteDeadline(time.Time{})
	}
	// What the last connection may have lost goes first.
	for len(s.replay) > 0 {
		m := s.replay[0]
		if _, err := s.conn.Write(m.msg); err != nil {
			s.connGone()
			return fmt.Errorf("audit: syslog write %s: %w", s.opts.Address, err)
		}
		s.remember(m.msg)
		s.replay = s.replay[1:]
	}
	s.buf = appendSyslog(s.buf[:0], line, s.host, s.procid)
	if _, err := s.conn.Write(s.buf); err != nil {
		// After a failed (or timed out) write the TLS stream is unusable.
		s.connGone()
		return fmt.Errorf("audit: syslog write %s: %w", s.opts.Address, err)
	}
	s.remember(s.buf)
	return nil
}

// appendSyslog frames one record: octet count, space, the RFC 5424 message.
func appendSyslog(dst, line []byte, host, procid string) []byte {
	line = bytes.TrimSuffix(line, []byte("\n"))
	sev := sevInfo
	if bytes.Contains(line, []byte(`"decision":{"allow":false`)) || bytes.Contains(line, []byte(`"kind":"audit"`)) {
		sev = sevWarning
	}
	ts := "-"
	if t, ok := lineTime(line); ok {
		ts = t.UTC().Format(timeLayout)
	}
	var hdr [160]byte
	h := append(hdr[:0], '<')
	h = strconv.AppendInt(h, int64(syslogFacility*8+sev), 10)
	h = append(h, ">1 "...)
	h = append(h, ts...)
	h = append(h, ' ')
	h = append(h, host...)
	h = append(h, " tollgate "...)
	h = append(h, procid...)
	h = append(h, " audit - "...)
	dst = strconv.AppendInt(dst, int64(len(h)+len(line)), 10)
	dst = append(dst, ' ')
	dst = append(dst, h...)
	return append(dst, line...)
}

// Close closes the connection.
func (s *SyslogSink) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	if s.conn == nil {
		return nil
	}
	s.conn.close()
	s.conn = nil
	return nil
}
