//go:build spire

package gateway_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"tollgate.dev/tollgate/internal/gateway"
	"tollgate.dev/tollgate/internal/identity"
	"tollgate.dev/tollgate/internal/identity/identitytest"
	"tollgate.dev/tollgate/internal/spiretest"
)

// SPIFFE IDs the SPIRE tests register for this process's uid.
const (
	spireGatewayID  = "spiffe://example.org/gateway"
	spireUpstreamID = "spiffe://example.org/upstream"
	spireOtherID    = "spiffe://example.org/other-upstream"
)

// workloadSource is the Workload API source for id, closed at cleanup.
func workloadSource(t testing.TB, env *spiretest.Env, id string) *identity.WorkloadAPI {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	src, err := identity.NewWorkloadAPI(ctx, identity.WorkloadOptions{Socket: env.SocketAddr(), SPIFFEID: id, WaitTimeout: 20 * time.Second})
	if err != nil {
		t.Fatalf("workload API source for %s: %v", id, err)
	}
	t.Cleanup(func() { src.Close() })
	return src
}

// recorder is an mTLS upstream that answers 200 with the caller's SPIFFE ID and
// remembers the serial of every client certificate it saw (one per handshake),
// so a test can tell that the gateway's new handshakes present a new SVID.
type recorder struct {
	addr    string
	mu      sync.Mutex
	serials []string // distinct, in order of first use
	reqs    atomic.Int64
}

type recorderReply struct {
	Caller string `json:"caller"`
	Serial string `json:"serial"`
}

func startRecorder(t testing.TB, src identity.Source, allow ...string) *recorder {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	rec := &recorder{addr: ln.Addr().String()}
	cfg := identity.ServerTLSConfig(src, identitytest.Matcher(t, allow...))
	cfg.NextProtos = []string{"h2", "http/1.1"}
	srv := &http.Server{
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          slog.NewLogLogger(slog.DiscardHandler, slog.LevelDebug),
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			rec.reqs.Add(1)
			leaf := r.TLS.PeerCertificates[0]
			serial := leaf.SerialNumber.Text(16)
			rec.mu.Lock()
			if !slices.Contains(rec.serials, serial) {
				rec.serials = append(rec.serials, serial)
			}
			rec.mu.Unlock()
			id, _ := identity.PeerID(*r.TLS)
			w.Header().Set("Content-Type", "application/json")
			json.NewEncoder(w).Encode(recorderReply{Caller: id.String(), Serial: serial})
		}),
	}
	go srv.Serve(tls.NewListener(ln, cfg))
	t.Cleanup(func() { srv.Close() })
	return rec
}

// callerSerials is the number of distinct client SVIDs the recorder has seen.
func (r *recorder) callerSerials() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.serials)
}

// spireGatewayYAML is a gateway whose identity comes from env's agent, picking
// spireGatewayID, with extra identity lines and the given routes.
func spireGatewayYAML(env *spiretest.Env, extraIdentity, routes, extraIngress string) string {
	block := fmt.Sprintf("  workloadAPI: {socket: %q, spiffeID: %q, waitTimeout: 20s}", env.SocketAddr(), spireGatewayID)
	if extraIdentity != "" {
		block = extraIdentity + "\n" + block
	}
	return gatewayYAML(block, routes, extraIngress)
}

// loadResult counts a load run's outcome.
type loadResult struct {
	ok, failed atomic.Int64
	mu         sync.Mutex
	firstErrs  []string
}

func (r *loadResult) fail(msg string) {
	r.failed.Add(1)
	r.mu.Lock()
	if len(r.firstErrs) < 5 {
		r.firstErrs = append(r.firstErrs, time.Now().Format("15:04:05.000")+" "+msg)
	}
	r.mu.Unlock()
}

func (r *loadResult) String() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return fmt.Sprintf("%d ok, %d failed %v", r.ok.Load(), r.failed.Load(), r.firstErrs)
}

// runLoad sends GET url from workers goroutines (half HTTP/1.1, half HTTP/2,
// each with its own keep-alive connection) until stop is closed or limit passes.
// Every request must answer 200 with the expected caller. The returned func
// stops the load and waits for it.
func runLoad(t testing.TB, roots *x509.CertPool, url string, workers int, limit time.Duration) (*loadResult, func()) {
	t.Helper()
	res := &loadResult{}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	deadline := time.Now().Add(limit)
	for i := range workers {
		c := httpsClient(t, roots, i%2 == 1)
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Now().Before(deadline) {
				select {
				case <-stop:
					return
				default:
				}
				resp, err := c.Get(url)
				if err != nil {
					res.fail(err.Error())
				} else {
					b, _ := io.ReadAll(resp.Body)
					resp.Body.Close()
					if resp.StatusCode != http.StatusOK {
						res.fail(fmt.Sprintf("status %d: %s", resp.StatusCode, strings.TrimSpace(string(b))))
					} else {
						res.ok.Add(1)
					}
				}
				time.Sleep(5 * time.Millisecond)
			}
		}()
	}
	var once sync.Once
	return res, func() { once.Do(func() { close(stop); wg.Wait() }) }
}

// readyz fetches the gateway's /readyz: nil when 200, else the body as error.
func readyz(gw *gateway.Gateway) error {
	c := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{Proxy: nil, DisableKeepAlives: true}}
	resp, err := c.Get("http://" + gw.AdminAddr() + "/readyz")
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("readyz %d: %s", resp.StatusCode, strings.TrimSpace(string(b)))
	}
	return nil
}

// metric returns the value of the first exposition line starting with prefix.
func metric(t testing.TB, gw *gateway.Gateway, prefix string) (float64, bool) {
	t.Helper()
	c := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{Proxy: nil, DisableKeepAlives: true}}
	resp, err := c.Get("http://" + gw.AdminAddr() + "/metrics")
	if err != nil {
		t.Fatalf("metrics: %v", err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, prefix); ok {
			var v float64
			if _, err := fmt.Sscan(strings.TrimSpace(rest), &v); err == nil {
				return v, true
			}
		}
	}
	return 0, false
}

// waitFor polls cond every 50 ms until it returns nil or limit passes.
func waitFor(limit time.Duration, cond func() error) error {
	deadline := time.Now().Add(limit)
	for {
		err := cond()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("after %v: %w", limit, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

var errNotYet = errors.New("not yet")
