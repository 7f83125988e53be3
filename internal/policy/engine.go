package policy

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"

	"tollgate.dev/tollgate/internal/config"
	"tollgate.dev/tollgate/internal/request"
)

// Set is a compiled, immutable policy set. It is safe for concurrent use.
type Set struct {
	version  string
	opts     Options
	policies []*policy

	mu      sync.Mutex
	engines map[string]*Engine
}

// Compile validates and compiles every AuthorizationPolicy among docs (other
// kinds are ignored; see Owns) into a Set. All problems of all documents are
// returned at once as config.Errors, sorted, each "file:line:col: field: problem".
func Compile(docs []config.Document, version string, opts Options) (*Set, error) {
	opts = opts.withDefaults()
	s := &Set{version: version, opts: opts, engines: map[string]*Engine{}}
	var errs config.Errors
	seen := map[string]config.Position{}
	for _, doc := range docs {
		if !Owns(doc) {
			continue
		}
		d := config.NewDecoder(doc.File)
		p := loadPolicy(doc, d, opts)
		if prev, dup := seen[p.ref]; dup && p.name != "" {
			d.Errorf("metadata.name", "duplicate policy %s (also at %s:%d)", p.ref, prev.File, prev.Line)
		}
		seen[p.ref] = d.Pos("metadata.name")
		if len(d.Errs) > 0 {
			errs = append(errs, d.Errs...)
			continue
		}
		s.policies = append(s.policies, p)
	}
	if err := errs.Err(); err != nil {
		return nil, err
	}
	return s, nil
}

// Version is the content version every decision of this set carries.
func (s *Set) Version() string { return s.version }

// Len is the number of policies in the set.
func (s *Set) Len() int { return len(s.policies) }

// Engine returns the engine for a listener of no namespace with the given
// labels; see EngineFor.
func (s *Set) Engine(labels map[string]string) *Engine {
	return s.EngineFor(config.Workload{Labels: labels})
}

// EngineFor returns the engine for a listener: the policies that apply to w as
// Istio chooses them for a workload (config.Workload.Selects, with the set's root
// namespace). Engines are built once per namespace and label set, and cached.
func (s *Set) EngineFor(w config.Workload) *Engine {
	var b strings.Builder
	b.WriteString(w.Namespace + "\x00")
	for _, k := range slices.Sorted(maps.Keys(w.Labels)) {
		b.WriteString(k + "\x00" + w.Labels[k] + "\x00")
	}
	key := b.String()
	s.mu.Lock()
	defer s.mu.Unlock()
	if e := s.engines[key]; e != nil {
		return e
	}
	e := s.build(func(p *policy) bool { return w.Selects(s.opts.RootNamespace, p.namespace, p.selector) })
	s.engines[key] = e
	return e
}

// Unselected lists the policies that apply to none of ws, each as
// "file:line: namespace/name", in load order: a policy there changes no
// decision, which is worth a warning (a namespace or selector that names no
// listener, perhaps by mistake).
func (s *Set) Unselected(ws ...config.Workload) []string {
	var out []string
	for _, p := range s.policies {
		if !slices.ContainsFunc(ws, func(w config.Workload) bool { return w.Selects(s.opts.RootNamespace, p.namespace, p.selector) }) {
			out = append(out, fmt.Sprintf("%s:%d: AuthorizationPolicy %s", p.pos.File, p.pos.Line, p.ref))
		}
	}
	return out
}

// EngineAllPolicies returns an engine that applies every policy regardless of its
// selector: what `gateway policy eval` uses without a gateway configuration.
func (s *Set) EngineAllPolicies() *Engine {
	return s.build(func(*policy) bool { return true })
}

// group is the rules of one action class, indexed for HTTP and for TCP.
type group struct {
	http, tcp *ruleIndex
}

func (g *group) first(c *evalCtx, tcp, linear bool) *rule {
	x := g.http
	if tcp {
		x = g.tcp
	}
	if linear {
		return linearFirst(x.rules, c)
	}
	return x.first(c)
}

// Engine decides requests for one listener. It is immutable and safe for
// concurrent use.
type Engine struct {
	version                     string
	deny, allow, audit          group
	dryDeny, dryAllow, dryAudit group
	hasAllow, hasDryAllow       bool
	linear                      bool
	// usesQuery: some rule has a request.query[...] condition, so callers must
	// fill request.Request.Query (decoding a query is work the others skip).
	usesQuery bool
	policies  int // how many policies apply
}

// Len is the number of policies the engine applies.
func (e *Engine) Len() int { return e.policies }

// UsesQuery reports whether any applicable rule reads request.query[...]: only then
// does the caller need to decode the query into request.Request.Query.
func (e *Engine) UsesQuery() bool { return e.usesQuery }

func (s *Set) build(applies func(*policy) bool) *Engine {
	e := &Engine{version: s.version}
	var rules [6][2][]*rule
	add := func(i int, p *policy) {
		rules[i][0] = append(rules[i][0], p.http...)
		for _, r := range p.tcp {
			if r != nil {
				rules[i][1] = append(rules[i][1], r)
			}
		}
	}
	for _, p := range s.policies {
		if !applies(p) {
			continue
		}
		e.policies++
		switch {
		case p.action == Deny && !p.dryRun:
			add(0, p)
		case p.action == Allow && !p.dryRun:
			add(1, p)
			e.hasAllow = true
		case p.action == Audit && !p.dryRun:
			add(2, p)
		case p.action == Audit:
			add(5, p)
		case p.action == Deny:
			add(3, p)
		default:
			add(4, p)
			e.hasDryAllow = true
		}
	}
	for i := range rules {
		for _, rs := range rules[i] {
			for _, r := range rs {
				e.usesQuery = e.usesQuery || r.readsQuery()
			}
		}
	}
	for i, g := range []*group{&e.deny, &e.allow, &e.audit, &e.dryDeny, &e.dryAllow, &e.dryAudit} {
		g.http, g.tcp = newRuleIndex(rules[i][0]), newRuleIndex(rules[i][1])
	}
	return e
}

// Linear returns an engine that decides exactly as e does but tries every rule
// in order: the reference the index is tested against.
func (e *Engine) Linear() *Engine {
	l := *e
	l.linear = true
	return &l
}

// Decide judges r: DENY policies first, then ALLOW (no applicable ALLOW policy
// means allow; ALLOW policies without a match mean deny). AUDIT policies only
// mark the record; dry-run policies only add shadow records. Traffic with
// Protocol TCP is judged by the TCP form of each rule (reference §10).
func (e *Engine) Decide(r *request.Request) Decision {
	c := newCtx(r)
	tcp := r.Protocol == request.TCP
	var d Decision
	if m := e.deny.first(&c, tcp, e.linear); m != nil {
		d = ruleDecision(m, e.version)
	} else if !e.hasAllow {
		d = Decision{Allow: true, Rule: request.NoRule, PolicyVersion: e.version, Reason: ReasonNoAllowPolicy}
	} else if m := e.allow.first(&c, tcp, e.linear); m != nil {
		d = ruleDecision(m, e.version)
	} else {
		d = Decision{Rule: request.NoRule, PolicyVersion: e.version, Reason: ReasonNoAllowMatch}
	}
	if m := e.audit.first(&c, tcp, e.linear); m != nil {
		d.Audit, d.AuditPolicy = true, m.policy.ref
	}
	if m := e.dryAudit.first(&c, tcp, e.linear); m != nil {
		d.Shadow = append(d.Shadow, ruleDecision(m, e.version))
	}
	if m := e.dryDeny.first(&c, tcp, e.linear); m != nil {
		d.Shadow = append(d.Shadow, ruleDecision(m, e.version))
	}
	if e.hasDryAllow {
		if m := e.dryAllow.first(&c, tcp, e.linear); m != nil {
			d.Shadow = append(d.Shadow, ruleDecision(m, e.version))
		} else {
			d.Shadow = append(d.Shadow, Decision{Rule: request.NoRule, DryRun: true, PolicyVersion: e.version, Reason: reasonDryNoMatch})
		}
	}
	return d
}

func (r *rule) readsQuery() bool {
	has := func(ms []matcher) bool {
		for _, m := range ms {
			if m.attr == aQuery {
				return true
			}
		}
		return false
	}
	for _, ms := range r.from {
		if has(ms) {
			return true
		}
	}
	for _, ms := range r.to {
		if has(ms) {
			return true
		}
	}
	return has(r.when)
}
