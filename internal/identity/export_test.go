package identity

import (
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"github.com/spiffe/go-spiffe/v2/workloadapi"
)

// SetWorkloadBackoff makes the Workload API client retry every d, so tests of
// agent restarts need not wait for the default linear backoff.
func SetWorkloadBackoff(o *WorkloadOptions, d time.Duration) { o.backoff = constBackoff(d) }

type constBackoff time.Duration

func (b constBackoff) NewBackoff() workloadapi.Backoff { return b }
func (b constBackoff) Next() time.Duration             { return time.Duration(b) }
func (b constBackoff) Reset()                          {}

// IssueForeignSVID has ca sign an SVID for an ID outside its trust domain, as a
// federated partner's CA might try: verifiers must refuse it.
func IssueForeignSVID(ca *DevCA, id string) (*x509svid.SVID, error) {
	now := time.Now()
	return ca.issueSVID(spiffeid.RequireFromString(id), now.Add(-time.Minute), now.Add(time.Hour))
}
