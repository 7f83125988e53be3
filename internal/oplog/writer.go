package oplog

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// core is what every Handler derived from one New shares: the queue, the
// writer goroutine and the counters.
type core struct {
	w     io.Writer
	queue chan *[]byte
	limit *limiter // nil when rate limiting is off

	// mu guards closed against the send in enqueue: a line is either queued
	// before Close marks the core closed, and then written by the drain, or
	// counted as dropped. Enqueue holds the read lock, and never blocks under it.
	mu      sync.RWMutex
	closed  bool
	closing chan struct{}
	done    chan struct{}

	closeOnce sync.Once

	// The writer goroutine's own state: summary formats the drop summaries
	// into summaryBuf.
	summary    slog.Handler
	summaryBuf bytes.Buffer
	// sinceReport counts lines written since the last reportDrops.
	sinceReport int

	written, dropped, suppressed, writeErrors atomic.Uint64
	// unreported counts drops not yet told by a summary line.
	unreported atomic.Uint64
}

func newCore(w io.Writer, queueSize int) *core {
	return &core{
		w:       w,
		queue:   make(chan *[]byte, queueSize),
		closing: make(chan struct{}),
		done:    make(chan struct{}),
	}
}

// maxPooledLine keeps one huge line from pinning its buffer in the pool.
const maxPooledLine = 16 << 10

var linePool = sync.Pool{New: func() any { b := make([]byte, 0, 512); return &b }}

// queueWriter is the io.Writer the inner slog handler formats into. slog's
// handlers write each record with one Write call, so one Write is one line.
type queueWriter struct{ c *core }

func (q queueWriter) Write(p []byte) (int, error) {
	q.c.enqueue(p)
	return len(p), nil
}

// enqueue copies p onto the queue, or counts it dropped if the queue is full
// or the core closed. It never blocks.
func (c *core) enqueue(p []byte) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	if c.closed {
		c.dropped.Add(1)
		return
	}
	line := linePool.Get().(*[]byte)
	*line = append((*line)[:0], p...)
	select {
	case c.queue <- line:
	default:
		linePool.Put(line)
		c.dropped.Add(1)
		c.unreported.Add(1)
	}
}

// run is the writer goroutine. After Close it drains what was queued before
// the close, tells the last drops, and returns.
func (c *core) run() {
	defer close(c.done)
	for {
		select {
		case line := <-c.queue:
			c.writeLine(line)
		case <-c.closing:
			for {
				select {
				case line := <-c.queue:
					c.writeLine(line)
				default:
					c.reportDrops()
					return
				}
			}
		}
	}
}

func (c *core) writeLine(line *[]byte) {
	c.write(*line)
	if cap(*line) <= maxPooledLine {
		linePool.Put(line)
	}
	// Tell drops once the lines queued before them are written: when the
	// queue is empty, or, under sustained overload, once a queue's worth of
	// lines and the one in flight are out. So the summary sits where the gap
	// is, and still comes.
	c.sinceReport++
	if len(c.queue) == 0 || c.sinceReport > cap(c.queue) {
		c.reportDrops()
	}
}

// reportDrops writes one summary line for the drops since the last one.
func (c *core) reportDrops() {
	c.sinceReport = 0
	n := c.unreported.Swap(0)
	if n == 0 {
		return
	}
	msg := strconv.FormatUint(n, 10) + " log lines dropped"
	if n == 1 {
		msg = "1 log line dropped"
	}
	r := slog.NewRecord(time.Now(), slog.LevelWarn, msg, 0)
	r.AddAttrs(slog.Uint64("dropped", n))
	c.summaryBuf.Reset()
	if err := c.summary.Handle(context.Background(), r); err != nil {
		c.writeErrors.Add(1)
		return
	}
	c.write(c.summaryBuf.Bytes())
}

// write writes one line and counts the outcome. A panicking writer counts as
// a failed write: a log line is never worth the process.
func (c *core) write(p []byte) {
	if c.tryWrite(p) {
		c.written.Add(1)
	} else {
		c.writeErrors.Add(1)
	}
}

func (c *core) tryWrite(p []byte) (ok bool) {
	defer func() { _ = recover() }()
	_, err := c.w.Write(p)
	return err == nil
}
