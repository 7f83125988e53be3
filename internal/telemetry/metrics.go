package telemetry

import (
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Label values for the result label of the reload counters.
const (
	ResultSuccess = "success"
	ResultFailure = "failure"
	// ResultRefusedEmpty: a policy set that compiled but would have left a
	// listener with no policies, or with no ALLOW or no DENY policies where
	// the set in force had some, was refused (policy.allowEmpty unset).
	ResultRefusedEmpty = "refused_empty"
)

// maxErrorKindsPerRoute caps the distinct upstream error kinds one route can create,
// so that a caller passing unbounded strings cannot blow up the series count.
const maxErrorKindsPerRoute = 16

// otherErrorKind is the label value used once a route has maxErrorKindsPerRoute kinds.
const otherErrorKind = "other"

// durationBuckets span a cached local answer (1 ms) to a slow upstream (30 s).
var durationBuckets = []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30}

// Metrics holds every Tollgate metric on a registry of its own: nothing is put on
// the global default registry, so tests and several gateways in one process do not
// collide. Its methods are safe for concurrent use.
type Metrics struct {
	reg *prometheus.Registry

	requests       *prometheus.CounterVec
	duration       *prometheus.HistogramVec
	upstreamErrors *prometheus.CounterVec
	tlsErrors      *prometheus.CounterVec
	connLimited    *prometheus.CounterVec
	connShed       *prometheus.CounterVec
	configReloads  *prometheus.CounterVec
	configOK       *prometheus.GaugeVec
	restartNeeded  prometheus.Gauge
	certReloads    *prometheus.CounterVec
	http2Errors    *prometheus.CounterVec
	loginEvents    *prometheus.CounterVec

	svidExpiry atomic.Pointer[func() time.Time]
	auditStats atomic.Pointer[func() AuditStats]
	logStats   atomic.Pointer[func() LogStats]
	loginReady atomic.Pointer[func() map[string]bool]

	mu     sync.RWMutex
	routes map[routeKey]*Route
}

type routeKey struct{ kind, name string }

// AuditStats are the audit logger's counters as the metrics read them (the lead maps
// audit.Stats onto this, so this package does not depend on audit).
type AuditStats struct {
	Written, Dropped, Errors uint64
	// Commits counts the audit journal's group commits (fsyncs); zero
	// without a journal.
	Commits uint64
	// Sinks are the journal-fed sinks' delivery counters (empty without a
	// journal).
	Sinks []AuditSinkStats
}

// AuditSinkStats is one journal-fed sink's delivery.
type AuditSinkStats struct {
	Name                        string
	Delivered, Retries, Dropped uint64
	LagEvents                   uint64
	LagSeconds                  float64
}

// NewMetrics builds the metrics and registers them, with the Go runtime and process
// collectors, on a new registry.
func NewMetrics() *Metrics {
	m := &Metrics{
		reg:    prometheus.NewRegistry(),
		routes: make(map[routeKey]*Route),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tollgate_requests_total",
			Help: "Requests served, by route, HTTP status code (0: no response) and kind (ingress or egress).",
		}, []string{"route", "code", "kind"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "tollgate_request_duration_seconds",
			Help:    "Time from request start to the end of the response, by route.",
			Buckets: durationBuckets,
		}, []string{"route"}),
		upstreamErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tollgate_upstream_errors_total",
			Help: "Requests that got no normal upstream response, by route and error kind.",
		}, []string{"route", "kind"}),
		tlsErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tollgate_tls_handshake_errors_total",
			Help: "Failed client TLS handshakes, by listener.",
		}, []string{"listener"}),
		connLimited: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tollgate_listener_connection_limit_reached_total",
			Help: "Times a listener paused accepting at its connection limit (ingress.limits.maxConnections), by listener.",
		}, []string{"listener"}),
		connShed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tollgate_listener_connections_shed_total",
			Help: "Connections a full listener (ingress.limits.maxConnections) shed, by listener and reason: idle (an idle keep-alive connection closed or sent GOAWAY to make room) or per_source (a new connection closed at accept, its source holding its share).",
		}, []string{"listener", "reason"}),
		configReloads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tollgate_config_reloads_total",
			Help: "Configuration and policy reload attempts, by result and kind.",
		}, []string{"result", "kind"}),
		configOK: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "tollgate_config_last_reload_successful",
			Help: "1 if the last reload of this kind succeeded, 0 if it failed and the previous snapshot still serves.",
		}, []string{"kind"}),
		restartNeeded: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "tollgate_config_restart_required_fields",
			Help: "How many settings of the gateway file changed but apply only at the next start (the log names them).",
		}),
		loginEvents: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tollgate_login_events_total",
			Help: "Browser login outcomes, by provider, event (login, refresh, logout) and result.",
		}, []string{"provider", "event", "result"}),
		http2Errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tollgate_http2_protocol_errors_total",
			Help: "HTTP/2 streams or connections refused by the HTTP/2 server without a handler, by listener and error (they get no request id and no audit event).",
		}, []string{"listener", "type"}),
		certReloads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tollgate_cert_reloads_total",
			Help: "Certificate and trust bundle reloads, by result and kind.",
		}, []string{"result", "kind"}),
	}
	m.reg.MustRegister(
		m.requests, m.duration, m.upstreamErrors, m.tlsErrors, m.connLimited, m.connShed, m.configReloads, m.configOK, m.restartNeeded, m.certReloads,
		m.loginEvents, m.http2Errors,
		&svidCollector{m: m}, &auditCollector{m: m}, &loginCollector{m: m}, &logCollector{m: m},
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	return m
}

// Registry returns the registry, for tests and for code that adds its own metrics.
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// Handler serves the exposition format for this registry.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{
		// A scrape must not take the admin listener down: bound concurrency and time.
		MaxRequestsInFlight: 4,
		Timeout:             10 * time.Second,
	})
}

// Route returns the pre-resolved metrics of one route; callers on the request path
// keep it (for example in the compiled route) so an observation costs two atomic
// adds and no map lookup. kind is "ingress" or "egress"; name is the route's
// configured name, never anything taken from the request.
func (m *Metrics) Route(kind, name string) *Route {
	k := routeKey{kind, name}
	m.mu.RLock()
	r := m.routes[k]
	m.mu.RUnlock()
	if r != nil {
		return r
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if r := m.routes[k]; r != nil {
		return r
	}
	r = &Route{
		m:        m,
		kind:     kind,
		name:     name,
		duration: m.duration.WithLabelValues(name),
		errKinds: make(map[string]prometheus.Counter),
	}
	m.routes[k] = r
	return r
}

// ObserveRequest counts one finished request and its duration. It looks the route up
// on every call; hot paths should hold the *Route instead.
func (m *Metrics) ObserveRequest(kind, route string, code int, d time.Duration) {
	m.Route(kind, route).ObserveRequest(code, d)
}

// TLSHandshakeError counts a failed client handshake on the named listener.
func (m *Metrics) TLSHandshakeError(listener string) {
	m.tlsErrors.WithLabelValues(listener).Inc()
}

// HTTP2Error counts an HTTP/2 stream or connection the named listener's
// HTTP/2 server refused without a handler.
func (m *Metrics) HTTP2Error(listener, errType string) {
	m.http2Errors.WithLabelValues(listener, errType).Inc()
}

// ConnectionLimitReached counts a pause in accepting on the named listener.
func (m *Metrics) ConnectionLimitReached(listener string) {
	m.connLimited.WithLabelValues(listener).Inc()
}

// ConnectionShed counts a connection the named listener shed at its
// connection limit; reason is one of the listener package's Shed* words.
func (m *Metrics) ConnectionShed(listener, reason string) {
	m.connShed.WithLabelValues(listener, reason).Inc()
}

// ConfigReload counts a reload attempt of kind (for example "gateway", "policy")
// and records whether the last one succeeded; err nil means success.
func (m *Metrics) ConfigReload(kind string, err error) {
	m.configReloads.WithLabelValues(result(err), kind).Inc()
	ok := 1.0
	if err != nil {
		ok = 0
	}
	m.configOK.WithLabelValues(kind).Set(ok)
}

// SetRestartRequired reports how many changed settings wait for a restart.
func (m *Metrics) SetRestartRequired(n int) { m.restartNeeded.Set(float64(n)) }

// ConfigReloadRefused counts a reload of kind that was read and compiled but
// refused by a safety rule, named by result (ResultRefusedEmpty). The previous
// snapshot keeps serving, so the last reload counts as unsuccessful.
func (m *Metrics) ConfigReloadRefused(kind, result string) {
	m.configReloads.WithLabelValues(result, kind).Inc()
	m.configOK.WithLabelValues(kind).Set(0)
}

// CertReload counts a certificate reload of kind (for example "listener", "svid",
// "bundle"); err nil means success.
func (m *Metrics) CertReload(kind string, err error) {
	m.certReloads.WithLabelValues(result(err), kind).Inc()
}

// SetSVIDExpiry makes tollgate_svid_expiry_seconds report the seconds until the
// time fn returns (the current X.509 SVID's NotAfter; negative once expired). While
// fn is unset or returns the zero time (no SVID yet), the series is absent.
func (m *Metrics) SetSVIDExpiry(fn func() time.Time) {
	m.svidExpiry.Store(&fn)
}

// SetAuditStats makes the tollgate_audit_* counters read fn at each scrape.
func (m *Metrics) SetAuditStats(fn func() AuditStats) {
	m.auditStats.Store(&fn)
}

// LoginEvent counts one outcome of a login provider (see oidc.LoginConfig.OnEvent).
func (m *Metrics) LoginEvent(provider, event, result string) {
	m.loginEvents.WithLabelValues(provider, event, result).Inc()
}

// SetLoginReady sets the func that reports, per login provider, whether its
// discovery has succeeded (logins answer 503 until then).
func (m *Metrics) SetLoginReady(fn func() map[string]bool) {
	m.loginReady.Store(&fn)
}

func result(err error) string {
	if err != nil {
		return ResultFailure
	}
	return ResultSuccess
}

// Route is the metrics of one configured route with its label children resolved.
type Route struct {
	m          *Metrics
	kind, name string
	duration   prometheus.Observer
	// codes caches the request counter per status code 100..599, plus [0] for
	// "no response" and anything out of range, filled on first use.
	codes [501]atomic.Pointer[counter]

	mu       sync.Mutex
	errKinds map[string]prometheus.Counter
}

type counter struct{ prometheus.Counter }

// ObserveRequest counts one request with its status code (0 when no response was
// sent) and records its duration.
func (r *Route) ObserveRequest(code int, d time.Duration) {
	r.requests(code).Inc()
	r.duration.Observe(d.Seconds())
}

func (r *Route) requests(code int) prometheus.Counter {
	i := 0
	if code >= 100 && code <= 599 {
		i = code - 99
	} else {
		code = 0 // bounded: a broken upstream cannot invent label values
	}
	if c := r.codes[i].Load(); c != nil {
		return c.Counter
	}
	// WithLabelValues returns the same child every time, so a race here only
	// stores an identical pointer twice.
	c := &counter{r.m.requests.WithLabelValues(r.name, strconv.Itoa(code), r.kind)}
	r.codes[i].Store(c)
	return c.Counter
}

// UpstreamError counts a request that got no normal upstream response. kind comes
// from a fixed vocabulary (the audit error kinds: "upstream_unreachable",
// "upstream_tls", "timeout", ...); past 16 distinct kinds per route, further ones
// are counted as "other".
func (r *Route) UpstreamError(kind string) {
	r.mu.Lock()
	c, ok := r.errKinds[kind]
	if !ok {
		label := kind
		if len(r.errKinds) >= maxErrorKindsPerRoute {
			label = otherErrorKind
		}
		c = r.m.upstreamErrors.WithLabelValues(r.name, label)
		if label == kind {
			r.errKinds[kind] = c
		}
	}
	r.mu.Unlock()
	c.Inc()
}
