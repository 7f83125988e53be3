package audit

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"tollgate.dev/tollgate/internal/request"
)

// Defaults for Config fields left zero.
const (
	DefaultQueueSize    = 4096
	DefaultBlockTimeout = 10 * time.Millisecond
	DefaultWriteTimeout = 5 * time.Second
	// DefaultMaxFieldBytes keeps a line well under the 32 KiB at which Fluent Bit's
	// tail input stops following a file.
	DefaultMaxFieldBytes = 2048
)

// Config configures a Logger.
type Config struct {
	// Sinks receive every event, in order. At least one is required.
	Sinks []Sink
	// SinkFormats are the sinks' formats, one per sink; empty means every
	// sink gets FormatNative.
	SinkFormats []Format
	// Product names the gateway in formatted records (default
	// DefaultProduct).
	Product Product
	// SinkNames name the sinks' journal cursors, one per sink; empty means
	// "sink-0", "sink-1", ... A name must stay with its sink across restarts.
	SinkNames []string
	// Journal, if set, makes delivery durable and at least once: every event
	// is appended to the journal (group commit, fsync) and each sink is fed
	// from it by a delivery loop of its own, from a cursor that moves on only
	// when the sink accepted a record. The Logger closes the journal.
	Journal *Journal
	// FailClosed (with a Journal): Decided journals a decision record and
	// waits for its fsync; if that fails the request is refused. Without it
	// Decided never refuses.
	FailClosed bool
	// QueueSize bounds the events waiting for the writer goroutine.
	QueueSize int
	// BlockTimeout is how long Record waits for room in a full queue before it drops
	// the event and counts the drop.
	BlockTimeout time.Duration
	// WriteTimeout bounds each Sink.Write through its context, and how long
	// Decided waits for the journal.
	WriteTimeout time.Duration
	// DrainTimeout bounds how long Close waits for the sinks to deliver what
	// the journal holds; what is left is delivered after the next start.
	DrainTimeout time.Duration
	// Backoff is the first retry delay of a sink that failed (doubling, with
	// jitter, up to MaxBackoff).
	Backoff, MaxBackoff time.Duration
	// Instance names this gateway in every record (default: the host
	// name).
	Instance string
	// Pseudonymize, if set, replaces identifiers with keyed hashes before
	// an event is journaled or written.
	Pseudonymize *Pseudonymize
	// SensitiveParams are the query parameters redacted before any sink sees an
	// event; nil means DefaultSensitiveParams.
	SensitiveParams []string
	// MaxFieldBytes caps the free-text fields (path, query, host, SNI, user agent,
	// reason); longer ones are cut at a UTF-8 boundary and the event is marked
	// Truncated.
	MaxFieldBytes int
	// Log receives sink errors; nil discards them. Errors are always counted in
	// Stats, which is what alerting should watch.
	Log *slog.Logger
}

// Stats are the Logger's delivery counters since New.
type Stats struct {
	// Written counts events every sink accepted (with a journal: events
	// committed to it).
	Written uint64
	// Dropped counts events lost before they were written: the queue stayed
	// full for BlockTimeout, the journal could not append, or they were
	// recorded after Close. Each loss is also a gap record in the trail.
	Dropped uint64
	// Errors counts failed sink writes (one event failing on two sinks counts
	// two; with a journal, every failed attempt).
	Errors uint64
	// Commits counts the journal's group commits (an fsync each): Written
	// over Commits is the records one fsync made durable.
	Commits uint64 `json:",omitempty"`
	// Sinks are the delivery counters of each sink fed from the journal.
	Sinks []SinkStats `json:",omitempty"`
}

// SinkStats is one journal-fed sink's delivery.
type SinkStats struct {
	Name string
	// Delivered counts records the sink accepted; Retries, failed attempts.
	Delivered, Retries uint64
	// Dropped counts records the journal's quota removed before the sink
	// delivered them.
	Dropped uint64
	// LagEvents is how many committed records the sink has not delivered;
	// LagSeconds, how old the oldest of them was when last seen.
	LagEvents  uint64
	LagSeconds float64
}

// Logger takes events from the request path and writes them from one
// background goroutine, through a bounded queue. Record does not wait for
// I/O.
//
// Without a journal, the writer hands each event to every sink in turn:
// best effort. With one (Config.Journal), it appends events to the journal in
// batches, one write and one fsync each, and every sink is fed from the
// journal by its own loop, with retries and backoff, so a slow or failing
// sink holds back neither the others nor the request path, and what a sink
// has not acknowledged is delivered after a restart.
//
// A full queue makes Record wait up to BlockTimeout and then drop the event;
// drops are counted in Stats and written into the trail as a gap record.
//
// Its sinks can change while it runs (PrepareSinks, then SinkChange.Commit),
// and so can its pseudonyms, instance and failure mode (SetPseudonymize,
// SetInstance, SetFailClosed); its journal cannot.
type Logger struct {
	queue        chan queued
	blockTimeout time.Duration
	writeTimeout time.Duration
	drainTimeout time.Duration
	backoff      [2]time.Duration
	sensitive    []string
	pseudonyms   atomic.Pointer[Pseudonymize]
	instance     atomic.Pointer[string]
	maxField     int
	product      Product
	// The writer goroutine's buffers, without a journal: a batch's records
	// encoded, where each ends, which some sink refused, which one sink
	// refused, one formatted; and the gap records of sinks that lost
	// records, to write first in the next batch.
	line       []byte
	ends       []int
	failed     []bool
	sinkFailed []bool
	formatted  []byte
	sinkGaps   []*Event
	log        *slog.Logger
	journal    *Journal
	failClosed atomic.Bool
	// wake calls the writer before its window ends (the journal's group
	// commit, or directWindow): a fail-closed decision, a swap, Close, or,
	// while asleep is set, wakeAt records queued. Other records wait in the
	// queue without waking it.
	wake   chan struct{}
	asleep atomic.Bool
	// lingering: the writer holds a fail-closed decision back for others
	// to share its commit (JournalOptions.DecisionDelay); decisions don't
	// wake it meanwhile. decided counts the fail-closed requests decided
	// lately and not yet completed.
	lingering   atomic.Bool
	decided     recentDecisions
	deliverCtx  context.Context
	stopDeliver context.CancelFunc
	// delivering counts the delivery loops (with a journal); retiring, the
	// goroutines that close the sinks a change removed.
	delivering, retiring sync.WaitGroup

	// setMu guards set, the sinks in force, and setClosed. Without a journal
	// the writer holds it while it writes a batch, so a change of sinks
	// (SinkChange.Commit) happens between two batches.
	setMu     sync.Mutex
	set       []*sinkRun
	setClosed bool
	// started: New has put the first set in force (PrepareSinks of a
	// running Logger starts new names' cursors from now).
	started bool

	// mu guards closed and the send on queue against Close closing it: Record holds
	// the read lock while sending so a send never races the close.
	mu     sync.RWMutex
	closed bool

	done      chan struct{}
	closeOnce sync.Once
	closeErr  error

	seq                      uint64 // writer goroutine only, without a journal
	written, dropped, errors atomic.Uint64
	// lost counts drops not yet written as a gap record, by reason.
	lostQueue, lostJournal, lostFull atomic.Uint64
}

// sinkRun is one sink in force: with a journal, its cursor and delivery loop.
type sinkRun struct {
	name   string
	sink   Sink
	format func(dst, line []byte) ([]byte, error) // nil: native
	// With a journal: the cursor, the counters (kept by a replacement of the
	// same name), the loop's context and its end.
	reader *JournalReader
	stats  *sinkCounters
	ctx    context.Context
	cancel context.CancelFunc
	done   chan struct{}
	// stopping, once set, ends the loop after it delivered stopAt (a sink
	// removed by a change).
	stopAt   atomic.Uint64
	stopping atomic.Bool
	// Without a journal (the writer goroutine's): the records the sink has
	// refused in a row, and whether it refused them as stalled (logged
	// once, not per batch).
	lost    lostRange
	stalled bool
}

// lostRange is a run of consecutive records one sink refused, without a
// journal: a gap record of its own once the sink takes a record again, or
// the Logger closes.
type lostRange struct{ from, to uint64 }

func (r lostRange) open() bool { return r.from != 0 }

func (r lostRange) gap(sink string) *Event {
	return &Event{Kind: Audit, Gap: &Gap{Dropped: r.to - r.from + 1, Reason: "sink_failed", Sink: sink, FromSeq: r.from, ToSeq: r.to}}
}

// queued is an event on its way to the writer; done, if set, hears whether
// it is durable (fail-closed decision records).
type queued struct {
	ev   *Event
	done chan error
	// swap, instead of an event: run on the writer goroutine once what was
	// queued before is committed (tests change the journal's file with it).
	swap func()
}

type sinkCounters struct {
	name                        string
	delivered, retries, dropped atomic.Uint64
	acked                       atomic.Uint64 // the cursor, for the lag
	lagNanos                    atomic.Int64
}

// Defaults for the journal-fed delivery.
const (
	DefaultDrainTimeout = 5 * time.Second
	DefaultBackoff      = 100 * time.Millisecond
	DefaultMaxBackoff   = 30 * time.Second
	// maxBatch bounds one group commit.
	maxBatch = 1024
	// wakeAt is how many queued records wake the writer before its window
	// ends.
	wakeAt = 128
)

// New starts a Logger. Call Close to flush and stop it.
func New(cfg Config) (*Logger, error) {
	if len(cfg.Sinks) == 0 {
		return nil, errors.New("audit: no sinks configured")
	}
	for i, s := range cfg.Sinks {
		if s == nil {
			return nil, fmt.Errorf("audit: sink %d is nil", i)
		}
	}
	if cfg.QueueSize < 0 || cfg.BlockTimeout < 0 || cfg.WriteTimeout < 0 || cfg.MaxFieldBytes < 0 ||
		cfg.DrainTimeout < 0 || cfg.Backoff < 0 || cfg.MaxBackoff < 0 {
		return nil, errors.New("audit: negative queue size, timeout, backoff or field limit")
	}
	if cfg.SinkNames != nil && len(cfg.SinkNames) != len(cfg.Sinks) {
		return nil, fmt.Errorf("audit: %d sink names for %d sinks", len(cfg.SinkNames), len(cfg.Sinks))
	}
	if cfg.SinkFormats != nil && len(cfg.SinkFormats) != len(cfg.Sinks) {
		return nil, fmt.Errorf("audit: %d sink formats for %d sinks", len(cfg.SinkFormats), len(cfg.Sinks))
	}
	if cfg.Product == (Product{}) {
		cfg.Product = DefaultProduct
	}
	if cfg.FailClosed && cfg.Journal == nil {
		return nil, errors.New("audit: fail-closed needs a journal")
	}
	l := &Logger{
		queue:        make(chan queued, cmp.Or(cfg.QueueSize, DefaultQueueSize)),
		blockTimeout: cmp.Or(cfg.BlockTimeout, DefaultBlockTimeout),
		writeTimeout: cmp.Or(cfg.WriteTimeout, DefaultWriteTimeout),
		drainTimeout: cmp.Or(cfg.DrainTimeout, DefaultDrainTimeout),
		backoff:      [2]time.Duration{cmp.Or(cfg.Backoff, DefaultBackoff), cmp.Or(cfg.MaxBackoff, DefaultMaxBackoff)},
		sensitive:    cfg.SensitiveParams,
		maxField:     cmp.Or(cfg.MaxFieldBytes, DefaultMaxFieldBytes),
		product:      cfg.Product,
		log:          cfg.Log,
		journal:      cfg.Journal,
		done:         make(chan struct{}),
		wake:         make(chan struct{}, 1),
	}
	l.pseudonyms.Store(cfg.Pseudonymize)
	l.failClosed.Store(cfg.FailClosed)
	l.SetInstance(cfg.Instance)
	if l.log == nil {
		l.log = slog.New(slog.DiscardHandler)
	}
	specs := make([]SinkSpec, len(cfg.Sinks))
	for i, s := range cfg.Sinks {
		specs[i] = SinkSpec{Name: fmt.Sprintf("sink-%d", i), Sink: s}
		if cfg.SinkNames != nil {
			specs[i].Name = cfg.SinkNames[i]
		}
		if cfg.SinkFormats != nil {
			specs[i].Format = cfg.SinkFormats[i]
		}
	}
	if l.journal != nil {
		l.deliverCtx, l.stopDeliver = context.WithCancel(context.Background())
	}
	c, err := l.PrepareSinks(specs)
	if err != nil {
		if l.stopDeliver != nil {
			l.stopDeliver()
		}
		return nil, err
	}
	l.setMu.Lock()
	l.set = c.next
	for _, r := range c.started {
		l.start(r)
	}
	l.setMu.Unlock()
	l.started = true
	if l.journal == nil {
		go l.run()
	} else {
		go l.runJournal()
	}
	return l, nil
}

func orDefault[T int | time.Duration](v, def T) T {
	if v == 0 {
		return def
	}
	return v
}

// Record queues ev for writing. The Logger owns ev from here on: the caller must not
// read or change it afterwards. Record returns at once while the queue has room;
// otherwise it waits at most BlockTimeout and then drops the event. A lent
// event (Event.Lend) is released once it is encoded or dropped.
func (l *Logger) Record(ev *Event) {
	if ev == nil {
		return
	}
	// The caller's goroutine fills the id and redacts: that work is spread
	// over the requests instead of queueing behind the one writer.
	l.prepare(ev)
	switch l.enqueue(queued{ev: ev}) {
	case errQueueFull:
		l.dropped.Add(1)
		l.lostQueue.Add(1) // the writer records the gap
		ev.Release()
	case errLoggerClosed:
		l.dropped.Add(1) // nothing is written any more: counted only
		ev.Release()
	}
}

var (
	errQueueFull    = errors.New("audit: queue full")
	errLoggerClosed = errors.New("audit: logger closed")
)

// enqueue sends q to the writer, waiting at most BlockTimeout for room.
func (l *Logger) enqueue(q queued) error {
	l.mu.RLock()
	defer l.mu.RUnlock()
	if l.closed {
		return errLoggerClosed
	}
	select {
	case l.queue <- q:
		l.wakeIfDue(q)
		return nil
	default:
	}
	t := time.NewTimer(l.blockTimeout)
	defer t.Stop()
	select {
	case l.queue <- q:
		l.wakeIfDue(q)
		return nil
	case <-t.C:
		return errQueueFull
	}
}

// wakeIfDue wakes the writer for what can't wait for the end of its
// window: a fail-closed decision (unless it lingers for more), a swap, or,
// if it sleeps, wakeAt records
// queued (under heavy load it then works on while its window runs, and no
// record pays for a wake-up).
func (l *Logger) wakeIfDue(q queued) {
	decision := q.done != nil && !l.lingering.Load()
	if !decision && q.swap == nil && !(l.asleep.Load() && len(l.queue) >= wakeAt) {
		return
	}
	select {
	case l.wake <- struct{}{}:
	default: // already due
	}
}

// Stats returns the delivery counters; Sinks follows the sinks in force.
func (l *Logger) Stats() Stats {
	s := Stats{Written: l.written.Load(), Dropped: l.dropped.Load(), Errors: l.errors.Load()}
	if l.journal == nil {
		return s
	}
	committed := l.journal.Committed()
	s.Commits = l.journal.syncs.Load()
	l.setMu.Lock()
	set := l.set
	l.setMu.Unlock()
	for _, r := range set {
		c := r.stats
		ss := SinkStats{Name: c.name, Delivered: c.delivered.Load(), Retries: c.retries.Load(), Dropped: c.dropped.Load()}
		if acked := c.acked.Load(); committed > acked {
			ss.LagEvents = committed - acked
			ss.LagSeconds = time.Duration(c.lagNanos.Load()).Seconds()
		}
		s.Sinks = append(s.Sinks, ss)
	}
	return s
}

// Close stops accepting events, writes every queued event, then closes the
// sinks. With a journal it waits up to DrainTimeout for the sinks to deliver
// what the journal holds. It is idempotent: later calls wait for the first
// and return its result.
func (l *Logger) Close() error {
	l.closeOnce.Do(func() {
		l.mu.Lock()
		l.closed = true
		close(l.queue)
		l.mu.Unlock()
		select {
		case l.wake <- struct{}{}:
		default:
		}
		<-l.done
		// No change of sinks goes in force from here on.
		l.setMu.Lock()
		l.setClosed = true
		set := l.set
		l.setMu.Unlock()
		var errs []error
		if l.journal != nil {
			drained := make(chan struct{})
			go func() { l.delivering.Wait(); close(drained) }()
			t := time.NewTimer(l.drainTimeout)
			select {
			case <-drained:
			case <-t.C:
				l.log.Warn("audit sinks did not deliver the journal before the drain timeout; the rest goes after the next start",
					"timeout", l.drainTimeout)
			}
			t.Stop()
			l.stopDeliver()
			<-drained
			for _, r := range set {
				errs = append(errs, r.reader.Close())
			}
		}
		l.retiring.Wait()
		for _, r := range set {
			errs = append(errs, r.sink.Close())
		}
		l.closeErr = errors.Join(errs...)
	})
	return l.closeErr
}

// gapReasons are the reasons of drops the writer records, in the order it
// records them.
var gapReasons = []string{"queue_full", "journal_unavailable", "journal_full"}

func (l *Logger) lostCounter(reason string) *atomic.Uint64 {
	switch reason {
	case "journal_unavailable":
		return &l.lostJournal
	case "journal_full":
		return &l.lostFull
	}
	return &l.lostQueue
}

// takeGap returns the gap record of drops not yet recorded, or nil.
func (l *Logger) takeGap() *Event {
	for _, reason := range gapReasons {
		if n := l.lostCounter(reason).Swap(0); n > 0 {
			// One reason per record; the others wait for the next.
			return &Event{Kind: Audit, Gap: &Gap{Dropped: n, Reason: reason}}
		}
	}
	return nil
}

// Decided is the seam a front calls once it has decided to forward a
// request, before anything is forwarded (exchange.Recorder). Fail-closed, it
// journals a decision record (the event as it stands, phase "decision") and
// waits for its fsync: an error means it is not durable and the request must
// not be forwarded. Otherwise it returns nil at once.
func (l *Logger) Decided(ev *Event) error {
	if !l.failClosed.Load() {
		return nil
	}
	if ev.decided == 0 {
		ev.decided = l.decided.decided(time.Now())
	}
	rec := decisionRecord{Event: *ev}
	rec.ID, rec.Sequence, rec.Prev, rec.release, rec.decided = "", 0, "", nil, 0
	rec.Phase = PhaseDecision
	// The record may be written after the request is over (when the wait
	// below times out), by when a lent event is reused: it keeps its own
	// copies of what the event points to.
	if ev.Auth != nil {
		rec.auth = *ev.Auth
		rec.Auth = &rec.auth
	}
	if ev.Decision != nil {
		rec.decision = *ev.Decision
		rec.Decision = &rec.decision
	}
	l.prepare(&rec.Event)
	done := make(chan error, 1)
	if err := l.enqueue(queued{ev: &rec.Event, done: done}); err != nil {
		return fmt.Errorf("%w: decision not journaled", err)
	}
	t := time.NewTimer(l.writeTimeout)
	defer t.Stop()
	select {
	case err := <-done:
		return err
	case <-t.C:
		return fmt.Errorf("audit: decision not journaled within %v", l.writeTimeout)
	}
}

// decisionRecord is a fail-closed decision record with what it points to.
type decisionRecord struct {
	Event
	auth     Auth
	decision request.Decision
}

// Completed records the finished event (exchange.Recorder): Record.
func (l *Logger) Completed(ev *Event) {
	if ev.decided != 0 {
		l.decided.completed(ev.decided, time.Now())
		ev.decided = 0
	}
	l.Record(ev)
}
