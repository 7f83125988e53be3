package gateway

import (
	"context"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"time"

	"tollgate.dev/tollgate/internal/config"
	"tollgate.dev/tollgate/internal/egress"
	"tollgate.dev/tollgate/internal/exchange"
	"tollgate.dev/tollgate/internal/filewatch"
	"tollgate.dev/tollgate/internal/identity"
	"tollgate.dev/tollgate/internal/ingress"
	"tollgate.dev/tollgate/internal/listener"
	"tollgate.dev/tollgate/internal/oidc"
)

// liveSet is the part of the gateway file in force: the configuration with
// what needs a restart kept as it started, and what was built from it. A
// reload of the gateway file builds a new one and swaps it into every front
// together with the policies compiled for it (policyWatcher.mu), so a request
// is routed, normalized, judged and forwarded by one of them from start to end.
type liveSet struct {
	cfg    *config.Gateway
	router *ingress.Router
	// ingressNorm and egressNorm are nil without their section.
	ingressNorm ingress.Normalizer
	egressNorm  egress.Normalizer
	// logins binds the routes to the browser logins of loginList, one per
	// provider of cfg's oidc section (loginsByName).
	logins       *ingress.Logins
	loginList    []*oidc.Login
	loginsByName map[string]runningLogin
	// startedLogins are the logins this set started (not kept from the
	// set before it): closed if it does not go in force. setKeys gives the
	// kept ones the set's session keys, once it is in force.
	startedLogins []*oidc.Login
	setKeys       func()
	// routes keys each route's transport by what it was built from, so a
	// reload that leaves an upstream as it was keeps its pooled connections.
	transports map[upstreamKey]*rotatingTransport
}

// compiledLive is what compileLive makes of a configuration, without
// building transports or touching anything running: what Check runs too.
type compiledLive struct {
	upstreams               []upstream
	ingressNorm, egressNorm ingress.Normalizer
}

// compileLive compiles the routes and the normalizers of cfg, reporting every
// problem at once.
func compileLive(cfg *config.Gateway) (*compiledLive, error) {
	var errs config.Errors
	add := func(err error) {
		if es, ok := config.AsErrors(err); ok {
			errs = append(errs, es...)
		} else if err != nil {
			errs = append(errs, config.Error{File: cfg.File, Msg: err.Error()})
		}
	}
	out := &compiledLive{}
	var err error
	if in := cfg.Ingress; in != nil {
		out.upstreams, err = compileUpstreams(cfg)
		add(err)
		out.ingressNorm, err = normalizer(cfg, "ingress.normalization", in.Normalization)
		add(err)
	}
	if e := cfg.Egress; e != nil {
		out.egressNorm, err = normalizer(cfg, "egress.normalization", e.Normalization)
		add(err)
	}
	if err := errs.Err(); err != nil {
		return nil, err
	}
	return out, nil
}

// upstreamKey is everything a route's transport is built from.
type upstreamKey struct {
	url, spiffeIDs, serverName string
	timeout, dial              time.Duration
}

// buildLive builds the live set of cfg. Transports of prev whose upstream is
// unchanged are kept, and so are logins whose provider's settings are; what
// it starts, the caller stops with discard if the set does not go in force.
func (g *Gateway) buildLive(cfg *config.Gateway, prev *liveSet) (l *liveSet, err error) {
	c, err := compileLive(cfg)
	if err != nil {
		return nil, err
	}
	l = &liveSet{cfg: cfg, ingressNorm: c.ingressNorm, transports: map[upstreamKey]*rotatingTransport{}}
	var prevLogins map[string]runningLogin
	if prev != nil {
		prevLogins = prev.loginsByName
	}
	if cfg.Ingress != nil {
		l.loginsByName, l.loginList, l.startedLogins, l.setKeys, err = g.startLogins(cfg, prevLogins)
		if err != nil {
			return nil, err
		}
		defer func() {
			if err != nil {
				closeAll(l.startedLogins, g.log)
			}
		}()
	}
	if c.egressNorm != nil {
		l.egressNorm = egress.Normalizer(c.egressNorm)
	}
	in := cfg.Ingress
	if in == nil {
		// An egress-only gateway: no routes.
		l.router = ingress.NewRouter(nil)
		return l, nil
	}
	byRoute := map[string]*oidc.Login{}
	var errs config.Errors
	routes := make([]*ingress.Route, len(in.Routes))
	for i, rc := range in.Routes {
		if rc.Login != "" {
			login := l.loginsByName[rc.Login].login
			if login == nil {
				// Validation ties every login to a provider of the file:
				// unreachable, but fail closed: a route must never serve
				// without its login.
				errs = append(errs, cfg.ErrorAt(fmt.Sprintf("ingress.routes[%d].login", i),
					fmt.Sprintf("no OIDC provider %q", rc.Login)))
				continue
			}
			byRoute[rc.Name] = login
		}
		up := c.upstreams[i]
		key := upstreamKey{url: up.url.String(), spiffeIDs: strings.Join(rc.Upstream.SPIFFEIDs, "\x00"),
			serverName: rc.Upstream.ServerName, timeout: rc.Upstream.Timeout, dial: in.Timeouts.Dial}
		t := l.transports[key]
		if t == nil && prev != nil {
			t = prev.transports[key]
		}
		if t == nil {
			tlsCfg := identity.ClientTLSConfig(g.src, up.allowed, identity.ClientOptions{ServerName: rc.Upstream.ServerName})
			t = newRotatingTransport(ingress.NewTransport(ingress.TransportOptions{
				TLS: tlsCfg, DialTimeout: in.Timeouts.Dial, ResponseHeaderTimeout: rc.Upstream.Timeout,
			}))
		}
		l.transports[key] = t
		routes[i] = &ingress.Route{
			Name: rc.Name, Host: rc.Host, PathPrefix: rc.PathPrefix, Upstream: up.url,
			UpstreamIDs: up.allowed.String(), Transport: t,
		}
	}
	if err := errs.Err(); err != nil {
		return nil, err
	}
	l.router = ingress.NewRouter(routes)
	if len(l.loginList) > 0 {
		l.logins = ingress.NewLogins(byRoute, l.loginList)
	}
	return l, nil
}

// discard stops what l started, when l does not go in force.
func (g *Gateway) discard(l, cur *liveSet) {
	g.retire(l, cur)
	closeAll(l.startedLogins, g.log)
}

// retire closes the pooled connections of transports prev has and next does
// not, once they are idle: requests in flight on them finish first, and a
// second pass after retireGrace closes what they returned to the pool. The
// retired transports stay under the SVID rotation's watch (eachRotating),
// so a long request still on one is cut at its SVID's NotAfter like any
// other; the last maxRetired are kept.
func (g *Gateway) retire(prev, next *liveSet) {
	for k, t := range prev.transports {
		if next != nil && next.transports[k] == t {
			continue
		}
		t.CloseIdleConnections()
		time.AfterFunc(retireGrace, t.CloseIdleConnections)
		g.retiredMu.Lock()
		g.retiredTransports = append(g.retiredTransports, t)
		if n := len(g.retiredTransports); n > maxRetired {
			g.retiredTransports = slices.Delete(g.retiredTransports, 0, n-maxRetired)
		}
		g.retiredMu.Unlock()
	}
}

// maxRetired bounds the retired transports kept under the rotation's watch.
const maxRetired = 256

// retireGrace is how long a retired transport's connections may stay in use
// before the second pass closes them once idle.
const retireGrace = 30 * time.Second

// restartField is one setting of the gateway file that changed but applies
// only at the next start.
type restartField struct {
	path string
	// get returns the field's value in cfg; set writes v into cfg.
	get func(c *config.Gateway) any
	set func(c *config.Gateway, v any)
}

// restartFields are the settings a running gateway cannot change: its
// listeners (address, TLS, timeouts, who may call), its identity source,
// and egress credentials and resolvers; the limits a listener can't change
// are found by keepFixedLimits, and the audit journal's settings by
// reloadAudit. Everything else (routes, upstreams, their SPIFFE IDs and
// timeouts, normalization, trusted proxies, header rules, limits, listener
// labels and namespaces, audit sinks, OIDC providers and sessions, policy
// settings, trust domain aliases, the shutdown timings) applies live.
var restartFields = []restartField{
	field("identity.trustDomain", func(c *config.Gateway) *string { return &c.Identity.TrustDomain }),
	field("identity.workloadAPI", func(c *config.Gateway) **config.WorkloadAPI { return &c.Identity.WorkloadAPI }),
	field("identity.files", func(c *config.Gateway) **config.IdentityFiles { return &c.Identity.Files }),
	field("admin", func(c *config.Gateway) *config.Admin { return &c.Admin }),
	ingressField("ingress.listen", func(in *config.Ingress) *string { return &in.Listen }),
	ingressField("ingress.tls", func(in *config.Ingress) *config.ServerTLS { return &in.TLS }),
	ingressField("ingress.timeouts.readHeader", func(in *config.Ingress) *time.Duration { return &in.Timeouts.ReadHeader }),
	ingressField("ingress.timeouts.read", func(in *config.Ingress) *time.Duration { return &in.Timeouts.Read }),
	ingressField("ingress.timeouts.write", func(in *config.Ingress) *time.Duration { return &in.Timeouts.Write }),
	ingressField("ingress.timeouts.idle", func(in *config.Ingress) *time.Duration { return &in.Timeouts.Idle }),
	ingressField("ingress.mesh", func(in *config.Ingress) **config.MeshListener { return &in.Mesh }),
	egressField("egress.listen", func(e *config.Egress) *string { return &e.Listen }),
	egressField("egress.allowedCallers", func(e *config.Egress) *[]string { return &e.AllowedCallers }),
	egressField("egress.timeouts", func(e *config.Egress) *config.Timeouts { return &e.Timeouts }),
	egressField("egress.allowCIDRs", func(e *config.Egress) *[]string { return &e.AllowCIDRs }),
	egressField("egress.credentials", func(e *config.Egress) *[]config.EgressCredential { return &e.Credentials }),
	egressField("egress.outboundTrafficPolicy", func(e *config.Egress) *config.OutboundTrafficPolicy { return &e.OutboundTrafficPolicy }),
	egressField("egress.resolvers", func(e *config.Egress) *[]string { return &e.Resolvers }),
	egressField("egress.resolverTimeout", func(e *config.Egress) *time.Duration { return &e.ResolverTimeout }),
	egressField("egress.auditQueryValues", func(e *config.Egress) *[]string { return &e.AuditQueryValues }),
}

func field[T any](path string, at func(*config.Gateway) *T) restartField {
	return restartField{path: path,
		get: func(c *config.Gateway) any { return *at(c) },
		set: func(c *config.Gateway, v any) { *at(c) = v.(T) },
	}
}

// ingressField and egressField are fields of a section that both files
// have (a section added or removed is a restart of its own).
func ingressField[T any](path string, at func(*config.Ingress) *T) restartField {
	return restartField{path: path,
		get: func(c *config.Gateway) any {
			if c.Ingress == nil {
				return nil
			}
			return *at(c.Ingress)
		},
		set: func(c *config.Gateway, v any) { *at(c.Ingress) = v.(T) },
	}
}

func egressField[T any](path string, at func(*config.Egress) *T) restartField {
	return restartField{path: path,
		get: func(c *config.Gateway) any {
			if c.Egress == nil {
				return nil
			}
			return *at(c.Egress)
		},
		set: func(c *config.Gateway, v any) { *at(c.Egress) = v.(T) },
	}
}

// frontLimits are the limits of the front named name under cfg.
func frontLimits(cfg *config.Gateway, name string) listener.Limits {
	for _, fc := range configuredFronts(cfg) {
		if fc.name == name {
			l := fc.limits
			return listener.Limits{MaxHeaderBytes: l.MaxHeaderBytes, MaxHeaderCount: l.MaxHeaderCount,
				MaxConnections: l.MaxConnections, MaxConnectionsPerSource: l.MaxConnectionsPerSource}
		}
	}
	return listener.Limits{}
}

// keepFixedLimits keeps at cur's value, in cand, the limits a running
// listener can't change (listener.Server.NotApplicable), and returns their
// fields for the restart list.
func (g *Gateway) keepFixedLimits(cur, cand *config.Gateway) []string {
	var restart []string
	for _, f := range g.fronts {
		if f.server == nil {
			continue
		}
		var section string
		var was, now *config.Limits
		switch f.name {
		case "ingress":
			section, was, now = "ingress", &cur.Ingress.Limits, &cand.Ingress.Limits
		case "egress":
			section, was, now = "egress", &cur.Egress.Limits, &cand.Egress.Limits
		default:
			continue // the mesh listener shares the ingress's limits
		}
		for _, field := range f.server.NotApplicable(frontLimits(cand, f.name)) {
			switch field {
			case "MaxHeaderBytes":
				restart = append(restart, section+".limits.maxHeaderBytes")
				now.MaxHeaderBytes = was.MaxHeaderBytes
			case "MaxConnections":
				restart = append(restart, section+".limits.maxConnections")
				now.MaxConnections, now.MaxConnectionsPerSource = was.MaxConnections, was.MaxConnectionsPerSource
			}
		}
	}
	return restart
}

// setLimits puts cfg's limits in force on every listener.
func (g *Gateway) setLimits(cfg *config.Gateway) {
	for _, f := range g.fronts {
		if f.server != nil {
			f.server.SetLimits(frontLimits(cfg, f.name))
		}
	}
}

// liveConfig returns what of next can go in force over cur: next, with every
// restart field that differs kept at cur's value, and those fields' paths.
// next is not modified.
func liveConfig(cur, next *config.Gateway) (*config.Gateway, []string) {
	cand := *next
	var restart []string
	// A section added or removed is a listener started or stopped.
	if (cur.Ingress == nil) != (next.Ingress == nil) {
		restart = append(restart, "ingress")
		cand.Ingress = cur.Ingress
	} else if next.Ingress != nil {
		in := *next.Ingress
		cand.Ingress = &in
	}
	if (cur.Egress == nil) != (next.Egress == nil) {
		restart = append(restart, "egress")
		cand.Egress = cur.Egress
	} else if next.Egress != nil {
		e := *next.Egress
		cand.Egress = &e
	}
	for _, f := range restartFields {
		if was, now := f.get(cur), f.get(&cand); !reflect.DeepEqual(was, now) {
			restart = append(restart, f.path)
			f.set(&cand, was)
		}
	}
	return &cand, restart
}

// configReload is the outcome of one reload of the gateway file.
type configReload struct {
	// read: the file's content differs from the last content put in force.
	read bool
	// applied: a new live set went in force.
	applied bool
	// restart lists the fields that differ from the running gateway's but
	// apply only at the next start.
	restart []string
}

// configRead is how the gateway file is read: one file.
var configRead = filewatch.ReadOptions{MaxFileSize: 16 << 20}

// reloadFile is SIGHUP's reload of the gateway file (see syncConfig).
func (g *Gateway) reloadFile() error {
	if !g.fromFile() {
		return nil
	}
	return g.reportConfig(g.syncConfig(nil))
}

// parseFile parses src, the gateway file's content, with what replaces its
// settings from outside (Options.AdminListen).
func (g *Gateway) parseFile(src []byte) (*config.Gateway, error) {
	cfg, err := config.Parse(g.cfg.File, src)
	if err == nil && g.opts.AdminListen != "" {
		cfg.Admin.Listen = g.opts.AdminListen
	}
	return cfg, err
}

// fromFile reports whether the configuration was read from a file (not built
// in code, as dev mode's is).
func (g *Gateway) fromFile() bool { return g.cfg.File != "" && !g.opts.Built }

// noteConfigFile records the gateway file's content as in force when it
// holds the configuration New was given, so that a reload of an unchanged
// file waits for nothing (an unknown content is read until it settles).
func (g *Gateway) noteConfigFile() {
	if !g.fromFile() {
		return
	}
	snap, err := filewatch.Read([]string{g.cfg.File}, configRead)
	if err != nil {
		return
	}
	src, _ := snap.Data(g.cfg.File)
	if cfg, err := g.parseFile(src); err == nil && cfg.SameSettings(g.cfg) {
		g.cfgHash = snap.Hash
	}
}

// watchConfig reloads the gateway file whenever its content changes and
// settles (policy.pollInterval), as the policy files are: an edit, or the
// kubelet's swap of a mounted ConfigMap.
func (g *Gateway) watchConfig() {
	if !g.fromFile() {
		return
	}
	fw, err := filewatch.New([]string{g.cfg.File}, filewatch.Options{
		ReadOptions: configRead,
		Interval:    g.cfg.Policy.PollInterval,
		Settle:      policySettle(g.cfg),
		OnChange: func(snap *filewatch.Snapshot, err error) {
			// An error is reported by syncConfig, which reads again.
			g.reportConfig(g.syncConfig(snap))
		},
	})
	if err != nil {
		// Unreachable: one path, and an interval config checked.
		g.log.Error("the gateway file is not watched; SIGHUP still reloads it", "err", err)
		return
	}
	g.configWatch = fw
}

// syncConfig reads the gateway file and puts its content in force, as the
// policy watcher's sync does for policies, and under the same lock: content
// read later goes in force later, whoever read it, and content that may have
// been caught mid-write (it equals neither what is in force nor settled,
// content the watcher saw settle) is read again until it holds still.
func (g *Gateway) syncConfig(settled *filewatch.Snapshot) (configReload, error) {
	w := g.policies
	w.mu.Lock()
	var after func()
	defer func() {
		w.mu.Unlock()
		if after != nil {
			after()
		}
	}()
	paths := []string{g.cfg.File}
	snap, err := filewatch.Read(paths, configRead)
	if err != nil || (snap.Hash != g.cfgHash && (settled == nil || snap.Hash != settled.Hash)) {
		ctx, cancel := context.WithTimeout(w.ctx, settleRounds*w.settle)
		snap, err = filewatch.ReadSettled(ctx, paths, w.settle, configRead)
		cancel()
	}
	if err != nil {
		return configReload{}, readError(err)
	}
	if snap.Hash == g.cfgHash {
		return configReload{restart: g.restart}, nil
	}
	src, _ := snap.Data(g.cfg.File)
	res, after, err := g.reloadConfig(src)
	res.read = true
	if err == nil {
		g.cfgHash, g.restart = snap.Hash, res.restart
		// Under the lock: overlapping reloads leave the last one's count.
		g.metrics.SetRestartRequired(len(res.restart))
	}
	return res, err
}

// reloadConfig puts src, the gateway file's content, in force: what can
// change live, with the policies in force compiled again for it, all at
// once. A file that fails to load or compile changes nothing. The caller
// holds the policy watcher's mu, and runs after (when not nil) once it has
// released it.
func (g *Gateway) reloadConfig(src []byte) (res configReload, after func(), err error) {
	next, err := g.parseFile(src)
	if err != nil {
		return configReload{}, nil, err
	}
	// Whatever gateway check refuses changes nothing, the settings that
	// wait for a restart included: the next start would fail on them.
	if _, err := Check(next); err != nil {
		return configReload{}, nil, err
	}
	w := g.policies
	cur := g.live.Load()
	cand, restart := liveConfig(cur.cfg, next)
	restart = append(restart, g.keepFixedLimits(cur.cfg, cand)...)
	auditRestart, auditCommit, auditAbort, err := g.reloadAudit(cur.cfg, cand)
	if err != nil {
		return configReload{restart: restart}, nil, err
	}
	restart = append(restart, auditRestart...)
	res = configReload{restart: restart}
	if cur.cfg.SameSettings(cand) {
		return res, nil, nil
	}
	abort := func() {
		if auditAbort != nil {
			auditAbort()
		}
	}
	l, err := g.buildLive(cand, cur)
	if err != nil {
		abort()
		return res, nil, err
	}
	// The policies in force, compiled again for the new file; or, when it
	// names other policy files, those.
	retarget := !slices.Equal(cur.cfg.Policy.Files, cand.Policy.Files) || cur.cfg.Policy.PollInterval != cand.Policy.PollInterval
	var snap *filewatch.Snapshot
	if state := w.inForce.Load(); state != nil {
		snap = state.snap
	}
	if !slices.Equal(cur.cfg.Policy.Files, cand.Policy.Files) {
		if snap, err = w.readFor(cand); err != nil {
			abort()
			g.discard(l, cur)
			return res, nil, fmt.Errorf("policy: %w", err)
		}
	}
	var c *Compiled
	if snap != nil {
		c, err = w.compile(cand, snap)
		if err == nil {
			err = w.checkEmptied(cand, c)
		}
		if err != nil {
			abort()
			g.discard(l, cur)
			return res, nil, err
		}
	}
	w.install(c, snap, l)
	g.retire(cur, l)
	if l.setKeys != nil {
		l.setKeys()
	}
	if auditCommit != nil {
		auditCommit()
	}
	g.setLimits(cand)
	g.retireLogins(cur, l)
	if retarget {
		after = w.retarget(cand)
	}
	res.applied = true
	return res, after, nil
}

// reportConfig logs and counts the outcome of a reload of the gateway file,
// one log line per problem and per field that waits for a restart, and
// returns err.
func (g *Gateway) reportConfig(res configReload, err error) error {
	if err != nil {
		g.metrics.ConfigReload("gateway", err)
		msg := "gateway file reload refused; the configuration in force keeps serving"
		if es, ok := config.AsErrors(err); ok {
			for _, e := range es {
				g.log.Error(msg, "problem", e.Error())
			}
		} else {
			g.log.Error(msg, "err", err)
		}
		return err
	}
	if !res.read {
		return nil
	}
	g.metrics.ConfigReload("gateway", nil)
	if res.applied {
		g.log.Info("gateway configuration in force", "file", g.cfg.File, "routes", len(g.live.Load().router.Routes()))
	}
	for _, f := range res.restart {
		g.log.Warn("restart required: this changed setting applies at the next start; the rest of the file is in force", "field", f)
	}
	return nil
}

// rules are f's header and host rules under cfg.
func (f *front) rules(cfg *config.Gateway) *exchange.Rules {
	r := &exchange.Rules{Misdirected: f.misdirected}
	if e := cfg.Egress; f.name == "egress" && e != nil {
		r.Underscores = underscoreAction(e.HeadersWithUnderscores)
		return r
	}
	if in := cfg.Ingress; in != nil {
		r.Underscores = underscoreAction(in.HeadersWithUnderscores)
		if f.trustsProxies {
			r.TrustedProxies = config.ParsePrefixes(in.TrustedProxies)
		}
		if in.MisdirectedRequests == "ALLOW" {
			r.Misdirected = nil
		}
	}
	return r
}
