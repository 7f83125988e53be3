package policy

import "tollgate.dev/tollgate/internal/config"

// Counts are how many policies of a set apply to one listener, by what they
// enforce. A reload compares them, old and new, to notice a set that would
// stop enforcing something (an emptied file allows everything).
type Counts struct {
	// Policies is every policy that applies, dry-run and AUDIT ones included
	// (Engine.Len).
	Policies int
	// Allow and Deny count the enforced ALLOW and DENY policies: dry-run
	// ones decide nothing, so they are not counted.
	Allow, Deny int
}

// CountFor counts the policies that apply to w, chosen as EngineFor chooses
// them.
func (s *Set) CountFor(w config.Workload) Counts {
	var c Counts
	for _, p := range s.policies {
		if !w.Selects(s.opts.RootNamespace, p.namespace, p.selector) {
			continue
		}
		c.Policies++
		if p.dryRun {
			continue
		}
		switch p.action {
		case Allow:
			c.Allow++
		case Deny:
			c.Deny++
		}
	}
	return c
}
