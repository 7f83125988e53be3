//go:build spire

package gateway_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"tollgate.dev/tollgate/internal/config"
	"tollgate.dev/tollgate/internal/identity"
	"tollgate.dev/tollgate/internal/identity/identitytest"
	"tollgate.dev/tollgate/internal/spiretest"
)

// TestSPIREEndToEnd runs a request over SPIRE-issued SVIDs on both sides, and
// checks the identity errors that need a real agent: no identity issued for
// this workload, a picked ID that is not issued, and a trust domain mismatch.
func TestSPIREEndToEnd(t *testing.T) {
	t.Parallel()
	env := spiretest.Start(t, spiretest.Options{TrustDomain: "example.org", SVIDTTL: time.Minute})

	// Before any entry exists the agent answers "no identity issued": a clear
	// startup error after the bounded wait, naming the field and the socket.
	t.Run("no identity issued", func(t *testing.T) {
		dir := t.TempDir()
		ingressCA(t, dir)
		text := gatewayYAML(fmt.Sprintf("  workloadAPI: {socket: %q, waitTimeout: 2s}", env.SocketAddr()), echoRoute("x", "/", "127.0.0.1:1", spireUpstreamID), "")
		t0 := time.Now()
		_, _, err := newGateway(t, dir, text)
		wantErrs(t, err, "identity.workloadAPI: ", "no identity issued", env.SocketPath(), "after 2s")
		if d := time.Since(t0); d < 2*time.Second || d > 10*time.Second {
			t.Errorf("gave up after %v, want the configured 2s wait", d)
		}
		t.Logf("error: %v", err)
	})

	env.CreateEntry(t, spireGatewayID, spiretest.UIDSelector())
	env.CreateEntry(t, spireUpstreamID, spiretest.UIDSelector())
	env.CreateEntry(t, spireOtherID, spiretest.UIDSelector())
	env.WaitForSVID(t, spireGatewayID)
	env.WaitForSVID(t, spireUpstreamID)
	env.WaitForSVID(t, spireOtherID)

	for _, tc := range []struct {
		name          string
		extraIdentity string
		pick          string
		wantErr       []string
	}{
		{
			name:          "trust domain does not match the SVID",
			extraIdentity: "  trustDomain: other.test",
			wantErr:       []string{"identity.trustDomain: ", "the gateway's SVID " + spireGatewayID + ` is not in trust domain "other.test"`},
		},
		{
			name:    "picked SPIFFE ID not issued",
			pick:    "spiffe://example.org/not-registered",
			wantErr: []string{"identity.workloadAPI: ", "offers no SVID for spiffe://example.org/not-registered", spireGatewayID},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			ingressCA(t, dir)
			text := spireGatewayYAML(env, tc.extraIdentity, echoRoute("x", "/", "127.0.0.1:1", spireUpstreamID), "")
			if tc.pick != "" {
				text = strings.Replace(text, spireGatewayID, tc.pick, 1)
				text = strings.Replace(text, "waitTimeout: 20s", "waitTimeout: 2s", 1)
			}
			_, _, err := newGateway(t, dir, text)
			wantErrs(t, err, tc.wantErr...)
		})
	}

	up := startRecorder(t, workloadSource(t, env, spireUpstreamID), spireGatewayID)
	// Registered under another ID than the route expects: the gateway must not talk to it.
	impostor := startRecorder(t, workloadSource(t, env, spireOtherID), spireGatewayID)
	dir := t.TempDir()
	roots := ingressCA(t, dir)
	text := spireGatewayYAML(env, "", echoRoute("up", "/up", up.addr, spireUpstreamID)+echoRoute("impostor", "/impostor", impostor.addr, spireUpstreamID), "")
	t0 := time.Now()
	gw := startGateway(t, dir, text)
	if err := waitFor(10*time.Second, func() error { return readyz(gw) }); err != nil {
		t.Fatal(err)
	}
	t.Logf("in-process gateway.New+Start → /readyz 200 with a running agent: %v", time.Since(t0).Round(time.Millisecond))

	base := "https://" + gw.IngressAddr().String()
	for _, h2 := range []bool{false, true} {
		c := httpsClient(t, roots, h2)
		status, body := get(t, c, base+"/up/hello")
		if status != http.StatusOK {
			t.Fatalf("h2=%v: /up: status %d: %s", h2, status, body)
		}
		var r recorderReply
		if err := json.Unmarshal([]byte(body), &r); err != nil || r.Caller != spireGatewayID {
			t.Fatalf("h2=%v: upstream saw caller %q (%v), want %s", h2, r.Caller, err, spireGatewayID)
		}
		if status, body := get(t, c, base+"/impostor/hello"); status != http.StatusBadGateway {
			t.Fatalf("h2=%v: upstream with another SPIFFE ID: status %d, want 502: %s", h2, status, body)
		}
	}
	if n := impostor.reqs.Load(); n != 0 {
		t.Fatalf("the impostor upstream received %d requests", n)
	}
	v, ok := metric(t, gw, "tollgate_svid_expiry_seconds ")
	if !ok || v <= 0 || v > 90 {
		t.Fatalf("tollgate_svid_expiry_seconds = %v (present %v), want within the 1m TTL (+10s backdating)", v, ok)
	}
}

// wantErrs fails unless err is a positioned config error containing every want.
func wantErrs(t *testing.T, err error, want ...string) {
	t.Helper()
	if err == nil {
		t.Fatalf("gateway.New succeeded; want an error containing %q", want)
	}
	var es config.Errors
	if !errors.As(err, &es) || es[0].Line == 0 {
		t.Errorf("error is not positioned in the config file: %v", err)
	}
	for _, w := range want {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error %q\ndoes not contain %q", err, w)
		}
	}
}

// TestSPIRERotationUnderLoad keeps a steady load through the gateway while
// SPIRE rotates both the gateway's and the upstream's SVIDs at least twice:
// no request may fail, and the upstream must see the gateway's new SVIDs
// (new handshakes use them; pooled connections age out).
func TestSPIRERotationUnderLoad(t *testing.T) {
	t.Parallel()
	// 20s TTL: SPIRE backdates NotBefore by 10s and the agent renews at half
	// the 30s lifetime, so a new SVID arrives about every 5s.
	env := spiretest.Start(t, spiretest.Options{TrustDomain: "example.org", SVIDTTL: 20 * time.Second})
	env.CreateEntry(t, spireGatewayID, spiretest.UIDSelector())
	env.CreateEntry(t, spireUpstreamID, spiretest.UIDSelector())
	env.WaitForSVID(t, spireGatewayID)
	env.WaitForSVID(t, spireUpstreamID)

	upSrc := workloadSource(t, env, spireUpstreamID)
	up := startRecorder(t, upSrc, spireGatewayID)
	dir := t.TempDir()
	roots := ingressCA(t, dir)
	gw := startGateway(t, dir, spireGatewayYAML(env, "", echoRoute("up", "/", up.addr, spireUpstreamID), ""))

	res, stop := runLoad(t, roots, "https://"+gw.IngressAddr().String()+"/load", 8, 90*time.Second)
	defer stop()
	upSerials := map[string]bool{upSrc.Status().Serial: true}
	t0 := time.Now()
	err := waitFor(75*time.Second, func() error {
		upSerials[upSrc.Status().Serial] = true
		// Three distinct serials on each side = at least two rotations.
		if n, m := up.callerSerials(), len(upSerials); n < 3 || m < 3 {
			return fmt.Errorf("gateway SVIDs seen by the upstream: %d, upstream SVIDs: %d: %w", n, m, errNotYet)
		}
		return nil
	})
	stop()
	t.Logf("load across rotations for %v: %v; gateway SVIDs seen by the upstream: %d; upstream SVIDs: %d",
		time.Since(t0).Round(100*time.Millisecond), res, up.callerSerials(), len(upSerials))
	if err != nil {
		t.Fatal(err)
	}
	if res.failed.Load() != 0 || res.ok.Load() < 100 {
		t.Fatalf("want zero failed requests and a steady load: %v", res)
	}
	if v, ok := metric(t, gw, `tollgate_cert_reloads_total{kind="svid",result="success"} `); !ok || v < 2 {
		t.Errorf(`tollgate_cert_reloads_total{kind="svid",result="success"} = %v (present %v), want >= 2 rotations counted`, v, ok)
	}
}

// TestSPIREAgentRestartUnderLoad stops the agent under load: the gateway keeps
// serving with its cached SVID (zero failures) and reconnects when the agent
// is back; stopped for good, readiness turns false before the SVID expires.
func TestSPIREAgentRestartUnderLoad(t *testing.T) {
	t.Parallel()
	env := spiretest.Start(t, spiretest.Options{TrustDomain: "example.org", SVIDTTL: 20 * time.Second})
	env.CreateEntry(t, spireGatewayID, spiretest.UIDSelector())
	// The upstream's SVID outlives the test, so only the gateway's cache is on trial.
	env.Register(t, spiretest.Entry{SPIFFEID: spireUpstreamID, Selectors: []string{spiretest.UIDSelector()}, X509SVIDTTL: 5 * time.Minute})
	env.WaitForSVID(t, spireGatewayID)
	env.WaitForSVID(t, spireUpstreamID)

	up := startRecorder(t, workloadSource(t, env, spireUpstreamID), spireGatewayID)
	dir := t.TempDir()
	roots := ingressCA(t, dir)
	gw := startGateway(t, dir, spireGatewayYAML(env, "", echoRoute("up", "/", up.addr, spireUpstreamID), ""))
	url := "https://" + gw.IngressAddr().String() + "/load"
	failures := func() float64 {
		v, _ := metric(t, gw, `tollgate_cert_reloads_total{kind="svid",result="failure"} `)
		return v
	}

	// Phase 1: stop and restart the agent mid-load.
	res, stop := runLoad(t, roots, url, 6, 60*time.Second)
	time.Sleep(time.Second)
	env.StopAgent(t)
	time.Sleep(3 * time.Second)
	if err := readyz(gw); err != nil {
		t.Errorf("readiness with the agent stopped and a valid cached SVID: %v", err)
	}
	before := up.callerSerials()
	env.StartAgent(t)
	// The gateway reconnects (with backoff) and picks up the agent's SVIDs; wait for a new
	// one to reach the upstream in a new handshake.
	if err := waitFor(45*time.Second, func() error {
		if up.callerSerials() <= before {
			return errNotYet
		}
		return nil
	}); err != nil {
		t.Errorf("no new gateway SVID reached the upstream after the agent restart: %v", err)
	}
	stop()
	t.Logf("phase 1 (agent stopped 3s, restarted): %v", res)
	if res.failed.Load() != 0 || res.ok.Load() < 100 {
		t.Fatalf("phase 1: want zero failed requests under load: %v", res)
	}
	if n := failures(); n < 1 {
		t.Errorf(`tollgate_cert_reloads_total{kind="svid",result="failure"} = %v after the agent went away, want >= 1`, n)
	}
	if err := readyz(gw); err != nil {
		t.Fatalf("readiness after the agent restart: %v", err)
	}

	// Phase 2: stop the agent for good. Requests keep succeeding while the cached
	// SVID is valid; readiness turns false before it expires.
	res, stop = runLoad(t, roots, url, 6, 60*time.Second)
	defer stop()
	env.StopAgent(t)
	stoppedAt := time.Now()
	var notReadyAt time.Time
	if err := waitFor(45*time.Second, func() error {
		if err := readyz(gw); err != nil {
			notReadyAt = time.Now()
			t.Logf("readiness turned false: %v", err)
			return nil
		}
		return errNotYet
	}); err != nil {
		t.Fatalf("readiness stayed true with the agent gone: %v", err)
	}
	stop()
	t.Logf("phase 2 (agent stopped, until readiness false after %v): %v", notReadyAt.Sub(stoppedAt).Round(100*time.Millisecond), res)
	if res.failed.Load() != 0 {
		t.Fatalf("phase 2: requests failed while the cached SVID was valid: %v", res)
	}
	// The SVID the gateway still holds: readiness must have turned before its NotAfter.
	expiry, ok := metric(t, gw, "tollgate_svid_expiry_seconds ")
	if !ok || expiry <= 0 {
		t.Fatalf("tollgate_svid_expiry_seconds = %v (present %v) at readiness false; want the SVID still valid", expiry, ok)
	}
	t.Logf("readiness false %.1fs before the cached SVID expires", expiry)

	// Past NotAfter, readiness stays false and the metric goes negative.
	time.Sleep(time.Duration(expiry*float64(time.Second)) + 500*time.Millisecond)
	if err := readyz(gw); err == nil {
		t.Errorf("ready with an expired SVID")
	}
	if v, _ := metric(t, gw, "tollgate_svid_expiry_seconds "); v >= 0 {
		t.Errorf("tollgate_svid_expiry_seconds = %v after NotAfter, want negative", v)
	}

	// The agent comes back: ready again, requests succeed.
	env.StartAgent(t)
	if err := waitFor(45*time.Second, func() error { return readyz(gw) }); err != nil {
		t.Fatalf("readiness after the agent came back: %v", err)
	}
	if status, body := get(t, httpsClient(t, roots, true), url); status != http.StatusOK {
		t.Fatalf("after the agent came back: status %d: %s", status, body)
	}
}

// TestSPIREFederation runs two SPIRE servers, one.test (the gateway) and
// two.test (an upstream and a mesh caller), federated both ways. The gateway
// verifies the two.test upstream and caller with the federated bundle its agent
// serves; with the files source, a static bundle file for two.test does the
// same, and without it the upstream is refused.
func TestSPIREFederation(t *testing.T) {
	t.Parallel()
	const (
		gwID     = "spiffe://one.test/gateway"
		upID     = "spiffe://two.test/upstream"
		callerID = "spiffe://two.test/client"
	)
	one := spiretest.Start(t, spiretest.Options{TrustDomain: "one.test", SVIDTTL: time.Minute})
	two := spiretest.Start(t, spiretest.Options{TrustDomain: "two.test", SVIDTTL: time.Minute})
	one.SetFederatedBundle(t, "two.test", two.BundlePEM())
	two.SetFederatedBundle(t, "one.test", one.BundlePEM())
	one.Register(t, spiretest.Entry{SPIFFEID: gwID, Selectors: []string{spiretest.UIDSelector()}, FederatesWith: []string{"two.test"}})
	two.Register(t, spiretest.Entry{SPIFFEID: upID, Selectors: []string{spiretest.UIDSelector()}, FederatesWith: []string{"one.test"}})
	two.Register(t, spiretest.Entry{SPIFFEID: callerID, Selectors: []string{spiretest.UIDSelector()}, FederatesWith: []string{"one.test"}})
	gwSVID := one.WaitForSVID(t, gwID)
	two.WaitForSVID(t, upID)
	two.WaitForSVID(t, callerID)

	up := startRecorder(t, workloadSource(t, two, upID), gwID)
	route := echoRoute("partner", "/", up.addr, "spiffe://two.test")
	mesh := "  mesh: {listen: \"127.0.0.1:0\", allowedCallers: [\"spiffe://two.test/*\"]}\n"

	t.Run("workload API federated bundles", func(t *testing.T) {
		dir := t.TempDir()
		roots := ingressCA(t, dir)
		text := gatewayYAML(fmt.Sprintf("  workloadAPI: {socket: %q, spiffeID: %q, waitTimeout: 20s}", one.SocketAddr(), gwID), route, mesh)
		gw := startGateway(t, dir, text)
		c := httpsClient(t, roots, true)
		url := "https://" + gw.IngressAddr().String() + "/x"
		// The agent may send the federated bundle a sync after the SVID.
		if err := waitFor(15*time.Second, func() error {
			if status, body := get(t, c, url); status != http.StatusOK {
				return fmt.Errorf("status %d: %s", status, body)
			}
			return nil
		}); err != nil {
			t.Fatalf("ingress → two.test upstream: %v", err)
		}

		caller := workloadSource(t, two, callerID)
		tr := &http.Transport{TLSClientConfig: identity.ClientTLSConfig(caller, identitytest.Matcher(t, gwID), identity.ClientOptions{}), ForceAttemptHTTP2: true, Proxy: nil}
		defer tr.CloseIdleConnections()
		resp, err := (&http.Client{Transport: tr, Timeout: 10 * time.Second}).Get("https://" + gw.MeshAddr().String() + "/x")
		if err != nil {
			t.Fatalf("two.test caller → mesh listener: %v", err)
		}
		defer resp.Body.Close()
		var r recorderReply
		if err := json.NewDecoder(resp.Body).Decode(&r); err != nil || resp.StatusCode != http.StatusOK || r.Caller != gwID {
			t.Fatalf("two.test caller → mesh listener: status %d, upstream saw %q (%v)", resp.StatusCode, r.Caller, err)
		}
	})

	// The files source with the same SPIRE-issued SVID and a static two.test bundle file.
	for _, tc := range []struct {
		name       string
		federated  string
		wantStatus int
	}{
		{name: "static foreign bundle file", federated: ", federatedBundles: {two.test: two.crt}", wantStatus: http.StatusOK},
		{name: "no foreign bundle", wantStatus: http.StatusBadGateway},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			roots := ingressCA(t, dir)
			writeSVID(t, dir, "gateway", gwSVID)
			writeFile(t, dir, "one.crt", one.BundlePEM())
			writeFile(t, dir, "two.crt", two.BundlePEM())
			gw := startGateway(t, dir, gatewayYAML("  files: {cert: gateway.crt, key: gateway.key, bundle: one.crt"+tc.federated+"}", route, ""))
			status, body := get(t, httpsClient(t, roots, false), "https://"+gw.IngressAddr().String()+"/x")
			if status != tc.wantStatus {
				t.Fatalf("status %d, want %d: %s", status, tc.wantStatus, body)
			}
		})
	}
}
