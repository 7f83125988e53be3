package policy

import (
	"fmt"
	"sync"
	"time"

	"tollgate.dev/tollgate/internal/config"
)

// Watcher polls policy files and reloads the store when their content changes.
// Close stops it; Close is idempotent.
type Watcher struct {
	stop chan struct{}
	done chan struct{}
	once sync.Once
}

// Watch polls paths every interval. When the content version differs from the
// serving set's, the whole set is compiled and swapped in; report (which may be
// nil) is told of every reload attempt: the new set, or the error while the old
// set keeps serving. A broken version is reported once, not on every poll.
//
// A new version is compiled only once two polls in a row have seen it: an
// editor that truncates a file before writing it would otherwise get its
// momentarily empty file swapped in, and an empty set allows everything. Writers
// should still replace files atomically (write a temporary file, then rename).
func (s *Store) Watch(paths []string, interval time.Duration, report func(*Set, error)) *Watcher {
	w := &Watcher{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(w.done)
		t := time.NewTicker(interval)
		defer t.Stop()
		failed, pending := "", ""
		for {
			select {
			case <-w.stop:
				return
			case <-t.C:
			}
			set, version, err := s.reloadIfChanged(paths, failed, &pending)
			if err != nil {
				failed = version
			}
			if (set != nil || err != nil) && report != nil {
				report(set, err)
			}
		}
	}()
	return w
}

// reloadIfChanged compiles and swaps in paths unless their version is the one
// serving or the one that last failed.
func (s *Store) reloadIfChanged(paths []string, failed string, pending *string) (*Set, string, error) {
	docs, err := config.LoadDocuments(paths)
	if docs != nil && docs.Version != *pending {
		*pending = docs.Version // not stable yet: look again next poll
		return nil, failed, nil
	}
	if err != nil {
		if docs != nil && docs.Version == failed {
			return nil, failed, nil
		}
		v := ""
		if docs != nil {
			v = docs.Version
		}
		return nil, v, fmt.Errorf("load policies: %w", err)
	}
	if cur := s.Current(); (cur != nil && cur.Version() == docs.Version) || docs.Version == failed {
		return nil, docs.Version, nil
	}
	set, err := Compile(docs.Documents, docs.Version, s.opts)
	if err != nil {
		return nil, docs.Version, fmt.Errorf("compile policies: %w", err)
	}
	s.cur.Store(set)
	return set, docs.Version, nil
}

// Close stops polling and waits for the poller to exit.
func (w *Watcher) Close() error {
	w.once.Do(func() { close(w.stop) })
	<-w.done
	return nil
}
