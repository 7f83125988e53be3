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
		"Audit events lost before they were written: the queue stayed full, the journal could not append, or the logger was closed.", nil, nil)
	auditErrorsDesc = prometheus.NewDesc("tollgate_audit_write_errors_total",
		"Failed audit sink writes.", nil, nil)
	auditCommitsDesc = prometheus.NewDesc("tollgate_audit_journal_commits_total",
		"Group commits of the audit journal, one fsync each; events written over commits is the events one fsync made durable.", nil, nil)
	auditSinkDeliveredDesc = prometheus.NewDesc("tollgate_audit_sink_delivered_total",
		"Audit records a journal-fed sink accepted.", []string{"sink"}, nil)
	auditSinkRetriesDesc = prometheus.NewDesc("tollgate_audit_sink_retries_total",
		"Failed delivery attempts of a journal-fed sink (each retried with backoff).", []string{"sink"}, nil)
	auditSinkDroppedDesc = prometheus.NewDesc("tollgate_audit_sink_dropped_total",
		"Audit records the journal quota removed before the sink delivered them.", []string{"sink"}, nil)
	auditSinkLagEventsDesc = prometheus.NewDesc("tollgate_audit_sink_lag_events",
		"Journaled audit records the sink has not delivered yet.", []string{"sink"}, nil)
	auditSinkLagSecondsDesc = prometheus.NewDesc("tollgate_audit_sink_lag_seconds",
		"Age of the record the sink was delivering when last seen behind; 0 when caught up.", []string{"sink"}, nil)
)

type auditCollector struct{ m *Metrics }

func (c *auditCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- auditWrittenDesc
	ch <- auditDroppedDesc
	ch <- auditErrorsDesc
	ch <- auditCommitsDesc
	ch <- auditSinkDeliveredDesc
	ch <- auditSinkRetriesDesc
	ch <- auditSinkDroppedDesc
	ch <- auditSinkLagEventsDesc
	ch <- auditSinkLagSecondsDesc
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
	if len(s.Sinks) > 0 { // journal-fed sinks: there is a journal
		ch <- prometheus.MustNewConstMetric(auditCommitsDesc, prometheus.CounterValue, float64(s.Commits))
	}
	for _, k := range s.Sinks {
		ch <- prometheus.MustNewConstMetric(auditSinkDeliveredDesc, prometheus.CounterValue, float64(k.Delivered), k.Name)
		ch <- prometheus.MustNewConstMetric(auditSinkRetriesDesc, prometheus.CounterValue, float64(k.Retries), k.Name)
		ch <- prometheus.MustNewConstMetric(auditSinkDroppedDesc, prometheus.CounterValue, float64(k.Dropped), k.Name)
		ch <- prometheus.MustNewConstMetric(auditSinkLagEventsDesc, prometheus.GaugeValue, float64(k.LagEvents), k.Name)
		ch <- prometheus.MustNewConstMetric(auditSinkLagSecondsDesc, prometheus.GaugeValue, k.LagSeconds, k.Name)
	}
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
