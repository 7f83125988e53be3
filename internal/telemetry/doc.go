// Package telemetry exposes what operators watch: Prometheus metrics, liveness and
// readiness, on a small admin HTTP listener of its own.
//
// # Metrics
//
// [NewMetrics] registers on its own registry (never the global one):
//
//	tollgate_requests_total{route,code,kind}          counter   kind: ingress|egress; code: status, "0" for none
//	tollgate_request_duration_seconds{route}          histogram
//	tollgate_upstream_errors_total{route,kind}        counter   kind: error kind (upstream_tls, timeout, ...)
//	tollgate_tls_handshake_errors_total{listener}     counter
//	tollgate_svid_expiry_seconds                      gauge     from SetSVIDExpiry; absent until set
//	tollgate_config_reloads_total{result,kind}        counter   result: success|failure
//	tollgate_config_last_reload_successful{kind}      gauge     1|0
//	tollgate_cert_reloads_total{result,kind}          counter
//	tollgate_audit_events_written_total               counter   from SetAuditStats; absent until set
//	tollgate_audit_events_dropped_total               counter
//	tollgate_audit_write_errors_total                 counter
//	tollgate_audit_journal_commits_total              counter   with a journal: group commits (fsyncs)
//	tollgate_audit_sink_delivered_total{sink}         counter   journal-fed sinks only
//	tollgate_audit_sink_retries_total{sink}           counter
//	tollgate_audit_sink_dropped_total{sink}           counter   removed by the journal quota before delivery
//	tollgate_audit_sink_lag_events{sink}              gauge
//	tollgate_audit_sink_lag_seconds{sink}             gauge
//
// plus the Go runtime and process collectors. Label values come from configuration
// (route and listener names) or small fixed sets (status codes, kinds, results),
// never from the request: a raw path or host as a label would let any client
// create series without bound. The request path holds a [*Route] from
// [Metrics.Route], whose counters are resolved once.
//
// # Health
//
// /healthz answers 200 "ok" while the process serves HTTP. /readyz runs the checks
// added with [Health.AddCheck] and answers 200, or 503 with the failing checks and
// their (scrubbed, shortened) messages in JSON.
//
// # Admin listener
//
// [NewAdminServer] serves /healthz, /readyz and /metrics over plain HTTP without
// authentication, on [DefaultAdminAddr] (loopback) unless told otherwise. This
// package refuses no address; the config layer decides whether a non-loopback admin
// address is acceptable.
package telemetry
