package audit

import (
	"tollgate.dev/tollgate/internal/request"

	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"tollgate.dev/tollgate/internal/testkit"
)

// decodeLines parses JSON lines, failing the test on any line that is not one event.
func decodeLines(t *testing.T, s string) []Event {
	t.Helper()
	var evs []Event
	sc := bufio.NewScanner(strings.NewReader(s))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var ev Event
		dec := json.NewDecoder(bytes.NewReader(sc.Bytes()))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&ev); err != nil {
			t.Fatalf("line %q: %v", sc.Text(), err)
		}
		evs = append(evs, ev)
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return evs
}

func TestNewRejectsBadConfig(t *testing.T) {
	ok := NewWriterSink(&testkit.Buffer{})
	tests := []struct {
		name    string
		cfg     Config
		wantErr string
	}{
		{name: "no sinks", cfg: Config{}, wantErr: "audit: no sinks configured"},
		{name: "nil sink", cfg: Config{Sinks: []Sink{ok, nil}}, wantErr: "audit: sink 1 is nil"},
		{name: "negative queue", cfg: Config{Sinks: []Sink{ok}, QueueSize: -1}, wantErr: "audit: negative queue size, timeout, backoff or field limit"},
		{name: "negative timeout", cfg: Config{Sinks: []Sink{ok}, BlockTimeout: -time.Second}, wantErr: "audit: negative queue size, timeout, backoff or field limit"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l, err := New(tt.cfg)
			if err == nil {
				l.Close()
				t.Fatalf("New succeeded, want error %q", tt.wantErr)
			}
			if err.Error() != tt.wantErr {
				t.Errorf("New error = %q, want %q", err, tt.wantErr)
			}
		})
	}
}

// TestLoggerConcurrentRecord: many goroutines record; after Close every event is in
// the output exactly once, each line parses, and sequence numbers are 1..n.
func TestLoggerConcurrentRecord(t *testing.T) {
	const goroutines, perG = 32, 200
	var buf testkit.Buffer
	// A queue smaller than the load and a generous block bound: Record must wait,
	// not drop, while the writer keeps up.
	l, err := New(Config{Sinks: []Sink{NewWriterSink(&buf)}, QueueSize: 64, BlockTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Go(func() {
			for i := range perG {
				l.Record(&Event{Kind: Egress, RequestID: fmt.Sprintf("g%d-%d", g, i), Query: "token=secret&i=1"})
			}
		})
	}
	wg.Wait()
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	evs := decodeLines(t, buf.String())
	seen := make(map[string]int)
	for i, ev := range evs {
		seen[ev.RequestID]++
		if ev.Sequence != uint64(i+1) {
			t.Errorf("line %d has seq %d, want %d", i, ev.Sequence, i+1)
		}
		if ev.ID == "" || ev.Time.IsZero() {
			t.Errorf("line %d lacks id or time: %+v", i, ev)
		}
		if ev.Query != "token=REDACTED&i=1" {
			t.Errorf("line %d query = %q, the Logger did not redact", i, ev.Query)
		}
	}
	for g := range goroutines {
		for i := range perG {
			if id := fmt.Sprintf("g%d-%d", g, i); seen[id] != 1 {
				t.Errorf("event %s written %d times, want 1", id, seen[id])
			}
		}
	}
	if strings.Contains(buf.String(), "secret") {
		t.Error("a redacted value reached the sink")
	}
	want := Stats{Written: goroutines * perG}
	if diff := cmp.Diff(want, l.Stats()); diff != "" {
		t.Errorf("Stats (-want +got):\n%s", diff)
	}
}

// blockingSink holds the writer goroutine inside Write until released.
type blockingSink struct {
	entered chan struct{}
	release chan struct{}
	mu      sync.Mutex
	got     []string
}

func (s *blockingSink) Write(_ context.Context, line []byte) error {
	s.entered <- struct{}{}
	<-s.release
	var ev Event
	if err := json.Unmarshal(line, &ev); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if ev.Gap != nil {
		s.got = append(s.got, fmt.Sprintf("gap %s %d", ev.Gap.Reason, ev.Gap.Dropped))
		return nil
	}
	s.got = append(s.got, ev.RequestID)
	return nil
}

func (s *blockingSink) Close() error { return nil }

func TestLoggerDropsWhenQueueStaysFull(t *testing.T) {
	sink := &blockingSink{entered: make(chan struct{}, 10), release: make(chan struct{})}
	l, err := New(Config{Sinks: []Sink{sink}, QueueSize: 1, BlockTimeout: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	l.Record(&Event{RequestID: "1"})
	<-sink.entered                   // the writer holds event 1
	l.Record(&Event{RequestID: "2"}) // fills the queue
	start := time.Now()
	l.Record(&Event{RequestID: "3"}) // waits BlockTimeout, then drops
	if d := time.Since(start); d > time.Second {
		t.Errorf("Record on a full queue took %v", d)
	}
	if got := l.Stats().Dropped; got != 1 {
		t.Errorf("Dropped = %d, want 1", got)
	}
	close(sink.release)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	// The drop is in the trail: a gap record before the next event written.
	if diff := cmp.Diff([]string{"1", "gap queue_full 1", "2"}, sink.got); diff != "" {
		t.Errorf("written (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(Stats{Written: 2, Dropped: 1}, l.Stats()); diff != "" {
		t.Errorf("Stats (-want +got):\n%s", diff)
	}
}

type failingSink struct{}

func (failingSink) Write(context.Context, []byte) error { return errors.New("disk full") }
func (failingSink) Close() error                        { return errors.New("close failed") }

func TestLoggerCountsSinkErrors(t *testing.T) {
	var buf testkit.Buffer
	l, err := New(Config{Sinks: []Sink{NewWriterSink(&buf), failingSink{}}})
	if err != nil {
		t.Fatal(err)
	}
	l.Record(&Event{RequestID: "a"})
	l.Record(&Event{RequestID: "b"})
	if err := l.Close(); err == nil || err.Error() != "close failed" {
		t.Errorf("Close error = %v, want %q", err, "close failed")
	}
	// Two events and the gap record of what the failing sink lost, which
	// it failed too.
	if diff := cmp.Diff(Stats{Written: 0, Errors: 3}, l.Stats()); diff != "" {
		t.Errorf("Stats (-want +got):\n%s", diff)
	}
	// The healthy sink still got both events, and its trail says which the
	// other sink lost.
	evs := decodeLines(t, buf.String())
	if len(evs) != 3 || evs[0].RequestID != "a" || evs[1].RequestID != "b" {
		t.Fatalf("healthy sink got %+v, want a, b and a gap record", evs)
	}
	want := &Gap{Dropped: 2, Reason: "sink_failed", Sink: "sink-1", FromSeq: 1, ToSeq: 2}
	if diff := cmp.Diff(want, evs[2].Gap); diff != "" {
		t.Errorf("gap record (-want +got):\n%s", diff)
	}
}

func TestLoggerCloseIsIdempotentAndLaterRecordsDrop(t *testing.T) {
	var buf testkit.Buffer
	l, err := New(Config{Sinks: []Sink{NewWriterSink(&buf)}})
	if err != nil {
		t.Fatal(err)
	}
	l.Record(&Event{RequestID: "before"})
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			if err := l.Close(); err != nil {
				t.Errorf("Close: %v", err)
			}
		})
	}
	wg.Wait()
	l.Record(&Event{RequestID: "after"})
	l.Record(nil) // ignored, not counted
	if diff := cmp.Diff(Stats{Written: 1, Dropped: 1}, l.Stats()); diff != "" {
		t.Errorf("Stats (-want +got):\n%s", diff)
	}
	evs := decodeLines(t, buf.String())
	if len(evs) != 1 || evs[0].RequestID != "before" {
		t.Errorf("written events = %+v, want only \"before\"", evs)
	}
}

// TestLoggerRecordRacesClose: Record and Close at the same time never panic, and
// every event is either written or counted as dropped.
func TestLoggerRecordRacesClose(t *testing.T) {
	var buf testkit.Buffer
	l, err := New(Config{Sinks: []Sink{NewWriterSink(&buf)}, QueueSize: 8})
	if err != nil {
		t.Fatal(err)
	}
	const n = 8 * 100
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 100 {
				l.Record(&Event{})
			}
		})
	}
	l.Close()
	wg.Wait()
	s := l.Stats()
	if s.Written+s.Dropped != n {
		t.Errorf("written %d + dropped %d != recorded %d", s.Written, s.Dropped, n)
	}
	var events, gapped uint64
	for _, ev := range decodeLines(t, buf.String()) {
		if ev.Gap != nil {
			gapped += ev.Gap.Dropped
			continue
		}
		events++
	}
	if events != s.Written {
		t.Errorf("%d events written, Stats.Written %d", events, s.Written)
	}
	// Drops while running are in gap records; those after Close only counted.
	if gapped > s.Dropped {
		t.Errorf("gap records count %d drops, Stats.Dropped %d", gapped, s.Dropped)
	}
}

func TestLoggerTruncatesLongFields(t *testing.T) {
	var buf testkit.Buffer
	l, err := New(Config{Sinks: []Sink{NewWriterSink(&buf)}, MaxFieldBytes: 8})
	if err != nil {
		t.Fatal(err)
	}
	l.Record(&Event{Path: "/ééééé", Host: "short", Query: "password=0123456789",
		Decision: &request.Decision{Reason: "a very long reason"}})
	l.Record(&Event{Path: "/ok"})
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	evs := decodeLines(t, buf.String())
	if len(evs) != 2 {
		t.Fatalf("got %d events, want 2", len(evs))
	}
	got := []string{evs[0].Path, evs[0].Host, evs[0].Query, evs[0].Decision.Reason}
	// "/ééééé" is 11 bytes; 8 would split the fourth é, so the cut is at 7.
	want := []string{"/ééé", "short", "password", "a very l"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("truncated fields (-want +got):\n%s", diff)
	}
	if !evs[0].Truncated || evs[1].Truncated {
		t.Errorf("Truncated = %v, %v; want true, false", evs[0].Truncated, evs[1].Truncated)
	}
}

// discardSink measures the queue, not an encoder.
type discardSink struct{}

func (discardSink) Write(context.Context, []byte) error { return nil }
func (discardSink) Close() error                        { return nil }

func BenchmarkRecord(b *testing.B) {
	ev := fullEvent()
	for _, bc := range []struct {
		name string
		sink Sink
	}{
		{"queue-only", discardSink{}},
		{"json-discard", NewWriterSink(discardWriter{})},
	} {
		b.Run(bc.name, func(b *testing.B) {
			l, err := New(Config{Sinks: []Sink{bc.sink}, QueueSize: 1 << 16, BlockTimeout: time.Second})
			if err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			for b.Loop() {
				// Each call hands over an event of its own (Record fills and
				// redacts it in the caller's goroutine), as the gateway does:
				// its allocation is in the figures, and so is the writer's
				// work (encoding), which runs concurrently.
				e := ev
				l.Record(&e)
			}
			b.StopTimer()
			l.Close()
			if s := l.Stats(); s.Dropped != 0 {
				b.Fatalf("dropped %d events", s.Dropped)
			}
		})
	}
}

type discardWriter struct{}

func (discardWriter) Write(p []byte) (int, error) { return len(p), nil }

// recordingSink keeps what it was handed: the bytes and where they lay.
type recordingSink struct {
	mu    sync.Mutex
	lines []string
	addrs []*byte
}

func (s *recordingSink) Write(_ context.Context, line []byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.lines = append(s.lines, string(line))
	s.addrs = append(s.addrs, &line[0])
	return nil
}

func (s *recordingSink) Close() error { return nil }

// The Logger encodes an event once and hands every sink the same line, not
// one encoding per sink.
func TestEventIsEncodedOnceForEverySink(t *testing.T) {
	a, b := &recordingSink{}, &recordingSink{}
	l, err := New(Config{Sinks: []Sink{a, b}})
	if err != nil {
		t.Fatal(err)
	}
	l.Record(&Event{Kind: Ingress, RequestID: "r1", Path: "/x"})
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if len(a.lines) != 1 || len(b.lines) != 1 {
		t.Fatalf("lines: %d and %d, want one each", len(a.lines), len(b.lines))
	}
	if a.lines[0] != b.lines[0] || !strings.HasSuffix(a.lines[0], "\n") || !strings.Contains(a.lines[0], `"requestId":"r1"`) {
		t.Errorf("sinks got %q and %q", a.lines[0], b.lines[0])
	}
	if a.addrs[0] != b.addrs[0] {
		t.Error("each sink got its own encoding of the event")
	}
}
