package audit

import (
	"bytes"
	"context"
	"errors"
	"math/rand/v2"
	"time"
)

// Delivery from the journal to the sinks: one loop per sink, batches,
// retries with backoff, cursors.

// BatchSink is a sink that takes several records at once (an HTTP
// endpoint; stdout or a file, in one write). Fed from a journal, it gets up
// to MaxBatch records that are already committed; they are acknowledged
// together once WriteBatch returns nil. Without a journal it is written one
// record at a time (Write).
type BatchSink interface {
	Sink
	// WriteBatch delivers lines (each a record ending in '\n'), valid only
	// during the call, as one unit: an error means none is delivered.
	WriteBatch(ctx context.Context, lines [][]byte) error
	// MaxBatch bounds a batch's records and, roughly, its bytes.
	MaxBatch() (records, bytes int)
}

// deliver feeds run's sink from its journal cursor until the journal closes
// (and it has delivered everything), Close gives up waiting, its context
// ends (a change replaced it) or it has delivered what it had to before it
// was removed (stopping).
func (l *Logger) deliver(run *sinkRun) {
	defer l.delivering.Done()
	defer close(run.done)
	r, s, c := run.reader, run.sink, run.stats
	ctx := run.ctx
	lastSave := time.Now()
	maxRecords, maxBytes := 1, 0
	bs, batched := s.(BatchSink)
	if batched {
		maxRecords, maxBytes = bs.MaxBatch()
	}
	// A local sink (stdout, a file) ignores its context: no deadline, and
	// no timer, per batch.
	_, local := s.(localSink)
	// A sink that waits for an acknowledgement may need longer per batch.
	timeout := l.writeTimeout
	if ts, ok := s.(interface{ WriteTimeout() time.Duration }); ok && ts.WriteTimeout() > timeout {
		timeout = ts.WriteTimeout()
	}
	var (
		bufs  [][]byte // reused backing arrays of the batch's lines
		batch [][]byte
	)
	var lagSampled time.Time
	for {
		// The first record waits; the rest of a batch is what is already
		// committed.
		batch = batch[:0]
		var last uint64
		size := 0
		ending := false
		for len(batch) < maxRecords && (len(batch) == 0 || maxBytes == 0 || size < maxBytes) {
			line, seq, lost, err := r.read(ctx, len(batch) == 0)
			if lost > 0 {
				c.dropped.Add(lost)
				l.log.Error("audit journal quota removed records before the sink delivered them", "sink", c.name, "lost", lost, "nextSeq", seq)
				l.Record(&Event{Kind: Audit, Gap: &Gap{Dropped: lost, Reason: "quota", Sink: c.name, FromSeq: seq - lost, ToSeq: seq - 1}})
			}
			if errors.Is(err, errNoRecord) {
				break
			}
			if err != nil {
				if len(batch) > 0 && errors.Is(err, ErrJournalClosed) {
					break // deliver what was gathered, then stop on the next read
				}
				if !errors.Is(err, ErrJournalClosed) && ctx.Err() == nil {
					l.log.Error("audit journal read failed; the sink stops", "sink", c.name, "err", err)
				}
				return
			}
			if run.stopping.Load() && seq > run.stopAt.Load() {
				// Removed: what was committed after the change is not its.
				ending = true
				break
			}
			// The lag, from the record's time: sampled (parsing a time per
			// record would cost more than the delivery to a fast sink).
			if len(batch) == 0 && time.Since(lagSampled) > 100*time.Millisecond {
				if t, ok := lineTime(line); ok {
					c.lagNanos.Store(int64(time.Since(t)))
				}
				lagSampled = time.Now()
			}
			if len(bufs) == len(batch) {
				bufs = append(bufs, nil)
			}
			buf := bufs[len(batch)][:0]
			if f := run.format; f != nil {
				var ferr error
				if buf, ferr = f(buf, line); ferr != nil {
					// A journal line that doesn't parse can't be formatted,
					// ever: counted and skipped, not retried forever.
					c.retries.Add(1)
					l.errors.Add(1)
					l.log.Error("audit record not formatted; skipped for this sink", "sink", c.name, "seq", seq, "err", ferr)
					last = seq
					if len(batch) == 0 {
						r.Ack(seq)
						c.acked.Store(seq)
					}
					continue
				}
			} else {
				buf = append(buf, line...)
			}
			bufs[len(batch)] = buf
			batch = append(batch, buf)
			size += len(buf)
			last = seq
		}
		if len(batch) == 0 {
			if ending {
				return
			}
			continue
		}
		if ctx.Err() != nil {
			// Replaced or closed: what it read goes to its replacement or
			// after the next start. A read does not look at ctx while
			// records are committed, so a replaced loop ends here, and never
			// writes a record committed after the change.
			return
		}
		for attempt := 0; ; attempt++ {
			wctx, cancel := ctx, context.CancelFunc(func() {})
			if !local {
				wctx, cancel = context.WithTimeout(ctx, timeout)
			}
			var werr error
			if batched {
				werr = bs.WriteBatch(wctx, batch)
			} else {
				werr = s.Write(wctx, batch[0])
			}
			cancel()
			if werr == nil {
				break
			}
			if errors.Is(werr, errRejected) {
				// The receiver took the batch but refused some records for
				// good: sending them again can't help.
				l.errors.Add(1)
				l.log.Error("audit sink rejected records; they are in the journal, not at the receiver", "sink", c.name, "lastSeq", last, "err", werr)
				break
			}
			c.retries.Add(1)
			l.errors.Add(1)
			if attempt == 0 || attempt%10 == 0 {
				l.log.Error("audit sink write failed; retrying", "sink", c.name, "lastSeq", last, "records", len(batch), "attempt", attempt+1, "err", werr)
			}
			if !sleepCtx(ctx, backoff(l.backoff[0], l.backoff[1], attempt)) {
				return
			}
		}
		c.delivered.Add(uint64(len(batch)))
		r.Ack(last)
		c.acked.Store(last)
		if ending || (run.stopping.Load() && last >= run.stopAt.Load()) {
			return // removed, and done: its cursor is saved as it closes
		}
		if time.Since(lastSave) > time.Second {
			if err := r.Save(); err != nil {
				l.log.Warn("audit sink cursor not saved; records may be delivered again after a restart", "sink", c.name, "err", err)
			}
			lastSave = time.Now()
		}
	}
}

// backoff is the delay before retry attempt+1: doubling from first up to
// max, with full jitter over its upper half, so that sinks that failed
// together don't retry in step.
func backoff(first, max time.Duration, attempt int) time.Duration {
	d := first
	for range attempt {
		d *= 2
		if d >= max {
			d = max
			break
		}
	}
	return d/2 + rand.N(d/2+1)
}

func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// lineTime reads a record's time without decoding the line (AppendJSON
// writes it first).
func lineTime(line []byte) (time.Time, bool) {
	const p = `{"time":"`
	if len(line) < len(p)+len(timeLayout)-1 || string(line[:len(p)]) != p {
		return time.Time{}, false
	}
	end := bytes.IndexByte(line[len(p):], '"')
	if end < 0 {
		return time.Time{}, false
	}
	t, err := time.Parse(timeLayout, string(line[len(p):len(p)+end]))
	return t, err == nil
}
