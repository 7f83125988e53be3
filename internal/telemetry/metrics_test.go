package telemetry

import (
	"errors"
	"fmt"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"
)

func TestRequestMetrics(t *testing.T) {
	m := NewMetrics()
	r := m.Route("ingress", "app")
	r.ObserveRequest(200, 3*time.Millisecond)
	r.ObserveRequest(200, 40*time.Millisecond)
	m.ObserveRequest("ingress", "app", 403, time.Millisecond)
	m.ObserveRequest("egress", "github", 502, 2*time.Second)
	// Out-of-range codes collapse to "0" so that a broken upstream's status line
	// cannot mint label values.
	for _, code := range []int{0, -1, 42, 600, 99999} {
		r.ObserveRequest(code, time.Millisecond)
	}

	want := `
# HELP tollgate_requests_total Requests served, by route, HTTP status code (0: no response) and kind (ingress or egress).
# TYPE tollgate_requests_total counter
tollgate_requests_total{code="0",kind="ingress",route="app"} 5
tollgate_requests_total{code="200",kind="ingress",route="app"} 2
tollgate_requests_total{code="403",kind="ingress",route="app"} 1
tollgate_requests_total{code="502",kind="egress",route="github"} 1
`
	if err := testutil.GatherAndCompare(m.Registry(), strings.NewReader(want), "tollgate_requests_total"); err != nil {
		t.Error(err)
	}
	if got := testutil.CollectAndCount(m.duration); got != 2 {
		t.Errorf("duration histogram has %d children, want 2 (one per route)", got)
	}
	gh := histogram(t, m, "github")
	if gh.GetSampleCount() != 1 || gh.GetSampleSum() != 2 {
		t.Errorf("github: count %d sum %v, want 1 and 2", gh.GetSampleCount(), gh.GetSampleSum())
	}
	for _, bk := range gh.GetBucket() {
		want := uint64(0)
		if bk.GetUpperBound() >= 2.5 {
			want = 1
		}
		if bk.GetCumulativeCount() != want {
			t.Errorf("github bucket le=%g has %d, want %d", bk.GetUpperBound(), bk.GetCumulativeCount(), want)
		}
	}
	if got := histogram(t, m, "app").GetSampleCount(); got != 8 {
		t.Errorf("app count = %d, want 8", got)
	}
}

// histogram returns the duration histogram of route as gathered.
func histogram(t *testing.T, m *Metrics, route string) *dto.Histogram {
	t.Helper()
	mfs, err := m.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "tollgate_request_duration_seconds" {
			continue
		}
		for _, mt := range mf.GetMetric() {
			if mt.GetLabel()[0].GetValue() == route {
				return mt.GetHistogram()
			}
		}
	}
	t.Fatalf("no duration histogram for route %q", route)
	return nil
}

func TestRouteIsCached(t *testing.T) {
	m := NewMetrics()
	if a, b := m.Route("ingress", "app"), m.Route("ingress", "app"); a != b {
		t.Error("Route returned two different values for one route")
	}
	if a, b := m.Route("ingress", "app"), m.Route("egress", "app"); a == b {
		t.Error("ingress and egress routes of one name share metrics")
	}
}

func TestUpstreamErrorsAreBounded(t *testing.T) {
	m := NewMetrics()
	r := m.Route("egress", "api")
	r.UpstreamError("upstream_tls")
	r.UpstreamError("upstream_tls")
	for i := range 30 { // a caller passing unbounded strings
		r.UpstreamError(fmt.Sprintf("kind-%d", i))
	}
	if got := testutil.ToFloat64(m.upstreamErrors.WithLabelValues("api", "upstream_tls")); got != 2 {
		t.Errorf("upstream_tls = %v, want 2", got)
	}
	if got := testutil.CollectAndCount(m.upstreamErrors); got != maxErrorKindsPerRoute+1 {
		t.Errorf("%d upstream error series, want %d kinds + other", got, maxErrorKindsPerRoute)
	}
	// 1 tls + 15 kinds fill the 16; the other 15 kinds went to "other".
	if got := testutil.ToFloat64(m.upstreamErrors.WithLabelValues("api", otherErrorKind)); got != 15 {
		t.Errorf("other = %v, want 15", got)
	}
}

func TestReloadAndHandshakeMetrics(t *testing.T) {
	m := NewMetrics()
	m.ConfigReload("policy", nil)
	m.ConfigReload("policy", errors.New("bad yaml"))
	m.ConfigReload("gateway", nil)
	m.CertReload("listener", nil)
	m.CertReload("svid", errors.New("expired"))
	m.TLSHandshakeError("ingress")
	m.TLSHandshakeError("ingress")
	m.ConnectionLimitReached("mesh")
	m.ConnectionShed("ingress", "idle")
	m.ConnectionShed("ingress", "idle")
	m.ConnectionShed("ingress", "per_source")

	want := `
# HELP tollgate_cert_reloads_total Certificate and trust bundle reloads, by result and kind.
# TYPE tollgate_cert_reloads_total counter
tollgate_cert_reloads_total{kind="listener",result="success"} 1
tollgate_cert_reloads_total{kind="svid",result="failure"} 1
# HELP tollgate_config_last_reload_successful 1 if the last reload of this kind succeeded, 0 if it failed and the previous snapshot still serves.
# TYPE tollgate_config_last_reload_successful gauge
tollgate_config_last_reload_successful{kind="gateway"} 1
tollgate_config_last_reload_successful{kind="policy"} 0
# HELP tollgate_config_reloads_total Configuration and policy reload attempts, by result and kind.
# TYPE tollgate_config_reloads_total counter
tollgate_config_reloads_total{kind="gateway",result="success"} 1
tollgate_config_reloads_total{kind="policy",result="failure"} 1
tollgate_config_reloads_total{kind="policy",result="success"} 1
# HELP tollgate_listener_connection_limit_reached_total Times a listener paused accepting at its connection limit (ingress.limits.maxConnections), by listener.
# TYPE tollgate_listener_connection_limit_reached_total counter
tollgate_listener_connection_limit_reached_total{listener="mesh"} 1
# HELP tollgate_listener_connections_shed_total Connections a full listener (ingress.limits.maxConnections) shed, by listener and reason: idle (an idle keep-alive connection closed or sent GOAWAY to make room) or per_source (a new connection closed at accept, its source holding its share).
# TYPE tollgate_listener_connections_shed_total counter
tollgate_listener_connections_shed_total{listener="ingress",reason="idle"} 2
tollgate_listener_connections_shed_total{listener="ingress",reason="per_source"} 1
# HELP tollgate_tls_handshake_errors_total Failed client TLS handshakes, by listener.
# TYPE tollgate_tls_handshake_errors_total counter
tollgate_tls_handshake_errors_total{listener="ingress"} 2
`
	if err := testutil.GatherAndCompare(m.Registry(), strings.NewReader(want),
		"tollgate_cert_reloads_total", "tollgate_config_last_reload_successful",
		"tollgate_config_reloads_total", "tollgate_listener_connection_limit_reached_total",
		"tollgate_listener_connections_shed_total",
		"tollgate_tls_handshake_errors_total"); err != nil {
		t.Error(err)
	}
}

func TestFuncMetrics(t *testing.T) {
	m := NewMetrics()
	names := []string{"tollgate_svid_expiry_seconds", "tollgate_audit_events_written_total",
		"tollgate_audit_events_dropped_total", "tollgate_audit_write_errors_total"}
	if n, err := testutil.GatherAndCount(m.Registry(), names...); err != nil || n != 0 {
		t.Fatalf("before wiring: %d series (err %v), want none", n, err)
	}

	var notAfter time.Time // no SVID yet
	m.SetSVIDExpiry(func() time.Time { return notAfter })
	m.SetAuditStats(func() AuditStats {
		return AuditStats{Written: 10, Dropped: 2, Errors: 1, Commits: 3, Sinks: []AuditSinkStats{{Name: "siem"}}}
	})
	if n, _ := testutil.GatherAndCount(m.Registry(), "tollgate_svid_expiry_seconds"); n != 0 {
		t.Errorf("svid series present before the first SVID")
	}
	notAfter = time.Now().Add(time.Hour)
	got := gatherValue(t, m, "tollgate_svid_expiry_seconds")
	if math.Abs(got-3600) > 60 {
		t.Errorf("svid expiry = %v s, want about 3600", got)
	}
	for name, want := range map[string]float64{
		"tollgate_audit_events_written_total":  10,
		"tollgate_audit_events_dropped_total":  2,
		"tollgate_audit_write_errors_total":    1,
		"tollgate_audit_journal_commits_total": 3,
	} {
		if got := gatherValue(t, m, name); got != want {
			t.Errorf("%s = %v, want %v", name, got, want)
		}
	}
}

// gatherValue returns the value of the single unlabelled series name.
func gatherValue(t *testing.T, m *Metrics, name string) float64 {
	t.Helper()
	mfs, err := m.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		if len(mf.GetMetric()) != 1 {
			t.Fatalf("%s has %d series, want 1", name, len(mf.GetMetric()))
		}
		mt := mf.GetMetric()[0]
		if g := mt.GetGauge(); g != nil {
			return g.GetValue()
		}
		return mt.GetCounter().GetValue()
	}
	t.Fatalf("%s not gathered", name)
	return 0
}

func TestRegistryIsNotGlobal(t *testing.T) {
	// Two Metrics in one process must not collide (they would panic on a shared
	// registry with "duplicate metrics collector registration").
	a, b := NewMetrics(), NewMetrics()
	a.ObserveRequest("ingress", "x", 200, time.Millisecond)
	if got := testutil.ToFloat64(b.requests.WithLabelValues("x", "200", "ingress")); got != 0 {
		t.Errorf("second Metrics sees %v requests from the first", got)
	}
}

func BenchmarkObserveRequest(b *testing.B) {
	m := NewMetrics()
	b.Run("route", func(b *testing.B) {
		r := m.Route("ingress", "app")
		b.ReportAllocs()
		for b.Loop() {
			r.ObserveRequest(200, 5*time.Millisecond)
		}
	})
	b.Run("lookup", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			m.ObserveRequest("ingress", "app", 200, 5*time.Millisecond)
		}
	})
	b.Run("route-parallel", func(b *testing.B) {
		r := m.Route("ingress", "app")
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				r.ObserveRequest(200, 5*time.Millisecond)
			}
		})
	})
}
