package exchange

import (
	"io"
	"net/http"
	"sync/atomic"
)

// Response counts what the client got. It unwraps for
// http.ResponseController, so flushing and upgrades (WebSockets) pass through.
type Response struct {
	http.ResponseWriter
	status int
	bytes  int64
}

// Status is the status sent, 0 before any.
func (w *Response) Status() int { return w.status }

func (w *Response) WriteHeader(code int) {
	if w.status == 0 && code >= 200 {
		w.status = code
	}
	if code == http.StatusSwitchingProtocols {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *Response) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	n, err := w.ResponseWriter.Write(b)
	w.bytes += int64(n)
	return n, err
}

func (w *Response) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// Flush lets streamed responses through without a ResponseController lookup.
func (w *Response) Flush() {
	http.NewResponseController(w.ResponseWriter).Flush()
}

// countingReader counts request body bytes.
type countingReader struct {
	io.ReadCloser
	// n is atomic: a transport may still read the body while Finish reads
	// the count (Go issue 46866).
	n atomic.Int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.ReadCloser.Read(p)
	c.n.Add(int64(n))
	return n, err
}
