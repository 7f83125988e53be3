package gateway

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"tollgate.dev/tollgate/internal/config"
	"tollgate.dev/tollgate/internal/egress"
	"tollgate.dev/tollgate/internal/filewatch"
	"tollgate.dev/tollgate/internal/ingress"
	"tollgate.dev/tollgate/internal/oidc"
	"tollgate.dev/tollgate/internal/policy"
	"tollgate.dev/tollgate/internal/request"
	"tollgate.dev/tollgate/internal/telemetry"
)

// policyWatcher keeps the policy set in force: it reads the policy files,
// compiles them as one set, swaps every listener's snapshot, and watches the
// files for changes. A set that fails to read or compile is refused whole, and
// so is one that would stop enforcing what the set in force enforces (see
// checkEmptied); the previous set keeps serving.
//
// Every read goes through filewatch, and what is compiled is the bytes that
// were hashed, never the files read again. Content is put in force only once it
// has settled (the same hash on two reads a settle interval apart) or when it
// equals content that already has: a file caught mid-write (truncated, half
// written) is never compiled into the set in force.
type policyWatcher struct {
	g *Gateway
	// paths, settle and interval are policy.files and the settle and poll
	// intervals in force; mu guards them (a reload of the gateway file
	// retargets the watcher).
	paths            []string
	settle, interval time.Duration

	// mu serializes reads and swaps, the poller's and SIGHUP's alike: content
	// read later goes in force later, so a slow reader cannot put back an
	// older set over a newer one.
	mu sync.Mutex
	// failed: the last reload attempt was refused (the metric says 0).
	failed bool
	// inForce is the set serving now; nil until one loads. Readiness reads it
	// without mu.
	inForce atomic.Pointer[policyState]

	// ctx ends at close, so a settle wait in progress gives up.
	ctx     context.Context
	cancel  context.CancelFunc
	watcher *filewatch.Watcher
	once    sync.Once
}

// policyState is a compiled set and the files it came from.
type policyState struct {
	compiled *Compiled
	snap     *filewatch.Snapshot
}

// ErrPolicySetEmptied is the cause of a reload refused because the new set
// would leave a listener with no policies, or with no ALLOW or no DENY
// policies where the set in force has some (policy.allowEmpty unset).
var ErrPolicySetEmptied = errors.New("the new policy set would stop enforcing policies in force")

// policyRead is how policy files are read: a directory contributes its *.yaml
// and *.yml files, recursively, hidden entries skipped, as
// config.LoadDocuments reads them.
var policyRead = filewatch.ReadOptions{
	Dirs: true,
	Match: func(name string) bool {
		return strings.HasSuffix(name, ".yaml") || strings.HasSuffix(name, ".yml")
	},
	// Policies are kilobytes; a generated set of thousands of rules stays
	// well below this.
	MaxFileSize: 16 << 20,
}

// settleRounds bounds a settled read: files that still change after this many
// settle intervals are reported as unsettled, and the set in force stays.
const settleRounds = 10

// policySettle is how long policy files must hold still before their content
// counts: one poll interval, as before filewatch, but at most
// filewatch.DefaultSettle, so a slow poll does not slow SIGHUP.
func policySettle(cfg *config.Gateway) time.Duration {
	s := cfg.Policy.PollInterval
	if s <= 0 || s > filewatch.DefaultSettle {
		s = filewatch.DefaultSettle
	}
	return s
}

func newPolicyWatcher(g *Gateway) (*policyWatcher, error) {
	w := &policyWatcher{g: g, paths: g.cfg.Policy.Files, settle: policySettle(g.cfg), interval: g.cfg.Policy.PollInterval}
	w.ctx, w.cancel = context.WithCancel(context.Background())
	if len(w.paths) == 0 {
		g.log.Warn("no policy files configured: every routed request is allowed (Istio's default without AuthorizationPolicy)")
		return w, nil
	}
	if g.cfg.Policy.AllowEmpty {
		g.log.Warn("policy.allowEmpty is on: a reload that removes every policy of a listener, or all its ALLOW or DENY policies, goes into force")
	}
	// Startup waits for settled content too: a half-written file would
	// otherwise serve until the first poll.
	snap, err := w.readSettled()
	if err == nil {
		err = w.apply(snap, true)
	}
	if err != nil {
		w.cancel()
		return nil, err
	}
	for _, l := range configuredFronts(g.cfg) {
		if n := w.inForce.Load().compiled.Policies.CountFor(l.workload); n.Policies == 0 {
			g.log.Warn("no policy applies to this listener: every routed request is allowed (Istio's default without AuthorizationPolicy)", "listener", l.name)
		}
	}
	return w, nil
}

// Compiled is everything compiled from one set of policy documents.
type Compiled struct {
	Version  string
	Policies *policy.Set
	Authn    *oidc.Authn
	// Destinations are the egress destinations the ServiceEntry and
	// DestinationRule documents declare.
	Destinations *egress.Registry
}

// Unselected lists the documents (JWT rules, for RequestAuthentication) that
// apply to none of cfg's listeners, by namespace and selector: they change
// nothing, and a namespace or label set by mistake would otherwise go unseen.
func (c *Compiled) Unselected(cfg *config.Gateway) []string {
	ws := listenerWorkloads(cfg)
	return append(c.Policies.Unselected(ws...), c.Authn.Unselected(ws...)...)
}

// listenerWorkloads are the scopes documents are chosen by, one per listener.
func listenerWorkloads(cfg *config.Gateway) []config.Workload {
	var ws []config.Workload
	for _, l := range configuredFronts(cfg) {
		ws = append(ws, l.workload)
	}
	return ws
}

// CompilePolicies loads and compiles the documents of paths with the gateway's
// settings. Every document must belong to a kind Tollgate knows. It is what
// `gateway check` and `gateway policy` run too, and it reads the files as the
// running gateway does.
//
// keys is the gateway's long-lived JWKS cache (nil: checking only, nothing is fetched).
func CompilePolicies(cfg *config.Gateway, paths []string, keys *oidc.KeyCache) (*Compiled, error) {
	snap, err := filewatch.Read(paths, policyRead)
	if err != nil {
		return nil, readError(err)
	}
	return compileSnapshot(cfg, snap, keys)
}

// compileSnapshot compiles the documents of snap, read before: the bytes
// that were hashed are the bytes compiled.
func compileSnapshot(cfg *config.Gateway, snap *filewatch.Snapshot, keys *oidc.KeyCache) (*Compiled, error) {
	set, err := documentsOf(snap)
	if err != nil {
		return nil, err
	}
	var errs config.Errors
	for _, d := range set.Documents {
		if !knownKind(d) && !knownNetworking(d) {
			p := d.Position()
			errs = append(errs, config.Error{File: p.File, Line: p.Line, Col: p.Col,
				Msg: fmt.Sprintf("unknown document %s/%s (want AuthorizationPolicy or RequestAuthentication of security.istio.io/v1, v1beta1 or tollgate.dev/v1, or ServiceEntry or DestinationRule of networking.istio.io)", d.APIVersion, d.Kind)})
		}
	}
	ps, err := policy.Compile(set.Documents, set.Version, PolicyOptions(cfg))
	if es, ok := config.AsErrors(err); ok {
		errs = append(errs, es...)
	} else if err != nil {
		return nil, err
	}
	if keys == nil {
		// Checking only: a cache closed from the start, so compiling starts no
		// background fetch (check dials nothing).
		keys = oidc.NewKeyCache(oidc.KeyCacheOptions{})
		keys.Close()
	}
	an, err := oidc.CompileRequestAuthn(set.Documents, oidc.Options{Keys: keys, RootNamespace: cfg.Policy.RootNamespace})
	if es, ok := config.AsErrors(err); ok {
		errs = append(errs, es...)
	} else if err != nil {
		return nil, err
	}
	dests, err := egress.LoadDestinations(set.Documents)
	if es, ok := config.AsErrors(err); ok {
		errs = append(errs, es...)
	} else if err != nil {
		return nil, err
	}
	if dests.Len() > 0 && cfg.Egress == nil {
		for _, d := range set.Documents {
			if egress.Owns(d) {
				p := d.Position()
				errs = append(errs, config.Error{File: p.File, Line: p.Line, Col: p.Col,
					Msg: d.Kind + " declares an egress destination, but the gateway has no egress section"})
				break
			}
		}
	}
	if err := errs.Err(); err != nil {
		return nil, err
	}
	return &Compiled{Version: set.Version, Policies: ps, Authn: an, Destinations: dests}, nil
}

// documentsOf parses the documents of snap's files. Its version is the one
// config.LoadDocuments gives the same files (`gateway policy` names sets by
// it), so a decision's policy version reads the same everywhere.
func documentsOf(snap *filewatch.Snapshot) (*config.DocumentSet, error) {
	set := &config.DocumentSet{}
	var errs config.Errors
	h := sha256.New()
	for _, f := range snap.Files {
		set.Files = append(set.Files, f.Path)
		h.Write([]byte(f.Path))
		h.Write([]byte{0})
		h.Write(f.Data)
		h.Write([]byte{0})
		nodes, err := config.ParseDocuments(f.Path, f.Data)
		if es, ok := config.AsErrors(err); ok {
			errs = append(errs, es...)
		} else if err != nil {
			errs = append(errs, config.Error{File: f.Path, Msg: err.Error()})
		}
		for _, n := range nodes {
			doc, err := config.DocumentOf(f.Path, n)
			if err != nil {
				if es, ok := config.AsErrors(err); ok {
					errs = append(errs, es...)
				} else {
					errs = append(errs, config.Error{File: f.Path, Msg: err.Error()})
				}
				continue
			}
			set.Documents = append(set.Documents, doc)
		}
	}
	set.Version = hex.EncodeToString(h.Sum(nil))[:12]
	return set, errs.Err()
}

// readError gives a failed read the shape of a configuration error, naming
// the file.
func readError(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return config.Errors{{File: pe.Path, Msg: "cannot read: " + pe.Err.Error()}}
	}
	return err
}

// PolicyOptions are the mesh settings policies are compiled with.
func PolicyOptions(cfg *config.Gateway) policy.Options {
	td := cfg.Identity.TrustDomain
	return policy.Options{TrustDomain: td, TrustDomainAliases: cfg.Identity.TrustDomainAliases, RootNamespace: cfg.Policy.RootNamespace}
}

func knownKind(d config.Document) bool {
	switch d.APIVersion {
	case "security.istio.io/v1", "security.istio.io/v1beta1", "tollgate.dev/v1":
	default:
		return false
	}
	return d.Kind == "AuthorizationPolicy" || oidc.OwnsDocument(d)
}

// knownNetworking reports whether d is an Istio networking document the
// egress loads (ServiceEntry, DestinationRule).
func knownNetworking(d config.Document) bool {
	return strings.HasPrefix(d.APIVersion, "networking.istio.io/") && egress.Owns(d)
}

// readSettled reads the files once they have held still for a settle
// interval, for at most settleRounds of them.
func (w *policyWatcher) readSettled() (*filewatch.Snapshot, error) {
	ctx, cancel := context.WithTimeout(w.ctx, settleRounds*w.settle)
	defer cancel()
	snap, err := filewatch.ReadSettled(ctx, w.paths, w.settle, policyRead)
	if err != nil {
		return nil, readError(err)
	}
	return snap, nil
}

// sync reads the files and puts what they hold in force. settled, if not nil,
// is content the watcher saw settle. A read that equals the set in force
// changes nothing and compiles nothing (a SIGHUP sent to reopen audit files,
// or a touch); one that equals settled is taken at once; anything else may
// have been caught mid-write, so the files are read again until they settle.
func (w *policyWatcher) sync(settled *filewatch.Snapshot) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	cur := w.inForce.Load()
	snap, err := filewatch.Read(w.paths, policyRead)
	if err != nil || (snap.Hash != cur.snap.Hash && (settled == nil || snap.Hash != settled.Hash)) {
		snap, err = w.readSettled()
	}
	if err != nil {
		w.refused(err)
		return fmt.Errorf("policy: %w", err)
	}
	if snap.Hash == cur.snap.Hash {
		if w.failed {
			// The files hold the set in force again, after a refused change.
			w.failed = false
			w.g.metrics.ConfigReload("policy", nil)
			w.g.log.Info("policy files hold the set in force again", "version", cur.compiled.Version)
		}
		return nil
	}
	if err := w.apply(snap, false); err != nil {
		w.refused(err)
		return fmt.Errorf("policy: %w", err)
	}
	return nil
}

// refused reports a reload that keeps the previous set.
func (w *policyWatcher) refused(err error) {
	w.failed = true
	version := ""
	if cur := w.inForce.Load(); cur != nil {
		version = cur.compiled.Version
	}
	if errors.Is(err, ErrPolicySetEmptied) {
		w.g.metrics.ConfigReloadRefused("policy", telemetry.ResultRefusedEmpty)
		w.g.log.Warn("policy reload refused; the previous policy set keeps serving (set policy.allowEmpty: true to allow such a set)", "version", version, "err", err)
		return
	}
	w.g.metrics.ConfigReload("policy", err)
	w.g.log.Error("policy reload refused; the previous policy set keeps serving", "version", version, "err", err)
}

// apply compiles snap for the live set in force and swaps it in, unless it
// fails or (after startup) would stop enforcing what the set in force
// enforces; the caller reports an error. The caller holds mu, or is
// newPolicyWatcher.
func (w *policyWatcher) apply(snap *filewatch.Snapshot, startup bool) error {
	l := w.g.live.Load()
	c, err := w.compile(l.cfg, snap)
	if err == nil && !startup {
		err = w.checkEmptied(l.cfg, c)
	}
	if err != nil {
		return err
	}
	w.install(c, snap, l)
	return nil
}

// compile compiles the documents of snap with cfg's settings.
func (w *policyWatcher) compile(cfg *config.Gateway, snap *filewatch.Snapshot) (*Compiled, error) {
	c := *cfg
	if c.Identity.TrustDomain == "" {
		c.Identity.TrustDomain = w.g.src.Status().ID.TrustDomain().Name()
	}
	return compileSnapshot(&c, snap, w.g.keys)
}

// install swaps every front's snapshot to l and c at once (c nil: no
// policy files, nothing to authorize with), and records them as in force.
// The caller holds mu, or is newPolicyWatcher.
func (w *policyWatcher) install(c *Compiled, snap *filewatch.Snapshot, l *liveSet) {
	g := w.g
	var counts []any
	if c != nil {
		counts = []any{"version", c.Version, "policies", c.Policies.Len()}
	}
	for _, f := range g.fronts {
		counts = append(counts, f.handler.swap(c, l, f)...)
	}
	if c == nil {
		g.live.Store(l)
		return
	}
	// The policy set first: readiness reads both without the lock, and a
	// live set naming policy files with no set in force reads as not ready.
	prev := w.inForce.Swap(&policyState{compiled: c, snap: snap})
	g.live.Store(l)
	w.failed = false
	g.metrics.ConfigReload("policy", nil)
	if prev == nil || prev.compiled.Version != c.Version {
		g.log.Info("policy set in force", counts...)
		for _, u := range c.Unselected(l.cfg) {
			g.log.Warn("document applies to no listener (check its namespace and selector)", "document", u)
		}
	}
}

// checkEmptied refuses a new set that, for some listener, has no policies, no
// ALLOW or no DENY policies where the set in force has some: an emptied file,
// a deleted one in a policy directory, or a deploy caught halfway would
// otherwise widen access silently (no ALLOW policy allows everything that no
// DENY matches). policy.allowEmpty lets such a set in, with a warning.
//
// next is compiled for cfg; the set in force for the live set in force. A
// listener is compared with itself under each (its labels and namespace may
// have changed with cfg).
func (w *policyWatcher) checkEmptied(cfg *config.Gateway, next *Compiled) error {
	cur := w.inForce.Load()
	if cur == nil {
		return nil
	}
	var lost []string
	// The same listeners in the same order: they change only at a restart.
	before := configuredFronts(w.g.live.Load().cfg)
	for i, l := range configuredFronts(cfg) {
		old := before[i].workload
		// JWT rules too: without them a listener stops verifying tokens and
		// stops stripping client copies of its claim headers, so identity a
		// client injects would reach the upstream.
		if was, now := cur.compiled.Authn.ForWorkload(old).Len(), next.Authn.ForWorkload(l.workload).Len(); was > 0 && now == 0 {
			lost = append(lost, fmt.Sprintf("listener %s would have no JWT rules (has %d)", l.name, was))
		}
		was, now := cur.compiled.Policies.CountFor(old), next.Policies.CountFor(l.workload)
		switch {
		case was.Policies > 0 && now.Policies == 0:
			lost = append(lost, fmt.Sprintf("listener %s would have no policies (has %d)", l.name, was.Policies))
		default:
			if was.Allow > 0 && now.Allow == 0 {
				lost = append(lost, fmt.Sprintf("listener %s would have no ALLOW policies (has %d)", l.name, was.Allow))
			}
			if was.Deny > 0 && now.Deny == 0 {
				lost = append(lost, fmt.Sprintf("listener %s would have no DENY policies (has %d)", l.name, was.Deny))
			}
		}
	}
	if len(lost) == 0 {
		return nil
	}
	err := fmt.Errorf("%w: %s", ErrPolicySetEmptied, strings.Join(lost, "; "))
	if cfg.Policy.AllowEmpty {
		w.g.log.Warn("policy set goes into force although it removes policies in force (policy.allowEmpty)", "version", next.Version, "err", err)
		return nil
	}
	return err
}

// reload is SIGHUP's policy reload: see sync.
func (w *policyWatcher) reload() error {
	w.mu.Lock()
	none := len(w.paths) == 0
	w.mu.Unlock()
	if none {
		return nil
	}
	return w.sync(nil)
}

func (w *policyWatcher) ready() error {
	if len(w.g.live.Load().cfg.Policy.Files) > 0 && w.inForce.Load() == nil {
		return errors.New("no policy set loaded")
	}
	return nil
}

// readFor reads cfg's policy files, settled, for a reload of the gateway
// file that changed them; no files: an empty set. The caller holds mu.
func (w *policyWatcher) readFor(cfg *config.Gateway) (*filewatch.Snapshot, error) {
	if len(cfg.Policy.Files) == 0 {
		return &filewatch.Snapshot{}, nil
	}
	settle := policySettle(cfg)
	ctx, cancel := context.WithTimeout(w.ctx, settleRounds*settle)
	defer cancel()
	snap, err := filewatch.ReadSettled(ctx, cfg.Policy.Files, settle, policyRead)
	if err != nil {
		return nil, readError(err)
	}
	return snap, nil
}

// retarget points the watcher at cfg's policy files and intervals, and
// returns what the caller must run once it has released mu: closing the
// previous file watcher (which waits for its callback, which takes mu) and
// starting the new one. The caller holds mu.
func (w *policyWatcher) retarget(cfg *config.Gateway) (after func()) {
	w.paths, w.settle, w.interval = cfg.Policy.Files, policySettle(cfg), cfg.Policy.PollInterval
	old := w.watcher
	w.watcher = nil
	return func() {
		if old != nil {
			old.Close()
		}
		w.start()
	}
}

// start watches the policy files: every settled change is synced.
func (w *policyWatcher) start() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.paths) == 0 || w.ctx.Err() != nil || w.watcher != nil {
		return
	}
	fw, err := filewatch.New(w.paths, filewatch.Options{
		ReadOptions: policyRead,
		Interval:    w.interval,
		Settle:      w.settle,
		Initial:     w.inForce.Load().snap,
		OnChange: func(snap *filewatch.Snapshot, err error) {
			// An error is logged and counted by sync, which reads again.
			w.sync(snap)
		},
	})
	if err != nil {
		// Unreachable: paths, interval and settle were checked by config.
		w.g.log.Error("policy files are not watched; SIGHUP still reloads them", "err", err)
		return
	}
	w.watcher = fw
}

func (w *policyWatcher) close() {
	w.once.Do(func() {
		w.cancel()
		w.mu.Lock()
		fw := w.watcher
		w.mu.Unlock()
		if fw != nil {
			fw.Close()
		}
	})
}

// authorizer adapts a policy engine to the ingress.
type authorizer struct{ e *policy.Engine }

func (a authorizer) Authorize(r *request.Request) request.Decision { return a.e.Decide(r) }

// UsesQuery lets the ingress skip decoding queries no policy reads.
func (a authorizer) UsesQuery() bool { return a.e.UsesQuery() }

var _ ingress.Authorizer = authorizer{}
