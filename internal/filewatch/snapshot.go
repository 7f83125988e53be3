package filewatch

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// DefaultMaxFileSize bounds each file a read takes when
// [ReadOptions.MaxFileSize] is zero: certificates, keys and policies are
// kilobytes, and a path pointed at a huge file (or /dev/zero through a
// symlink) must not exhaust memory.
const DefaultMaxFileSize = 1 << 20

// DefaultSettle is how long content must hold still before it counts, when a
// settle interval is zero. Writers that do not replace files atomically
// usually finish within milliseconds.
const DefaultSettle = time.Second

var (
	// ErrTooLarge is returned (inside an *fs.PathError) for a file larger
	// than the size bound.
	ErrTooLarge = errors.New("file too large")
	// ErrNotRegular is returned (inside an *fs.PathError) for a path that is
	// not a regular file: a directory where directories are not allowed, a
	// device or a FIFO (opening a FIFO would block the reader forever).
	ErrNotRegular = errors.New("not a regular file")
)

// ReadOptions say what a read takes. The zero value reads named regular
// files only, up to [DefaultMaxFileSize] each.
type ReadOptions struct {
	// Dirs lets a path name a directory, which contributes its files
	// recursively in lexical order. Hidden entries (names starting with ".")
	// below the named directory are skipped, and so are symbolic links to
	// directories (they are not followed, as with filepath.WalkDir). Without
	// Dirs a directory is an error wrapping [ErrNotRegular].
	Dirs bool
	// Match, if set, picks which files found in directories are read, by
	// base name (for example *.yaml and *.yml). Files named in the path list
	// are always read.
	Match func(name string) bool
	// MaxFileSize bounds each file; zero means DefaultMaxFileSize.
	MaxFileSize int64
}

// File is one file of a Snapshot.
type File struct {
	// Path is the file's path as it was named or found: a named file keeps
	// the spelling it was given, a file found in a directory is the
	// directory's path joined with the file's relative path.
	Path string
	// Data is the content read. It is shared by every holder of the
	// snapshot and must not be modified.
	Data []byte
}

// Snapshot is the content of a set of paths, read once. It is never modified
// after it is returned.
type Snapshot struct {
	// Files are every file read, in a stable order: the paths in the order
	// given, a directory's files in lexical order in its place. A file named
	// twice (or named and also found in a directory) appears once, where it
	// was first met.
	Files []File
	// Hash is the SHA-256 of every file's path and content, in order, each
	// length-prefixed so no two different snapshots share an encoding.
	Hash [sha256.Size]byte
}

// Data returns the content of the file at path (compared after
// filepath.Clean) and whether the snapshot holds it.
func (s *Snapshot) Data(path string) ([]byte, bool) {
	path = filepath.Clean(path)
	for _, f := range s.Files {
		if filepath.Clean(f.Path) == path {
			return f.Data, true
		}
	}
	return nil, false
}

// Version is a short hex form of Hash, for logs and metrics.
func (s *Snapshot) Version() string {
	return hex.EncodeToString(s.Hash[:6])
}

// Read reads paths once. It fails on the first path that is missing,
// unreadable, not a regular file (or an allowed directory), or over the size
// bound; the error is an *fs.PathError naming that path. An empty path list
// is an error too: a snapshot of nothing is never what a caller meant.
func Read(paths []string, opts ReadOptions) (*Snapshot, error) {
	if len(paths) == 0 {
		return nil, errors.New("filewatch: no paths to read")
	}
	limit := opts.MaxFileSize
	if limit <= 0 {
		limit = DefaultMaxFileSize
	}
	files, err := list(paths, opts)
	if err != nil {
		return nil, err
	}
	snap := &Snapshot{Files: make([]File, 0, len(files))}
	h := sha256.New()
	var n [8]byte
	for _, p := range files {
		data, err := readFile(p, limit)
		if err != nil {
			return nil, err
		}
		snap.Files = append(snap.Files, File{Path: p, Data: data})
		h.Write(binary.BigEndian.AppendUint64(n[:0], uint64(len(p))))
		h.Write([]byte(p))
		h.Write(binary.BigEndian.AppendUint64(n[:0], uint64(len(data))))
		h.Write(data)
	}
	h.Sum(snap.Hash[:0])
	return snap, nil
}

// list expands paths into the files to read, in order, without duplicates.
func list(paths []string, opts ReadOptions) ([]string, error) {
	var files []string
	seen := make(map[string]bool)
	add := func(p string) {
		if c := filepath.Clean(p); !seen[c] {
			seen[c] = true
			files = append(files, p)
		}
	}
	for _, root := range paths {
		fi, err := os.Stat(root)
		if err != nil {
			return nil, err
		}
		if !fi.IsDir() || !opts.Dirs {
			// readFile refuses what is not a regular file.
			add(root)
			continue
		}
		err = filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if path == root {
				return nil
			}
			name := d.Name()
			if strings.HasPrefix(name, ".") {
				if d.IsDir() {
					return filepath.SkipDir
				}
				return nil
			}
			if d.IsDir() {
				return nil
			}
			if d.Type()&fs.ModeSymlink != 0 {
				// A link to a directory is not followed (nor read as a file).
				// A broken link falls through and fails the read, naming it.
				if fi, err := os.Stat(path); err == nil && fi.IsDir() {
					return nil
				}
			}
			if opts.Match != nil && !opts.Match(name) {
				return nil
			}
			add(path)
			return nil
		})
		if err != nil {
			return nil, err
		}
	}
	return files, nil
}

// readFile reads one regular file of at most limit bytes.
func readFile(path string, limit int64) ([]byte, error) {
	// Stat before open: opening a FIFO for reading blocks until a writer
	// comes, which would hang the watcher (and Close) forever.
	fi, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, &fs.PathError{Op: "read", Path: path, Err: fmt.Errorf("%w (%s)", ErrNotRegular, fileType(fi.Mode()))}
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, &fs.PathError{Op: "read", Path: path, Err: err}
	}
	if int64(len(b)) > limit {
		return nil, &fs.PathError{Op: "read", Path: path, Err: fmt.Errorf("%w (larger than %d bytes)", ErrTooLarge, limit)}
	}
	return b, nil
}

// fileType names what a non-regular file is, for the error.
func fileType(m fs.FileMode) string {
	switch {
	case m.IsDir():
		return "a directory"
	case m&fs.ModeNamedPipe != 0:
		return "a named pipe"
	case m&fs.ModeSocket != 0:
		return "a socket"
	case m&fs.ModeDevice != 0:
		return "a device"
	}
	return "mode " + m.Type().String()
}

// ReadSettled reads paths until two reads settle apart agree, and returns
// that content, or that error if the same error persisted. It is for a
// one-shot reload (SIGHUP): what it returns was not caught mid-write by a
// writer that finished within settle. It waits at least settle; zero or less
// means DefaultSettle. If ctx ends first (the files kept changing), the
// error wraps ctx's cause.
func ReadSettled(ctx context.Context, paths []string, settle time.Duration, opts ReadOptions) (*Snapshot, error) {
	if settle <= 0 {
		settle = DefaultSettle
	}
	prev := read(paths, opts)
	t := time.NewTimer(settle)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("filewatch: files did not hold still for %s: %w", settle, context.Cause(ctx))
		case <-t.C:
		}
		cur := read(paths, opts)
		if cur.key() == prev.key() {
			return cur.snap, cur.err
		}
		prev = cur
		t.Reset(settle)
	}
}

// reading is the outcome of one Read: content or an error.
type reading struct {
	snap *Snapshot
	err  error
}

func read(paths []string, opts ReadOptions) reading {
	s, err := Read(paths, opts)
	return reading{s, err}
}

// key identifies the outcome, for the settle comparison: the same content,
// or the same error. An error that keeps changing (a file growing past the
// bound) has not settled either.
func (r reading) key() string {
	if r.err != nil {
		return "error:" + r.err.Error()
	}
	return "hash:" + string(r.snap.Hash[:])
}
