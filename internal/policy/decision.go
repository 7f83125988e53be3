package policy

import "tollgate.dev/tollgate/internal/request"

// Decision is the record of one authorization (request.Decision): the audit
// event and the `gateway policy` CLI carry the same record.
type Decision = request.Decision

// Reasons of decisions that no rule made.
const (
	ReasonNoAllowPolicy = "allowed: no ALLOW policy applies"
	ReasonNoAllowMatch  = "denied: ALLOW policies apply but none matched"
	reasonDryNoMatch    = "dry-run, not enforced: would be denied: dry-run ALLOW policies apply but none matched"
)

func ruleDecision(r *rule, version string) Decision {
	p := r.policy
	return Decision{
		Allow:         p.action != Deny,
		Action:        string(p.action),
		Policy:        p.ref,
		Rule:          r.index,
		DryRun:        p.dryRun,
		PolicyVersion: version,
		Reason:        r.reason,
	}
}
