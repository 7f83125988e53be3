package audit

import (
	"context"
	"fmt"
	"os"
	"sync"
	"time"
)

// Writes to stdout that a stalled reader can't hold (NewWriterSink).

// StallError is a write to stdout that its reader did not take within the
// sink's stall timeout, or a write refused while an earlier one still waits
// for the reader: the reader is alive but not reading.
type StallError struct {
	// Waiting: this write's batch is the one waiting for the reader. It goes
	// out whole if the reader reads again; the batches after it are refused
	// until then.
	Waiting bool
}

func (e *StallError) Error() string {
	if e.Waiting {
		return "stdout's reader took nothing within the stall timeout; the batch waits for it"
	}
	return "stdout's reader is not reading: an earlier batch still waits for it"
}

// stallWriter writes batches to a file that is not a regular file (a pipe,
// a socket, a terminal) from a goroutine of its own, so that the sink can
// give up waiting: a write that the reader has not taken after stall
// returns a *StallError, and goes on in the background. Until it has gone
// out, later writes are refused at once. Every write goes out whole or not
// at all, from one goroutine per file, however many sinks share the file
// (a sink and the one a reload replaces it with), so the reader never sees
// half a batch followed by another.
type stallWriter struct {
	f     *os.File
	refs  int // sinks using it; under stallWriters' lock
	mu    sync.Mutex
	stall time.Duration
	run   bool        // the goroutine is started
	req   chan []byte // a batch for the goroutine, which owns it until done
	done  chan error  // the batch's result (capacity 1: nobody may wait)
	buf   []byte      // the batch, copied
	busy  bool        // a batch is out and its result not yet taken
	timer *time.Timer
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
		return w
	}
	if stallWriters.m == nil {
		stallWriters.m = map[*os.File]*stallWriter{}
	}
	w := &stallWriter{f: f, refs: 1, stall: stall, req: make(chan []byte, 1), done: make(chan error, 1)}
	stallWriters.m[f] = w
	return w
}

// write writes b whole, waiting for the reader for the stall timeout at
// most, or until ctx ends. b is copied: the caller may reuse it at once.
func (w *stallWriter) write(ctx context.Context, b []byte) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.busy {
		select {
		case <-w.done: // the reader took the batch that waited
			w.busy = false
		default:
			return &StallError{}
		}
	}
	if !w.run {
		w.run = true
		w.timer = time.NewTimer(w.stall)
		go w.loop()
	} else {
		w.timer.Reset(w.stall)
	}
	defer w.timer.Stop()
	w.buf = append(w.buf[:0], b...)
	if cap(w.buf) > 2*localBatchBytes {
		defer func() {
			if !w.busy {
				w.buf = nil // don't keep a burst's buffer
			}
		}()
	}
	w.busy = true
	w.req <- w.buf
	select {
	case err := <-w.done:
		w.busy = false
		return err
	case <-w.timer.C:
	case <-ctx.Done():
	}
	return &StallError{Waiting: true}
}

// loop writes the batches it is given until req is closed.
func (w *stallWriter) loop() {
	for b := range w.req {
		_, err := w.f.Write(b)
		w.done <- err
	}
}

// release drops a sink's use of w. The last one ends its goroutine, once the
// batch that waits for the reader, if any, is out; that batch is an error:
// the reader may never get it.
func (w *stallWriter) release() error {
	stallWriters.Lock()
	defer stallWriters.Unlock()
	if w.refs--; w.refs > 0 {
		return nil
	}
	delete(stallWriters.m, w.f)
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.run {
		return nil
	}
	close(w.req)
	if w.busy {
		select {
		case <-w.done:
		default:
			return fmt.Errorf("audit: %s: a batch of %d bytes still waits for a reader that stopped reading", w.f.Name(), len(w.buf))
		}
	}
	return nil
}
