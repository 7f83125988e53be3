package gateway_test

import (
	"bufio"
	"crypto/tls"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
)

// Route and policy judge one canonical host: a DENY on a host can't be
// passed by another spelling of it that the router still sends to the
// upstream (a trailing dot, case, a port, an IDN in Unicode). A host that
// can't be canonicalized is a 400. HTTP/1.1 and HTTP/2 through Go's client;
// the raw forms the client won't send, over a raw HTTP/1.1 connection.
func TestHostSpellingsAreJudgedAsRouted(t *testing.T) {
	e := startEnv(t, `apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: no-admin}
spec:
  action: DENY
  rules:
  - to: [{operation: {hosts: ["admin.example.com", "admin.example.com:*", "xn--bcher-kva.example"]}}]
`)
	tests := []struct {
		host       string
		wantStatus int
	}{
		{host: "admin.example.com", wantStatus: http.StatusForbidden},
		{host: "admin.example.com.", wantStatus: http.StatusForbidden},
		{host: "ADMIN.Example.COM", wantStatus: http.StatusForbidden},
		{host: "admin.example.com:8443", wantStatus: http.StatusForbidden},
		{host: "Admin.Example.Com.:443", wantStatus: http.StatusForbidden},
		{host: "xn--bcher-kva.example", wantStatus: http.StatusForbidden},
		{host: "other.example.com.", wantStatus: http.StatusOK},
		{host: "[admin.example.com]", wantStatus: http.StatusBadRequest},
		{host: "admin.example.com..", wantStatus: http.StatusBadRequest},
		{host: "admin.example.com:x", wantStatus: http.StatusBadRequest},
		{host: "[::ffff:127.0.0.1]", wantStatus: http.StatusBadRequest},
		// Go's client sends the A-labels of a Unicode host.
		{host: "Bücher.example", wantStatus: http.StatusForbidden},
	}
	for _, tc := range tests {
		t.Run(tc.host, func(t *testing.T) {
			for name, c := range map[string]*http.Client{"HTTP/1.1": e.h1, "HTTP/2": e.client} {
				req, _ := http.NewRequest("GET", e.base+"/x", nil)
				req.Host = tc.host
				resp, err := c.Do(req)
				if err != nil {
					t.Fatalf("%s: %v", name, err)
				}
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode != tc.wantStatus {
					t.Errorf("%s: status %d, want %d: %s", name, resp.StatusCode, tc.wantStatus, b)
				}
			}
		})
	}
	// Raw HTTP/1.1: Go's client turns a Unicode host into A-labels and
	// refuses an empty one itself. The HTTP parser refuses raw non-ASCII in
	// Host before routing (400), so a Unicode spelling is never routed.
	raw := []struct {
		name, host string
		wantStatus int
	}{
		{name: "IDN in Unicode", host: "bücher.example", wantStatus: http.StatusBadRequest},
		{name: "IDN in Unicode, upper case, trailing dot", host: "BÜCHER.example.", wantStatus: http.StatusBadRequest},
		{name: "empty Host", host: "", wantStatus: http.StatusBadRequest},
	}
	for _, tc := range raw {
		t.Run(tc.name, func(t *testing.T) {
			conn, err := tls.Dial("tcp", e.gw.IngressAddr().String(), &tls.Config{InsecureSkipVerify: true, NextProtos: []string{"http/1.1"}}) // the status matters here
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			conn.SetDeadline(time.Now().Add(10 * time.Second))
			io.WriteString(conn, "GET /x HTTP/1.1\r\nHost: "+tc.host+"\r\nConnection: close\r\n\r\n")
			resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tc.wantStatus {
				t.Errorf("status %d, want %d: %s", resp.StatusCode, tc.wantStatus, b)
			}
		})
	}
}

// remoteIpBlocks judges the original client, taken from X-Forwarded-For
// hops appended by trusted proxies; ipBlocks judges the direct peer (Istio's
// remote.ip and source.ip). The gateway and `gateway policy eval` agree.
// HTTP/1.1 and HTTP/2.
func TestForwardedClientAddresses(t *testing.T) {
	policy := `apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: blocks}
spec:
  action: DENY
  rules:
  - from: [{source: {remoteIpBlocks: ["203.0.113.4/32"]}}]
    to: [{operation: {paths: ["/remote"]}}]
  - from: [{source: {ipBlocks: ["203.0.113.4/32"]}}]
    to: [{operation: {paths: ["/peer"]}}]
  - from: [{source: {ipBlocks: ["127.0.0.1/32"]}}]
    to: [{operation: {paths: ["/loopback-peer"]}}]
`
	tests := []struct {
		name       string
		trusted    bool
		path, xff  string
		wantStatus int
	}{
		{name: "trusted proxy names the client", trusted: true, path: "/remote", xff: "203.0.113.4", wantStatus: 403},
		{name: "a trusted hop is skipped", trusted: true, path: "/remote", xff: "203.0.113.4, 127.0.0.9", wantStatus: 403},
		{name: "the first untrusted hop from the right is the client", trusted: true, path: "/remote", xff: "203.0.113.4, 198.51.100.7", wantStatus: 200},
		{name: "ipBlocks is the peer, not the header", trusted: true, path: "/peer", xff: "203.0.113.4", wantStatus: 200},
		{name: "ipBlocks sees the peer", trusted: true, path: "/loopback-peer", xff: "203.0.113.4", wantStatus: 403},
		{name: "untrusted peer's header is ignored", trusted: false, path: "/remote", xff: "203.0.113.4", wantStatus: 200},
		{name: "untrusted: remote.ip is the peer", trusted: false, path: "/loopback-peer", xff: "203.0.113.4", wantStatus: 403},
	}
	envs := map[bool]*env{
		false: startEnv(t, policy),
		true:  startEnvOpts(t, policy, envOptions{ingress: "  trustedProxies: [127.0.0.0/8]\n"}),
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := envs[tc.trusted]
			for name, c := range map[string]*http.Client{"HTTP/1.1": e.h1, "HTTP/2": e.client} {
				if r := e.do(c, "GET", tc.path, "X-Forwarded-For", tc.xff); r.status != tc.wantStatus {
					t.Errorf("%s: status %d, want %d: %s", name, r.status, tc.wantStatus, r.body)
				}
			}
		})
	}
}

// A dry-run DENY does not refuse, and the audit event carries its result
// (the shadow decision) as `gateway policy eval` prints it; an AUDIT policy
// marks the event.
func TestDryRunAndAuditReachTheAuditEvent(t *testing.T) {
	e := startEnv(t, `apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: would-deny, namespace: shop, annotations: {istio.io/dry-run: "true"}}
spec:
  action: DENY
  rules: [{to: [{operation: {paths: ["/x"]}}]}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: watch, namespace: shop}
spec:
  action: AUDIT
  rules: [{to: [{operation: {paths: ["/x"]}}]}]
`)
	for name, c := range map[string]*http.Client{"HTTP/1.1": e.h1, "HTTP/2": e.client} {
		r := e.do(c, "GET", "/x")
		if r.status != http.StatusOK {
			t.Fatalf("%s: status %d: %s", name, r.status, r.body)
		}
		ev := e.auditEvent(r.header.Get("X-Request-Id"))
		d, _ := ev["decision"].(map[string]any)
		shadow, _ := d["shadow"].([]any)
		if len(shadow) != 1 {
			t.Fatalf("%s: decision %v, want one shadow result", name, d)
		}
		s := shadow[0].(map[string]any)
		if s["action"] != "DENY" || s["allow"] != false || s["dryRun"] != true || !strings.Contains(s["policy"].(string), "would-deny") {
			t.Errorf("%s: shadow %v", name, s)
		}
		if d["audit"] != true || !strings.Contains(d["auditPolicy"].(string), "watch") {
			t.Errorf("%s: AUDIT mark missing: %v", name, d)
		}
	}
}
