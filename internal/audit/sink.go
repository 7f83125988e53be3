package audit

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
)

// Sink receives finished events from the Logger's writer goroutine, one at a time and
// never concurrently from one Logger. The Logger encodes each event once, as one JSON
// line ending in '\n', and hands every sink the same bytes, which are valid only
// during the call (a sink that keeps them must copy). Write must honour ctx for
// anything that can block on the network. A local sink (stdout, a file) is handed a
// batch of whole lines in one Write.
type Sink interface {
	Write(ctx context.Context, line []byte) error
	Close() error
}

// ErrClosed is returned by a sink written to after Close.
var ErrClosed = errors.New("audit: sink closed")

// lineWriter is what the stdout and file sinks share: one lock, each call
// one write of whole lines (a batch joined first, so that a tailing
// shipper never sees half an event), and the write-behind.
type lineWriter struct {
	mu     sync.Mutex
	out    io.Writer // nil after Close
	name   string    // what errors call out
	buf    []byte    // a batch's lines, joined
	behind writeBehind
	// stall writes to out when it is not a regular file (see
	// NewWriterSink), and waiting is the batch this sink gave up waiting
	// for. nil: writes wait as long as out does.
	stall   *stallWriter
	waiting waiting
}

// local: the sink's Write needs no deadline from its context (see
// localSink); stdout's writes have their own.
func (lw *lineWriter) local() {}

// Write writes line (one or more whole records) with a single write. To
// stdout (a sink without a journal), it queues them without waiting.
func (lw *lineWriter) Write(ctx context.Context, line []byte) error {
	lw.mu.Lock()
	defer lw.mu.Unlock()
	return lw.write(ctx, line, false)
}

// WriteBatch writes lines, whole records each, with a single write
// (BatchSink: fed from a journal, the sink makes one write per commit
// rather than one per record). It returns once they are written.
func (lw *lineWriter) WriteBatch(ctx context.Context, lines [][]byte) error {
	lw.mu.Lock()
	defer lw.mu.Unlock()
	return lw.write(ctx, joinLines(&lw.buf, lines), true)
}

// MaxBatch implements BatchSink.
func (lw *lineWriter) MaxBatch() (int, int) { return localBatchRecords, localBatchBytes }

// write writes p with one call, or hands it to stall (waiting for it to be
// written if wait); mu is held.
func (lw *lineWriter) write(ctx context.Context, p []byte, wait bool) error {
	if lw.out == nil {
		return ErrClosed
	}
	if lw.stall != nil {
		var err error
		if wait {
			err = lw.stall.write(ctx, p, &lw.waiting)
		} else {
			err = lw.stall.buffer(p)
		}
		if err != nil {
			return fmt.Errorf("audit: write %s: %w", lw.name, err)
		}
		return nil
	}
	n, err := lw.out.Write(p)
	lw.behind.wrote(n)
	if err != nil {
		return fmt.Errorf("audit: write %s: %w", lw.name, err)
	}
	return nil
}

// WriterSink writes JSON lines to an io.Writer such as os.Stdout. It does not close
// the writer: whoever opened it owns it. Stdout redirected to a regular file is
// written behind, as a file sink is.
type WriterSink struct{ lineWriter }

// NewWriterSink returns a sink writing one JSON line per event to w.
//
// When w is an *os.File that is not a regular file (stdout read through a
// pipe by a log shipper, a socket, a terminal), a reader that stops reading
// must not hold up the Logger's writer, the other sinks, a change of sinks
// or shutdown. The sink then writes from one goroutine per file, shared by
// every sink on it, in order and each batch whole. Write (the Logger
// without a journal) queues up to 4 MiB without waiting, and refuses with a
// *StallError once the reader has taken nothing for DefaultWriteTimeout, or
// the queue is full. WriteBatch (fed from a journal) waits until its batch
// is written, for as long as the reader takes a write's worth (the batch,
// or 64 KiB of it) every DefaultWriteTimeout, or until its context ends,
// and then fails with a *StallError; its batch stays queued, and the
// sink's retry of it waits for it rather than sending it twice. Close
// waits for what is queued as long as the reader takes something.
func NewWriterSink(w io.Writer) *WriterSink {
	s := &WriterSink{lineWriter{out: w, name: "events", behind: writeBehind{f: regularFile(w)}}}
	if f, ok := w.(*os.File); ok {
		s.stall = acquireStallWriter(f, DefaultWriteTimeout)
	}
	return s
}

// Close stops the sink; the underlying writer stays open. Records still
// queued for a reader that stopped reading are an error.
func (s *WriterSink) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.out == nil {
		return nil
	}
	s.out = nil
	if s.stall != nil {
		return s.stall.release()
	}
	return nil
}

// FileSink appends JSON lines to a file created with mode 0600 (audit records are
// for the SIEM and its operators only: PCI DSS 10.3.1). Rotation is rename + create
// by an external tool such as logrotate, followed by [FileSink.Reopen]; never
// copytruncate, which loses lines a shipper has not read yet.
type FileSink struct {
	lineWriter
	path string
}

// writeBehindBytes is how much a file sink writes before it asks the
// kernel to start writing it to disk. Left alone, Linux keeps a file's
// dirty pages for up to 30 s and then writes them back in one burst: at
// 10,000 events/s, hundreds of megabytes. On ext4 that burst allocates the
// blocks while the sink appends, the sink's write waits on it for tens of
// milliseconds, and on a gateway with one CPU the requests wait with it
// (docs/performance.md, "The tail: the audit file's writeback"). Written
// back a megabyte at a time, the burst never forms. This is about latency,
// not durability: nothing waits for the disk (the journal's fsync is what
// makes records durable).
const writeBehindBytes = 1 << 20

// writeBehind starts the writeback of a file every writeBehindBytes
// written to it.
type writeBehind struct {
	f *os.File // nil: nothing to write back (or it can't be)
	n int      // bytes written since the last start
}

// wrote counts n bytes written to w.f, and starts their writeback once
// writeBehindBytes have gathered.
func (w *writeBehind) wrote(n int) {
	if w.f == nil {
		return
	}
	if w.n += n; w.n < writeBehindBytes {
		return
	}
	w.n = 0
	if err := startWriteback(w.f); err != nil {
		w.f = nil // a pipe, /dev/null, or not Linux: the kernel's writeback it is
	}
}

// regularFile returns w if it is a regular file, for writeBehind.
func regularFile(w io.Writer) *os.File {
	f, ok := w.(*os.File)
	if !ok {
		return nil
	}
	if st, err := f.Stat(); err != nil || !st.Mode().IsRegular() {
		return nil
	}
	return f
}

// fileMode keeps audit files unreadable to other local users. An existing file keeps
// the mode it has: an operator may have granted a shipper's group read access.
const fileMode = 0o600

// OpenFile opens (creating if needed) path for appending audit lines.
func OpenFile(path string) (*FileSink, error) {
	f, err := openAppend(path)
	if err != nil {
		return nil, err
	}
	return &FileSink{lineWriter{out: f, name: path, behind: writeBehind{f: f}}, path}, nil
}

func openAppend(path string) (*os.File, error) {
	// O_APPEND makes each single write land whole at the end even when another
	// process (or a previous instance) appends to the same file.
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, fileMode)
	if err != nil {
		return nil, fmt.Errorf("audit: open file sink: %w", err)
	}
	return f, nil
}

// Path returns the file the sink writes to.
func (s *FileSink) Path() string { return s.path }

// file is the open file; nil after Close. mu is held.
func (s *FileSink) file() *os.File {
	f, _ := s.out.(*os.File)
	return f
}

// A local sink's batch, fed from a journal: one write of up to this many
// records or about this many bytes.
const (
	localBatchRecords = 1024
	localBatchBytes   = 256 << 10
)

// joinLines returns lines joined in *buf, which it keeps for the next batch
// unless a burst made it large.
func joinLines(buf *[]byte, lines [][]byte) []byte {
	if len(lines) == 1 {
		return lines[0]
	}
	b := (*buf)[:0]
	for _, l := range lines {
		b = append(b, l...)
	}
	if cap(b) <= 2*localBatchBytes {
		*buf = b
	} else {
		*buf = nil
	}
	return b
}

// Reopen closes the current file and opens path again, so that after logrotate has
// renamed the file, new lines go to a fresh one (call it on SIGHUP). If the new file
// cannot be opened the sink keeps writing to the old handle and returns the error.
func (s *FileSink) Reopen() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	old := s.file()
	if old == nil {
		return ErrClosed
	}
	f, err := openAppend(s.path)
	if err != nil {
		return err
	}
	s.out, s.behind = f, writeBehind{f: f}
	if err := old.Close(); err != nil {
		return fmt.Errorf("audit: close rotated file: %w", err)
	}
	return nil
}

// Sync flushes the file to stable storage.
func (s *FileSink) Sync() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	f := s.file()
	if f == nil {
		return ErrClosed
	}
	return f.Sync()
}

// Close syncs and closes the file. It is idempotent.
func (s *FileSink) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	f := s.file()
	if f == nil {
		return nil
	}
	s.out = nil
	return errors.Join(f.Sync(), f.Close())
}

// localSink is a sink whose Write ignores its context: the Logger's writer
// calls it without making a deadline per record (a timer and a context per
// event and sink, on the way of every request's record).
type localSink interface {
	Sink
	local()
}
