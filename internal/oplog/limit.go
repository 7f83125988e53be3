package oplog

import (
	"log/slog"
	"strconv"
	"sync"
	"time"
)

// maxKeys bounds the limiter's memory: records whose text an attacker can vary
// (an error that quotes a host) must not grow the map without end.
const maxKeys = 4096

// limiter is a token bucket per record key: a key starts with burst tokens,
// each record that passes takes one, and one comes back per interval up to
// burst. It is consulted in the caller's goroutine, under a mutex held only
// for a map lookup.
type limiter struct {
	burst    int
	interval time.Duration
	varying  map[string]bool
	max      int

	mu   sync.Mutex
	keys map[string]*bucket
}

type bucket struct {
	tokens int
	// last is when tokens were last refilled (or last full).
	last time.Time
	// held counts records suppressed since the last one that passed.
	held uint64
}

func newLimiter(burst int, interval time.Duration, varying []string) *limiter {
	l := &limiter{burst: burst, interval: interval, max: maxKeys, varying: map[string]bool{}, keys: map[string]*bucket{}}
	for _, k := range varying {
		l.varying[k] = true
	}
	return l
}

// allow reports whether a record with key may be written at now and, if so,
// how many records of the same key were held back since the last one written.
func (l *limiter) allow(key []byte, now time.Time) (ok bool, held uint64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	b := l.keys[string(key)]
	if b == nil {
		if len(l.keys) >= l.max {
			l.evict(now)
		}
		b = &bucket{tokens: l.burst, last: now}
		l.keys[string(key)] = b
	}
	l.refill(b, now)
	if b.tokens == 0 {
		b.held++
		return false, 0
	}
	if b.tokens == l.burst {
		// A full bucket gains nothing while it waits: its refill clock starts
		// with the first token it gives out.
		b.last = now
	}
	b.tokens--
	held, b.held = b.held, 0
	return true, held
}

func (l *limiter) refill(b *bucket, now time.Time) {
	elapsed := now.Sub(b.last)
	if elapsed < l.interval || b.tokens == l.burst {
		return
	}
	n := elapsed / l.interval
	if n >= time.Duration(l.burst-b.tokens) {
		b.tokens, b.last = l.burst, now
		return
	}
	b.tokens += int(n)
	b.last = b.last.Add(n * l.interval)
}

// evict makes room in a full map: first the keys whose bucket has refilled
// and that hold nothing back (forgetting them changes nothing), then, if that
// freed less than a quarter, arbitrary ones (their held-back counts stay in
// Stats.Suppressed but are not repeated on their next line). Freeing a
// quarter at once keeps the scan amortized under a flood of distinct keys.
func (l *limiter) evict(now time.Time) {
	for k, b := range l.keys {
		l.refill(b, now)
		if b.tokens == l.burst && b.held == 0 {
			delete(l.keys, k)
		}
	}
	for k := range l.keys {
		if len(l.keys) <= l.max*3/4 {
			break
		}
		delete(l.keys, k)
	}
}

// appendAttr appends a's key text, qualified by the open groups, to b.
func (l *limiter) appendAttr(b []byte, groups string, a slog.Attr) []byte {
	a.Value = a.Value.Resolve()
	if a.Equal(slog.Attr{}) {
		return b
	}
	if a.Value.Kind() == slog.KindGroup {
		if a.Key != "" {
			groups += a.Key + "."
		}
		for _, ga := range a.Value.Group() {
			b = l.appendAttr(b, groups, ga)
		}
		return b
	}
	if l.varying[a.Key] {
		return b
	}
	// Lengths first, so that text inside a value ("x\x00route=y") cannot make
	// two different records one key and spend another record's tokens.
	v := a.Value.String()
	b = strconv.AppendInt(b, int64(len(groups)+len(a.Key)), 10)
	b = append(b, ':')
	b = append(b, groups...)
	b = append(b, a.Key...)
	b = strconv.AppendInt(b, int64(len(v)), 10)
	b = append(b, ':')
	return append(b, v...)
}
