//go:build spire

package spiretest

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"github.com/spiffe/go-spiffe/v2/workloadapi"
)

// TestLifecycle drives a real server and agent through what the gateway depends on: two SVIDs
// for one process, picking one, rotation, and an agent restart (with and without its data folder).
func TestLifecycle(t *testing.T) {
	t.Parallel()
	const ttl = 30 * time.Second
	t0 := time.Now()
	env := Start(t, Options{TrustDomain: "example.org", SVIDTTL: ttl})
	gw := "spiffe://example.org/gateway"
	up := "spiffe://example.org/upstream"
	env.CreateEntry(t, gw, UIDSelector())
	env.CreateEntry(t, up, UIDSelector())
	env.WaitForSVID(t, gw)
	env.WaitForSVID(t, up)
	t.Logf("both SVIDs served %v after Start", time.Since(t0).Round(time.Millisecond))

	// One process, two entries for its uid: the Workload API serves both SVIDs.
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	client, err := workloadapi.New(ctx, workloadapi.WithAddr(env.SocketAddr()))
	if err != nil {
		t.Fatalf("workloadapi.New: %v", err)
	}
	defer client.Close()
	svids, err := client.FetchX509SVIDs(ctx)
	if err != nil {
		t.Fatalf("FetchX509SVIDs: %v", err)
	}
	var got []string
	for _, s := range svids {
		got = append(got, s.ID.String())
	}
	slices.Sort(got)
	if want := []string{gw, up}; !slices.Equal(got, want) {
		t.Fatalf("served SVIDs = %v, want %v", got, want)
	}

	// An X509Source with a picker settles on one of them, whichever comes first on the wire.
	for _, id := range []string{gw, up} {
		src := newPickedSource(t, ctx, env, id)
		s, err := src.GetX509SVID()
		if err != nil {
			t.Fatalf("GetX509SVID: %v", err)
		}
		if s.ID.String() != id {
			t.Fatalf("picked SVID %s, want %s", s.ID, id)
		}
		verifyChain(t, s, env.X509Bundle(t))
	}

	// Rotation: the agent renews at about half the TTL. Watch the picked source for two new serials.
	src := newPickedSource(t, ctx, env, gw)
	first := mustSVID(t, src)
	// SPIRE backdates NotBefore by 10 s against clock skew, so the certificate spans TTL + 10 s and
	// the agent's half-life renewal comes about 10 s after issuance.
	if life := first.Certificates[0].NotAfter.Sub(first.Certificates[0].NotBefore); life < ttl || life > ttl+15*time.Second {
		t.Fatalf("SVID lifetime %v, want %v plus SPIRE's 10 s backdating", life, ttl)
	} else {
		t.Logf("SVID lifetime (NotAfter-NotBefore) %v", life)
	}
	prev, prevAt := first, time.Now()
	for i := range 2 {
		next := waitNewSerial(t, src, prev, 2*ttl)
		now := time.Now()
		verifyChain(t, next, env.X509Bundle(t))
		t.Logf("rotation %d after %v (previous NotBefore→new NotBefore %v)", i+1, now.Sub(prevAt).Round(100*time.Millisecond),
			next.Certificates[0].NotBefore.Sub(prev.Certificates[0].NotBefore))
		prev, prevAt = next, now
	}

	// Agent restart with its data folder: it rejoins with the stored SVID, no attestation.
	beforeStop := mustSVID(t, src)
	t1 := time.Now()
	env.StopAgent(t)
	short, shortCancel := context.WithTimeout(ctx, time.Second)
	if _, err := client.FetchX509SVIDs(short); err == nil {
		t.Fatalf("FetchX509SVIDs with the agent stopped: got no error")
	}
	shortCancel()
	env.StartAgent(t)
	env.WaitForSVID(t, gw)
	t.Logf("agent restart (stop → SVID served again) took %v", time.Since(t1).Round(time.Millisecond))
	if !env.AgentRestartedFromDisk() {
		t.Fatalf("agent re-attested after a restart with its data folder; want it to load its stored SVID")
	}
	// The source created before the restart reconnects by itself and sees the new agent's SVID.
	waitNewSerial(t, src, beforeStop, 30*time.Second)

	// Agent restart without its data folder: it must attest again with a fresh token; the entries,
	// parented on the agent alias, still apply.
	env.StopAgent(t)
	if err := os.RemoveAll(filepath.Join(env.RunDir(), "agent-data")); err != nil {
		t.Fatal(err)
	}
	t2 := time.Now()
	env.StartAgent(t)
	env.WaitForSVID(t, up)
	t.Logf("agent fresh start (new data folder) → SVID served in %v", time.Since(t2).Round(time.Millisecond))
	if env.AgentRestartedFromDisk() {
		t.Fatalf("agent without data folder claims it loaded a stored SVID")
	}
}

// TestTwoTrustDomains runs two servers side by side and federates one with the other through a
// static bundle, as the federation tests of the gateway will.
func TestTwoTrustDomains(t *testing.T) {
	t.Parallel()
	one := Start(t, Options{TrustDomain: "one.test", SVIDTTL: time.Minute})
	two := Start(t, Options{TrustDomain: "two.test", SVIDTTL: time.Minute})
	if one.SocketAddr() == two.SocketAddr() {
		t.Fatalf("both envs share socket %s", one.SocketAddr())
	}
	if bytes.Equal(one.BundlePEM(), two.BundlePEM()) {
		t.Fatalf("both servers have the same CA bundle")
	}

	one.SetFederatedBundle(t, "two.test", two.BundlePEM())
	one.Register(t, Entry{SPIFFEID: "spiffe://one.test/client", Selectors: []string{UIDSelector()}, FederatesWith: []string{"two.test"}})
	two.CreateEntry(t, "spiffe://two.test/server", UIDSelector())
	one.WaitForSVID(t, "spiffe://one.test/client")
	server := two.WaitForSVID(t, "spiffe://two.test/server")

	// The one.test agent hands its workload the two.test bundle, which verifies two.test's SVID.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var bundles *x509bundle.Set
	for {
		xc, err := workloadapi.FetchX509Context(ctx, workloadapi.WithAddr(one.SocketAddr()))
		if err != nil {
			t.Fatalf("FetchX509Context: %v", err)
		}
		if _, ok := xc.Bundles.Get(two.TrustDomain()); ok {
			bundles = xc.Bundles
			break
		}
		select {
		case <-ctx.Done():
			t.Fatalf("one.test agent never served the two.test bundle")
		case <-time.After(200 * time.Millisecond):
		}
	}
	id, _, err := x509svid.Verify(server.Certificates, bundles)
	if err != nil {
		t.Fatalf("verify two.test SVID with one.test's federated bundles: %v", err)
	}
	if id != spiffeid.RequireFromString("spiffe://two.test/server") {
		t.Fatalf("verified ID %s", id)
	}
	// And without federation the same chain must not verify against one.test alone.
	if _, _, err := x509svid.Verify(server.Certificates, one.X509Bundle(t)); err == nil {
		t.Fatalf("two.test SVID verified against one.test's own bundle")
	}
}

func newPickedSource(t *testing.T, ctx context.Context, env *Env, id string) *workloadapi.X509Source {
	t.Helper()
	want := spiffeid.RequireFromString(id)
	src, err := workloadapi.NewX509Source(ctx,
		workloadapi.WithClientOptions(workloadapi.WithAddr(env.SocketAddr())),
		workloadapi.WithDefaultX509SVIDPicker(func(svids []*x509svid.SVID) *x509svid.SVID {
			for _, s := range svids {
				if s.ID == want {
					return s
				}
			}
			return nil // GetX509SVID then fails: better than serving the wrong identity
		}),
	)
	if err != nil {
		t.Fatalf("NewX509Source: %v", err)
	}
	t.Cleanup(func() { src.Close() })
	return src
}

func mustSVID(t *testing.T, src *workloadapi.X509Source) *x509svid.SVID {
	t.Helper()
	s, err := src.GetX509SVID()
	if err != nil {
		t.Fatalf("GetX509SVID: %v", err)
	}
	return s
}

// waitNewSerial polls src until it holds an SVID whose serial differs from old's.
func waitNewSerial(t *testing.T, src *workloadapi.X509Source, old *x509svid.SVID, limit time.Duration) *x509svid.SVID {
	t.Helper()
	deadline := time.Now().Add(limit)
	for time.Now().Before(deadline) {
		s, err := src.GetX509SVID()
		if err == nil && s.ID == old.ID && s.Certificates[0].SerialNumber.Cmp(old.Certificates[0].SerialNumber) != 0 {
			return s
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("no new SVID for %s within %v", old.ID, limit)
	return nil
}

func verifyChain(t *testing.T, s *x509svid.SVID, b *x509bundle.Bundle) {
	t.Helper()
	id, _, err := x509svid.Verify(s.Certificates, b)
	if err != nil {
		t.Fatalf("verify %s against the server bundle: %v", s.ID, err)
	}
	if id != s.ID {
		t.Fatalf("verified ID %s, SVID says %s", id, s.ID)
	}
}
