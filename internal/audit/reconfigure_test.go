package audit

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
)

// recSink remembers the request id and seq of every record it accepted, and
// counts writes after Close.
type recSink struct {
	mu          sync.Mutex
	ids         []string
	seqs        []uint64
	closed      bool
	afterClose  int
	closedTimes int
}

func (s *recSink) Write(_ context.Context, line []byte) error {
	var ev struct {
		RequestID string `json:"requestId"`
		Seq       uint64 `json:"seq"`
		Kind      string `json:"kind"`
	}
	if err := json.Unmarshal(line, &ev); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		s.afterClose++
		return ErrClosed
	}
	if ev.Kind == string(Audit) {
		return nil // the trail's own records (checkpoints, gaps) are not counted here
	}
	s.ids = append(s.ids, ev.RequestID)
	s.seqs = append(s.seqs, ev.Seq)
	return nil
}

func (s *recSink) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	s.closedTimes++
	return nil
}

// step is one sink of a set: keep the one in force, or a new one.
type step struct {
	name string
	new  bool
}

// TestReconfigureSinksUnderLoad changes a Logger's sinks K times (add,
// remove, replace, keep) while several goroutines record N events, and checks
// by count who got what: an unchanged sink every event, once (with a journal,
// at least once) and in order; an added sink every event recorded after its
// change; a removed or replaced sink nothing recorded after its change; nothing
// lost.
func TestReconfigureSinksUnderLoad(t *testing.T) {
	sets := [][]step{
		{{"keep", true}, {"a", true}, {"b", true}},
		{{"keep", false}, {"a", false}, {"b", true}, {"c", true}}, // b replaced, c added
		{{"keep", false}, {"b", false}, {"c", false}},             // a removed
		{{"c", true}, {"keep", false}, {"a", true}},               // c replaced, a added again, b removed
		{{"keep", false}, {"d", true}},                            // a and c removed, d added
		{{"keep", false}, {"d", true}, {"a", true}, {"b", true}},  // d replaced, a and b added
	}
	tests := []struct {
		name       string
		journal    bool
		goroutines int
		events     int
	}{
		{name: "without a journal", goroutines: 8, events: 8000},
		{name: "with a journal", journal: true, goroutines: 8, events: 8000},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			runReconfigure(t, sets, tt.journal, tt.goroutines, tt.events)
		})
	}
}

// instance is one sink of the test: the change that started it and the one
// that ended it (len(sets): none did), and its lineage (the name's presence
// without a gap, across replacements).
type instance struct {
	name       string
	sink       *recSink
	start, end int
	lineage    int
}

func runReconfigure(t *testing.T, sets [][]step, journal bool, goroutines, events int) {
	cfg := Config{QueueSize: events + 16, Instance: "test"}
	if journal {
		j, err := OpenJournal(JournalOptions{Dir: t.TempDir()})
		if err != nil {
			t.Fatal(err)
		}
		cfg.Journal = j
	}
	var all []*instance
	running := map[string]*instance{}
	lineages := 0
	specs := func(k int) []SinkSpec {
		var out []SinkSpec
		next := map[string]*instance{}
		for _, st := range sets[k] {
			prev := running[st.name]
			if !st.new {
				out = append(out, SinkSpec{Name: st.name})
				next[st.name] = prev
				continue
			}
			in := &instance{name: st.name, sink: &recSink{}, start: k, end: len(sets)}
			if prev != nil {
				in.lineage = prev.lineage
				prev.end = k
			} else {
				lineages++
				in.lineage = lineages
			}
			all = append(all, in)
			next[st.name] = in
			out = append(out, SinkSpec{Name: st.name, Sink: in.sink})
		}
		for name, in := range running {
			if next[name] == nil {
				in.end = k
			}
		}
		running = next
		return out
	}
	first := specs(0)
	for _, sp := range first {
		cfg.Sinks = append(cfg.Sinks, sp.Sink)
		cfg.SinkNames = append(cfg.SinkNames, sp.Name)
	}
	l, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}

	// epoch is how many changes were committed, begun how many were begun;
	// each event notes epoch before Record and begun after: it was recorded
	// in force of change k if before >= k, and before change k if after < k.
	var epoch, begun, recorded atomic.Int64
	type rec struct{ before, after int }
	// The load goes on while a change is made, and waits for it only half a
	// share later, so that each change has records before and after it.
	share := int64(events / len(sets))
	changes := int64(len(sets) - 1)
	got := make([]map[string]rec, goroutines)
	var wg sync.WaitGroup
	per := events / goroutines
	for g := range goroutines {
		got[g] = make(map[string]rec, per)
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range per {
				for e := epoch.Load(); e < changes && recorded.Load() >= (e+1)*share+share/2; e = epoch.Load() {
					runtime.Gosched()
				}
				id := fmt.Sprintf("g%d-%d", g, i)
				before := int(epoch.Load())
				l.Record(&Event{Kind: Ingress, RequestID: id})
				got[g][id] = rec{before, int(begun.Load())}
				recorded.Add(1)
			}
		}()
	}
	// The changes, spread over the load by count.
	for k := 1; k < len(sets); k++ {
		for recorded.Load() < int64(k)*share {
			runtime.Gosched()
		}
		begun.Add(1)
		c, err := l.PrepareSinks(specs(k))
		if err != nil {
			t.Fatal(err)
		}
		c.Commit()
		epoch.Add(1)
	}
	wg.Wait()
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	recs := map[string]rec{}
	for _, m := range got {
		for id, r := range m {
			recs[id] = r
		}
	}
	if s := l.Stats(); s.Dropped != 0 || s.Errors != 0 || s.Written != uint64(events) {
		t.Fatalf("stats %+v, want %d written, none dropped, no errors", s, events)
	}

	// Each lineage: the instances of one name without a gap.
	lineageOf := map[int][]*instance{}
	for _, in := range all {
		lineageOf[in.lineage] = append(lineageOf[in.lineage], in)
	}
	for _, in := range all {
		s := in.sink
		if s.closedTimes != 1 || s.afterClose != 0 {
			t.Errorf("%s (changes %d..%d): closed %d times, %d writes after close", in.name, in.start, in.end, s.closedTimes, s.afterClose)
		}
		count := map[string]int{}
		for i, id := range s.ids {
			count[id]++
			if i > 0 && s.seqs[i] <= s.seqs[i-1] {
				t.Errorf("%s (changes %d..%d): seq %d after %d: out of order or repeated", in.name, in.start, in.end, s.seqs[i], s.seqs[i-1])
				break
			}
			r, ok := recs[id]
			if !ok {
				t.Fatalf("%s: unknown record %q", in.name, id)
			}
			if in.end < len(sets) && r.before >= in.end {
				t.Errorf("%s (changes %d..%d): got %s, recorded after change %d removed or replaced it", in.name, in.start, in.end, id, in.end)
			}
		}
		// What it must have: without a journal, every event recorded
		// while it was in force, exactly once; with one, the lineage's
		// instances together have every event recorded while the name was.
		ls := lineageOf[in.lineage]
		from, to := in.start, in.end
		if journal {
			if ls[0] != in {
				continue // checked with the lineage's first
			}
			from, to = ls[0].start, ls[len(ls)-1].end
			count = map[string]int{}
			for _, o := range ls {
				for _, id := range o.sink.ids {
					count[id]++
				}
			}
		}
		missing, twice, want := 0, 0, 0
		for id, r := range recs {
			if r.before >= from && r.after < to {
				want++
				switch n := count[id]; {
				case n == 0:
					missing++
				case n > 1 && !journal:
					twice++
				}
			}
		}
		if missing > 0 || twice > 0 {
			t.Errorf("%s (changes %d..%d): of %d events recorded in force, %d missing, %d twice", in.name, from, to, want, missing, twice)
		}
		if in.name == "keep" && want != events {
			t.Errorf("keep: %d events in force, want all %d", want, events)
		}
		t.Logf("%s (changes %d..%d): %d distinct records, %d required", in.name, from, to, len(count), want)
	}
}

func TestPrepareSinksRefusesAndAbortLeavesNoCursor(t *testing.T) {
	dir := t.TempDir()
	j, err := OpenJournal(JournalOptions{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	keep := &recSink{}
	l, err := New(Config{Sinks: []Sink{keep}, SinkNames: []string{"keep"}, Journal: j})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	for _, tt := range []struct {
		name  string
		specs []SinkSpec
	}{
		{"none", nil},
		{"keep unknown", []SinkSpec{{Name: "other"}}},
		{"name twice", []SinkSpec{{Name: "keep"}, {Name: "keep", Sink: &recSink{}}}},
		{"bad format", []SinkSpec{{Name: "x", Sink: &recSink{}, Format: "nope"}}},
	} {
		if _, err := l.PrepareSinks(tt.specs); err == nil {
			t.Errorf("%s: PrepareSinks succeeded", tt.name)
		}
	}
	added := &recSink{}
	c, err := l.PrepareSinks([]SinkSpec{{Name: "keep"}, {Name: "added", Sink: added}})
	if err != nil {
		t.Fatal(err)
	}
	c.Abort()
	c.Commit() // no effect after Abort
	if !added.closed {
		t.Error("Abort did not close the new sink")
	}
	if names := statNames(l); fmt.Sprint(names) != "[keep]" {
		t.Errorf("sinks in force after Abort: %v", names)
	}
	if _, err := os.Stat(filepath.Join(dir, cursorDir, "added")); err == nil {
		t.Error("Abort left the new sink's cursor behind")
	}
	if keep.closed {
		t.Error("Abort closed the sink in force")
	}
}

func TestStatsFollowTheSinksInForce(t *testing.T) {
	j, err := OpenJournal(JournalOptions{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	l, err := New(Config{Sinks: []Sink{&recSink{}, &recSink{}}, SinkNames: []string{"a", "b"}, Journal: j})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	c, err := l.PrepareSinks([]SinkSpec{{Name: "b"}, {Name: "c", Sink: &recSink{}}})
	if err != nil {
		t.Fatal(err)
	}
	c.Commit()
	if names := statNames(l); fmt.Sprint(names) != "[b c]" {
		t.Errorf("Stats().Sinks = %v, want [b c]", names)
	}
}

func statNames(l *Logger) []string {
	var out []string
	for _, s := range l.Stats().Sinks {
		out = append(out, s.Name)
	}
	if l.journal == nil {
		l.setMu.Lock()
		for _, r := range l.set {
			out = append(out, r.name)
		}
		l.setMu.Unlock()
	}
	return out
}

func TestSettersApplyToLaterRecords(t *testing.T) {
	s := &recSink{}
	l, err := New(Config{Sinks: []Sink{s}, Instance: "one"})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if err := l.SetFailClosed(true); err == nil {
		t.Error("SetFailClosed(true) without a journal succeeded")
	}
	ev := &Event{Kind: Ingress, RequestID: "r1"}
	l.prepare(ev)
	l.SetInstance("two")
	ev2 := &Event{Kind: Ingress, RequestID: "r2"}
	l.prepare(ev2)
	if ev.Instance != "one" || ev2.Instance != "two" {
		t.Errorf("instances %q, %q; want one, two", ev.Instance, ev2.Instance)
	}
}

// Reopen reopens the file sinks in force: one added by a change too, not one
// it removed.
func TestReopenFollowsTheSinksInForce(t *testing.T) {
	dir := t.TempDir()
	open := func(name string) *FileSink {
		f, err := OpenFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		return f
	}
	l, err := New(Config{Sinks: []Sink{open("old.log")}, SinkNames: []string{"old"}})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	c, err := l.PrepareSinks([]SinkSpec{{Name: "new", Sink: open("new.log")}})
	if err != nil {
		t.Fatal(err)
	}
	c.Commit()
	if err := os.Rename(filepath.Join(dir, "new.log"), filepath.Join(dir, "new.log.1")); err != nil {
		t.Fatal(err)
	}
	if err := l.Reopen(); err != nil { // the removed sink is closed: reopening it would fail
		t.Fatal(err)
	}
	l.Record(&Event{Kind: Ingress, RequestID: "after-rotation"})
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(dir, "new.log"))
	if err != nil || !strings.Contains(string(b), "after-rotation") {
		t.Errorf("new.log after Reopen: %q, %v; want the record", b, err)
	}
}
