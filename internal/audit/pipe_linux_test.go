package audit

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// stalledPipe returns a pipe nobody reads yet: pollable, as os.Pipe makes
// it, or inherited, blocking, as stdout is.
func stalledPipe(t *testing.T, inherited bool) (r, w *os.File) {
	t.Helper()
	if !inherited {
		r, w, err := os.Pipe()
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { r.Close(); w.Close() })
		return r, w
	}
	var p [2]int
	if err := syscall.Pipe2(p[:], syscall.O_CLOEXEC); err != nil {
		t.Fatal(err)
	}
	r, w = os.NewFile(uintptr(p[0]), "r"), os.NewFile(uintptr(p[1]), "w")
	t.Cleanup(func() { r.Close(); w.Close() })
	if w.SetWriteDeadline(time.Time{}) == nil {
		t.Fatal("an inherited pipe is blocking: want no deadlines on it")
	}
	return r, w
}

// readAll reads r to its end in the background.
func readAll(r io.Reader) <-chan []byte {
	out := make(chan []byte, 1)
	go func() {
		b, _ := io.ReadAll(r)
		out <- b
	}()
	return out
}

// TestPipeSinkStalls: a stdout sink whose reader stopped reading fails its
// write after the stall timeout, and later ones at once, instead of
// blocking; when the reader reads again it goes on, and the reader has
// seen exactly the lines the sink said it took, whole and in order. An
// inherited, blocking pipe (stdout) gets a descriptor of the sink's own,
// and stays blocking itself.
func TestPipeSinkStalls(t *testing.T) {
	for _, inherited := range []bool{false, true} {
		t.Run(map[bool]string{false: "os.Pipe", true: "inherited"}[inherited], func(t *testing.T) {
			r, w := stalledPipe(t, inherited)
			s := NewWriterSink(w)
			if s.pipe == nil {
				t.Fatal("a pipe got no pipeWriter")
			}
			if s.pipe.own != inherited {
				t.Errorf("own = %v, want a descriptor of its own only for the inherited pipe", s.pipe.own)
			}
			s.pipe.stall = 50 * time.Millisecond
			ctx := context.Background()

			// Batches of 7 lines of 1,000 bytes: one of them ends cut short.
			var want bytes.Buffer // what the reader must see
			n := 0
			batch := func() []byte {
				var b bytes.Buffer
				for range 7 {
					n++
					fmt.Fprintf(&b, "{\"n\":%d,\"pad\":%q}\n", n, strings.Repeat("x", 980))
				}
				return b.Bytes()
			}
			took := func(b []byte, lines int) {
				for i := 0; i < lines; i++ {
					j := bytes.IndexByte(b, '\n')
					want.Write(b[:j+1])
					b = b[j+1:]
				}
			}
			var stall *StallError
			for i := 0; ; i++ {
				if i == 1000 {
					t.Fatal("the pipe never filled")
				}
				b := batch()
				err := s.Write(ctx, b)
				if err == nil {
					took(b, 7)
					continue
				}
				if !errors.As(err, &stall) {
					t.Fatalf("write: %v, want a *StallError", err)
				}
				took(b, stall.Lines)
				break
			}
			// Stalled: the next writes fail at once, taking nothing.
			for range 20 {
				if err := s.Write(ctx, batch()); !errors.As(err, &stall) || stall.Lines != 0 {
					t.Fatalf("stalled write: %v, want a *StallError with no lines", err)
				}
			}
			if inherited {
				// w itself still blocks (no deadlines): only the sink's own
				// descriptor is non-blocking.
				if w.SetWriteDeadline(time.Time{}) == nil {
					t.Error("the inherited pipe became non-blocking")
				}
			}

			// The reader reads again: the sink goes on, after its probe.
			got := readAll(r)
			for i := 0; ; i++ {
				if i == 10000 {
					t.Fatal("the sink never wrote again")
				}
				b := batch()
				err := s.Write(ctx, b)
				if err == nil {
					took(b, 7)
					break
				}
				if !errors.As(err, &stall) {
					t.Fatalf("write: %v", err)
				}
				took(b, stall.Lines)
				time.Sleep(time.Millisecond)
			}
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			w.Close()
			if diff := cmp.Diff(want.String(), string(<-got)); diff != "" {
				t.Errorf("the reader's lines (-what the sink took +read):\n%.2000s", diff)
			}
		})
	}
}

// TestPipeSinkWriteEnds: a write waiting for a stalled reader ends when its
// context does (a delivery loop stopped) and when the sink closes, however
// long its stall timeout.
func TestPipeSinkWriteEnds(t *testing.T) {
	tests := []struct {
		name string
		end  func(s *WriterSink, cancel context.CancelFunc)
	}{
		{"context ends", func(_ *WriterSink, cancel context.CancelFunc) { cancel() }},
		{"sink closes", func(s *WriterSink, _ context.CancelFunc) { s.Close() }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, w := stalledPipe(t, true)
			s := NewWriterSink(w)
			s.pipe.stall = time.Hour
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			line := []byte(strings.Repeat("x", 1023) + "\n")
			done := make(chan error, 1)
			go func() {
				for {
					if err := s.WriteBatch(ctx, [][]byte{line, line}); err != nil {
						done <- err
						return
					}
				}
			}()
			// Wait until the writer waits: the pipe is full.
			for s.mu.TryLock() {
				s.mu.Unlock()
				time.Sleep(time.Millisecond)
			}
			time.Sleep(20 * time.Millisecond)
			tc.end(s, cancel)
			err := <-done
			var stall *StallError
			if !errors.As(err, &stall) && !errors.Is(err, ErrClosed) {
				t.Errorf("write ended with %v, want a *StallError", err)
			}
		})
	}
}

// TestLoggerWithStalledStdout: without a journal, a stdout whose reader
// stopped reading holds back neither the other sinks, nor a change of
// sinks, nor Close. What stdout lost is counted and said by gap records,
// exactly: every record is either on stdout or in a gap record for it.
func TestLoggerWithStalledStdout(t *testing.T) {
	r, w := stalledPipe(t, true)
	stdout := NewWriterSink(w)
	stdout.pipe.stall = 50 * time.Millisecond
	var other collectSink
	l, err := New(Config{
		Sinks:        []Sink{stdout, &other},
		SinkNames:    []string{"stdout", "other"},
		BlockTimeout: 10 * time.Second, // no drops at the queue: the writer goes on
	})
	if err != nil {
		t.Fatal(err)
	}
	const before, after = 6000, 300 // more than the queue holds, before
	for i := range before {
		l.Record(&Event{RequestID: fmt.Sprint(i)})
	}
	// A change of sinks (here: one more) goes through.
	var third collectSink
	change, err := l.PrepareSinks([]SinkSpec{{Name: "stdout"}, {Name: "other"}, {Name: "third", Sink: &third}})
	if err != nil {
		t.Fatal(err)
	}
	change.Commit()
	got := readAll(r)
	for i := range after {
		l.Record(&Event{RequestID: fmt.Sprint(before + i)})
		if i%10 == 0 {
			time.Sleep(time.Millisecond) // the sink's probes find the reader
		}
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	w.Close()

	st := l.Stats()
	if st.Dropped != 0 {
		t.Errorf("Stats %+v: want none dropped at the queue", st)
	}
	// The other sink has every event, in order.
	ids := requestIDs(other.events(t))
	if len(ids) != before+after {
		t.Fatalf("other sink: %d events, want %d", len(ids), before+after)
	}
	for i, id := range ids {
		if id != fmt.Sprint(i) {
			t.Fatalf("other sink: event %d is %q", i, id)
		}
	}
	// stdout: every record whole, and each missing one in a gap record.
	evs := decodeLines(t, string(<-got))
	seen := map[uint64]bool{}
	var lost, maxSeq uint64
	for _, ev := range evs {
		seen[ev.Sequence] = true
		maxSeq = max(maxSeq, ev.Sequence)
	}
	var gaps []Gap
	for _, ev := range other.events(t) {
		maxSeq = max(maxSeq, ev.Sequence)
		if g := ev.Gap; g != nil && g.Sink == "stdout" {
			gaps = append(gaps, *g)
			if g.Reason != "sink_failed" || g.Dropped != g.ToSeq-g.FromSeq+1 {
				t.Errorf("gap record %+v", *g)
			}
			for s := g.FromSeq; s <= g.ToSeq; s++ {
				if seen[s] {
					t.Errorf("record %d is on stdout and in gap record %+v", s, *g)
				}
			}
			lost += g.Dropped
		}
	}
	if len(gaps) == 0 {
		t.Fatal("no gap record for stdout")
	}
	if missing := maxSeq - uint64(len(seen)); missing != lost {
		t.Errorf("stdout misses %d of %d records; its gap records say %d (%+v)", missing, maxSeq, lost, gaps)
	}
	if st.Errors != lost || st.Written != before+after-lost {
		t.Errorf("Stats %+v: want %d errors, the records stdout lost, and the other %d events written", st, lost, before+after-lost)
	}
	if len(third.lines) == 0 {
		t.Error("the sink added by the change got nothing")
	}
	t.Logf("stdout took %d of %d records; %d gap records", len(seen), maxSeq, len(gaps))
}

// TestJournalWithStalledStdout: with a journal, a stdout whose reader
// stalled does not hold Close past its drain timeout; what the pipe had
// not taken is delivered after the next start, to a reader that reads,
// every record whole.
func TestJournalWithStalledStdout(t *testing.T) {
	dir := t.TempDir()
	r, w := stalledPipe(t, true)
	stdout := NewWriterSink(w)
	stdout.pipe.stall = time.Hour
	l := newJournalLogger(t, openTestJournal(t, dir, JournalOptions{}),
		Config{Sinks: []Sink{stdout}, SinkNames: []string{"stdout"}, DrainTimeout: 100 * time.Millisecond})
	const n = 2000
	for i := range n {
		l.Record(&Event{RequestID: fmt.Sprint(i)})
	}
	closed := make(chan error, 1)
	go func() { closed <- l.Close() }()
	select {
	case <-closed: // its error: the record the stall cut short
	case <-time.After(30 * time.Second):
		t.Fatal("Close hangs on a stalled stdout")
	}
	// What the pipe took before it filled is delivered; a line the stall
	// cut short, at its end, was not acknowledged.
	w.Close()
	first, _ := io.ReadAll(r)
	if i := bytes.LastIndexByte(first, '\n'); i+1 < len(first) {
		first = first[:i+1]
	}

	r2, w2, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	got := readAll(r2)
	l = newJournalLogger(t, openTestJournal(t, dir, JournalOptions{}),
		Config{Sinks: []Sink{NewWriterSink(w2)}, SinkNames: []string{"stdout"}})
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	w2.Close()
	delivered := map[string]bool{}
	for _, ev := range decodeLines(t, string(first)+string(<-got)) {
		delivered[ev.RequestID] = true
	}
	for i := range n {
		if !delivered[fmt.Sprint(i)] {
			t.Fatalf("record %d never delivered after the restart (%d were)", i, len(delivered))
		}
	}
}
