package audit

import (
	"fmt"
	"strings"
	"testing"
	"testing/synctest"
	"time"
)

// TestJournalWindow: the group commit window in synctest's time, exact.
// A record after a quiet spell is committed at once; the next ones wait in
// the queue, without waking the writer, until SyncInterval has passed
// since that commit; a fail-closed decision ends the window at once, and
// so do wakeAt records queued.
func TestJournalWindow(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const interval = 10 * time.Millisecond
		j := openTestJournal(t, t.TempDir(), JournalOptions{SyncInterval: interval})
		l := newJournalLogger(t, j, Config{Sinks: []Sink{&collectSink{}}, FailClosed: true})
		defer l.Close()
		start := time.Now()
		committed := func(when string, want uint64) {
			t.Helper()
			synctest.Wait()
			if got := j.Committed(); got != want {
				t.Fatalf("%s (at %v): %d records committed, want %d", when, time.Since(start), got, want)
			}
		}
		record := func(id string) { l.Completed(&Event{RequestID: id, Kind: Ingress}) }

		record("first")
		committed("a record after a quiet spell", 1)
		record("second")
		committed("the next record, at once", 1)
		time.Sleep(interval - time.Nanosecond)
		committed("the next record, just before the window ends", 1)
		time.Sleep(time.Nanosecond)
		committed("the next record, when the window ends", 2)

		// A decision in an open window: committed at once, with what waits.
		record("third")
		time.Sleep(2 * time.Millisecond)
		committed("a record in the window", 2)
		before := time.Now()
		if err := l.Decided(&Event{RequestID: "decided", Kind: Ingress}); err != nil {
			t.Fatal(err)
		}
		if waited := time.Since(before); waited != 0 {
			t.Errorf("a fail-closed decision waited %v for its commit, want no wait", waited)
		}
		committed("after a decision", 4)

		// wakeAt records in an open window wake the writer: under load it
		// takes them in (encodes and hashes them) while the window runs.
		record("opens a window")
		for i := range wakeAt - 1 {
			record(fmt.Sprint(i))
		}
		committed("records in the window", 4)
		if n := len(l.queue); n != wakeAt-1 {
			t.Fatalf("%d records queued, want %d: the writer woke before wakeAt", n, wakeAt-1)
		}
		record("wakes the writer")
		committed("wakeAt records queued in the window", 4)
		if n := len(l.queue); n != 0 {
			t.Errorf("%d records queued after wakeAt, want the writer to have taken them", n)
		}
		time.Sleep(interval)
		committed("the window's end", uint64(5+wakeAt))
	})
}

// TestDirectWindow: without a journal, in synctest's time, exact. A record
// after a quiet spell is written at once; the next ones wait until
// directWindow has passed since that write, and then go to stdout in one
// write; wakeAt queued records end the window at once.
func TestDirectWindow(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		w := &countingWriter{}
		l, err := New(Config{Sinks: []Sink{NewWriterSink(w)}})
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		start := time.Now()
		written := func(when string, lines, calls int) {
			t.Helper()
			synctest.Wait()
			w.mu.Lock()
			defer w.mu.Unlock()
			if got := strings.Count(w.String(), "\n"); got != lines || w.calls != calls {
				t.Fatalf("%s (at %v): %d records in %d writes, want %d in %d", when, time.Since(start), got, w.calls, lines, calls)
			}
		}
		record := func(id string) { l.Record(&Event{RequestID: id, Kind: Ingress}) }

		record("first")
		written("a record after a quiet spell", 1, 1)
		record("second")
		written("the next record, at once", 1, 1)
		time.Sleep(directWindow - time.Nanosecond)
		written("the next record, just before the window ends", 1, 1)
		time.Sleep(time.Nanosecond)
		written("the next record, when the window ends", 2, 2)

		for i := range 10 {
			record(fmt.Sprint(i))
		}
		written("ten records in the window", 2, 2)
		time.Sleep(directWindow)
		written("the window's end: one write", 12, 3)

		record("opens a window")
		for i := range wakeAt - 1 {
			record(fmt.Sprint(i))
		}
		written("records in the window", 12, 3)
		record("wakes the writer")
		written("wakeAt records queued in the window", 13+wakeAt, 4)
		if s := l.Stats(); s.Written != 13+wakeAt || s.Dropped != 0 || s.Errors != 0 {
			t.Errorf("Stats = %+v, want %d written, none dropped, no errors", s, 13+wakeAt)
		}
	})
}

// TestDecisionDelay: in synctest's time, exact. With DecisionSiblings or
// fewer decided requests in flight, a fail-closed decision is committed at
// once; with more, it waits DecisionDelay, and the decisions that arrive
// meanwhile share its commit without waking the writer; a request that
// completes leaves the count.
func TestDecisionDelay(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const delay = time.Millisecond
		j := openTestJournal(t, t.TempDir(), JournalOptions{DecisionDelay: delay, DecisionSiblings: 2})
		l := newJournalLogger(t, j, Config{Sinks: []Sink{&collectSink{}}, FailClosed: true})
		defer l.Close()
		events := make([]*Event, 6)
		for i := range events {
			events[i] = &Event{RequestID: fmt.Sprint(i), Kind: Ingress}
		}
		decide := func(ev *Event, want time.Duration) {
			t.Helper()
			start := time.Now()
			if err := l.Decided(ev); err != nil {
				t.Error(err)
				return
			}
			if waited := time.Since(start); waited != want {
				t.Errorf("decision %s waited %v for its commit, want %v", ev.RequestID, waited, want)
			}
		}
		// One and two decided requests in flight: no siblings to wait for.
		decide(events[0], 0)
		decide(events[1], 0)
		synctest.Wait()
		commits := j.syncs.Load()

		// A third: more than two in flight, so it waits, and two more
		// decisions arriving meanwhile share its one commit.
		done := make(chan struct{})
		go func() {
			defer close(done)
			decide(events[2], delay)
		}()
		time.Sleep(delay / 4)
		go decide(events[3], delay-delay/4)
		synctest.Wait()
		if n := len(l.queue); n != 1 {
			t.Errorf("%d records queued during the delay, want the decision to wait there without waking the writer", n)
		}
		time.Sleep(delay / 4)
		decide(events[4], delay/2)
		<-done
		synctest.Wait()
		if got := j.syncs.Load() - commits; got != 1 {
			t.Errorf("three decisions in one delay took %d commits, want 1", got)
		}

		// Completed requests leave the count: with one in flight, the
		// next decision (two) is committed at once again.
		for _, ev := range events[:4] {
			l.Completed(ev)
		}
		decide(events[5], 0)

		// Requests that stay open (WebSockets, streams, tunnels) stop
		// counting two windows after their decision: three long-lived
		// ones make a decision wait only while they are recent.
		l.Completed(events[4])
		l.Completed(events[5])
		long := []*Event{{RequestID: "ws1"}, {RequestID: "ws2"}, {RequestID: "ws3"}, {RequestID: "ws4"}}
		decide(long[0], 0)
		decide(long[1], 0)
		decide(long[2], delay) // three in flight: more than two
		time.Sleep(2 * inflightWindow)
		decide(long[3], 0) // the three are open still, but no longer recent
	})
}

// TestRecentDecisions: a decided request counts until it completes, or
// until it was decided two windows ago; completing it after that does
// not make the count drift.
func TestRecentDecisions(t *testing.T) {
	var r recentDecisions
	t0 := time.Unix(0, 0).Add(1000 * inflightWindow)
	a := r.decided(t0)
	b := r.decided(t0.Add(inflightWindow / 2))
	if got := r.count(t0.Add(inflightWindow / 2)); got != 2 {
		t.Fatalf("count = %d, want 2", got)
	}
	r.completed(a, t0.Add(inflightWindow))
	if got := r.count(t0.Add(inflightWindow)); got != 1 {
		t.Fatalf("after one completed: count = %d, want 1", got)
	}
	c := r.decided(t0.Add(inflightWindow))
	if got := r.count(t0.Add(2 * inflightWindow)); got != 1 {
		t.Fatalf("two windows after the first decision: count = %d, want 1 (only the third)", got)
	}
	r.completed(b, t0.Add(2*inflightWindow)) // too old to count: no drift
	if got := r.count(t0.Add(2 * inflightWindow)); got != 1 {
		t.Fatalf("after an aged request completed: count = %d, want 1", got)
	}
	r.completed(c, t0.Add(2*inflightWindow))
	if got := r.count(t0.Add(2 * inflightWindow)); got != 0 {
		t.Fatalf("all completed: count = %d, want 0", got)
	}
	r.decided(t0.Add(10 * inflightWindow))
	if got := r.count(t0.Add(20 * inflightWindow)); got != 0 {
		t.Fatalf("after a long quiet spell: count = %d, want 0", got)
	}
}
