package gateway

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"tollgate.dev/tollgate/internal/config"
	"tollgate.dev/tollgate/internal/ingress"
	"tollgate.dev/tollgate/internal/oidc"
	"tollgate.dev/tollgate/internal/policy"
	"tollgate.dev/tollgate/internal/request"
)

// policyWatcher loads the policy documents, compiles them as one set, swaps the
// ingress snapshot, and watches the files for changes. A set that fails to load
// is refused whole and the previous one keeps serving.
type policyWatcher struct {
	g       *Gateway
	mu      sync.Mutex // serializes reloads
	version string
	stamp   string
	stop    chan struct{}
	done    chan struct{}
	once    sync.Once
	started bool
}

func newPolicyWatcher(g *Gateway) (*policyWatcher, error) {
	w := &policyWatcher{g: g, stop: make(chan struct{}), done: make(chan struct{})}
	if len(g.cfg.Policy.Files) == 0 {
		g.log.Warn("no policy files configured: every routed request is allowed (Istio's default without AuthorizationPolicy)")
		return w, nil
	}
	w.stamp = stamp(g.cfg.Policy.Files)
	if err := w.load(); err != nil {
		return nil, err
	}
	return w, nil
}

// Compiled is everything compiled from one set of policy documents.
type Compiled struct {
	Version  string
	Policies *policy.Set
	Authn    *oidc.Authn
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
	if cfg.Ingress == nil {
		return nil
	}
	ws := []config.Workload{cfg.Ingress.Workload()}
	if m := cfg.Ingress.Mesh; m != nil {
		ws = append(ws, m.Workload())
	}
	return ws
}

// CompilePolicies loads and compiles the documents of paths with the gateway's
// settings. Every document must belong to a kind Tollgate knows. It is what
// `gateway check` and `gateway policy` run too.
//
// keys is the gateway's long-lived JWKS cache (nil: checking only, nothing is fetched).
func CompilePolicies(cfg *config.Gateway, paths []string, keys *oidc.KeyCache) (*Compiled, error) {
	set, err := config.LoadDocuments(paths)
	if err != nil {
		return nil, err
	}
	var errs config.Errors
	for _, d := range set.Documents {
		if !knownKind(d) {
			p := d.Position()
			errs = append(errs, config.Error{File: p.File, Line: p.Line, Col: p.Col,
				Msg: fmt.Sprintf("unknown document %s/%s (want AuthorizationPolicy or RequestAuthentication of security.istio.io/v1, v1beta1 or tollgate.dev/v1)", d.APIVersion, d.Kind)})
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
	if err := errs.Err(); err != nil {
		return nil, err
	}
	return &Compiled{Version: set.Version, Policies: ps, Authn: an}, nil
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

// load compiles the current files and swaps them in.
func (w *policyWatcher) load() error {
	g := w.g
	cfg := *g.cfg
	if cfg.Identity.TrustDomain == "" {
		cfg.Identity.TrustDomain = g.src.Status().ID.TrustDomain().Name()
	}
	c, err := CompilePolicies(&cfg, g.cfg.Policy.Files, g.keys)
	if err != nil {
		g.metrics.ConfigReload("policy", err)
		return err
	}
	in := g.cfg.Ingress.Workload()
	snap := *g.handler.Snapshot()
	inEngine, inAuthn := c.Policies.EngineFor(in), c.Authn.ForWorkload(in)
	snap.Authorize = authorizer{inEngine}
	snap.Authenticate = inAuthn
	g.handler.Swap(&snap)
	counts := []any{"version", c.Version, "policies", c.Policies.Len(),
		"ingressPolicies", inEngine.Len(), "ingressJWTRules", inAuthn.Len()}
	if mh := g.meshHandler; mh != nil {
		mesh := g.cfg.Ingress.Mesh.Workload()
		ms := *mh.Snapshot()
		meshEngine, meshAuthn := c.Policies.EngineFor(mesh), c.Authn.ForWorkload(mesh)
		counts = append(counts, "meshPolicies", meshEngine.Len(), "meshJWTRules", meshAuthn.Len())
		ms.Authorize = authorizer{meshEngine}
		ms.Authenticate = meshAuthn
		mh.Swap(&ms)
	}
	g.metrics.ConfigReload("policy", nil)
	if w.version != c.Version {
		g.log.Info("policy set in force", counts...)
		for _, u := range c.Unselected(g.cfg) {
			g.log.Warn("document applies to no listener (check its namespace and selector)", "document", u)
		}
	}
	w.version = c.Version
	return nil
}

func (w *policyWatcher) reload() error {
	if len(w.g.cfg.Policy.Files) == 0 {
		return nil
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if err := w.load(); err != nil {
		w.g.log.Error("policy reload refused; the previous policy set keeps serving", "version", w.version, "err", err)
		return fmt.Errorf("policy: %w", err)
	}
	return nil
}

func (w *policyWatcher) ready() error {
	if len(w.g.cfg.Policy.Files) > 0 && w.version == "" {
		return errors.New("no policy set loaded")
	}
	return nil
}

// start polls the policy files; a change of any name, size or time reloads.
func (w *policyWatcher) start() {
	if len(w.g.cfg.Policy.Files) == 0 {
		return
	}
	w.started = true
	go func() {
		defer close(w.done)
		t := time.NewTicker(w.g.cfg.Policy.PollInterval)
		defer t.Stop()
		pending := w.stamp
		for {
			select {
			case <-w.stop:
				return
			case <-t.C:
				// Reload only once a change has held still for one poll: a file caught
				// half-written (truncated, then filled) would otherwise be compiled, and
				// an empty policy set allows everything.
				s := stamp(w.g.cfg.Policy.Files)
				w.mu.Lock()
				settled := s == pending && s != w.stamp
				pending = s
				w.mu.Unlock()
				if settled {
					w.mu.Lock()
					w.stamp = s
					w.mu.Unlock()
					w.reload()
				}
			}
		}
	}()
}

func (w *policyWatcher) close() {
	w.once.Do(func() {
		close(w.stop)
		if w.started {
			<-w.done
		}
	})
}

// stamp summarizes names, sizes and modification times of the policy files.
func stamp(paths []string) string {
	var b strings.Builder
	for _, p := range paths {
		filepath.WalkDir(p, func(path string, d fs.DirEntry, err error) error {
			if err != nil {
				fmt.Fprintf(&b, "%s!%v\n", path, err)
				return nil
			}
			if fi, err := os.Stat(path); err == nil && !fi.IsDir() {
				fmt.Fprintf(&b, "%s %d %d\n", path, fi.Size(), fi.ModTime().UnixNano())
			}
			return nil
		})
	}
	return b.String()
}

// authorizer adapts a policy engine to the ingress.
type authorizer struct{ e *policy.Engine }

func (a authorizer) Authorize(r *request.Request) *request.Decision {
	d := a.e.Decide(r)
	return &d
}

// UsesQuery lets the ingress skip decoding queries no policy reads.
func (a authorizer) UsesQuery() bool { return a.e.UsesQuery() }

var _ ingress.Authorizer = authorizer{}
