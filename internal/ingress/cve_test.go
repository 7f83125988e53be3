package ingress

import (
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"tollgate.dev/tollgate/internal/config"
	"tollgate.dev/tollgate/internal/policy"
	"tollgate.dev/tollgate/internal/request"
)

// cvePolicies are written the way each bulletin's victims wrote theirs.
const cvePolicies = `apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: deny-admin, namespace: istio-system}
spec:
  action: DENY
  rules:
  - to: [{operation: {paths: ["/admin", "/admin/*", "/private", "/user/profile", "/protected"]}}]
  - to: [{operation: {hosts: ["secret.com", "httpbin.com", "httpbin.com:*"]}}]
  - when: [{key: "request.headers[x-role]", values: ["admin"]}]
  - when: [{key: "request.headers[x-hdr]", values: ["admin"]}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: allow-public, namespace: istio-system}
spec:
  action: ALLOW
  rules:
  - to: [{operation: {paths: ["/info/*", "/public/*", "/user/*", "/ok"]}}]
  - when: [{key: "request.headers[x-tollgate-verified]", values: ["true"]}]
`

type engineAuthorizer struct{ e *policy.Engine }

func (a engineAuthorizer) UsesQuery() bool { return a.e.UsesQuery() }

func (a engineAuthorizer) Authorize(r *request.Request) request.Decision { return a.e.Decide(r) }

func compileTestPolicies(t testing.TB, src string) Authorizer {
	t.Helper()
	docs, err := config.ParseDocuments("cve.yaml", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	var ds []config.Document
	for _, n := range docs {
		d := config.Document{File: "cve.yaml", APIVersion: "security.istio.io/v1", Kind: "AuthorizationPolicy", Node: n}
		for i := 0; i+1 < len(n.Content); i += 2 {
			if n.Content[i].Value == "apiVersion" {
				d.APIVersion = n.Content[i+1].Value
			}
		}
		ds = append(ds, d)
	}
	set, err := policy.Compile(ds, "test", policy.Options{TrustDomain: "example.org"})
	if err != nil {
		t.Fatal(err)
	}
	return engineAuthorizer{set.EngineAllPolicies()}
}

// rawExchange sends a request head exactly as written over HTTP/1.1 and TLS.
func (tb *testbed) rawExchange(head string) int {
	tb.t.Helper()
	status, _ := tb.rawRequest(head)
	return status
}

// TestCVEShapesNeverReachTheUpstream sends every request shape of the Istio and
// Envoy bulletins (reference §14) through the ingress over real TLS. Each must be
// denied (403) or rejected (400), and the upstream must never see it.
func TestCVEShapesNeverReachTheUpstream(t *testing.T) {
	tests := []struct {
		cve    string
		target string
		host   string
		hdrs   string // extra raw header lines, "\r\n"-terminated
		want   []int  // acceptable statuses
		// noH2: Go's HTTP/2 server refuses the stream itself (PROTOCOL_ERROR)
		// before any handler runs, and Go's client retries such a stream.
		noH2 bool
	}{
		{cve: "CVE-2019-9901 dot segments past an ALLOW prefix", target: "/info/../private", want: []int{403}},
		{cve: "CVE-2019-9901 encoded dot segments", target: "/info/%2e%2e/private", want: []int{403}},
		{cve: "CVE-2019-9900 NUL in a header value", target: "/ok", hdrs: "X-Role: ad\x00min\r\n", want: []int{400}},
		{cve: "CVE-2019-18802 trailing whitespace in a header", target: "/ok", hdrs: "X-Hdr: admin \r\n", want: []int{403}},
		{cve: "CVE-2020-8595 query after an exact path", target: "/protected?x", want: []int{403}},
		{cve: "CVE-2020-8595 fragment after an exact path", target: "/protected#x", want: []int{403}},
		{cve: "CVE-2020-8843 client-sent internal header", target: "/nothing-allows-this", hdrs: "X-Tollgate-Verified: true\r\n", want: []int{403}},
		{cve: "CVE-2020-25017 / CVE-2026-26308 repeated header", target: "/ok", hdrs: "X-Role: user\r\nX-Role: admin\r\n", want: []int{403}},
		{cve: "CVE-2026-26308 comma-joined values", target: "/ok", hdrs: "X-Role: user\r\nX-Role: admin, user\r\n", want: []int{403}},
		{cve: "CVE-2021-31920 doubled slash", target: "//admin", want: []int{403}},
		{cve: "CVE-2021-31920 doubled slash below", target: "/admin//x", want: []int{403}},
		{cve: "CVE-2021-31920 escaped slash", target: "/admin%2Fx", want: []int{400}},
		{cve: "CVE-2021-31920 escaped backslash", target: "/admin%5Cx", want: []int{400}},
		{cve: "CVE-2021-31920 raw backslash", target: "/public/..\\admin", want: []int{403, 400}},
		{cve: "CVE-2021-39156 fragment", target: "/user/profile#section1", want: []int{403}},
		{cve: "CVE-2021-39155 host case", target: "/ok", host: "Secret.com", want: []int{403}},
		{cve: "ISTIO-2021-008 host with port (policy lists host:*)", target: "/ok", host: "httpbin.com:80", want: []int{403}},
		{cve: "CVE-2023-27487 client-sent x-envoy-original-path", target: "/nothing-allows-this", hdrs: "X-Envoy-Original-Path: /ok\r\n", want: []int{403}},
		// The default refuses ';' outside the last segment (400); under KEEP
		// the dot segment is resolved and the DENY answers (403).
		{cve: "CVE-2026-73511 ..; path parameter", target: "/public/..;/admin", want: []int{400}},
		{cve: "CVE-2026-73511 encoded ..;", target: "/public/%2e%2e;x/admin", want: []int{400}},
		{cve: "servlet path parameter before a denied segment", target: "/admin;x/secret", want: []int{400}},
		{cve: "NUL in the path", target: "/ok%00", want: []int{400}},
		{cve: "invalid percent-encoding", target: "/ok%zz", want: []int{400}, noH2: true},
		{cve: "absolute-form with dot segments", target: "https://localhost/info/../admin", want: []int{403}},
	}
	tb := newTestbed(t, testbedOptions{authorize: compileTestPolicies(t, cvePolicies)})
	for _, tc := range tests {
		t.Run(tc.cve, func(t *testing.T) {
			before := tb.hits.get()
			host := tc.host
			if host == "" {
				host = "localhost"
			}
			status := tb.rawExchange("GET " + tc.target + " HTTP/1.1\r\nHost: " + host + "\r\n" + tc.hdrs + "Connection: close\r\n\r\n")
			if !contains(tc.want, status) {
				t.Errorf("HTTP/1.1: status %d, want one of %v", status, tc.want)
			}
			if !tc.noH2 && h2ok(tc.target, tc.hdrs) {
				req := &http.Request{Method: "GET", URL: &url.URL{Scheme: "https", Host: tb.front.Listener.Addr().String(), Opaque: strings.SplitN(tc.target, "#", 2)[0]},
					Host: host, Header: http.Header{}}
				for _, line := range strings.Split(strings.TrimSuffix(tc.hdrs, "\r\n"), "\r\n") {
					if k, v, ok := strings.Cut(line, ": "); ok {
						req.Header.Add(k, v)
					}
				}
				status, body, _ := tb.do(tb.client(true), req)
				if !contains(tc.want, status) {
					t.Errorf("HTTP/2: status %d, want one of %v: %s", status, tc.want, body)
				}
			}
			if got := tb.hits.get() - before; got != 0 {
				t.Errorf("the upstream saw %d such requests", got)
			}
		})
	}
	// The policies are not simply denying everything.
	if status := tb.rawExchange("GET /ok HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"); status != 200 {
		t.Fatalf("control request: status %d", status)
	}
}

// h2ok reports whether Go's HTTP/2 client can send the shape as is.
func h2ok(target, hdrs string) bool {
	return strings.HasPrefix(target, "/") && !strings.HasPrefix(target, "//") && !strings.Contains(hdrs, "\x00") && !strings.Contains(target, "\\")
}

func contains(list []int, v int) bool {
	for _, x := range list {
		if x == v {
			return true
		}
	}
	return false
}

// TestQueryDecodedOnlyWhenPolicyReadsIt: a query that can't be decoded one way
// only is refused when a policy judges the query, and passed through untouched
// (as sent) when none does.
func TestQueryDecodedOnlyWhenPolicyReadsIt(t *testing.T) {
	withQuery := `apiVersion: tollgate.dev/v1
kind: AuthorizationPolicy
metadata: {name: q, namespace: ns}
spec:
  action: DENY
  rules: [{when: [{key: "request.query[debug]", values: ["*"]}]}]
`
	tests := []struct {
		name     string
		policies string
		target   string
		want     int
	}{
		{name: "no query rule: semicolons pass", policies: cvePolicies, target: "/ok?a=1;b=2", want: 200},
		{name: "query rule: semicolons refused", policies: withQuery, target: "/ok?a=1;debug=1", want: 400},
		{name: "query rule: decoded and judged", policies: withQuery, target: "/ok?a=1&%64ebug=1", want: 403},
		{name: "query rule: other parameters pass", policies: withQuery, target: "/ok?a=1", want: 200},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tb := newTestbed(t, testbedOptions{authorize: compileTestPolicies(t, tc.policies)})
			status, body := tb.rawGet(tc.target)
			if status != tc.want {
				t.Fatalf("status %d, want %d", status, tc.want)
			}
			if status != 200 {
				return
			}
			// The upstream gets the query exactly as sent (and judged), not
			// ReverseProxy's re-encoding of what it could parse.
			var e echo
			if err := json.Unmarshal([]byte(body), &e); err != nil {
				t.Fatalf("upstream answer %q: %v", body, err)
			}
			if e.RequestURI != tc.target {
				t.Errorf("upstream received %q, want %q", e.RequestURI, tc.target)
			}
		})
	}
}

// TestConnectionNamedHeaders: headers a client lists in Connection are hop-by-hop
// and never reach the upstream, so policy must not judge them either, and a
// client must not be able to remove a header the gateway sets by naming it.
func TestConnectionNamedHeaders(t *testing.T) {
	allowMember := `apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: members, namespace: ns}
spec:
  rules: [{when: [{key: "request.headers[x-member]", values: ["yes"]}]}]
`
	tb := newTestbed(t, testbedOptions{authorize: compileTestPolicies(t, allowMember)})
	head := "GET /ok HTTP/1.1\r\nHost: localhost\r\nX-Member: yes\r\nConnection: close\r\n\r\n"
	status, body := tb.rawRequest(head)
	if status != 200 {
		t.Fatalf("member: status %d: %s", status, body)
	}
	var e echo
	if err := json.Unmarshal([]byte(body), &e); err != nil {
		t.Fatal(err)
	}
	if http.Header(e.Header).Get("X-Request-Id") == "" {
		t.Fatal("upstream got no X-Request-Id")
	}
	// Named in Connection, X-Member would be stripped on the way out: policy
	// must see it gone too.
	hidden := "GET /ok HTTP/1.1\r\nHost: localhost\r\nX-Member: yes\r\nConnection: close, X-Member\r\n\r\n"
	if status, _ := tb.rawRequest(hidden); status != 403 {
		t.Errorf("header named in Connection: status %d, want 403 (policy sees what the upstream gets)", status)
	}
	// Naming the gateway's own header doesn't remove it.
	strip := "GET /ok HTTP/1.1\r\nHost: localhost\r\nX-Member: yes\r\nConnection: close, X-Request-Id, X-Forwarded-For\r\n\r\n"
	status, body = tb.rawRequest(strip)
	if status != 200 {
		t.Fatalf("status %d: %s", status, body)
	}
	e = echo{}
	json.Unmarshal([]byte(body), &e)
	for _, k := range []string{"X-Request-Id", "X-Forwarded-For"} {
		if http.Header(e.Header).Get(k) == "" {
			t.Errorf("%s named in Connection was removed before the upstream", k)
		}
	}
}
