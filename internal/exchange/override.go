package exchange

import (
	"bytes"
	"errors"
	"io"
	"mime"
	"net/http"
	"strings"
)

// Method overrides in a form body. Rails (Rack::MethodOverride), Laravel and
// Spring's HiddenHttpMethodFilter act on a POST as on the method its
// "_method" form field names, so a POST with _method=DELETE would reach a
// DELETE handler while policy judged a POST. The query form is stripped
// (stripMethodOverride); a body can't be rewritten without changing its
// length, so a form body that names an override is refused instead.

// maxFormScan bounds how much of a URL-encoded form the gateway reads before
// forwarding it. Such forms are small; a larger one is refused (413) rather
// than forwarded unchecked.
const maxFormScan = 1 << 20

// ErrMethodOverrideInBody is the cause of a request whose form body names a
// method override: refused (400).
var ErrMethodOverrideInBody = errors.New("method override in the request body")

// checkFormBody looks for a method-override field in r's form body. A
// URL-encoded body (up to maxFormScan) is read and checked now, then handed on
// unchanged; a multipart body is checked as it streams to the upstream, whose
// read fails with ErrMethodOverrideInBody at the offending part header (the
// upstream then sees a cut-off body, never a complete request, and the
// client a 400). It reports the status to refuse with, or 0.
func checkFormBody(r *http.Request) int {
	if r.Body == nil || r.Body == http.NoBody {
		return 0
	}
	mt, params, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil {
		return 0
	}
	switch mt {
	case "application/x-www-form-urlencoded":
		b, err := io.ReadAll(io.LimitReader(r.Body, maxFormScan+1))
		if err != nil {
			return http.StatusBadRequest
		}
		if len(b) > maxFormScan {
			return http.StatusRequestEntityTooLarge
		}
		for pair := range strings.SplitSeq(string(b), "&") {
			if hasOverrideParam(pair) {
				return http.StatusBadRequest
			}
		}
		r.Body = readCloser{Reader: bytes.NewReader(b), Closer: r.Body}
	case "multipart/form-data":
		if params["boundary"] == "" {
			return http.StatusBadRequest
		}
		r.Body = newMultipartGuard(r.Body, params["boundary"])
	}
	return 0
}

type readCloser struct {
	io.Reader
	io.Closer
}

// multipartGuard passes a multipart body through, reading the part headers
// as the bytes go by: each byte is scanned before it is handed on, and a
// Content-Disposition that names an override fails the read that completes
// it, so the upstream never receives that field's header whole, let alone
// its value and the rest of the body.
type multipartGuard struct {
	body     io.ReadCloser
	boundary string // "--" + the boundary
	line     []byte // the line read so far (bounded)
	inHeader bool   // between a boundary line and the blank line after it
	// field is the part header read so far, continuation lines (obsolete
	// folding, which some parsers still join) included; it is judged when
	// the next header or the blank line begins, before those bytes go on.
	field  []byte
	failed bool
}

// maxPartHeaderLine bounds a part header line the guard keeps to read; a
// longer one is refused (no legitimate Content-Disposition is that long).
const maxPartHeaderLine = 8 << 10

func newMultipartGuard(body io.ReadCloser, boundary string) *multipartGuard {
	return &multipartGuard{body: body, boundary: "--" + boundary}
}

func (g *multipartGuard) Read(p []byte) (int, error) {
	if g.failed {
		return 0, ErrMethodOverrideInBody
	}
	n, err := g.body.Read(p)
	for _, c := range p[:n] {
		if c != '\n' {
			if len(g.line) < maxPartHeaderLine {
				g.line = append(g.line, c)
			} else if g.inHeader {
				g.failed = true
				return 0, ErrMethodOverrideInBody
			}
			continue
		}
		line := bytes.TrimRight(g.line, "\r")
		g.line = g.line[:0]
		switch {
		case !g.inHeader:
			// A boundary (or the closing one): part headers follow.
			g.inHeader = bytes.HasPrefix(line, []byte(g.boundary))
			g.field = g.field[:0]
		case len(line) > 0 && (line[0] == ' ' || line[0] == '\t'):
			if len(g.field)+len(line) > maxPartHeaderLine {
				g.failed = true
				return 0, ErrMethodOverrideInBody
			}
			g.field = append(g.field, line...)
		default:
			if g.overrideHeader(g.field) {
				g.failed = true
				return 0, ErrMethodOverrideInBody
			}
			g.field = append(g.field[:0], line...)
			if len(line) == 0 {
				g.inHeader = false
			}
		}
	}
	return n, err
}

// overrideHeader reports whether a part header line is a Content-Disposition
// whose form name is a method override. A header the parser can't read is
// taken for one: refusing is safe, guessing is not.
func (g *multipartGuard) overrideHeader(line []byte) bool {
	name, value, ok := bytes.Cut(line, []byte(":"))
	if !ok || !strings.EqualFold(strings.TrimSpace(string(name)), "Content-Disposition") {
		return false
	}
	_, params, err := mime.ParseMediaType(strings.TrimSpace(string(value)))
	if err != nil {
		return bytes.Contains(bytes.ToLower(value), []byte("ethod"))
	}
	return isOverrideParam(params["name"])
}

func (g *multipartGuard) Close() error { return g.body.Close() }
