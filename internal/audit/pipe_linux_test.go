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

// setStall sets the stall timeout while the sink may be writing.
func (w *stallWriter) setStall(d time.Duration) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.stall = d
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

// closeAndRead closes the sinks, then the pipe's write end, and checks that
// its reader got exactly want.
func closeAndRead(t *testing.T, w *os.File, got <-chan []byte, want []byte, sinks ...*WriterSink) {
	t.Helper()
	for _, s := range sinks {
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
	}
	w.Close()
	if diff := cmp.Diff(string(want), string(<-got)); diff != "" {
		t.Errorf("the reader's lines (-written +read):\n%.2000s", diff)
	}
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

// fill writes batches of 7 lines with WriteBatch until one waits for the
// reader (the pipe is full), and returns what it wrote, the waiting batch
// last.
func fill(t *testing.T, s *WriterSink, n *int) (wrote []byte, waiting []byte) {
	t.Helper()
	var stall *StallError
	for i := 0; i < 1000; i++ {
		b := lines(n, 7, 1000)
		wrote = append(wrote, b...)
		err := s.WriteBatch(context.Background(), [][]byte{b})
		if err == nil {
			continue
		}
		if !errors.As(err, &stall) || !stall.Waiting {
			t.Fatalf("write %d: %v, want nil or a waiting *StallError", i, err)
		}
		return wrote, b
	}
	t.Fatal("the pipe never filled")
	return nil, nil
}

// TestStdoutSinkStalls: fed from a journal, a stdout sink whose reader
// stopped reading fails its batch after the stall timeout and refuses other
// batches at once, instead of blocking; a retry of the batch that waits
// does not send it twice. When the reader reads again, slowly, the sink
// goes on with batches four times what the pipe holds. The reader gets
// every batch once, whole and in order, and none the sink refused.
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
			n := 0
			want, waiting := fill(t, s, &n)
			var stall *StallError
			for range 5 {
				if err := s.WriteBatch(ctx, [][]byte{lines(&n, 7, 1000)}); !errors.As(err, &stall) || stall.Waiting {
					t.Fatalf("another batch: %v, want a refusing *StallError", err)
				}
				if err := s.WriteBatch(ctx, [][]byte{waiting}); !errors.As(err, &stall) || !stall.Waiting {
					t.Fatalf("the waiting batch again: %v, want a waiting *StallError", err)
				}
			}
			// The reader reads again, 64 KiB a millisecond; the retry of
			// the waiting batch goes through, and so do large batches. (A
			// second without progress: a loaded machine's scheduling is
			// not a stall.)
			s.stall.setStall(time.Second)
			got := readAll(r, 64<<10, time.Millisecond)
			if err := s.WriteBatch(ctx, [][]byte{waiting}); err != nil {
				t.Fatalf("the waiting batch, once the reader reads: %v", err)
			}
			for range 20 {
				b := lines(&n, 256, 1000) // 256 KB
				if err := s.WriteBatch(ctx, [][]byte{b}); err != nil {
					t.Fatalf("a large batch to a slow reader: %v", err)
				}
				want = append(want, b...)
			}
			closeAndRead(t, w, got, want, s)
		})
	}
}

// TestStdoutSinkQueues: without a journal (Write), a stdout sink never
// waits: it queues for the reader until the reader has taken nothing for
// the stall timeout, and then refuses. Once the reader reads again it takes
// batches again; the reader gets every batch the sink took, whole and in
// order, and none it refused.
func TestStdoutSinkQueues(t *testing.T) {
	r, w := stalledPipe(t, true)
	s := NewWriterSink(w)
	s.stall.stall = 50 * time.Millisecond
	ctx := context.Background()
	n, refused := 0, 0
	var want []byte
	var stall *StallError
	for i := 0; refused < 20; i++ {
		if i == 10000 {
			t.Fatal("the sink never refused a batch")
		}
		b := lines(&n, 7, 1000)
		switch err := s.Write(ctx, b); {
		case err == nil:
			if refused > 0 {
				t.Fatal("a batch taken after one was refused, with nobody reading")
			}
			want = append(want, b...)
		case errors.As(err, &stall) && !stall.Waiting:
			refused++
		default:
			t.Fatalf("write: %v", err)
		}
		time.Sleep(time.Millisecond / 2)
	}
	got := readAll(r, 64<<10, 0)
	for i, taken := 0, 0; taken < 100; i++ {
		if i == 10000 {
			t.Fatal("the sink never took batches again")
		}
		b := lines(&n, 7, 1000)
		if err := s.Write(ctx, b); err == nil {
			want = append(want, b...)
			taken++
		} else if !errors.As(err, &stall) {
			t.Fatalf("write: %v", err)
		}
		time.Sleep(time.Millisecond / 10)
	}
	closeAndRead(t, w, got, want, s)
}

// TestStdoutSinkWaitEndsWithContext: a batch waiting for a stalled reader
// gives up when its context ends (a delivery loop stopped by a change or
// Close), however long the stall timeout; the batch still goes out, once,
// when the reader reads.
func TestStdoutSinkWaitEndsWithContext(t *testing.T) {
	r, w := stalledPipe(t, true)
	s := NewWriterSink(w)
	s.stall.stall = time.Hour
	ctx, cancel := context.WithCancel(context.Background())
	n := 0
	var want []byte
	done := make(chan error, 1)
	go func() {
		for {
			b := lines(&n, 8, 1000)
			want = append(want, b...)
			if err := s.WriteBatch(ctx, [][]byte{b}); err != nil {
				done <- err
				return
			}
		}
	}()
	time.Sleep(50 * time.Millisecond) // the pipe fills; the batch waits
	cancel()
	var stall *StallError
	if err := <-done; !errors.As(err, &stall) || !stall.Waiting {
		t.Fatalf("write ended with %v, want a waiting *StallError", err)
	}
	got := readAll(r, 4096, 0)
	closeAndRead(t, w, got, want, s)
}

// TestStdoutSinksShareTheQueue: two sinks on one stdout (a sink and the one
// a reload replaces it with) write through one queue: while the first one's
// batch waits for the reader, the second's is refused, even after the
// first is closed, and the reader never gets two batches mixed.
func TestStdoutSinksShareTheQueue(t *testing.T) {
	r, w := stalledPipe(t, true)
	a, b := NewWriterSink(w), NewWriterSink(w)
	if a.stall != b.stall {
		t.Fatal("two sinks on one file got two stallWriters")
	}
	a.stall.stall = 20 * time.Millisecond
	ctx := context.Background()
	n := 0
	want, _ := fill(t, a, &n)
	if err := a.Close(); err != nil {
		t.Errorf("close of a sink that another shares: %v", err)
	}
	var stall *StallError
	if err := b.WriteBatch(ctx, [][]byte{lines(&n, 8, 1000)}); !errors.As(err, &stall) || stall.Waiting {
		t.Fatalf("the other sink's batch: %v, want a refusing *StallError", err)
	}
	got := readAll(r, 4096, 0)
	last := lines(&n, 8, 1000)
	for i := 0; ; i++ { // as a delivery loop retries
		err := b.WriteBatch(ctx, [][]byte{last})
		if err == nil {
			break
		}
		if i == 10000 || !errors.As(err, &stall) {
			t.Fatalf("the other sink's batch, once the reader reads: %v", err)
		}
		time.Sleep(time.Millisecond)
	}
	want = append(want, last...)
	closeAndRead(t, w, got, want, b)
}

// TestStdoutSinkRetriesAreItsOwn: two sinks fed from a journal share one
// stdout (a plain and an OCSF one, say). Each one's retry of the batch it
// gave up on waits for that batch, even after the other queued one of its
// own: no batch reaches the reader twice.
func TestStdoutSinkRetriesAreItsOwn(t *testing.T) {
	r, w := stalledPipe(t, true)
	a, b := NewWriterSink(w), NewWriterSink(w)
	a.stall.setStall(time.Hour) // only contexts end the waits
	n := 0
	var want []byte
	var stall *StallError
	// gaveUp writes batches with s until one waits, gives up on it after
	// a moment, and returns it.
	gaveUp := func(s *WriterSink) []byte {
		for {
			batch := lines(&n, 8, 1000)
			want = append(want, batch...)
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
			err := s.WriteBatch(ctx, [][]byte{batch})
			cancel()
			if err == nil {
				continue
			}
			if !errors.As(err, &stall) || !stall.Waiting {
				t.Fatalf("write: %v, want a waiting *StallError", err)
			}
			return batch
		}
	}
	x := gaveUp(a)
	y := gaveUp(b) // queued behind x
	got := readAll(r, 64<<10, 0)
	for _, retry := range []struct {
		s     *WriterSink
		batch []byte
	}{{a, x}, {b, y}} {
		if err := retry.s.WriteBatch(context.Background(), [][]byte{retry.batch}); err != nil {
			t.Fatalf("retry: %v", err)
		}
	}
	closeAndRead(t, w, got, want, a, b)
}

// TestStdoutSinkCloseReportsWhatWaits: closing a stdout sink whose reader
// stopped reading says how many records never reached it; they go out if
// the reader reads again.
func TestStdoutSinkCloseReportsWhatWaits(t *testing.T) {
	r, w := stalledPipe(t, true)
	s := NewWriterSink(w)
	s.stall.stall = time.Second
	n := 0
	var want []byte
	for range 200 { // 1.4 MB: more than the pipe holds
		b := lines(&n, 7, 1000)
		if err := s.Write(context.Background(), b); err != nil {
			t.Fatal(err)
		}
		want = append(want, b...)
	}
	err := s.Close()
	if err == nil || !strings.Contains(err.Error(), "records") {
		t.Fatalf("Close: %v, want the records that wait", err)
	}
	got := readAll(r, 64<<10, 0)
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(time.Millisecond) {
		stallWriters.Lock()
		_, left := stallWriters.m[w]
		stallWriters.Unlock()
		if !left {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the queue's goroutine never ended")
		}
	}
	closeAndRead(t, w, got, want)
	t.Logf("Close: %v", err)
}

// TestLoggerWithStalledStdout: without a journal, a stdout whose reader
// stopped reading holds back neither the other sinks (nothing is dropped at
// the queue), nor a change of sinks (here one that replaces the stdout sink
// itself), nor Close. What stdout lost is counted and said by gap records,
// exactly: every record is either on stdout or in a gap record for it.
// Every line stdout's reader gets is whole.
func TestLoggerWithStalledStdout(t *testing.T) {
	r, w := stalledPipe(t, true)
	stdout := NewWriterSink(w)
	stdout.stall.stall = 50 * time.Millisecond
	var other collectSink
	l, err := New(Config{Sinks: []Sink{stdout, &other}, SinkNames: []string{"stdout", "other"}})
	if err != nil {
		t.Fatal(err)
	}
	const before, after = 6000, 3000 // more than the queue holds, before
	for i := range before {
		l.Record(&Event{RequestID: fmt.Sprint(i)})
		if i%100 == 0 {
			time.Sleep(time.Millisecond) // past the stall timeout in all
		}
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
		for s := g.FromSeq; s <= g.ToSeq; s++ {
			lost[s] = true
			if seen[s] {
				t.Fatalf("record %d is on stdout and in gap record %+v", s, *g)
			}
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
// stalls, then reads slowly, gets everything, every line whole and no
// record twice; and a stall does not hold Close past its drain timeout,
// after which the next start delivers what the pipe did not take.
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
	// The reader reads again, slowly (16 KiB every 2 ms): everything is
	// delivered.
	stdout.stall.setStall(time.Second)
	got := readAll(r, 16<<10, 2*time.Millisecond)
	for deadline := time.Now().Add(30 * time.Second); l.Stats().Sinks[0].Delivered < n; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("delivered %d of %d to a slow reader", l.Stats().Sinks[0].Delivered, n)
		}
	}
	// And now it stalls for good, with a stall timeout longer than the
	// drain timeout: Close ends the wait.
	stdout.stall.setStall(time.Hour)
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
	first := decodeLines(t, string(<-got)) // fails on a line cut short
	times := map[string]int{}
	for _, ev := range first {
		times[ev.RequestID]++
	}
	for i := range n {
		if c := times[fmt.Sprint(i)]; c != 1 {
			t.Fatalf("record %d reached the slow reader %d times, want once", i, c)
		}
	}
	for _, ev := range decodeLines(t, string(<-got2)) {
		times[ev.RequestID]++
	}
	for i := range 2 * n {
		if times[fmt.Sprint(i)] == 0 {
			t.Fatalf("record %d never delivered", i)
		}
	}
}
