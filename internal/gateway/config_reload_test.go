package gateway_test

import (
	"crypto/tls"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// gatewayFile is a gateway file for e's PKI and echo upstream: the ingress
// with routes (YAML list items, two-space indented) and ingress (more
// ingress fields, two-space indented), and the policy section (flow style;
// "": the policies/ directory polled every 50ms).
func (e *env) gatewayFile(routes, ingress, policy string) string {
	if policy == "" {
		policy = "{files: [policies/], pollInterval: 50ms}"
	}
	return `apiVersion: tollgate.dev/v1
kind: Gateway
identity:
  files: {cert: pki/gateway.crt, key: pki/gateway.key, bundle: pki/ca.crt}
ingress:
  listen: 127.0.0.1:0
  tls:
    certificates: [{cert: pki/tls.crt, key: pki/tls.key}]
  routes:
` + routes + ingress + `admin: {listen: "127.0.0.1:0"}
audit: {sinks: [{file: audit.log}]}
policy: ` + policy + "\n"
}

// route is one route to the echo upstream for paths under prefix ("": every
// path), with more upstream fields in flow style (", timeout: 5s").
func (e *env) route(name, prefix, upstream string) string {
	r := "  - name: " + name + "\n    host: \"*\"\n"
	if prefix != "" {
		r += "    pathPrefix: " + prefix + "\n"
	}
	return r + fmt.Sprintf("    upstream: {url: \"https://%s\", spiffeIDs: [%q]%s}\n", e.echoAddr, echoID, upstream)
}

// waitForFile polls file until it contains text, for at most 5s.
func waitForFile(t *testing.T, file, text string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		if b, _ := os.ReadFile(file); strings.Contains(string(b), text) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s never held %q", file, text)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// manyHeaders is n distinct header fields, as name/value pairs.
func manyHeaders(n int) []string {
	var h []string
	for i := range n {
		h = append(h, fmt.Sprintf("X-H-%d", i), "v")
	}
	return h
}

// writePolicyIn replaces policy.yaml in the policy directory dir (under
// e.dir), by rename.
func (e *env) writePolicyIn(dir, text string) {
	e.t.Helper()
	if err := os.MkdirAll(filepath.Join(e.dir, dir), 0o755); err != nil {
		e.t.Fatal(err)
	}
	tmp := filepath.Join(e.dir, "policy.tmp")
	if err := os.WriteFile(tmp, []byte(text), 0o644); err != nil {
		e.t.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(e.dir, dir, "policy.yaml")); err != nil {
		e.t.Fatal(err)
	}
}

// waitStatus polls GET path until it answers status, for at most 5s.
func (e *env) waitStatus(c *http.Client, path string, status int) {
	e.t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		got := e.do(c, "GET", path).status
		if got == status {
			return
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("GET %s = %d, want %d", path, got, status)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// writeConfig replaces the gateway file, by rename.
func (e *env) writeConfig(text string) {
	e.t.Helper()
	tmp := e.cfgFile + ".tmp"
	if err := os.WriteFile(tmp, []byte(text), 0o644); err != nil {
		e.t.Fatal(err)
	}
	if err := os.Rename(tmp, e.cfgFile); err != nil {
		e.t.Fatal(err)
	}
}

// Routes change under load, 100 times, by SIGHUP and by the file watcher at
// once: not one request fails, over HTTP/1.1 and HTTP/2, and after each
// reload the new routes answer. Each version also changes the catch-all
// route's upstream timeout, so its pooled upstream connections are retired
// on every reload while requests use them.
func TestGatewayFileReloadUnderLoad(t *testing.T) {
	const (
		reloads     = 100
		clients     = 2 // per protocol
		maxRequests = 50_000
		maxDuration = 90 * time.Second
	)
	e, _ := startPolicyEnv(t, apDoc("deny", `{action: DENY, rules: [{to: [{operation: {paths: ["/ok/deny"]}}]}]}`), policyEnvOptions{})
	versions := [2]string{
		e.gatewayFile(e.route("ok", "/ok", ", timeout: 5s")+e.route("only-a", "/a", ""), "", ""),
		e.gatewayFile(e.route("ok", "/ok", ", timeout: 7s")+e.route("only-b", "/b", ""), "", ""),
	}
	// want is what /a and /b answer under each version.
	want := [2][2]int{{200, 404}, {404, 200}}
	h1 := e.h1Client()
	e.h1 = e.h1Client()

	var (
		done            atomic.Bool
		sent, failed    atomic.Int64
		mu              sync.Mutex
		failures        []string
		clientsWG       sync.WaitGroup
		deadline        = time.Now().Add(maxDuration)
		protocolsServed sync.Map
	)
	for _, c := range []*http.Client{e.client, h1} {
		for range clients {
			clientsWG.Go(func() {
				for !done.Load() && time.Now().Before(deadline) && sent.Add(1) <= maxRequests {
					resp, err := c.Get(e.base + "/ok/x")
					if err == nil {
						protocolsServed.Store(resp.Proto, true)
						resp.Body.Close()
					}
					if err != nil || resp.StatusCode != 200 {
						failed.Add(1)
						mu.Lock()
						if len(failures) < 10 {
							failures = append(failures, fmt.Sprint(err, statusOf(resp)))
						}
						mu.Unlock()
					}
				}
			})
		}
	}
	var wrong []string
	for i := range reloads {
		v := i % 2
		e.writeConfig(versions[v])
		if err := e.gw.Reload(); err != nil {
			t.Errorf("reload %d: %v", i, err)
		}
		for j, p := range []string{"/a", "/b"} {
			if got := e.do(e.h1, "GET", p).status; got != want[v][j] {
				wrong = append(wrong, fmt.Sprintf("reload %d: %s answered %d, want %d", i, p, got, want[v][j]))
			}
		}
		// The policies in force were compiled again for each version:
		// /ok/deny stays denied.
		if got := e.do(e.h1, "GET", "/ok/deny").status; got != 403 {
			wrong = append(wrong, fmt.Sprintf("reload %d: /ok/deny answered %d, want 403", i, got))
		}
	}
	done.Store(true)
	clientsWG.Wait()
	n := min(sent.Load(), maxRequests)
	t.Logf("%d requests during %d reloads; %d failed; gateway reloads %v", n, reloads, failed.Load(), e.reloads("gateway"))
	if failed.Load() != 0 {
		t.Errorf("%d of %d requests failed across %d route reloads, e.g. %q", failed.Load(), n, reloads, failures)
	}
	if len(wrong) > 0 {
		t.Errorf("%d answers from a version not in force, e.g. %q", len(wrong), wrong[:min(len(wrong), 10)])
	}
	for _, p := range []string{"HTTP/1.1", "HTTP/2.0"} {
		if _, ok := protocolsServed.Load(p); !ok {
			t.Errorf("no request was served over %s", p)
		}
	}
	if got := e.reloads("gateway")["success"]; got < reloads {
		t.Errorf("%d successful gateway file reloads counted, want at least %d", got, reloads)
	}
	if n < 2*reloads {
		t.Errorf("only %d requests ran across %d reloads: the load did not overlap the reloads", n, reloads)
	}
}

func statusOf(resp *http.Response) string {
	if resp == nil {
		return ""
	}
	return resp.Status
}

// h1Client is a client of e's gateway that speaks HTTP/1.1 only.
func (e *env) h1Client() *http.Client {
	e.t.Helper()
	roots := e.client.Transport.(*http.Transport).TLSClientConfig.RootCAs
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots, NextProtos: []string{"http/1.1"}},
		TLSNextProto: map[string]func(string, *tls.Conn) http.RoundTripper{}}
	e.t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 10 * time.Second}
}

// What applies live applies at once; what needs a restart is named, once per
// field, and the rest of the file still applies; a broken file changes
// nothing and each of its problems is logged on a line of its own.
func TestGatewayFileReloadLiveAndRestartFields(t *testing.T) {
	e, tap := startPolicyEnv(t, apDoc("deny-x", `{action: DENY, rules: [{to: [{operation: {paths: ["/x"]}}]}]}`), policyEnvOptions{})
	e.h1 = e.h1Client()
	e.writePolicyIn("policies2", apDoc("deny-y", `{action: DENY, rules: [{to: [{operation: {paths: ["/y"]}}]}]}`))
	os.WriteFile(filepath.Join(e.dir, "garbage.crt"), []byte("not a certificate\n"), 0o644)
	base := e.route("echo", "", "")
	const policies2 = "{files: [policies2/], pollInterval: 50ms}"
	cases := []struct {
		name    string
		file    string
		restart []string // fields logged as waiting for a restart
		refused bool
		// problems are logged, one line each, when the file is refused.
		problems []string
		// probe is requested after the reload, with headers; the answer's
		// status must be status, and the echoed request must pass check.
		probe   string
		headers []string
		status  int
		check   func(r reply) string
		// edit, when set, runs after the reload; the probe is then
		// awaited.
		edit func()
		// verify, when set, runs last.
		verify func(t *testing.T)
	}{{
		name:  "a route added answers",
		file:  e.gatewayFile(base+e.route("new", "/new", ""), "", ""),
		probe: "/new/1", status: 200,
	}, {
		name:  "a route removed stops answering",
		file:  e.gatewayFile(e.route("only", "/only", ""), "", ""),
		probe: "/new/1", status: 404,
	}, {
		name:  "normalization changes the path the upstream and policy see",
		file:  e.gatewayFile(base, "  normalization: {mode: NONE}\n", ""),
		probe: "/a/../x", status: 200,
		check: func(r reply) string {
			if r.echo.Path != "/a/../x" {
				return "upstream saw " + r.echo.Path
			}
			return ""
		},
	}, {
		name:  "normalization back to the default: /a/../x is /x, denied",
		file:  e.gatewayFile(base, "", ""),
		probe: "/a/../x", status: 403,
	}, {
		name:  "trusted proxies: a peer's X-Forwarded-For is kept",
		file:  e.gatewayFile(base, "  trustedProxies: [127.0.0.0/8]\n", ""),
		probe: "/p", headers: []string{"X-Forwarded-For", "203.0.113.9"}, status: 200,
		check: func(r reply) string {
			if xff := strings.Join(r.echo.Headers["X-Forwarded-For"], ","); !strings.HasPrefix(xff, "203.0.113.9") {
				return "X-Forwarded-For " + xff
			}
			return ""
		},
	}, {
		name:  "untrusted again: the client's X-Forwarded-For is dropped",
		file:  e.gatewayFile(base, "", ""),
		probe: "/p", headers: []string{"X-Forwarded-For", "203.0.113.9"}, status: 200,
		check: func(r reply) string {
			if xff := strings.Join(r.echo.Headers["X-Forwarded-For"], ","); strings.Contains(xff, "203.0.113.9") {
				return "X-Forwarded-For " + xff
			}
			return ""
		},
	}, {
		name:  "headers with underscores dropped instead of refused",
		file:  e.gatewayFile(base, "  headersWithUnderscores: DROP_HEADER\n", ""),
		probe: "/u", headers: []string{"X_User", "admin"}, status: 200,
		check: func(r reply) string {
			for k := range r.echo.Headers {
				if strings.EqualFold(k, "x_user") {
					return k + " reached the upstream"
				}
			}
			return ""
		},
	}, {
		name:  "header limits apply live",
		file:  e.gatewayFile(base, "  limits: {maxHeaderCount: 20}\n", ""),
		probe: "/h", headers: manyHeaders(25), status: 431,
	}, {
		name:  "and back",
		file:  e.gatewayFile(base, "", ""),
		probe: "/h", headers: manyHeaders(25), status: 200,
	}, {
		name: "listener settings wait for a restart; the routes beside them apply",
		file: strings.Replace(e.gatewayFile(base+e.route("late", "/late", ""), "  limits: {maxConnections: 7, maxHeaderBytes: 1048576}\n  timeouts: {idle: 42s}\n", ""),
			"listen: 127.0.0.1:0", "listen: 127.0.0.1:1", 1),
		restart: []string{"ingress.listen", "ingress.limits.maxConnections", "ingress.limits.maxHeaderBytes", "ingress.timeouts.idle"},
		probe:   "/late", status: 200,
	}, {
		name:    "a broken file changes nothing",
		file:    e.gatewayFile(base+"  - name: bad\n    host: \"*\"\n    upstream: {url: \"http://plain\", spiffeIDs: [\"not-an-id\"]}\n", "  bogus: 1\n", ""),
		refused: true,
		// Every problem, one line each: the unknown field does not hide
		// the route's.
		problems: []string{"ingress.bogus: unknown field", "ingress.routes[1].upstream.url: must be https://",
			"ingress.routes[1].upstream.spiffeIDs[0]: invalid SPIFFE ID", "ingress.routes[1]: duplicate route"},
		probe: "/late", status: 200,
	}, {
		name:     "a certificate that would not load at the next start: refused, though TLS waits for a restart",
		file:     strings.Replace(e.gatewayFile(base, "", ""), "cert: pki/tls.crt", "cert: garbage.crt", 1),
		refused:  true,
		problems: []string{"ingress.tls.certificates"},
		probe:    "/p", status: 200,
	}, {
		name:  "policy.files names another directory: its policies go in force",
		file:  e.gatewayFile(base, "", "{files: [policies2/], pollInterval: 50ms}"),
		probe: "/y", status: 403,
	}, {
		name: "and the directory in force is watched: an edit there applies",
		file: e.gatewayFile(base, "", "{files: [policies2/], pollInterval: 50ms}"),
		edit: func() {
			e.writePolicyIn("policies2", apDoc("deny-z", `{action: DENY, rules: [{to: [{operation: {paths: ["/z"]}}]}]}`))
		},
		probe: "/z", status: 403,
	}, {
		name:  "audit sinks change live: the probe is audited to the new file",
		file:  strings.Replace(e.gatewayFile(base, "", policies2), "audit: {sinks: [{file: audit.log}]}", "audit: {sinks: [{file: audit2.log}]}", 1),
		probe: "/audited-to-2", status: 200,
		verify: func(t *testing.T) {
			waitForFile(t, filepath.Join(e.dir, "audit2.log"), "/audited-to-2")
			if b, _ := os.ReadFile(filepath.Join(e.dir, "audit.log")); strings.Contains(string(b), "/audited-to-2") {
				t.Error("the probe went to the removed sink")
			}
		},
	}, {
		name:    "an audit journal waits for a restart; the sinks beside it apply",
		file:    strings.Replace(e.gatewayFile(base, "", policies2), "audit: {sinks: [{file: audit.log}]}", "audit: {sinks: [{file: audit2.log}], journal: {dir: journal}}", 1),
		restart: []string{"audit.journal"},
		probe:   "/p", status: 200,
	}, {
		name:     "policy.files emptied: refused, the policies in force stay",
		file:     e.gatewayFile(base, "", "{pollInterval: 50ms}"),
		refused:  true,
		problems: []string{"would have no policies"},
		probe:    "/z", status: 403,
	}}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			parent := e.t
			e.t = t
			defer func() { e.t = parent }()
			failedBefore := e.reloads("gateway")["failure"]
			e.writeConfig(tc.file)
			err := e.gw.Reload()
			if tc.edit != nil {
				tc.edit()
				e.waitStatus(e.h1, tc.probe, tc.status)
			}
			if tc.refused {
				if err == nil {
					t.Fatal("the broken file was put in force")
				}
				// SIGHUP's, and maybe the watcher's.
				if got := e.reloads("gateway")["failure"]; got <= failedBefore {
					t.Errorf("failed reloads counted %d, want more than %d", got, failedBefore)
				}
				for _, p := range tc.problems {
					if len(tap.lines("gateway file reload refused", p)) == 0 {
						t.Errorf("no line for the problem %q", p)
					}
				}
			} else if err != nil {
				t.Fatalf("reload: %v", err)
			}
			for _, f := range tc.restart {
				if len(tap.lines("restart required", "field="+f)) == 0 {
					t.Errorf("no restart-required line for %s", f)
				}
			}
			r := e.do(e.h1, "GET", tc.probe, tc.headers...)
			if r.status != tc.status {
				t.Fatalf("GET %s = %d, want %d (%s)", tc.probe, r.status, tc.status, r.body)
			}
			if tc.check != nil {
				if msg := tc.check(r); msg != "" {
					t.Error(msg)
				}
			}
			if tc.verify != nil {
				tc.verify(t)
			}
		})
	}
	// The gateway still listens where it started.
	if !strings.HasPrefix(e.base, "https://127.0.0.1:") || strings.HasSuffix(e.base, ":1") {
		t.Errorf("ingress moved: %s", e.base)
	}
}

// OIDC providers change live: a provider added with a route bound to it
// puts the route behind its login at once (never served without it), a
// changed provider is a new login, and a provider that routes still name
// cannot be removed (the file is refused, the route keeps its login).
func TestGatewayFileReloadOIDCProviders(t *testing.T) {
	e, tap := startPolicyEnv(t, apDoc("deny-x", `{action: DENY, rules: [{to: [{operation: {paths: ["/x"]}}]}]}`), policyEnvOptions{})
	e.h1 = e.h1Client()
	os.WriteFile(filepath.Join(e.dir, "client-secret"), []byte("s3cret"), 0o600)
	os.WriteFile(filepath.Join(e.dir, "session.key"), []byte(strings.Repeat("k", 32)), 0o600)
	routes := e.route("echo", "", "") + e.route("private", "/private", "") + "    login: corp\n"
	withProvider := func(clientID string) string {
		return e.gatewayFile(routes, "", "") + "oidc:\n  sessionKeyFiles: [session.key]\n  providers:\n" +
			"  - {name: corp, issuer: \"https://127.0.0.1:1\", clientID: " + clientID + ", clientSecretFile: client-secret}\n"
	}
	if got := e.do(e.h1, "GET", "/private").status; got != 200 {
		t.Fatalf("before: GET /private = %d, want 200 from the catch-all route", got)
	}

	e.writeConfig(withProvider("gw"))
	if err := e.gw.Reload(); err != nil {
		t.Fatalf("adding a provider: %v", err)
	}
	first := e.gw.Logins()
	if len(first) != 1 || first[0].Name() != "corp" {
		t.Fatalf("logins in force %v, want corp", first)
	}
	// The provider is unreachable (discovery never succeeds): the route
	// answers 401 or 503, never the upstream.
	if got := e.do(e.h1, "GET", "/private").status; got != 401 && got != 503 {
		t.Errorf("GET /private behind a login = %d, want 401 or 503", got)
	}

	e.writeConfig(withProvider("gw2"))
	if err := e.gw.Reload(); err != nil {
		t.Fatalf("changing a provider: %v", err)
	}
	second := e.gw.Logins()
	if len(second) != 1 || second[0] == first[0] {
		t.Fatalf("a changed provider kept its login")
	}
	e.writeConfig(withProvider("gw2") + e.route("more", "/more", ""))
	if err := e.gw.Reload(); err == nil {
		// (the route lands under oidc: a broken file)
		t.Fatal("a file with a route under oidc was put in force")
	}
	e.writeConfig(e.gatewayFile(routes+e.route("more", "/more", ""), "", "") + strings.TrimPrefix(withProvider("gw2"), e.gatewayFile(routes, "", "")))
	if err := e.gw.Reload(); err != nil {
		t.Fatal(err)
	}
	if third := e.gw.Logins(); len(third) != 1 || third[0] != second[0] {
		t.Errorf("a reload that left the provider as it was replaced its login")
	}

	e.writeConfig(e.gatewayFile(routes, "", ""))
	if err := e.gw.Reload(); err == nil {
		t.Fatal("removing a provider a route still names was put in force")
	}
	if len(tap.lines("gateway file reload refused", "ingress.routes[1].login")) == 0 {
		t.Error("the refusal does not name the route's login")
	}
	if got := e.do(e.h1, "GET", "/private").status; got != 401 && got != 503 {
		t.Errorf("after the refused removal GET /private = %d, want 401 or 503 (still behind its login)", got)
	}
}

// An admin address from the environment replaces the file's in every
// reload too: the file's own admin.listen is not a change that waits for a
// restart (it was reported at every start of the container image, which
// sets $TOLLGATE_ADMIN_LISTEN).
func TestGatewayFileReloadKeepsAdminOverride(t *testing.T) {
	e, tap := startPolicyEnv(t, apDoc("deny-x", `{action: DENY, rules: [{to: [{operation: {paths: ["/x"]}}]}]}`),
		policyEnvOptions{adminListen: "127.0.0.1:0"})
	e.h1 = e.h1Client()
	file := strings.Replace(e.gatewayFile(e.route("echo", "", "")+e.route("more", "/more", ""), "", ""),
		`admin: {listen: "127.0.0.1:0"}`, `admin: {listen: "127.0.0.1:9901"}`, 1)
	e.writeConfig(file)
	if err := e.gw.Reload(); err != nil {
		t.Fatal(err)
	}
	if got := e.do(e.h1, "GET", "/more").status; got != 200 {
		t.Errorf("GET /more = %d: the reload did not apply", got)
	}
	if lines := tap.lines("restart required"); len(lines) > 0 {
		t.Errorf("restart required reported: %q", lines)
	}
	if got := e.gw.Config().Admin.Listen; got != "127.0.0.1:0" {
		t.Errorf("admin.listen in force %q, want the override", got)
	}
}
