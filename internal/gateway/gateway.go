package gateway

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"tollgate.dev/tollgate/internal/audit"
	"tollgate.dev/tollgate/internal/config"
	"tollgate.dev/tollgate/internal/egress"
	"tollgate.dev/tollgate/internal/filewatch"
	"tollgate.dev/tollgate/internal/identity"
	"tollgate.dev/tollgate/internal/ingress"
	"tollgate.dev/tollgate/internal/listener"
	"tollgate.dev/tollgate/internal/oidc"
	"tollgate.dev/tollgate/internal/policy/pathnorm"
	"tollgate.dev/tollgate/internal/telemetry"
)

// Options supply what the configuration file does not: dev mode brings its own
// identity and certificates.
type Options struct {
	Logger *slog.Logger
	// Identity, when set, replaces the configured identity source. The gateway
	// does not close it.
	Identity identity.Source
	// Certs, when set, replaces the configured ingress certificates.
	Certs listener.CertSource
	// Stdout receives audit events of a "stdout" sink (os.Stdout when nil).
	Stdout io.Writer
	// EgressResolver, when set, replaces the system resolver for egress
	// destinations (tests map names to loopback addresses).
	EgressResolver egress.Resolver
	// LogStats, when set, reports the operational log's counters for
	// /metrics (the log can't report its own failures when its reader is
	// gone).
	LogStats func() telemetry.LogStats
	// AdminListen, when set, replaces admin.listen: in the configuration
	// given to New (the caller applies it) and in every reload of the file
	// ($TOLLGATE_ADMIN_LISTEN), so that the file's own value is not taken
	// for a change that waits for a restart.
	AdminListen string
	// Built says the configuration was built in code, not read from
	// cfg.File (dev mode): there is no gateway file to reload.
	Built bool
	// Version is the gateway's version, for formatted audit records
	// (OCSF metadata.product.version); empty: "dev".
	Version string
}

// Gateway is one running gateway.
type Gateway struct {
	cfg  *config.Gateway
	opts Options
	log  *slog.Logger

	src       identity.Source
	ownSource bool
	certStore *listener.CertStore
	server    *listener.Server
	admin     *telemetry.AdminServer
	metrics   *telemetry.Metrics
	health    *telemetry.Health
	audit     *audit.Logger
	// fronts are the listeners with their per-request plumbing: the ingress
	// first, then the mesh listener (ingress.mesh) when configured.
	fronts  []*front
	handler *ingress.Handler
	egress  *egress.Proxy // nil without an egress section
	// credentials are the egress credentials, closed with the gateway.
	credentials []*egress.Credentials
	// live is the part of the gateway file in force (see liveSet); the
	// policy watcher's mu serializes its swaps.
	live     atomic.Pointer[liveSet]
	policies *policyWatcher
	keys     *oidc.KeyCache
	// retiredLogins are logins a reload replaced; closed after a grace
	// period, or when the gateway closes.
	retiredMu     sync.Mutex
	retiredLogins []*oidc.Login
	// retiredTransports are upstream transports a reload replaced, still
	// under the SVID rotation's watch (see retire).
	retiredTransports []*rotatingTransport
	// configWatch reloads the gateway file when it changes (after Start).
	configWatch *filewatch.Watcher
	// cfgHash is the hash of the gateway file's content last put in force
	// (zero: the content New was given), restart the fields of it that wait
	// for a restart; the policy watcher's mu guards both.
	cfgHash [32]byte
	restart []string

	draining chan struct{}
	// rotationDone closes when watchRotation returns; nil until Start.
	rotationDone chan struct{}
	closeOnce    sync.Once
	drainOnce    sync.Once
}

// New builds a gateway from cfg without binding any listener. Problems that
// belong to a configuration field are reported as positioned config.Errors.
func New(ctx context.Context, cfg *config.Gateway, opts Options) (g *Gateway, err error) {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Stdout == nil {
		opts.Stdout = os.Stdout
	}
	g = &Gateway{cfg: cfg, opts: opts, log: opts.Logger, draining: make(chan struct{})}
	// built, not g: `return nil, err` sets the named result g to nil before
	// this runs, and the parts opened so far must still be closed.
	built := g
	defer func() {
		if err != nil {
			built.closeParts()
		}
	}()
	g.metrics = telemetry.NewMetrics()
	if opts.LogStats != nil {
		g.metrics.SetLogStats(opts.LogStats)
	}
	g.health = telemetry.NewHealth()

	if err := g.openAudit(); err != nil {
		return nil, err
	}
	if err := g.openIdentity(ctx); err != nil {
		return nil, err
	}
	live, err := g.buildLive(cfg, nil)
	if err != nil {
		return nil, err
	}
	g.live.Store(live)
	g.metrics.SetLoginReady(func() map[string]bool {
		logins := g.live.Load().loginList
		ready := make(map[string]bool, len(logins))
		for _, l := range logins {
			ready[l.Name()] = l.Ready()
		}
		return ready
	})
	if cfg.Ingress != nil {
		if err := g.openIngress(); err != nil {
			return nil, err
		}
		if err := g.openMesh(); err != nil {
			return nil, err
		}
	}
	if cfg.Egress != nil {
		if err := g.openEgress(); err != nil {
			return nil, err
		}
	}
	// Every front serves the live set; the policy watcher adds its set.
	for _, f := range g.fronts {
		f.handler.swap(nil, live, f)
	}

	g.keys = oidc.NewKeyCache(oidc.KeyCacheOptions{Logger: g.log})
	g.policies, err = newPolicyWatcher(g)
	if err != nil {
		return nil, err
	}
	g.noteConfigFile()
	g.health.AddCheck("identity", g.src.Ready)
	g.health.AddCheck("policy", g.policies.ready)
	g.health.AddCheck("draining", func() error {
		select {
		case <-g.draining:
			return errors.New("shutting down")
		default:
			return nil
		}
	})
	g.metrics.SetSVIDExpiry(func() time.Time { return g.src.Status().NotAfter })
	g.metrics.SetAuditStats(func() telemetry.AuditStats {
		s := g.audit.Stats()
		out := telemetry.AuditStats{Written: s.Written, Dropped: s.Dropped, Errors: s.Errors, Commits: s.Commits}
		for _, k := range s.Sinks {
			out.Sinks = append(out.Sinks, telemetry.AuditSinkStats{Name: k.Name, Delivered: k.Delivered, Retries: k.Retries,
				Dropped: k.Dropped, LagEvents: k.LagEvents, LagSeconds: k.LagSeconds})
		}
		return out
	})
	g.admin = telemetry.NewAdminServer(cfg.Admin.Listen, g.health, g.metrics)
	return g, nil
}

func (g *Gateway) openIdentity(ctx context.Context) error {
	if g.opts.Identity != nil {
		g.src = g.opts.Identity
		return nil
	}
	id := g.cfg.Identity
	switch {
	case id.Files != nil:
		f := id.Files
		src, err := identity.NewFiles(identity.FilesOptions{
			Cert: f.Cert, Key: f.Key, Bundle: f.Bundle, FederatedBundles: f.FederatedBundles,
			OnReload: func(err error) {
				g.metrics.CertReload("svid", err)
				if err != nil {
					g.log.Error("SVID files changed but could not be loaded; keeping the previous SVID", "err", err)
				}
			},
		})
		if err != nil {
			return config.Errors{g.cfg.ErrorFor("identity.files", err)}
		}
		g.src, g.ownSource = src, true
	case id.WorkloadAPI != nil:
		w := id.WorkloadAPI
		src, err := identity.NewWorkloadAPI(ctx, identity.WorkloadOptions{Socket: w.Socket, SPIFFEID: w.SPIFFEID, WaitTimeout: w.WaitTimeout})
		if err != nil {
			// Positioned like the files source's errors; err names the socket.
			return config.Errors{g.cfg.ErrorFor("identity.workloadAPI", err)}
		}
		g.src, g.ownSource = src, true
	}
	return checkTrustDomain(g.cfg, g.src)
}

// NormalizationOptions maps the ingress normalization settings to the
// normalizer's options: the one place that parses them, for the gateway and
// for `gateway policy eval -c` alike.
func NormalizationOptions(cfg *config.Gateway) (pathnorm.Options, error) {
	return normalizationOptions(cfg, "ingress.normalization", cfg.Ingress.Normalization)
}

// normalizationOptions maps one front's normalization settings, configured
// at path.
func normalizationOptions(cfg *config.Gateway, path string, n config.Normalization) (pathnorm.Options, error) {
	var errs config.Errors
	mode, err := pathnorm.ParseMode(n.Mode)
	if err != nil {
		errs = append(errs, cfg.ErrorFor(path+".mode", err))
	}
	esc, err := pathnorm.ParseEscapedSlashes(n.EscapedSlashes)
	if err != nil {
		errs = append(errs, cfg.ErrorFor(path+".escapedSlashes", err))
	}
	params, err := pathnorm.ParsePathParameters(n.PathParameters)
	if err != nil {
		errs = append(errs, cfg.ErrorFor(path+".pathParameters", err))
	}
	if err := errs.Err(); err != nil {
		return pathnorm.Options{}, err
	}
	return pathnorm.Options{Mode: mode, EscapedSlashes: esc, PathParameters: params}, nil
}

func normalizer(cfg *config.Gateway, path string, n config.Normalization) (ingress.Normalizer, error) {
	opts, err := normalizationOptions(cfg, path, n)
	if err != nil {
		return nil, err
	}
	return func(target string) (string, string, error) {
		res, err := pathnorm.Normalize(target, opts)
		return res.Path, res.RawQuery, err
	}, nil
}

// openIngress builds the front for external clients: the configured
// certificates by SNI, trusted proxies, and the domain-fronting check.
func (g *Gateway) openIngress() error {
	certs := g.opts.Certs
	if certs == nil {
		store, err := openCertStore(g.cfg, listener.CertStoreOptions{OnReload: func(file string, err error) {
			g.metrics.CertReload("ingress", err)
			if err != nil {
				g.log.Error("certificate changed but could not be loaded; keeping the previous one", "file", file, "err", err)
			} else {
				g.log.Info("certificate reloaded", "file", file)
			}
		}})
		if err != nil {
			return err
		}
		g.certStore, certs = store, store
	}
	var misdirected func(sni, host string) bool
	if m, ok := certs.(interface{ Misdirected(sni, host string) bool }); ok {
		misdirected = m.Misdirected
	}
	ex := g.newExchange("ingress")
	g.handler = ingress.New(ingress.Options{Front: ex}, &ingress.Snapshot{Router: ingress.NewRouter(nil)})
	return g.openFront(&front{frontConfig: g.frontConfig("ingress"), ex: ex, handler: ingressHandler{g.handler},
		trustsProxies: true, misdirected: misdirected}, frontSpec{certs: certs})
}

// openCertStore reads the ingress certificates: what New serves, and what
// Check reads.
func openCertStore(cfg *config.Gateway, opts listener.CertStoreOptions) (*listener.CertStore, error) {
	in := cfg.Ingress
	files := make([]listener.CertFile, len(in.TLS.Certificates))
	for i, c := range in.TLS.Certificates {
		files[i] = listener.CertFile{Cert: c.Cert, Key: c.Key}
	}
	store, err := listener.NewCertStore(files, opts)
	if err != nil {
		return nil, config.Errors{cfg.ErrorFor("ingress.tls.certificates", err)}
	}
	return store, nil
}

// Start binds the listeners and starts watching policy files.
func (g *Gateway) Start() error {
	if err := g.startFronts(); err != nil {
		return err
	}
	if err := g.admin.Start(); err != nil {
		return &ListenError{Field: "admin.listen", Addr: g.cfg.Admin.Listen, Err: err}
	}
	g.policies.start()
	g.watchConfig()
	g.rotationDone = make(chan struct{})
	go g.watchRotation()
	attrs := []any{"version", cmp.Or(g.opts.Version, "dev"), "admin", g.admin.Addr(), "spiffeID", g.src.Status().ID.String(), "routes", len(g.live.Load().router.Routes())}
	for _, f := range g.fronts {
		attrs = append(attrs, f.name, f.server.Addr().String())
	}
	g.log.Info("gateway started", attrs...)
	return nil
}

// Config is the configuration in force: the gateway file as last reloaded,
// with the settings that wait for a restart as the gateway started.
func (g *Gateway) Config() *config.Gateway { return g.live.Load().cfg }

// IngressAddr is the bound ingress address (after Start).
func (g *Gateway) IngressAddr() net.Addr { return g.frontAddr("ingress") }

// AdminAddr is the bound admin address (after Start).
func (g *Gateway) AdminAddr() string { return g.admin.Addr() }

// Handler is the ingress handler (for benchmarks and tests).
func (g *Gateway) Handler() *ingress.Handler { return g.handler }

// Reload re-reads what can change without a restart: the gateway file (what
// of it applies live), certificates, policy and authentication documents,
// and reopens audit files (for logrotate). It is what SIGHUP does.
func (g *Gateway) Reload() error {
	var errs []error
	// Audit files first: logrotate's postrotate waits for nothing else, and
	// the certificate and policy reads below may wait a settle interval.
	if err := g.audit.Reopen(); err != nil {
		errs = append(errs, fmt.Errorf("audit files: %w", err))
	}
	if g.certStore != nil {
		if err := g.certStore.Reload(); err != nil {
			errs = append(errs, fmt.Errorf("certificates: %w", err))
		}
	}
	if err := g.reloadFile(); err != nil {
		errs = append(errs, fmt.Errorf("gateway file: %w", err))
	}
	if err := g.policies.reload(); err != nil {
		errs = append(errs, err)
	}
	if err := g.reloadSessionKeys(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// Drain turns readiness false, so that load balancers stop sending new
// requests, while every listener goes on serving. Shutdown drains too; call
// Drain first to give load balancers time to notice (shutdownDelay).
func (g *Gateway) Drain() {
	g.drainOnce.Do(func() { close(g.draining) })
}

// Shutdown stops accepting, lets in-flight requests finish until ctx is done, then
// closes everything. Readiness turns false first so load balancers stop sending.
func (g *Gateway) Shutdown(ctx context.Context) error {
	var err error
	g.closeOnce.Do(func() {
		g.Drain()
		if g.rotationDone != nil {
			defer func() { <-g.rotationDone }()
		}
		err = g.shutdownFronts(ctx)
		if g.admin != nil {
			actx, cancel := context.WithTimeout(context.Background(), time.Second)
			g.admin.Shutdown(actx)
			cancel()
		}
		g.closeParts()
	})
	return err
}

func (g *Gateway) closeParts() {
	if g.configWatch != nil {
		g.configWatch.Close()
	}
	if g.policies != nil {
		g.policies.close()
	}
	if g.egress != nil {
		g.egress.Close()
	}
	for _, c := range g.credentials {
		c.Close()
	}
	if l := g.live.Load(); l != nil {
		for _, t := range l.transports {
			t.CloseIdleConnections()
		}
	}
	g.retiredMu.Lock()
	for _, t := range g.retiredTransports {
		t.CloseIdleConnections()
	}
	g.retiredMu.Unlock()
	if g.certStore != nil {
		g.certStore.Close()
	}
	if g.keys != nil {
		g.keys.Close()
	}
	g.closeLogins()
	if g.audit != nil {
		if err := g.audit.Close(); err != nil {
			g.log.Warn("audit trail not closed cleanly", "err", err)
		}
	}
	if g.ownSource && g.src != nil {
		g.src.Close()
	}
}

// Summary is the one line `gateway check` prints for a valid configuration.
func Summary(cfg *config.Gateway) string {
	n := 0
	if cfg.Ingress != nil {
		n = len(cfg.Ingress.Routes)
	}
	egress := ""
	if cfg.Egress != nil {
		egress = ", egress"
	}
	return cfg.File + ": ok (" + count(n, "route") + egress + ", " + count(len(cfg.Policy.Files), "policy path") + ")"
}

// count is "1 route", "2 routes".
func count(n int, noun string) string {
	if n != 1 {
		noun += "s"
	}
	return strconv.Itoa(n) + " " + noun
}

type metricsAdapter struct{ m *telemetry.Metrics }

func (a metricsAdapter) ObserveRequest(front, route string, code int, d time.Duration) {
	a.m.ObserveRequest(front, route, code, d)
}

func (a metricsAdapter) UpstreamError(front, route string, kind audit.ErrorKind) {
	a.m.Route(front, route).UpstreamError(string(kind))
}
