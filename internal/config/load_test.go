package config

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"tollgate.dev/tollgate/internal/testkit"
)

const validConfig = `apiVersion: tollgate.dev/v1
kind: Gateway
identity:
  files: {cert: svid.crt, key: svid.key, bundle: bundle.crt}
ingress:
  listen: 127.0.0.1:8443
  tls:
    certificates:
    - {cert: tls.crt, key: tls.key}
  trustedProxies: [10.0.0.0/8, 192.0.2.1]
  routes:
  - name: web
    host: app.example.com
    upstream:
      url: https://127.0.0.1:9443
      spiffeIDs: [spiffe://example.org/ns/app/sa/web]
  - name: api
    host: app.example.com
    pathPrefix: /api
    upstream:
      url: https://127.0.0.1:9444
      spiffeIDs: [spiffe://example.org/ns/api/*]
`

func fixtureDir(t *testing.T) string {
	dir := t.TempDir()
	ca := testkit.NewCA(t)
	ca.WritePair(t, dir, "tls", "tls")
	ca.WritePair(t, dir, "svid", "svid")
	ca.WriteRoot(t, dir, "bundle.crt")
	return dir
}

func TestLoadValid(t *testing.T) {
	dir := fixtureDir(t)
	file := filepath.Join(dir, "gateway.yaml")
	os.WriteFile(file, []byte(validConfig), 0o600)
	g, err := Load(file)
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	if g.Ingress.Routes[0].PathPrefix != "/" || g.Ingress.Timeouts.ReadHeader != DefaultReadHeaderTimeout {
		t.Errorf("defaults not applied: %+v", g.Ingress)
	}
	if g.Identity.Files.Cert != filepath.Join(dir, "svid.crt") {
		t.Errorf("relative path not resolved: %s", g.Identity.Files.Cert)
	}
	if g.Ingress.Namespace != "" || g.Policy.RootNamespace != DefaultRootNamespace {
		t.Errorf("namespaces: ingress %q, root %q", g.Ingress.Namespace, g.Policy.RootNamespace)
	}
	if e := g.ErrorAt("ingress.routes[1].upstream.url", "x"); e.Line != 21 || e.Col != 12 {
		t.Errorf("ErrorAt position = %d:%d, want 21:12", e.Line, e.Col)
	}
}

func TestLoadBadInput(t *testing.T) {
	tests := []struct {
		name  string
		edit  func(string) string
		wants []string // substrings, each must appear in the error output, in order
	}{
		{
			name:  "invalid YAML",
			edit:  func(s string) string { return s + "  bad: [unclosed\n" },
			wants: []string{"gateway.yaml:", "invalid YAML"},
		},
		{
			name:  "unknown field",
			edit:  func(s string) string { return strings.Replace(s, "    pathPrefix: /api", "    pathprefix: /api", 1) },
			wants: []string{`gateway.yaml:19:5: ingress.routes[1].pathprefix: unknown field (did you mean "pathPrefix"?)`},
		},
		{
			name:  "wrong type",
			edit:  func(s string) string { return strings.Replace(s, "  listen: 127.0.0.1:8443", "  listen: [a]", 1) },
			wants: []string{"gateway.yaml:6:11: ingress.listen: wrong type (got list , want string)"},
		},
		{
			name: "missing files, duplicate route, bad SPIFFE ID, http upstream, all at once and sorted",
			edit: func(s string) string {
				s = strings.Replace(s, "key: svid.key", "key: missing.key", 1)
				s = strings.Replace(s, "    pathPrefix: /api\n", "", 1)
				s = strings.Replace(s, "spiffe://example.org/ns/api/*", "spiffe://Example.org/ns api", 1)
				return strings.Replace(s, "https://127.0.0.1:9444", "http://127.0.0.1:9444", 1)
			},
			wants: []string{
				"gateway.yaml:4:32: identity.files.key: cannot read",
				"gateway.yaml:17:5: ingress.routes[1]: duplicate route",
				`gateway.yaml:20:12: ingress.routes[1].upstream.url: must be https://`,
				`gateway.yaml:21:19: ingress.routes[1].upstream.spiffeIDs[0]: invalid SPIFFE ID pattern`,
			},
		},
		{
			name: "garbage certificate",
			edit: func(s string) string {
				return strings.Replace(s, "{cert: tls.crt, key: tls.key}", "{cert: gateway.yaml, key: tls.key}", 1)
			},
			wants: []string{"gateway.yaml:9:7: ingress.tls.certificates[0]: invalid certificate/key pair"},
		},
		{
			name: "bad namespaces",
			edit: func(s string) string {
				s = strings.Replace(s, "  listen: 127.0.0.1:8443\n", "  listen: 127.0.0.1:8443\n  namespace: Edge_NS\n  mesh: {listen: 127.0.0.1:8444, namespace: -x}\n", 1)
				return s + "policy: {rootNamespace: " + strings.Repeat("a", 64) + "}\n"
			},
			wants: []string{
				`gateway.yaml:7:14: ingress.namespace: want a namespace name: lower-case letters, digits and '-', at most 63 (got "Edge_NS")`,
				`gateway.yaml:8:45: ingress.mesh.namespace: want a namespace name`,
				`gateway.yaml:25:25: policy.rootNamespace: want a namespace name`,
			},
		},
		{
			name: "negative limits",
			edit: func(s string) string {
				return strings.Replace(s, "  listen: 127.0.0.1:8443\n", "  listen: 127.0.0.1:8443\n  limits: {maxConnections: -1, maxHeaderCount: -5, maxConnectionsPerSource: -2}\n", 1)
			},
			wants: []string{
				`gateway.yaml:7:28: ingress.limits.maxConnections: must not be negative (got -1)`,
				`gateway.yaml:7:48: ingress.limits.maxHeaderCount: must not be negative (got -5)`,
				`gateway.yaml:7:77: ingress.limits.maxConnectionsPerSource: must not be negative (got -2)`,
			},
		},
		{
			name: "per-source share without a limit, or above it",
			edit: func(s string) string {
				s = strings.Replace(s, "  listen: 127.0.0.1:8443\n", "  listen: 127.0.0.1:8443\n  limits: {maxConnections: 100, maxConnectionsPerSource: 101}\n", 1)
				return s + "egress: {listen: 127.0.0.1:15443, limits: {maxConnectionsPerSource: 5}}\n"
			},
			wants: []string{
				`gateway.yaml:7:58: ingress.limits.maxConnectionsPerSource: must not exceed maxConnections (got 101, want at most 100)`,
				`gateway.yaml:24:69: egress.limits.maxConnectionsPerSource: is a share of maxConnections, which is not set (got 5, want maxConnections set too)`,
			},
		},
		{
			name:  "bad CIDR",
			edit:  func(s string) string { return strings.Replace(s, "10.0.0.0/8", "10.0.0.0/99", 1) },
			wants: []string{`gateway.yaml:10:20: ingress.trustedProxies[0]: want an IP or CIDR (got "10.0.0.0/99")`},
		},
		{
			name: "unsafe upstream base path",
			edit: func(s string) string {
				return strings.Replace(s, "https://127.0.0.1:9444", "https://127.0.0.1:9444/base/../x", 1)
			},
			wants: []string{
				`gateway.yaml:21:12: ingress.routes[1].upstream.url: the base path must be plain segments`,
			},
		},
		{
			name: "unknown header and misdirected actions",
			edit: func(s string) string {
				return strings.Replace(s, "  listen: 127.0.0.1:8443\n", "  listen: 127.0.0.1:8443\n  headersWithUnderscores: ALLOW\n  misdirectedRequests: IGNORE\n  normalization: {pathParameters: DROP}\n", 1)
			},
			wants: []string{
				`gateway.yaml:7:27: ingress.headersWithUnderscores: want one of REJECT_REQUEST, DROP_HEADER (got "ALLOW")`,
				`gateway.yaml:8:24: ingress.misdirectedRequests: want one of REJECT, ALLOW (got "IGNORE")`,
				`gateway.yaml:9:35: ingress.normalization.pathParameters: want one of KEEP, STRIP, REJECT, REJECT_EXCEPT_LAST (got "DROP")`,
			},
		},
		{
			name: "egress problems",
			edit: func(s string) string {
				return s + "egress: {listen: nowhere, allowCIDRs: [0.0.0.0/0, x], resolvers: [dns.example, 127.0.0.53:53],\n" +
					"  credentials: [{host: api.example.com}, {host: b.example.com, headers: [{name: X-Key, file: missing-key}]}]}\n"
			},
			wants: []string{
				`egress.listen: want "host:port" or ":port" (got "nowhere")`,
				`egress.allowCIDRs[0]: 0.0.0.0/0 admits every address: it turns the SSRF guard off`,
				`egress.allowCIDRs[1]: want an IP or CIDR (got "x")`,
				`egress.resolvers[0]: want an IP address, optionally with :port (got "dns.example")`,
				`egress.credentials[0]: set headers, oauth2, or both`,
				`egress.credentials[1].headers[0].file: cannot read `,
			},
		},
		{
			name: "nothing to serve",
			edit: func(s string) string {
				i, j := strings.Index(s, "ingress:"), len(s)
				return s[:i] + s[j:]
			},
			wants: []string{"gateway.yaml:1:1: nothing to serve: add an ingress section, an egress section, or both"},
		},
		{
			name:  "wrong kind",
			edit:  func(s string) string { return strings.Replace(s, "kind: Gateway", "kind: Gatway", 1) },
			wants: []string{`gateway.yaml:2:7: kind: must be "Gateway" (got "Gatway")`},
		},
		{
			name: "audit: fail-closed without a journal, duplicate sink names",
			edit: func(s string) string {
				return s + "audit:\n  failureMode: closed\n  sinks:\n  - stdout: true\n  - {name: stdout, file: audit.log}\n"
			},
			wants: []string{
				"gateway.yaml:24:16: audit.failureMode: closed needs audit.journal",
				`gateway.yaml:27:12: audit.sinks[1].name: sink name "stdout" is also audit.sinks[0]'s`,
			},
		},
		{
			name: "audit: syslog without a journal, bad address, half a client certificate",
			edit: func(s string) string {
				return s + "audit:\n  sinks:\n  - syslog: {address: siem.example.com, certFile: tls.crt}\n  - {stdout: true, file: a.log}\n"
			},
			wants: []string{
				"gateway.yaml:25:13: audit.sinks[0].syslog: a network sink needs audit.journal",
				"gateway.yaml:25:13: audit.sinks[0].syslog: set both certFile and keyFile, or neither",
				`gateway.yaml:25:23: audit.sinks[0].syslog.address: "siem.example.com": want host:port`,
				"gateway.yaml:26:5: audit.sinks[1]: set exactly one of stdout, file, syslog, webhook, hec and otlp (got 2)",
			},
		},
		{
			name: "audit: webhook over plain HTTP, HEC without a token",
			edit: func(s string) string {
				return s + "audit:\n  journal: {dir: .}\n  sinks:\n  - webhook: {url: \"http://siem.example.com/in?key=secret\"}\n  - hec: {url: https://splunk.example.com:8088}\n"
			},
			wants: []string{
				`gateway.yaml:26:20: audit.sinks[0].webhook.url: "http://siem.example.com/in?…": want https://host[:port]/path`,
				"gateway.yaml:27:10: audit.sinks[1].hec.tokenFile: required",
			},
		},
		{
			name: "audit: pseudonymize with a short key and an unknown field",
			edit: func(s string) string {
				return s + "audit:\n  pseudonymize: {keyFile: tls.crt, fields: [client.address, path]}\n"
			},
			wants: []string{
				"audit.pseudonymize.fields[1]: \"path\": want one of client.address, auth.principal, auth.subject, sourcePrincipal",
			},
		},
		{
			name: "audit: bad journal",
			edit: func(s string) string {
				return s + "audit:\n  failureMode: shut\n  journal: {dir: nowhere/journal, segmentBytes: 100, onFull: spill, signingKey: tls.key, decisionDelay: 1s, decisionSiblings: -1}\n  sinks: [{name: ../x, stdout: true, format: leef}]\n"
			},
			wants: []string{
				`gateway.yaml:24:16: audit.failureMode: "shut": want open or closed`,
				"gateway.yaml:25:18: audit.journal.dir: parent directory nowhere does not exist",
				"gateway.yaml:25:49: audit.journal.segmentBytes: 100: want at least 4096",
				`audit.journal.onFull: "spill": want dropOldest or block`,
				`audit.journal.signingKey: tls.key: a *ecdsa.PrivateKey key, want Ed25519`,
				`audit.journal.decisionDelay: 1s: want between 0s (never wait) and 100ms`,
				`audit.journal.decisionSiblings: -1: want at least 1 (unset or 0: 16)`,
				`audit.sinks[0].name: "../x": a sink name is a plain file name`,
				`gateway.yaml:26:46: audit.sinks[0].format: "leef": want native, ocsf, ecs or cef`,
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := fixtureDir(t)
			file := filepath.Join(dir, "gateway.yaml")
			os.WriteFile(file, []byte(tc.edit(validConfig)), 0o600)
			_, err := Load(file)
			if err == nil {
				t.Fatal("Load succeeded, want errors")
			}
			out := strings.ReplaceAll(err.Error(), dir+string(filepath.Separator), "")
			rest := out
			for _, w := range tc.wants {
				i := strings.Index(rest, w)
				if i < 0 {
					t.Fatalf("missing (or out of order) %q in:\n%s", w, out)
				}
				rest = rest[i+len(w):]
			}
		})
	}
}

// Route hosts go through the one host canonicalizer requests go through: a
// pattern the router would read differently is refused, and two spellings
// of one host are one route.
func TestRouteHosts(t *testing.T) {
	tests := []struct {
		web, api string // the two routes' hosts (api adds pathPrefix /api)
		wantErr  string // "" for valid
	}{
		{web: "app.example.com", api: "*.example.com"},
		{web: "app.example.com:8443", api: "*"},
		{web: "Bücher.example", api: "xn--bcher-kva.example:443"},
		{web: "app..example.com", api: "*", wantErr: `ingress.routes[0].host: invalid host "app..example.com"`},
		{web: "[app.example.com]", api: "*", wantErr: `ingress.routes[0].host: invalid host`},
		{web: "app.exa*mple.com", api: "*", wantErr: `ingress.routes[0].host: invalid host`},
		{web: "app.example.com:0", api: "*", wantErr: `ingress.routes[0].host: invalid host`},
		{web: "*.*.example.com", api: "*", wantErr: `ingress.routes[0].host: invalid host`},
		// The second route's pathPrefix is /api; give it / to collide.
		{web: "APP.Example.com.", api: "app.example.com/", wantErr: `duplicate route: host "app.example.com"`},
	}
	for _, tc := range tests {
		t.Run(tc.web+" "+tc.api, func(t *testing.T) {
			dir := fixtureDir(t)
			cfg := strings.Replace(validConfig, "host: app.example.com\n    upstream", "host: \""+tc.web+"\"\n    upstream", 1)
			api, prefix := tc.api, "/api"
			if a, ok := strings.CutSuffix(api, "/"); ok {
				api, prefix = a, "/"
			}
			cfg = strings.Replace(cfg, "host: app.example.com\n    pathPrefix: /api", "host: \""+api+"\"\n    pathPrefix: "+prefix, 1)
			file := filepath.Join(dir, "gateway.yaml")
			os.WriteFile(file, []byte(cfg), 0o600)
			_, err := Load(file)
			switch {
			case tc.wantErr == "" && err != nil:
				t.Fatalf("Load: %v", err)
			case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
				t.Fatalf("Load: %v, want %q", err, tc.wantErr)
			}
		})
	}
}

// A problem found while compiling keeps its cause: errors.Is sees through the
// positioned error and the list.
func TestErrorForKeepsTheCause(t *testing.T) {
	dir := fixtureDir(t)
	file := filepath.Join(dir, "gateway.yaml")
	os.WriteFile(file, []byte(validConfig), 0o600)
	g, err := Load(file)
	if err != nil {
		t.Fatal(err)
	}
	cause := fmt.Errorf("open key: %w", fs.ErrNotExist)
	errs := Errors{g.ErrorAt("ingress.listen", "busy"), g.ErrorFor("identity.files", cause)}.Err()
	if !errors.Is(errs, fs.ErrNotExist) {
		t.Errorf("errors.Is lost the cause: %v", errs)
	}
	if want := "identity.files: open key: file does not exist"; !strings.Contains(errs.Error(), want) {
		t.Errorf("%q lacks %q", errs, want)
	}
	if errors.Is(Errors{g.ErrorAt("ingress.listen", "busy")}.Err(), fs.ErrNotExist) {
		t.Error("a problem without a cause matched one")
	}
}
