package telemetry

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// startAdmin runs an admin server on an ephemeral loopback port for the test.
func startAdmin(t *testing.T, h *Health, m *Metrics) *AdminServer {
	t.Helper()
	s := NewAdminServer("127.0.0.1:0", h, m)
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := s.Shutdown(ctx); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
	})
	return s
}

func get(t *testing.T, c *http.Client, url string) (int, string, http.Header) {
	t.Helper()
	resp, err := c.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(b), resp.Header
}

func TestAdminReadinessFlips(t *testing.T) {
	h := NewHealth()
	var svidErr atomic.Pointer[error]
	noSVID := errors.New("no SVID received yet")
	svidErr.Store(&noSVID)
	h.AddCheck("svid", func() error { return *svidErr.Load() })
	s := startAdmin(t, h, NewMetrics())
	base := "http://" + s.Addr()
	c := &http.Client{Timeout: 5 * time.Second}

	code, body, _ := get(t, c, base+"/healthz")
	if code != http.StatusOK || body != "ok\n" {
		t.Errorf("/healthz = %d %q, want 200 \"ok\\n\"", code, body)
	}

	code, body, hdr := get(t, c, base+"/readyz")
	if code != http.StatusServiceUnavailable {
		t.Errorf("/readyz before SVID = %d, want 503", code)
	}
	if ct := hdr.Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type = %q", ct)
	}
	var got readyBody
	if err := json.Unmarshal([]byte(body), &got); err != nil {
		t.Fatalf("/readyz body %q: %v", body, err)
	}
	want := readyBody{Status: "unavailable", Failing: []CheckResult{{Name: "svid", Error: "no SVID received yet"}}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("/readyz body (-want +got):\n%s", diff)
	}

	var ok error
	svidErr.Store(&ok)
	code, body, _ = get(t, c, base+"/readyz")
	if code != http.StatusOK || strings.TrimSpace(body) != `{"status":"ok"}` {
		t.Errorf("/readyz after SVID = %d %q, want 200 {\"status\":\"ok\"}", code, body)
	}
}

func TestAdminMetricsExposition(t *testing.T) {
	m := NewMetrics()
	s := startAdmin(t, nil, m)
	m.Route("ingress", "app").ObserveRequest(200, 12*time.Millisecond)
	m.Route("egress", "github").UpstreamError("upstream_tls")
	m.TLSHandshakeError("ingress")
	m.ConfigReload("policy", nil)
	m.SetSVIDExpiry(func() time.Time { return time.Now().Add(time.Hour) })
	m.SetAuditStats(func() AuditStats { return AuditStats{Written: 3} })

	c := &http.Client{Timeout: 5 * time.Second}
	code, body, _ := get(t, c, "http://"+s.Addr()+"/metrics")
	if code != http.StatusOK {
		t.Fatalf("/metrics = %d", code)
	}
	for _, series := range []string{
		`tollgate_requests_total{code="200",kind="ingress",route="app"} 1`,
		`tollgate_request_duration_seconds_bucket{route="app",le="0.025"} 1`,
		`tollgate_request_duration_seconds_count{route="app"} 1`,
		`tollgate_upstream_errors_total{kind="upstream_tls",route="github"} 1`,
		`tollgate_tls_handshake_errors_total{listener="ingress"} 1`,
		`tollgate_config_reloads_total{kind="policy",result="success"} 1`,
		`tollgate_svid_expiry_seconds `,
		`tollgate_audit_events_written_total 3`,
		`go_goroutines `,
	} {
		if !strings.Contains(body, "\n"+series) {
			t.Errorf("/metrics lacks %q", series)
		}
	}
}

func TestAdminRoutes(t *testing.T) {
	s := startAdmin(t, nil, nil) // no metrics: /metrics is not served
	base := "http://" + s.Addr()
	c := &http.Client{Timeout: 5 * time.Second}
	tests := []struct {
		name, method, path string
		wantCode           int
	}{
		{name: "ready without checks", method: http.MethodGet, path: "/readyz", wantCode: http.StatusOK},
		{name: "head healthz", method: http.MethodHead, path: "/healthz", wantCode: http.StatusOK},
		{name: "post refused", method: http.MethodPost, path: "/readyz", wantCode: http.StatusMethodNotAllowed},
		{name: "no metrics without Metrics", method: http.MethodGet, path: "/metrics", wantCode: http.StatusNotFound},
		{name: "unknown path", method: http.MethodGet, path: "/debug/pprof/", wantCode: http.StatusNotFound},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, err := http.NewRequest(tt.method, base+tt.path, nil)
			if err != nil {
				t.Fatal(err)
			}
			resp, err := c.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != tt.wantCode {
				t.Errorf("%s %s = %d, want %d", tt.method, tt.path, resp.StatusCode, tt.wantCode)
			}
		})
	}
}

func TestAdminLifecycle(t *testing.T) {
	if got := NewAdminServer("", nil, nil).Addr(); got != DefaultAdminAddr {
		t.Errorf("default Addr() = %q, want %q", got, DefaultAdminAddr)
	}
	before := runtime.NumGoroutine()

	s := NewAdminServer("127.0.0.1:0", nil, nil)
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	if err := s.Start(); err == nil || err.Error() != "telemetry: admin server already started" {
		t.Errorf("second Start = %v", err)
	}
	// A second server on the same port fails at Start, not later.
	busy := NewAdminServer(s.Addr(), nil, nil)
	var opErr *net.OpError
	if err := busy.Start(); !errors.As(err, &opErr) {
		t.Errorf("Start on a busy port = %v, want a *net.OpError", err)
	}

	// A keep-alive connection is open when Shutdown starts; it must still end.
	tr := &http.Transport{}
	c := &http.Client{Transport: tr, Timeout: 5 * time.Second}
	if code, _, _ := get(t, c, "http://"+s.Addr()+"/healthz"); code != http.StatusOK {
		t.Fatalf("/healthz = %d", code)
	}
	addr := s.Addr()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for range 2 { // idempotent
		if err := s.Shutdown(ctx); err != nil {
			t.Fatalf("Shutdown: %v", err)
		}
	}
	if err := s.Start(); err == nil || err.Error() != "telemetry: admin server already shut down" {
		t.Errorf("Start after Shutdown = %v", err)
	}
	tr.CloseIdleConnections()
	if _, err := (&http.Client{Timeout: time.Second}).Get("http://" + addr + "/healthz"); err == nil {
		t.Error("server still answers after Shutdown")
	}
	// No goroutine of the server outlives Shutdown (bounded wait for the
	// runtime to reap them).
	deadline := time.Now().Add(2 * time.Second)
	for runtime.NumGoroutine() > before && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if n := runtime.NumGoroutine(); n > before {
		t.Errorf("%d goroutines after Shutdown, %d before", n, before)
	}
	// Shutdown of a server never started is fine.
	if err := NewAdminServer("127.0.0.1:0", nil, nil).Shutdown(ctx); err != nil {
		t.Errorf("Shutdown without Start: %v", err)
	}
}
