package audit

import (
	"context"
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
	l.writeBatch(nil) // drops since the last batch
}

// writeBatch writes evs (prepared by Record), after a gap record of the
// drops not yet recorded, to every sink: each record is encoded once, and a
// local sink (stdout, a file) in the native format takes the whole batch in
// one write.
func (l *Logger) writeBatch(evs []*Event) {
	l.line, l.ends = l.line[:0], l.ends[:0]
	encode := func(ev *Event) {
		l.seq++
		ev.Sequence = l.seq
		l.line = append(ev.AppendJSON(l.line), '\n')
		l.ends = append(l.ends, len(l.line))
	}
	gap := l.takeGap()
	if gap != nil {
		l.prepare(gap)
		encode(gap)
	}
	for _, ev := range evs {
		encode(ev)
		ev.Release()
	}
	if len(l.ends) == 0 {
		return
	}
	l.failed = append(l.failed[:0], make([]bool, len(l.ends))...)
	l.setMu.Lock()
	for _, r := range l.set {
		if _, local := r.sink.(localSink); local && r.format == nil {
			if err := r.sink.Write(context.Background(), l.line); err != nil {
				l.errors.Add(uint64(len(l.ends)))
				l.log.Error("audit sink write failed", "err", err, "seq", l.seq-uint64(len(l.ends))+1, "records", len(l.ends))
				for i := range l.failed {
					l.failed[i] = true
				}
			}
			continue
		}
		start := 0
		for i, end := range l.ends {
			if err := l.writeOne(r, l.line[start:end]); err != nil {
				l.failed[i] = true
				l.errors.Add(1)
				l.log.Error("audit sink write failed", "err", err, "seq", l.seq-uint64(len(l.ends)-i)+1)
			}
			start = end
		}
	}
	l.setMu.Unlock()
	written := 0
	for i, f := range l.failed {
		if !f && (gap == nil || i > 0) { // the gap record is not an event
			written++
		}
	}
	l.written.Add(uint64(written))
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
