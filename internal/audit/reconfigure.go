package audit

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"
)

// Changing a running Logger: its sinks (PrepareSinks, then Commit or Abort),
// its pseudonyms, instance and failure mode.

// SinkSpec is one sink of the set a running Logger changes to.
type SinkSpec struct {
	// Name identifies the sink (with a journal, its cursor). A name of the
	// set in force with a nil Sink keeps that sink as it runs.
	Name string
	// Sink is the new sink; nil keeps the running sink called Name.
	Sink Sink
	// Format is the new sink's format (ignored when Sink is nil).
	Format Format
}

// SinkChange is a prepared change of a Logger's sinks: Commit puts it in
// force, Abort drops it. Changes of one Logger must not overlap: prepare the
// next once this one is committed or aborted.
type SinkChange struct {
	l    *Logger
	next []*sinkRun
	// started are the runs of next with a new sink; opened, those whose
	// journal cursor PrepareSinks created.
	started []*sinkRun
	opened  []*sinkRun
	done    bool
}

// PrepareSinks prepares the change of the Logger's sinks to specs, in their
// order, without touching what runs:
//
//   - a name in force with a nil Sink keeps its sink, untouched (with a
//     journal: its cursor and its delivery loop);
//   - a name in force with a new Sink replaces it (with a journal, the new
//     sink goes on from the same cursor: it is the same logical sink);
//   - a new name starts from now (with a journal, its cursor starts after
//     the records committed before the change, where the sinks it removes
//     stop, even if a sink of that name removed earlier left its cursor);
//   - a name in force that specs leave out is removed.
//
// With a journal it opens the cursors of the new names. On error nothing is
// changed and the new sinks are left to the caller to close; once the
// change is returned, its Commit or Abort owns them.
func (l *Logger) PrepareSinks(specs []SinkSpec) (*SinkChange, error) {
	if len(specs) == 0 {
		return nil, errors.New("audit: no sinks configured")
	}
	l.setMu.Lock()
	cur := map[string]*sinkRun{}
	for _, r := range l.set {
		cur[r.name] = r
	}
	l.setMu.Unlock()
	c := &SinkChange{l: l}
	seen := map[string]bool{}
	fail := func(err error) (*SinkChange, error) {
		c.discardCursors()
		return nil, err
	}
	for i, sp := range specs {
		if seen[sp.Name] {
			return fail(fmt.Errorf("audit: sink %d: name %q given twice", i, sp.Name))
		}
		seen[sp.Name] = true
		old := cur[sp.Name]
		if sp.Sink == nil {
			if old == nil {
				return fail(fmt.Errorf("audit: sink %d: no sink %q in force to keep", i, sp.Name))
			}
			c.next = append(c.next, old)
			continue
		}
		f, err := formatter(sp.Format, l.product)
		if err != nil {
			return fail(err)
		}
		r := &sinkRun{name: sp.Name, sink: sp.Sink, format: f}
		if l.journal != nil {
			if old != nil {
				r.reader, r.stats = old.reader, old.stats
			} else {
				// A Logger starting takes the cursors as they are; one
				// running starts the sinks it adds from now.
				rd, err := l.journal.newReader(sp.Name, l.started)
				if err != nil {
					return fail(err)
				}
				r.reader, r.stats = rd, &sinkCounters{name: sp.Name}
				r.stats.acked.Store(rd.Acked())
				c.opened = append(c.opened, r)
			}
		}
		c.next = append(c.next, r)
		c.started = append(c.started, r)
	}
	return c, nil
}

// discardCursors closes the cursors the change opened, removing those it
// created: a name that never went in force leaves no cursor behind.
func (c *SinkChange) discardCursors() {
	for _, r := range c.opened {
		_ = r.reader.Close()
		if r.reader.fresh {
			_ = os.Remove(r.reader.path)
		}
	}
	c.opened = nil
}

// Abort drops a change that was not committed: it closes its new sinks and
// the cursors it opened. The sinks in force are untouched.
func (c *SinkChange) Abort() {
	if c == nil || c.done {
		return
	}
	c.done = true
	c.discardCursors()
	for _, r := range c.started {
		if err := r.sink.Close(); err != nil {
			c.l.log.Warn("audit sink of a dropped change not closed cleanly", "sink", r.name, "err", err)
		}
	}
}

// Commit puts the change in force, between two records: every record
// recorded before Commit goes to the sinks in force before it, every record
// recorded after it returns to the new set. Without a journal, the writer
// takes the change once it has written what was queued before it; a removed
// or replaced sink is closed before Commit returns. With a journal, the
// writer commits what was queued first; a replaced sink's loop is stopped
// (what it had not delivered goes to its replacement, from the same cursor),
// and a removed one delivers what was committed before the change, for at
// most DrainTimeout, in the background; then its cursor is saved and the
// sink closed. A closed Logger takes no change: Commit aborts it.
func (c *SinkChange) Commit() {
	if c == nil || c.done {
		return
	}
	l := c.l
	var gone []*sinkRun // replaced or removed, without a journal
	applied := make(chan bool, 1)
	err := l.enqueueWait(queued{swap: func() { gone = c.swap(); applied <- true }})
	if err != nil || !<-applied {
		c.Abort()
		return
	}
	c.done = true
	for _, r := range gone {
		if err := r.sink.Close(); err != nil {
			l.log.Warn("audit sink removed by a change not closed cleanly", "sink", r.name, "err", err)
		}
	}
}

// swap puts c in force; it runs on the writer goroutine, between two
// records. It returns the runs to close, without a journal.
func (c *SinkChange) swap() (gone []*sinkRun) {
	l := c.l
	l.setMu.Lock()
	defer l.setMu.Unlock()
	old := l.set
	l.set = c.next
	in := map[*sinkRun]bool{}
	names := map[string]bool{}
	for _, r := range c.next {
		in[r], names[r.name] = true, true
	}
	replaced := map[string]*sinkRun{}
	for _, r := range old {
		switch {
		case in[r]:
		case l.journal == nil:
			if r.lost.open() {
				l.closeLost(r, false) // the sinks that stay say what it lost
			}
			gone = append(gone, r)
		case names[r.name]:
			replaced[r.name] = r
		default:
			l.retire(r)
		}
	}
	// Every goroutine is started under setMu, before Close can set
	// setClosed, so that Close waits for all of them.
	var end uint64
	if l.journal != nil {
		end = l.journal.Committed() // what was queued before is committed
	}
	for _, r := range c.started {
		if prev := replaced[r.name]; prev != nil {
			prev.cancel()
			l.startAfter(r, prev)
			continue
		}
		if l.journal != nil {
			// Added: from the change on, where the sinks it removes stop.
			r.reader.skipTo(end)
			r.stats.acked.Store(r.reader.Acked())
		}
		l.start(r)
	}
	return gone
}

// Reopen reopens the files of the sinks in force (FileSink.Reopen), after
// logrotate renamed them.
func (l *Logger) Reopen() error {
	l.setMu.Lock()
	set := l.set
	l.setMu.Unlock()
	var errs []error
	for _, r := range set {
		if f, ok := r.sink.(interface{ Reopen() error }); ok {
			errs = append(errs, f.Reopen())
		}
	}
	return errors.Join(errs...)
}

// enqueueWait sends q to the writer, waiting for room as long as it takes
// (the writer drains the queue: each record's writes are bounded).
func (l *Logger) enqueueWait(q queued) error {
	l.mu.RLock()
	defer l.mu.RUnlock()
	if l.closed {
		return errLoggerClosed
	}
	l.queue <- q
	return nil
}

// start starts r's delivery loop (with a journal). The caller holds setMu.
func (l *Logger) start(r *sinkRun) {
	if l.journal == nil {
		return
	}
	r.ctx, r.cancel = context.WithCancel(l.deliverCtx)
	r.done = make(chan struct{})
	l.delivering.Add(1)
	go l.deliver(r)
}

// startAfter starts r, the replacement of prev, once prev's loop has ended
// and prev's sink is closed, from the cursor they share. The caller holds
// setMu.
func (l *Logger) startAfter(r, prev *sinkRun) {
	r.ctx, r.cancel = context.WithCancel(l.deliverCtx)
	r.done = make(chan struct{})
	l.delivering.Add(1)
	go func() {
		<-prev.done
		if err := prev.sink.Close(); err != nil {
			l.log.Warn("audit sink replaced by a change not closed cleanly", "sink", prev.name, "err", err)
		}
		// What prev read but did not get acknowledged goes to r.
		r.reader.rewind()
		l.deliver(r)
	}()
}

// retire ends the loop of r, a sink removed with a journal, once it has
// delivered what is committed now (at most DrainTimeout), then saves its
// cursor and closes it. The caller holds setMu.
func (l *Logger) retire(r *sinkRun) {
	stop := l.journal.Committed()
	r.stopAt.Store(stop)
	r.stopping.Store(true)
	// The loop checks stopping after it acknowledged: either it sees it, or
	// this sees what it acknowledged.
	if r.stats.acked.Load() >= stop {
		r.cancel()
	}
	l.retiring.Add(1)
	go func() {
		defer l.retiring.Done()
		t := time.NewTimer(l.drainTimeout)
		select {
		case <-r.done:
		case <-t.C:
			l.log.Warn("removed audit sink did not deliver the journal before the drain timeout", "sink", r.name, "timeout", l.drainTimeout)
		}
		t.Stop()
		r.cancel()
		<-r.done
		if err := errors.Join(r.reader.Close(), r.sink.Close()); err != nil {
			l.log.Warn("removed audit sink not closed cleanly", "sink", r.name, "err", err)
		}
	}()
}

// SetPseudonymize changes the pseudonyms of the records recorded from now
// on; nil stops pseudonymizing.
func (l *Logger) SetPseudonymize(p *Pseudonymize) { l.pseudonyms.Store(p) }

// SetInstance changes the instance named in the records recorded from now
// on; empty means the host name.
func (l *Logger) SetInstance(instance string) {
	if instance == "" {
		instance, _ = os.Hostname()
	}
	l.instance.Store(&instance)
}

// SetFailClosed changes the failure mode of the requests decided from now
// on. Fail-closed needs a journal.
func (l *Logger) SetFailClosed(closed bool) error {
	if closed && l.journal == nil {
		return errors.New("audit: fail-closed needs a journal")
	}
	l.failClosed.Store(closed)
	return nil
}
