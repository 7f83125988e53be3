package identity

import (
	"time"

	"github.com/spiffe/go-spiffe/v2/workloadapi"
)

// SetWorkloadBackoff makes the Workload API client retry every d, so tests of
// agent restarts need not wait for the default linear backoff.
func SetWorkloadBackoff(o *WorkloadOptions, d time.Duration) { o.backoff = constBackoff(d) }

type constBackoff time.Duration

func (b constBackoff) NewBackoff() workloadapi.Backoff { return b }
func (b constBackoff) Next() time.Duration             { return time.Duration(b) }
func (b constBackoff) Reset()                          {}
