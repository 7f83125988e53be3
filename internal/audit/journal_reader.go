package audit

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// JournalReader reads a journal's committed records in order from a
// cursor: the sequence number of the last record its sink acknowledged,
// kept in the journal's cursors directory. A sink's delivery loop owns one;
// records are delivered at least once: after a crash the reader starts
// again after the last saved acknowledgement.
type JournalReader struct {
	j    *Journal
	name string
	path string // cursor file

	next   uint64 // the next sequence number to return
	acked  uint64
	saved  uint64
	f      *os.File
	first  uint64 // the open segment's first sequence number
	off    int64  // read position in it
	secEnd int64  // end of the section br reads
	br     *bufio.Reader
	long   []byte // a line longer than br's buffer
	// fresh: NewReader created the cursor file.
	fresh bool
}

// ErrJournalClosed is returned by JournalReader.Next once the journal is
// closed and the reader has read every committed record.
var ErrJournalClosed = errors.New("audit: journal closed")

// NewReader returns the reader of the sink called name, positioned after
// its saved cursor. A sink without one starts after the records already
// committed: a sink added to a running journal gets what comes from now on,
// not the archive. Its cursor is saved at once, so a crash right after
// start does not make it skip what is journaled meanwhile.
func (j *Journal) NewReader(name string) (*JournalReader, error) {
	return j.newReader(name, false)
}

// newReader is NewReader; fromEnd starts after the records committed even
// if the name has a cursor (a sink added to a running Logger: a cursor left
// by a sink of that name removed earlier is not its).
func (j *Journal) newReader(name string, fromEnd bool) (*JournalReader, error) {
	if name == "" || strings.ContainsAny(name, `/\`) || name == "." || name == ".." {
		return nil, fmt.Errorf("audit: journal reader name %q: want a plain file name", name)
	}
	r := &JournalReader{j: j, name: name, path: filepath.Join(j.dir, cursorDir, name)}
	b, err := os.ReadFile(r.path)
	if fromEnd && err == nil {
		err = os.ErrNotExist
	}
	switch {
	case err == nil:
		n, perr := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64)
		if perr != nil {
			return nil, fmt.Errorf("audit: journal cursor %s: %w", r.path, perr)
		}
		r.acked = n
	case errors.Is(err, os.ErrNotExist):
		r.acked = j.Committed()
		r.fresh = true
		if err := r.save(true); err != nil {
			return nil, err
		}
	default:
		return nil, fmt.Errorf("audit: journal cursor: %w", err)
	}
	r.next, r.saved = r.acked+1, r.acked
	j.mu.Lock()
	j.cursors[r] = r.acked
	j.mu.Unlock()
	return r, nil
}

// Next returns the next committed record (a line with its newline, valid
// until the next call) and its sequence number, waiting for one until ctx
// ends or the journal closes. lost counts records the quota removed before
// this reader got to them (OnFull DropOldest): they are skipped.
func (r *JournalReader) Next(ctx context.Context) (line []byte, seq uint64, lost uint64, err error) {
	return r.read(ctx, true)
}

// errNoRecord: read without waiting found no committed record.
var errNoRecord = errors.New("audit: no committed record yet")

func (r *JournalReader) read(ctx context.Context, wait bool) (line []byte, seq uint64, lost uint64, err error) {
	for {
		limit, final, changed, closed, skipped := r.locate()
		lost += skipped
		if r.f != nil {
			for r.off < limit {
				line, err := r.readLine(limit)
				if err != nil {
					return nil, 0, lost, err
				}
				seq, err := lineSeq(line)
				if err != nil {
					return nil, 0, lost, fmt.Errorf("audit: journal segment %d at byte %d: %w", r.first, r.off, err)
				}
				if seq < r.next {
					continue // delivered before the cursor was saved
				}
				r.next = seq + 1
				return line, seq, lost, nil
			}
			if final {
				r.closeFile()
				continue
			}
		}
		if closed {
			return nil, 0, lost, ErrJournalClosed
		}
		if !wait {
			return nil, 0, lost, errNoRecord
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return nil, 0, lost, ctx.Err()
		}
	}
}

// locate opens the segment holding r.next if none is open, and says how far
// the open one may be read, whether that is its end for good (rotated or
// removed), and what to wait on.
func (r *JournalReader) locate() (limit int64, final bool, changed <-chan struct{}, closed bool, lost uint64) {
	j := r.j
	j.mu.Lock()
	defer j.mu.Unlock()
	changed, closed = j.changed, j.closed
	if r.f == nil {
		if r.next > j.commit {
			return 0, false, changed, closed, 0
		}
		if first := j.segs[0].first; r.next < first {
			lost = first - r.next
			r.next = first
		}
		i := len(j.segs) - 1
		for i > 0 && j.segs[i].first > r.next {
			i--
		}
		f, err := os.Open(j.segs[i].path)
		if err != nil {
			// Removed under us: the next call finds the next segment.
			return 0, false, changed, closed, lost
		}
		r.f, r.first, r.off, r.secEnd = f, j.segs[i].first, 0, 0
	}
	for i, s := range j.segs {
		if s.first == r.first && (s.size > 0 || i == len(j.segs)-1) {
			return s.size, i < len(j.segs)-1, changed, closed, lost
		}
	}
	// The segment was removed for the quota while open: the file is still
	// readable to its end.
	st, err := r.f.Stat()
	if err != nil {
		return r.off, true, changed, closed, lost
	}
	return st.Size(), true, changed, closed, lost
}

// readLine reads the line at r.off, which ends before limit (commits are
// whole lines).
func (r *JournalReader) readLine(limit int64) ([]byte, error) {
	if r.off >= r.secEnd {
		r.secEnd = limit
		sec := io.NewSectionReader(r.f, r.off, limit-r.off)
		if r.br == nil {
			r.br = bufio.NewReaderSize(sec, 256<<10)
		} else {
			r.br.Reset(sec)
		}
	}
	r.long = r.long[:0]
	for {
		b, err := r.br.ReadSlice('\n')
		if err == bufio.ErrBufferFull {
			r.long = append(r.long, b...)
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("audit: journal segment %d at byte %d: %w", r.first, r.off, err)
		}
		line := b
		if len(r.long) > 0 {
			line = append(r.long, b...)
		}
		r.off += int64(len(line))
		return line, nil
	}
}

// rewind makes the next read return the record after the last
// acknowledged one, again if it was read: a replaced sink's loop may have
// read records it never delivered.
func (r *JournalReader) rewind() {
	r.closeFile()
	r.next = r.acked + 1
}

// skipTo moves an unused reader's cursor on to seq: the next read returns
// the record after it.
func (r *JournalReader) skipTo(seq uint64) {
	if seq <= r.acked {
		return
	}
	r.closeFile()
	r.Ack(seq)
	r.next = seq + 1
}

func (r *JournalReader) closeFile() {
	if r.f != nil {
		_ = r.f.Close()
		r.f = nil
	}
}

// Ack records that the sink delivered everything up to seq.
func (r *JournalReader) Ack(seq uint64) {
	if seq <= r.acked {
		return
	}
	r.acked = seq
	r.j.mu.Lock()
	r.j.cursors[r] = seq
	r.j.mu.Unlock()
}

// Acked returns the last acknowledged sequence number.
func (r *JournalReader) Acked() uint64 { return r.acked }

// Save writes the cursor if it moved since the last save. It is written to
// a temporary file and renamed, so a crash leaves the old cursor or the new
// one: at worst some records are delivered again, never skipped.
func (r *JournalReader) Save() error {
	if r.acked == r.saved {
		return nil
	}
	return r.save(false)
}

func (r *JournalReader) save(durable bool) error {
	tmp := r.path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, fileMode)
	if err != nil {
		return fmt.Errorf("audit: journal cursor: %w", err)
	}
	_, err = f.WriteString(strconv.FormatUint(r.acked, 10) + "\n")
	if err == nil && durable {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, r.path)
	}
	if err == nil && durable {
		err = syncDir(filepath.Dir(r.path))
	}
	if err != nil {
		return fmt.Errorf("audit: journal cursor %s: %w", r.name, err)
	}
	r.saved = r.acked
	return nil
}

// Close saves the cursor and lets the journal forget this reader.
func (r *JournalReader) Close() error {
	r.closeFile()
	err := r.Save()
	r.j.mu.Lock()
	delete(r.j.cursors, r)
	r.j.mu.Unlock()
	return err
}
