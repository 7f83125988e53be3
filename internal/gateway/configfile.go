package gateway

import (
	"context"
	"fmt"
	"slices"

	"tollgate.dev/tollgate/internal/config"
	"tollgate.dev/tollgate/internal/filewatch"
)

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
