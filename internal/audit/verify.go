package audit

import (
	"bufio"
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
)

// VerifyReport is what Verify found in a journal.
type VerifyReport struct {
	Files   int
	Records uint64
	// FirstSeq and LastSeq bound the records read.
	FirstSeq, LastSeq uint64
	// Lost sums the gap records' counts: events the trail says it lost.
	Lost uint64
	// Checkpoints counts the checkpoints that matched the chain (and, with
	// a key, whose signatures verified); SignedThrough is the last sequence
	// number one of them covers.
	Checkpoints   int
	SignedThrough uint64
	// Problems name every break by file and line; none means the chain holds.
	Problems []VerifyProblem
	// Notes are facts a reader should know that are not breaks (where the
	// chain starts, a torn last line a crash left).
	Notes []string
}

// VerifyProblem is one break in the trail.
type VerifyProblem struct {
	File string
	Line int
	What string
}

func (p VerifyProblem) String() string { return fmt.Sprintf("%s:%d: %s", p.File, p.Line, p.What) }

// maxVerifyLine bounds one record; the Logger keeps lines far shorter.
const maxVerifyLine = 4 << 20

// Verify reads journal segments (files, or directories holding a journal)
// in sequence order and checks that every line is a record, that sequence
// numbers follow each other, and that each record's prev is the SHA-256 of
// the line before it. An edited line breaks the link to the line after it;
// a removed line breaks the sequence. Errors are for files that can't be
// read; what is wrong inside them is in the report.
//
// With key, every checkpoint record's signature is checked too: an edit
// before a checkpoint that recomputed the chain after it still fails there.
// Records after the last checkpoint are vouched for by the chain alone.
func Verify(paths []string, key ed25519.PublicKey) (*VerifyReport, error) {
	files, err := journalFiles(paths)
	if err != nil {
		return nil, err
	}
	rep := &VerifyReport{Files: len(files)}
	var (
		prevHash [32]byte
		prevFile string
		prevLine int
		prevSeq  uint64
		started  bool
	)
	for _, name := range files {
		f, err := os.Open(name)
		if err != nil {
			return nil, fmt.Errorf("audit verify: %w", err)
		}
		br := bufio.NewReaderSize(f, 256<<10)
		for n := 1; ; n++ {
			line, err := readVerifyLine(br)
			if err == io.EOF {
				break
			}
			if err != nil {
				f.Close()
				return nil, fmt.Errorf("audit verify: %s:%d: %w", name, n, err)
			}
			problem := func(format string, args ...any) {
				rep.Problems = append(rep.Problems, VerifyProblem{File: name, Line: n, What: fmt.Sprintf(format, args...)})
			}
			if line[len(line)-1] != '\n' {
				rep.Notes = append(rep.Notes, fmt.Sprintf("%s:%d: incomplete last line (%d bytes) left by a crash; the gateway cuts it at its next start", name, n, len(line)))
				break
			}
			line = line[:len(line)-1]
			var rec struct {
				Seq        uint64      `json:"seq"`
				Prev       string      `json:"prev"`
				Gap        *Gap        `json:"gap"`
				Checkpoint *Checkpoint `json:"checkpoint"`
			}
			if err := json.Unmarshal(line, &rec); err != nil || rec.Seq == 0 {
				problem("not an audit record (%s)", describeJSONError(err))
				started = false // the chain can't be followed across it
				continue
			}
			rep.Records++
			if rep.FirstSeq == 0 {
				rep.FirstSeq = rec.Seq
			}
			rep.LastSeq = rec.Seq
			if rec.Gap != nil {
				rep.Lost += rec.Gap.Dropped
			}
			switch {
			case !started && rec.Prev != "":
				rep.Notes = append(rep.Notes, fmt.Sprintf("%s:%d: the chain is checked from seq %d on (the record before it is not among the files)", name, n, rec.Seq))
			case !started:
			case rec.Seq != prevSeq+1:
				problem("seq %d follows seq %d (%s:%d): %s", rec.Seq, prevSeq, prevFile, prevLine, seqBreak(prevSeq, rec.Seq))
			case rec.Prev != hex.EncodeToString(prevHash[:]):
				rep.Problems = append(rep.Problems, VerifyProblem{File: prevFile, Line: prevLine,
					What: fmt.Sprintf("seq %d was changed: its hash is not the prev of the next record (%s:%d)", prevSeq, name, n)})
			}
			if c := rec.Checkpoint; c != nil {
				switch err := verifyCheckpoint(c, prevSeq, prevHash, key); {
				case !started:
					problem("checkpoint without the record it signs")
				case err != nil:
					problem("checkpoint %s", err)
				default:
					rep.Checkpoints++
					rep.SignedThrough = c.Seq
				}
			}
			prevHash, prevFile, prevLine, prevSeq, started = sha256.Sum256(line), name, n, rec.Seq, true
		}
		f.Close()
	}
	switch {
	case rep.Checkpoints > 0 && key == nil:
		rep.Notes = append(rep.Notes, fmt.Sprintf("%d checkpoints match the chain; their signatures were not checked (no key given)", rep.Checkpoints))
	case rep.Checkpoints == 0 && key != nil && rep.Records > 0:
		rep.Notes = append(rep.Notes, "no signed checkpoint: the records are vouched for by the hash chain alone")
	case rep.Checkpoints > 0 && rep.LastSeq > rep.SignedThrough+1:
		rep.Notes = append(rep.Notes, fmt.Sprintf("records after seq %d are not covered by a checkpoint yet: the hash chain alone vouches for them", rep.SignedThrough))
	}
	return rep, nil
}

func seqBreak(prev, seq uint64) string {
	if seq > prev+1 {
		return fmt.Sprintf("%d records are missing", seq-prev-1)
	}
	return "records are out of order or repeated"
}

func describeJSONError(err error) string {
	if err == nil {
		return "no seq"
	}
	var se *json.SyntaxError
	if errors.As(err, &se) {
		return fmt.Sprintf("invalid JSON at byte %d", se.Offset)
	}
	return "unexpected JSON"
}

func readVerifyLine(br *bufio.Reader) ([]byte, error) {
	var long []byte
	for {
		b, err := br.ReadSlice('\n')
		switch {
		case err == bufio.ErrBufferFull:
			long = append(long, b...)
			if len(long) > maxVerifyLine {
				return nil, fmt.Errorf("a line longer than %d bytes", maxVerifyLine)
			}
			continue
		case err == io.EOF && len(long)+len(b) > 0:
			err = nil
		}
		if err != nil {
			return nil, err
		}
		if long != nil {
			return append(long, b...), nil
		}
		return b, nil
	}
}

// journalFiles expands directories into their segments and orders every
// file by the sequence number of its first record (a directory's active
// segment after its rotated ones).
func journalFiles(paths []string) ([]string, error) {
	if len(paths) == 0 {
		return nil, errors.New("audit verify: no files or directories given")
	}
	type file struct {
		name  string
		first uint64
	}
	var files []file
	for _, p := range paths {
		st, err := os.Stat(p)
		if err != nil {
			return nil, fmt.Errorf("audit verify: %w", err)
		}
		if !st.IsDir() {
			files = append(files, file{name: p})
			continue
		}
		ents, err := os.ReadDir(p)
		if err != nil {
			return nil, fmt.Errorf("audit verify: %w", err)
		}
		found := false
		for _, e := range ents {
			if _, ok := segmentSeq(e.Name()); ok || e.Name() == activeSegment {
				files = append(files, file{name: filepath.Join(p, e.Name())})
				found = true
			}
		}
		if !found {
			return nil, fmt.Errorf("audit verify: %s holds no journal segments (%s, %s*%s)", p, activeSegment, segmentPrefix, segmentSuffix)
		}
	}
	for i := range files {
		first, err := fileFirstSeq(files[i].name)
		if err != nil {
			return nil, err
		}
		files[i].first = first
	}
	slices.SortStableFunc(files, func(a, b file) int {
		// An empty file (a fresh active segment) sorts last.
		switch {
		case a.first == 0 && b.first != 0:
			return 1
		case b.first == 0 && a.first != 0:
			return -1
		}
		return cmpUint(a.first, b.first)
	})
	names := make([]string, len(files))
	for i, f := range files {
		names[i] = f.name
	}
	return names, nil
}

// fileFirstSeq is the sequence number of a file's first record, 0 for an
// empty file or one whose first line is not a record.
func fileFirstSeq(name string) (uint64, error) {
	f, err := os.Open(name)
	if err != nil {
		return 0, fmt.Errorf("audit verify: %w", err)
	}
	defer f.Close()
	line, err := readVerifyLine(bufio.NewReaderSize(f, 64<<10))
	if err == io.EOF {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("audit verify: %s: %w", name, err)
	}
	seq, err := lineSeq(bytes.TrimSuffix(line, []byte("\n")))
	if err != nil {
		return 0, nil
	}
	return seq, nil
}
