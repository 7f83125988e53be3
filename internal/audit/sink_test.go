package audit

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"

	"tollgate.dev/tollgate/internal/testkit"
)

func TestFileSinkCreatesPrivateFileAndAppends(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.log")
	for i, id := range []string{"first", "second"} { // the second open appends
		s, err := OpenFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Write(context.Background(), line(&Event{RequestID: id})); err != nil {
			t.Fatalf("write %d: %v", i, err)
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if perm := fi.Mode().Perm(); perm != 0o600 {
		t.Errorf("file mode = %o, want 600", perm)
	}
	evs := decodeLines(t, readFile(t, path))
	if len(evs) != 2 || evs[0].RequestID != "first" || evs[1].RequestID != "second" {
		t.Errorf("file holds %+v, want first then second", evs)
	}
}

// TestFileSinkReopenAfterRotation plays logrotate: rename, then Reopen. Lines
// written before the rename stay in the old file; later ones go to a new file.
func TestFileSinkReopenAfterRotation(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "audit.log")
	s, err := OpenFile(path)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := s.Write(ctx, line(&Event{RequestID: "old"})); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(path, path+".1"); err != nil {
		t.Fatal(err)
	}
	// Until Reopen, writes follow the open handle into the renamed file.
	if err := s.Write(ctx, line(&Event{RequestID: "old-late"})); err != nil {
		t.Fatal(err)
	}
	if err := s.Reopen(); err != nil {
		t.Fatal(err)
	}
	if err := s.Write(ctx, line(&Event{RequestID: "new"})); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	ids := func(p string) []string {
		var out []string
		for _, ev := range decodeLines(t, readFile(t, p)) {
			out = append(out, ev.RequestID)
		}
		return out
	}
	if got := ids(path + ".1"); len(got) != 2 || got[0] != "old" || got[1] != "old-late" {
		t.Errorf("rotated file = %v, want [old old-late]", got)
	}
	if got := ids(path); len(got) != 1 || got[0] != "new" {
		t.Errorf("new file = %v, want [new]", got)
	}
}

func TestFileSinkReopenFailureKeepsWriting(t *testing.T) {
	dir := t.TempDir()
	sub := filepath.Join(dir, "logs")
	if err := os.Mkdir(sub, 0o700); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(sub, "audit.log")
	s, err := OpenFile(path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	// The directory disappears: the new file cannot be created.
	if err := os.Rename(sub, filepath.Join(dir, "moved")); err != nil {
		t.Fatal(err)
	}
	if err := s.Reopen(); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("Reopen error = %v, want ErrNotExist", err)
	}
	if err := s.Write(context.Background(), line(&Event{RequestID: "kept"})); err != nil {
		t.Fatalf("write after failed reopen: %v", err)
	}
	if evs := decodeLines(t, readFile(t, filepath.Join(dir, "moved", "audit.log"))); len(evs) != 1 {
		t.Errorf("old handle got %d events, want 1", len(evs))
	}
}

func TestSinksAfterClose(t *testing.T) {
	fs, err := OpenFile(filepath.Join(t.TempDir(), "a.log"))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		sink Sink
	}{
		{"file", fs},
		{"writer", NewWriterSink(&testkit.Buffer{})},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for range 2 { // Close is idempotent
				if err := tt.sink.Close(); err != nil {
					t.Fatalf("Close: %v", err)
				}
			}
			if err := tt.sink.Write(context.Background(), line(&Event{})); !errors.Is(err, ErrClosed) {
				t.Errorf("Write after Close = %v, want ErrClosed", err)
			}
			if err := tt.sink.(BatchSink).WriteBatch(context.Background(), [][]byte{line(&Event{}), line(&Event{})}); !errors.Is(err, ErrClosed) {
				t.Errorf("WriteBatch after Close = %v, want ErrClosed", err)
			}
		})
	}
	if err := fs.Reopen(); !errors.Is(err, ErrClosed) {
		t.Errorf("Reopen after Close = %v, want ErrClosed", err)
	}
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// line is ev as the Logger hands it to every sink: one JSON line.
func line(ev *Event) []byte { return append(ev.AppendJSON(nil), '\n') }

// countingWriter counts the calls that reach it.
type countingWriter struct {
	testkit.Buffer
	mu    sync.Mutex
	calls int
}

func (w *countingWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	w.calls++
	w.mu.Unlock()
	return w.Buffer.Write(p)
}

// TestLocalSinksFromJournalWriteBatches: fed from a journal, stdout and a
// file get every record, in order, in fewer writes than records.
func TestLocalSinksFromJournalWriteBatches(t *testing.T) {
	const n = 500
	w := &countingWriter{}
	path := filepath.Join(t.TempDir(), "audit.log")
	fs, err := OpenFile(path)
	if err != nil {
		t.Fatal(err)
	}
	l := newJournalLogger(t, openTestJournal(t, t.TempDir(), JournalOptions{}),
		Config{Sinks: []Sink{NewWriterSink(w), fs}, SinkNames: []string{"stdout", "file"}})
	for i := 1; i <= n; i++ {
		l.Record(&Event{RequestID: fmt.Sprint(i), Kind: Ingress})
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	for name, text := range map[string]string{"stdout": w.String(), "file": readFile(t, path)} {
		if diff := cmp.Diff(idRange(1, n), requestIDs(decodeLines(t, text))); diff != "" {
			t.Errorf("%s got (-want +got):\n%s", name, diff)
		}
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.calls >= n {
		t.Errorf("stdout sink: %d writes for %d records, want them batched", w.calls, n)
	}
}
