package policycli

import (
	"bytes"
	"encoding/json"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"tollgate.dev/tollgate/internal/policy"
	"tollgate.dev/tollgate/internal/policy/pathnorm"
	"tollgate.dev/tollgate/internal/request"
)

func TestExamples(t *testing.T) {
	var out bytes.Buffer
	passed, failed, err := Test([]string{"../testdata/tests"}, &out)
	if err != nil || failed != 0 || passed != 12 {
		t.Fatalf("passed=%d failed=%d err=%v\n%s", passed, failed, err, out.String())
	}
	if !strings.HasSuffix(out.String(), "12 passed, 0 failed\n") {
		t.Errorf("summary line missing:\n%s", out.String())
	}
}

func TestTestReportsFailures(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "t.yaml")
	src := `policies:
- apiVersion: security.istio.io/v1
  kind: AuthorizationPolicy
  metadata: {name: deny-admin, namespace: ns}
  spec: {action: DENY, rules: [{to: [{operation: {paths: [/admin]}}]}]}
cases:
- name: passes
  request: {path: /x}
  want: allow
- name: wrong expectation
  request: {path: /admin}
  want: allow
- name: wrong policy
  request: {path: /admin}
  want: deny
  policy: ns/other
`
	if err := os.WriteFile(file, []byte(src), 0o600); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	passed, failed, err := Test([]string{file}, &out)
	if err != nil || passed != 1 || failed != 2 {
		t.Fatalf("passed=%d failed=%d err=%v", passed, failed, err)
	}
	want := file + `:10: wrong expectation
  want: allow
  got:  deny by ns/deny-admin rule 0
  reason: denied by DENY policy ns/deny-admin rule 0 (` + file + `:5)
FAIL ` + file + `:13: wrong policy
  want: deny by ns/other
  got:  deny by ns/deny-admin rule 0
  reason: denied by DENY policy ns/deny-admin rule 0 (` + file + `:5)
1 passed, 2 failed
`
	if diff := cmp.Diff("FAIL "+want, out.String()); diff != "" {
		t.Errorf("output (-want +got):\n%s", diff)
	}
}

func TestTestSettingsNamespace(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "t.yaml")
	src := `policies:
- apiVersion: security.istio.io/v1
  kind: AuthorizationPolicy
  metadata: {name: deny-admin, namespace: mesh-root}
  spec: {action: DENY, rules: [{to: [{operation: {paths: [/admin]}}]}]}
- apiVersion: security.istio.io/v1
  kind: AuthorizationPolicy
  metadata: {name: deny-edge, namespace: edge}
  spec: {action: DENY, rules: [{to: [{operation: {paths: [/edge]}}]}]}
- apiVersion: security.istio.io/v1
  kind: AuthorizationPolicy
  metadata: {name: deny-all, namespace: payments}
  spec: {action: DENY, rules: [{}]}
settings: {namespace: edge, rootNamespace: mesh-root}
cases:
- {name: root namespace applies, request: {path: /admin}, want: deny, policy: mesh-root/deny-admin}
- {name: own namespace applies, request: {path: /edge}, want: deny, policy: edge/deny-edge}
- {name: other namespace does not, request: {path: /x}, want: allow}
`
	if err := os.WriteFile(file, []byte(src), 0o600); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if passed, failed, err := Test([]string{file}, &out); err != nil || passed != 3 || failed != 0 {
		t.Fatalf("passed=%d failed=%d err=%v\n%s", passed, failed, err, out.String())
	}
}

func TestTestFileErrors(t *testing.T) {
	tests := []struct {
		name, src, want string
	}{
		{"bad want", "policies: []\ncases:\n- {name: a, request: {}, want: maybe}\n", `t.yaml:3:32: cases[0].want: want "allow" or "deny" (got "maybe")`},
		{"unknown request field", "cases:\n- {name: a, request: {pathh: /}, want: allow}\n", `t.yaml:2:23: cases[0].request.pathh: unknown field (did you mean "path"?)`},
		{"broken policy", "policies:\n- {apiVersion: security.istio.io/v1, kind: AuthorizationPolicy, metadata: {name: a}, spec: {action: NOPE}}\ncases:\n- {name: a, request: {}, want: allow}\n", `t.yaml:2:101: spec.action: unknown action (got "NOPE", want ALLOW, DENY or AUDIT)`},
		{"no cases", "policies: []\n", `t.yaml:1:1: cases: no test cases`},
		{"misspelled inline kind", "policies:\n- {apiVersion: security.istio.io/v1, kind: AuthorizatonPolicy, metadata: {name: a}, spec: {}}\ncases:\n- {name: a, request: {}, want: deny}\n",
			`t.yaml:2:3: policies: an inline document must be an AuthorizationPolicy (got kind "AuthorizatonPolicy")`},
		{"bad namespaces", "settings: {namespace: Edge, rootNamespace: x_y}\ncases:\n- {name: a, request: {}, want: allow}\n",
			"t.yaml:1:23: settings.namespace: want a namespace name: lower-case letters, digits and '-', at most 63 (got \"Edge\")\n" +
				"t.yaml:1:44: settings.rootNamespace: want a namespace name: lower-case letters, digits and '-', at most 63 (got \"x_y\")"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			if err := os.WriteFile(filepath.Join(dir, "t.yaml"), []byte(tc.src), 0o600); err != nil {
				t.Fatal(err)
			}
			var out bytes.Buffer
			_, _, err := Test([]string{filepath.Join(dir, "t.yaml")}, &out)
			if err == nil {
				t.Fatal("no error")
			}
			if got := strings.ReplaceAll(err.Error(), dir+string(filepath.Separator), ""); got != tc.want {
				t.Errorf("error:\n got: %s\nwant: %s", got, tc.want)
			}
			if !strings.HasSuffix(out.String(), "0 passed, 0 failed\n") {
				t.Errorf("summary missing: %q", out.String())
			}
		})
	}
}

func TestEval(t *testing.T) {
	in := strings.NewReader(`{"method":"DELETE","host":"shop.example.com","path":"/api/orders/%34%32?x=1#frag",
		"headers":{"X-Trace":["a","b"]},"source":{"principal":"spiffe://cluster.local/ns/a/sa/b","ip":"10.0.0.1"},
		"auth":{"principal":"https://idp.example.com/alice","claims":{"groups":["shop-admins"],"n":1}}}`)
	var out bytes.Buffer
	d, err := Eval([]string{"../testdata/policies"}, Settings{Labels: map[string]string{"role": "ingress"}}, in, &out)
	if err != nil {
		t.Fatal(err)
	}
	if !d.Allow || d.Policy != "shop/app" || d.Rule != 1 || !d.Audit || d.AuditPolicy != "shop/audit-deletes" {
		t.Errorf("decision %+v", d)
	}
	var printed policy.Decision
	if err := json.Unmarshal(out.Bytes(), &printed); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(d, printed); diff != "" {
		t.Errorf("printed record differs (-returned +printed):\n%s", diff)
	}
}

func TestDescriptionRequest(t *testing.T) {
	tests := []struct {
		name    string
		json    string
		norm    pathnorm.Options
		want    *request.Request
		wantErr string
	}{
		{
			name: "path normalized, query parsed, fragment dropped",
			json: `{"path":"/a/./b/../c%2Fd?x=1&x=2#f","headers":{"X-A":["1"],"x-a":["2"]}}`,
			norm: pathnorm.IstioDefault(),
			want: &request.Request{Protocol: request.HTTP, Path: "/a/c%2Fd", RawQuery: "x=1&x=2",
				Query: map[string][]string{"x": {"1", "2"}}, Headers: map[string][]string{"X-A": {"1", "2"}}},
		},
		{
			name: "issuer and subject split at the last slash",
			json: `{"protocol":"tcp","auth":{"principal":"https://iss/x/alice","audiences":["a"]}}`,
			norm: pathnorm.IstioDefault(),
			want: &request.Request{Protocol: request.TCP, Auth: &request.Auth{Issuer: "https://iss/x", Subject: "alice",
				Principal: "https://iss/x/alice", Audiences: []string{"a"}}},
		},
		{name: "unknown field", json: `{"pth":"/"}`, wantErr: `request description: json: unknown field "pth"`},
		{name: "two values", json: `{} {}`, wantErr: `request description: more than one JSON value`},
		{name: "bad ip", json: `{"remoteIP":"1.2.3"}`, wantErr: `remoteIP: invalid IP address "1.2.3"`},
		{name: "bad protocol", json: `{"protocol":"udp"}`, wantErr: `protocol: want "http" or "tcp" (got "udp")`},
		{name: "escaped slash rejected by Tollgate default", json: `{"path":"/a%2Fb"}`, norm: pathnorm.Default(), wantErr: `path "/a%2Fb" would be refused with 400`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d, err := ReadDescription(strings.NewReader(tc.json))
			var r *request.Request
			if err == nil {
				r, err = d.Request(tc.norm, nil)
			}
			if tc.wantErr != "" {
				if err == nil || !strings.HasPrefix(err.Error(), tc.wantErr) {
					t.Fatalf("error %v, want prefix %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, r, cmp.Comparer(func(a, b netip.Addr) bool { return a == b })); diff != "" {
				t.Errorf("request (-want +got):\n%s", diff)
			}
		})
	}
}

func FuzzReadDescription(f *testing.F) {
	f.Add(`{"method":"GET","host":"a","path":"/a/../b?x=1#f","headers":{"a":["b"]}}`)
	f.Add(`{"auth":{"principal":"i/s","claims":{"a":{"b":[1,"x"]}}},"source":{"ip":"::1"}}`)
	f.Add(`{"path":"/%2e%2e/%00"}`)
	f.Fuzz(func(t *testing.T, src string) {
		d, err := ReadDescription(strings.NewReader(src))
		if err != nil {
			return
		}
		r, err := d.Request(pathnorm.IstioDefault(), nil)
		if err != nil {
			return
		}
		if r.Path != "" && !strings.HasPrefix(r.Path, "/") {
			t.Fatalf("normalized path %q does not start with '/'", r.Path)
		}
		if strings.ContainsAny(r.Path, "?#") {
			t.Fatalf("normalized path %q carries a query or fragment", r.Path)
		}
	})
}
