package audit

import (
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"tollgate.dev/tollgate/internal/request"
)

// lender owns an event it lends to the Logger, as a pooled exchange does. On
// release it scribbles over the event and what it points to, as the next
// request reusing the memory would: a record encoded after its release
// would show it.
type lender struct {
	ev       Event
	auth     Auth
	decision request.Decision
	released atomic.Int32
}

func newLender(id string) *lender {
	o := &lender{}
	o.auth = Auth{Principal: "user-" + id}
	o.decision = request.Decision{Allow: true, Policy: "policy-" + id}
	o.ev = Event{Kind: Ingress, RequestID: id, Auth: &o.auth, Decision: &o.decision}
	o.ev.Lend(o)
	return o
}

func (o *lender) ReleaseEvent() {
	o.released.Add(1)
	o.ev.RequestID, o.auth.Principal, o.decision.Policy = "reused", "reused", "reused"
}

// recordsOf lists what the trail says of each event: its request id, user and
// policy, and its phase.
func recordsOf(evs []Event) []string {
	var got []string
	for _, ev := range evs {
		if ev.Gap != nil {
			got = append(got, "gap "+ev.Gap.Reason)
			continue
		}
		got = append(got, fmt.Sprintf("%s %s %s %s", ev.RequestID, ev.Auth.Principal, ev.Decision.Policy, ev.Phase))
	}
	return got
}

// TestLentEventsAreReleasedOnceEncoded: the Logger hands a lent event back
// once, and only after it has encoded it: straight to the sinks, through the
// journal, and fail-closed, whose decision record must not point into the
// lent event either.
func TestLentEventsAreReleasedOnceEncoded(t *testing.T) {
	for _, mode := range []string{"direct", "journal", "fail-closed"} {
		t.Run(mode, func(t *testing.T) {
			sink := &collectSink{}
			var l *Logger
			if mode == "direct" {
				var err error
				if l, err = New(Config{Sinks: []Sink{sink}}); err != nil {
					t.Fatal(err)
				}
			} else {
				j := openTestJournal(t, t.TempDir(), JournalOptions{})
				l = newJournalLogger(t, j, Config{Sinks: []Sink{sink}, FailClosed: mode == "fail-closed"})
			}
			const n = 200
			lenders := make([]*lender, n)
			var want []string
			for i := range lenders {
				o := newLender(fmt.Sprint(i))
				lenders[i] = o
				if mode == "fail-closed" {
					if err := l.Decided(&o.ev); err != nil {
						t.Fatal(err)
					}
					want = append(want, fmt.Sprintf("%d user-%d policy-%d decision", i, i, i))
				}
				want = append(want, fmt.Sprintf("%d user-%d policy-%d ", i, i, i))
				l.Completed(&o.ev)
			}
			if err := l.Close(); err != nil {
				t.Fatal(err)
			}
			for i, o := range lenders {
				if got := o.released.Load(); got != 1 {
					t.Errorf("event %d released %d times, want 1", i, got)
				}
			}
			if diff := cmp.Diff(want, recordsOf(sink.events(t))); diff != "" {
				t.Errorf("the trail (-want +got):\n%s", diff)
			}
		})
	}
}

// TestLentEventsDroppedAreReleased: an event the Logger drops (its queue
// full, or the Logger closed) goes back to its owner at once.
func TestLentEventsDroppedAreReleased(t *testing.T) {
	sink := &blockingSink{entered: make(chan struct{}, 10), release: make(chan struct{})}
	l, err := New(Config{Sinks: []Sink{sink}, QueueSize: 1, BlockTimeout: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	held, queued, full := newLender("1"), newLender("2"), newLender("3")
	l.Record(&held.ev)
	<-sink.entered // the writer holds event 1
	l.Record(&queued.ev)
	l.Record(&full.ev) // the queue is full: dropped
	if got := full.released.Load(); got != 1 {
		t.Errorf("the event dropped for a full queue was released %d times, want 1", got)
	}
	if got := held.released.Load(); got != 1 {
		t.Errorf("the event being written was released %d times, want 1 (it is encoded)", got)
	}
	close(sink.release)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if got := queued.released.Load(); got != 1 {
		t.Errorf("the queued event was released %d times, want 1", got)
	}
	late := newLender("4")
	l.Record(&late.ev)
	if got := late.released.Load(); got != 1 {
		t.Errorf("an event recorded after Close was released %d times, want 1", got)
	}
}

// TestDecisionRecordOutlivesItsEvent: a fail-closed decision record that is
// written only after Decided gave up waiting (the request answered 503 and
// its event was reused) still says what was decided.
func TestDecisionRecordOutlivesItsEvent(t *testing.T) {
	j := openTestJournal(t, t.TempDir(), JournalOptions{})
	sink := &collectSink{}
	l := newJournalLogger(t, j, Config{Sinks: []Sink{sink}, FailClosed: true, WriteTimeout: 20 * time.Millisecond})
	// Hold the writer, so that the decision record waits in the queue.
	unblock, running := make(chan struct{}), make(chan struct{})
	if err := l.enqueue(queued{swap: func() { close(running); <-unblock }}); err != nil {
		t.Fatal(err)
	}
	<-running
	o := newLender("1")
	if err := l.Decided(&o.ev); err == nil {
		t.Fatal("Decided returned nil while the writer was held")
	}
	o.ReleaseEvent() // as the request's end would, via Completed
	close(unblock)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	want := []string{"1 user-1 policy-1 decision"}
	if diff := cmp.Diff(want, recordsOf(sink.events(t))); diff != "" {
		t.Errorf("the trail (-want +got):\n%s", diff)
	}
}
