package audit

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"
)

// dirtyPages asks the kernel (cachestat) how many of path's pages in the
// page cache are dirty: written, and not yet on their way to disk.
func dirtyPages(t *testing.T, path string) uint64 {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var st unix.Cachestat_t
	if err := unix.Cachestat(uint(f.Fd()), &unix.CachestatRange{}, &st, 0); err != nil {
		if errors.Is(err, unix.ENOSYS) {
			t.Skip("cachestat needs Linux 6.5: the page cache can't be asked")
		}
		t.Fatal(err)
	}
	return st.Dirty
}

// TestFileSinkWritesBehind: a file sink's writes don't pile up in the page
// cache waiting for the kernel's 30-second writeback; they are sent on
// every writeBehindBytes. The control, a file written the same way without
// the sink, keeps its pages dirty.
func TestFileSinkWritesBehind(t *testing.T) {
	dir := t.TempDir()
	var fs unix.Statfs_t
	if err := unix.Statfs(dir, &fs); err != nil {
		t.Fatal(err)
	}
	if fs.Type == unix.TMPFS_MAGIC {
		t.Skip("the temporary directory is on tmpfs, which has no writeback")
	}
	line := append(bytes.Repeat([]byte("x"), 32<<10-1), '\n')
	const lines = 4*writeBehindBytes/(32<<10) + 8 // 4 MiB and a quarter
	pageSize := uint64(os.Getpagesize())

	control := filepath.Join(dir, "control.log")
	f, err := os.Create(control)
	if err != nil {
		t.Fatal(err)
	}
	for range lines {
		if _, err := f.Write(line); err != nil {
			t.Fatal(err)
		}
	}
	f.Close()
	if d := dirtyPages(t, control); d*pageSize < 4*writeBehindBytes {
		t.Fatalf("control: %d dirty pages, want the whole file's: the kernel wrote it back by itself, the test can't tell", d)
	}

	for _, tc := range []struct {
		name string
		open func(path string) (BatchSink, error)
	}{
		{"file sink", func(path string) (BatchSink, error) { return OpenFile(path) }},
		{"stdout redirected to a file", func(path string) (BatchSink, error) {
			f, err := os.Create(path)
			if err != nil {
				return nil, err
			}
			t.Cleanup(func() { f.Close() })
			return NewWriterSink(f), nil
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "audit.log")
			s, err := tc.open(path)
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			for i := range lines {
				var err error
				if i%2 == 0 {
					err = s.Write(context.Background(), line)
				} else {
					err = s.WriteBatch(context.Background(), [][]byte{line})
				}
				if err != nil {
					t.Fatal(err)
				}
			}
			// What is left dirty: at most the bytes since the last writeback.
			if d := dirtyPages(t, path); d*pageSize > writeBehindBytes {
				t.Errorf("%d dirty pages (%d KiB) after writing %d KiB, want at most %d KiB", d, d*pageSize>>10, lines*len(line)>>10, writeBehindBytes>>10)
			}
		})
	}
}

// TestWriteBehindOnDevNullAndPipes: a file sink whose file can't be
// written back (a character device) gives up asking, and writes on; stdout
// that is a pipe is never asked about.
func TestWriteBehindOnDevNullAndPipes(t *testing.T) {
	s, err := OpenFile(os.DevNull)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	line := append(bytes.Repeat([]byte("x"), 64<<10-1), '\n')
	for range 2 * writeBehindBytes / len(line) {
		if err := s.Write(context.Background(), line); err != nil {
			t.Fatal(err)
		}
	}
	s.mu.Lock()
	if s.behind.f != nil {
		t.Errorf("after %d KiB to %s the sink still asks for writeback", 2*writeBehindBytes>>10, os.DevNull)
	}
	s.mu.Unlock()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	defer w.Close()
	if ws := NewWriterSink(w); ws.behind.f != nil {
		t.Error("stdout that is a pipe is written behind")
	}
}
