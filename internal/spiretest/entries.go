package spiretest

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"github.com/spiffe/go-spiffe/v2/workloadapi"
)

// Entry is a registration entry: which workloads (Selectors) get which SPIFFE ID.
type Entry struct {
	// SPIFFEID in this server's trust domain, e.g. "spiffe://example.org/gateway".
	SPIFFEID string
	// Selectors in type:value form, e.g. UIDSelector() = "unix:uid:0". All must match.
	Selectors []string
	// FederatesWith lists foreign trust domains (e.g. "other.test") whose bundles the workload
	// receives with this SVID; each needs SetFederatedBundle first.
	FederatesWith []string
	// X509SVIDTTL overrides Options.SVIDTTL for this entry when non-zero.
	X509SVIDTTL time.Duration
}

var entryIDRe = regexp.MustCompile(`(?m)^Entry ID\s*:\s*(\S+)`)

// UIDSelector selects the test process itself (and every other process of this uid).
func UIDSelector() string { return "unix:uid:" + strconv.Itoa(os.Getuid()) }

// CreateEntry registers spiffeID for workloads matching all selectors and returns the entry ID.
// With UIDSelector(), the test process receives the SVID; registering several IDs for the same
// selector gives the process all of them at once.
func (e *Env) CreateEntry(tb testing.TB, spiffeID string, selectors ...string) string {
	tb.Helper()
	return e.Register(tb, Entry{SPIFFEID: spiffeID, Selectors: selectors})
}

// Register creates a registration entry parented on this Env's agent and returns its ID.
// The agent serves it within about 2 s (cache reload 1 s + agent sync 1 s); use WaitForSVID.
func (e *Env) Register(tb testing.TB, en Entry) string {
	tb.Helper()
	if _, err := spiffeid.FromString(en.SPIFFEID); err != nil {
		tb.Fatalf("spiretest: entry %q: %v", en.SPIFFEID, err)
	}
	if len(en.Selectors) == 0 {
		tb.Fatalf("spiretest: entry %q: no selectors (it would match nothing)", en.SPIFFEID)
	}
	ttl := en.X509SVIDTTL
	if ttl == 0 {
		ttl = e.svidTTL
	}
	args := []string{"entry", "create",
		"-parentID", e.agentID.String(),
		"-spiffeID", en.SPIFFEID,
		"-x509SVIDTTL", strconv.Itoa(int(ttl / time.Second)),
	}
	for _, s := range en.Selectors {
		args = append(args, "-selector", s)
	}
	for _, td := range en.FederatesWith {
		args = append(args, "-federatesWith", "spiffe://"+td)
	}
	out := e.cli(tb, args...)
	m := entryIDRe.FindSubmatch(out)
	if m == nil {
		tb.Fatalf("spiretest: no entry ID in `entry create` output: %q", out)
	}
	return string(m[1])
}

// SetFederatedBundle stores a foreign trust domain's X.509 bundle (PEM, e.g. other.BundlePEM())
// in this server, so entries can federate with it (Entry.FederatesWith).
func (e *Env) SetFederatedBundle(tb testing.TB, trustDomain string, bundlePEM []byte) {
	tb.Helper()
	f, err := os.CreateTemp(e.run, "fed-*.pem")
	if err != nil {
		tb.Fatalf("spiretest: %v", err)
	}
	path := f.Name()
	defer os.Remove(path)
	_, werr := f.Write(bundlePEM)
	if err := errors.Join(werr, f.Close()); err != nil {
		tb.Fatalf("spiretest: write bundle: %v", err)
	}
	e.cli(tb, "bundle", "set", "-id", "spiffe://"+trustDomain, "-path", filepath.Clean(path), "-format", "pem")
}

// WaitForSVID polls the Workload API as this process until it is served an X.509 SVID with
// spiffeID (bounded by 30 s) and returns it. A test calls it after CreateEntry or StartAgent.
func (e *Env) WaitForSVID(tb testing.TB, spiffeID string) *x509svid.SVID {
	tb.Helper()
	want, err := spiffeid.FromString(spiffeID)
	if err != nil {
		tb.Fatalf("spiretest: WaitForSVID: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), readyTimeout)
	defer cancel()
	client, err := workloadapi.New(ctx, workloadapi.WithAddr(e.SocketAddr()))
	if err != nil {
		tb.Fatalf("spiretest: workload API client: %v", err)
	}
	defer client.Close()
	var lastErr error
	for ctx.Err() == nil {
		callCtx, callCancel := context.WithTimeout(ctx, 2*time.Second)
		svids, err := client.FetchX509SVIDs(callCtx)
		callCancel()
		if err == nil {
			for _, s := range svids {
				if s.ID == want {
					return s
				}
			}
			err = fmt.Errorf("served %d SVID(s), none is %s", len(svids), want)
		}
		lastErr = err
		select {
		case <-ctx.Done():
		case <-time.After(100 * time.Millisecond):
		}
	}
	tb.Fatalf("spiretest: no SVID %s after %v: %v", want, readyTimeout, lastErr)
	return nil
}
