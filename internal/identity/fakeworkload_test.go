package identity_test

import (
	"bytes"
	"net"
	"strings"
	"sync"
	"testing"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/proto/spiffe/workload"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// fakeWorkloadAPI is a minimal SPIFFE Workload API server on a unix socket:
// it streams the current X.509 context to every FetchX509SVID caller and
// pushes each update set with setSVIDs. go-spiffe's own fake is internal.
type fakeWorkloadAPI struct {
	workload.UnimplementedSpiffeWorkloadAPIServer

	path string
	srv  *grpc.Server
	done chan struct{}

	mu      sync.Mutex
	resp    *workload.X509SVIDResponse // nil: PermissionDenied, no identity yet
	changed chan struct{}              // closed and replaced on each update
}

func startFakeWorkloadAPI(tb testing.TB, path string) *fakeWorkloadAPI {
	tb.Helper()
	ln, err := net.Listen("unix", path)
	if err != nil {
		tb.Fatalf("fake workload API: %v", err)
	}
	f := &fakeWorkloadAPI{path: path, srv: grpc.NewServer(), done: make(chan struct{}), changed: make(chan struct{})}
	workload.RegisterSpiffeWorkloadAPIServer(f.srv, f)
	go func() {
		defer close(f.done)
		_ = f.srv.Serve(ln)
	}()
	tb.Cleanup(f.stop)
	return f
}

// stop ends all streams and closes the socket, like an agent going away.
func (f *fakeWorkloadAPI) stop() {
	f.srv.Stop()
	<-f.done
}

func (f *fakeWorkloadAPI) addr() string { return "unix://" + f.path }

// setSVIDs publishes svids (first is the default) with bundles: the first
// bundle is the SVIDs' trust domain, the rest are federated.
func (f *fakeWorkloadAPI) setSVIDs(tb testing.TB, bundles []*x509bundle.Bundle, svids ...*x509svid.SVID) {
	tb.Helper()
	resp := &workload.X509SVIDResponse{FederatedBundles: map[string][]byte{}}
	for _, svid := range svids {
		certs, key, err := svid.MarshalRaw()
		if err != nil {
			tb.Fatal(err)
		}
		resp.Svids = append(resp.Svids, &workload.X509SVID{
			SpiffeId:    svid.ID.String(),
			X509Svid:    certs,
			X509SvidKey: key,
			Bundle:      bundleDER(bundles[0]),
		})
	}
	for _, b := range bundles[1:] {
		resp.FederatedBundles[b.TrustDomain().IDString()] = bundleDER(b)
	}
	f.mu.Lock()
	f.resp = resp
	close(f.changed)
	f.changed = make(chan struct{})
	f.mu.Unlock()
}

func bundleDER(b *x509bundle.Bundle) []byte {
	var buf bytes.Buffer
	for _, c := range b.X509Authorities() {
		buf.Write(c.Raw)
	}
	return buf.Bytes()
}

func (f *fakeWorkloadAPI) FetchX509SVID(_ *workload.X509SVIDRequest, stream grpc.ServerStreamingServer[workload.X509SVIDResponse]) error {
	// Like SPIRE, insist on the header that stops browsers and SSRF from
	// talking to the agent.
	md, _ := metadata.FromIncomingContext(stream.Context())
	if strings.Join(md.Get("workload.spiffe.io"), "") != "true" {
		return status.Error(codes.InvalidArgument, "security header missing from request")
	}
	for {
		f.mu.Lock()
		resp, changed := f.resp, f.changed
		f.mu.Unlock()
		if resp == nil {
			// What a SPIRE agent says to a workload with no registration entry.
			return status.Error(codes.PermissionDenied, "no identity issued")
		}
		if err := stream.Send(resp); err != nil {
			return err
		}
		select {
		case <-changed:
		case <-stream.Context().Done():
			return stream.Context().Err()
		}
	}
}
