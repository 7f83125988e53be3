package identity_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"tollgate.dev/tollgate/internal/identity"
	"tollgate.dev/tollgate/internal/identity/identitytest"
)

// socketPath returns a short unix socket path (sun_path is ~104 bytes).
func socketPath(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "tg")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	return filepath.Join(dir, "agent.sock")
}

func newWorkloadSource(t *testing.T, opts identity.WorkloadOptions) *identity.WorkloadAPI {
	t.Helper()
	identity.SetWorkloadBackoff(&opts, 50*time.Millisecond)
	if opts.WaitTimeout == 0 {
		opts.WaitTimeout = 5 * time.Second
	}
	src, err := identity.NewWorkloadAPI(context.Background(), opts)
	if err != nil {
		t.Fatalf("NewWorkloadAPI: %v", err)
	}
	t.Cleanup(func() { _ = src.Close() })
	return src
}

// eventually polls cond every 10ms for up to 5s.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestWorkloadAPIRotationAndBundles(t *testing.T) {
	ca := identitytest.NewCA(t, "example.org")
	partner := identitytest.NewCA(t, "partner.example")
	fake := startFakeWorkloadAPI(t, socketPath(t))
	svid1 := identitytest.SVID(t, ca, gatewayID)
	fake.setSVIDs(t, []*x509bundle.Bundle{ca.Bundle(), partner.Bundle()}, svid1)

	src := newWorkloadSource(t, identity.WorkloadOptions{Socket: fake.addr()})
	got, err := src.GetX509SVID()
	if err != nil {
		t.Fatal(err)
	}
	if got.Certificates[0].SerialNumber.Cmp(svid1.Certificates[0].SerialNumber) != 0 {
		t.Errorf("serving serial %x, want %x", got.Certificates[0].SerialNumber, svid1.Certificates[0].SerialNumber)
	}
	st := src.Status()
	if st.Kind != "workloadapi" || st.ID.String() != gatewayID || st.LastError != nil {
		t.Errorf("Status = %+v", st)
	}
	if err := src.Ready(); err != nil {
		t.Errorf("Ready = %v", err)
	}
	for _, td := range []string{"example.org", "partner.example"} {
		if _, err := src.GetX509BundleForTrustDomain(spiffeid.RequireTrustDomainFromString(td)); err != nil {
			t.Errorf("bundle for %s: %v", td, err)
		}
	}
	if _, err := src.GetX509BundleForTrustDomain(spiffeid.RequireTrustDomainFromString("evil.org")); err == nil {
		t.Error("got a bundle for an unknown trust domain")
	}

	// Rotation: the agent pushes a new SVID; new handshakes must use it.
	svid2 := identitytest.SVID(t, ca, gatewayID)
	fake.setSVIDs(t, []*x509bundle.Bundle{ca.Bundle()}, svid2)
	want := svid2.Certificates[0].SerialNumber.Text(16)
	eventually(t, "rotated SVID", func() bool { return src.Status().Serial == want })
	if _, err := src.GetX509BundleForTrustDomain(spiffeid.RequireTrustDomainFromString("partner.example")); err == nil {
		t.Error("federated bundle still served after the agent dropped it")
	}

	// And the rotated SVID really is what a handshake presents.
	upstream := identitytest.Source(t, ca, upstreamID)
	res := handshake(t, localListener(t),
		identity.ServerTLSConfig(upstream, identitytest.Matcher(t, gatewayID)),
		identity.ClientTLSConfig(src, identitytest.Matcher(t, upstreamID), identity.ClientOptions{}))
	if res.clientErr != nil || res.serverErr != nil {
		t.Fatalf("handshake: client %v, server %v", res.clientErr, res.serverErr)
	}
	if got := res.serverState.PeerCertificates[0].SerialNumber.Text(16); got != want {
		t.Errorf("handshake presented serial %s, want %s", got, want)
	}
}

func TestWorkloadAPIPicksSPIFFEID(t *testing.T) {
	ca := identitytest.NewCA(t, "example.org")
	fake := startFakeWorkloadAPI(t, socketPath(t))
	bundles := []*x509bundle.Bundle{ca.Bundle()}
	a := identitytest.SVID(t, ca, "spiffe://example.org/a")
	b := identitytest.SVID(t, ca, "spiffe://example.org/b")
	fake.setSVIDs(t, bundles, a, b)

	if got := newWorkloadSource(t, identity.WorkloadOptions{Socket: fake.addr()}).Status().ID.String(); got != "spiffe://example.org/a" {
		t.Errorf("default pick = %s, want the first SVID", got)
	}
	src := newWorkloadSource(t, identity.WorkloadOptions{Socket: fake.addr(), SPIFFEID: "spiffe://example.org/b"})
	if got := src.Status().ID.String(); got != "spiffe://example.org/b" {
		t.Fatalf("picked %s, want spiffe://example.org/b", got)
	}

	// The agent stops offering b: keep serving b (until it expires) and say why.
	fake.setSVIDs(t, bundles, identitytest.SVID(t, ca, "spiffe://example.org/a"))
	eventually(t, "pick error in status", func() bool { return src.Status().LastError != nil })
	st := src.Status()
	if st.ID.String() != "spiffe://example.org/b" {
		t.Errorf("after b vanished, serving %s; want to keep b", st.ID)
	}
	if want := "offers no SVID for spiffe://example.org/b (offered: spiffe://example.org/a)"; !strings.Contains(st.LastError.Error(), want) {
		t.Errorf("LastError = %v, want it to contain %q", st.LastError, want)
	}

	// b is back: the error clears.
	b2 := identitytest.SVID(t, ca, "spiffe://example.org/b")
	fake.setSVIDs(t, bundles, a, b2)
	eventually(t, "recovered pick", func() bool {
		st := src.Status()
		return st.LastError == nil && st.Serial == b2.Certificates[0].SerialNumber.Text(16)
	})
}

func TestWorkloadAPISurvivesAgentRestart(t *testing.T) {
	ca := identitytest.NewCA(t, "example.org")
	path := socketPath(t)
	fake := startFakeWorkloadAPI(t, path)
	bundles := []*x509bundle.Bundle{ca.Bundle()}
	svid1 := identitytest.SVID(t, ca, gatewayID)
	fake.setSVIDs(t, bundles, svid1)
	src := newWorkloadSource(t, identity.WorkloadOptions{Socket: fake.addr()})

	fake.stop()
	eventually(t, "watch error after agent stop", func() bool { return src.Status().LastError != nil })
	got, err := src.GetX509SVID()
	if err != nil {
		t.Fatalf("GetX509SVID with agent gone: %v", err)
	}
	if got.Certificates[0].SerialNumber.Cmp(svid1.Certificates[0].SerialNumber) != 0 {
		t.Error("SVID changed while the agent was gone")
	}
	if err := src.Ready(); err != nil {
		t.Errorf("Ready with agent gone but SVID valid = %v", err)
	}
	if !strings.Contains(src.Status().LastError.Error(), fake.addr()) {
		t.Errorf("LastError %v does not name the socket", src.Status().LastError)
	}

	_ = os.Remove(path)
	restarted := startFakeWorkloadAPI(t, path)
	svid2 := identitytest.SVID(t, ca, gatewayID)
	restarted.setSVIDs(t, bundles, svid2)
	eventually(t, "SVID from restarted agent", func() bool {
		st := src.Status()
		return st.LastError == nil && st.Serial == svid2.Certificates[0].SerialNumber.Text(16)
	})
}

func TestNewWorkloadAPIErrors(t *testing.T) {
	dir := t.TempDir()
	regular := filepath.Join(dir, "not-a-socket")
	if err := os.WriteFile(regular, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	ca := identitytest.NewCA(t, "example.org")
	noIdentity := startFakeWorkloadAPI(t, socketPath(t))
	other := startFakeWorkloadAPI(t, socketPath(t))
	other.setSVIDs(t, []*x509bundle.Bundle{ca.Bundle()}, identitytest.SVID(t, ca, "spiffe://example.org/a"))

	tests := []struct {
		name    string
		env     string
		opts    identity.WorkloadOptions
		wantErr []string
	}{
		{name: "no socket configured", wantErr: []string{"no workload API socket", "SPIFFE_ENDPOINT_SOCKET"}},
		{name: "bad scheme", opts: identity.WorkloadOptions{Socket: "http://agent"}, wantErr: []string{`"tcp" or "unix" scheme`}},
		{name: "unix with host", opts: identity.WorkloadOptions{Socket: "unix://run/agent.sock"}, wantErr: []string{"want unix:///absolute/path"}},
		{name: "missing socket", opts: identity.WorkloadOptions{Socket: "unix://" + dir + "/nope.sock"}, wantErr: []string{dir + "/nope.sock does not exist", "SPIRE agent"}},
		{name: "missing socket via env", env: "unix://" + dir + "/env.sock", wantErr: []string{dir + "/env.sock does not exist"}},
		{name: "not a socket", opts: identity.WorkloadOptions{Socket: "unix://" + regular}, wantErr: []string{"is not a unix socket"}},
		{name: "bad SPIFFE ID", opts: identity.WorkloadOptions{Socket: other.addr(), SPIFFEID: "spiffe://Example.org/x"}, wantErr: []string{`SPIFFE ID "spiffe://Example.org/x"`}},
		{
			name:    "no identity issued",
			opts:    identity.WorkloadOptions{Socket: noIdentity.addr(), WaitTimeout: time.Second},
			wantErr: []string{"no SVID from workload API after 1s: workload API at " + noIdentity.addr() + ": ", "PermissionDenied", "no identity issued"},
		},
		{
			name:    "wanted ID not offered",
			opts:    identity.WorkloadOptions{Socket: other.addr(), SPIFFEID: "spiffe://example.org/b", WaitTimeout: time.Second},
			wantErr: []string{"no SVID from workload API after 1s: workload API at " + other.addr() + " offers no SVID for spiffe://example.org/b (offered: spiffe://example.org/a)"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv("SPIFFE_ENDPOINT_SOCKET", tt.env)
			identity.SetWorkloadBackoff(&tt.opts, 50*time.Millisecond)
			src, err := identity.NewWorkloadAPI(context.Background(), tt.opts)
			if err == nil {
				src.Close()
				t.Fatalf("NewWorkloadAPI succeeded, want error containing %q", tt.wantErr)
			}
			t.Log(err)
			for _, want := range tt.wantErr {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error = %q\nwant it to contain %q", err, want)
				}
			}
		})
	}
	t.Run("context cancelled", func(t *testing.T) {
		// Long enough for the first answer (PermissionDenied) to arrive even on
		// a loaded machine: the error names it only once it has.
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		opts := identity.WorkloadOptions{Socket: noIdentity.addr()}
		identity.SetWorkloadBackoff(&opts, 50*time.Millisecond)
		_, err := identity.NewWorkloadAPI(ctx, opts)
		if err == nil || !strings.Contains(err.Error(), "no SVID from workload API before context deadline exceeded: workload API at "+noIdentity.addr()) {
			t.Fatalf("error = %v", err)
		}
	})
}

func TestWorkloadAPICloseStopsGoroutines(t *testing.T) {
	ca := identitytest.NewCA(t, "example.org")
	fake := startFakeWorkloadAPI(t, socketPath(t))
	fake.setSVIDs(t, []*x509bundle.Bundle{ca.Bundle()}, identitytest.SVID(t, ca, gatewayID))
	src, err := identity.NewWorkloadAPI(context.Background(), identity.WorkloadOptions{Socket: fake.addr()})
	if err != nil {
		t.Fatal(err)
	}
	if err := src.Close(); err != nil {
		t.Fatalf("Close = %v", err)
	}
	if err := src.Close(); err != nil {
		t.Fatalf("second Close = %v", err)
	}
	if _, err := src.GetX509SVID(); !errors.Is(err, identity.ErrSourceClosed) {
		t.Errorf("GetX509SVID after Close = %v, want ErrSourceClosed", err)
	}
	eventually(t, "workload API goroutines to exit", func() bool {
		buf := make([]byte, 1<<20)
		stacks := string(buf[:runtime.Stack(buf, true)])
		return !strings.Contains(stacks, "workloadapi.(*Client).WatchX509Context")
	})
}
