package policy

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"tollgate.dev/tollgate/internal/config"
	"tollgate.dev/tollgate/internal/request"
)

// picker draws choices from fuzz input; it returns 0 once the input is used up.
type picker struct{ b []byte }

func (p *picker) n(max int) int {
	if len(p.b) == 0 || max <= 0 {
		return 0
	}
	v := int(p.b[0]) % max
	p.b = p.b[1:]
	return v
}

func (p *picker) pick(xs ...string) string { return xs[p.n(len(xs))] }

var (
	fzHosts   = []string{"a.example", "B.example", "*.example", "a.example:*", "[::1]:*", "c.example:8443", "*", "ap*"}
	fzPaths   = []string{"/a", "/a/*", "/b/x", "*.png", "/a/{*}", "/", "/b/*", "/{*}/x", "*", "/a*", "/c/{**}"}
	fzMethods = []string{"GET", "POST", "*", "P*"}
	fzReqHost = []string{"a.example", "A.EXAMPLE", "b.example", "x.example", "a.example:80", "[::1]:80", "c.example:8443", "", "apx", "\u212a.example", "A.example:"}
	fzSNIs    = []string{"a.example", "A.Example.", "*.example", "ap*", "*", "bücher.example", "*.EXAMPLE."}
	fzReqSNI  = []string{"", "a.example", "b.example", "apx", "bücher.example", "xn--bcher-kva.example", "BÜCHER.example"}
	fzReqPath = []string{"/a", "/a/", "/a/b", "/b/x", "/x.png", "/", "", "/q/x", "a", "/c/d/e", "/ab"}
)

// genPolicies writes a random policy set drawn from a small vocabulary, so that
// rules and requests often meet.
func genPolicies(p *picker) string {
	var b strings.Builder
	np := 1 + p.n(6)
	for i := range np {
		action := p.pick("ALLOW", "DENY", "AUDIT", "ALLOW")
		fmt.Fprintf(&b, "apiVersion: tollgate.dev/v1\nkind: AuthorizationPolicy\nmetadata: {name: p%d, namespace: ns", i)
		if p.n(5) == 0 {
			b.WriteString(`, annotations: {istio.io/dry-run: "true"}`)
		}
		fmt.Fprintf(&b, "}\nspec:\n  action: %s\n  rules:\n", action)
		nr := 1 + p.n(4)
		for range nr {
			b.WriteString("  - {")
			if p.n(3) == 0 {
				fmt.Fprintf(&b, "from: [{source: {principals: [%q]}}], ", p.pick("td/ns/a/sa/b", "*", "*/sa/b", "td/*"))
			}
			if p.n(4) != 0 {
				b.WriteString("to: [")
				nt := 1 + p.n(2)
				for j := range nt {
					if j > 0 {
						b.WriteString(", ")
					}
					b.WriteString("{operation: {")
					var fields []string
					if p.n(3) != 0 {
						fields = append(fields, fmt.Sprintf("%s: [%q, %q]", p.pick("hosts", "hosts", "notHosts"), p.pick(fzHosts...), p.pick(fzHosts...)))
					}
					if p.n(3) != 0 {
						fields = append(fields, fmt.Sprintf("%s: [%q]", p.pick("paths", "paths", "notPaths"), p.pick(fzPaths...)))
					}
					if p.n(3) == 0 {
						fields = append(fields, fmt.Sprintf("methods: [%q]", p.pick(fzMethods...)))
					}
					if p.n(4) == 0 {
						fields = append(fields, `pathRegex: ["/a.*"]`)
					}
					if len(fields) == 0 {
						fields = append(fields, `ports: ["80"]`)
					}
					b.WriteString(strings.Join(fields, ", "))
					b.WriteString("}}")
				}
				b.WriteString("], ")
			}
			if p.n(3) == 0 {
				key := p.pick("request.headers[x]", "request.query[q]", "request.auth.claims[g]", "request.headers[:authority]", "request.headers[host]", "connection.sni")
				val := p.pick("v", "v*", "*")
				switch key {
				case "request.headers[:authority]", "request.headers[host]":
					val = p.pick(fzHosts...)
				case "connection.sni":
					val = p.pick(fzSNIs...)
				}
				fmt.Fprintf(&b, "when: [{key: %q, %s: [%q]}]", key, p.pick("values", "notValues"), val)
			}
			b.WriteString("}\n")
		}
		b.WriteString("---\n")
	}
	return b.String()
}

func genRequest(p *picker) request.Request {
	r := request.Request{
		Method:      p.pick("GET", "POST", "", "get"),
		Path:        p.pick(fzReqPath...),
		Destination: request.Destination{Port: []int{0, 80, 443}[p.n(3)]},
	}
	// Fronts judge only canonical authorities; one they would refuse is left out.
	if a, err := request.ParseAuthority(p.pick(fzReqHost...)); err == nil {
		r.Host, r.HostPort = a.Host, a.Port
	}
	if p.n(2) == 0 {
		r.Protocol = request.TCP
	}
	r.SNI = p.pick(fzReqSNI...)
	if p.n(2) == 0 {
		r.Source = request.Peer{Principal: p.pick("spiffe://td/ns/a/sa/b", "spiffe://x/sa/b", "td/ns/a/sa/b"), IP: netip.MustParseAddr("10.0.0.1")}
	}
	if p.n(2) == 0 {
		r.Headers = map[string][]string{"X": {p.pick("v", "v1", "w", "")}}
		if p.n(2) == 0 {
			r.Headers["X"] = append(r.Headers["X"], p.pick("v", "w"))
		}
	}
	if p.n(2) == 0 {
		r.Query = map[string][]string{"q": {p.pick("v", "vv", "w")}}
	}
	if p.n(2) == 0 {
		r.Auth = jwt("iss", "sub", map[string]any{"g": []any{p.pick("v", "w"), 1.0}})
	}
	return r
}

// FuzzIndexedVsLinear checks that the indexed engine decides exactly as the
// linear one, down to the reported policy and rule.
func FuzzIndexedVsLinear(f *testing.F) {
	f.Add([]byte("seed"), []byte("request"))
	f.Add([]byte{3, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12}, []byte{1, 2, 3, 4, 5, 6})
	f.Add([]byte{5, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1}, []byte{0, 0, 0, 0, 0, 0, 0, 0})
	f.Add([]byte{255, 254, 7, 9, 2, 3, 200, 100, 50, 25, 12, 6, 3}, []byte{9, 8, 7, 6, 5, 4, 3, 2, 1})
	f.Fuzz(func(t *testing.T, pol, req []byte) {
		src := genPolicies(&picker{pol})
		s, err := compileYAML(t, src, Options{})
		if err != nil {
			t.Fatalf("generated policies do not compile: %v\n%s", err, src)
		}
		e := s.EngineAllPolicies()
		l := e.Linear()
		rp := &picker{req}
		for range 8 {
			r := genRequest(rp)
			if diff := cmp.Diff(l.Decide(&r), e.Decide(&r)); diff != "" {
				t.Fatalf("indexed differs from linear (-linear +indexed):\n%s\nrequest: %+v\npolicies:\n%s", diff, r, src)
			}
		}
	})
}

// FuzzCompile feeds arbitrary YAML to the loader: it must never panic, must
// report only positioned config errors, and what it accepts must decide the same
// through the index and linearly.
func FuzzCompile(f *testing.F) {
	f.Add(pol("p", `{rules: [{to: [{operation: {hosts: [a], paths: ["/a/{*}"]}}]}]}`))
	f.Add(pol("p", `{action: DENY, rules: [{from: [{source: {principals: ["*"], ipBlocks: [10.0.0.0/8]}}], when: [{key: "request.auth.claims[a][b]", values: [x]}]}]}`))
	f.Add(ext("p", `{rules: [{to: [{operation: {pathRegex: ["/v[0-9]+"]}}], when: [{key: "request.query[a]", notValues: ["*"]}]}]}`))
	f.Add(pol("p", `{action: DENY, rules: [{when: [{key: "request.headers[:authority]", values: [Upper.Example.com, "a.example:*"]}, {key: connection.sni, notValues: ["localhost."]}]}]}`))
	f.Add(pol("p", `{action: CUSTOM, rules: [{}]}`))
	f.Add(pol("p", `{rules: [{from: [{source: {serviceAccounts: [a/b]}}], to: [{operation: {ports: ["99999"]}}]}]}`))
	f.Add("apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: &m {name: a}\nspec: {rules: [*m]}\n")
	f.Fuzz(func(t *testing.T, src string) {
		s, err := compileYAML(t, src, Options{TrustDomain: "td", TrustDomainAliases: []string{"old"}})
		if err != nil {
			// Compile reports config.Errors; a document that is no mapping is
			// refused before it, by config.DocumentOf, with one config.Error.
			var es config.Errors
			var one config.Error
			switch {
			case errors.As(err, &es):
			case errors.As(err, &one):
				es = config.Errors{one}
			default:
				t.Fatalf("error %T is neither config.Errors nor config.Error: %v", err, err)
			}
			for _, e := range es {
				if e.File != "p.yaml" || e.Msg == "" {
					t.Fatalf("malformed error %+v", e)
				}
			}
			return
		}
		e := s.EngineAllPolicies()
		for _, r := range []request.Request{
			{Method: "GET", Host: "a", Path: "/a/b"},
			{Protocol: request.TCP, Destination: request.Destination{Port: 80}, Source: request.Peer{Principal: "spiffe://td/ns/a/sa/b"}},
		} {
			if diff := cmp.Diff(e.Linear().Decide(&r), e.Decide(&r)); diff != "" {
				t.Fatalf("indexed differs from linear:\n%s", diff)
			}
		}
	})
}

// TestIndexedVsLinearRandom runs the differential check of FuzzIndexedVsLinear
// over a fixed pseudo-random sample on every `go test`.
func TestIndexedVsLinearRandom(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range 300 {
		pol := make([]byte, 96)
		for j := range pol {
			pol[j] = byte(rng.Uint32())
		}
		src := genPolicies(&picker{pol})
		s, err := compileYAML(t, src, Options{})
		if err != nil {
			t.Fatalf("case %d: %v", i, err)
		}
		e := s.EngineAllPolicies()
		l := e.Linear()
		for range 20 {
			req := make([]byte, 12)
			for j := range req {
				req[j] = byte(rng.Uint32())
			}
			r := genRequest(&picker{req})
			if diff := cmp.Diff(l.Decide(&r), e.Decide(&r)); diff != "" {
				t.Fatalf("case %d: indexed differs from linear (-linear +indexed):\n%s\nrequest: %+v\npolicies:\n%s", i, diff, r, src)
			}
		}
	}
}
