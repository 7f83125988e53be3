package gateway_test

import (
	"os"
	"path/filepath"
	"testing"

	"tollgate.dev/tollgate/internal/config"
	"tollgate.dev/tollgate/internal/gateway"
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

// The root namespace reaches both compilers: AuthorizationPolicy and
// RequestAuthentication documents in it apply to a listener of another namespace.
func TestCompilePoliciesRootNamespace(t *testing.T) {
	dir := t.TempDir()
	docs := `apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: deny-admin, namespace: mesh-root}
spec: {action: DENY, rules: [{to: [{operation: {paths: [/admin]}}]}]}
---
apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: {name: idp, namespace: mesh-root}
spec:
  jwtRules: [{issuer: "https://idp.test", jwksUri: "https://idp.test/keys"}]
`
	if err := os.WriteFile(filepath.Join(dir, "p.yaml"), []byte(docs), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		root       string
		unselected int
	}{{"mesh-root", 0}, {"istio-system", 2}} {
		cfg := &config.Gateway{Ingress: &config.Ingress{Namespace: "edge"}, Policy: config.Policy{RootNamespace: tc.root}}
		c, err := gateway.CompilePolicies(cfg, []string{dir}, nil)
		if err != nil {
			t.Fatal(err)
		}
		if got := c.Unselected(cfg); len(got) != tc.unselected {
			t.Errorf("root namespace %s: unselected %v, want %d documents", tc.root, got, tc.unselected)
		}
	}
}
