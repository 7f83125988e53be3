package exchange

import (
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"strconv"
	"sync/atomic"
)

// requestIDs makes request ids: a random per-process prefix and a counter, unique
// across instances without a syscall per request. Ids are made a batch at a
// time, in one string, and handed out as substrings of it: an id costs a
// fraction of an allocation (a batch of 64 ids takes about 2 KiB, kept while
// any of its ids is).
type requestIDs struct {
	prefix string
	n      atomic.Uint64
	batch  atomic.Pointer[idBatch]
}

// idBatchSize is how many ids one batch holds.
const idBatchSize = 64

// idBatch is idBatchSize consecutive ids; taken counts those handed out.
type idBatch struct {
	text  string
	ends  [idBatchSize]uint16 // where each id ends in text
	taken atomic.Uint32
}

func newRequestIDs() *requestIDs {
	var b [8]byte
	rand.Read(b[:])
	return &requestIDs{prefix: hex.EncodeToString(b[:]) + "-"}
}

func (g *requestIDs) next() string {
	for {
		b := g.batch.Load()
		if b != nil {
			if i := b.taken.Add(1) - 1; i < idBatchSize {
				start := uint16(0)
				if i > 0 {
					start = b.ends[i-1]
				}
				return b.text[start:b.ends[i]]
			}
		}
		// The batch is used up: the first to see it replaces it. Another
		// that loses the race drops its own batch, whose numbers are never
		// used: ids stay unique, the counter just skips them.
		g.batch.CompareAndSwap(b, g.newBatch())
	}
}

// newBatch reserves the next idBatchSize numbers and writes their ids.
func (g *requestIDs) newBatch() *idBatch {
	first := g.n.Add(idBatchSize) - idBatchSize + 1
	b := new(idBatch)
	buf := make([]byte, 0, idBatchSize*(len(g.prefix)+8))
	for i := range uint64(idBatchSize) {
		buf = append(buf, g.prefix...)
		buf = strconv.AppendUint(buf, first+i, 36)
		b.ends[i] = uint16(len(buf))
	}
	b.text = string(buf)
	return b
}

// processIDs is shared by every front of the process, so ids stay unique
// across fronts.
var processIDs = newRequestIDs()

// NewRequestID returns a fresh request id, for answers made outside an
// exchange (net/http's refusals, caught by the listener).
func NewRequestID() string { return processIDs.next() }

// validRequestID accepts a trusted proxy's id only if it is short and plain, so it
// can't smuggle log-injection or header tricks.
func validRequestID(s string) bool {
	if s == "" || len(s) > 128 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_' || c == '.') {
			return false
		}
	}
	return true
}

// traceID returns the trace id of a W3C traceparent ("00-<32 hex>-<16 hex>-<2
// hex>"), or "" when the header is not one: a client's text never reaches the
// audit record unchecked.
func traceID(tp string) string {
	if len(tp) != 55 || tp[2] != '-' || tp[35] != '-' || tp[52] != '-' {
		return ""
	}
	id := tp[3:35]
	zero := true
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return ""
		}
		zero = zero && c == '0'
	}
	if zero {
		return ""
	}
	return id
}

// cipherNames maps cipher suite ids to IANA names. tls.CipherSuiteName builds
// the whole suite list on every call (about fifteen allocations), too much per
// request.
var cipherNames = func() map[uint16]string {
	m := make(map[uint16]string)
	for _, list := range [][]*tls.CipherSuite{tls.CipherSuites(), tls.InsecureCipherSuites()} {
		for _, cs := range list {
			m[cs.ID] = cs.Name
		}
	}
	return m
}()

// CipherName is the IANA name of a cipher suite.
func CipherName(id uint16) string { return cipherNames[id] }
