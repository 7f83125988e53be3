package gateway_test

import (
	"fmt"
	"io"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/svid/x509svid"

	"tollgate.dev/tollgate/internal/identity/identitytest"
)

// TestRotationUnderLoadFailsNoRequest keeps a bounded load (at most 2,000
// requests or 10 s) on the gateway over HTTP/1.1 and HTTP/2 keep-alive
// clients, and rotates the gateway's SVID twice in the middle of it, with the
// upstream speaking HTTP/1.1 or HTTP/2. It counts: no request may fail, and
// every upstream handshake that starts after a rotation must present the new
// SVID (the pools of the old one are retired, not reused).
func TestRotationUnderLoadFailsNoRequest(t *testing.T) {
	for _, upH2 := range []bool{false, true} {
		t.Run("upstream="+protoName(upH2), func(t *testing.T) {
			t.Parallel()
			testRotationUnderLoad(t, upH2)
		})
	}
}

func testRotationUnderLoad(t *testing.T, upH2 bool) {
	const (
		total    = 2000
		workers  = 8 // half over HTTP/1.1, half over HTTP/2
		deadline = 10 * time.Second
	)
	ca := identitytest.NewCA(t, "example.org")
	svids := []*x509svid.SVID{
		identitytest.SVID(t, ca, gatewayID),
		identitytest.SVID(t, ca, gatewayID),
		identitytest.SVID(t, ca, gatewayID),
	}
	src := identitytest.StaticSource(t, svids[0], ca.Bundle())
	up := startRecordingUpstream(t, identitytest.Source(t, ca, echoID), upH2)
	base, roots := startRotationGateway(t, ca, src, up.addr)
	clients := map[bool]*http.Client{false: rotationClient(t, roots, false), true: rotationClient(t, roots, true)}

	var (
		started, done, failed atomic.Int64
		mu                    sync.Mutex
		failures              []string
	)
	stop := time.Now().Add(deadline)
	var wg sync.WaitGroup
	for w := range workers {
		c := clients[w%2 == 1]
		wg.Go(func() {
			for started.Add(1) <= total && time.Now().Before(stop) {
				err := func() error {
					resp, err := c.Get(base + "/load")
					if err != nil {
						return err
					}
					defer resp.Body.Close()
					body, err := io.ReadAll(resp.Body)
					if err != nil {
						return err
					}
					if resp.StatusCode != http.StatusOK {
						return fmt.Errorf("%s: %s", resp.Status, body)
					}
					return nil
				}()
				done.Add(1)
				if err != nil {
					failed.Add(1)
					mu.Lock()
					if len(failures) < 10 {
						failures = append(failures, err.Error())
					}
					mu.Unlock()
				}
			}
		})
	}

	// Rotate at a third and at two thirds of the load, counted in requests
	// or in time, whichever comes first (the race detector is slow).
	rotatedAt := make([]time.Time, len(svids))
	begin := time.Now()
	for i := 1; i < len(svids); i++ {
		at := begin.Add(time.Duration(i) * deadline / 3)
		for done.Load() < int64(i*total/3) && time.Now().Before(at) {
			time.Sleep(time.Millisecond)
		}
		if err := src.Set(svids[i], ca.Bundle()); err != nil {
			t.Fatal(err)
		}
		rotatedAt[i] = time.Now()
	}
	wg.Wait()

	n, nFailed := done.Load(), failed.Load()
	handshakes, requests := up.snapshot()
	perSerial := map[string]int{}
	for _, r := range requests {
		perSerial[r.serial]++
	}
	t.Logf("upstream %s: %d requests (h1+h2 clients), %d failed; %d upstream handshakes; requests per SVID: %d, %d, %d",
		protoName(upH2), n, nFailed, len(handshakes), perSerial[serialOf(svids[0])], perSerial[serialOf(svids[1])], perSerial[serialOf(svids[2])])
	if nFailed != 0 {
		t.Errorf("%d of %d requests failed across two rotations, want 0; first: %q", nFailed, n, failures)
	}
	// A handshake whose ClientHello reached the upstream after Set returned
	// must present that SVID (or a later one).
	for _, h := range handshakes {
		for i := len(svids) - 1; i >= 1; i-- {
			if h.at.After(rotatedAt[i]) {
				ok := false
				for _, s := range svids[i:] {
					ok = ok || h.serial == serialOf(s)
				}
				if !ok {
					t.Errorf("handshake at +%v after rotation %d presented serial %s, want %s", h.at.Sub(rotatedAt[i]), i, h.serial, serialOf(svids[i]))
				}
				break
			}
		}
	}
	// The load spanned both rotations: each SVID carried requests.
	for i, s := range svids {
		if perSerial[serialOf(s)] == 0 {
			t.Errorf("the upstream saw no request with SVID %d (serial %s)", i, serialOf(s))
		}
	}
}
