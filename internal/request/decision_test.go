package request

import (
	"encoding/json"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestDecisionJSON(t *testing.T) {
	for _, tc := range []struct {
		name string
		d    Decision
		want string
	}{
		{
			name: "rule zero is written",
			d:    Decision{Allow: true, Action: "ALLOW", Policy: "ns/p", Rule: 0, PolicyVersion: "v1", Reason: "r"},
			want: `{"allow":true,"action":"ALLOW","policy":"ns/p","policyVersion":"v1","reason":"r","rule":0}`,
		},
		{
			name: "no rule is not written",
			d:    Decision{Rule: NoRule, PolicyVersion: "v1", Reason: "denied"},
			want: `{"allow":false,"policyVersion":"v1","reason":"denied"}`,
		},
		{
			name: "shadow and audit",
			d: Decision{Allow: true, Rule: NoRule, Audit: true, AuditPolicy: "ns/a",
				Shadow: []Decision{{Action: "DENY", Policy: "ns/d", Rule: 2, DryRun: true}}},
			want: `{"allow":true,"audit":true,"auditPolicy":"ns/a","shadow":[{"allow":false,"action":"DENY","policy":"ns/d","dryRun":true,"rule":2}]}`,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b, err := json.Marshal(tc.d)
			if err != nil || string(b) != tc.want {
				t.Fatalf("Marshal = %s, %v; want %s", b, err, tc.want)
			}
			var back Decision
			if err := json.Unmarshal(b, &back); err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.d, back); diff != "" {
				t.Errorf("round trip (-want +got):\n%s", diff)
			}
		})
	}
}
