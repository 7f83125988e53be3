package audit

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// collectSink keeps every line it accepted; failFirst makes its first n
// writes fail (a SIEM that is down), hold blocks writes until closed.
type collectSink struct {
	mu        sync.Mutex
	lines     []string
	failFirst int
	attempts  int
}

func (s *collectSink) Write(_ context.Context, line []byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.attempts++
	if s.attempts <= s.failFirst {
		return errors.New("sink down")
	}
	if len(line) == 0 || line[len(line)-1] != '\n' {
		return fmt.Errorf("line without newline: %q", line)
	}
	s.lines = append(s.lines, string(line))
	return nil
}

func (s *collectSink) Close() error { return nil }

func (s *collectSink) events(t *testing.T) []Event {
	s.mu.Lock()
	defer s.mu.Unlock()
	return decodeLines(t, strings.Join(s.lines, ""))
}

func openTestJournal(t *testing.T, dir string, opts JournalOptions) *Journal {
	t.Helper()
	opts.Dir = dir
	j, err := OpenJournal(opts)
	if err != nil {
		t.Fatal(err)
	}
	return j
}

func newJournalLogger(t *testing.T, j *Journal, cfg Config) *Logger {
	t.Helper()
	cfg.Journal = j
	if cfg.Backoff == 0 {
		cfg.Backoff, cfg.MaxBackoff = time.Millisecond, 5*time.Millisecond
	}
	l, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// requestIDs lists the request ids of the events that are not gap records.
func requestIDs(evs []Event) []string {
	var ids []string
	for _, ev := range evs {
		if ev.Gap == nil {
			ids = append(ids, ev.RequestID)
		}
	}
	return ids
}

func idRange(from, to int) []string {
	var ids []string
	for i := from; i <= to; i++ {
		ids = append(ids, fmt.Sprint(i))
	}
	return ids
}

func verifyClean(t *testing.T, dir string) *VerifyReport {
	t.Helper()
	rep, err := Verify([]string{dir}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Problems) > 0 {
		t.Fatalf("Verify found problems in a journal nobody touched: %v", rep.Problems)
	}
	return rep
}

// TestJournalRestartContinuesSequenceAndChain: records survive a restart,
// the sequence and the hash chain go on, and a sink's cursor makes it get
// exactly what it had not delivered.
func TestJournalRestartContinuesSequenceAndChain(t *testing.T) {
	dir := t.TempDir()
	sink := &collectSink{}
	l := newJournalLogger(t, openTestJournal(t, dir, JournalOptions{}), Config{Sinks: []Sink{sink}, SinkNames: []string{"siem"}})
	for i := 1; i <= 50; i++ {
		l.Record(&Event{RequestID: fmt.Sprint(i), Kind: Ingress})
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(idRange(1, 50), requestIDs(sink.events(t))); diff != "" {
		t.Fatalf("first run delivered (-want +got):\n%s", diff)
	}

	sink2 := &collectSink{}
	l = newJournalLogger(t, openTestJournal(t, dir, JournalOptions{}), Config{Sinks: []Sink{sink2}, SinkNames: []string{"siem"}})
	for i := 51; i <= 60; i++ {
		l.Record(&Event{RequestID: fmt.Sprint(i), Kind: Ingress})
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	evs := sink2.events(t)
	if diff := cmp.Diff(idRange(51, 60), requestIDs(evs)); diff != "" {
		t.Fatalf("second run delivered (-want +got):\n%s", diff)
	}
	if evs[0].Sequence != 51 {
		t.Errorf("after restart seq starts at %d, want 51", evs[0].Sequence)
	}
	rep := verifyClean(t, dir)
	if rep.Records != 60 || rep.FirstSeq != 1 || rep.LastSeq != 60 {
		t.Errorf("Verify: %d records, seq %d..%d; want 60, 1..60", rep.Records, rep.FirstSeq, rep.LastSeq)
	}
}

// TestJournalCutsTornLine: a crash mid-write leaves half a line; the next
// start cuts it, and the sequence goes on from the last whole record.
func TestJournalCutsTornLine(t *testing.T) {
	dir := t.TempDir()
	l := newJournalLogger(t, openTestJournal(t, dir, JournalOptions{}), Config{Sinks: []Sink{&collectSink{}}})
	for i := 1; i <= 3; i++ {
		l.Record(&Event{RequestID: fmt.Sprint(i)})
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	active := filepath.Join(dir, activeSegment)
	f, err := os.OpenFile(active, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteString(`{"time":"2026-12-07T00:00:00.000Z","durationMs":0,"id":"x","seq":4,"requ`); err != nil {
		t.Fatal(err)
	}
	f.Close()
	rep, err := Verify([]string{dir}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Notes) != 1 || !strings.Contains(rep.Notes[0], "incomplete last line") {
		t.Errorf("Verify notes = %q, want the torn line", rep.Notes)
	}

	j := openTestJournal(t, dir, JournalOptions{})
	if j.torn == 0 {
		t.Error("the torn line was not cut")
	}
	sink := &collectSink{}
	l = newJournalLogger(t, j, Config{Sinks: []Sink{sink}})
	l.Record(&Event{RequestID: "4"})
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	evs := sink.events(t)
	if len(evs) != 1 || evs[0].Sequence != 4 {
		t.Fatalf("after the cut: %+v, want one event with seq 4", evs)
	}
	verifyClean(t, dir)
}

// TestJournalRotationAndReaders: small segments rotate by rename; a reader
// follows every record across rotations, in order, while they happen.
func TestJournalRotationAndReaders(t *testing.T) {
	dir := t.TempDir()
	sinks := []*collectSink{{}, {}}
	l := newJournalLogger(t, openTestJournal(t, dir, JournalOptions{SegmentBytes: 4 << 10}),
		Config{Sinks: []Sink{sinks[0], sinks[1]}, SinkNames: []string{"a", "b"}})
	const n = 500
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			for i := g; i < n; i += 4 {
				l.Record(&Event{RequestID: fmt.Sprint(i), Path: strings.Repeat("/x", 20)})
			}
		})
	}
	wg.Wait()
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if s := l.Stats(); s.Written != n || s.Dropped != 0 {
		t.Fatalf("Stats %+v, want %d written, none dropped", s, n)
	}
	segs, _ := filepath.Glob(filepath.Join(dir, segmentPrefix+"*"+segmentSuffix))
	if len(segs) < 5 {
		t.Errorf("%d rotated segments, want several at 4 KiB each", len(segs))
	}
	for i, s := range sinks {
		evs := s.events(t)
		if len(evs) != n {
			t.Fatalf("sink %d got %d events, want %d", i, len(evs), n)
		}
		for k, ev := range evs {
			if ev.Sequence != uint64(k+1) {
				t.Fatalf("sink %d: event %d has seq %d: out of order", i, k, ev.Sequence)
			}
		}
	}
	rep := verifyClean(t, dir)
	if rep.Records != n || rep.Files != len(segs)+1 {
		t.Errorf("Verify: %d records in %d files, want %d in %d", rep.Records, rep.Files, n, len(segs)+1)
	}
}

// TestJournalSinkDownThenBack: a sink that fails its first writes gets
// every event once it is back, in order, each exactly once; the retries are
// counted and the other sink is not held back.
func TestJournalSinkDownThenBack(t *testing.T) {
	down := &collectSink{failFirst: 20}
	up := &collectSink{}
	l := newJournalLogger(t, openTestJournal(t, t.TempDir(), JournalOptions{}),
		Config{Sinks: []Sink{down, up}, SinkNames: []string{"down", "up"}, DrainTimeout: 30 * time.Second})
	const n = 200
	for i := 1; i <= n; i++ {
		l.Record(&Event{RequestID: fmt.Sprint(i)})
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	for name, s := range map[string]*collectSink{"down": down, "up": up} {
		if diff := cmp.Diff(idRange(1, n), requestIDs(s.events(t))); diff != "" {
			t.Errorf("sink %s delivered (-want +got):\n%s", name, diff)
		}
	}
	st := l.Stats()
	if st.Sinks[0].LagEvents != 0 || st.Sinks[1].LagEvents != 0 {
		t.Errorf("lag after everything was delivered: %d and %d events, want 0", st.Sinks[0].LagEvents, st.Sinks[1].LagEvents)
	}
	if st.Sinks[0].Retries != 20 || st.Sinks[0].Delivered != n || st.Sinks[1].Retries != 0 {
		t.Errorf("sink stats %+v: want 20 retries and %d delivered on the first, no retries on the second", st.Sinks, n)
	}
}

// TestJournalResumesUndeliveredAfterRestart: a sink that never comes back
// before Close leaves its records in the journal; the next start delivers
// them from its cursor.
func TestJournalResumesUndeliveredAfterRestart(t *testing.T) {
	dir := t.TempDir()
	dead := &collectSink{failFirst: 1 << 30}
	l := newJournalLogger(t, openTestJournal(t, dir, JournalOptions{}),
		Config{Sinks: []Sink{dead}, SinkNames: []string{"siem"}, DrainTimeout: 50 * time.Millisecond})
	for i := 1; i <= 30; i++ {
		l.Record(&Event{RequestID: fmt.Sprint(i)})
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if got := len(dead.events(t)); got != 0 {
		t.Fatalf("the dead sink accepted %d events", got)
	}
	if lag := l.Stats().Sinks[0].LagEvents; lag != 30 {
		t.Errorf("the dead sink's lag after Close: %d events, want 30", lag)
	}
	back := &collectSink{}
	l = newJournalLogger(t, openTestJournal(t, dir, JournalOptions{}), Config{Sinks: []Sink{back}, SinkNames: []string{"siem"}})
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(idRange(1, 30), requestIDs(back.events(t))); diff != "" {
		t.Errorf("delivered after restart (-want +got):\n%s", diff)
	}
}

// TestJournalQuotaDropOldest: a sink far behind loses the oldest segments
// to the quota; the loss is counted and written into the trail as a gap.
func TestJournalQuotaDropOldest(t *testing.T) {
	dir := t.TempDir()
	dead := &collectSink{failFirst: 1 << 30}
	j := openTestJournal(t, dir, JournalOptions{SegmentBytes: 2 << 10, MaxBytes: 8 << 10})
	l := newJournalLogger(t, j, Config{Sinks: []Sink{dead}, SinkNames: []string{"slow"}, DrainTimeout: 50 * time.Millisecond})
	for i := 1; i <= 300; i++ {
		l.Record(&Event{RequestID: fmt.Sprint(i)})
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	// Every new record is journaled. (Dropped may count one record: the
	// notice of a quota gap the sink's reader finds while the logger
	// closes, refused as closed; the sink's own count and the next start's
	// gap record, checked below, still say what the quota removed.)
	if s := l.Stats(); s.Written != 300 || s.Dropped > 1 {
		t.Fatalf("Stats %+v: DropOldest must not refuse new records", s)
	}
	// The sink comes back: it gets what the quota kept, and learns of the rest.
	back := &collectSink{}
	l = newJournalLogger(t, openTestJournal(t, dir, JournalOptions{SegmentBytes: 2 << 10, MaxBytes: 8 << 10}),
		Config{Sinks: []Sink{back}, SinkNames: []string{"slow"}})
	// Let the reader find the gap and record it before closing.
	for deadline := time.Now().Add(10 * time.Second); l.Stats().Sinks[0].Dropped == 0; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the sink never found the records the quota removed")
		}
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	st := l.Stats().Sinks[0]
	evs := back.events(t)
	ids := requestIDs(evs)
	if len(ids) == 0 || st.Dropped == 0 || uint64(len(ids))+st.Dropped != 300 {
		t.Fatalf("delivered %d, dropped %d: want them to add up to 300, both > 0", len(ids), st.Dropped)
	}
	rep := verifyClean(t, dir)
	if rep.Lost != st.Dropped {
		t.Errorf("gap records say %d lost, the sink counted %d", rep.Lost, st.Dropped)
	}
}

// TestJournalQuotaBlock: under Block, a full journal refuses new records
// rather than remove undelivered ones; the refusals are counted and become
// a gap record once there is room.
func TestJournalQuotaBlock(t *testing.T) {
	dir := t.TempDir()
	dead := &collectSink{failFirst: 1 << 30}
	opts := JournalOptions{SegmentBytes: 2 << 10, MaxBytes: 8 << 10, OnFull: Block}
	l := newJournalLogger(t, openTestJournal(t, dir, opts), Config{Sinks: []Sink{dead}, SinkNames: []string{"slow"}, DrainTimeout: 50 * time.Millisecond})
	for i := 1; i <= 300; i++ {
		l.Record(&Event{RequestID: fmt.Sprint(i)})
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	s := l.Stats()
	if s.Dropped == 0 || s.Written+s.Dropped != 300 {
		t.Fatalf("Stats %+v: want refusals, written + dropped = 300", s)
	}
	// Every record the journal took is still there for the sink.
	back := &collectSink{}
	l = newJournalLogger(t, openTestJournal(t, dir, opts), Config{Sinks: []Sink{back}, SinkNames: []string{"slow"}})
	// The journal is full until the sink has delivered what it holds: a
	// record before that would be refused.
	for deadline := time.Now().Add(10 * time.Second); l.Stats().Sinks[0].Delivered < s.Written; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the sink delivered %d of the %d journaled", l.Stats().Sinks[0].Delivered, s.Written)
		}
	}
	l.Record(&Event{RequestID: "after"})
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	ids := requestIDs(back.events(t))
	if uint64(len(ids)) != s.Written+1 || ids[len(ids)-1] != "after" {
		t.Errorf("delivered %d (last %q), want the %d journaled and \"after\"", len(ids), ids[len(ids)-1], s.Written)
	}
	verifyClean(t, dir)
}

// TestFailClosed: with FailClosed, Decided returns only once the decision
// record is on disk, and refuses when the journal cannot append; the
// records lost meanwhile become a gap record once it can.
func TestFailClosed(t *testing.T) {
	dir := t.TempDir()
	j := openTestJournal(t, dir, JournalOptions{})
	sink := &collectSink{}
	l := newJournalLogger(t, j, Config{Sinks: []Sink{sink}, FailClosed: true})
	ev := &Event{RequestID: "ok", Kind: Egress}
	if err := l.Decided(ev); err != nil {
		t.Fatalf("Decided on a healthy journal: %v", err)
	}
	if got := j.Committed(); got != 1 {
		t.Fatalf("after Decided the journal has committed %d records, want 1", got)
	}
	l.Completed(ev)

	// The journal's file fails every write from here (an I/O error, a full
	// disk): swap in a read-only handle, as only the writer uses it.
	good := j.f
	ro, err := os.Open(filepath.Join(dir, activeSegment))
	if err != nil {
		t.Fatal(err)
	}
	waitCommitted(t, j, 2)
	swapJournalFile(l, ro)
	if err := l.Decided(&Event{RequestID: "refused"}); err == nil {
		t.Fatal("Decided succeeded on a journal that cannot append")
	}
	swapJournalFile(l, good)
	ro.Close()
	if err := l.Decided(&Event{RequestID: "again"}); err != nil {
		t.Fatalf("Decided after the journal recovered: %v", err)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, ev := range sink.events(t) {
		switch {
		case ev.Gap != nil:
			got = append(got, "gap "+ev.Gap.Reason)
		default:
			got = append(got, ev.RequestID+" "+ev.Phase)
		}
	}
	want := []string{"ok decision", "ok ", "gap journal_unavailable", "again decision"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("the trail (-want +got):\n%s", diff)
	}
	verifyClean(t, dir)
}

func waitCommitted(t *testing.T, j *Journal, n uint64) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for j.Committed() < n {
		if time.Now().After(deadline) {
			t.Fatalf("journal committed %d, want %d", j.Committed(), n)
		}
		time.Sleep(time.Millisecond)
	}
}

// swapJournalFile replaces the journal's file between two commits: it sends
// a marker through the queue so the writer is idle when the swap happens.
func swapJournalFile(l *Logger, f *os.File) {
	done := make(chan struct{})
	l.queue <- queued{ev: nil, done: nil, swap: func() { l.journal.f = f; close(done) }}
	<-done
}

func TestOpenJournalErrors(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, activeSegment), []byte("not json\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name string
		opts JournalOptions
		want string
	}{
		{"no dir", JournalOptions{}, "needs a directory"},
		{"bad onFull", JournalOptions{Dir: t.TempDir(), OnFull: "spill"}, `onFull "spill"`},
		{"negative quota", JournalOptions{Dir: t.TempDir(), MaxBytes: -1}, "negative"},
		{"not a journal", JournalOptions{Dir: dir}, "line 1: record without a sequence number"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			j, err := OpenJournal(tt.opts)
			if err == nil {
				j.close()
				t.Fatal("OpenJournal succeeded")
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q, want it to contain %q", err, tt.want)
			}
		})
	}
}

// BenchmarkJournal is the journal alone: events recorded from parallel
// callers, appended with group-commit fsync, and delivered to one sink that
// discards them; the clock stops once Close has committed and delivered
// every one. "memory" is the Logger without a journal, for comparison.
func BenchmarkJournal(b *testing.B) {
	ev := fullEvent()
	for _, mode := range []string{"memory", "journal"} {
		b.Run(mode, func(b *testing.B) {
			cfg := Config{Sinks: []Sink{discardSink{}}, QueueSize: 1 << 16, BlockTimeout: time.Second}
			if mode == "journal" {
				j, err := OpenJournal(JournalOptions{Dir: b.TempDir()})
				if err != nil {
					b.Fatal(err)
				}
				cfg.Journal = j
			}
			l, err := New(cfg)
			if err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					e := ev // each call hands over an event of its own
					l.Record(&e)
				}
			})
			if err := l.Close(); err != nil {
				b.Fatal(err)
			}
			b.StopTimer()
			s := l.Stats()
			if s.Dropped != 0 || s.Written != uint64(b.N) {
				b.Fatalf("written %d, dropped %d of %d", s.Written, s.Dropped, b.N)
			}
			if mode == "journal" && s.Sinks[0].Delivered != uint64(b.N) {
				b.Fatalf("delivered %d of %d", s.Sinks[0].Delivered, b.N)
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
		})
	}
}
