package request

import "encoding/json"

// Decision is the record of one authorization, produced by the policy engine
// and carried unchanged into the audit event and `gateway policy eval`: the
// same fields, the same names, the same JSON.
type Decision struct {
	// Allow is the enforced outcome.
	Allow bool `json:"allow"`
	// Action is the action of the policy that decided (ALLOW, DENY); empty
	// when no policy matched (the default allow without ALLOW policies, or the
	// default deny).
	Action string `json:"action,omitempty"`
	// Policy is "namespace/name" of the deciding policy, empty if none.
	Policy string `json:"policy,omitempty"`
	// Rule is the index of the matching rule in the policy's spec.rules, or
	// NoRule. It is written to JSON only when a rule decided.
	Rule int `json:"-"`
	// DryRun is true on shadow records: the policy was evaluated, not enforced.
	DryRun bool `json:"dryRun,omitempty"`
	// PolicyVersion is the content version of the policy set that decided.
	PolicyVersion string `json:"policyVersion,omitempty"`
	// Reason says in words why, naming the policy, rule and its file position.
	Reason string `json:"reason,omitempty"`
	// Audit is true when an AUDIT policy matched; AuditPolicy names the first.
	Audit       bool   `json:"audit,omitempty"`
	AuditPolicy string `json:"auditPolicy,omitempty"`
	// Shadow holds what dry-run policies would have decided: the first matching
	// dry-run AUDIT and DENY rules, and the dry-run ALLOW outcome when dry-run
	// ALLOW policies apply (as Envoy's shadow rules report them).
	Shadow []Decision `json:"shadow,omitempty"`
}

// NoRule is Decision.Rule when no rule decided.
const NoRule = -1

// HasRule reports whether a rule of a policy decided.
func (d *Decision) HasRule() bool { return d.Policy != "" && d.Rule >= 0 }

// decisionJSON is Decision's wire form: Rule is present only when a rule
// decided, so no reader takes "rule": 0 or -1 for a rule that never matched.
type decisionJSON struct {
	*plainDecision
	Rule *int `json:"rule,omitempty"`
}

// plainDecision has Decision's fields without its methods, so encoding it does
// not recurse.
type plainDecision Decision

// MarshalJSON writes the decision with "rule" only when a rule decided.
func (d Decision) MarshalJSON() ([]byte, error) {
	w := decisionJSON{plainDecision: (*plainDecision)(&d)}
	if d.HasRule() {
		w.Rule = &d.Rule
	}
	return json.Marshal(w)
}

// UnmarshalJSON reads what MarshalJSON writes; an absent rule is NoRule.
func (d *Decision) UnmarshalJSON(b []byte) error {
	w := decisionJSON{plainDecision: (*plainDecision)(d)}
	if err := json.Unmarshal(b, &w); err != nil {
		return err
	}
	d.Rule = NoRule
	if w.Rule != nil {
		d.Rule = *w.Rule
	}
	return nil
}
