package audit

import (
	"cmp"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"
)

// Journal defaults, for JournalOptions fields left zero.
const (
	DefaultSegmentBytes = 64 << 20
	DefaultSegmentAge   = time.Hour
	DefaultJournalBytes = 1 << 30
	DefaultSyncInterval = 10 * time.Millisecond
	// A fail-closed decision waits up to 1 ms for others to share its fsync
	// when more than 16 decided requests are in flight.
	DefaultDecisionDelay    = time.Millisecond
	DefaultDecisionSiblings = 16
	// A checkpoint every 10,000 records or 60 s (PCI DSS asks for the
	// integrity of audit trails; the SIEM reference suggests this cadence).
	DefaultCheckpointEvery    = 10000
	DefaultCheckpointInterval = time.Minute
)

// The active segment has a fixed name, so that a shipper tailing it (Vector,
// Fluent Bit, the OpenTelemetry filelog receiver) follows rotation by
// rename; a rotated segment is named after the sequence number of its first
// record, so that names sort in journal order.
const (
	activeSegment  = "audit.ndjson"
	segmentPrefix  = "audit-"
	segmentSuffix  = ".ndjson"
	cursorDir      = "cursors"
	journalDirMode = 0o700
)

// OnFull says what the journal does when it holds MaxBytes and its oldest
// segment still has records a sink has not delivered.
type OnFull string

const (
	// DropOldest deletes the oldest segment anyway: sinks behind it lose
	// those records, counted, and a gap record says so in the journal.
	DropOldest OnFull = "dropOldest"
	// Block refuses new records until the sinks catch up: the Logger drops
	// them (counted, with a gap record), or, fail-closed, the gateway
	// answers 503.
	Block OnFull = "block"
)

// ErrJournalFull is returned by a commit refused under OnFull Block.
var ErrJournalFull = errors.New("audit: journal full: sinks have not delivered its oldest segment")

// JournalOptions configures a Journal.
type JournalOptions struct {
	// Dir holds the segments and the sinks' cursors; created 0700.
	Dir string
	// SegmentBytes and SegmentAge rotate the active segment.
	SegmentBytes int64
	SegmentAge   time.Duration
	// MaxBytes is the quota of all segments together.
	MaxBytes int64
	// OnFull: DropOldest (the default) or Block.
	OnFull OnFull
	// SyncInterval is the group commit window: after a commit, records are
	// gathered for this long (or until 1,024 are waiting) before the next
	// write and fsync. Longer means fewer fsyncs and more latency to
	// durability (and, fail-closed, to forwarding). Zero: the default;
	// negative: commit as soon as the previous commit is done.
	SyncInterval time.Duration
	// DecisionDelay is how long a fail-closed decision waits for others to
	// share its write and fsync, when more than DecisionSiblings requests
	// decided in the last 50–100 ms (waiting for their commit, or forwarded
	// and not yet complete) are in flight; with fewer, it is committed at
	// once. A long-lived request (a WebSocket, a stream, a tunnel) stops
	// counting after that. Under
	// load an fsync then covers many decisions instead of a few, which
	// costs each up to DecisionDelay of latency and saves CPU (the fsyncs'
	// and the kernel's journal commits): PostgreSQL's commit_delay and
	// commit_siblings. Zero: the default; negative: never wait.
	DecisionDelay    time.Duration
	DecisionSiblings int
	// Signer, if set, signs a checkpoint record every CheckpointEvery
	// records or CheckpointInterval, whichever comes first, and at close.
	Signer             *Signer
	CheckpointEvery    int
	CheckpointInterval time.Duration
	// Log receives recovery notes; nil discards them.
	Log *slog.Logger
}

// Journal is the audit trail on local disk: append-only NDJSON segments,
// written in batches with one write and one fsync each (group commit), each
// record carrying the SHA-256 of the one before it (prev), so that an edited
// or removed line breaks the chain (see Verify). Only the Logger's writer
// goroutine appends; readers (the sinks' delivery loops) see committed,
// fsynced records only.
type Journal struct {
	opts JournalOptions
	dir  string

	// Writer goroutine only.
	f       *os.File
	created time.Time
	buf     []byte
	pending []pendingLine // the lines in buf
	seq     uint64        // last sequence number given out
	last    [32]byte      // hash of the last line given out
	hasLast bool
	// records added since the last checkpoint, and when it was
	sinceCheckpoint int
	lastCheckpoint  time.Time
	// state at the last commit, to roll back to when a commit fails
	cSeq     uint64
	cLast    [32]byte
	cHasLast bool

	mu      sync.Mutex
	segs    []segment // oldest first; the last is the active one
	commit  uint64    // last committed sequence number
	changed chan struct{}
	closed  bool
	// readers' positions, for OnFull Block and the lag metrics
	cursors map[*JournalReader]uint64
	torn    int64 // bytes of a torn last line cut at open
	// syncs counts the fsyncs of records (group commits).
	syncs atomic.Uint64
}

// pendingLine is a line waiting in the journal's buffer.
type pendingLine struct {
	seq  uint64
	end  int // offset in buf after its newline
	hash [32]byte
}

type segment struct {
	first, last uint64 // sequence numbers; last < first while empty
	path        string
	size        int64 // committed bytes
}

// OpenJournal opens (or creates) the journal in opts.Dir, cutting a torn last
// line that a crash left behind and continuing the sequence and the hash
// chain from the last whole record.
func OpenJournal(opts JournalOptions) (*Journal, error) {
	if opts.Dir == "" {
		return nil, errors.New("audit: journal needs a directory")
	}
	if opts.SegmentBytes < 0 || opts.SegmentAge < 0 || opts.MaxBytes < 0 || opts.CheckpointEvery < 0 || opts.CheckpointInterval < 0 {
		return nil, errors.New("audit: negative journal segment size, age or quota")
	}
	opts.SegmentBytes = cmp.Or(opts.SegmentBytes, DefaultSegmentBytes)
	opts.SegmentAge = cmp.Or(opts.SegmentAge, DefaultSegmentAge)
	opts.MaxBytes = cmp.Or(opts.MaxBytes, DefaultJournalBytes)
	opts.SyncInterval = cmp.Or(opts.SyncInterval, DefaultSyncInterval)
	opts.DecisionDelay = cmp.Or(opts.DecisionDelay, DefaultDecisionDelay)
	opts.DecisionSiblings = cmp.Or(opts.DecisionSiblings, DefaultDecisionSiblings)
	opts.CheckpointEvery = cmp.Or(opts.CheckpointEvery, DefaultCheckpointEvery)
	opts.CheckpointInterval = cmp.Or(opts.CheckpointInterval, DefaultCheckpointInterval)
	switch opts.OnFull {
	case "":
		opts.OnFull = DropOldest
	case DropOldest, Block:
	default:
		return nil, fmt.Errorf("audit: journal onFull %q: want %s or %s", opts.OnFull, DropOldest, Block)
	}
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	if err := os.MkdirAll(filepath.Join(opts.Dir, cursorDir), journalDirMode); err != nil {
		return nil, fmt.Errorf("audit: journal: %w", err)
	}
	j := &Journal{opts: opts, dir: opts.Dir, changed: make(chan struct{}), cursors: map[*JournalReader]uint64{}}
	if err := j.recover(); err != nil {
		return nil, err
	}
	return j, nil
}

// add gives ev the next sequence number and the hash of the line before it,
// encodes it and queues the line for the next commit. Writer goroutine only.
func (j *Journal) add(ev *Event) {
	j.seq++
	ev.Sequence = j.seq
	ev.Prev = ""
	if j.hasLast {
		ev.Prev = hex.EncodeToString(j.last[:])
	}
	start := len(j.buf)
	j.buf = ev.AppendJSON(j.buf)
	j.last, j.hasLast = sha256.Sum256(j.buf[start:]), true
	j.buf = append(j.buf, '\n')
	j.pending = append(j.pending, pendingLine{seq: j.seq, end: len(j.buf), hash: j.last})
	if ev.Checkpoint != nil {
		j.sinceCheckpoint, j.lastCheckpoint = 0, time.Now()
	} else {
		j.sinceCheckpoint++
	}
}

// checkpointDue returns the checkpoint record to add now (before the next
// record), or nil. final asks for one whenever anything was added since the
// last. Writer goroutine only.
func (j *Journal) checkpointDue(final bool) *Event {
	s := j.opts.Signer
	if s == nil || !j.hasLast || j.sinceCheckpoint == 0 {
		return nil
	}
	if j.lastCheckpoint.IsZero() {
		j.lastCheckpoint = time.Now() // the interval runs from the first record
	}
	if !final && j.sinceCheckpoint < j.opts.CheckpointEvery && time.Since(j.lastCheckpoint) < j.opts.CheckpointInterval {
		return nil
	}
	return &Event{Kind: Audit, Checkpoint: s.checkpoint(j.seq, j.last)}
}

// flush writes the queued lines and makes them durable: one write and one
// fsync per segment they go into (one, unless the batch fills a segment),
// rotating and enforcing the quota on the way. On failure the lines not yet
// committed are cut from the file and given up: the sequence and the chain
// go on from the last committed line, which flushed (below) tells. Writer
// goroutine only.
func (j *Journal) flush() error {
	if len(j.pending) == 0 {
		return nil
	}
	err := j.flushBatch()
	j.seq, j.last, j.hasLast = j.cSeq, j.cLast, j.cHasLast
	j.buf, j.pending = j.buf[:0], j.pending[:0]
	if cap(j.buf) > 4<<20 {
		j.buf = nil // don't keep a burst's buffer forever
	}
	return err
}

// flushed is the last committed sequence number, for the writer to tell
// which records of a failed flush made it. Writer goroutine only.
func (j *Journal) flushed() uint64 { return j.cSeq }

func (j *Journal) flushBatch() error {
	for start := 0; start < len(j.pending); {
		j.mu.Lock()
		act := j.segs[len(j.segs)-1]
		j.mu.Unlock()
		from := 0
		if start > 0 {
			from = j.pending[start-1].end
		}
		if act.size > 0 && (act.size+int64(j.pending[start].end-from) > j.opts.SegmentBytes || time.Since(j.created) > j.opts.SegmentAge) {
			if err := j.rotate(); err != nil {
				return err
			}
			act.size = 0
		}
		// As many lines as fit in the segment, at least one.
		k := start + 1
		for k < len(j.pending) && act.size+int64(j.pending[k].end-from) <= j.opts.SegmentBytes {
			k++
		}
		piece := j.buf[from:j.pending[k-1].end]
		if err := j.makeRoom(int64(len(piece))); err != nil {
			return err
		}
		if _, err := j.f.Write(piece); err != nil {
			// Cut what was written: a record that is not committed must not
			// be read, by a sink or by the next start.
			_ = j.f.Truncate(act.size)
			return fmt.Errorf("audit: journal write: %w", err)
		}
		j.syncs.Add(1)
		if err := j.f.Sync(); err != nil {
			// After a failed fsync the kernel may have dropped the pages:
			// treat the piece as lost.
			_ = j.f.Truncate(act.size)
			return fmt.Errorf("audit: journal fsync: %w", err)
		}
		last := j.pending[k-1]
		j.mu.Lock()
		a := &j.segs[len(j.segs)-1]
		if a.size == 0 {
			a.first = j.pending[start].seq
		}
		a.size += int64(len(piece))
		a.last = last.seq
		j.commit = last.seq
		j.notifyLocked()
		j.mu.Unlock()
		j.cSeq, j.cLast, j.cHasLast = last.seq, last.hash, true
		start = k
	}
	return nil
}

func (j *Journal) notifyLocked() {
	close(j.changed)
	j.changed = make(chan struct{})
}

// rotate renames the active segment after its first record and starts a
// new one. A reader that has the old file open reads on to its end: the
// rename keeps the file.
func (j *Journal) rotate() error {
	j.mu.Lock()
	defer j.mu.Unlock()
	a := &j.segs[len(j.segs)-1]
	rotated := filepath.Join(j.dir, segmentName(a.first))
	if err := os.Rename(a.path, rotated); err != nil {
		return fmt.Errorf("audit: journal rotate: %w", err)
	}
	f, err := os.OpenFile(a.path, os.O_RDWR|os.O_CREATE|os.O_EXCL|os.O_APPEND, fileMode)
	if err != nil {
		// Put the segment back so the journal stays as it was.
		_ = os.Rename(rotated, a.path)
		return fmt.Errorf("audit: journal rotate: %w", err)
	}
	if err := syncDir(j.dir); err != nil {
		j.opts.Log.Warn("audit journal: fsync of the directory after rotation failed", "err", err)
	}
	_ = j.f.Close()
	active := a.path
	a.path = rotated
	j.segs = append(j.segs, segment{first: j.cSeq + 1, last: j.cSeq, path: active})
	j.f, j.created = f, time.Now()
	j.notifyLocked()
	return nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// makeRoom deletes the oldest rotated segments while the journal would
// exceed its quota with n more bytes. Under Block, a segment a reader has
// not finished is kept and the commit refused.
func (j *Journal) makeRoom(n int64) error {
	j.mu.Lock()
	defer j.mu.Unlock()
	for {
		var total int64
		for _, s := range j.segs {
			total += s.size
		}
		if total+n <= j.opts.MaxBytes || len(j.segs) < 2 {
			return nil
		}
		old := j.segs[0]
		if j.opts.OnFull == Block {
			for _, c := range j.cursors {
				if c < old.last {
					return ErrJournalFull
				}
			}
		}
		if err := os.Remove(old.path); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("audit: journal quota: %w", err)
		}
		j.opts.Log.Info("audit journal: removed the oldest segment for the quota", "file", filepath.Base(old.path), "first", old.first, "last", old.last)
		j.segs = j.segs[1:]
		j.notifyLocked()
	}
}

// Committed returns the last committed sequence number.
func (j *Journal) Committed() uint64 {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.commit
}

// Dir returns the journal's directory.
func (j *Journal) Dir() string { return j.dir }

// close closes the active segment and wakes every reader. Writer goroutine,
// after its last flush.
func (j *Journal) close() error {
	j.mu.Lock()
	if j.closed {
		j.mu.Unlock()
		return nil
	}
	j.closed = true
	j.notifyLocked()
	j.mu.Unlock()
	return j.f.Close()
}
