package audit

import (
	"errors"
	"time"
)

// The Logger's writer when it has a journal: group commits, fail-closed
// waiters, gap and checkpoint records.

// runJournal is the writer with a journal: it takes what is queued, up to
// maxBatch events, appends them and commits them with one write and one
// fsync (group commit), then answers the fail-closed waiters.
func (l *Logger) runJournal() {
	defer close(l.done)
	defer func() {
		if err := l.journal.close(); err != nil {
			l.log.Error("audit journal close failed", "err", err)
		}
	}()
	// The batch: every record added since the last commit.
	type entry struct {
		seq   uint64
		done  chan error
		event bool // not a gap record
		gap   *Gap
	}
	var batch []entry
	commit := func() {
		if len(batch) == 0 {
			return
		}
		err := l.journal.flush()
		durable := l.journal.flushed()
		var lost uint64
		for _, e := range batch {
			ok := e.seq <= durable
			if e.done != nil {
				if ok {
					e.done <- nil
				} else {
					e.done <- err
				}
			}
			switch {
			case e.gap != nil && !ok:
				// Not journaled either: its count waits for the next one.
				l.lostCounter(e.gap.Reason).Add(e.gap.Dropped)
			case !e.event:
			case ok:
				l.written.Add(1)
			default:
				lost++
			}
		}
		batch = batch[:0]
		if lost == 0 {
			return
		}
		l.dropped.Add(lost)
		if errors.Is(err, ErrJournalFull) {
			l.lostFull.Add(lost)
			return
		}
		l.lostJournal.Add(lost)
		l.log.Error("audit journal append failed; the records are lost and will be recorded as a gap", "err", err, "events", lost)
	}
	addCheckpoint := func(final bool) {
		if cp := l.journal.checkpointDue(final); cp != nil {
			l.prepare(cp)
			l.journal.add(cp)
			batch = append(batch, entry{seq: cp.Sequence})
		}
	}
	add := func(q queued) {
		addCheckpoint(false)
		if gap := l.takeGap(); gap != nil {
			l.prepare(gap)
			l.journal.add(gap)
			batch = append(batch, entry{seq: gap.Sequence, gap: gap.Gap})
		}
		l.journal.add(q.ev) // prepared by Record or Decided; encoded now
		batch = append(batch, entry{seq: q.ev.Sequence, done: q.done, event: true})
		q.ev.Release()
	}
	// Group commit: a batch is what arrives until SyncInterval has passed
	// since the last commit (or maxBatch records): under load one fsync
	// covers many records, at the cost of at most SyncInterval of latency.
	// Meanwhile records wait in the queue: the writer sleeps until the
	// window ends or something wakes it (wakeIfDue), and then takes them
	// all at once, instead of waking for each record.
	// A fail-closed decision's request is waiting: its batch is committed
	// at once, with whatever else is queued.
	interval := l.journal.opts.SyncInterval
	var lastCommit time.Time
	timer := time.NewTimer(0)
	<-timer.C
	defer timer.Stop()
	closed, decided := false, false
	// take adds what is queued, without waiting, up to maxBatch.
	take := func() {
		for !closed && len(batch) < maxBatch {
			select {
			case q, ok := <-l.queue:
				if !ok {
					closed = true
					return
				}
				if q.swap != nil {
					commit()
					q.swap()
					continue
				}
				add(q)
				decided = decided || q.done != nil
			default:
				return
			}
		}
	}
	// linger holds a batch with a fail-closed decision for DecisionDelay,
	// while more than DecisionSiblings requests decided lately (in the last
	// 50–100 ms) are in flight, so that the decisions arriving meanwhile
	// share its fsync. They don't wake the writer; a full batch, wakeAt
	// queued records or Close do.
	delay, siblings := l.journal.opts.DecisionDelay, l.journal.opts.DecisionSiblings
	linger := func() {
		if delay <= 0 || closed || l.decided.count(time.Now()) <= siblings {
			return
		}
		l.lingering.Store(true)
		defer l.lingering.Store(false)
		deadline := time.Now().Add(delay)
		for wait := delay; wait > 0 && !closed && len(batch) < maxBatch; wait = time.Until(deadline) {
			l.sleep(timer, wait)
			take()
		}
	}
	for !closed {
		q, ok := l.next()
		if !ok {
			break
		}
		add(q)
		decided = q.done != nil
		deadline := lastCommit.Add(interval)
		for wait := time.Until(deadline); wait > 0 && !decided && !closed && len(batch) < maxBatch; wait = time.Until(deadline) {
			l.sleep(timer, wait)
			take()
		}
		take()
		if decided {
			linger()
		}
		commit()
		lastCommit = time.Now()
	}
	// Close: commit what is left in the queue.
	for q := range l.queue {
		if q.swap != nil {
			commit()
			q.swap()
			continue
		}
		add(q)
	}
	commit()
	if gap := l.takeGap(); gap != nil {
		l.prepare(gap)
		l.journal.add(gap)
		batch = append(batch, entry{seq: gap.Sequence, gap: gap.Gap})
	}
	// The last checkpoint: the journal ends signed.
	addCheckpoint(true)
	commit()
}

// sleep waits for d on timer (stopped and drained) or until something wakes
// the writer (wakeIfDue). Writer goroutine only.
func (l *Logger) sleep(timer *time.Timer, d time.Duration) {
	timer.Reset(d)
	l.asleep.Store(true)
	// A record queued before asleep was set woke nobody: look again.
	if len(l.queue) < wakeAt {
		select {
		case <-timer.C:
		case <-l.wake:
		}
	}
	l.asleep.Store(false)
	timer.Stop()
}

// next waits for the next event, running the swaps queued before it; false
// once the queue is closed and empty. Writer goroutine only.
func (l *Logger) next() (queued, bool) {
	for {
		q, ok := <-l.queue
		if !ok || q.swap == nil {
			return q, ok
		}
		q.swap()
	}
}
