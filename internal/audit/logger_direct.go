package audit

import (
	"context"
	"errors"
	"time"
)

// The Logger's writer without a journal: straight to the sinks, a batch at
// a time.

// directWindow is how long the writer without a journal lets records
// gather after it wrote, before it writes again. Under load a batch then
// holds many records: the writer wakes once per window rather than once per
// record, and stdout or a file takes one write per batch. A record reaches
// the sinks at most this much later; wakeAt queued records end the window
// early.
const directWindow = 2 * time.Millisecond

// run is the writer without a journal.
func (l *Logger) run() {
	defer close(l.done)
	timer := time.NewTimer(0)
	<-timer.C
	defer timer.Stop()
	var (
		batch  []*Event
		last   time.Time
		closed bool
	)
	for !closed {
		q, ok := l.next()
		if !ok {
			break
		}
		batch = append(batch[:0], q.ev)
		if wait := time.Until(last.Add(directWindow)); wait > 0 {
			l.sleep(timer, wait)
		}
	take: // what is queued, without waiting
		for len(batch) < maxBatch {
			select {
			case q, ok := <-l.queue:
				if !ok {
					closed = true
					break take
				}
				if q.swap != nil {
					l.writeBatch(batch)
					batch = batch[:0]
					q.swap()
					continue
				}
				batch = append(batch, q.ev)
			default:
				break take
			}
		}
		l.writeBatch(batch)
		clear(batch) // the Logger is done with them (and released them)
		last = time.Now()
	}
	// The drops since the last batch, and the runs of records a sink lost
	// up to now, for the sinks that have them.
	l.setMu.Lock()
	for _, r := range l.set {
		if r.lost.open() {
			l.closeLost(r, false)
		}
	}
	l.setMu.Unlock()
	l.writeBatch(nil)
}

// writeBatch writes evs (prepared by Record), after a gap record of the
// drops not yet recorded and those of sinks that lost records, to every
// sink: each record is encoded once, and a local sink (stdout, a file) in
// the native format takes the whole batch in one write.
func (l *Logger) writeBatch(evs []*Event) {
	l.line, l.ends = l.line[:0], l.ends[:0]
	encode := func(ev *Event) {
		l.seq++
		ev.Sequence = l.seq
		l.line = append(ev.AppendJSON(l.line), '\n')
		l.ends = append(l.ends, len(l.line))
	}
	if gap := l.takeGap(); gap != nil {
		l.prepare(gap)
		encode(gap)
	}
	for _, gap := range l.sinkGaps {
		l.prepare(gap)
		encode(gap)
	}
	clear(l.sinkGaps)
	l.sinkGaps = l.sinkGaps[:0]
	lead := len(l.ends) // gap records, not events
	for _, ev := range evs {
		encode(ev)
		ev.Release()
	}
	if len(l.ends) == 0 {
		return
	}
	first := l.seq - uint64(len(l.ends)) + 1
	l.failed = append(l.failed[:0], make([]bool, len(l.ends))...)
	l.setMu.Lock()
	for _, r := range l.set {
		l.sinkFailed = append(l.sinkFailed[:0], make([]bool, len(l.ends))...)
		if _, local := r.sink.(localSink); local && r.format == nil {
			if err := r.sink.Write(context.Background(), l.line); err != nil {
				for i := range l.sinkFailed {
					l.sinkFailed[i] = true
				}
				l.writeFailed(r, err, first, len(l.ends))
			}
		} else {
			start := 0
			for i, end := range l.ends {
				if err := l.writeOne(r, l.line[start:end]); err != nil {
					l.sinkFailed[i] = true
					l.writeFailed(r, err, first+uint64(i), 1)
				}
				start = end
			}
		}
		l.track(r, first)
	}
	l.setMu.Unlock()
	written := 0
	for i, f := range l.failed {
		if !f && i >= lead {
			written++
		}
	}
	l.written.Add(uint64(written))
}

// writeFailed counts and logs n records from seq that r refused. A stalled
// reader is logged once, when it stalls.
func (l *Logger) writeFailed(r *sinkRun, err error, seq uint64, n int) {
	l.errors.Add(uint64(n))
	var stall *StallError
	if !errors.As(err, &stall) {
		l.log.Error("audit sink write failed", "sink", r.name, "err", err, "seq", seq, "records", n)
		return
	}
	if !r.stalled {
		r.stalled = true
		l.log.Error("audit sink stalled: its reader has taken nothing for the stall timeout, or is slower than the records; the sink loses records until it catches up, then a gap record counts them",
			"sink", r.name, "seq", seq)
	}
}

// track marks the lines of the batch (from seq first) that r refused, and
// turns each run of them that has ended into a gap record for the next
// batch.
func (l *Logger) track(r *sinkRun, first uint64) {
	for i, f := range l.sinkFailed {
		seq := first + uint64(i)
		switch {
		case f:
			l.failed[i] = true
			if !r.lost.open() {
				r.lost.from = seq
			}
			r.lost.to = seq
		case r.lost.open():
			l.closeLost(r, true)
		}
	}
}

// closeLost ends r's run of lost records with a gap record: r took a
// record again (recovered), or it is being removed, or the Logger closes.
func (l *Logger) closeLost(r *sinkRun, recovered bool) {
	gap := r.lost.gap(r.name)
	if recovered && r.stalled {
		l.log.Warn("audit sink takes records again", "sink", r.name, "lost", gap.Gap.Dropped, "fromSeq", gap.Gap.FromSeq, "toSeq", gap.Gap.ToSeq)
	}
	l.sinkGaps = append(l.sinkGaps, gap)
	r.lost = lostRange{}
	if recovered {
		r.stalled = false
	}
}

// writeOne writes one record, formatted for the sink, with a deadline
// unless the sink is local.
func (l *Logger) writeOne(r *sinkRun, line []byte) error {
	if f := r.format; f != nil {
		var err error
		if l.formatted, err = f(l.formatted[:0], line); err != nil {
			return err
		}
		line = l.formatted
	}
	if _, ok := r.sink.(localSink); ok {
		return r.sink.Write(context.Background(), line)
	}
	ctx, cancel := context.WithTimeout(context.Background(), l.writeTimeout)
	defer cancel()
	return r.sink.Write(ctx, line)
}
