package policy

import (
	"fmt"
	"sync/atomic"

	"tollgate.dev/tollgate/internal/config"
)

// Store holds the policy set in force. A new set is parsed, validated and
// compiled as a whole and then swapped in atomically; a set that fails keeps the
// previous one serving. It is safe for concurrent use.
type Store struct {
	opts Options
	cur  atomic.Pointer[Set]
}

// NewStore returns an empty store. Until a set is loaded, Current is nil and
// callers must deny (fail closed).
func NewStore(opts Options) *Store {
	return &Store{opts: opts}
}

// Current returns the set in force, or nil before the first successful load.
func (s *Store) Current() *Set { return s.cur.Load() }

// Swap puts set in force (for callers that compile documents themselves, for
// example to load authentication documents from the same files).
func (s *Store) Swap(set *Set) { s.cur.Store(set) }

// Load reads every document of paths (files or directories), compiles the
// AuthorizationPolicies among them and swaps the result in. On any error the
// current set stays in force and the error lists every problem with its
// position. Documents of other kinds are ignored here.
func (s *Store) Load(paths []string) (*Set, error) {
	docs, err := config.LoadDocuments(paths)
	if err != nil {
		return nil, fmt.Errorf("load policies: %w", err)
	}
	set, err := Compile(docs.Documents, docs.Version, s.opts)
	if err != nil {
		return nil, fmt.Errorf("compile policies: %w", err)
	}
	s.cur.Store(set)
	return set, nil
}
