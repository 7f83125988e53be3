package audit

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// FuzzJournalFiles: a journal file is input the gateway does not control
// once it is on disk (a crash, a disk error, someone editing it). Whatever
// the active segment holds, OpenJournal either refuses it with an error or
// recovers a journal that appends and verifies from where it starts;
// Verify reports, and neither panics.
func FuzzJournalFiles(f *testing.F) {
	good := `{"time":"2026-12-07T10:00:00.000Z","durationMs":0,"id":"a","seq":1,"kind":"ingress","status":200,"bytesIn":0,"bytesOut":0}` + "\n"
	f.Add(good)
	f.Add(good + `{"time":"2026-12-07T10:00:00.000Z","durationMs":0,"id":"b","seq":2,"kind":"ingress","status":200,"bytesIn":0,"bytesOut":0,"prev":"00"}`)
	f.Add(good + "torn")
	f.Add("")
	f.Add("\n\n")
	f.Add(`{"seq":18446744073709551615}` + "\n")
	f.Add(`{"time":"x","seq":18446744073709551615}` + "\n")
	f.Add(`{"seq":0}` + "\n" + `,"seq":3` + "\n")
	f.Fuzz(func(t *testing.T, content string) {
		dir := t.TempDir()
		active := filepath.Join(dir, activeSegment)
		if err := os.WriteFile(active, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := Verify([]string{dir}, nil); err != nil && !strings.Contains(err.Error(), "audit verify") {
			t.Fatalf("Verify error without its prefix: %v", err)
		}
		j, err := OpenJournal(JournalOptions{Dir: dir})
		if err != nil {
			return // refused, with a reason: fine
		}
		before := j.Committed()
		j.add(&Event{Kind: Ingress, RequestID: "after"})
		if err := j.flush(); err != nil {
			t.Fatalf("append after recovery: %v", err)
		}
		if j.Committed() != before+1 {
			t.Fatalf("committed %d after %d", j.Committed(), before)
		}
		j.close()
		// The recovered journal ends with a whole line, and the record
		// just added follows the last whole one in the chain.
		b, _ := os.ReadFile(active)
		if len(b) == 0 || b[len(b)-1] != '\n' {
			t.Fatalf("journal does not end with a newline after recovery: %q", b)
		}
		rep, err := Verify([]string{dir}, nil)
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range rep.Problems {
			if p.Line == strings.Count(string(b), "\n") {
				t.Fatalf("the appended record breaks the chain: %v", p)
			}
		}
	})
}
