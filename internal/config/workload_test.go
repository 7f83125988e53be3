package config

import "testing"

func TestWorkloadSelects(t *testing.T) {
	edge := Workload{Namespace: "edge", Labels: map[string]string{"role": "ingress", "zone": "a"}}
	anyNS := Workload{Labels: edge.Labels}
	for _, tc := range []struct {
		name string
		w    Workload
		ns   string
		sel  map[string]string
		want bool
	}{
		{"own namespace, no selector", edge, "edge", nil, true},
		{"root namespace, no selector", edge, "istio-system", nil, true},
		{"other namespace", edge, "payments", nil, false},
		{"other namespace, matching selector", edge, "payments", map[string]string{"role": "ingress"}, false},
		{"root namespace, matching selector", edge, "istio-system", map[string]string{"role": "ingress"}, true},
		{"root namespace, other selector", edge, "istio-system", map[string]string{"role": "egress"}, false},
		{"selector needs every label", edge, "edge", map[string]string{"role": "ingress", "zone": "b"}, false},
		{"empty selector value is a value", edge, "edge", map[string]string{"role": ""}, false},
		{"no listener namespace: any namespace", anyNS, "payments", nil, true},
		{"no listener namespace: selector still applies", anyNS, "payments", map[string]string{"zone": "b"}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.w.Selects("istio-system", tc.ns, tc.sel); got != tc.want {
				t.Errorf("Selects = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestMeshNamespaceDefaultsToIngress(t *testing.T) {
	for _, tc := range []struct{ ingress, mesh, want string }{
		{"edge", "", "edge"},
		{"edge", "east", "east"},
		{"", "", ""},
	} {
		g := &Gateway{Ingress: &Ingress{Namespace: tc.ingress, Mesh: &MeshListener{Namespace: tc.mesh}}}
		g.ApplyDefaults()
		if got := g.Ingress.Mesh.Workload().Namespace; got != tc.want {
			t.Errorf("ingress %q mesh %q: mesh namespace %q, want %q", tc.ingress, tc.mesh, got, tc.want)
		}
	}
}
