package filewatch

import (
	"errors"
	"fmt"
	"sync"
	"time"
)

// DefaultInterval is how often a [Watcher] reads its paths when
// [Options.Interval] is zero.
const DefaultInterval = 5 * time.Second

// Options configure a [Watcher].
type Options struct {
	// ReadOptions say what each read takes.
	ReadOptions
	// Interval is how often the paths are read; zero means DefaultInterval.
	Interval time.Duration
	// Settle is how long a change must hold still before it is reported:
	// once a read differs from the last report, the paths are read again
	// every Settle until two reads agree. Zero means DefaultSettle.
	Settle time.Duration
	// Initial is the snapshot the caller already acts on (usually from
	// [Read] at startup); changes are reported relative to it. Nil means
	// the first settled read is reported, whatever it is.
	Initial *Snapshot
	// OnChange is called from the watcher's goroutine, never concurrently
	// with itself, with each settled outcome that differs from the last
	// one reported: a new snapshot (err nil), or a read error (snap nil;
	// the same error is reported once, not on every poll). It must not
	// call Close, which waits for it.
	OnChange func(snap *Snapshot, err error)
}

// Watcher reads a set of paths every interval and reports settled changes to
// OnChange. It owns one goroutine, which Close stops.
type Watcher struct {
	paths []string
	opts  Options

	stop chan struct{}
	done chan struct{}
	once sync.Once
}

// New starts watching paths. It does not read them before returning.
func New(paths []string, opts Options) (*Watcher, error) {
	switch {
	case len(paths) == 0:
		return nil, errors.New("filewatch: no paths to watch")
	case opts.OnChange == nil:
		return nil, errors.New("filewatch: OnChange is required")
	case opts.Interval < 0:
		return nil, fmt.Errorf("filewatch: negative interval %s", opts.Interval)
	case opts.Settle < 0:
		return nil, fmt.Errorf("filewatch: negative settle interval %s", opts.Settle)
	}
	if opts.Interval == 0 {
		opts.Interval = DefaultInterval
	}
	if opts.Settle == 0 {
		opts.Settle = DefaultSettle
	}
	w := &Watcher{
		paths: append([]string(nil), paths...),
		opts:  opts,
		stop:  make(chan struct{}),
		done:  make(chan struct{}),
	}
	last := ""
	if opts.Initial != nil {
		last = reading{snap: opts.Initial}.key()
	}
	go w.run(last)
	return w, nil
}

// Close stops the watcher and waits for its goroutine (and an OnChange in
// progress) to return. It is idempotent.
func (w *Watcher) Close() error {
	w.once.Do(func() { close(w.stop) })
	<-w.done
	return nil
}

// run polls every Interval. A read that differs from the last report starts
// settling: read again every Settle until two reads agree, then report that
// outcome unless it is what was reported last (the files changed and changed
// back).
func (w *Watcher) run(last string) {
	defer close(w.done)
	t := time.NewTimer(w.opts.Interval)
	defer t.Stop()
	wait := func(d time.Duration) bool {
		t.Reset(d)
		select {
		case <-w.stop:
			return false
		case <-t.C:
			return true
		}
	}
	// The first wait uses the timer as created.
	select {
	case <-w.stop:
		return
	case <-t.C:
	}
	for {
		cur := read(w.paths, w.opts.ReadOptions)
		for cur.key() != last {
			if !wait(w.opts.Settle) {
				return
			}
			next := read(w.paths, w.opts.ReadOptions)
			if next.key() == cur.key() {
				last = cur.key()
				w.opts.OnChange(cur.snap, cur.err)
				break
			}
			cur = next
		}
		if !wait(w.opts.Interval) {
			return
		}
	}
}
