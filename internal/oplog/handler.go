package oplog

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strconv"
	"sync"
	"time"
)

// Defaults for Options fields left zero.
const (
	DefaultQueueSize = 1024
	DefaultBurst     = 10
	DefaultInterval  = 10 * time.Second
)

// Options configure a Handler.
type Options struct {
	// Format is "text" (slog.TextHandler, the default) or "json" (slog.JSONHandler).
	Format string
	// Level is the minimum level written; nil means slog.LevelInfo.
	Level slog.Leveler
	// QueueSize bounds the lines waiting for the writer goroutine.
	QueueSize int
	// Burst is how many identical records pass before rate limiting starts;
	// after it, one more passes per Interval. A negative Burst turns rate
	// limiting off.
	Burst    int
	Interval time.Duration
	// VaryingKeys name attributes left out when records are compared for rate
	// limiting: values that differ on every request (a request id) would
	// otherwise make every record unique. They are still written.
	VaryingKeys []string
}

// Stats are a Handler's counters since New. Every record that reaches Handle
// (and is enabled) ends up in exactly one of Written, Dropped, Suppressed or
// WriteErrors; drop summaries count in Written or WriteErrors too.
type Stats struct {
	// Written counts lines the writer accepted.
	Written uint64
	// Dropped counts lines discarded because the queue was full, or logged
	// after Close.
	Dropped uint64
	// Suppressed counts records held back by rate limiting.
	Suppressed uint64
	// WriteErrors counts lines whose write failed (or panicked).
	WriteErrors uint64
}

// Handler is the non-blocking slog.Handler. Handlers derived with WithAttrs and
// WithGroup share the queue, the writer goroutine, the counters and the rate
// limiter of the Handler New returned.
type Handler struct {
	c     *core
	inner slog.Handler
	// keyPrefix is the rate-limit key text of the attributes added by WithAttrs;
	// groups is the qualifier ("a.b.") of the groups opened by WithGroup.
	keyPrefix []byte
	groups    string
}

// New starts a Handler writing to w. Call Close to flush and stop it.
func New(w io.Writer, o Options) (*Handler, error) {
	if o.QueueSize < 0 || o.Interval < 0 {
		return nil, fmt.Errorf("oplog: negative queue size or interval (got %d, %v)", o.QueueSize, o.Interval)
	}
	hopts := &slog.HandlerOptions{Level: o.Level, ReplaceAttr: durationsAsText}
	var newHandler func(io.Writer, *slog.HandlerOptions) slog.Handler
	switch o.Format {
	case "", "text":
		newHandler = func(w io.Writer, o *slog.HandlerOptions) slog.Handler { return slog.NewTextHandler(w, o) }
	case "json":
		newHandler = func(w io.Writer, o *slog.HandlerOptions) slog.Handler { return slog.NewJSONHandler(w, o) }
	default:
		return nil, fmt.Errorf("oplog: unknown format %q (want text or json)", o.Format)
	}
	c := newCore(w, orDefault(o.QueueSize, DefaultQueueSize))
	c.summary = newHandler(&c.summaryBuf, hopts)
	if o.Burst >= 0 {
		c.limit = newLimiter(orDefault(o.Burst, DefaultBurst), orDefault(o.Interval, DefaultInterval), o.VaryingKeys)
	}
	go c.run()
	return &Handler{c: c, inner: newHandler(queueWriter{c}, hopts)}, nil
}

func orDefault[T int | time.Duration](v, def T) T {
	if v == 0 {
		return def
	}
	return v
}

// durationsAsText makes a duration read "30s" in JSON too (slog's JSON handler
// writes nanoseconds, which nobody reading a log wants to divide).
func durationsAsText(_ []string, a slog.Attr) slog.Attr {
	if a.Value.Kind() == slog.KindDuration {
		return slog.String(a.Key, a.Value.Duration().String())
	}
	return a
}

// Enabled reports whether records at level l are written.
func (h *Handler) Enabled(ctx context.Context, l slog.Level) bool {
	return h.inner.Enabled(ctx, l)
}

var keyPool = sync.Pool{New: func() any { b := make([]byte, 0, 256); return &b }}

// Handle formats r and queues its line. It never waits for the writer: a
// record held back by rate limiting, or a line that finds the queue full, is
// counted and Handle returns nil. It returns an error only if formatting does.
func (h *Handler) Handle(ctx context.Context, r slog.Record) error {
	if l := h.c.limit; l != nil {
		kb := keyPool.Get().(*[]byte)
		key := h.key((*kb)[:0], r)
		ok, held := l.allow(key, time.Now())
		*kb = key
		keyPool.Put(kb)
		if !ok {
			h.c.suppressed.Add(1)
			return nil
		}
		if held > 0 {
			r = r.Clone() // AddAttrs on a shared record could write into the caller's array
			r.AddAttrs(slog.Uint64("suppressed", held))
		}
	}
	return h.inner.Handle(ctx, r)
}

// WithAttrs returns a Handler whose records carry as.
func (h *Handler) WithAttrs(as []slog.Attr) slog.Handler {
	if len(as) == 0 {
		return h
	}
	h2 := *h
	h2.inner = h.inner.WithAttrs(as)
	if l := h.c.limit; l != nil {
		h2.keyPrefix = slices.Clip(h.keyPrefix)
		for _, a := range as {
			h2.keyPrefix = l.appendAttr(h2.keyPrefix, h.groups, a)
		}
	}
	return &h2
}

// WithGroup returns a Handler that qualifies later attributes with name.
func (h *Handler) WithGroup(name string) slog.Handler {
	if name == "" {
		return h
	}
	h2 := *h
	h2.inner = h.inner.WithGroup(name)
	h2.groups = h.groups + name + "."
	return &h2
}

// key appends r's rate-limit key to b: level, message, then every attribute
// as qualified key=value text, varying keys left out.
func (h *Handler) key(b []byte, r slog.Record) []byte {
	b = append(b, r.Level.String()...)
	b = append(b, ' ')
	b = strconv.AppendInt(b, int64(len(r.Message)), 10)
	b = append(b, ':')
	b = append(b, r.Message...)
	b = append(b, h.keyPrefix...)
	r.Attrs(func(a slog.Attr) bool {
		b = h.c.limit.appendAttr(b, h.groups, a)
		return true
	})
	return b
}

// Stats returns the counters.
func (h *Handler) Stats() Stats {
	c := h.c
	return Stats{
		Written:     c.written.Load(),
		Dropped:     c.dropped.Load(),
		Suppressed:  c.suppressed.Load(),
		WriteErrors: c.writeErrors.Load(),
	}
}

// Close stops accepting records (later ones count as dropped) and lets the
// writer goroutine write what is queued, waiting until it is done or ctx is.
// A writer that blocks forever cannot be interrupted: Close then returns
// ctx's error and the goroutine stays blocked until the writer returns. Close
// is idempotent and may be called from several goroutines.
func (h *Handler) Close(ctx context.Context) error {
	c := h.c
	c.closeOnce.Do(func() {
		c.mu.Lock()
		c.closed = true
		c.mu.Unlock()
		close(c.closing)
	})
	select {
	case <-c.done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("oplog: log lines still queued: %w", ctx.Err())
	}
}
