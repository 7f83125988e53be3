package gateway_test

import (
	"testing"
)

// Policies of three namespaces; each listener has its own namespace, so each
// takes the root namespace's documents and its own, never another's.
const namespacedPolicies = `apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: deny-admin, namespace: istio-system}
spec: {action: DENY, rules: [{to: [{operation: {paths: [/admin]}}]}]}
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: deny-edge, namespace: edge}
spec: {action: DENY, rules: [{to: [{operation: {paths: [/edge-only]}}]}]}
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: deny-east, namespace: east}
spec: {action: DENY, rules: [{to: [{operation: {paths: [/east-only]}}]}]}
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: payments-allow-nothing, namespace: payments}
spec: {}
`

func TestListenerNamespaces(t *testing.T) {
	e := startEnvOpts(t, namespacedPolicies, envOptions{
		ingress: "  namespace: edge\n  mesh: {listen: \"127.0.0.1:0\", namespace: east}\n",
		svids:   map[string]string{"frontend": frontendID},
	})
	mesh := e.meshClient("frontend", e.caPool())
	meshURL := "https://" + e.gw.MeshAddr().String()

	for _, tc := range []struct {
		path              string
		atIngress, atMesh int
	}{
		{"/anything", 200, 200}, // payments' allow-nothing applies to neither listener
		{"/admin", 403, 403},    // the root namespace's DENY applies to both
		{"/edge-only", 403, 200},
		{"/east-only", 200, 403},
	} {
		t.Run(tc.path, func(t *testing.T) {
			if r := e.do(e.client, "GET", tc.path); r.status != tc.atIngress {
				t.Errorf("ingress listener (namespace edge): status %d, want %d", r.status, tc.atIngress)
			}
			resp, err := mesh.Get(meshURL + tc.path)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != tc.atMesh {
				t.Errorf("mesh listener (namespace east): status %d, want %d", resp.StatusCode, tc.atMesh)
			}
		})
	}
}
