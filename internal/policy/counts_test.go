package policy

import (
	"testing"

	"github.com/google/go-cmp/cmp"

	"tollgate.dev/tollgate/internal/config"
)

func TestSetCountFor(t *testing.T) {
	// inNS is pol in another namespace; sel selects listeners labelled app=web.
	inNS := func(ns, name, spec string) string {
		return "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: " + name + ", namespace: " + ns + "}\nspec: " + spec + "\n---\n"
	}
	const sel = `selector: {matchLabels: {app: web}}, `
	src := pol("allow-a", `{rules: [{to: [{operation: {paths: ["/a"]}}]}]}`) + // ALLOW by default
		pol("deny-b", `{action: DENY, rules: [{to: [{operation: {paths: ["/b"]}}]}]}`) +
		pol("audit-c", `{action: AUDIT, rules: [{}]}`) +
		dryRun("dry-deny", `{action: DENY, rules: [{}]}`) +
		dryRun("dry-allow", `{action: ALLOW, rules: [{}]}`) +
		pol("deny-web", `{`+sel+`action: DENY, rules: [{}]}`) +
		inNS("istio-system", "root-allow", `{action: ALLOW, rules: [{}]}`) +
		inNS("other", "other-deny", `{action: DENY, rules: [{}]}`)
	s := mustCompile(t, src, Options{})

	tests := []struct {
		name string
		w    config.Workload
		want Counts
	}{
		{
			name: "no namespace, no labels: every policy without a selector",
			w:    config.Workload{},
			want: Counts{Policies: 7, Allow: 2, Deny: 2},
		},
		{
			name: "labels select deny-web too",
			w:    config.Workload{Labels: map[string]string{"app": "web"}},
			want: Counts{Policies: 8, Allow: 2, Deny: 3},
		},
		{
			name: "namespace ns: its own and the root namespace's",
			w:    config.Workload{Namespace: "ns"},
			want: Counts{Policies: 6, Allow: 2, Deny: 1},
		},
		{
			name: "namespace other: its own and the root namespace's",
			w:    config.Workload{Namespace: "other"},
			want: Counts{Policies: 2, Allow: 1, Deny: 1},
		},
		{
			name: "a namespace without policies: the root namespace's only",
			w:    config.Workload{Namespace: "empty"},
			want: Counts{Policies: 1, Allow: 1},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := s.CountFor(tt.w)
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("CountFor (-want +got):\n%s", diff)
			}
			// Counts agree with the engine the listener is judged by.
			if n := s.EngineFor(tt.w).Len(); n != got.Policies {
				t.Errorf("EngineFor(...).Len() = %d, CountFor(...).Policies = %d", n, got.Policies)
			}
		})
	}

	empty := mustCompile(t, "", Options{})
	if got := empty.CountFor(config.Workload{}); got != (Counts{}) {
		t.Errorf("empty set: %+v, want zero counts", got)
	}
}
