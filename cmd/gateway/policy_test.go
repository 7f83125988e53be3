package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestExamplePolicyTests runs every example's policy tests, as users run them in their CI.
func TestExamplePolicyTests(t *testing.T) {
	dirs, _ := filepath.Glob(filepath.Join("..", "..", "examples", "*", "policy-tests"))
	if len(dirs) == 0 {
		t.Fatal("no example policy tests found")
	}
	for _, d := range dirs {
		t.Run(filepath.Base(filepath.Dir(d)), func(t *testing.T) {
			var out, errb bytes.Buffer
			code := run([]string{"policy", "test", d}, nil, &out, &errb)
			if code != 0 {
				t.Fatalf("exit %d:\n%s%s", code, out.String(), errb.String())
			}
			if !regexp.MustCompile(`(?m)^[1-9]\d* passed, 0 failed$`).MatchString(out.String()) {
				t.Errorf("last line: %q", out.String())
			}
		})
	}
}

func TestPolicyTestReportsFailures(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "p_test.yaml"), []byte(`policies:
- apiVersion: security.istio.io/v1
  kind: AuthorizationPolicy
  metadata: {name: deny-admin, namespace: ns}
  spec:
    action: DENY
    rules: [{to: [{operation: {paths: ["/admin*"]}}]}]
cases:
- name: wrongly expected allow
  request: {method: GET, host: a, path: /admin}
  want: allow
- name: right
  request: {method: GET, host: a, path: /ok}
  want: allow
`), 0o644)
	var out, errb bytes.Buffer
	if code := run([]string{"policy", "test", dir}, nil, &out, &errb); code != 1 {
		t.Fatalf("exit %d, want 1", code)
	}
	s := out.String()
	for _, want := range []string{"wrongly expected allow", "deny", "ns/deny-admin", "1 passed, 1 failed"} {
		if !strings.Contains(s, want) {
			t.Errorf("output lacks %q:\n%s", want, s)
		}
	}
}

func TestPolicyEval(t *testing.T) {
	dir := copyExample(t, "quickstart")
	tests := []struct {
		name      string
		args      []string
		request   string
		wantAllow bool
		wantCode  int
	}{
		{name: "with the gateway's settings", args: []string{"-c", filepath.Join(dir, "gateway.yaml")},
			request: `{"method":"GET","host":"localhost","path":"//admin/x"}`, wantAllow: false},
		{name: "allowed read", args: []string{"-c", filepath.Join(dir, "gateway.yaml")},
			request: `{"method":"GET","host":"localhost","path":"/hello"}`, wantAllow: true},
		{name: "Istio's defaults: BASE keeps //admin, so the DENY on /admin/* does not fire",
			args:    []string{"--policies", filepath.Join(dir, "policies")},
			request: `{"method":"GET","host":"localhost","path":"//admin/x"}`, wantAllow: true},
		{name: "a path the gateway would refuse", args: []string{"-c", filepath.Join(dir, "gateway.yaml")},
			request: `{"method":"GET","host":"localhost","path":"/a%2Fb"}`, wantCode: 1},
		{name: "unknown field in the description", args: []string{"-c", filepath.Join(dir, "gateway.yaml")},
			request: `{"method":"GET","hots":"localhost","path":"/"}`, wantCode: 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var out, errb bytes.Buffer
			args := append([]string{"policy", "eval", "--request", "-"}, tc.args...)
			code := run(args, strings.NewReader(tc.request), &out, &errb)
			if code != tc.wantCode {
				t.Fatalf("exit %d, want %d: %s%s", code, tc.wantCode, out.String(), errb.String())
			}
			if code != 0 {
				if errb.Len() == 0 {
					t.Error("no error message")
				}
				return
			}
			var d struct {
				Allow   bool   `json:"allow"`
				Reason  string `json:"reason"`
				Version string `json:"policyVersion"`
			}
			if err := json.Unmarshal(out.Bytes(), &d); err != nil {
				t.Fatalf("output is not a decision: %s", out.String())
			}
			if d.Allow != tc.wantAllow || d.Reason == "" || d.Version == "" {
				t.Errorf("decision %+v", d)
			}
		})
	}
}
