package policy_test

import (
	"fmt"

	"tollgate.dev/tollgate/internal/config"
	"tollgate.dev/tollgate/internal/policy"
	"tollgate.dev/tollgate/internal/request"
)

func Example() {
	src := `apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: admins-only, namespace: shop}
spec:
  action: DENY
  rules:
  - from: [{source: {notRequestPrincipals: ["https://idp.example/*"]}}]
    to: [{operation: {paths: ["/admin/*"]}}]
`
	nodes, _ := config.ParseDocuments("policy.yaml", []byte(src))
	docs := []config.Document{{File: "policy.yaml", APIVersion: "security.istio.io/v1", Kind: "AuthorizationPolicy", Node: nodes[0]}}
	set, err := policy.Compile(docs, "v1", policy.Options{})
	if err != nil {
		fmt.Println(err)
		return
	}
	engine := set.Engine(map[string]string{"role": "ingress"})

	d := engine.Decide(&request.Request{Method: "GET", Host: "shop.example", Path: "/admin/users"})
	fmt.Println(d.Allow, d.Reason)
	d = engine.Decide(&request.Request{Method: "GET", Host: "shop.example", Path: "/catalog"})
	fmt.Println(d.Allow, d.Reason)
	// Output:
	// false denied by DENY policy shop/admins-only rule 0 (policy.yaml:7)
	// true allowed: no ALLOW policy applies
}
