package audit

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"
)

// Defaults for Config fields left zero.
const (
	DefaultQueueSize    = 4096
	DefaultBlockTimeout = 10 * time.Millisecond
	DefaultWriteTimeout = 5 * time.Second
	// DefaultMaxFieldBytes keeps a line well under the 32 KiB at which Fluent Bit's
	// tail input stops following a file.
	DefaultMaxFieldBytes = 2048
)

// Config configures a Logger.
type Config struct {
	// Sinks receive every event, in order. At least one is required.
	Sinks []Sink
	// QueueSize bounds the events waiting for the writer goroutine.
	QueueSize int
	// BlockTimeout is how long Record waits for room in a full queue before it drops
	// the event and counts the drop.
	BlockTimeout time.Duration
	// WriteTimeout bounds each Sink.Write through its context.
	WriteTimeout time.Duration
	// SensitiveParams are the query parameters redacted before any sink sees an
	// event; nil means DefaultSensitiveParams.
	SensitiveParams []string
	// MaxFieldBytes caps the free-text fields (path, query, host, SNI, user agent,
	// reason); longer ones are cut at a UTF-8 boundary and the event is marked
	// Truncated.
	MaxFieldBytes int
	// Log receives sink errors; nil discards them. Errors are always counted in
	// Stats, which is what alerting should watch.
	Log *slog.Logger
}

// Stats are the Logger's delivery counters since New.
type Stats struct {
	// Written counts events every sink accepted.
	Written uint64
	// Dropped counts events discarded because the queue stayed full for
	// BlockTimeout, or recorded after Close.
	Dropped uint64
	// Errors counts failed sink writes (one event failing on two sinks counts two).
	Errors uint64
}

// Logger takes events from the request path and writes them to its sinks from one
// background goroutine, through a bounded queue. Record does not wait for I/O.
//
// Delivery is best effort: a full queue makes Record wait up to BlockTimeout and
// then drop the event, counted in Stats and visible as a gap in Sequence. Durable,
// at-least-once delivery (a disk spool, per-sink cursors, fail-closed mode) is the
// SIEM pipeline's job and will sit behind the same Record call.
type Logger struct {
	queue        chan *Event
	blockTimeout time.Duration
	writeTimeout time.Duration
	sensitive    []string
	maxField     int
	sinks        []Sink
	line         []byte // the writer goroutine's encoding buffer
	log          *slog.Logger

	// mu guards closed and the send on queue against Close closing it: Record holds
	// the read lock while sending so a send never races the close.
	mu     sync.RWMutex
	closed bool

	done      chan struct{}
	closeOnce sync.Once
	closeErr  error

	seq                      uint64 // writer goroutine only
	written, dropped, errors atomic.Uint64
}

// New starts a Logger. Call Close to flush and stop it.
func New(cfg Config) (*Logger, error) {
	if len(cfg.Sinks) == 0 {
		return nil, errors.New("audit: no sinks configured")
	}
	for i, s := range cfg.Sinks {
		if s == nil {
			return nil, fmt.Errorf("audit: sink %d is nil", i)
		}
	}
	if cfg.QueueSize < 0 || cfg.BlockTimeout < 0 || cfg.WriteTimeout < 0 || cfg.MaxFieldBytes < 0 {
		return nil, errors.New("audit: negative queue size, timeout or field limit")
	}
	l := &Logger{
		queue:        make(chan *Event, orDefault(cfg.QueueSize, DefaultQueueSize)),
		blockTimeout: orDefault(cfg.BlockTimeout, DefaultBlockTimeout),
		writeTimeout: orDefault(cfg.WriteTimeout, DefaultWriteTimeout),
		sensitive:    cfg.SensitiveParams,
		maxField:     orDefault(cfg.MaxFieldBytes, DefaultMaxFieldBytes),
		sinks:        append([]Sink(nil), cfg.Sinks...),
		log:          cfg.Log,
		done:         make(chan struct{}),
	}
	go l.run()
	return l, nil
}

func orDefault[T int | time.Duration](v, def T) T {
	if v == 0 {
		return def
	}
	return v
}

// Record queues ev for writing. The Logger owns ev from here on: the caller must not
// read or change it afterwards. Record returns at once while the queue has room;
// otherwise it waits at most BlockTimeout and then drops the event.
func (l *Logger) Record(ev *Event) {
	if ev == nil {
		return
	}
	l.mu.RLock()
	defer l.mu.RUnlock()
	if l.closed {
		l.dropped.Add(1)
		return
	}
	select {
	case l.queue <- ev:
		return
	default:
	}
	t := time.NewTimer(l.blockTimeout)
	defer t.Stop()
	select {
	case l.queue <- ev:
	case <-t.C:
		l.dropped.Add(1)
	}
}

// Stats returns the delivery counters.
func (l *Logger) Stats() Stats {
	return Stats{Written: l.written.Load(), Dropped: l.dropped.Load(), Errors: l.errors.Load()}
}

// Close stops accepting events, writes every queued event, then closes the sinks.
// It is idempotent: later calls wait for the first and return its result.
func (l *Logger) Close() error {
	l.closeOnce.Do(func() {
		l.mu.Lock()
		l.closed = true
		close(l.queue)
		l.mu.Unlock()
		<-l.done
		var errs []error
		for _, s := range l.sinks {
			errs = append(errs, s.Close())
		}
		l.closeErr = errors.Join(errs...)
	})
	return l.closeErr
}

func (l *Logger) run() {
	defer close(l.done)
	for ev := range l.queue {
		l.write(ev)
	}
}

func (l *Logger) write(ev *Event) {
	l.seq++
	ev.Sequence = l.seq
	if ev.Time.IsZero() {
		ev.Time = time.Now()
	}
	if ev.ID == "" {
		ev.ID = newID(ev.Time)
	}
	// Redact before truncating: a cut could otherwise split a key from its value.
	ev.Query = RedactQuery(ev.Query, l.sensitive)
	l.truncate(ev)

	// Encoded once for every sink, into a buffer the writer goroutine reuses.
	l.line = append(ev.AppendJSON(l.line[:0]), '\n')
	ok := true
	for _, s := range l.sinks {
		ctx, cancel := context.WithTimeout(context.Background(), l.writeTimeout)
		err := s.Write(ctx, l.line)
		cancel()
		if err != nil {
			ok = false
			l.errors.Add(1)
			if l.log != nil {
				l.log.Error("audit sink write failed", "err", err, "seq", ev.Sequence)
			}
		}
	}
	if ok {
		l.written.Add(1)
	}
}

func (l *Logger) truncate(ev *Event) {
	for _, f := range []*string{&ev.Path, &ev.Query, &ev.Host, &ev.SNI, &ev.UserAgent, &ev.Upstream.URL} {
		if cut, ok := cutUTF8(*f, l.maxField); ok {
			*f = cut
			ev.Truncated = true
		}
	}
	if ev.Decision != nil {
		if cut, ok := cutUTF8(ev.Decision.Reason, l.maxField); ok {
			ev.Decision.Reason = cut
			ev.Truncated = true
		}
	}
}

// cutUTF8 shortens s to at most n bytes without splitting a rune.
func cutUTF8(s string, n int) (string, bool) {
	if len(s) <= n {
		return s, false
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n], true
}
