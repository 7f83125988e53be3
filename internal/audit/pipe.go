package audit

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"sync"
	"time"
)

// Writes to stdout that a reader which stopped reading can't hold up
// (NewWriterSink).

// StallError is a write to stdout refused or given up on because stdout's
// reader took nothing for the sink's stall timeout: alive, but not reading.
type StallError struct {
	// Waiting: the batch was queued and is still waiting for the reader. It
	// goes out whole if the reader reads again (the same sink's retry of
	// the same batch waits for it rather than sending it twice).
	Waiting bool
}

func (e *StallError) Error() string {
	if e.Waiting {
		return "stdout's reader took nothing for the stall timeout; the batch waits for it"
	}
	return "stdout's reader took nothing for the stall timeout; the batch was refused"
}

const (
	// stallBufferBytes bound what a stdout sink without a journal holds for
	// a slow reader; beyond it, batches are refused.
	stallBufferBytes = 4 << 20
	// stallChunk is the most one write system call sends: the wait for a
	// slow reader restarts with every chunk it takes.
	stallChunk = 64 << 10
)

// stallWriter writes to a file that is not a regular file (a pipe, a
// socket, a terminal) from one goroutine of its own, shared by every sink
// on the file (a sink and the one a reload replaces it with), so that
// batches go out whole and in order, and nothing waits longer than the
// stall timeout for a reader that takes nothing. Without a journal, batches
// are queued (bounded) and nobody waits; with one, the sink waits for each
// batch to be written, as its cursor needs.
type stallWriter struct {
	f     *os.File
	refs  int // sinks using it; under stallWriters' lock
	mu    sync.Mutex
	stall time.Duration
	run   bool     // the goroutine is started
	queue [][]byte // batches not yet written; the first may be partly written
	head  int      // bytes of queue[0] written
	size  int      // bytes queued, less head
	done  uint64   // batches written (queue[i] is number done+i+1)
	err   error    // the last write error, of batch errN
	errN  uint64
	moved time.Time // when the reader last took something, or a batch went into an empty queue
	wake  chan struct{}
	news  chan struct{} // closed and replaced whenever something changes
	// orphan: the last sink is gone with batches still queued; the
	// goroutine retires w once they are out. quit ends the goroutine.
	orphan, quit bool
}

// stallWriters are the files written through a stallWriter, by file.
var stallWriters struct {
	sync.Mutex
	m map[*os.File]*stallWriter
}

// acquireStallWriter returns the stallWriter of f, shared with the other
// sinks writing to f, or nil if f is a regular file (whose writes a reader
// can't stall) or can't be told.
func acquireStallWriter(f *os.File, stall time.Duration) *stallWriter {
	if st, err := f.Stat(); err != nil || st.Mode().IsRegular() {
		return nil
	}
	stallWriters.Lock()
	defer stallWriters.Unlock()
	if w := stallWriters.m[f]; w != nil {
		w.refs++
		w.mu.Lock()
		w.orphan = false
		w.mu.Unlock()
		return w
	}
	if stallWriters.m == nil {
		stallWriters.m = map[*os.File]*stallWriter{}
	}
	w := &stallWriter{f: f, refs: 1, stall: stall, wake: make(chan struct{}, 1), news: make(chan struct{})}
	stallWriters.m[f] = w
	return w
}

// stalled tells whether queued bytes have waited for the reader for the
// stall timeout; mu is held.
func (w *stallWriter) stalled() bool {
	return w.size > 0 && time.Since(w.moved) >= w.stall
}

// enqueue queues a copy of b and returns its number; mu is held.
func (w *stallWriter) enqueue(b []byte) uint64 {
	if w.size == 0 {
		w.moved = time.Now()
	}
	w.queue = append(w.queue, bytes.Clone(b))
	w.size += len(b)
	if !w.run {
		w.run = true
		go w.loop()
	}
	select {
	case w.wake <- struct{}{}:
	default:
	}
	return w.done + uint64(len(w.queue))
}

// buffer queues b without waiting (a sink without a journal): refused, with
// a *StallError, once the reader has taken nothing for the stall timeout or
// stallBufferBytes are queued (a larger batch goes only into an empty
// queue). A write error since the last call (the reader went away) is
// returned instead.
func (w *stallWriter) buffer(b []byte) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if err := w.err; err != nil {
		w.err = nil
		return err
	}
	if w.stalled() || w.size > 0 && w.size+len(b) > stallBufferBytes {
		return &StallError{}
	}
	w.enqueue(b)
	return nil
}

// waiting is a batch a sink fed from a journal queued and gave up waiting
// for: its retry waits for it instead of queueing it again.
type waiting struct {
	n uint64 // the batch's number
	b []byte // its bytes, as queued
}

// write queues b and waits until it is written (a sink fed from a journal),
// for as long as the reader takes a write's worth (the batch, or 64 KiB of
// it) every stall timeout, or until ctx ends. If b is the batch the caller
// gave up on last time (*last), it waits for that one instead of queueing b
// again; another batch is refused at once while the queue is stalled.
func (w *stallWriter) write(ctx context.Context, b []byte, last *waiting) error {
	start := time.Now()
	w.mu.Lock()
	var n uint64
	switch {
	case last.n != 0 && bytes.Equal(b, last.b):
		n = last.n // queued already: wait for it, or it went out meanwhile
	case w.stalled():
		w.mu.Unlock()
		return &StallError{}
	default:
		n = w.enqueue(b)
		*last = waiting{n: n, b: w.queue[len(w.queue)-1]}
	}
	for {
		if w.done >= n {
			*last = waiting{}
			var err error
			if w.errN == n {
				err, w.err = w.err, nil
			}
			w.mu.Unlock()
			return err
		}
		// The reader has the stall timeout from its last progress, and at
		// least from this call's start: a retry gives it another chance.
		from := w.moved
		if from.Before(start) {
			from = start
		}
		wait := w.stall - time.Since(from)
		if wait <= 0 {
			w.mu.Unlock()
			return &StallError{Waiting: true}
		}
		news := w.news
		w.mu.Unlock()
		t := time.NewTimer(wait)
		select {
		case <-news:
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return &StallError{Waiting: true}
		}
		t.Stop()
		w.mu.Lock()
	}
}

// loop writes what is queued, a chunk at a time, until quit.
func (w *stallWriter) loop() {
	for {
		w.mu.Lock()
		for len(w.queue) == 0 {
			if w.quit {
				w.run = false
				w.mu.Unlock()
				return
			}
			w.mu.Unlock()
			<-w.wake
			w.mu.Lock()
		}
		chunk := w.queue[0][w.head:]
		chunk = chunk[:min(len(chunk), stallChunk)]
		w.mu.Unlock()
		n, err := w.f.Write(chunk)
		w.mu.Lock()
		w.head += n
		w.size -= n
		if err != nil {
			// The rest of the batch can't go out (the reader is gone): drop
			// it, and tell its writer, or the next one.
			w.size -= len(w.queue[0]) - w.head
			w.head = len(w.queue[0])
			w.err, w.errN = err, w.done+1
		}
		if w.head == len(w.queue[0]) {
			w.queue[0] = nil
			w.queue = w.queue[1:]
			w.head = 0
			w.done++
		}
		w.moved = time.Now()
		close(w.news)
		w.news = make(chan struct{})
		orphaned := w.orphan && w.size == 0
		w.mu.Unlock()
		if orphaned {
			w.retire()
		}
	}
}

// release drops a sink's use of w. The last one waits for what is queued to
// go out, as long as the reader takes something every stall timeout. What
// is left then is an error: it goes out only if the reader reads again
// before the process exits (the goroutine stays for it, and a sink opened
// on the file meanwhile queues behind it).
func (w *stallWriter) release() error {
	stallWriters.Lock()
	w.refs--
	last := w.refs == 0
	stallWriters.Unlock()
	if !last {
		return nil
	}
	w.mu.Lock()
	for w.size > 0 && !w.stalled() {
		news := w.news
		w.mu.Unlock()
		t := time.NewTimer(w.stall)
		select {
		case <-news:
		case <-t.C:
		}
		t.Stop()
		w.mu.Lock()
	}
	size, lines := w.size, 0
	for i, b := range w.queue {
		if i == 0 {
			b = b[w.head:]
		}
		lines += bytes.Count(b, newline)
	}
	w.orphan = size > 0
	w.mu.Unlock()
	w.retire()
	if size > 0 {
		return fmt.Errorf("audit: %s: %d records (%d bytes) wait for a reader that stopped reading", w.f.Name(), lines, size)
	}
	return nil
}

// retire ends the goroutine and forgets w, unless a sink uses it or
// something is queued.
func (w *stallWriter) retire() {
	stallWriters.Lock()
	defer stallWriters.Unlock()
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.refs > 0 || w.size > 0 {
		return
	}
	if stallWriters.m[w.f] == w {
		delete(stallWriters.m, w.f)
	}
	w.quit = true
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

var newline = []byte{'\n'}
