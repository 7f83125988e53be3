package policy

import (
	"errors"
	"strings"
	"testing"

	"tollgate.dev/tollgate/internal/config"
)

// TestLoadErrors covers every malformed shape of reference §11 and Tollgate's own
// refusals: each must be reported with its position and field.
func TestLoadErrors(t *testing.T) {
	rule := func(r string) string { return pol("p", `{rules: [`+r+`]}`) }
	tests := []struct {
		name string
		src  string
		want string // the whole error text
	}{
		{"unknown spec field", pol("p", `{rules: [{}], actions: DENY}`), `p.yaml:4:21: spec.actions: unknown field (did you mean "action"?)`},
		{"unknown source field", rule(`{from: [{source: {principal: [a]}}]}`), `p.yaml:4:34: spec.rules[0].from[0].source.principal: unknown field (did you mean "principals"?)`},
		{"extension field in Istio document", rule(`{to: [{operation: {pathRegex: [a]}}]}`), `p.yaml:4:46: spec.rules[0].to[0].operation.pathRegex: pathRegex is a Tollgate extension: use apiVersion tollgate.dev/v1`},
		{"extension key in Istio document", rule(`{when: [{key: "request.query[a]", values: [b]}]}`), `p.yaml:4:30: spec.rules[0].when[0].key: request.query[...] is a Tollgate extension: use apiVersion tollgate.dev/v1`},
		{"custom refused", pol("p", `{action: CUSTOM, provider: {name: x}, rules: [{}]}`), `p.yaml:4:16: spec.action: CUSTOM is not supported: Tollgate has no external authorization provider, and ignoring the policy would drop its rules (use ALLOW or DENY)`},
		{"unknown action", pol("p", `{action: allow}`), `p.yaml:4:16: spec.action: unknown action (got "allow", want ALLOW, DENY or AUDIT)`},
		{"provider without CUSTOM", pol("p", `{action: DENY, provider: {name: x}, rules: [{}]}`), `p.yaml:4:32: spec.provider: provider is only allowed with action CUSTOM`},
		{"deny without rules", pol("p", `{action: DENY}`), `p.yaml:4:7: spec: DENY policy without rules is meaningless (add an empty rule {} to deny everything)`},
		{"targetRefs", pol("p", `{targetRefs: [{kind: Gateway, name: g}]}`), `p.yaml:4:20: spec.targetRefs: not supported: Tollgate listeners are chosen with spec.selector.matchLabels`},
		{"selector and targetRef", pol("p", `{selector: {matchLabels: {a: b}}, targetRef: {kind: Gateway, name: g}}`), `p.yaml:4:52: spec.targetRef: selector and targetRef(s) cannot both be set`},
		{"empty from", rule(`{from: []}`), `p.yaml:4:23: spec.rules[0].from: empty list: omit from to match any source`},
		{"empty to", rule(`{to: []}`), `p.yaml:4:21: spec.rules[0].to: empty list: omit to to match any operation`},
		{"nil source", rule(`{from: [{}]}`), `p.yaml:4:24: spec.rules[0].from[0]: source is required`},
		{"nil operation", rule(`{to: [{operation: null}]}`), `p.yaml:4:22: spec.rules[0].to[0]: operation is required`},
		{"empty source", rule(`{from: [{source: {}}]}`), `p.yaml:4:33: spec.rules[0].from[0].source: must not be empty: set at least one field`},
		{"empty operation", rule(`{to: [{operation: {methods: []}}]}`), `p.yaml:4:34: spec.rules[0].to[0].operation: must not be empty: set at least one field`},
		{"empty string", rule(`{to: [{operation: {methods: [GET, ""]}}]}`), `p.yaml:4:50: spec.rules[0].to[0].operation.methods[1]: empty value`},
		{"bad ip", rule(`{from: [{source: {ipBlocks: [10.0.0.300]}}]}`), `p.yaml:4:45: spec.rules[0].from[0].source.ipBlocks[0]: invalid IP address (got "10.0.0.300", want an IP or CIDR)`},
		{"bad cidr", rule(`{from: [{source: {notRemoteIpBlocks: [10.0.0.0/33]}}]}`), `p.yaml:4:54: spec.rules[0].from[0].source.notRemoteIpBlocks[0]: invalid CIDR (got "10.0.0.0/33", want e.g. 10.0.0.0/8)`},
		{"bad port", rule(`{to: [{operation: {ports: ["65536"]}}]}`), `p.yaml:4:43: spec.rules[0].to[0].operation.ports[0]: invalid port (got "65536", want an integer 0-65535)`},
		{"wildcard port", rule(`{to: [{operation: {notPorts: ["*"]}}]}`), `p.yaml:4:46: spec.rules[0].to[0].operation.notPorts[0]: invalid port (got "*", want an integer 0-65535)`},
		{"spiffe prefix", rule(`{from: [{source: {principals: ["spiffe://td/ns/a/sa/b"]}}]}`), `p.yaml:4:47: spec.rules[0].from[0].source.principals[0]: write principals without the spiffe:// prefix (got "spiffe://td/ns/a/sa/b", want "td/ns/a/sa/b"): Istio would silently never match this value (apiVersion tollgate.dev/v1 accepts SPIFFE ID patterns)`},
		{"service accounts with principals", rule(`{from: [{source: {serviceAccounts: [a/b], notPrincipals: [x]}}]}`), `p.yaml:4:33: spec.rules[0].from[0].source: serviceAccounts cannot be combined with principals or namespaces`},
		{"service account wildcard", rule(`{from: [{source: {serviceAccounts: ["a/*"]}}]}`), `p.yaml:4:52: spec.rules[0].from[0].source.serviceAccounts[0]: wildcards are not allowed in serviceAccounts (got "a/*")`},
		{"service account slashes", rule(`{from: [{source: {notServiceAccounts: [a/b/c]}}]}`), `p.yaml:4:55: spec.rules[0].from[0].source.notServiceAccounts[0]: want "namespace/serviceaccount" or "serviceaccount" (got "a/b/c")`},
		{"too many service accounts", rule(`{from: [{source: {serviceAccounts: [a,b,c,d,e,f,g,h,i,j,k,l,m,n,o,p,q]}}]}`), `p.yaml:4:51: spec.rules[0].from[0].source.serviceAccounts: too many service accounts (got 17, want at most 16)`},
		{"service account too long", rule(`{from: [{source: {serviceAccounts: [` + strings.Repeat("a", 321) + `]}}]}`), `p.yaml:4:52: spec.rules[0].from[0].source.serviceAccounts[0]: too long (got 321 characters, want at most 320)`},
		{"trust domain slash", rule(`{from: [{source: {trustDomains: [a/b]}}]}`), `p.yaml:4:49: spec.rules[0].from[0].source.trustDomains[0]: invalid trust domain (got "a/b", want a name without '/' and at most one '*' at its start or end)`},
		{"trust domain middle star", rule(`{from: [{source: {notTrustDomains: [a*b]}}]}`), `p.yaml:4:52: spec.rules[0].from[0].source.notTrustDomains[0]: invalid trust domain (got "a*b", want a name without '/' and at most one '*' at its start or end)`},
		{"trust domain two stars", rule(`{from: [{source: {trustDomains: ["*a*"]}}]}`), `p.yaml:4:49: spec.rules[0].from[0].source.trustDomains[0]: invalid trust domain (got "*a*", want a name without '/' and at most one '*' at its start or end)`},
		{"template not whole segment", rule(`{to: [{operation: {paths: ["/foo/{*}.txt"]}}]}`), `p.yaml:4:43: spec.rules[0].to[0].operation.paths[0]: invalid path template "/foo/{*}.txt": segment 2 "{*}.txt": '*', '{' and '}' are only allowed as a whole {*} or {**} segment`},
		{"template double star not last", rule(`{to: [{operation: {paths: ["/{**}/a/{*}"]}}]}`), `p.yaml:4:43: spec.rules[0].to[0].operation.paths[0]: invalid path template "/{**}/a/{*}": {**} must be the last operator`},
		{"template star outside operator", rule(`{to: [{operation: {notPaths: ["/a*/{*}"]}}]}`), `p.yaml:4:46: spec.rules[0].to[0].operation.notPaths[0]: invalid path template "/a*/{*}": segment 1 "a*": '*', '{' and '}' are only allowed as a whole {*} or {**} segment`},
		{"template non-pchar", rule(`{to: [{operation: {paths: ["/a b/{*}"]}}]}`), `p.yaml:4:43: spec.rules[0].to[0].operation.paths[0]: invalid path template "/a b/{*}": segment 1 "a b": character ' ' is not allowed in a path (RFC 3986 pchar)`},
		{"when without key", rule(`{when: [{values: [a]}]}`), `p.yaml:4:24: spec.rules[0].when[0].key: required`},
		{"when without values", rule(`{when: [{key: source.ip}]}`), `p.yaml:4:24: spec.rules[0].when[0]: set values or notValues`},
		{"when empty value", rule(`{when: [{key: source.ip, notValues: [""]}]}`), `p.yaml:4:53: spec.rules[0].when[0].notValues[0]: empty value`},
		{"unknown key", rule(`{when: [{key: source.IP, values: [a]}]}`), `p.yaml:4:30: spec.rules[0].when[0].key: unknown key "source.IP" (did you mean "source.ip"?)`},
		{"removed key", rule(`{when: [{key: destination.labels, values: [a]}]}`), `p.yaml:4:30: spec.rules[0].when[0].key: "destination.labels" was removed from Istio (v1alpha1) and is not supported`},
		{"malformed header key", rule(`{when: [{key: "request.headers[a", values: [a]}]}`), `p.yaml:4:30: spec.rules[0].when[0].key: invalid header key (got "request.headers[a", want request.headers[NAME])`},
		{"empty header name", rule(`{when: [{key: "request.headers[]", values: [a]}]}`), `p.yaml:4:30: spec.rules[0].when[0].key: invalid header key (got "request.headers[]", want request.headers[NAME])`},
		{"malformed claim key", rule(`{when: [{key: "request.auth.claims[a]b", values: [a]}]}`), `p.yaml:4:30: spec.rules[0].when[0].key: invalid claim key (got "request.auth.claims[a]b", want request.auth.claims[NAME] or request.auth.claims[A][B]...)`},
		{"envoy metadata key", rule(`{when: [{key: "experimental.envoy.filters.a.b[c]", values: [a]}]}`), `p.yaml:4:30: spec.rules[0].when[0].key: "experimental.envoy.filters.a.b[c]" reads Envoy dynamic metadata, which Tollgate does not have`},
		{"when ip value", rule(`{when: [{key: remote.ip, values: [nope]}]}`), `p.yaml:4:50: spec.rules[0].when[0].values[0]: invalid IP address (got "nope", want an IP or CIDR)`},
		{"when port value", rule(`{when: [{key: destination.port, values: [http]}]}`), `p.yaml:4:57: spec.rules[0].when[0].values[0]: invalid port (got "http", want an integer 0-65535)`},
		{"when principal value", rule(`{when: [{key: source.principal, values: ["spiffe://a/b"]}]}`), `p.yaml:4:57: spec.rules[0].when[0].values[0]: write principals without the spiffe:// prefix (got "spiffe://a/b", want "a/b"): Istio would silently never match this value (apiVersion tollgate.dev/v1 accepts SPIFFE ID patterns)`},
		{"bad regex", ext("p", `{rules: [{to: [{operation: {pathRegex: ["a)|(b"]}}]}]}`), `p.yaml:4:47: spec.rules[0].to[0].operation.pathRegex[0]: invalid RE2 regular expression "a)|(b": unexpected ): a)|(b`},
		{"dry-run not a bool", "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: p, annotations: {istio.io/dry-run: maybe}}\nspec: {}\n", `p.yaml:3:53: metadata.annotations.istio.io/dry-run: want "true" or "false" (got "maybe")`},
		{"bad namespace", "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: p, namespace: \"edge \"}\nspec: {}\n", `p.yaml:3:32: metadata.namespace: want a namespace name: lower-case letters, digits and '-', at most 63 (got "edge ")`},
		{"no name", "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {namespace: a}\nspec: {}\n", `p.yaml:3:11: metadata.name: required`},
		{"bad apiVersion", "apiVersion: security.istio.io/v1alpha1\nkind: AuthorizationPolicy\nmetadata: {name: a}\n", `p.yaml:1:13: apiVersion: unsupported apiVersion for AuthorizationPolicy (got "security.istio.io/v1alpha1", want security.istio.io/v1, security.istio.io/v1beta1 or tollgate.dev/v1)`},
		{"duplicate policy", pol("p", `{}`) + pol("p", `{}`), `p.yaml:8:18: metadata.name: duplicate policy ns/p (also at p.yaml:3)`},
		{"wrong type", pol("p", `{rules: {}}`), `p.yaml:4:15: spec.rules: wrong type (got mapping , want list)`},
		{"too many rules", pol("p", `{rules: [`+strings.Repeat("{},", 513)+`]}`), `p.yaml:4:15: spec.rules: too many rules (got 513, want at most 512)`},
		{"errors of all documents at once", pol("a", `{action: X}`) + pol("b", `{rules: [{to: []}]}`),
			"p.yaml:4:16: spec.action: unknown action (got \"X\", want ALLOW, DENY or AUDIT)\np.yaml:9:21: spec.rules[0].to: empty list: omit to to match any operation"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := compileYAML(t, tc.src, Options{})
			if err == nil {
				t.Fatalf("no error, want %s", tc.want)
			}
			var es config.Errors
			if !errors.As(err, &es) {
				t.Fatalf("error %T is not config.Errors: %v", err, err)
			}
			if got := err.Error(); got != tc.want {
				t.Errorf("error:\n got: %s\nwant: %s", got, tc.want)
			}
		})
	}
}

func TestLoadAccepts(t *testing.T) {
	src := `apiVersion: security.istio.io/v1beta1
kind: AuthorizationPolicy
metadata:
  name: full
  namespace: prod
  uid: 1234
  resourceVersion: "9"
  labels: {app: x}
  annotations: {istio.io/dry-run: "false", note: x}
spec:
  selector:
    matchLabels: {role: ingress}
  action: AUDIT
  rules:
  - from:
    - source:
        principals: [cluster.local/ns/a/sa/b]
        notPrincipals: ["*/ns/x/*"]
        requestPrincipals: [iss/sub]
        notRequestPrincipals: ["*"]
        namespaces: [a]
        notNamespaces: ["b*"]
        ipBlocks: [10.0.0.0/8]
        notIpBlocks: ["::1"]
        remoteIpBlocks: [1.2.3.4]
        notRemoteIpBlocks: [1.2.0.0/16]
        trustDomains: [td]
        notTrustDomains: ["*.evil"]
    - source:
        serviceAccounts: [a/b, c]
        notServiceAccounts: [d/e]
    to:
    - operation:
        hosts: [a.example, "*.b.example"]
        notHosts: [c.example]
        ports: ["443", 8443]
        notPorts: ["80"]
        methods: [GET]
        notMethods: [DELETE]
        paths: [/a, "/b/{*}", "/c/{**}"]
        notPaths: [/d]
    when:
    - {key: "request.headers[x-a]", values: [a]}
    - {key: source.ip, values: [10.0.0.1]}
    - {key: remote.ip, notValues: [10.0.0.2]}
    - {key: source.namespace, values: [a]}
    - {key: source.principal, values: [a/b]}
    - {key: source.serviceAccount, values: [a/b]}
    - {key: source.trustDomain, values: [td]}
    - {key: request.auth.principal, values: [a/b]}
    - {key: request.auth.audiences, values: [a]}
    - {key: request.auth.presenter, values: [a]}
    - {key: "request.auth.claims[a][b]", values: [a]}
    - {key: destination.ip, values: [10.0.0.0/8]}
    - {key: destination.port, values: ["443"]}
    - {key: connection.sni, values: ["*.example"]}
status: {}
`
	s, err := compileYAML(t, src, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if s.Len() != 1 || s.Version() != "v1" {
		t.Errorf("len=%d version=%q", s.Len(), s.Version())
	}
}

func TestCompileIgnoresOtherKinds(t *testing.T) {
	s, err := compileYAML(t, "apiVersion: security.istio.io/v1\nkind: RequestAuthentication\nmetadata: {name: a}\nspec: {jwtRules: [{issuer: x}]}\n", Options{})
	if err != nil || s.Len() != 0 {
		t.Fatalf("len=%v err=%v", s, err)
	}
}
