package audit

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"
)

const killChildEnv = "TOLLGATE_AUDIT_KILL_CHILD"

// TestKillChild is the process TestSIGKILLLosesNothing kills: a fail-closed
// Logger that prints the request id of every decision it was told is
// durable, as a gateway forwards the request at that moment.
func TestKillChild(t *testing.T) {
	dir := os.Getenv(killChildEnv)
	if dir == "" {
		t.Skip("run by TestSIGKILLLosesNothing")
	}
	j, err := OpenJournal(JournalOptions{Dir: dir, SegmentBytes: 64 << 10})
	if err != nil {
		t.Fatal(err)
	}
	// The sink is a file outside the journal: what it delivered before the
	// kill survives it (the kill is of the process, not of the machine).
	delivered, err := OpenFile(filepath.Join(filepath.Dir(dir), "delivered.ndjson"))
	if err != nil {
		t.Fatal(err)
	}
	l, err := New(Config{Sinks: []Sink{delivered}, SinkNames: []string{"siem"}, Journal: j, FailClosed: true})
	if err != nil {
		t.Fatal(err)
	}
	out := bufio.NewWriter(os.Stdout)
	for i := 1; ; i++ {
		ev := &Event{RequestID: strconv.Itoa(i), Kind: Ingress, Method: "GET", Path: "/x"}
		if err := l.Decided(ev); err != nil {
			t.Fatal(err)
		}
		fmt.Fprintln(out, i)
		out.Flush()
		l.Completed(ev)
	}
}

// TestSIGKILLLosesNothing: a process recording under load is SIGKILLed.
// Every decision it was told is durable is in the journal afterwards, the
// chain verifies, and a sink started on the journal gets every one of them.
func TestSIGKILLLosesNothing(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a process")
	}
	dir := filepath.Join(t.TempDir(), "journal")
	cmd := exec.Command(os.Args[0], "-test.run", "^TestKillChild$", "-test.count", "1")
	cmd.Env = append(os.Environ(), killChildEnv+"="+dir)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	const acks = 2000
	sc := bufio.NewScanner(stdout)
	acked := 0
	timeout := time.AfterFunc(60*time.Second, func() { _ = cmd.Process.Kill() })
	for acked < acks && sc.Scan() {
		acked++
	}
	timeout.Stop()
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	// Whatever it printed before it died was acknowledged too.
	for sc.Scan() {
		acked++
	}
	_ = cmd.Wait()
	if acked < acks {
		t.Fatalf("the child acknowledged only %d decisions before it ended", acked)
	}

	rep, err := Verify([]string{dir}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Problems) > 0 {
		t.Fatalf("after SIGKILL the journal does not verify: %v", rep.Problems)
	}
	sink := &collectSink{}
	l := newJournalLogger(t, openTestJournal(t, dir, JournalOptions{SegmentBytes: 64 << 10}), Config{Sinks: []Sink{sink}, SinkNames: []string{"siem"}})
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	// Delivered: by the child's sink before the kill, or after the restart
	// from its cursor.
	before, err := os.ReadFile(filepath.Join(filepath.Dir(dir), "delivered.ndjson"))
	if err != nil {
		t.Fatal(err)
	}
	decided := map[string]bool{}
	for _, ev := range append(decodeLines(t, string(before)), sink.events(t)...) {
		if ev.Phase == PhaseDecision {
			decided[ev.RequestID] = true
		}
	}
	lost := 0
	for i := 1; i <= acked; i++ {
		if !decided[strconv.Itoa(i)] {
			lost++
		}
	}
	if lost > 0 {
		t.Errorf("%d of %d acknowledged decisions were never delivered", lost, acked)
	}
	t.Logf("killed after %d acknowledged decisions; %d records in %d files; delivered %d lines before the kill and %d after the restart",
		acked, rep.Records, rep.Files, len(decodeLines(t, string(before))), len(sink.lines))
}
