package egress

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"tollgate.dev/tollgate/internal/request"
)

// Errors of Tunnel.Run besides those of PeekClientHello and *SNIMismatchError.
var (
	// ErrHelloTimeout: the workload did not finish its ClientHello in time
	// (a slowloris holding a tunnel slot open without ever naming a server).
	ErrHelloTimeout = errors.New("no TLS ClientHello before the deadline")
	// ErrTunnelIdle: nothing crossed the tunnel, either way, for the idle
	// timeout.
	ErrTunnelIdle = errors.New("tunnel idle")
)

// SNIMismatchError is the refusal of a ClientHello for another server than
// the CONNECT host that policy judged: "CONNECT allowed.example:443" with
// SNI "evil.example" would reach evil.example on any front end that serves
// both (a CDN, a shared load balancer), which policy never allowed.
type SNIMismatchError struct {
	// Want is the canonical CONNECT host.
	Want string
	// Got is the server name as the ClientHello carried it.
	Got string
}

func (e *SNIMismatchError) Error() string {
	return fmt.Sprintf("egress: the TLS ClientHello names %q, not the CONNECT host %q", e.Got, e.Want)
}

// TunnelStream is the workload's end of a CONNECT tunnel, once the gateway
// has answered 200: a hijacked connection (HTTP/1.1, see ConnStream) or a
// request body and its response (HTTP/2, see RequestStream).
type TunnelStream struct {
	// Reader yields what the workload sends. Over HTTP/1.1 it must start with
	// what the server already buffered after the CONNECT request (a client
	// may send its hello without waiting for the 200).
	Reader io.Reader
	// Writer carries the destination's bytes to the workload.
	Writer io.Writer
	// Flush, if set, is called after every write (HTTP/2: without it, the
	// bytes wait in the response buffer).
	Flush func() error
	// CloseWrite, if set, tells the workload that the destination has
	// finished sending while the other direction goes on (TCP FIN, TLS
	// close_notify). Without it, the tunnel ends when the destination
	// finishes.
	CloseWrite func() error
	// Close ends both directions and unblocks a pending Read; it is called
	// once, possibly from another goroutine.
	Close func() error
	// Abort, if set, is called before Close when the tunnel fails (idle,
	// shutdown, a broken side) rather than ends: it cuts what is in flight
	// and unblocks a pending Write (HTTP/2: resets the stream, where Close
	// lets the queued data and END_STREAM go out).
	Abort func()
}

// ConnStream is the TunnelStream of a hijacked HTTP/1.1 connection. r, if
// not nil, replaces c as the reader (the hijacked bufio.Reader, which may
// hold bytes the client sent early).
func ConnStream(c net.Conn, r io.Reader) TunnelStream {
	if r == nil {
		r = c
	}
	s := TunnelStream{Reader: r, Writer: c, Close: c.Close}
	if cw, ok := c.(interface{ CloseWrite() error }); ok {
		s.CloseWrite = cw.CloseWrite
	}
	return s
}

// RequestStream is the TunnelStream of an HTTP/2 (or HTTP/3) CONNECT: the
// workload's bytes are the request body, the destination's the response.
// The handler must have sent its 200 (WriteHeader) and must return once
// Tunnel.Run has: ending the handler ends the stream, the only way HTTP/2
// has to say "no more data" to the workload here.
func RequestStream(body io.ReadCloser, w http.ResponseWriter) TunnelStream {
	rc := http.NewResponseController(w)
	return TunnelStream{
		Reader: body,
		Writer: w,
		Flush:  rc.Flush,
		Close:  body.Close,
		// Unblock a Write stalled on a workload that stopped reading.
		Abort: func() { _ = rc.SetWriteDeadline(time.Now()) },
	}
}

// Defaults of Tunnel.
const (
	DefaultHelloTimeout = 10 * time.Second
	DefaultTunnelIdle   = 5 * time.Minute
)

// Tunnel splices a CONNECT tunnel to its destination after checking the
// workload's ClientHello: its SNI must name the CONNECT host, and it must not
// be encrypted (ECH). The zero Tunnel uses the defaults.
type Tunnel struct {
	// HelloTimeout bounds the wait for the whole ClientHello
	// (DefaultHelloTimeout when 0).
	HelloTimeout time.Duration
	// IdleTimeout ends a tunnel through which nothing passed, either way,
	// for that long (DefaultTunnelIdle when 0).
	IdleTimeout time.Duration
	// MaxHello bounds the ClientHello in bytes (DefaultMaxClientHello when
	// 0).
	MaxHello int
}

// TunnelResult is what the audit record of a tunnel needs.
type TunnelResult struct {
	// SNI is the server name of the ClientHello as sent, when one was read.
	SNI string
	// BytesIn counts bytes from the destination to the workload.
	BytesIn int64
	// BytesOut counts bytes from the workload to the destination, the
	// ClientHello included.
	BytesOut int64
	// Err is why the tunnel ended; nil when both sides finished cleanly.
	// Refusals: the errors of PeekClientHello, ErrECH, *SNIMismatchError,
	// ErrHelloTimeout; then dial errors, ErrTunnelIdle, the context's error
	// on cancellation, or a transport error.
	Err error
}

// Run checks the ClientHello that the workload sends through client, then
// (only then: a refused tunnel opens no connection outward) dials the
// destination, replays the hello to it and copies bytes both ways until both
// sides have finished, the tunnel is idle, or ctx ends. host is the CONNECT
// host; a host that is an IP address never matches (RFC 6066 has no SNI for
// addresses), so such tunnels are refused. Run closes client and the dialled
// connection before it returns.
func (t Tunnel) Run(ctx context.Context, client TunnelStream, host string, dial func(context.Context) (net.Conn, error)) (res TunnelResult) {
	ends := &tunnelEnds{client: client}
	defer ends.close()
	want, err := request.CanonicalHost(host)
	if err != nil {
		res.Err = fmt.Errorf("egress: tunnel host: %w", err)
		return res
	}
	// Whoever ends the tunnel first (shutdown, a timer, a failing side)
	// records why; what fails after that is a consequence.
	stop := context.AfterFunc(ctx, func() { ends.fail(fmt.Errorf("egress: tunnel: %w", context.Cause(ctx))) })
	defer stop()

	// The hello deadline closes the client: a timer, not SetReadDeadline,
	// so that it also bounds an HTTP/2 request body.
	helloTimeout := tunnelOr(t.HelloTimeout, DefaultHelloTimeout)
	helloTimer := time.AfterFunc(helloTimeout, func() {
		ends.fail(fmt.Errorf("egress: %w (%v)", ErrHelloTimeout, helloTimeout))
	})
	hello, raw, err := PeekClientHello(client.Reader, t.MaxHello)
	res.SNI = hello.ServerName
	if err == nil {
		err = checkHello(hello, want)
	}
	if err != nil {
		// Tell a TLS client why, in a plaintext alert, while the timer
		// still bounds the write.
		if a := tunnelAlert(err); a != 0 {
			ends.alert(a)
		}
	}
	helloTimer.Stop()
	if cause := ends.cause(); cause != nil {
		err = cause // the peek failed, or would have, for this
	}
	if err != nil {
		res.Err = err
		return res
	}

	dest, err := dial(ctx)
	if err != nil {
		res.Err = fmt.Errorf("egress: tunnel dial: %w", err)
		return res
	}
	if !ends.setDest(dest) {
		res.Err = ends.cause()
		return res
	}
	res.BytesIn, res.BytesOut, res.Err = t.splice(ends, raw)
	return res
}

// checkHello refuses a hello that does not prove where the tunnel goes.
func checkHello(hello ClientHelloInfo, want string) error {
	if hello.ECH {
		return ErrECH
	}
	if hello.Host != want {
		return &SNIMismatchError{Want: want, Got: hello.ServerName}
	}
	return nil
}

// tunnelAlert is the fatal TLS alert (RFC 8446 §6.2) that tells the workload
// why its hello was refused; 0 for no alert (not TLS, or nothing to say).
func tunnelAlert(err error) byte {
	var mismatch *SNIMismatchError
	switch {
	case errors.As(err, &mismatch):
		return 112 // unrecognized_name
	case errors.Is(err, ErrECH):
		return 49 // access_denied
	case errors.Is(err, ErrNoSNI):
		return 109 // missing_extension
	case errors.Is(err, ErrInvalidSNI):
		return 47 // illegal_parameter
	case errors.Is(err, ErrMalformedHello), errors.Is(err, ErrHelloTooLarge):
		return 50 // decode_error
	}
	return 0
}

// splice copies both ways with half-closes, starting with the peeked hello.
func (t Tunnel) splice(ends *tunnelEnds, hello []byte) (in, out int64, err error) {
	idleTimeout := tunnelOr(t.IdleTimeout, DefaultTunnelIdle)
	idle := newTunnelIdle(idleTimeout, func() {
		ends.fail(fmt.Errorf("egress: %w for %v", ErrTunnelIdle, idleTimeout))
	})
	defer idle.stop()

	done := make(chan struct{})
	go func() {
		defer close(done)
		n, err := ends.dest.Write(hello)
		out = int64(n)
		if err == nil {
			var copied int64
			copied, err = tunnelCopy(ends.dest, nil, ends.client.Reader, idle)
			out += copied
		}
		if err != nil {
			ends.fail(fmt.Errorf("egress: tunnel to the destination: %w", err))
			return
		}
		// The workload has finished sending: pass the FIN on and keep
		// reading the answer. A destination that can't half-close hears it
		// when the tunnel ends.
		if cw, ok := ends.dest.(interface{ CloseWrite() error }); ok {
			_ = cw.CloseWrite()
		}
	}()
	in, err = tunnelCopy(ends.client.Writer, ends.client.Flush, ends.dest, idle)
	switch {
	case err != nil:
		ends.fail(fmt.Errorf("egress: tunnel from the destination: %w", err))
	case ends.client.CloseWrite != nil:
		// A workload that already closed can't take the FIN: not a
		// failure, both sides are done.
		_ = ends.client.CloseWrite()
	default:
		// Without a half-close towards the workload, ending the tunnel is
		// the only way to tell it that the destination is done.
		ends.close()
	}
	<-done
	return in, out, ends.cause()
}

var tunnelBufs = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

// tunnelCopy copies src to dst until EOF, flushing after each write and
// marking activity for the idle timer.
func tunnelCopy(dst io.Writer, flush func() error, src io.Reader, idle *tunnelIdle) (int64, error) {
	bp := tunnelBufs.Get().(*[]byte)
	defer tunnelBufs.Put(bp)
	buf := *bp
	var written int64
	for {
		nr, rerr := src.Read(buf)
		if nr > 0 {
			idle.touch()
			nw, werr := dst.Write(buf[:nr])
			written += int64(nw)
			if werr == nil && nw != nr {
				werr = io.ErrShortWrite
			}
			if werr == nil && flush != nil {
				werr = flush()
			}
			if werr != nil {
				return written, werr
			}
			idle.touch()
		}
		if rerr == io.EOF {
			return written, nil
		}
		if rerr != nil {
			return written, rerr
		}
	}
}

// tunnelEnds owns both ends of a tunnel and closes each once, from whichever
// goroutine comes first: the splice, a timer, or the context.
type tunnelEnds struct {
	client TunnelStream
	mu     sync.Mutex
	closed bool
	dest   net.Conn
	err    error // the first failure, before anything closed the tunnel
}

// fail closes the tunnel for err. Failures after the tunnel was closed are
// its consequences (a read cut by the close), not causes.
func (e *tunnelEnds) fail(err error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed {
		return
	}
	e.err = err
	if e.client.Abort != nil {
		e.client.Abort()
	}
	e.closeLocked()
}

func (e *tunnelEnds) cause() error {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.err
}

func (e *tunnelEnds) close() {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.closeLocked()
}

func (e *tunnelEnds) closeLocked() {
	if e.closed {
		return
	}
	e.closed = true
	if e.client.Close != nil {
		_ = e.client.Close()
	}
	if e.dest != nil {
		_ = e.dest.Close()
	}
}

// setDest hands the dialled connection over; false (and the connection
// closed) if the tunnel was closed meanwhile.
func (e *tunnelEnds) setDest(c net.Conn) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed {
		_ = c.Close()
		return false
	}
	e.dest = c
	return true
}

// alert writes a fatal TLS alert record to the workload.
func (e *tunnelEnds) alert(desc byte) {
	if _, err := e.client.Writer.Write([]byte{21, 3, 3, 0, 2, 2, desc}); err == nil && e.client.Flush != nil {
		_ = e.client.Flush()
	}
}

// tunnelIdle closes a tunnel after a quiet period. Activity is a timestamp,
// not a timer reset per read: the timer wakes once per period and re-arms
// for what is left.
type tunnelIdle struct {
	timeout time.Duration
	start   time.Time
	last    atomic.Int64 // since start

	mu      sync.Mutex
	timer   *time.Timer
	stopped bool
}

func newTunnelIdle(timeout time.Duration, onIdle func()) *tunnelIdle {
	i := &tunnelIdle{timeout: timeout, start: time.Now()}
	i.mu.Lock()
	defer i.mu.Unlock()
	i.timer = time.AfterFunc(timeout, func() {
		i.mu.Lock()
		defer i.mu.Unlock()
		if i.stopped {
			return
		}
		quiet := time.Since(i.start) - time.Duration(i.last.Load())
		if quiet >= i.timeout {
			onIdle()
			return
		}
		i.timer.Reset(i.timeout - quiet)
	})
	return i
}

func (i *tunnelIdle) touch() { i.last.Store(int64(time.Since(i.start))) }

func (i *tunnelIdle) stop() {
	i.mu.Lock()
	defer i.mu.Unlock()
	i.stopped = true
	i.timer.Stop()
}

// tunnelOr is v, or def when v is zero.
func tunnelOr[T comparable](v, def T) T {
	var zero T
	if v == zero {
		return def
	}
	return v
}
