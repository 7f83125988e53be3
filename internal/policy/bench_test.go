package policy

import (
	"fmt"
	"net/netip"
	"strings"
	"testing"

	"tollgate.dev/tollgate/internal/request"
)

// benchPolicies writes n rules of realistic shape, ten to a policy: distinct
// hosts and path prefixes, every third rule with a peer principal, every fifth
// with a claim condition, every seventh with a header condition, and one policy
// in twenty a DENY.
func benchPolicies(n int) string {
	var b strings.Builder
	hosts := max(1, n/10)
	for p := 0; p*10 < n; p++ {
		action := "ALLOW"
		if p%20 == 19 {
			action = "DENY"
		}
		fmt.Fprintf(&b, "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: p%d, namespace: bench}\nspec:\n  action: %s\n  rules:\n", p, action)
		for i := p * 10; i < min(n, p*10+10); i++ {
			fmt.Fprintf(&b, "  - to: [{operation: {hosts: [svc%d.example.com, \"svc%d.example.com:*\"], methods: [GET, POST], paths: [/api/v%d/res%d/*]}}]\n", i%hosts, i%hosts, i%3, i)
			if i%3 == 0 {
				fmt.Fprintf(&b, "    from: [{source: {principals: [cluster.local/ns/team%d/sa/client]}}]\n", i%10)
			}
			var when []string
			if i%5 == 0 {
				when = append(when, fmt.Sprintf(`{key: "request.auth.claims[groups]", values: [team%d]}`, i%10))
			}
			if i%7 == 0 {
				when = append(when, fmt.Sprintf(`{key: "request.headers[x-tenant]", values: [tenant%d]}`, i%10))
			}
			if when != nil {
				fmt.Fprintf(&b, "    when: [%s]\n", strings.Join(when, ", "))
			}
		}
		b.WriteString("---\n")
	}
	return b.String()
}

// benchRequest matches rule i of benchPolicies(n).
func benchRequest(n, i int) *request.Request {
	hosts := max(1, n/10)
	return &request.Request{
		Protocol:    request.HTTP,
		Method:      "GET",
		Host:        fmt.Sprintf("svc%d.example.com", i%hosts),
		Destination: request.Destination{Port: 8443},
		Path:        fmt.Sprintf("/api/v%d/res%d/items/42", i%3, i),
		Headers:     map[string][]string{"X-Tenant": {fmt.Sprintf("tenant%d", i%10)}, "User-Agent": {"bench"}},
		Source:      request.Peer{Principal: fmt.Sprintf("spiffe://cluster.local/ns/team%d/sa/client", i%10), IP: netip.MustParseAddr("10.1.2.3")},
		Auth: &request.Auth{Issuer: "https://idp.example", Subject: "alice",
			Claims: map[string]any{"groups": []any{"staff", fmt.Sprintf("team%d", i%10)}, "scope": "read write"}},
	}
}

func BenchmarkDecide(b *testing.B) {
	for _, n := range []int{10, 100, 1000, 10000} {
		s := mustCompile(b, benchPolicies(n), Options{})
		e := s.EngineAllPolicies()
		for _, tc := range []struct {
			name string
			req  *request.Request
		}{
			{"match", benchRequest(n, min(n-1, n/2+5))},
			{"nomatch", func() *request.Request { r := benchRequest(n, min(n-1, n/2+5)); r.Path = "/nothing/here"; return r }()},
		} {
			if d := e.Decide(tc.req); d.Allow != (tc.name == "match") {
				b.Fatalf("n=%d %s: unexpected decision %+v", n, tc.name, d)
			}
			b.Run(fmt.Sprintf("rules=%d/%s", n, tc.name), func(b *testing.B) {
				b.ReportAllocs()
				for b.Loop() {
					e.Decide(tc.req)
				}
			})
		}
	}
}

func BenchmarkDecideLinear(b *testing.B) {
	for _, n := range []int{10, 100, 1000} {
		e := mustCompile(b, benchPolicies(n), Options{}).EngineAllPolicies().Linear()
		req := benchRequest(n, min(n-1, n/2+5))
		b.Run(fmt.Sprintf("rules=%d", n), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				e.Decide(req)
			}
		})
	}
}

func BenchmarkCompile(b *testing.B) {
	src := benchPolicies(1000)
	b.ReportAllocs()
	for b.Loop() {
		mustCompile(b, src, Options{}).EngineAllPolicies()
	}
}

// TestDecideDoesNotAllocate guards the 0 allocs/op budget of the hot path.
func TestDecideDoesNotAllocate(t *testing.T) {
	e := mustCompile(t, benchPolicies(100), Options{}).EngineAllPolicies()
	req := benchRequest(100, 55)
	if n := testing.AllocsPerRun(100, func() { e.Decide(req) }); n != 0 {
		t.Errorf("Decide allocates %v times per call, want 0", n)
	}
}
