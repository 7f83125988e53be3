package listener

import (
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"sync/atomic"
)

// headerCountBody is the 431 body for too many or too large header fields
// when there is no OnProtocolError answer. It is fixed text: nothing from
// the request is echoed back.
const headerCountBody = `{"error":"request header fields too large"}` + "\n"

// guard is the Handler http.Server calls: it holds each request to what
// net/http does not enforce before next sees it, for HTTP/1.1 and HTTP/2
// alike, and answers refusals through OnProtocolError.
type guard struct {
	next   http.Handler
	limits atomic.Pointer[headerLimits]
	onErr  func(ProtocolError) []byte
	log    *slog.Logger
	// tracked: connections are tracked for shedding (MaxConnections), so a
	// request's context may carry its connection's entry. Without a limit
	// the lookup, which would walk the whole context chain, is skipped.
	tracked bool
}

// headerLimits are the header count and size limits in force (SetLimits
// replaces them).
type headerLimits struct{ count, bytes int }

// trackedConn is the table entry of r's connection, if connections are tracked.
func (g *guard) trackedConn(r *http.Request) (*tracked, bool) {
	if !g.tracked {
		return nil, false
	}
	e, ok := r.Context().Value(trackedKey{}).(*tracked)
	return e, ok
}

func (g *guard) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if e, _ := g.trackedConn(r); e != nil {
		if e.refuse.Load() {
			// The connection was shed, closed as idle, while net/http was
			// reading this request: no answer can reach the client, which
			// sees its connection closed unanswered and may send the
			// request again. Serving it would act on it twice.
			panic(http.ErrAbortHandler)
		}
		if !e.served.Load() { // once: spare the shared write on every request
			e.served.Store(true)
		}
	}
	pc, _ := r.Context().Value(connKey{}).(*protoConn)
	if pc != nil && !pc.handlerStarted() {
		// An earlier request on this connection required it to close
		// (see below) and its Handler dropped "Connection: close", so
		// net/http read on. What follows such a request may be the tail
		// of one that a proxy in front framed differently: request
		// smuggling. Drop the connection without answering.
		panic(http.ErrAbortHandler)
	}
	if r.ProtoMajor == 1 && (r.ProtoMinor == 0 || slices.Contains(r.TransferEncoding, "chunked")) {
		// RFC 9112 §6.1: after a request with both Transfer-Encoding and
		// Content-Length, or an HTTP/1.0 request with Transfer-Encoding,
		// the server MUST close the connection; a front proxy that framed
		// the body by the other header would otherwise have the rest of
		// it read here as a second request (request smuggling). net/http
		// deletes Content-Length when the body is chunked, and ignores and
		// deletes Transfer-Encoding on HTTP/1.0, so no Handler can tell
		// these requests from the rest: close after every chunked
		// HTTP/1.1 request and every HTTP/1.0 request.
		g.closeAfter(w, pc)
	}

	lim := g.limits.Load()
	n := 0
	for _, vs := range r.Header {
		n += len(vs)
	}
	if n > lim.count {
		// A request with thousands of tiny headers fits under the byte
		// limit yet makes every later stage (normalization, policy
		// matching, header stripping, audit) loop over all of them;
		// capping the count bounds that work. net/http's HTTP/2 server
		// has a size limit but no count limit.
		//
		// Each value counts as one field, so "X: a" twice is two. Host
		// and HTTP/2 pseudo-headers are not in r.Header and are not
		// counted; HTTP/2 splits Cookie into crumbs that net/http joins
		// back into one field. Trailers arrive after the Handler has
		// started and are bounded by the size limit only.
		g.closeAfter(w, pc)
		g.refuse(w, r, http.StatusRequestHeaderFieldsTooLarge,
			fmt.Sprintf("Request Header Fields Too Large: %d header fields, limit %d", n, lim.count), headerCountBody)
		return
	}
	if headerListSize(r, lim.bytes) > lim.bytes {
		// net/http's own limits are set above maxBytes (see
		// netHTTPHeaderBytes), so that this check, not net/http, refuses
		// an HTTP/2 request that is too large, and the refusal goes
		// through OnProtocolError like any other.
		g.closeAfter(w, pc)
		g.refuse(w, r, http.StatusRequestHeaderFieldsTooLarge,
			fmt.Sprintf("Request Header Fields Too Large: header list over %d bytes", lim.bytes), headerCountBody)
		return
	}
	g.next.ServeHTTP(w, r)
}

// closeAfter makes the HTTP/1.x connection close after this response. The
// header is what net/http acts on; pc enforces it should the Handler
// remove the header.
func (g *guard) closeAfter(w http.ResponseWriter, pc *protoConn) {
	if pc == nil {
		return // HTTP/2: streams are framed, nothing to desynchronise
	}
	w.Header().Set("Connection", "close")
	pc.closeAfter.Store(true)
}

// headerListSize is r's header list size as HTTP/2 counts it (RFC 9113
// §6.5.2, RFC 7541 §4.1): name and value lengths plus 32 for each field,
// the pseudo-header fields included, which for HTTP/1.x the request line
// and Host stand for. It stops counting once past limit.
func headerListSize(r *http.Request, limit int) int {
	const overhead = 32
	n := len(":method") + len(r.Method) + len(":path") + len(r.RequestURI) +
		len(":authority") + len(r.Host) + len(":scheme") + len("https") + 4*overhead
	for k, vs := range r.Header {
		for _, v := range vs {
			n += len(k) + len(v) + overhead
			if n > limit {
				return n
			}
		}
	}
	return n
}

// netHTTPHeaderBytes is the http.Server.MaxHeaderBytes for a listener
// limit of limit bytes: twice as much, so that a request over the limit
// but within twice it reaches the guard, which refuses it through
// OnProtocolError. It matters for HTTP/2: net/http advertises about this
// much as SETTINGS_MAX_HEADER_LIST_SIZE and answers a longer list with a
// 431 of its own, without calling the Handler (HTTP/1.1's too-large
// answer is caught by protoConn instead). A conforming client never sends
// more than advertised, so it always gets the gateway's answer.
func netHTTPHeaderBytes(limit int) int {
	// HTTP/2 keeps the value in a uint32; don't let doubling wrap it.
	if limit > 1<<30 {
		return limit
	}
	return 2 * limit
}
