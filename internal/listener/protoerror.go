package listener

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// ProtocolError is a request refused before [Config.Handler] saw it, handed
// to [Config.OnProtocolError] so that the gateway can answer it in its own
// words and audit it like any other request.
type ProtocolError struct {
	// Status is the HTTP status of the refusal: 400, 417, 431, 501 or 505
	// from net/http, 400 for plain HTTP sent to the TLS port, 431 from the
	// listener's header count and size limits.
	Status int
	// Reason is the short, fixed text of the refusal in net/http's wording,
	// e.g. "Bad Request: missing required Host header". It never holds
	// bytes of the request, so it is safe to log and to show the client.
	Reason string
	// Request is the parsed request when the listener's header limits
	// refused it; its header may be large, so audit what it needs, not
	// all of it. Nil when net/http could not parse a request.
	Request *http.Request
	// RemoteAddr and LocalAddr are the connection's addresses.
	RemoteAddr, LocalAddr net.Addr
	// TLS is the connection's TLS state; nil for plain HTTP sent to the
	// TLS port.
	TLS *tls.ConnectionState
	// Time is when the listener refused the request.
	Time time.Time
}

// The answers net/http writes without calling a Handler, as of Go 1.26
// (net/http/server.go, (*conn).serve). Each is one Write on the
// connection, and each is written only between two requests, never while
// a Handler's response is in progress; see protoConn.Write.
const (
	// A failed c.readRequest: fmt.Fprintf straight to the connection, not
	// through the response writer, so without the Date and Content-Length
	// headers that every Handler response has. The body repeats the
	// status line, except for 501.
	readErrorHeaders = "\r\nContent-Type: text/plain; charset=utf-8\r\nConnection: close\r\n\r\n"
	unsupportedTE    = "Unsupported transfer encoding"
	// An Expect header other than 100-continue: w.sendExpectationFailed,
	// which goes through the response writer and so has a Date.
	expectFailedHead = "HTTP/1.1 417 Expectation Failed\r\nConnection: close\r\nDate: "
	expectFailedTail = "\r\nContent-Length: 0\r\n\r\n"
)

// parseOwnAnswer recognises one of net/http's own answers in p, the bytes
// of one Write, and returns its status and reason text. It matches the
// exact shapes above and nothing else, so that a Handler's response,
// however similar, is never taken for one even if the write-tracking in
// protoConn were wrong.
func parseOwnAnswer(p []byte) (status int, reason string, ok bool) {
	if rest, found := bytes.CutPrefix(p, []byte(expectFailedHead)); found {
		date, tail, found := bytes.Cut(rest, []byte("\r\n"))
		if !found || "\r\n"+string(tail) != expectFailedTail {
			return 0, "", false
		}
		if _, err := time.Parse(http.TimeFormat, string(date)); err != nil {
			return 0, "", false
		}
		return http.StatusExpectationFailed, http.StatusText(http.StatusExpectationFailed), true
	}

	rest, found := bytes.CutPrefix(p, []byte("HTTP/1.1 "))
	if !found || len(rest) < 4 || rest[3] != ' ' {
		return 0, "", false
	}
	for _, b := range rest[:3] {
		if b < '0' || b > '9' {
			return 0, "", false
		}
	}
	code, _ := strconv.Atoi(string(rest[:3]))
	if code < 400 || code > 599 {
		return 0, "", false
	}
	line, body, found := bytes.Cut(rest[4:], []byte(readErrorHeaders))
	if !found || !printableASCII(line) {
		return 0, "", false
	}
	// net/http's wording: the standard text, then ": detail" for a
	// statusError such as "missing required Host header".
	text := http.StatusText(code)
	if text == "" {
		return 0, "", false
	}
	if detail, found := bytes.CutPrefix(line, []byte(text)); !found || len(detail) > 0 && !bytes.HasPrefix(detail, []byte(": ")) {
		return 0, "", false
	}
	switch {
	case bytes.Equal(body, rest[:4+len(line)]):
		return code, string(line), true
	case code == http.StatusNotImplemented && len(line) == len(text) && string(body) == unsupportedTE:
		return code, text + ": unsupported transfer encoding", true
	}
	return 0, "", false
}

func printableASCII(b []byte) bool {
	for _, c := range b {
		if c < ' ' || c > '~' {
			return false
		}
	}
	return true
}

// parseAnswer checks that b, from OnProtocolError, is exactly one complete
// HTTP/1.1 response with a 4xx or 5xx status, and returns it with its body.
// A refusal must stay a refusal, and stray bytes after it would reach the
// client as garbage (or, on a kept-alive connection, as a second response).
func parseAnswer(b []byte) (*http.Response, []byte, error) {
	src := bytes.NewReader(b)
	br := bufio.NewReader(src)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		return nil, nil, fmt.Errorf("parse: %w", err)
	}
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, nil, fmt.Errorf("read body: %w", err)
	}
	switch {
	case resp.ProtoMajor != 1 || resp.ProtoMinor != 1:
		return nil, nil, fmt.Errorf("protocol %s, want HTTP/1.1", resp.Proto)
	case resp.StatusCode < 400 || resp.StatusCode > 599:
		return nil, nil, fmt.Errorf("status %d, want 4xx or 5xx", resp.StatusCode)
	case br.Buffered() > 0 || src.Len() > 0:
		return nil, nil, errors.New("bytes after the response")
	}
	return resp, body, nil
}

// hopByHop are the header fields of a hook's answer that describe its
// HTTP/1.1 framing and connection, not the answer; they are dropped when it
// is sent through a ResponseWriter, which frames it itself (and HTTP/2
// forbids them).
var hopByHop = []string{"Connection", "Content-Length", "Keep-Alive", "Proxy-Connection", "Te", "Trailer", "Transfer-Encoding", "Upgrade"}

// writeAnswer sends a parsed hook answer through w.
func writeAnswer(w http.ResponseWriter, r *http.Request, resp *http.Response, body []byte) {
	h := w.Header()
	clear(h)
	for k, vs := range resp.Header {
		h[k] = vs
	}
	for _, k := range hopByHop {
		delete(h, k)
	}
	if r.ProtoMajor == 1 {
		h.Set("Connection", "close")
	}
	h.Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(resp.StatusCode)
	_, _ = w.Write(body)
}

// protocolErrorFor fills in a ProtocolError for a request the listener's
// own limits refuse.
func protocolErrorFor(r *http.Request, status int, reason string) ProtocolError {
	pe := ProtocolError{Status: status, Reason: reason, Request: r, TLS: r.TLS, Time: time.Now()}
	if c, ok := r.Context().Value(connKey{}).(net.Conn); ok {
		pe.RemoteAddr, pe.LocalAddr = c.RemoteAddr(), c.LocalAddr()
	}
	return pe
}

// refuse answers r with status through OnProtocolError, or with
// fallbackBody when there is no hook or its answer is unusable.
func (g *guard) refuse(w http.ResponseWriter, r *http.Request, status int, reason, fallbackBody string) {
	if g.onErr != nil {
		if b := g.onErr(protocolErrorFor(r, status, reason)); b != nil {
			resp, body, err := parseAnswer(b)
			if err == nil {
				writeAnswer(w, r, resp, body)
				return
			}
			g.log.Warn("listener: OnProtocolError answer is not a usable HTTP/1.1 response; sending the listener's own", "error", err, "status", status)
		}
	}
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("X-Content-Type-Options", "nosniff")
	if r.ProtoMajor == 1 {
		// Don't keep reading from a client that sends this.
		h.Set("Connection", "close")
	}
	w.WriteHeader(status)
	_, _ = io.WriteString(w, fallbackBody)
}

// substitute returns what to write instead of net/http's own answer p, or
// p itself.
func substitute(p []byte, pe ProtocolError, onErr func(ProtocolError) []byte, log *slog.Logger) []byte {
	b := onErr(pe)
	if b == nil {
		return p
	}
	if _, _, err := parseAnswer(b); err != nil {
		log.Warn("listener: OnProtocolError answer is not a usable HTTP/1.1 response; sending net/http's own", "error", err, "status", pe.Status)
		return p
	}
	return b
}

// firstLine is p's first line, at most 100 bytes, for a log message.
func firstLine(p []byte) string {
	line, _, _ := bytes.Cut(p[:min(len(p), 100)], []byte("\r\n"))
	return strings.ToValidUTF8(string(line), "?")
}
