package identity

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"github.com/spiffe/go-spiffe/v2/workloadapi"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"tollgate.dev/tollgate/internal/config"
)

// DefaultWaitTimeout bounds the wait for the first SVID from the Workload API:
// the gateway's documented default (identity.workloadAPI.waitTimeout).
const DefaultWaitTimeout = config.DefaultWorkloadWaitTimeout

// WorkloadOptions configures [NewWorkloadAPI].
type WorkloadOptions struct {
	// Socket is the Workload API address, "unix:///path/to/agent.sock" (or
	// "tcp://127.0.0.1:port"). Empty means $SPIFFE_ENDPOINT_SOCKET.
	Socket string
	// SPIFFEID, if set, selects this SVID when the workload is entitled to
	// several. Without it the first (default) SVID is used.
	SPIFFEID string
	// WaitTimeout bounds the wait for the first SVID; 0 means
	// DefaultWaitTimeout.
	WaitTimeout time.Duration

	// backoff replaces the client's reconnect backoff (tests only).
	backoff workloadapi.BackoffStrategy
}

// WorkloadAPI is a [Source] fed by a SPIFFE Workload API stream. When the
// agent goes away it keeps serving the last SVID and bundles (recording the
// failure in Status) and picks up new material once the stream is back.
//
// It drives workloadapi.Client.WatchX509Context itself rather than wrapping
// workloadapi.X509Source, because X509Source drops stream errors (Status
// could not report them) and, when a picked SPIFFE ID disappears from an
// update, replaces the working SVID with nothing. Changes are announced
// through [WorkloadAPI.Changed] from the stream's own callbacks: the update
// that X509Source.Updated() is signalled from, and also the errors and
// recoveries it leaves out. Updated() itself would not do: it is a
// one-slot channel for a single consumer, not a broadcast.
type WorkloadAPI struct {
	holder
	addr string
	want spiffeid.ID

	client    *workloadapi.Client
	cancel    context.CancelFunc
	wg        sync.WaitGroup
	firstOnce sync.Once
	first     chan struct{}
	closeOnce sync.Once
	closeErr  error
}

var _ Source = (*WorkloadAPI)(nil)

// NewWorkloadAPI connects to the Workload API and blocks until the first
// usable SVID arrives, ctx is done, or opts.WaitTimeout passes. ctx bounds
// only this wait; the stream then lives until Close.
func NewWorkloadAPI(ctx context.Context, opts WorkloadOptions) (*WorkloadAPI, error) {
	addr := opts.Socket
	if addr == "" {
		addr, _ = workloadapi.GetDefaultAddress()
	}
	if addr == "" {
		return nil, fmt.Errorf("identity: no workload API socket: set the socket in the config or %s", workloadapi.SocketEnv)
	}
	if err := checkSocket(addr); err != nil {
		return nil, err
	}
	s := &WorkloadAPI{holder: holder{kind: "workloadapi"}, addr: addr, first: make(chan struct{})}
	if opts.SPIFFEID != "" {
		id, err := spiffeid.FromString(opts.SPIFFEID)
		if err != nil {
			return nil, fmt.Errorf("identity: workload API SPIFFE ID %q: %w", opts.SPIFFEID, err)
		}
		s.want = id
	}
	timeout := opts.WaitTimeout
	if timeout <= 0 {
		timeout = DefaultWaitTimeout
	}

	clientOpts := []workloadapi.ClientOption{workloadapi.WithAddr(addr)}
	if opts.backoff != nil {
		clientOpts = append(clientOpts, workloadapi.WithBackoffStrategy(opts.backoff))
	}
	client, err := workloadapi.New(ctx, clientOpts...)
	if err != nil {
		return nil, fmt.Errorf("identity: workload API at %s: %w", addr, err)
	}
	s.client = client

	// The stream outlives ctx, which only bounds the first wait.
	watchCtx, cancel := context.WithCancel(context.Background())
	s.cancel = cancel
	stopped := make(chan error, 1)
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		stopped <- client.WatchX509Context(watchCtx, workloadWatcher{s})
	}()

	timer := time.NewTimer(timeout)
	defer timer.Stop()
	var waitErr error
	when := "after " + timeout.String()
	select {
	case <-s.first:
		return s, nil
	case err := <-stopped:
		waitErr = fmt.Errorf("watch stopped: %w", err)
	case <-timer.C:
	case <-ctx.Done():
		when = "before " + ctx.Err().Error()
	}
	if waitErr == nil {
		if f := s.fail.Load(); f != nil {
			// The recorded failure already names the socket.
			return nil, errors.Join(fmt.Errorf("identity: no SVID from workload API %s: %w", when, f.err), s.Close())
		}
		waitErr = errors.New("no update received")
	}
	return nil, errors.Join(
		fmt.Errorf("identity: no SVID from workload API at %s %s: %w", addr, when, waitErr),
		s.Close())
}

// checkSocket fails early, with a message an operator can act on, when a
// unix socket path is missing or is not a socket; the gRPC client would
// otherwise retry silently until the wait times out.
func checkSocket(addr string) error {
	if err := workloadapi.ValidateAddress(addr); err != nil {
		return fmt.Errorf("identity: workload API socket %q: %w", addr, err)
	}
	u, err := url.Parse(addr)
	if err != nil || u.Scheme != "unix" {
		return nil // tcp:// addresses are validated above
	}
	if u.Host != "" {
		return fmt.Errorf("identity: workload API socket %q: want unix:///absolute/path (got host %q)", addr, u.Host)
	}
	fi, err := os.Stat(u.Path)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return fmt.Errorf("identity: workload API socket %s does not exist (is the SPIRE agent running and its socket mounted?)", u.Path)
	case err != nil:
		return fmt.Errorf("identity: workload API socket: %w", err)
	case fi.Mode()&os.ModeSocket == 0:
		return fmt.Errorf("identity: workload API socket %s is not a unix socket (mode %s)", u.Path, fi.Mode())
	}
	return nil
}

// Close stops the stream and closes the connection. It is idempotent.
func (s *WorkloadAPI) Close() error {
	s.closeOnce.Do(func() {
		s.markClosed()
		s.cancel()
		s.wg.Wait()
		if err := s.client.Close(); err != nil {
			s.closeErr = fmt.Errorf("identity: closing workload API client: %w", err)
		}
	})
	return s.closeErr
}

// workloadWatcher keeps the watch callbacks off WorkloadAPI's exported API.
type workloadWatcher struct{ s *WorkloadAPI }

func (w workloadWatcher) OnX509ContextUpdate(xc *workloadapi.X509Context) {
	s := w.s
	svid, err := s.pick(xc.SVIDs)
	if err != nil {
		// Keep the SVID we have (a narrower entitlement must not turn into an
		// outage before the old SVID expires) but take the new bundles, and
		// report the problem.
		s.storeBundlesErr(xc.Bundles, err)
		return
	}
	s.store(svid, xc.Bundles)
	s.firstOnce.Do(func() { close(s.first) })
}

func (w workloadWatcher) OnX509ContextWatchError(err error) {
	if status.Code(err) == codes.Canceled || errors.Is(err, context.Canceled) {
		return // Close
	}
	w.s.storeErr(fmt.Errorf("workload API at %s: %w", w.s.addr, err))
}

func (s *WorkloadAPI) pick(svids []*x509svid.SVID) (*x509svid.SVID, error) {
	if len(svids) == 0 {
		return nil, fmt.Errorf("workload API at %s sent no SVIDs", s.addr)
	}
	if s.want.IsZero() {
		return svids[0], nil
	}
	for _, svid := range svids {
		if svid.ID == s.want {
			return svid, nil
		}
	}
	ids := make([]string, 0, len(svids))
	for _, svid := range svids {
		ids = append(ids, svid.ID.String())
	}
	slices.Sort(ids)
	return nil, fmt.Errorf("workload API at %s offers no SVID for %s (offered: %s)", s.addr, s.want, strings.Join(ids, ", "))
}
