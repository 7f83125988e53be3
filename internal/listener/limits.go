package listener

import (
	"net/http"
)

// headerCountBody is the 431 body for too many header fields. It is fixed
// text: nothing from the request is echoed back.
const headerCountBody = `{"error":"request header fields too large"}` + "\n"

// limitHeaderCount answers 431 to a request with more than max header
// fields, before next sees it. A request with thousands of tiny headers
// fits under the byte limit yet makes every later stage (normalization,
// policy matching, header stripping, audit) loop over all of them; capping
// the count bounds that work. It runs for HTTP/1.1 and HTTP/2 alike, since
// net/http's HTTP/2 server has a header size limit but no count limit.
//
// Each value counts as one field, so "X: a" twice is two fields. Host and
// HTTP/2 pseudo-headers are not in r.Header and are not counted; HTTP/2
// splits Cookie into crumbs that net/http joins back into one field.
// Trailers arrive after the handler has started and are bounded by the
// size limit only.
func limitHeaderCount(max int, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := 0
		for _, vs := range r.Header {
			n += len(vs)
		}
		if n > max {
			h := w.Header()
			h.Set("Content-Type", "application/json")
			h.Set("X-Content-Type-Options", "nosniff")
			if r.ProtoMajor == 1 {
				// Don't keep reading from a client that sends this.
				h.Set("Connection", "close")
			}
			w.WriteHeader(http.StatusRequestHeaderFieldsTooLarge)
			_, _ = w.Write([]byte(headerCountBody))
			return
		}
		next.ServeHTTP(w, r)
	})
}
