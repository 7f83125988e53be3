package policy

import (
	"net/netip"
	"net/textproto"
	"testing"

	"github.com/google/go-cmp/cmp"

	"tollgate.dev/tollgate/internal/config"
	"tollgate.dev/tollgate/internal/request"
)

// pol is one policy in namespace ns with a flow-style spec.
func pol(name, spec string) string {
	return "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: " + name + ", namespace: ns}\nspec: " + spec + "\n---\n"
}

// ext is pol with apiVersion tollgate.dev/v1.
func ext(name, spec string) string {
	return "apiVersion: tollgate.dev/v1\nkind: AuthorizationPolicy\nmetadata: {name: " + name + ", namespace: ns}\nspec: " + spec + "\n---\n"
}

func dryRun(name, spec string) string {
	return "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: " + name + ", namespace: ns, annotations: {istio.io/dry-run: \"true\"}}\nspec: " + spec + "\n---\n"
}

func peer(id string) request.Peer { return request.Peer{Principal: id} }

func jwt(iss, sub string, claims map[string]any) *request.Auth {
	a := &request.Auth{Issuer: iss, Subject: sub, Claims: claims}
	a.SetPrincipal()
	return a
}

// verdict is what a case checks of a decision.
type verdict struct {
	Allow  bool
	Policy string
	Rule   int
}

var (
	allowDefault = verdict{Allow: true, Rule: -1}
	denyDefault  = verdict{Allow: false, Rule: -1}
)

func allowBy(p string, rule int) verdict { return verdict{Allow: true, Policy: "ns/" + p, Rule: rule} }
func denyBy(p string, rule int) verdict  { return verdict{Allow: false, Policy: "ns/" + p, Rule: rule} }

type decideCase struct {
	name string
	req  request.Request
	want verdict
}

func runDecide(t *testing.T, policies string, opts Options, cases []decideCase) {
	t.Helper()
	s := mustCompile(t, policies, opts)
	e := s.EngineAllPolicies()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			for _, eng := range []*Engine{e, e.Linear()} {
				d := eng.Decide(&tc.req)
				got := verdict{Allow: d.Allow, Policy: d.Policy, Rule: d.Rule}
				if diff := cmp.Diff(tc.want, got); diff != "" {
					t.Errorf("linear=%v decision (-want +got):\n%s\nreason: %s", eng.linear, diff, d.Reason)
				}
			}
		})
	}
}

func TestDecidePrincipals(t *testing.T) {
	policies := pol("exact", `{rules: [{from: [{source: {principals: [cluster.local/ns/a/sa/b]}}]}]}`) +
		pol("suffix", `{rules: [{from: [{source: {principals: ["*/ns/s/sa/x"]}}]}]}`) +
		pol("prefix", `{rules: [{from: [{source: {principals: [other.org/ns/p/*]}}]}]}`)
	runDecide(t, policies, Options{TrustDomain: "example.org", TrustDomainAliases: []string{"old.org"}}, []decideCase{
		{"cluster.local means the local trust domain", request.Request{Source: peer("spiffe://example.org/ns/a/sa/b")}, allowBy("exact", 0)},
		{"alias", request.Request{Source: peer("spiffe://old.org/ns/a/sa/b")}, allowBy("exact", 0)},
		{"literal cluster.local is no longer local", request.Request{Source: peer("spiffe://cluster.local/ns/a/sa/b")}, denyDefault},
		{"foreign trust domain", request.Request{Source: peer("spiffe://evil.org/ns/a/sa/b")}, denyDefault},
		{"exact does not match longer id", request.Request{Source: peer("spiffe://example.org/ns/a/sa/bb")}, denyDefault},
		{"suffix any trust domain", request.Request{Source: peer("spiffe://evil.org/ns/s/sa/x")}, allowBy("suffix", 0)},
		{"prefix", request.Request{Source: peer("spiffe://other.org/ns/p/sa/any")}, allowBy("prefix", 0)},
		{"prefix is not a substring", request.Request{Source: peer("spiffe://x.other.org/ns/p/sa/any")}, denyDefault},
		{"plaintext", request.Request{}, denyDefault},
		{"no spiffe scheme", request.Request{Source: peer("example.org/ns/a/sa/b")}, denyDefault},
	})
}

func TestDecideNotPrincipalsAndPresence(t *testing.T) {
	// The "require mTLS" pattern: plaintext satisfies notPrincipals ["*"].
	policies := pol("mtls", `{action: DENY, rules: [{from: [{source: {notPrincipals: ["*"]}}]}]}`) +
		pol("any", `{rules: [{from: [{source: {principals: ["*"]}}]}]}`)
	runDecide(t, policies, Options{}, []decideCase{
		{"plaintext denied", request.Request{}, denyBy("mtls", 0)},
		{"any peer allowed", request.Request{Source: peer("spiffe://x/y")}, allowBy("any", 0)},
	})
}

func TestDecideNamespacesServiceAccountsTrustDomains(t *testing.T) {
	policies := pol("ns", `{rules: [{from: [{source: {namespaces: [foo]}}]}]}`) +
		pol("nswild", `{rules: [{from: [{source: {namespaces: ["team-*"]}}]}]}`) +
		pol("sa", `{rules: [{from: [{source: {serviceAccounts: [ns1/my.sa, local]}}]}]}`) +
		pol("td", `{rules: [{from: [{source: {trustDomains: ["*.partner.org"]}}]}]}`)
	runDecide(t, policies, Options{}, []decideCase{
		{"namespace", request.Request{Source: peer("spiffe://td/ns/foo/sa/x")}, allowBy("ns", 0)},
		{"namespace is a whole segment", request.Request{Source: peer("spiffe://td/ns/foobar/sa/x")}, denyDefault},
		{"namespace wildcard", request.Request{Source: peer("spiffe://td/ns/team-a/sa/x")}, allowBy("nswild", 0)},
		{"service account", request.Request{Source: peer("spiffe://td/ns/ns1/sa/my.sa")}, allowBy("sa", 0)},
		{"service account dot is literal (CVE-2026-39350)", request.Request{Source: peer("spiffe://td/ns/ns1/sa/myxsa")}, denyDefault},
		{"service account extra segments", request.Request{Source: peer("spiffe://td/ns/ns1/k/v/sa/my.sa/extra")}, allowBy("sa", 0)},
		{"bare service account is in the policy namespace", request.Request{Source: peer("spiffe://td/ns/ns/sa/local")}, allowBy("sa", 0)},
		{"bare service account other namespace", request.Request{Source: peer("spiffe://td/ns/other/sa/local")}, denyDefault},
		{"trust domain suffix", request.Request{Source: peer("spiffe://a.partner.org/ns/q/sa/x")}, allowBy("td", 0)},
		{"trust domain suffix is not a path", request.Request{Source: peer("spiffe://evil.org/x.partner.org/sa/x")}, denyDefault},
	})
}

func TestDecideRequestPrincipals(t *testing.T) {
	policies := pol("exact", `{rules: [{from: [{source: {requestPrincipals: [https://iss.example/alice]}}]}]}`) +
		pol("subject-suffix", `{rules: [{from: [{source: {requestPrincipals: ["*@corp.example"]}}]}]}`) +
		pol("issuer-any-sub", `{rules: [{from: [{source: {requestPrincipals: ["https://other.example/*"]}}]}]}`) +
		pol("deny-anon", `{action: DENY, rules: [{from: [{source: {notRequestPrincipals: ["*"]}}]}]}`)
	runDecide(t, policies, Options{}, []decideCase{
		{"exact", request.Request{Auth: jwt("https://iss.example", "alice", nil)}, allowBy("exact", 0)},
		{"split at last slash", request.Request{Auth: jwt("https://iss.example/alice", "", nil)}, denyBy("deny-anon", 0)},
		{"subject suffix", request.Request{Auth: jwt("https://any", "bob@corp.example", nil)}, allowBy("subject-suffix", 0)},
		{"issuer suffix is not subject", request.Request{Auth: jwt("https://x@corp.example", "bob", nil)}, denyDefault},
		{"any subject", request.Request{Auth: jwt("https://other.example", "z", nil)}, allowBy("issuer-any-sub", 0)},
		{"anonymous denied", request.Request{}, denyBy("deny-anon", 0)},
	})
}

func TestDecideIPs(t *testing.T) {
	policies := pol("ip", `{rules: [{from: [{source: {ipBlocks: [10.0.0.0/8, "2001:db8::1"], notIpBlocks: [10.9.0.0/16]}}]}]}`) +
		pol("remote", `{rules: [{from: [{source: {remoteIpBlocks: [192.0.2.7]}}]}]}`) +
		pol("dest", `{rules: [{when: [{key: destination.ip, values: [198.51.100.0/24]}, {key: destination.port, values: ["8443"]}]}]}`)
	ip := netip.MustParseAddr
	runDecide(t, policies, Options{}, []decideCase{
		{"cidr", request.Request{Source: request.Peer{IP: ip("10.1.2.3")}}, allowBy("ip", 0)},
		{"mapped v4", request.Request{Source: request.Peer{IP: ip("::ffff:10.1.2.3")}}, allowBy("ip", 0)},
		{"not block", request.Request{Source: request.Peer{IP: ip("10.9.2.3")}}, denyDefault},
		{"v6 single", request.Request{Source: request.Peer{IP: ip("2001:db8::1")}}, allowBy("ip", 0)},
		{"remote ip", request.Request{RemoteIP: ip("192.0.2.7"), Source: request.Peer{IP: ip("172.16.0.1")}}, allowBy("remote", 0)},
		{"peer ip is not remote ip", request.Request{Source: request.Peer{IP: ip("192.0.2.7")}}, denyDefault},
		{"destination", request.Request{Destination: request.Destination{IP: ip("198.51.100.9"), Port: 8443}}, allowBy("dest", 0)},
		{"destination wrong port", request.Request{Destination: request.Destination{IP: ip("198.51.100.9"), Port: 8080}}, denyDefault},
		{"nothing", request.Request{}, denyDefault},
	})
}

func TestDecideOperations(t *testing.T) {
	policies := pol("host", `{rules: [{to: [{operation: {hosts: [secret.example, "api.example:*"], methods: [GET]}}]}]}`) +
		pol("suffix", `{rules: [{to: [{operation: {hosts: ["*.svc.example"], ports: ["8443"]}}]}]}`) +
		pol("paths", `{rules: [{to: [{operation: {paths: [/exact, /pre/*, "*.png", "/api/*/admin"]}}]}]}`) +
		pol("tmpl", `{rules: [{to: [{operation: {paths: ["/users/{*}/profile", "/store/{**}/cart"]}}]}]}`) +
		pol("notpath", `{rules: [{to: [{operation: {methods: [POST], notPaths: ["/admin*"]}}]}]}`)
	runDecide(t, policies, Options{}, []decideCase{
		{"host case-insensitive (CVE-2021-39155)", at("SeCrEt.Example", request.Request{Method: "GET"}), allowBy("host", 0)},
		{"host trailing dot", at("secret.example.", request.Request{Method: "GET"}), allowBy("host", 0)},
		{"host without port in value matches any port", at("secret.example:443", request.Request{Method: "GET"}), allowBy("host", 0)},
		{"host with port wildcard", at("API.example:8443", request.Request{Method: "GET"}), allowBy("host", 0)},
		{"host with port wildcard, no port", at("api.example", request.Request{Method: "GET"}), allowBy("host", 0)},
		{"method case-sensitive", at("secret.example", request.Request{Method: "get"}), denyDefault},
		{"host suffix and port", at("a.svc.example", request.Request{Destination: request.Destination{Port: 8443}}), allowBy("suffix", 0)},
		{"host suffix wrong port", at("a.svc.example", request.Request{Destination: request.Destination{Port: 80}}), denyDefault},
		{"host suffix, port in host: ports judge the destination", at("a.svc.example:8443", request.Request{Destination: request.Destination{Port: 80}}), denyDefault},
		{"host suffix with port in host", at("A.svc.example.:8443", request.Request{Destination: request.Destination{Port: 8443}}), allowBy("suffix", 0)},
		{"path exact", request.Request{Path: "/exact"}, allowBy("paths", 0)},
		{"path exact is not prefix", request.Request{Path: "/exact/"}, denyDefault},
		{"path prefix", request.Request{Path: "/pre/x/y"}, allowBy("paths", 0)},
		{"path suffix", request.Request{Path: "/img/a.png"}, allowBy("paths", 0)},
		{"middle star is literal", request.Request{Path: "/api/v1/admin"}, denyDefault},
		{"middle star literal matches itself", request.Request{Path: "/api/*/admin"}, allowBy("paths", 0)},
		{"template one segment", request.Request{Path: "/users/42/profile"}, allowBy("tmpl", 0)},
		{"template one segment not two", request.Request{Path: "/users/4/2/profile"}, denyDefault},
		{"template empty segment", request.Request{Path: "/users//profile"}, denyDefault},
		{"template double star", request.Request{Path: "/store/a/b/cart"}, allowBy("tmpl", 0)},
		{"template double star empty", request.Request{Path: "/store//cart"}, allowBy("tmpl", 0)},
		{"template double star needs slashes", request.Request{Path: "/store/cart"}, denyDefault},
		{"notPaths", request.Request{Method: "POST", Path: "/public"}, allowBy("notpath", 0)},
		{"notPaths excluded", request.Request{Method: "POST", Path: "/administrator"}, denyDefault},
		{"notPaths with absent path holds", request.Request{Method: "POST"}, allowBy("notpath", 0)},
		{"no path no match", request.Request{}, denyDefault},
	})
}

func TestDecideHeadersClaims(t *testing.T) {
	policies := pol("hdr", `{rules: [{when: [{key: "request.headers[X-Role]", values: [admin]}]}]}`) +
		pol("deny-hdr", `{action: DENY, rules: [{when: [{key: "request.headers[x-block]", values: [yes]}]}]}`) +
		pol("deny-not", `{action: DENY, rules: [{when: [{key: "request.headers[x-env]", notValues: [prod]}]}]}`) +
		pol("claims", `{rules: [{when: [{key: "request.auth.claims[org][team]", values: [blue]}, {key: "request.auth.claims[scope]", values: [write]}]}]}`) +
		pol("groups", `{rules: [{when: [{key: "request.auth.claims[groups]", values: [ops]}, {key: request.auth.audiences, values: [api]}, {key: request.auth.presenter, values: [cli]}]}]}`) +
		pol("sni", `{rules: [{when: [{key: connection.sni, values: ["*.sni.example"]}]}]}`) +
		pol("pseudo", `{rules: [{when: [{key: "request.headers[:path]", values: ["/q?x=1"]}]}]}`)
	h := func(kv ...string) map[string][]string {
		m := map[string][]string{"X-Env": {"prod"}}
		for i := 0; i < len(kv); i += 2 {
			k := textproto.CanonicalMIMEHeaderKey(kv[i])
			m[k] = append(m[k], kv[i+1])
		}
		return m
	}
	tok := func(c map[string]any, aud ...string) *request.Auth {
		a := jwt("i", "s", c)
		a.Audiences, a.Presenter = aud, "cli"
		return a
	}
	runDecide(t, policies, Options{}, []decideCase{
		{"header", request.Request{Headers: h("x-role", "admin")}, allowBy("hdr", 0)},
		{"header whitespace trimmed (CVE-2019-18802)", request.Request{Headers: h("x-role", "admin ")}, allowBy("hdr", 0)},
		{"repeated header in ALLOW needs every value", request.Request{Headers: h("x-role", "admin", "x-role", "user")}, denyDefault},
		{"repeated header in DENY needs one value (CVE-2026-26308)", request.Request{Headers: h("x-block", "no", "x-block", "yes", "x-role", "admin")}, denyBy("deny-hdr", 0)},
		{"absent header satisfies notValues", request.Request{Headers: map[string][]string{"X-Role": {"admin"}}}, denyBy("deny-not", 0)},
		{"comma-joined header in DENY is judged per element (CVE-2026-26308)", request.Request{Headers: h("x-block", "no, yes", "x-role", "admin")}, denyBy("deny-hdr", 0)},
		{"repeated header notValues in DENY", request.Request{Headers: h("x-env", "dev", "x-role", "admin")}, denyBy("deny-not", 0)},
		{"nested claim and scope", request.Request{Headers: h(), Auth: tok(map[string]any{"org": map[string]any{"team": "blue"}, "scope": "read write"})}, allowBy("claims", 0)},
		{"scope not split for other claims", request.Request{Headers: h(), Auth: tok(map[string]any{"org": map[string]any{"team": "blue red"}, "scope": "write"})}, denyDefault},
		{"list claim any element", request.Request{Headers: h(), Auth: tok(map[string]any{"groups": []any{"dev", "ops"}}, "web", "api")}, allowBy("groups", 0)},
		{"non-string claim never matches", request.Request{Headers: h(), Auth: tok(map[string]any{"org": map[string]any{"team": true}, "scope": "write"})}, denyDefault},
		{"sni", request.Request{Headers: h(), SNI: "a.sni.example"}, allowBy("sni", 0)},
		{"path pseudo header carries query", request.Request{Headers: h(), Path: "/q", RawQuery: "x=1"}, allowBy("pseudo", 0)},
	})
}

// An ALLOW notValues must see a banned value however the client sends the
// header: on its own line, or joined to another with a comma (RFC 9110 lets a
// proxy join field lines, and the upstream may split them again).
func TestAllowNotValuesSeesEveryElement(t *testing.T) {
	h := func(vals ...string) map[string][]string { return map[string][]string{"X-Tier": vals} }
	runDecide(t, pol("not-banned", `{rules: [{when: [{key: "request.headers[x-tier]", values: ["*"]}, {key: "request.headers[x-tier]", notValues: [banned]}]}]}`), Options{}, []decideCase{
		{"allowed value", request.Request{Headers: h("user")}, allowBy("not-banned", 0)},
		{"banned value", request.Request{Headers: h("banned")}, denyDefault},
		{"banned on a second line", request.Request{Headers: h("user", "banned")}, denyDefault},
		{"banned joined with a comma", request.Request{Headers: h("user, banned")}, denyDefault},
		{"banned joined without a space", request.Request{Headers: h("user,banned")}, denyDefault},
	})
	// Elements never help an ALLOW values match: the whole value must match.
	runDecide(t, pol("user-only", `{rules: [{when: [{key: "request.headers[x-tier]", values: [user]}]}]}`), Options{}, []decideCase{
		{"user", request.Request{Headers: h("user")}, allowBy("user-only", 0)},
		{"user joined with banned", request.Request{Headers: h("user, banned")}, denyDefault},
	})
}

func TestDecideCombination(t *testing.T) {
	tests := []struct {
		name     string
		policies string
		req      request.Request
		want     verdict
	}{
		{"no policies allow", "", request.Request{}, allowDefault},
		{"spec {} allows nothing", pol("nothing", `{}`), request.Request{Path: "/"}, denyDefault},
		{"rules [{}] allows all", pol("all", `{rules: [{}]}`), request.Request{}, allowBy("all", 0)},
		{"deny all beats allow all", pol("all", `{rules: [{}]}`) + pol("deny", `{action: DENY, rules: [{}]}`), request.Request{}, denyBy("deny", 0)},
		{"deny only: others allowed", pol("deny", `{action: DENY, rules: [{to: [{operation: {paths: [/x]}}]}]}`), request.Request{Path: "/y"}, allowDefault},
		{"audit does not create the ALLOW layer", pol("audit", `{action: AUDIT, rules: [{}]}`), request.Request{}, allowDefault},
		{"dry-run allow does not create the ALLOW layer", dryRun("dry", `{}`), request.Request{}, allowDefault},
		{"dry-run deny not enforced", dryRun("dry", `{action: DENY, rules: [{}]}`), request.Request{}, allowDefault},
		{"OR across rules", pol("p", `{rules: [{to: [{operation: {paths: [/a]}}]}, {to: [{operation: {paths: [/b]}}]}]}`), request.Request{Path: "/b"}, allowBy("p", 1)},
		{"AND across from and to", pol("p", `{rules: [{from: [{source: {principals: ["*"]}}], to: [{operation: {paths: [/a]}}]}]}`), request.Request{Path: "/a"}, denyDefault},
		{"OR across to entries", pol("p", `{rules: [{to: [{operation: {paths: [/a]}}, {operation: {methods: [PUT]}}]}]}`), request.Request{Path: "/z", Method: "PUT"}, allowBy("p", 0)},
		{"AND within operation", pol("p", `{rules: [{to: [{operation: {paths: [/a], methods: [PUT]}}]}]}`), request.Request{Path: "/a", Method: "GET"}, denyDefault},
		{"when ANDed", pol("p", `{rules: [{when: [{key: "request.headers[a]", values: ["*"]}, {key: "request.headers[b]", values: ["*"]}]}]}`), request.Request{Headers: map[string][]string{"A": {""}}}, denyDefault},
		{"header presence allows empty", pol("p", `{rules: [{when: [{key: "request.headers[a]", values: ["*"]}]}]}`), request.Request{Headers: map[string][]string{"A": {""}}}, allowBy("p", 0)},
		{"values and notValues", pol("p", `{rules: [{when: [{key: "request.headers[a]", values: ["v*"], notValues: [v2]}]}]}`), request.Request{Headers: map[string][]string{"A": {"v2"}}}, denyDefault},
		{"first matching rule is reported", pol("p", `{action: DENY, rules: [{to: [{operation: {paths: [/b]}}]}, {}]}`), request.Request{Path: "/b"}, denyBy("p", 0)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			runDecide(t, tc.policies, Options{}, []decideCase{{"", tc.req, tc.want}})
		})
	}
}

func TestDecideTCP(t *testing.T) {
	tcp := func(port int) request.Request {
		return request.Request{Protocol: request.TCP, Destination: request.Destination{Port: port}, Source: peer("spiffe://td/ns/a/sa/b")}
	}
	tests := []struct {
		name     string
		policies string
		req      request.Request
		want     verdict
	}{
		{"ALLOW rule with HTTP field is dropped", pol("a", `{rules: [{to: [{operation: {methods: [GET]}}]}]}`), tcp(80), denyDefault},
		{"ALLOW rule without HTTP field applies", pol("a", `{rules: [{to: [{operation: {methods: [GET]}}]}, {to: [{operation: {ports: ["80"]}}]}]}`), tcp(80), allowBy("a", 1)},
		{"DENY with HTTP field widens to all", pol("d", `{action: DENY, rules: [{to: [{operation: {methods: [GET]}}]}]}`), tcp(80), denyBy("d", 0)},
		{"DENY with HTTP field and port", pol("d", `{action: DENY, rules: [{to: [{operation: {methods: [GET], ports: ["9000"]}}]}]}`), tcp(80), allowDefault},
		{"DENY with HTTP field and port matches port", pol("d", `{action: DENY, rules: [{to: [{operation: {methods: [GET], ports: ["9000"]}}]}]}`), tcp(9000), denyBy("d", 0)},
		{"DENY drops HTTP when keys", pol("d", `{action: DENY, rules: [{when: [{key: "request.headers[x]", values: [y]}]}]}`), tcp(1), denyBy("d", 0)},
		{"HTTP traffic keeps HTTP fields", pol("d", `{action: DENY, rules: [{to: [{operation: {methods: [GET]}}]}]}`), request.Request{Method: "POST"}, allowDefault},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			runDecide(t, tc.policies, Options{}, []decideCase{{"", tc.req, tc.want}})
		})
	}
}

func TestDecideExtensions(t *testing.T) {
	policies := ext("re", `{rules: [{to: [{operation: {pathRegex: ["/v[0-9]+/items"]}}]}]}`) +
		ext("q", `{rules: [{to: [{operation: {paths: [/search]}}], when: [{key: "request.query[tenant]", values: [acme], notValues: [evil]}]}]}`) +
		ext("dq", `{action: DENY, rules: [{when: [{key: "request.query[debug]", values: ["1"]}]}]}`)
	q := func(kv ...string) map[string][]string {
		m := map[string][]string{}
		for i := 0; i < len(kv); i += 2 {
			m[kv[i]] = append(m[kv[i]], kv[i+1])
		}
		return m
	}
	runDecide(t, policies, Options{}, []decideCase{
		{"regex whole path", request.Request{Path: "/v2/items"}, allowBy("re", 0)},
		{"regex must match whole path", request.Request{Path: "/v2/items/x"}, denyDefault},
		{"query", request.Request{Path: "/search", Query: q("tenant", "acme")}, allowBy("q", 0)},
		{"repeated query in ALLOW needs every value", request.Request{Path: "/search", Query: q("tenant", "acme", "tenant", "other")}, denyDefault},
		{"absent query", request.Request{Path: "/search"}, denyDefault},
		{"repeated query in DENY needs one value", request.Request{Path: "/v1/items", Query: q("debug", "0", "debug", "1")}, denyBy("dq", 0)},
	})
}

func TestDecisionRecord(t *testing.T) {
	s := mustCompile(t, pol("allow", `{rules: [{to: [{operation: {paths: [/a]}}]}]}`)+
		pol("audit", `{action: AUDIT, rules: [{}]}`)+
		dryRun("dry-deny", `{action: DENY, rules: [{to: [{operation: {paths: [/a]}}]}]}`)+
		dryRun("dry-allow", `{rules: [{to: [{operation: {paths: [/b]}}]}]}`), Options{})
	got := s.EngineAllPolicies().Decide(&request.Request{Path: "/a"})
	want := Decision{
		Allow: true, Action: "ALLOW", Policy: "ns/allow", Rule: 0, PolicyVersion: "v1",
		Reason: "allowed by ALLOW policy ns/allow rule 0 (p.yaml:4)",
		Audit:  true, AuditPolicy: "ns/audit",
		Shadow: []Decision{
			{Allow: false, Action: "DENY", Policy: "ns/dry-deny", Rule: 0, DryRun: true, PolicyVersion: "v1",
				Reason: "dry-run, not enforced: would be denied by DENY policy ns/dry-deny rule 0 (p.yaml:14)"},
			{Rule: -1, DryRun: true, PolicyVersion: "v1", Reason: reasonDryNoMatch},
		},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("decision (-want +got):\n%s", diff)
	}
}

func TestEngineSelector(t *testing.T) {
	src := pol("all", `{action: DENY, rules: [{to: [{operation: {paths: [/all]}}]}]}`) +
		pol("egress", `{selector: {matchLabels: {role: egress}}, action: DENY, rules: [{to: [{operation: {paths: [/eg]}}]}]}`)
	s := mustCompile(t, src, Options{})
	ingress := s.Engine(map[string]string{"role": "ingress"})
	egress := s.Engine(map[string]string{"role": "egress", "zone": "a"})
	if s.Engine(map[string]string{"zone": "a", "role": "egress"}) != egress {
		t.Error("engine for the same labels was rebuilt")
	}
	for _, tc := range []struct {
		e    *Engine
		path string
		want bool
	}{
		{ingress, "/all", false}, {ingress, "/eg", true}, {egress, "/all", false}, {egress, "/eg", false},
	} {
		if got := tc.e.Decide(&request.Request{Path: tc.path}).Allow; got != tc.want {
			t.Errorf("%s: allow=%v, want %v", tc.path, got, tc.want)
		}
	}
}

func TestEngineNamespaces(t *testing.T) {
	// One DENY per placement, each on its own path, so a denied path names the
	// policies that applied.
	in := func(ns, name, selector, path string) string {
		return "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: " + name + ns + "}\n" +
			"spec: {" + selector + "action: DENY, rules: [{to: [{operation: {paths: [" + path + "]}}]}]}\n---\n"
	}
	src := in(", namespace: mesh-root", "root", "", "/root") +
		in(", namespace: mesh-root", "root-egress", "selector: {matchLabels: {role: egress}}, ", "/root-egress") +
		in(", namespace: edge", "edge", "", "/edge") +
		in(", namespace: edge", "edge-egress", "selector: {matchLabels: {role: egress}}, ", "/edge-egress") +
		in(", namespace: payments", "payments", "", "/payments") +
		in("", "no-namespace", "", "/default")
	s := mustCompile(t, src, Options{RootNamespace: "mesh-root"})
	paths := []string{"/root", "/root-egress", "/edge", "/edge-egress", "/payments", "/default"}
	for _, tc := range []struct {
		name   string
		w      config.Workload
		denied []string
	}{
		{"no namespace: every namespace", config.Workload{Labels: map[string]string{"role": "ingress"}},
			[]string{"/root", "/edge", "/payments", "/default"}},
		{"edge ingress", config.Workload{Namespace: "edge", Labels: map[string]string{"role": "ingress"}},
			[]string{"/root", "/edge"}},
		{"edge egress", config.Workload{Namespace: "edge", Labels: map[string]string{"role": "egress"}},
			[]string{"/root", "/root-egress", "/edge", "/edge-egress"}},
		{"root namespace listener", config.Workload{Namespace: "mesh-root", Labels: map[string]string{"role": "egress"}},
			[]string{"/root", "/root-egress"}},
		{"metadata without namespace is in default", config.Workload{Namespace: "default"},
			[]string{"/root", "/default"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := s.EngineFor(tc.w)
			if s.EngineFor(tc.w) != e {
				t.Error("engine for the same workload was rebuilt")
			}
			var denied []string
			for _, p := range paths {
				if !e.Decide(&request.Request{Path: p}).Allow {
					denied = append(denied, p)
				}
			}
			if diff := cmp.Diff(tc.denied, denied); diff != "" {
				t.Errorf("denied paths (-want +got):\n%s", diff)
			}
		})
	}
	if s.EngineFor(config.Workload{Namespace: "edge"}) == s.EngineFor(config.Workload{Namespace: "payments"}) {
		t.Error("engines of two namespaces share a cache entry")
	}
	edgeIngress := config.Workload{Namespace: "edge", Labels: map[string]string{"role": "ingress"}}
	if n := s.EngineFor(edgeIngress).Len(); n != 2 {
		t.Errorf("edge ingress engine applies %d policies, want 2", n)
	}
	// With an edge ingress and a default-namespace egress, two documents apply nowhere.
	got := s.Unselected(edgeIngress, config.Workload{Namespace: "default", Labels: map[string]string{"role": "egress"}})
	want := []string{"p.yaml:16: AuthorizationPolicy edge/edge-egress", "p.yaml:21: AuthorizationPolicy payments/payments"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Unselected (-want +got):\n%s", diff)
	}
}

func TestHostIsCanonical(t *testing.T) {
	runDecide(t, pol("k", `{rules: [{to: [{operation: {hosts: [k.example]}}]}]}`), Options{}, []decideCase{
		{"ascii upper", at("K.EXAMPLE", request.Request{}), allowBy("k", 0)},
		// UTS #46 maps the Kelvin sign to "k": routing and policy both see
		// k.example, and so does the upstream.
		{"kelvin sign is k once canonical", at("\u212a.example", request.Request{}), allowBy("k", 0)},
		{"another host", at("kk.example", request.Request{}), denyDefault},
	})
}

func TestDecidePseudoHeaders(t *testing.T) {
	policies := pol("m", `{rules: [{when: [{key: "request.headers[:method]", values: [PUT]}, {key: "request.headers[:authority]", values: ["*.example"]}]}]}`) +
		pol("p", `{rules: [{when: [{key: "request.headers[:path]", values: ["/only"]}]}]}`)
	runDecide(t, policies, Options{}, []decideCase{
		{"method and authority", request.Request{Method: "PUT", Host: "a.example"}, allowBy("m", 0)},
		{"authority absent", request.Request{Method: "PUT"}, denyDefault},
		{"path without query", request.Request{Path: "/only"}, allowBy("p", 0)},
		{"path with query", request.Request{Path: "/only", RawQuery: "a=b"}, denyDefault},
	})
}

func TestEngineUsesQuery(t *testing.T) {
	plain := mustCompile(t, `apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: p, namespace: ns}
spec: {rules: [{to: [{operation: {paths: ["/a"]}}]}]}
`, Options{}).EngineAllPolicies()
	withQuery := mustCompile(t, `apiVersion: tollgate.dev/v1
kind: AuthorizationPolicy
metadata: {name: q, namespace: ns}
spec: {rules: [{when: [{key: "request.query[format]", values: [csv]}]}]}
`, Options{}).EngineAllPolicies()
	if plain.UsesQuery() || !withQuery.UsesQuery() || !withQuery.Linear().UsesQuery() {
		t.Errorf("UsesQuery: plain=%v withQuery=%v", plain.UsesQuery(), withQuery.UsesQuery())
	}
}
