package audit

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// writeJournal makes a journal of n events in small segments and returns
// its directory and files in order.
func writeJournal(t *testing.T, n int) (string, []string) {
	t.Helper()
	dir := t.TempDir()
	l := newJournalLogger(t, openTestJournal(t, dir, JournalOptions{SegmentBytes: 2 << 10}), Config{Sinks: []Sink{&collectSink{}}})
	for i := 1; i <= n; i++ {
		l.Record(&Event{RequestID: fmt.Sprint(i), Path: "/api/v1/items", Status: 200})
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	files, err := journalFiles([]string{dir})
	if err != nil {
		t.Fatal(err)
	}
	return dir, files
}

// editLine rewrites line n (1-based) of file with edit.
func editLine(t *testing.T, file string, n int, edit func(string) string) {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.SplitAfter(string(b), "\n")
	lines[n-1] = edit(lines[n-1])
	if err := os.WriteFile(file, []byte(strings.Join(lines, "")), 0o600); err != nil {
		t.Fatal(err)
	}
}

func TestVerifyNamesTampering(t *testing.T) {
	tests := []struct {
		name   string
		tamper func(t *testing.T, files []string)
		// want is the file index, line and words of the one problem.
		wantFile, wantLine int
		want               string
	}{
		{
			name: "edited field",
			tamper: func(t *testing.T, files []string) {
				editLine(t, files[0], 3, func(s string) string { return strings.Replace(s, `"status":200`, `"status":403`, 1) })
			},
			wantFile: 0, wantLine: 3, want: "was changed",
		},
		{
			name: "edited line in a later segment",
			tamper: func(t *testing.T, files []string) {
				editLine(t, files[1], 2, func(s string) string { return strings.Replace(s, `/api/v1/items`, `/api/v1/other`, 1) })
			},
			wantFile: 1, wantLine: 2, want: "was changed",
		},
		{
			name: "removed line",
			tamper: func(t *testing.T, files []string) {
				editLine(t, files[0], 4, func(string) string { return "" })
			},
			wantFile: 0, wantLine: 4, want: "1 records are missing",
		},
		{
			name: "not JSON",
			tamper: func(t *testing.T, files []string) {
				editLine(t, files[0], 2, func(s string) string { return s[5:] })
			},
			wantFile: 0, wantLine: 2, want: "not an audit record",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir, files := writeJournal(t, 60)
			if len(files) < 3 {
				t.Fatalf("%d segments, want 3 or more", len(files))
			}
			tt.tamper(t, files)
			rep, err := Verify([]string{dir}, nil)
			if err != nil {
				t.Fatal(err)
			}
			if len(rep.Problems) != 1 {
				t.Fatalf("problems %v, want exactly one", rep.Problems)
			}
			p := rep.Problems[0]
			if p.File != files[tt.wantFile] || p.Line != tt.wantLine || !strings.Contains(p.What, tt.want) {
				t.Errorf("problem %q, want %s:%d with %q", p, files[tt.wantFile], tt.wantLine, tt.want)
			}
		})
	}
}

// TestVerifyOrdersFiles: files given in any order are checked in sequence
// order, and a journal whose oldest segments the quota removed is checked
// from where it starts.
func TestVerifyOrdersFiles(t *testing.T) {
	_, files := writeJournal(t, 60)
	rev := slices.Clone(files)
	slices.Reverse(rev)
	rep, err := Verify(rev, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Problems) != 0 || rep.Records != 60 {
		t.Fatalf("reversed files: %d records, problems %v", rep.Records, rep.Problems)
	}
	rep, err = Verify(files[1:], nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Problems) != 0 || len(rep.Notes) != 1 || !strings.Contains(rep.Notes[0], "checked from seq") {
		t.Errorf("without the first segment: problems %v, notes %q", rep.Problems, rep.Notes)
	}
}

func TestVerifyErrors(t *testing.T) {
	empty := t.TempDir()
	for _, tt := range []struct {
		name  string
		paths []string
		want  string
	}{
		{"nothing", nil, "no files"},
		{"missing", []string{filepath.Join(empty, "nope")}, "no such file"},
		{"not a journal", []string{empty}, "holds no journal segments"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Verify(tt.paths, nil)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %v, want %q", err, tt.want)
			}
		})
	}
}
