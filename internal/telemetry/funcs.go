package telemetry

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// The collectors below read values owned by other components at scrape time. They
// are collectors rather than GaugeFunc/CounterFunc so that the feeding func can be
// supplied after NewMetrics (wiring order in cmd is free) and so that a series is
// absent, not a misleading zero, until there is something to report.

var svidExpiryDesc = prometheus.NewDesc("tollgate_svid_expiry_seconds",
	"Seconds until the gateway's current X.509 SVID expires (negative once expired).", nil, nil)

type svidCollector struct{ m *Metrics }

func (c *svidCollector) Describe(ch chan<- *prometheus.Desc) { ch <- svidExpiryDesc }

func (c *svidCollector) Collect(ch chan<- prometheus.Metric) {
	fn := c.m.svidExpiry.Load()
	if fn == nil || *fn == nil {
		return
	}
	notAfter := (*fn)()
	if notAfter.IsZero() {
		return
	}
	ch <- prometheus.MustNewConstMetric(svidExpiryDesc, prometheus.GaugeValue, time.Until(notAfter).Seconds())
}

var (
	auditWrittenDesc = prometheus.NewDesc("tollgate_audit_events_written_total",
		"Audit events accepted by every sink.", nil, nil)
	auditDroppedDesc = prometheus.NewDesc("tollgate_audit_events_dropped_total",
		"Audit events dropped because the queue stayed full or the logger was closed.", nil, nil)
	auditErrorsDesc = prometheus.NewDesc("tollgate_audit_write_errors_total",
		"Failed audit sink writes.", nil, nil)
)

type auditCollector struct{ m *Metrics }

func (c *auditCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- auditWrittenDesc
	ch <- auditDroppedDesc
	ch <- auditErrorsDesc
}

func (c *auditCollector) Collect(ch chan<- prometheus.Metric) {
	fn := c.m.auditStats.Load()
	if fn == nil || *fn == nil {
		return
	}
	s := (*fn)()
	ch <- prometheus.MustNewConstMetric(auditWrittenDesc, prometheus.CounterValue, float64(s.Written))
	ch <- prometheus.MustNewConstMetric(auditDroppedDesc, prometheus.CounterValue, float64(s.Dropped))
	ch <- prometheus.MustNewConstMetric(auditErrorsDesc, prometheus.CounterValue, float64(s.Errors))
}

var loginReadyDesc = prometheus.NewDesc("tollgate_login_provider_ready",
	"1 once the login provider's discovery has succeeded, 0 while logins answer 503.", []string{"provider"}, nil)

type loginCollector struct{ m *Metrics }

func (c *loginCollector) Describe(ch chan<- *prometheus.Desc) { ch <- loginReadyDesc }

func (c *loginCollector) Collect(ch chan<- prometheus.Metric) {
	fn := c.m.loginReady.Load()
	if fn == nil || *fn == nil {
		return
	}
	for name, ready := range (*fn)() {
		v := 0.0
		if ready {
			v = 1
		}
		ch <- prometheus.MustNewConstMetric(loginReadyDesc, prometheus.GaugeValue, v, name)
	}
}

var (
	logWrittenDesc = prometheus.NewDesc("tollgate_log_lines_written_total",
		"Operational log lines written.", nil, nil)
	logDroppedDesc = prometheus.NewDesc("tollgate_log_lines_dropped_total",
		"Operational log lines dropped because the queue to a slow or stalled reader of the log stayed full.", nil, nil)
	logSuppressedDesc = prometheus.NewDesc("tollgate_log_lines_suppressed_total",
		"Operational log lines held back by rate limiting of repeated records.", nil, nil)
	logErrorsDesc = prometheus.NewDesc("tollgate_log_write_errors_total",
		"Failed operational log writes (a reader of stderr that went away).", nil, nil)
)

// LogStats are the operational log's counters as the metrics read them (cmd
// maps oplog.Stats onto this).
type LogStats struct {
	Written, Dropped, Suppressed, WriteErrors uint64
}

// SetLogStats makes the tollgate_log_* counters read fn at each scrape: the
// operational log can't report its own failures when its reader is gone.
func (m *Metrics) SetLogStats(fn func() LogStats) {
	m.logStats.Store(&fn)
}

type logCollector struct{ m *Metrics }

func (c *logCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- logWrittenDesc
	ch <- logDroppedDesc
	ch <- logSuppressedDesc
	ch <- logErrorsDesc
}

func (c *logCollector) Collect(ch chan<- prometheus.Metric) {
	fn := c.m.logStats.Load()
	if fn == nil || *fn == nil {
		return
	}
	s := (*fn)()
	ch <- prometheus.MustNewConstMetric(logWrittenDesc, prometheus.CounterValue, float64(s.Written))
	ch <- prometheus.MustNewConstMetric(logDroppedDesc, prometheus.CounterValue, float64(s.Dropped))
	ch <- prometheus.MustNewConstMetric(logSuppressedDesc, prometheus.CounterValue, float64(s.Suppressed))
	ch <- prometheus.MustNewConstMetric(logErrorsDesc, prometheus.CounterValue, float64(s.WriteErrors))
}
