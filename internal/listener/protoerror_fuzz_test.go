package listener

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
)

// FuzzParseOwnAnswer checks the recogniser of net/http's own answers:
//
//   - what it accepts is an HTTP/1.1 response that net/http's client reads
//     with the same status, a closing connection and nothing after it, and
//     a reason in net/http's wording;
//   - an answer in net/http's shape, for any error status and detail, is
//     accepted with that reason;
//   - one more header field, as any Handler's response would have, makes
//     it a stranger.
func FuzzParseOwnAnswer(f *testing.F) {
	date := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC).Format(http.TimeFormat)
	for _, seed := range []string{
		netHTTPAnswer(400, "Bad Request", "400 Bad Request"),
		netHTTPAnswer(400, "Bad Request: missing required Host header", "400 Bad Request: missing required Host header"),
		netHTTPAnswer(431, "Request Header Fields Too Large", "431 Request Header Fields Too Large"),
		netHTTPAnswer(501, "Not Implemented", unsupportedTE),
		netHTTPAnswer(505, "HTTP Version Not Supported: unsupported protocol version", "505 HTTP Version Not Supported: unsupported protocol version"),
		expectFailedHead + date + expectFailedTail,
		"HTTP/1.1 400 Bad Request\r\nConnection: close\r\n\r\n400 Bad Request",
		"HTTP/1.1 200 OK\r\nDate: " + date + "\r\nContent-Length: 2\r\n\r\nok",
		"HTTP/1.1 417 Expectation Failed\r\nConnection: close\r\nDate: x\r\nContent-Length: 0\r\n\r\n",
		"HTTP/1.1 4x0 Bad Request" + readErrorHeaders,
		"HTTP/1.1 400 Bad Request\r" + readErrorHeaders + "400 Bad Request\r",
	} {
		f.Add([]byte(seed), 400, "missing required Host header")
	}
	f.Fuzz(func(t *testing.T, p []byte, code int, detail string) {
		if status, reason, ok := parseOwnAnswer(p); ok {
			if status < 400 || status > 599 || !strings.HasPrefix(reason, http.StatusText(status)) || !printableASCII([]byte(reason)) {
				t.Fatalf("parseOwnAnswer(%q) = %d %q", p, status, reason)
			}
			br := bufio.NewReader(bytes.NewReader(p))
			resp, err := http.ReadResponse(br, nil)
			if err != nil {
				t.Fatalf("parseOwnAnswer accepted %q, which net/http's client can't read: %v", p, err)
			}
			if _, err := io.ReadAll(resp.Body); err != nil {
				t.Fatalf("parseOwnAnswer accepted %q, whose body can't be read: %v", p, err)
			}
			if resp.StatusCode != status || !resp.Close || br.Buffered() != 0 {
				t.Fatalf("parseOwnAnswer(%q) = %d; the client reads status %d, close %v, %d bytes after it", p, status, resp.StatusCode, resp.Close, br.Buffered())
			}
			line, rest, _ := bytes.Cut(p, []byte("\r\n"))
			extra := fmt.Appendf(nil, "%s\r\nX-Handler: 1\r\n%s", line, rest)
			if _, _, ok := parseOwnAnswer(extra); ok {
				t.Fatalf("parseOwnAnswer accepts %q, with a field net/http never writes", extra)
			}
		}

		// net/http's shape, built the way (*conn).serve builds it.
		if code < 400 || code > 599 || http.StatusText(code) == "" || !printableASCII([]byte(detail)) {
			return
		}
		text := http.StatusText(code)
		if detail != "" {
			text += ": " + detail
		}
		answer := fmt.Sprintf("HTTP/1.1 %d %s%s%d %s", code, text, readErrorHeaders, code, text)
		if status, reason, ok := parseOwnAnswer([]byte(answer)); !ok || status != code || reason != text {
			t.Fatalf("parseOwnAnswer(%q) = %d %q %v; want %d %q", answer, status, reason, ok, code, text)
		}
	})
}
