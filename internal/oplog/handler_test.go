package oplog_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"testing/slogtest"
	"testing/synctest"
	"time"

	"github.com/google/go-cmp/cmp"

	"tollgate.dev/tollgate/internal/oplog"
)

// lockedBuffer collects what the writer goroutine writes.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) lines() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	s := strings.TrimSuffix(l.b.String(), "\n")
	if s == "" {
		return nil
	}
	return strings.Split(s, "\n")
}

// blockingWriter is a stderr whose reader stopped: Write blocks until release
// is closed, then writes to out.
type blockingWriter struct {
	release chan struct{}
	out     lockedBuffer
}

func (w *blockingWriter) Write(p []byte) (int, error) {
	<-w.release
	return w.out.Write(p)
}

func newHandler(t *testing.T, w interface{ Write([]byte) (int, error) }, o oplog.Options) *oplog.Handler {
	t.Helper()
	h, err := oplog.New(w, o)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

func closeNow(t *testing.T, h *oplog.Handler) {
	t.Helper()
	if err := h.Close(context.Background()); err != nil {
		t.Fatalf("Close: %v", err)
	}
}

var dropLine = regexp.MustCompile(`msg="(\d+ log lines? dropped)" dropped=(\d+)$`)

// A stalled reader must cost the caller nothing: Handle returns at once (in a
// synctest bubble, a Handle that waited for the writer would deadlock the
// test), every line that finds the queue full is counted, and the drops are
// told, with their exact count, once the writer moves again.
func TestHandleDoesNotWaitForABlockedWriter(t *testing.T) {
	tests := []struct {
		name        string
		queueSize   int
		records     int
		wantDropped uint64
		wantSummary string
	}{
		{name: "far over the queue", queueSize: 4, records: 100, wantDropped: 95, wantSummary: "95 log lines dropped"},
		{name: "one over", queueSize: 16, records: 18, wantDropped: 1, wantSummary: "1 log line dropped"},
		{name: "exactly fits", queueSize: 16, records: 17},
		{name: "queue of one", queueSize: 1, records: 2},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				w := &blockingWriter{release: make(chan struct{})}
				h := newHandler(t, w, oplog.Options{QueueSize: tc.queueSize, Burst: -1})
				log := slog.New(h)
				log.Info("line", "i", 0)
				synctest.Wait() // the writer goroutine holds line 0 and is blocked in Write
				start := time.Now()
				for i := 1; i < tc.records; i++ {
					log.Info("line", "i", i)
				}
				if d := time.Since(start); d != 0 {
					t.Errorf("logging took %v of (fake) time, want none", d)
				}
				if got, want := h.Stats(), (oplog.Stats{Dropped: tc.wantDropped}); got != want {
					t.Errorf("stats while blocked = %+v, want %+v", got, want)
				}

				// Close is bounded by its context even though the writer never returns.
				ctx, cancel := context.WithTimeout(context.Background(), time.Second)
				defer cancel()
				start = time.Now()
				if err := h.Close(ctx); !errors.Is(err, context.DeadlineExceeded) {
					t.Errorf("Close with a blocked writer = %v, want DeadlineExceeded", err)
				}
				if d := time.Since(start); d != time.Second {
					t.Errorf("Close returned after %v, want 1s", d)
				}

				close(w.release)
				closeNow(t, h) // and the writer goroutine exits, or synctest.Test reports a deadlock
				kept := tc.records - int(tc.wantDropped)
				summaries := 0
				if tc.wantDropped > 0 {
					summaries = 1
				}
				want := oplog.Stats{Written: uint64(kept + summaries), Dropped: tc.wantDropped}
				if got := h.Stats(); got != want {
					t.Errorf("stats after release = %+v, want %+v", got, want)
				}
				lines := w.out.lines()
				if len(lines) != kept+summaries {
					t.Fatalf("%d lines written, want %d:\n%s", len(lines), kept+summaries, strings.Join(lines, "\n"))
				}
				for i := range kept {
					if !strings.HasSuffix(lines[i], "msg=line i="+strconv.Itoa(i)) {
						t.Errorf("line %d = %q, want record %d", i, lines[i], i)
					}
				}
				if summaries == 1 {
					m := dropLine.FindStringSubmatch(lines[kept])
					if m == nil || m[1] != tc.wantSummary || m[2] != strconv.FormatUint(tc.wantDropped, 10) {
						t.Errorf("summary = %q, want %q with dropped=%d", lines[kept], tc.wantSummary, tc.wantDropped)
					}
				}
			})
		})
	}
}

// gatedWriter writes one line per receive on step.
type gatedWriter struct {
	step chan struct{}
	out  lockedBuffer
}

func (w *gatedWriter) Write(p []byte) (int, error) {
	<-w.step
	return w.out.Write(p)
}

// Under sustained overload the queue never empties, and the drop summary
// still comes, after the lines that were queued when the drops happened.
func TestDropSummaryUnderSustainedOverload(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		w := &gatedWriter{step: make(chan struct{})}
		h := newHandler(t, w, oplog.Options{QueueSize: 2, Burst: -1})
		log := slog.New(h)
		n := 0
		logNext := func() { log.Info("line", "i", n); n++ }
		logNext()
		synctest.Wait() // line 0 in flight
		for range 9 {   // 2 queued, 7 dropped
			logNext()
		}
		for range 2 { // each write makes room, which a new line takes at once
			w.step <- struct{}{}
			synctest.Wait()
			logNext()
		}
		w.step <- struct{}{} // line 2: the queue is still full, and the summary is due
		synctest.Wait()
		w.step <- struct{}{} // the summary
		synctest.Wait()
		if lines := w.out.lines(); len(lines) != 4 || !strings.HasSuffix(lines[3], `msg="7 log lines dropped" dropped=7`) {
			t.Errorf("lines = %q, want records 0-2 then the summary of 7 drops", lines)
		}
		close(w.step) // the rest flows
		closeNow(t, h)
		if got, want := h.Stats(), (oplog.Stats{Written: uint64(n - 7 + 1), Dropped: 7}); got != want {
			t.Errorf("stats = %+v, want %+v", got, want)
		}
	})
}

// Identical records pass a token bucket per key: a burst, then one per
// interval; the first that passes after a hold-back says how many were held.
func TestRateLimit(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		out := &lockedBuffer{}
		h := newHandler(t, out, oplog.Options{Burst: 3, Interval: 10 * time.Second})
		log := slog.New(h)
		steps := []struct {
			after      time.Duration // sleep before logging
			records    int
			wantPassed int
		}{
			{after: 0, records: 10, wantPassed: 3},               // the burst
			{after: 10 * time.Second, records: 6, wantPassed: 1}, // one token back
			{after: 25 * time.Second, records: 3, wantPassed: 2}, // two more (the half interval carries over)
			{after: 5 * time.Second, records: 1, wantPassed: 1},  // ... and completes here
			{after: time.Hour, records: 5, wantPassed: 3},        // refilled to the burst, not beyond
		}
		var passed, held int
		for i, s := range steps {
			time.Sleep(s.after)
			before := h.Stats().Suppressed
			for range s.records {
				log.Warn("upstream request failed", "route", "echo", "err", "connection refused")
			}
			if got := int(h.Stats().Suppressed - before); got != s.records-s.wantPassed {
				t.Errorf("step %d: %d suppressed, want %d", i, got, s.records-s.wantPassed)
			}
			passed += s.wantPassed
			held += s.records - s.wantPassed
		}
		closeNow(t, h)
		if got, want := h.Stats(), (oplog.Stats{Written: uint64(passed), Suppressed: uint64(held)}); got != want {
			t.Errorf("stats = %+v, want %+v", got, want)
		}
		var notes []string
		for _, l := range out.lines() {
			if i := strings.Index(l, " suppressed="); i >= 0 {
				notes = append(notes, l[i+1:])
			}
		}
		// 7 held after the burst, 5 after the single token, 1 after the pair; the
		// last line of step 4 and the hour later owe nothing more.
		if diff := cmp.Diff([]string{"suppressed=7", "suppressed=5", "suppressed=1"}, notes); diff != "" {
			t.Errorf("suppressed notes (-want +got):\n%s", diff)
		}
	})
}

// What makes two records "the same" for the limiter.
func TestRateLimitKey(t *testing.T) {
	base := func(l *slog.Logger) { l.Warn("m", "route", "echo", "requestId", "r1") }
	tests := []struct {
		name          string
		first, second func(*slog.Logger) // first defaults to base
		sameKey       bool
		rootLogs      func(*slog.Logger) *slog.Logger // derives the logger of the second record
	}{
		{name: "identical", second: base, sameKey: true},
		{name: "only the varying request id differs", second: func(l *slog.Logger) { l.Warn("m", "route", "echo", "requestId", "r2") }, sameKey: true},
		{name: "varying key elsewhere", second: func(l *slog.Logger) { l.Warn("m", "requestId", "r9", "route", "echo") }, sameKey: true},
		{name: "attribute order", first: func(l *slog.Logger) { l.Warn("m", "a", 1, "b", 2) }, second: func(l *slog.Logger) { l.Warn("m", "b", 2, "a", 1) }},
		{name: "level", second: func(l *slog.Logger) { l.Error("m", "route", "echo", "requestId", "r1") }},
		{name: "message", second: func(l *slog.Logger) { l.Warn("n", "route", "echo", "requestId", "r1") }},
		{name: "attribute value", second: func(l *slog.Logger) { l.Warn("m", "route", "other", "requestId", "r1") }},
		{name: "extra attribute", second: func(l *slog.Logger) { l.Warn("m", "route", "echo", "kind", "dial") }},
		{name: "With attributes", second: base, rootLogs: func(l *slog.Logger) *slog.Logger { return l.With("front", "mesh") }},
		{name: "group", second: base, rootLogs: func(l *slog.Logger) *slog.Logger { return l.WithGroup("g") }},
		{name: "inline group is its attributes", second: func(l *slog.Logger) { l.Warn("m", slog.Group("", "route", "echo")) }, sameKey: true},
		// A value that embeds what looks like another attribute is still one
		// value: a joined "key=value\x00" text would make these one key, and
		// let one record spend the other's tokens.
		{
			name:   "value that spells an attribute",
			first:  func(l *slog.Logger) { l.Warn("m", "route", "echo", "kind", "dial") },
			second: func(l *slog.Logger) { l.Warn("m", "route", "echo\x00kind=dial") },
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := newHandler(t, &lockedBuffer{}, oplog.Options{Burst: 1, Interval: time.Hour, VaryingKeys: []string{"requestId"}})
			root := slog.New(h)
			if tc.first != nil {
				tc.first(root)
			} else {
				base(root)
			}
			second := root
			if tc.rootLogs != nil {
				second = tc.rootLogs(root)
			}
			tc.second(second)
			closeNow(t, h)
			var want uint64
			if tc.sameKey {
				want = 1
			}
			if got := h.Stats().Suppressed; got != want {
				t.Errorf("suppressed = %d, want %d", got, want)
			}
		})
	}
}

func TestRateLimitOff(t *testing.T) {
	out := &lockedBuffer{}
	h := newHandler(t, out, oplog.Options{Burst: -1})
	for range 100 {
		slog.New(h).Info("same")
	}
	closeNow(t, h)
	if got, want := h.Stats(), (oplog.Stats{Written: 100}); got != want {
		t.Errorf("stats = %+v, want %+v", got, want)
	}
}

type errWriter struct{ err error }

func (w errWriter) Write([]byte) (int, error) { return 0, w.err }

type panicWriter struct{}

func (panicWriter) Write([]byte) (int, error) { panic("writer exploded") }

// A reader that died (EPIPE) or a writer that misbehaves costs a counter, not
// the process and not the next line.
func TestWriteErrorsAreCounted(t *testing.T) {
	tests := []struct {
		name string
		w    interface{ Write([]byte) (int, error) }
	}{
		{name: "broken pipe", w: errWriter{syscall.EPIPE}},
		{name: "short write", w: errWriter{errors.New("short write")}},
		{name: "panic", w: panicWriter{}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := newHandler(t, tc.w, oplog.Options{})
			log := slog.New(h)
			for i := range 5 {
				log.Error("upstream request failed", "i", i)
			}
			closeNow(t, h)
			if got, want := h.Stats(), (oplog.Stats{WriteErrors: 5}); got != want {
				t.Errorf("stats = %+v, want %+v", got, want)
			}
		})
	}
}

func TestDurationsPrintAsGoDurations(t *testing.T) {
	tests := []struct {
		format string
		log    func(*slog.Logger)
		want   string
	}{
		{format: "text", log: func(l *slog.Logger) { l.Info("m", "deadline", 30*time.Second) }, want: "deadline=30s"},
		{format: "json", log: func(l *slog.Logger) { l.Info("m", "deadline", 30*time.Second) }, want: `"deadline":"30s"`},
		{format: "json", log: func(l *slog.Logger) { l.Info("m", slog.Group("retry", slog.Duration("in", 1500*time.Millisecond))) }, want: `"retry":{"in":"1.5s"}`},
		{format: "json", log: func(l *slog.Logger) { l.With("timeout", time.Minute).Info("m") }, want: `"timeout":"1m0s"`},
		{format: "text", log: func(l *slog.Logger) { l.WithGroup("g").Info("m", "d", time.Millisecond) }, want: "g.d=1ms"},
	}
	for _, tc := range tests {
		t.Run(tc.format+" "+tc.want, func(t *testing.T) {
			out := &lockedBuffer{}
			h := newHandler(t, out, oplog.Options{Format: tc.format})
			tc.log(slog.New(h))
			closeNow(t, h)
			if lines := out.lines(); len(lines) != 1 || !strings.Contains(lines[0], tc.want) {
				t.Errorf("output %q, want it to contain %q", lines, tc.want)
			}
		})
	}
}

func TestNewRefusesBadOptions(t *testing.T) {
	tests := []struct {
		name string
		o    oplog.Options
		want string
	}{
		{name: "format", o: oplog.Options{Format: "xml"}, want: `oplog: unknown format "xml" (want text or json)`},
		{name: "queue", o: oplog.Options{QueueSize: -1}, want: "oplog: negative queue size or interval (got -1, 0s)"},
		{name: "interval", o: oplog.Options{Interval: -time.Second}, want: "oplog: negative queue size or interval (got 0, -1s)"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := oplog.New(&lockedBuffer{}, tc.o); err == nil || err.Error() != tc.want {
				t.Errorf("New = %v, want %q", err, tc.want)
			}
		})
	}
}

func TestCloseIsIdempotent(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		out := &lockedBuffer{}
		h := newHandler(t, out, oplog.Options{})
		slog.New(h).Info("before")
		var wg sync.WaitGroup
		for range 3 {
			wg.Go(func() {
				if err := h.Close(context.Background()); err != nil {
					t.Errorf("Close: %v", err)
				}
			})
		}
		wg.Wait()
		slog.New(h).Info("after") // counted, not written, no panic
		closeNow(t, h)
		if got, want := h.Stats(), (oplog.Stats{Written: 1, Dropped: 1}); got != want {
			t.Errorf("stats = %+v, want %+v", got, want)
		}
		if lines := out.lines(); len(lines) != 1 || !strings.HasSuffix(lines[0], "msg=before") {
			t.Errorf("output = %q", lines)
		}
	})
}

// Many goroutines logging into a small queue over a slow writer: every record
// is accounted for exactly once, and the summaries add up to the drops.
func TestConcurrentAccounting(t *testing.T) {
	const goroutines, each = 8, 300
	out := &slowWriter{}
	h := newHandler(t, out, oplog.Options{QueueSize: 8, Burst: 5, Interval: time.Hour})
	log := slog.New(h)
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Go(func() {
			for i := range each {
				// Half the records repeat (rate limited), half are distinct.
				if i%2 == 0 {
					log.Info("repeat", "g", g)
				} else {
					log.Info("distinct", "g", g, "i", i)
				}
			}
		})
	}
	wg.Wait()
	closeNow(t, h)
	st := h.Stats()
	var records, summaries, summarized uint64
	for _, l := range out.lines() {
		if m := dropLine.FindStringSubmatch(l); m != nil {
			summaries++
			n, _ := strconv.ParseUint(m[2], 10, 64)
			summarized += n
			continue
		}
		records++
	}
	if records+st.Dropped+st.Suppressed != goroutines*each {
		t.Errorf("written %d + dropped %d + suppressed %d != %d logged", records, st.Dropped, st.Suppressed, goroutines*each)
	}
	if st.Written != records+summaries || summarized != st.Dropped || st.WriteErrors != 0 {
		t.Errorf("stats %+v; %d records and %d summaries telling %d drops written", st, records, summaries, summarized)
	}
	if st.Suppressed != goroutines*(each/2-5) {
		t.Errorf("suppressed = %d, want %d", st.Suppressed, goroutines*(each/2-5))
	}
}

// slowWriter makes the queue fill under concurrent logging.
type slowWriter struct{ lockedBuffer }

func (w *slowWriter) Write(p []byte) (int, error) {
	time.Sleep(20 * time.Microsecond)
	return w.lockedBuffer.Write(p)
}

// The handler keeps slog's contract (attributes, groups, WithAttrs and
// WithGroup, empty attributes, LogValuer resolution, time).
func TestSlogConformance(t *testing.T) {
	type run struct {
		h   *oplog.Handler
		out *lockedBuffer
	}
	var mu sync.Mutex
	runs := map[*testing.T]run{}
	slogtest.Run(t, func(t *testing.T) slog.Handler {
		r := run{out: &lockedBuffer{}}
		r.h = newHandler(t, r.out, oplog.Options{Format: "json", Burst: -1})
		mu.Lock()
		runs[t] = r
		mu.Unlock()
		return r.h
	}, func(t *testing.T) map[string]any {
		mu.Lock()
		r := runs[t]
		mu.Unlock()
		closeNow(t, r.h)
		lines := r.out.lines()
		if len(lines) != 1 {
			t.Fatalf("%d lines, want 1: %q", len(lines), lines)
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(lines[0]), &m); err != nil {
			t.Fatal(err)
		}
		return m
	})
}

func Example() {
	h, err := oplog.New(&bytes.Buffer{}, oplog.Options{Burst: 10, VaryingKeys: []string{"requestId"}})
	if err != nil {
		panic(err)
	}
	log := slog.New(h)
	for i := range 25 {
		log.Warn("upstream request failed", "route", "echo", "requestId", i)
	}
	if err := h.Close(context.Background()); err != nil {
		panic(err)
	}
	fmt.Printf("%+v\n", h.Stats())
	// Output: {Written:10 Dropped:0 Suppressed:15 WriteErrors:0}
}

func BenchmarkHandle(b *testing.B) {
	for _, bc := range []struct {
		name string
		o    oplog.Options
	}{
		{name: "limited", o: oplog.Options{VaryingKeys: []string{"requestId"}}},
		{name: "unlimited", o: oplog.Options{Burst: -1, QueueSize: 1 << 16}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			h, err := oplog.New(discard{}, bc.o)
			if err != nil {
				b.Fatal(err)
			}
			defer h.Close(context.Background())
			log := slog.New(h)
			b.ReportAllocs()
			for b.Loop() {
				log.Warn("upstream request failed", "requestId", "0190a2f4", "route", "echo", "kind", "dial", "err", "connection refused")
			}
		})
	}
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }
