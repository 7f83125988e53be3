package filewatch_test

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/google/go-cmp/cmp"

	"tollgate.dev/tollgate/internal/filewatch"
)

// tree writes files (relative path → content) under a new temporary
// directory and returns it. A content starting with "->" makes a symlink to
// the rest.
func tree(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for rel, content := range files {
		p := filepath.Join(dir, rel)
		if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
			t.Fatal(err)
		}
		if target, ok := strings.CutPrefix(content, "->"); ok {
			if err := os.Symlink(target, p); err != nil {
				t.Fatal(err)
			}
			continue
		}
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// relFiles lists a snapshot as "relative path=content", relative to dir.
func relFiles(t *testing.T, dir string, s *filewatch.Snapshot) []string {
	t.Helper()
	var out []string
	for _, f := range s.Files {
		rel, err := filepath.Rel(dir, f.Path)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, rel+"="+string(f.Data))
	}
	return out
}

func isYAML(name string) bool {
	return strings.HasSuffix(name, ".yaml") || strings.HasSuffix(name, ".yml")
}

func TestRead(t *testing.T) {
	tests := []struct {
		name    string
		files   map[string]string
		paths   []string // $D is the tree
		opts    filewatch.ReadOptions
		want    []string
		wantIs  error
		wantErr string // substring, with the tree's path written as $D
	}{
		{
			name:  "files in the order given",
			files: map[string]string{"b": "2", "a": "1"},
			paths: []string{"$D/b", "$D/a"},
			want:  []string{"b=2", "a=1"},
		},
		{
			name:  "a file named twice is read once, where first named",
			files: map[string]string{"a": "1", "b": "2"},
			paths: []string{"$D/a", "$D/b", "$D/./a"},
			want:  []string{"a=1", "b=2"},
		},
		{
			name:  "empty file is content, not an error",
			files: map[string]string{"a": ""},
			paths: []string{"$D/a"},
			want:  []string{"a="},
		},
		{
			name: "directory walked in lexical order, hidden skipped, like the policy loader",
			files: map[string]string{
				"p/b.yaml": "b", "p/a.yml": "a", "p/sub/c.yaml": "c", "p/notes.txt": "x",
				"p/.hidden.yaml": "h", "p/.git/x.yaml": "g", "p/..data/d.yaml": "d",
			},
			paths: []string{"$D/p"},
			opts:  filewatch.ReadOptions{Dirs: true, Match: isYAML},
			want:  []string{"p/a.yml=a", "p/b.yaml=b", "p/sub/c.yaml=c"},
		},
		{
			name:  "directory without Match takes every visible file",
			files: map[string]string{"p/b": "b", "p/a.txt": "a", "p/.x": "x"},
			paths: []string{"$D/p"},
			opts:  filewatch.ReadOptions{Dirs: true},
			want:  []string{"p/a.txt=a", "p/b=b"},
		},
		{
			name:  "named file skips Match",
			files: map[string]string{"p/a.yaml": "a", "extra.json": "j"},
			paths: []string{"$D/extra.json", "$D/p"},
			opts:  filewatch.ReadOptions{Dirs: true, Match: isYAML},
			want:  []string{"extra.json=j", "p/a.yaml=a"},
		},
		{
			name:  "hidden named directory is read: only entries below it are judged",
			files: map[string]string{".cfg/a": "a"},
			paths: []string{"$D/.cfg"},
			opts:  filewatch.ReadOptions{Dirs: true},
			want:  []string{".cfg/a=a"},
		},
		{
			name: "kubernetes ConfigMap layout: links through ..data are read once",
			files: map[string]string{
				"cm/..v1/a.yaml": "a1", "cm/..data": "->..v1", "cm/a.yaml": "->..data/a.yaml",
			},
			paths: []string{"$D/cm"},
			opts:  filewatch.ReadOptions{Dirs: true},
			want:  []string{"cm/a.yaml=a1"},
		},
		{
			name:  "link to a directory is not followed",
			files: map[string]string{"real/a": "a", "p/b": "b", "p/link": "->../real"},
			paths: []string{"$D/p"},
			opts:  filewatch.ReadOptions{Dirs: true},
			want:  []string{"p/b=b"},
		},
		{
			name:    "missing file is an error, not empty content",
			files:   map[string]string{"a": "1"},
			paths:   []string{"$D/a", "$D/missing"},
			wantIs:  fs.ErrNotExist,
			wantErr: "stat $D/missing: no such file or directory",
		},
		{
			name:    "broken link in a directory",
			files:   map[string]string{"p/a": "a", "p/gone": "->nowhere"},
			paths:   []string{"$D/p"},
			opts:    filewatch.ReadOptions{Dirs: true},
			wantIs:  fs.ErrNotExist,
			wantErr: "$D/p/gone",
		},
		{
			name:    "directory where files are wanted",
			files:   map[string]string{"p/a": "a"},
			paths:   []string{"$D/p"},
			wantIs:  filewatch.ErrNotRegular,
			wantErr: "read $D/p: not a regular file (a directory)",
		},
		{
			name:    "over the size bound",
			files:   map[string]string{"big": "12345"},
			paths:   []string{"$D/big"},
			opts:    filewatch.ReadOptions{MaxFileSize: 4},
			wantIs:  filewatch.ErrTooLarge,
			wantErr: "read $D/big: file too large (larger than 4 bytes)",
		},
		{
			name:  "at the size bound",
			files: map[string]string{"big": "1234"},
			paths: []string{"$D/big"},
			opts:  filewatch.ReadOptions{MaxFileSize: 4},
			want:  []string{"big=1234"},
		},
		{
			name:    "no paths",
			wantErr: "filewatch: no paths to read",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := tree(t, tt.files)
			var paths []string
			for _, p := range tt.paths {
				paths = append(paths, strings.ReplaceAll(p, "$D", dir))
			}
			snap, err := filewatch.Read(paths, tt.opts)
			if tt.wantErr != "" || tt.wantIs != nil {
				if err == nil {
					t.Fatalf("Read = %v; want an error", relFiles(t, dir, snap))
				}
				if tt.wantIs != nil && !errors.Is(err, tt.wantIs) {
					t.Errorf("error %q is not %v", err, tt.wantIs)
				}
				if want := strings.ReplaceAll(tt.wantErr, "$D", dir); !strings.Contains(err.Error(), want) {
					t.Errorf("error %q does not contain %q", err, want)
				}
				if snap != nil {
					t.Errorf("a failed Read returned a snapshot too")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, relFiles(t, dir, snap)); diff != "" {
				t.Errorf("files (-want +got):\n%s", diff)
			}
			// The same content reads to the same hash.
			again, err := filewatch.Read(paths, tt.opts)
			if err != nil || again.Hash != snap.Hash {
				t.Errorf("second Read: hash %x, err %v; want %x", again.Hash, err, snap.Hash)
			}
		})
	}
}

func TestReadFIFOIsRefusedWithoutBlocking(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "pipe.yaml")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Skipf("mkfifo: %v", err)
	}
	for _, opts := range []filewatch.ReadOptions{{}, {Dirs: true}} {
		path := fifo
		if opts.Dirs {
			path = dir
		}
		_, err := filewatch.Read([]string{path}, opts)
		if !errors.Is(err, filewatch.ErrNotRegular) || !strings.Contains(err.Error(), "read "+fifo+": not a regular file (a named pipe)") {
			t.Errorf("Read(%s, dirs %v) = %v; want ErrNotRegular naming %s", path, opts.Dirs, err, fifo)
		}
	}
}

// TestSnapshotHash: the hash names the content and the names, and no two
// different file sets share it.
func TestSnapshotHash(t *testing.T) {
	hash := func(t *testing.T, files map[string]string, order ...string) [32]byte {
		t.Helper()
		// Every tree lives in its own directory: read from inside it, so
		// the names hashed are the relative ones given.
		t.Chdir(tree(t, files))
		snap, err := filewatch.Read(order, filewatch.ReadOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return snap.Hash
	}
	base := hash(t, map[string]string{"a": "xy", "b": "z"}, "a", "b")
	tests := []struct {
		name  string
		files map[string]string
		order []string
		same  bool
	}{
		{name: "same content elsewhere", files: map[string]string{"a": "xy", "b": "z"}, order: []string{"a", "b"}, same: true},
		{name: "content moved between files", files: map[string]string{"a": "x", "b": "yz"}, order: []string{"a", "b"}},
		{name: "renamed file", files: map[string]string{"a": "xy", "c": "z"}, order: []string{"a", "c"}},
		{name: "other order", files: map[string]string{"a": "xy", "b": "z"}, order: []string{"b", "a"}},
		// Without length prefixes, "name\x00content\x00" encodings of these two
		// sets are the same bytes.
		{name: "separator inside content", files: map[string]string{"a": "xy\x00b\x00z"}, order: []string{"a"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := hash(t, tt.files, tt.order...); (got == base) != tt.same {
				t.Errorf("hash equal to base: %v; want %v", got == base, tt.same)
			}
		})
	}
}

func TestSnapshotData(t *testing.T) {
	dir := tree(t, map[string]string{"a": "1", "p/b": "2"})
	snap, err := filewatch.Read([]string{filepath.Join(dir, "a"), filepath.Join(dir, "p")}, filewatch.ReadOptions{Dirs: true})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		path   string
		want   string
		wantOK bool
	}{
		{path: filepath.Join(dir, "a"), want: "1", wantOK: true},
		{path: dir + "/p/../a", want: "1", wantOK: true},
		{path: filepath.Join(dir, "p", "b"), want: "2", wantOK: true},
		{path: filepath.Join(dir, "p")},
		{path: filepath.Join(dir, "c")},
	}
	for _, tt := range tests {
		got, ok := snap.Data(tt.path)
		if string(got) != tt.want || ok != tt.wantOK {
			t.Errorf("Data(%s) = %q, %v; want %q, %v", tt.path, got, ok, tt.want, tt.wantOK)
		}
	}
	if v := snap.Version(); len(v) != 12 {
		t.Errorf("Version %q; want 12 hex digits", v)
	}
}
