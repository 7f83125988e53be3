package filewatch_test

import (
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/google/go-cmp/cmp"

	"tollgate.dev/tollgate/internal/filewatch"
)

const (
	interval = time.Second
	settle   = 200 * time.Millisecond
)

// step runs do at offset at from the watcher's start. Offsets are chosen
// away from the watcher's read instants (multiples of interval, then of
// settle), so which side of a read a write lands on is certain.
type step struct {
	at time.Duration
	do func(t *testing.T, dir string)
}

func write(rel, content string) func(*testing.T, string) {
	return func(t *testing.T, dir string) {
		t.Helper()
		if err := os.WriteFile(filepath.Join(dir, rel), []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
}

// swap replaces rel atomically: write a temporary file, rename it over.
func swap(rel, content string) func(*testing.T, string) {
	return func(t *testing.T, dir string) {
		t.Helper()
		tmp := filepath.Join(dir, ".tmp-"+filepath.Base(rel))
		if err := os.WriteFile(tmp, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, filepath.Join(dir, rel)); err != nil {
			t.Fatal(err)
		}
	}
}

func remove(rel string) func(*testing.T, string) {
	return func(t *testing.T, dir string) {
		t.Helper()
		if err := os.Remove(filepath.Join(dir, rel)); err != nil {
			t.Fatal(err)
		}
	}
}

func touch(rel string, mtime time.Time) func(*testing.T, string) {
	return func(t *testing.T, dir string) {
		t.Helper()
		if err := os.Chtimes(filepath.Join(dir, rel), mtime, mtime); err != nil {
			t.Fatal(err)
		}
	}
}

// relink points the symlink rel at target atomically (kubelet's ..data swap).
func relink(rel, target string) func(*testing.T, string) {
	return func(t *testing.T, dir string) {
		t.Helper()
		tmp := filepath.Join(dir, ".tmp-link")
		if err := os.Symlink(target, tmp); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, filepath.Join(dir, rel)); err != nil {
			t.Fatal(err)
		}
	}
}

// recorder keeps what OnChange delivered, as "rel=content;..." for a
// snapshot and "!error" (the tree's path written as $D) for an error.
type recorder struct {
	dir string
	mu  sync.Mutex
	got []string
}

func (r *recorder) onChange(snap *filewatch.Snapshot, err error) {
	var s string
	switch {
	case err != nil && snap != nil:
		s = "BOTH snapshot and error"
	case err != nil:
		s = "!" + strings.ReplaceAll(err.Error(), r.dir, "$D")
	case snap == nil:
		s = "NEITHER snapshot nor error"
	default:
		var parts []string
		for _, f := range snap.Files {
			rel, _ := filepath.Rel(r.dir, f.Path)
			parts = append(parts, rel+"="+string(f.Data))
		}
		s = strings.Join(parts, ";")
	}
	r.mu.Lock()
	r.got = append(r.got, s)
	r.mu.Unlock()
}

func (r *recorder) events() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.got...)
}

func TestWatcher(t *testing.T) {
	tests := []struct {
		name  string
		files map[string]string // initial tree, as for tree()
		watch []string          // relative to the tree
		dirs  bool
		steps []step
		want  []string // deliveries, in order
	}{
		{
			name:  "unchanged: nothing reported",
			files: map[string]string{"a": "one"},
			watch: []string{"a"},
		},
		{
			name:  "touch that changes only the mtime is not a change",
			files: map[string]string{"a": "one"},
			watch: []string{"a"},
			steps: []step{{at: 500 * time.Millisecond, do: touch("a", time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC))}},
		},
		{
			name:  "rewrite with the same bytes is not a change",
			files: map[string]string{"a": "one"},
			watch: []string{"a"},
			steps: []step{{at: 500 * time.Millisecond, do: write("a", "one")}},
		},
		{
			name:  "content change is reported once, after it settled",
			files: map[string]string{"a": "one"},
			watch: []string{"a"},
			steps: []step{{at: 500 * time.Millisecond, do: write("a", "two")}},
			want:  []string{"a=two"},
		},
		{
			name:  "same size and mtime restored: still a change (content decides)",
			files: map[string]string{"a": "one"},
			watch: []string{"a"},
			steps: []step{
				{at: 500 * time.Millisecond, do: write("a", "owe")},
				{at: 510 * time.Millisecond, do: touch("a", time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC))},
			},
			want: []string{"a=owe"},
		},
		{
			name:  "truncated then rewritten within the settle interval: never delivered half-written",
			files: map[string]string{"a": "old policy"},
			watch: []string{"a"},
			steps: []step{
				// The poll at 1s reads the empty file, the settle read at 1.2s the
				// half; both differ from their successor, so neither is reported.
				{at: 990 * time.Millisecond, do: write("a", "")},
				{at: 1100 * time.Millisecond, do: write("a", "new po")},
				{at: 1300 * time.Millisecond, do: write("a", "new policy")},
			},
			want: []string{"a=new policy"},
		},
		{
			name:  "rename swap is delivered once",
			files: map[string]string{"a": "one", "b": "bee"},
			watch: []string{"a", "b"},
			steps: []step{{at: 500 * time.Millisecond, do: swap("a", "two")}},
			want:  []string{"a=two;b=bee"},
		},
		{
			name:  "two files changed together are delivered together",
			files: map[string]string{"cert": "c1", "key": "k1"},
			watch: []string{"cert", "key"},
			steps: []step{
				{at: 990 * time.Millisecond, do: swap("cert", "c2")},
				{at: 1050 * time.Millisecond, do: swap("key", "k2")},
			},
			want: []string{"cert=c2;key=k2"},
		},
		{
			name:  "deleting a file is an error, reported once, not an empty snapshot",
			files: map[string]string{"a": "one"},
			watch: []string{"a"},
			steps: []step{{at: 500 * time.Millisecond, do: remove("a")}},
			want:  []string{"!stat $D/a: no such file or directory"},
		},
		{
			name:  "a file back after an error is delivered, even with the old content",
			files: map[string]string{"a": "one"},
			watch: []string{"a"},
			steps: []step{
				{at: 500 * time.Millisecond, do: remove("a")},
				{at: 2500 * time.Millisecond, do: write("a", "one")},
			},
			want: []string{"!stat $D/a: no such file or directory", "a=one"},
		},
		{
			name:  "missing for less than the settle interval: nothing reported",
			files: map[string]string{"a": "one"},
			watch: []string{"a"},
			steps: []step{
				{at: 990 * time.Millisecond, do: remove("a")},
				{at: 1100 * time.Millisecond, do: write("a", "one")},
			},
		},
		{
			name:  "changed and changed back before settling: nothing reported",
			files: map[string]string{"a": "one"},
			watch: []string{"a"},
			steps: []step{
				{at: 990 * time.Millisecond, do: write("a", "two")},
				{at: 1100 * time.Millisecond, do: write("a", "one")},
			},
		},
		{
			name:  "a file that keeps changing is reported once it stops",
			files: map[string]string{"a": "0"},
			watch: []string{"a"},
			steps: []step{
				{at: 990 * time.Millisecond, do: write("a", "1")},
				{at: 1100 * time.Millisecond, do: write("a", "2")},
				{at: 1300 * time.Millisecond, do: write("a", "3")},
				{at: 1500 * time.Millisecond, do: write("a", "4")},
			},
			want: []string{"a=4"},
		},
		{
			name:  "directory: a new file is a change, a new hidden file is not",
			files: map[string]string{"p/a.yaml": "a"},
			watch: []string{"p"},
			dirs:  true,
			steps: []step{
				{at: 500 * time.Millisecond, do: write("p/.swp", "editor junk")},
				{at: 2500 * time.Millisecond, do: write("p/b.yaml", "b")},
			},
			want: []string{"p/a.yaml=a;p/b.yaml=b"},
		},
		{
			name: "kubernetes ..data symlink swap is delivered once",
			files: map[string]string{
				"cm/..v1/a.yaml": "a1", "cm/..v1/b.yaml": "b1",
				"cm/..v2/a.yaml": "a2", "cm/..v2/b.yaml": "b2",
				"cm/..data": "->..v1", "cm/a.yaml": "->..data/a.yaml", "cm/b.yaml": "->..data/b.yaml",
			},
			watch: []string{"cm"},
			dirs:  true,
			steps: []step{{at: 500 * time.Millisecond, do: relink("cm/..data", "..v2")}},
			want:  []string{"cm/a.yaml=a2;cm/b.yaml=b2"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				dir := tree(t, tt.files)
				var paths []string
				for _, p := range tt.watch {
					paths = append(paths, filepath.Join(dir, p))
				}
				ro := filewatch.ReadOptions{Dirs: tt.dirs}
				initial, err := filewatch.Read(paths, ro)
				if err != nil {
					t.Fatal(err)
				}
				rec := &recorder{dir: dir}
				start := time.Now()
				w, err := filewatch.New(paths, filewatch.Options{
					ReadOptions: ro, Interval: interval, Settle: settle, Initial: initial, OnChange: rec.onChange,
				})
				if err != nil {
					t.Fatal(err)
				}
				defer w.Close()
				for _, s := range tt.steps {
					time.Sleep(time.Until(start.Add(s.at)))
					s.do(t, dir)
				}
				time.Sleep(5 * interval)
				synctest.Wait()
				if diff := cmp.Diff(tt.want, rec.events()); diff != "" {
					t.Errorf("deliveries (-want +got):\n%s", diff)
				}
			})
		})
	}
}

// TestWatcherSettleTiming: a change is reported no sooner than one settle
// interval after the poll that saw it, and no later than the next.
func TestWatcherSettleTiming(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		dir := tree(t, map[string]string{"a": "one"})
		paths := []string{filepath.Join(dir, "a")}
		initial, err := filewatch.Read(paths, filewatch.ReadOptions{})
		if err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		got := make(chan time.Duration, 4)
		w, err := filewatch.New(paths, filewatch.Options{
			Interval: interval, Settle: settle, Initial: initial,
			OnChange: func(*filewatch.Snapshot, error) { got <- time.Since(start) },
		})
		if err != nil {
			t.Fatal(err)
		}
		defer w.Close()
		time.Sleep(1500 * time.Millisecond)
		write("a", "two")(t, dir)
		// Seen by the poll at 2s, confirmed by the read at 2s+settle.
		if d := <-got; d != 2*interval+settle {
			t.Errorf("reported after %v; want %v", d, 2*interval+settle)
		}
	})
}

func TestWatcherWithoutInitialReportsFirstRead(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		dir := tree(t, map[string]string{"a": "one"})
		rec := &recorder{dir: dir}
		w, err := filewatch.New([]string{filepath.Join(dir, "a"), filepath.Join(dir, "missing")}, filewatch.Options{
			Interval: interval, Settle: settle, OnChange: rec.onChange,
		})
		if err != nil {
			t.Fatal(err)
		}
		time.Sleep(3 * interval)
		synctest.Wait()
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff([]string{"!stat $D/missing: no such file or directory"}, rec.events()); diff != "" {
			t.Errorf("deliveries (-want +got):\n%s", diff)
		}
	})
}

// TestWatcherClose: Close is idempotent, stops the goroutine (synctest.Test
// fails if any goroutine of the bubble is left) and no report follows it.
func TestWatcherClose(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		dir := tree(t, map[string]string{"a": "one"})
		paths := []string{filepath.Join(dir, "a")}
		rec := &recorder{dir: dir}
		w, err := filewatch.New(paths, filewatch.Options{Interval: interval, Settle: settle, OnChange: rec.onChange})
		if err != nil {
			t.Fatal(err)
		}
		time.Sleep(2 * interval)
		for range 2 {
			if err := w.Close(); err != nil {
				t.Fatalf("Close = %v", err)
			}
		}
		n := len(rec.events())
		write("a", "two")(t, dir)
		time.Sleep(5 * interval)
		if got := len(rec.events()); got != n {
			t.Errorf("%d reports after Close", got-n)
		}
	})
}

// TestWatcherCloseWhileSettling: Close returns promptly in the middle of a
// settle wait.
func TestWatcherCloseWhileSettling(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		dir := tree(t, map[string]string{"a": "one"})
		w, err := filewatch.New([]string{filepath.Join(dir, "a")}, filewatch.Options{
			Interval: interval, Settle: time.Hour, OnChange: func(*filewatch.Snapshot, error) {},
		})
		if err != nil {
			t.Fatal(err)
		}
		time.Sleep(interval + time.Minute) // first read done, settling for an hour
		start := time.Now()
		w.Close()
		if d := time.Since(start); d != 0 {
			t.Errorf("Close took %v of fake time", d)
		}
	})
}

func TestNewErrors(t *testing.T) {
	noop := func(*filewatch.Snapshot, error) {}
	tests := []struct {
		name    string
		paths   []string
		opts    filewatch.Options
		wantErr string
	}{
		{name: "no paths", opts: filewatch.Options{OnChange: noop}, wantErr: "filewatch: no paths to watch"},
		{name: "no OnChange", paths: []string{"a"}, wantErr: "filewatch: OnChange is required"},
		{name: "negative interval", paths: []string{"a"}, opts: filewatch.Options{OnChange: noop, Interval: -1}, wantErr: "filewatch: negative interval -1ns"},
		{name: "negative settle", paths: []string{"a"}, opts: filewatch.Options{OnChange: noop, Settle: -1}, wantErr: "filewatch: negative settle interval -1ns"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w, err := filewatch.New(tt.paths, tt.opts)
			if err == nil {
				w.Close()
				t.Fatal("New succeeded; want error")
			}
			if err.Error() != tt.wantErr {
				t.Errorf("error %q; want %q", err, tt.wantErr)
			}
		})
	}
}
