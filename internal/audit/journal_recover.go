package audit

// Opening a journal: finding its segments, cutting a torn last line, and
// reading where the sequence and the hash chain go on.

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
)

// recover lists the segments, repairs the active one and finds where the
// sequence and the chain go on.
func (j *Journal) recover() error {
	ents, err := os.ReadDir(j.dir)
	if err != nil {
		return fmt.Errorf("audit: journal: %w", err)
	}
	for _, e := range ents {
		name := e.Name()
		first, ok := segmentSeq(name)
		if !ok || !e.Type().IsRegular() {
			continue
		}
		info, err := e.Info()
		if err != nil {
			return fmt.Errorf("audit: journal: %w", err)
		}
		j.segs = append(j.segs, segment{first: first, path: filepath.Join(j.dir, name), size: info.Size()})
	}
	slices.SortFunc(j.segs, func(a, b segment) int { return cmpUint(a.first, b.first) })

	active := filepath.Join(j.dir, activeSegment)
	f, err := os.OpenFile(active, os.O_RDWR|os.O_CREATE|os.O_APPEND, fileMode)
	if err != nil {
		return fmt.Errorf("audit: journal: %w", err)
	}
	size, err := f.Seek(0, io.SeekEnd)
	if err != nil {
		f.Close()
		return fmt.Errorf("audit: journal: %w", err)
	}
	// A crash can leave a line without its newline: it was never committed
	// (a commit ends with fsync after whole lines), so it goes.
	whole, lastLine, err := lastWholeLine(f, size)
	if err != nil {
		f.Close()
		return fmt.Errorf("audit: journal %s: %w", active, err)
	}
	if whole < size {
		if err := f.Truncate(whole); err != nil {
			f.Close()
			return fmt.Errorf("audit: journal: cut torn line: %w", err)
		}
		j.torn = size - whole
		j.opts.Log.Warn("audit journal: cut a torn last line left by a crash", "file", active, "bytes", size-whole)
		size = whole
	}
	act := segment{path: active, size: size}
	if size > 0 {
		firstLine, err := firstLine(f)
		if err != nil {
			f.Close()
			return fmt.Errorf("audit: journal %s: %w", active, err)
		}
		if act.first, err = lineSeq(firstLine); err != nil {
			f.Close()
			return fmt.Errorf("audit: journal %s line 1: %w", active, err)
		}
	}
	// Where the chain goes on: the last line of the active segment, or of
	// the newest rotated one.
	if lastLine == nil && len(j.segs) > 0 {
		prev := j.segs[len(j.segs)-1]
		pf, err := os.Open(prev.path)
		if err != nil {
			f.Close()
			return fmt.Errorf("audit: journal: %w", err)
		}
		_, lastLine, err = lastWholeLine(pf, prev.size)
		pf.Close()
		if err != nil {
			f.Close()
			return fmt.Errorf("audit: journal %s: %w", prev.path, err)
		}
	}
	if lastLine != nil {
		seq, err := lineSeq(lastLine)
		if err != nil {
			f.Close()
			return fmt.Errorf("audit: journal: last record: %w", err)
		}
		if seq == math.MaxUint64 {
			f.Close()
			return errors.New("audit: journal: the last record has the largest sequence number there is: start a new journal directory")
		}
		j.seq, j.last, j.hasLast = seq, sha256.Sum256(lastLine), true
	}
	// Each segment's last sequence number: the next one's first, minus one.
	for i := range j.segs {
		if i+1 < len(j.segs) {
			j.segs[i].last = j.segs[i+1].first - 1
		} else if size > 0 {
			j.segs[i].last = act.first - 1
		} else {
			j.segs[i].last = j.seq
		}
	}
	if size == 0 {
		act.first = j.seq + 1
	}
	act.last = j.seq
	j.segs = append(j.segs, act)
	j.f, j.created = f, time.Now()
	j.commit, j.cSeq, j.cLast, j.cHasLast = j.seq, j.seq, j.last, j.hasLast
	return nil
}

func cmpUint(a, b uint64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// segmentSeq parses a rotated segment's name.
func segmentSeq(name string) (uint64, bool) {
	s, ok := strings.CutPrefix(name, segmentPrefix)
	if !ok {
		return 0, false
	}
	s, ok = strings.CutSuffix(s, segmentSuffix)
	if !ok {
		return 0, false
	}
	n, err := strconv.ParseUint(s, 10, 64)
	return n, err == nil
}

func segmentName(first uint64) string {
	return fmt.Sprintf("%s%020d%s", segmentPrefix, first, segmentSuffix)
}

// lastWholeLine returns the end of the last newline-terminated line in the
// first size bytes of f, and that line without its newline (nil if none).
func lastWholeLine(f *os.File, size int64) (int64, []byte, error) {
	const chunk = 64 << 10
	var tail []byte // bytes [off, size) of the file
	end := int64(-1)
	off := size
	for off > 0 {
		n := min(int64(chunk), off)
		off -= n
		b := make([]byte, n, n+int64(len(tail)))
		if _, err := f.ReadAt(b, off); err != nil {
			return 0, nil, err
		}
		tail = append(b, tail...)
		if end < 0 {
			i := bytes.LastIndexByte(tail, '\n')
			if i < 0 {
				continue
			}
			end = off + int64(i) + 1
		}
		nl := end - 1 - off // the last line's newline, in tail
		if i := bytes.LastIndexByte(tail[:nl], '\n'); i >= 0 {
			return end, tail[i+1 : nl], nil
		}
	}
	if end < 0 {
		return 0, nil, nil // no newline at all: nothing is whole
	}
	return end, tail[:end-1], nil
}

func firstLine(f *os.File) ([]byte, error) {
	var b []byte
	buf := make([]byte, 4096)
	for off := int64(0); ; {
		n, err := f.ReadAt(buf, off)
		if i := bytes.IndexByte(buf[:n], '\n'); i >= 0 {
			return append(b, buf[:i]...), nil
		}
		b = append(b, buf[:n]...)
		off += int64(n)
		if err != nil {
			return nil, fmt.Errorf("first line: %w", err)
		}
	}
}

// seqField is how AppendJSON writes the sequence number: after time,
// durationMs and id, none of which a client controls, so the first match in
// a line is the record's own.
const seqField = `,"seq":`

// lineSeq reads a record's sequence number without decoding the line.
func lineSeq(line []byte) (uint64, error) {
	i := bytes.Index(line, []byte(seqField))
	if i < 0 {
		return 0, errors.New("record without a sequence number")
	}
	s := line[i+len(seqField):]
	n := 0
	for n < len(s) && s[n] >= '0' && s[n] <= '9' {
		n++
	}
	v, err := strconv.ParseUint(string(s[:n]), 10, 64)
	if err != nil || v == 0 {
		return 0, fmt.Errorf("bad sequence number %q", s[:n])
	}
	return v, nil
}
