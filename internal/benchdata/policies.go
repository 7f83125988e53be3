// Package benchdata holds inputs shared by the benchmarks: the in-process
// ones (internal/ingress) and the side-by-side harness of separate processes
// (test/benchrig, scripts/bench-peers.sh), so both measure the same work.
package benchdata

import (
	"fmt"
	"strings"
)

// Policies writes n AuthorizationPolicy rules of realistic shape: ALLOW rules
// for distinct hosts and path prefixes with method, header and claim
// conditions, and a few DENY rules. A GET of /api/v1/... matches one ALLOW
// rule near the end.
func Policies(n int) string {
	var b strings.Builder
	b.WriteString("apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: deny, namespace: istio-system}\nspec:\n  action: DENY\n  rules:\n")
	for i := range n / 10 {
		fmt.Fprintf(&b, "  - to: [{operation: {paths: [\"/internal%d/*\"]}}]\n", i)
	}
	b.WriteString("---\napiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: allow, namespace: istio-system}\nspec:\n  action: ALLOW\n  rules:\n")
	for i := range n - n/10 - 1 {
		switch i % 3 {
		case 0:
			fmt.Fprintf(&b, "  - to: [{operation: {hosts: [\"svc%d.example.com\"], paths: [\"/api/v%d/*\"], methods: [GET, HEAD]}}]\n", i, i)
		case 1:
			fmt.Fprintf(&b, "  - to: [{operation: {paths: [\"/team%d/*\"]}}]\n    when: [{key: \"request.headers[x-tenant]\", values: [\"t%d\"]}]\n", i, i)
		default:
			fmt.Fprintf(&b, "  - to: [{operation: {paths: [\"/reports%d/*\"]}}]\n    when: [{key: \"request.auth.claims[groups]\", values: [\"g%d\"]}]\n", i, i)
		}
	}
	b.WriteString("  - to: [{operation: {paths: [\"/api/v1/*\"], methods: [GET]}}]\n")
	return b.String()
}
