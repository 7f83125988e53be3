package gateway_test

import (
	"bufio"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"tollgate.dev/tollgate/internal/identity/identitytest"
)

// TestExpiredSVIDStopsTraffic: when the gateway's SVID expires while
// connections to the upstream are pooled (idle ones, and one held in use by a
// streaming response), the gateway closes them at NotAfter: the upstream sees
// no request with the expired SVID after it, the stream is cut, and requests
// get 503 with the JSON error body until a fresh SVID is set, after which
// traffic flows again without a restart. Over HTTP/1.1 and HTTP/2 upstreams.
func TestExpiredSVIDStopsTraffic(t *testing.T) {
	for _, upH2 := range []bool{false, true} {
		t.Run("upstream="+protoName(upH2), func(t *testing.T) {
			t.Parallel()
			testExpiredSVIDStopsTraffic(t, upH2)
		})
	}
}

// inTransit bounds how long after NotAfter a request sent just before it may
// reach the upstream (a loaded machine under the race detector is slow).
const inTransit = 250 * time.Millisecond

type outcome struct {
	start  time.Time
	status int
	body   string
	err    error
}

func testExpiredSVIDStopsTraffic(t *testing.T, upH2 bool) {
	ca := identitytest.NewCA(t, "example.org")
	now := time.Now()
	// X.509 times have one-second resolution: NotAfter is read back from the
	// certificate, 3 to 4 s from now.
	short, err := ca.IssueSVIDValidity(identitytest.ID(t, gatewayID), now.Add(-time.Minute), now.Add(4*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	notAfter := short.Certificates[0].NotAfter
	src := identitytest.StaticSource(t, short, ca.Bundle())
	up := startRecordingUpstream(t, identitytest.Source(t, ca, echoID), upH2)
	base, roots := startRotationGateway(t, ca, src, up.addr)

	// A stream holds one upstream connection in use across NotAfter.
	streamClient := rotationClient(t, roots, true)
	resp, err := streamClient.Get(base + "/stream")
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("stream: %s", resp.Status)
	}
	streamEnd := make(chan time.Time, 1)
	go func() {
		defer resp.Body.Close()
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
		}
		streamEnd <- time.Now()
	}()

	// Steady requests over HTTP/1.1 and HTTP/2 clients until 1 s past
	// NotAfter, each 20 ms apart per client (about 200 in all).
	var mu sync.Mutex
	var outcomes []outcome
	var wg sync.WaitGroup
	for _, h2 := range []bool{false, true} {
		c := rotationClient(t, roots, h2)
		wg.Go(func() {
			for i := 0; i < 500 && time.Now().Before(notAfter.Add(time.Second)); i++ {
				o := outcome{start: time.Now()}
				resp, err := c.Get(base + "/load")
				if err == nil {
					b, rerr := io.ReadAll(resp.Body)
					resp.Body.Close()
					o.status, o.body, o.err = resp.StatusCode, string(b), rerr
				} else {
					o.err = err
				}
				mu.Lock()
				outcomes = append(outcomes, o)
				mu.Unlock()
				time.Sleep(20 * time.Millisecond)
			}
		})
	}
	wg.Wait()

	var before200, after503 int
	for _, o := range outcomes {
		switch {
		case o.start.Before(notAfter):
			// Sent before expiry: served, or cut at NotAfter (503 or a
			// broken body), never a 502 blaming the upstream.
			if o.err == nil && o.status != http.StatusOK && o.status != http.StatusServiceUnavailable {
				t.Errorf("request at NotAfter%v: status %d (%s), want 200 or 503", o.start.Sub(notAfter), o.status, o.body)
			}
			if o.status == http.StatusOK {
				before200++
			}
		case o.err != nil:
			t.Errorf("request at NotAfter+%v: %v, want a 503", o.start.Sub(notAfter), o.err)
		case o.status != http.StatusServiceUnavailable:
			t.Errorf("request at NotAfter+%v: status %d (%s), want 503", o.start.Sub(notAfter), o.status, o.body)
		default:
			after503++
			var body struct {
				Error     string `json:"error"`
				RequestID string `json:"requestId"`
			}
			if err := json.Unmarshal([]byte(o.body), &body); err != nil || body.Error != "upstream unavailable" || body.RequestID == "" {
				t.Errorf("503 body %q (%v), want {\"error\":\"upstream unavailable\",\"requestId\":…}", o.body, err)
			}
		}
	}
	if before200 == 0 || after503 == 0 {
		t.Fatalf("%d requests served before NotAfter and %d refused after; the load did not span it", before200, after503)
	}

	// The stream was cut at NotAfter, on both sides.
	select {
	case end := <-streamEnd:
		if end.Before(notAfter) || end.After(notAfter.Add(time.Second)) {
			t.Errorf("client's stream ended at NotAfter%+v, want just after NotAfter", end.Sub(notAfter))
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the stream opened with the expired SVID is still running")
	}

	// The upstream saw nothing with the old SVID after NotAfter, beyond
	// requests already in transit, and the stream's end.
	_, requests := up.snapshot()
	old := serialOf(short)
	var streamEnded bool
	for _, r := range requests {
		if r.serial != old || !r.at.After(notAfter.Add(inTransit)) {
			streamEnded = streamEnded || r.path == "/stream-end" && r.serial == old && !r.at.After(notAfter.Add(time.Second))
			continue
		}
		t.Errorf("upstream saw %s with the expired SVID at NotAfter+%v", r.path, r.at.Sub(notAfter))
	}
	if !streamEnded {
		t.Error("the upstream's stream handler did not end within 1 s of NotAfter")
	}

	// A fresh SVID: traffic resumes at once, no restart, with it.
	fresh := identitytest.SVID(t, ca, gatewayID)
	if err := src.Set(fresh, ca.Bundle()); err != nil {
		t.Fatal(err)
	}
	for _, h2 := range []bool{false, true} {
		c := rotationClient(t, roots, h2)
		resp, err := c.Get(base + "/after")
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || !strings.HasPrefix(string(b), "ok") {
			t.Errorf("after a fresh SVID (client %s): %s %q, want 200", protoName(h2), resp.Status, b)
		}
	}
	_, requests = up.snapshot()
	last := requests[len(requests)-1]
	if last.path != "/after" || last.serial != serialOf(fresh) {
		t.Errorf("last upstream request %s with serial %s, want /after with the fresh SVID %s", last.path, last.serial, serialOf(fresh))
	}
	t.Logf("upstream %s: %d requests served before NotAfter, %d refused with 503 after; stream cut; fresh SVID served",
		protoName(upH2), before200, after503)
}
