package policy

// Decision is the record of one authorization: the audit event and the
// `gateway policy` CLI print the same record.
type Decision struct {
	// Allow is the enforced outcome.
	Allow bool `json:"allow"`
	// Action is the action of the policy that decided; empty when no policy
	// matched (the default allow without ALLOW policies, or the default deny).
	Action Action `json:"action,omitempty"`
	// Policy is "namespace/name" of the deciding policy, empty if none.
	Policy string `json:"policy,omitempty"`
	// Rule is the index of the matching rule in the policy's spec.rules, -1 if none.
	Rule int `json:"rule"`
	// DryRun is true on shadow records: the policy was evaluated, not enforced.
	DryRun bool `json:"dryRun,omitempty"`
	// Version is the content version of the policy set that decided.
	Version string `json:"version"`
	// Reason says in words why, naming the policy, rule and its file position.
	Reason string `json:"reason"`
	// Audit is true when an AUDIT policy matched; AuditPolicy names the first.
	Audit       bool   `json:"audit,omitempty"`
	AuditPolicy string `json:"auditPolicy,omitempty"`
	// Shadow holds what dry-run policies would have decided: the first matching
	// dry-run DENY rule, and the dry-run ALLOW outcome when dry-run ALLOW
	// policies apply (as Envoy's shadow rules report them).
	Shadow []Decision `json:"shadow,omitempty"`
}

// Reasons of decisions that no rule made.
const (
	ReasonNoAllowPolicy = "allowed: no ALLOW policy applies"
	ReasonNoAllowMatch  = "denied: ALLOW policies apply but none matched"
	reasonDryNoMatch    = "dry-run, not enforced: would be denied: dry-run ALLOW policies apply but none matched"
)

func ruleDecision(r *rule, version string) Decision {
	p := r.policy
	return Decision{
		Allow:   p.action != Deny,
		Action:  p.action,
		Policy:  p.ref,
		Rule:    r.index,
		DryRun:  p.dryRun,
		Version: version,
		Reason:  r.reason,
	}
}
