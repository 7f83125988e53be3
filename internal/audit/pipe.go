package audit

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"sync/atomic"
	"syscall"
	"time"
)

// A pipe the stdout sink writes without blocking (NewWriterSink).

// StallError is a write to a pipe whose reader did not take it within the
// sink's stall timeout, or at once while the sink is stalled: the reader is
// alive but not reading.
type StallError struct {
	// Lines is how many of the write's lines went out: whole, or the last
	// one cut short, whose rest the sink writes first when the reader reads
	// again.
	Lines int
}

func (e *StallError) Error() string {
	return "the pipe's reader is not reading"
}

const (
	// stallProbeEvery is how often a stalled pipe is tried again: the
	// writes in between fail without a system call.
	stallProbeEvery = 10 * time.Millisecond
	// stallProbeWait is how long a try waits for the reader.
	stallProbeWait = 100 * time.Microsecond
)

// pipeWriter writes to a non-blocking pipe with a deadline per write. The
// caller serializes write and close (lineWriter.mu); interrupt may come from
// anywhere.
type pipeWriter struct {
	f       *os.File // non-blocking: its write deadlines work
	own     bool     // f was opened by the sink, which closes it
	stall   time.Duration
	stalled bool      // the last write timed out
	probeAt time.Time // stalled: when to try the pipe again
	rest    []byte    // the end of a line that a write cut short
	closing atomic.Bool
}

// openPipeWriter returns a pipeWriter on the pipe f, or nil if f is not a
// pipe or its writes can't have deadlines. A pipe that Go already polls
// (os.Pipe) is written as it is; otherwise (stdout, inherited blocking) the
// writer opens the pipe again through /proc/self/fd, non-blocking: a file
// description of its own, so that f, and whoever else shares f's
// description (stderr after 2>&1), keeps blocking writes.
func openPipeWriter(f *os.File, stall time.Duration) *pipeWriter {
	st, err := f.Stat()
	if err != nil || st.Mode()&os.ModeNamedPipe == 0 {
		return nil
	}
	if f.SetWriteDeadline(time.Time{}) == nil {
		return &pipeWriter{f: f, stall: stall}
	}
	rc, err := f.SyscallConn()
	if err != nil {
		return nil
	}
	fd := -1
	if rc.Control(func(d uintptr) { fd = int(d) }) != nil || fd < 0 {
		return nil
	}
	// O_NONBLOCK also makes the open fail (ENXIO) rather than wait when the
	// pipe has no reader.
	g, err := os.OpenFile("/proc/self/fd/"+strconv.Itoa(fd), os.O_WRONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil
	}
	if g.SetWriteDeadline(time.Time{}) != nil {
		g.Close()
		return nil
	}
	return &pipeWriter{f: g, own: true, stall: stall}
}

// write writes b, whole lines, after the rest of a line cut short before.
func (p *pipeWriter) write(ctx context.Context, b []byte) error {
	if p.stalled && time.Now().Before(p.probeAt) {
		return &StallError{}
	}
	if len(p.rest) > 0 {
		n, err := p.send(ctx, p.rest)
		p.rest = p.rest[:copy(p.rest, p.rest[n:])]
		if err != nil {
			return p.failed(err, 0)
		}
	}
	n, err := p.send(ctx, b)
	if err == nil {
		p.stalled = false
		return nil
	}
	lines := bytes.Count(b[:n], newline)
	if n > 0 && b[n-1] != '\n' {
		// Cut within a line: its rest goes before anything else.
		end := len(b)
		if i := bytes.IndexByte(b[n:], '\n'); i >= 0 {
			end = n + i + 1
		}
		p.rest = append(p.rest[:0], b[n:end]...)
		lines++
	}
	return p.failed(err, lines)
}

var newline = []byte{'\n'}

// failed turns a write's timeout into a *StallError (lines went out) and
// the sink stalled.
func (p *pipeWriter) failed(err error, lines int) error {
	if !errors.Is(err, os.ErrDeadlineExceeded) {
		return err
	}
	p.stalled, p.probeAt = true, time.Now().Add(stallProbeEvery)
	return &StallError{Lines: lines}
}

// send writes b, waiting for the reader for the stall timeout (a short try
// once stalled), until ctx ends, or until interrupt.
func (p *pipeWriter) send(ctx context.Context, b []byte) (int, error) {
	if p.closing.Load() || ctx.Err() != nil {
		return 0, os.ErrDeadlineExceeded
	}
	wait := p.stall
	if p.stalled {
		wait = stallProbeWait
	}
	if err := p.f.SetWriteDeadline(time.Now().Add(wait)); err != nil {
		return 0, err
	}
	if ctx.Done() != nil {
		ended := make(chan struct{})
		stop := context.AfterFunc(ctx, func() {
			p.f.SetWriteDeadline(time.Unix(1, 0))
			close(ended)
		})
		defer func() {
			if !stop() {
				<-ended // its deadline must not land on the next write
			}
		}()
	}
	return p.f.Write(b)
}

// interrupt ends a write waiting for the reader, and every later one: the
// sink is closing.
func (p *pipeWriter) interrupt() {
	p.closing.Store(true)
	p.f.SetWriteDeadline(time.Unix(1, 0))
}

// close closes the descriptor the writer opened. A line cut short that the
// reader never took is an error: the reader has half a record.
func (p *pipeWriter) close() error {
	var err error
	if len(p.rest) > 0 {
		err = fmt.Errorf("audit: pipe: the last record was cut short after its reader stalled (%d bytes not written)", len(p.rest))
	}
	if p.own {
		err = errors.Join(err, p.f.Close())
	}
	return err
}
