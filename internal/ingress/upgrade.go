package ingress

import (
	"errors"
	"fmt"
	"io"
	"net/http"

	"tollgate.dev/tollgate/internal/exchange"
)

// switchProtocols relays a 101 Switching Protocols (a WebSocket; hygiene
// lets no other upgrade through) as httputil.ReverseProxy does: the
// upstream must switch to the protocol the request asked for, then the
// client's connection is hijacked and bytes are copied both ways until one
// side is done. It is here rather than in a ReverseProxy kept for upgrades
// only, so that an upgrade request is built by the same outbound as every
// other and the upstream can't get different headers for one.
func (p *proxy) switchProtocols(x *exchange.Exchange, out *http.Request, res *http.Response) {
	ctx := out.Context()
	reqType, resType := upgradeType(out.Header), upgradeType(res.Header)
	if !isPrint(resType) {
		res.Body.Close()
		x.Fail(ctx, fmt.Errorf("upstream tried to switch to invalid protocol %q", resType))
		return
	}
	if !asciiEqualFold(reqType, resType) {
		res.Body.Close()
		x.Fail(ctx, fmt.Errorf("upstream tried to switch to protocol %q when %q was requested", resType, reqType))
		return
	}
	backConn, ok := res.Body.(io.ReadWriteCloser)
	if !ok {
		res.Body.Close()
		x.Fail(ctx, errors.New("101 switching protocols response with a body that can't be written"))
		return
	}
	w := x.ResponseWriter()
	conn, brw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		backConn.Close()
		x.Fail(ctx, fmt.Errorf("switching protocols: %w", err))
		return
	}
	defer conn.Close()
	done := make(chan struct{})
	defer close(done)
	go func() {
		// The request's end (the client gone, the gateway shutting down)
		// closes the upstream connection too.
		select {
		case <-ctx.Done():
		case <-done:
		}
		backConn.Close()
	}()

	h := w.Header()
	for k, vv := range res.Header {
		addValues(h, k, vv)
	}
	res.Header = h
	res.Body = nil // res.Write writes the head only; the body is backConn
	if err := res.Write(brw); err != nil {
		p.log.Debug("switching protocols: writing the response", "requestId", x.Event.RequestID, "err", err)
		return
	}
	if err := brw.Flush(); err != nil {
		p.log.Debug("switching protocols: flushing the response", "requestId", x.Event.RequestID, "err", err)
		return
	}
	errc := make(chan error, 2)
	go copyHalf(conn, backConn, errc) // upstream to client
	// From brw's reader: it may hold bytes the client sent before the 101.
	go copyHalf(backConn, brw.Reader, errc) // client to upstream
	// Until one side fails, or both are done.
	if err := <-errc; err == nil {
		<-errc
	}
}

// copyHalf copies one direction of a switched connection, then half-closes
// the destination if it can, so the other side sees the end of this one.
func copyHalf(dst io.Writer, src io.Reader, errc chan<- error) {
	if _, err := io.Copy(dst, src); err != nil {
		errc <- err
		return
	}
	if cw, ok := dst.(interface{ CloseWrite() error }); ok {
		errc <- cw.CloseWrite()
		return
	}
	errc <- errCopyDone
}

var errCopyDone = errors.New("switched connection copy complete")
