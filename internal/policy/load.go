package policy

import (
	"fmt"
	"strconv"
	"strings"

	"tollgate.dev/tollgate/internal/config"
)

// Action is what a policy does when one of its rules matches.
type Action string

const (
	Allow Action = "ALLOW"
	Deny  Action = "DENY"
	Audit Action = "AUDIT"
)

// Options are the mesh settings a policy set is compiled with.
type Options struct {
	// TrustDomain is the local trust domain; "cluster.local" when empty, as in Istio.
	TrustDomain string
	// TrustDomainAliases are other trust domains treated as the local one.
	TrustDomainAliases []string
	// RootNamespace is the mesh config root namespace; "istio-system" when empty.
	// A policy here applies to listeners of every namespace; any other policy
	// only to listeners of its own namespace or of none (config.Workload).
	RootNamespace string
}

func (o Options) withDefaults() Options {
	if o.TrustDomain == "" {
		o.TrustDomain = "cluster.local"
	}
	if o.RootNamespace == "" {
		o.RootNamespace = "istio-system"
	}
	return o
}

// trustDomains is the local trust domain followed by its aliases.
func (o Options) trustDomains() []string {
	out := []string{o.TrustDomain}
	for _, a := range o.TrustDomainAliases {
		if a != "" && !contains(out, a) {
			out = append(out, a)
		}
	}
	return out
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// policy is one compiled AuthorizationPolicy.
type policy struct {
	namespace, name string
	ref             string // "namespace/name"
	action          Action
	dryRun          bool
	selector        map[string]string // nil: applies to every listener
	pos             config.Position
	// http and tcp hold one entry per rule; a nil tcp entry is a rule that cannot
	// match TCP traffic (an ALLOW rule with HTTP-only fields, reference §10).
	http []*rule
	tcp  []*rule
}

// rule is one compiled rule: (any from) AND (any to) AND (every when).
type rule struct {
	policy *policy
	index  int
	from   [][]matcher // nil: any source
	to     [][]matcher // nil: any operation
	when   []matcher
	reason string
}

func (r *rule) match(c *evalCtx) bool {
	if r.to != nil && !anyAll(r.to, c) {
		return false
	}
	for i := range r.when {
		if !r.when[i].eval(c) {
			return false
		}
	}
	return r.from == nil || anyAll(r.from, c)
}

// anyAll reports whether every matcher of some entry holds.
func anyAll(entries [][]matcher, c *evalCtx) bool {
next:
	for _, ms := range entries {
		for i := range ms {
			if !ms[i].eval(c) {
				continue next
			}
		}
		return true
	}
	return false
}

// loadPolicy decodes, validates and compiles one AuthorizationPolicy document.
// Problems are recorded in d; the result is nil if there were any.
func loadPolicy(doc config.Document, d *config.Decoder, opts Options) *policy {
	var ap apDoc
	d.Decode(doc.Node, "", &ap)
	ext := false
	switch ap.APIVersion {
	case APIVersionIstioV1, APIVersionIstioV1beta1:
	case APIVersionTollgateV1:
		ext = true
	default:
		d.Errorf("apiVersion", "unsupported apiVersion for AuthorizationPolicy (got %q, want %s, %s or %s)",
			ap.APIVersion, APIVersionIstioV1, APIVersionIstioV1beta1, APIVersionTollgateV1)
	}
	p := &policy{namespace: ap.Metadata.Namespace, name: ap.Metadata.Name, pos: doc.Position()}
	if p.name == "" {
		d.Errorf("metadata.name", "required")
	}
	if p.namespace == "" {
		p.namespace = "default"
	} else if err := config.CheckNamespace(p.namespace); err != nil {
		d.Errorf("metadata.namespace", "%v", err)
	}
	p.ref = p.namespace + "/" + p.name
	if v, ok := ap.Metadata.Annotations[DryRunAnnotation]; ok {
		b, err := strconv.ParseBool(v)
		if err != nil {
			d.Errorf("metadata.annotations."+DryRunAnnotation, `want "true" or "false" (got %q)`, v)
		}
		p.dryRun = b
	}
	spec := &ap.Spec
	switch Action(spec.Action) {
	case "", Allow:
		p.action = Allow
	case Deny, Audit:
		p.action = Action(spec.Action)
	case "CUSTOM":
		d.Errorf("spec.action", "CUSTOM is not supported: Tollgate has no external authorization provider, and ignoring the policy would drop its rules (use ALLOW or DENY)")
	default:
		d.Errorf("spec.action", "unknown action (got %q, want ALLOW, DENY or AUDIT)", spec.Action)
	}
	if spec.Provider != nil && spec.Action != "CUSTOM" {
		d.Errorf("spec.provider", "provider is only allowed with action CUSTOM")
	}
	if d.Has("spec.targetRef") || d.Has("spec.targetRefs") {
		field := "spec.targetRef"
		if d.Has("spec.targetRefs") {
			field = "spec.targetRefs"
		}
		if spec.Selector != nil {
			d.Errorf(field, "selector and targetRef(s) cannot both be set")
		} else {
			d.Errorf(field, "not supported: Tollgate listeners are chosen with spec.selector.matchLabels")
		}
	}
	if spec.Selector != nil {
		p.selector = map[string]string{}
		for k, v := range spec.Selector.MatchLabels {
			if k == "" {
				d.Errorf("spec.selector.matchLabels", "empty label name")
			}
			p.selector[k] = v
		}
		if len(p.selector) == 0 {
			p.selector = nil // an empty selector selects everything, as in Kubernetes
		}
	}
	if len(spec.Rules) == 0 && p.action == Deny {
		d.Errorf("spec", "DENY policy without rules is meaningless (add an empty rule {} to deny everything)")
	}
	if len(spec.Rules) > maxRules {
		d.Errorf("spec.rules", "too many rules (got %d, want at most %d)", len(spec.Rules), maxRules)
	}
	b := &builder{d: d, opts: opts, ns: p.namespace, ext: ext, strict: p.action == Allow}
	for i := range spec.Rules {
		path := fmt.Sprintf("spec.rules[%d]", i)
		r := b.rule(path, &spec.Rules[i])
		r.policy, r.index = p, i
		r.reason = ruleReason(p, i, d.Pos(path))
		p.http = append(p.http, r)
		p.tcp = append(p.tcp, tcpRule(r, p.action))
	}
	return p
}

const maxRules = 512

func ruleReason(p *policy, i int, pos config.Position) string {
	verb := map[Action]string{Allow: "allowed by", Deny: "denied by", Audit: "audited by"}[p.action]
	s := fmt.Sprintf("%s %s policy %s rule %d (%s:%d)", verb, p.action, p.ref, i, pos.File, pos.Line)
	if p.dryRun {
		s = "dry-run, not enforced: would be " + s
	}
	return s
}

// tcpRule derives the rule TCP traffic is judged by (reference §10): an ALLOW rule
// that names an HTTP-only attribute can never match; DENY and AUDIT rules lose
// their HTTP-only fields and so match more.
func tcpRule(r *rule, a Action) *rule {
	hasHTTP := false
	check := func(ms []matcher) {
		for i := range ms {
			hasHTTP = hasHTTP || ms[i].attr.httpOnly()
		}
	}
	for _, e := range r.from {
		check(e)
	}
	for _, e := range r.to {
		check(e)
	}
	check(r.when)
	if !hasHTTP {
		return r
	}
	if a == Allow {
		return nil
	}
	strip := func(ms []matcher) []matcher {
		var out []matcher
		for _, m := range ms {
			if !m.attr.httpOnly() {
				out = append(out, m)
			}
		}
		return out
	}
	t := *r
	t.from, t.to = nil, nil
	for _, e := range r.from {
		t.from = append(t.from, strip(e))
	}
	for _, e := range r.to {
		t.to = append(t.to, strip(e))
	}
	t.when = strip(r.when)
	return &t
}

// cutBrackets parses "[a][b]..." into its names; every name must be non-empty and
// free of brackets.
func cutBrackets(s string) ([]string, bool) {
	var out []string
	for s != "" {
		if s[0] != '[' {
			return nil, false
		}
		end := strings.IndexByte(s, ']')
		if end <= 1 || strings.IndexByte(s[1:end], '[') >= 0 {
			return nil, false
		}
		out = append(out, s[1:end])
		s = s[end+1:]
	}
	return out, len(out) > 0
}
