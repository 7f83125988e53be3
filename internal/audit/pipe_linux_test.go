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
	return r, w
}

// readAll reads r to its end in the background, chunk bytes at a time with
// pause between them.
func readAll(r io.Reader, chunk int, pause time.Duration) <-chan []byte {
	out := make(chan []byte, 1)
	go func() {
		var all []byte
		b := make([]byte, chunk)
		for {
			n, err := r.Read(b)
			all = append(all, b[:n]...)
			if err != nil {
				out <- all
				return
			}
			time.Sleep(pause)
		}
	}()
	return out
}

// lines returns n numbered JSON lines of about size bytes each, from *next.
func lines(next *int, n, size int) []byte {
	var b bytes.Buffer
	for range n {
		*next++
		fmt.Fprintf(&b, "{\"n\":%d,\"pad\":%q}\n", *next, strings.Repeat("x", size-20))
	}
	return b.Bytes()
}

// TestStdoutSinkStalls: a stdout sink whose reader stopped reading fails
// its write after the stall timeout, and refuses the writes after it at
// once, instead of blocking. When the reader reads again, slowly, the batch
// that waited goes out whole, and the sink goes on with batches larger than
// the pipe holds. The reader sees exactly the batches the sink took, whole
// and in order, and none it refused.
func TestStdoutSinkStalls(t *testing.T) {
	for _, inherited := range []bool{false, true} {
		t.Run(map[bool]string{false: "os.Pipe", true: "inherited"}[inherited], func(t *testing.T) {
			r, w := stalledPipe(t, inherited)
			s := NewWriterSink(w)
			if s.stall == nil {
				t.Fatal("a pipe got no stallWriter")
			}
			s.stall.stall = 50 * time.Millisecond
			ctx := context.Background()
			var want bytes.Buffer // what the reader must see
			n := 0
			var stall *StallError
			for i := 0; ; i++ {
				if i == 1000 {
					t.Fatal("the pipe never filled")
				}
				b := lines(&n, 7, 1000)
				err := s.Write(ctx, b)
				if err != nil && (!errors.As(err, &stall) || !stall.Waiting) {
					t.Fatalf("write %d: %v, want nil or a waiting *StallError", i, err)
				}
				want.Write(b) // taken, or waiting: it goes out once the reader reads
				if err != nil {
					break
				}
			}
			for range 20 {
				if err := s.Write(ctx, lines(&n, 7, 1000)); !errors.As(err, &stall) || stall.Waiting {
					t.Fatalf("stalled write: %v, want a refusing *StallError", err)
				}
			}

			// The reader reads again, 64 KiB a millisecond.
			got := readAll(r, 64<<10, time.Millisecond)
			for i, ok := 0, 0; ok < 20; i++ {
				if i == 10000 {
					t.Fatalf("only %d of 20 large batches in a row went out", ok)
				}
				b := lines(&n, 256, 1000) // 256 KB: four times what the pipe holds
				err := s.Write(ctx, b)
				switch {
				case err == nil:
					want.Write(b)
					ok++
				case errors.As(err, &stall) && stall.Waiting:
					want.Write(b)
					ok = 0
				case errors.As(err, &stall):
					ok = 0
					time.Sleep(time.Millisecond)
				default:
					t.Fatalf("write: %v", err)
				}
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

// TestStdoutSinkWaitEndsWithContext: a write waiting for a stalled reader
// ends when its context does (a delivery loop stopped by a change or
// Close), however long the stall timeout; its batch still goes out whole
// once the reader reads.
func TestStdoutSinkWaitEndsWithContext(t *testing.T) {
	r, w := stalledPipe(t, true)
	s := NewWriterSink(w)
	s.stall.stall = time.Hour
	ctx, cancel := context.WithCancel(context.Background())
	n := 0
	var want bytes.Buffer
	done := make(chan error, 1)
	go func() {
		for {
			b := lines(&n, 8, 1000)
			want.Write(b)
			if err := s.WriteBatch(ctx, [][]byte{b}); err != nil {
				done <- err
				return
			}
		}
	}()
	time.Sleep(50 * time.Millisecond) // the pipe fills; the write waits
	cancel()
	var stall *StallError
	if err := <-done; !errors.As(err, &stall) || !stall.Waiting {
		t.Fatalf("write ended with %v, want a waiting *StallError", err)
	}
	got := readAll(r, 4096, 0)
	if err := s.Close(); err != nil {
		t.Logf("close: %v", err) // the batch may still wait for the reader
	}
	w.Close()
	if diff := cmp.Diff(want.String(), string(<-got)); diff != "" {
		t.Errorf("the reader's lines (-written +read):\n%.2000s", diff)
	}
}

// TestStdoutSinksShareTheWait: two sinks on one stdout (a sink and the one
// a reload replaces it with) write one at a time: while the first one's
// batch waits for the reader, the second is refused, even after the first
// is closed, so the reader never gets two batches mixed.
func TestStdoutSinksShareTheWait(t *testing.T) {
	r, w := stalledPipe(t, true)
	a, b := NewWriterSink(w), NewWriterSink(w)
	if a.stall != b.stall {
		t.Fatal("two sinks on one file got two stallWriters")
	}
	a.stall.stall = 20 * time.Millisecond
	ctx := context.Background()
	n := 0
	var want bytes.Buffer
	var stall *StallError
	for i := 0; ; i++ {
		if i == 1000 {
			t.Fatal("the pipe never filled")
		}
		batch := lines(&n, 8, 1000)
		want.Write(batch)
		if err := a.Write(ctx, batch); err != nil {
			if !errors.As(err, &stall) || !stall.Waiting {
				t.Fatalf("write: %v", err)
			}
			break
		}
	}
	if err := a.Close(); err != nil {
		t.Errorf("close of a sink that another shares: %v", err)
	}
	if err := b.Write(ctx, lines(&n, 8, 1000)); !errors.As(err, &stall) || stall.Waiting {
		t.Fatalf("the other sink's write: %v, want a refusing *StallError", err)
	}
	got := readAll(r, 4096, 0)
	last := lines(&n, 8, 1000)
	for i := 0; ; i++ {
		if i == 10000 {
			t.Fatal("the other sink never wrote")
		}
		if err := b.Write(ctx, last); err == nil {
			break
		}
		time.Sleep(time.Millisecond)
	}
	want.Write(last)
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	w.Close()
	if diff := cmp.Diff(want.String(), string(<-got)); diff != "" {
		t.Errorf("the reader's lines (-written +read):\n%.2000s", diff)
	}
}

// TestLoggerWithStalledStdout: without a journal, a stdout whose reader
// stopped reading holds back neither the other sinks, nor a change of sinks
// (here one that replaces the stdout sink itself), nor Close. What stdout
// lost is counted and said by gap records: every record is on stdout or in
// a gap record for it, and only a batch that waited for the reader can be
// in both. Every line stdout's reader gets is whole.
func TestLoggerWithStalledStdout(t *testing.T) {
	r, w := stalledPipe(t, true)
	stdout := NewWriterSink(w)
	stdout.stall.stall = 50 * time.Millisecond
	var other collectSink
	l, err := New(Config{
		Sinks:        []Sink{stdout, &other},
		SinkNames:    []string{"stdout", "other"},
		BlockTimeout: 10 * time.Second, // no drops at the queue: the writer goes on
	})
	if err != nil {
		t.Fatal(err)
	}
	const before, after = 6000, 3000 // more than the queue holds, before
	for i := range before {
		l.Record(&Event{RequestID: fmt.Sprint(i)})
	}
	// A change that replaces the stdout sink, and adds one, goes through.
	var third collectSink
	change, err := l.PrepareSinks([]SinkSpec{{Name: "stdout", Sink: NewWriterSink(w)}, {Name: "other"}, {Name: "third", Sink: &third}})
	if err != nil {
		t.Fatal(err)
	}
	change.Commit()
	got := readAll(r, 64<<10, 0)
	for i := range after {
		l.Record(&Event{RequestID: fmt.Sprint(before + i)})
		if i%100 == 0 {
			time.Sleep(time.Millisecond)
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
	ids := requestIDs(other.events(t))
	if len(ids) != before+after {
		t.Fatalf("other sink: %d events, want %d", len(ids), before+after)
	}
	for i, id := range ids {
		if id != fmt.Sprint(i) {
			t.Fatalf("other sink: event %d is %q", i, id)
		}
	}
	evs := decodeLines(t, string(<-got)) // fails on a line cut short
	seen := map[uint64]bool{}
	var maxSeq uint64
	for _, ev := range evs {
		seen[ev.Sequence] = true
	}
	lost := map[uint64]bool{}
	var dropped uint64
	var gaps []Gap
	for _, ev := range other.events(t) {
		maxSeq = max(maxSeq, ev.Sequence)
		g := ev.Gap
		if g == nil || g.Sink != "stdout" {
			continue
		}
		gaps = append(gaps, *g)
		if g.Reason != "sink_failed" || g.Dropped != g.ToSeq-g.FromSeq+1 {
			t.Errorf("gap record %+v", *g)
		}
		both := 0
		for s := g.FromSeq; s <= g.ToSeq; s++ {
			lost[s] = true
			if seen[s] {
				both++
			}
		}
		if both > maxBatch {
			t.Errorf("%d records of gap record %+v are on stdout: more than the batch that waited", both, *g)
		}
		dropped += g.Dropped
	}
	if len(gaps) == 0 {
		t.Fatal("no gap record for stdout")
	}
	for s := uint64(1); s <= maxSeq; s++ {
		if !seen[s] && !lost[s] {
			t.Fatalf("record %d is neither on stdout nor in a gap record (%+v)", s, gaps)
		}
	}
	if st.Errors != dropped {
		t.Errorf("Stats %+v: want %d errors, what the gap records count", st, dropped)
	}
	if len(third.lines) == 0 {
		t.Error("the sink added by the change got nothing")
	}
	t.Logf("stdout got %d of %d records; %d gap records", len(seen), maxSeq, len(gaps))
}

// TestJournalWithStalledStdout: with a journal, a stdout whose reader
// stalls delivers everything once the reader reads again, every line whole;
// and a stall does not hold Close past its drain timeout, after which the
// next start delivers what the pipe did not take.
func TestJournalWithStalledStdout(t *testing.T) {
	dir := t.TempDir()
	r, w := stalledPipe(t, true)
	stdout := NewWriterSink(w)
	stdout.stall.stall = 50 * time.Millisecond
	l := newJournalLogger(t, openTestJournal(t, dir, JournalOptions{}),
		Config{Sinks: []Sink{stdout}, SinkNames: []string{"stdout"}, DrainTimeout: 100 * time.Millisecond})
	const n = 3000
	for i := range n {
		l.Record(&Event{RequestID: fmt.Sprint(i)})
	}
	for deadline := time.Now().Add(10 * time.Second); l.Stats().Sinks[0].Retries < 3; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the sink never stalled")
		}
	}
	// The reader reads again: everything is delivered.
	got := readAll(r, 64<<10, 0)
	for deadline := time.Now().Add(20 * time.Second); l.Stats().Sinks[0].Delivered < n; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("delivered %d of %d after the reader came back", l.Stats().Sinks[0].Delivered, n)
		}
	}
	// And now it stalls for good, with a stall timeout longer than the
	// drain timeout: Close ends the wait.
	stdout.stall.stall = time.Hour
	for i := range n {
		l.Record(&Event{RequestID: fmt.Sprint(n + i)})
	}
	closed := make(chan error, 1)
	go func() { closed <- l.Close() }()
	select {
	case <-closed:
	case <-time.After(30 * time.Second):
		t.Fatal("Close hangs on a stalled stdout")
	}
	r2, w2, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	got2 := readAll(r2, 64<<10, 0)
	l = newJournalLogger(t, openTestJournal(t, dir, JournalOptions{}),
		Config{Sinks: []Sink{NewWriterSink(w2)}, SinkNames: []string{"stdout"}})
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	w2.Close()
	w.Close()
	delivered := map[string]bool{}
	for _, ev := range decodeLines(t, string(<-got)+string(<-got2)) {
		delivered[ev.RequestID] = true
	}
	for i := range 2 * n {
		if !delivered[fmt.Sprint(i)] {
			t.Fatalf("record %d never delivered (%d were)", i, len(delivered))
		}
	}
}
