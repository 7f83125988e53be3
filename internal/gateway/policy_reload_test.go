package gateway_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"tollgate.dev/tollgate/internal/config"
	"tollgate.dev/tollgate/internal/gateway"
	"tollgate.dev/tollgate/internal/listener"
)

// logTap keeps what the gateway logs, for assertions, and passes it to t.Log.
type logTap struct {
	t  testing.TB
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logTap) Write(p []byte) (int, error) {
	l.mu.Lock()
	l.b.Write(p)
	l.mu.Unlock()
	l.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

// lines returns the logged lines that contain every one of parts.
func (l *logTap) lines(parts ...string) []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []string
	for line := range strings.Lines(l.b.String()) {
		ok := true
		for _, p := range parts {
			ok = ok && strings.Contains(line, p)
		}
		if ok {
			out = append(out, line)
		}
	}
	return out
}

// policyEnvOptions shape an env for the policy reload tests.
type policyEnvOptions struct {
	// policy is the policy section of the configuration, flow style.
	policy string
	// adminListen is gateway.Options.AdminListen ($TOLLGATE_ADMIN_LISTEN).
	adminListen string
}

// startPolicyEnv is startEnvOpts with a log the test can read, the policy
// section given, and in-memory ingress certificates: Reload (SIGHUP) then
// waits for no certificate settle and reloads policy as fast as it is called.
func startPolicyEnv(t *testing.T, policies string, o policyEnvOptions) (*env, *logTap) {
	t.Helper()
	dir := t.TempDir()
	pki, echo, _ := startPKIAndEcho(t, dir, map[string]string{"gateway": gatewayID, "echo": echoID})
	tap := &logTap{t: t}
	log := slog.New(slog.NewTextHandler(tap, nil))

	e := &env{t: t, dir: dir, policyDir: filepath.Join(dir, "policies"),
		cfgFile: filepath.Join(dir, "gateway.yaml"), echoAddr: echo.Addr()}
	if err := os.MkdirAll(e.policyDir, 0o755); err != nil {
		t.Fatal(err)
	}
	e.writePolicy(policies)
	if o.policy == "" {
		o.policy = "{files: [policies/], pollInterval: 50ms}"
	}
	cfgText := e.gatewayFile(e.route("echo", "", ""), "", o.policy)
	file := filepath.Join(dir, "gateway.yaml")
	if err := os.WriteFile(file, []byte(cfgText), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(file)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := tls.LoadX509KeyPair(pki.TLSCert, pki.TLSKey)
	if err != nil {
		t.Fatal(err)
	}
	certs, err := listener.NewStaticCertStore(cert)
	if err != nil {
		t.Fatal(err)
	}
	if o.adminListen != "" {
		cfg.Admin.Listen = o.adminListen
	}
	gw, err := gateway.New(context.Background(), cfg, gateway.Options{Logger: log, Certs: certs, AdminListen: o.adminListen})
	if err != nil {
		t.Fatal(err)
	}
	if err := gw.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { gw.Shutdown(context.Background()) })
	e.gw = gw
	e.base = "https://" + gw.IngressAddr().String()
	pem, err := os.ReadFile(pki.CA)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}, ForceAttemptHTTP2: true}
	t.Cleanup(tr.CloseIdleConnections)
	e.client = &http.Client{Transport: tr, Timeout: 10 * time.Second}
	return e, tap
}

// statuses are the answers to GET /x, /y and /z, the paths every case probes.
type statuses [3]int

func (e *env) statuses() statuses {
	e.t.Helper()
	var s statuses
	for i, p := range []string{"/x", "/y", "/z"} {
		s[i] = e.do(e.client, "GET", p).status
	}
	return s
}

// waitStatuses polls until the probes answer want (bounded).
func (e *env) waitStatuses(want statuses) {
	e.t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		got := e.statuses()
		if got == want {
			return
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("/x /y /z = %v, want %v", got, want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

var reloadsRE = regexp.MustCompile(`(?m)^tollgate_config_reloads_total\{kind="([a-z]+)",result="([a-z_]+)"\} (\d+)$`)

// reloads are the reloads of kind ("policy", "gateway") counted, by result.
func (e *env) reloads(kind string) map[string]int {
	e.t.Helper()
	out := map[string]int{}
	for _, m := range reloadsRE.FindAllStringSubmatch(e.metrics(), -1) {
		if m[1] == kind {
			n, _ := strconv.Atoi(m[3])
			out[m[2]] = n
		}
	}
	return out
}

// policyReloads are the policy reloads counted, by result.
func (e *env) policyReloads() map[string]int { return e.reloads("policy") }

// waitReloads polls until at least n policy reloads with result are counted.
func (e *env) waitReloads(result string, n int) {
	e.t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for e.policyReloads()[result] < n {
		if time.Now().After(deadline) {
			e.t.Fatalf("policy reloads %v, want %d %s", e.policyReloads(), n, result)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// apDoc is one AuthorizationPolicy in the root namespace, its spec in flow style.
func apDoc(name, spec string) string {
	return "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: " + name + ", namespace: istio-system}\nspec: " + spec + "\n---\n"
}

func TestPolicyReloadRefusesEmptiedSets(t *testing.T) {
	// In force at start: /x denied, /y allowed, /z not allowed by the ALLOW policy.
	const (
		denyXDoc  = `{action: DENY, rules: [{to: [{operation: {paths: ["/x"]}}]}]}`
		allowXY   = `{action: ALLOW, rules: [{to: [{operation: {paths: ["/x", "/y"]}}]}]}`
		elsewhere = `{selector: {matchLabels: {app: elsewhere}}, action: DENY, rules: [{to: [{operation: {paths: ["/x", "/y", "/z"]}}]}]}`
	)
	initial := apDoc("deny-x", denyXDoc) + apDoc("allow-xy", allowXY)
	start := statuses{403, 200, 403}

	write := func(text string) func(*env) {
		return func(e *env) { e.writePolicy(text) }
	}
	remove := func(e *env) {
		if err := os.Remove(filepath.Join(e.policyDir, "policy.yaml")); err != nil {
			e.t.Fatal(err)
		}
	}
	tests := []struct {
		name       string
		allowEmpty bool
		change     func(*env)
		// wantLost is what the refusal names; "" means the set goes in force.
		wantLost string
		// wantAfter is what the probes answer once the new set is in force
		// (for a refused set: what they answer had it not been refused).
		wantAfter statuses
	}{
		{name: "emptied file", change: write(""), wantLost: "would have no policies (has 2)", wantAfter: statuses{200, 200, 200}},
		{name: "deleted file", change: remove, wantLost: "would have no policies (has 2)", wantAfter: statuses{200, 200, 200}},
		{name: "comments only", change: write("# moved to the new repository\n"), wantLost: "would have no policies", wantAfter: statuses{200, 200, 200}},
		{name: "every DENY removed", change: write(apDoc("allow-xy", allowXY)), wantLost: "would have no DENY policies (has 1)", wantAfter: statuses{200, 200, 403}},
		{name: "every ALLOW removed", change: write(apDoc("deny-x", denyXDoc)), wantLost: "would have no ALLOW policies (has 1)", wantAfter: statuses{403, 200, 200}},
		{name: "no policy selects the listener any more", change: write(apDoc("deny-elsewhere", elsewhere)), wantLost: "listener ingress would have no policies (has 2)", wantAfter: statuses{200, 200, 200}},
		{
			name:      "both kinds kept: a change goes in force",
			change:    write(apDoc("deny-y", `{action: DENY, rules: [{to: [{operation: {paths: ["/y"]}}]}]}`) + apDoc("allow-xz", `{action: ALLOW, rules: [{to: [{operation: {paths: ["/x", "/z"]}}]}]}`)),
			wantAfter: statuses{200, 403, 200},
		},
		{name: "emptied file, allowEmpty", allowEmpty: true, change: write(""), wantAfter: statuses{200, 200, 200}},
		{name: "deleted file, allowEmpty", allowEmpty: true, change: remove, wantAfter: statuses{200, 200, 200}},
		{name: "every DENY removed, allowEmpty", allowEmpty: true, change: write(apDoc("allow-xy", allowXY)), wantAfter: statuses{200, 200, 403}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			policyCfg := fmt.Sprintf("{files: [policies/], pollInterval: 50ms, allowEmpty: %t}", tt.allowEmpty)
			e, logs := startPolicyEnv(t, initial, policyEnvOptions{policy: policyCfg})
			if got := e.statuses(); got != start {
				t.Fatalf("before the change: /x /y /z = %v, want %v", got, start)
			}
			tt.change(e)

			if tt.wantLost == "" {
				// Polling puts it in force, and a SIGHUP after that has nothing to do.
				e.waitStatuses(tt.wantAfter)
				if err := e.gw.Reload(); err != nil {
					t.Errorf("Reload after the change: %v", err)
				}
				if n := e.policyReloads()[telemetryRefusedEmpty]; n != 0 {
					t.Errorf("%d reloads counted as refused_empty, want 0", n)
				}
				if tt.allowEmpty && strings.Contains(tt.name, "allowEmpty") && len(logs.lines("level=WARN", "policy.allowEmpty")) < 2 {
					// One warning at startup that the setting is on, one for the set it let in.
					t.Errorf("allowEmpty let a set in without a warning")
				}
				return
			}

			// Polling sees the change and refuses it: the old set keeps serving.
			e.waitReloads(telemetryRefusedEmpty, 1)
			if got := e.statuses(); got != start {
				t.Errorf("after a refused change: /x /y /z = %v, want %v (the old set)", got, start)
			}
			// So does SIGHUP, naming what would be lost.
			err := e.gw.Reload()
			if !errors.Is(err, gateway.ErrPolicySetEmptied) || !strings.Contains(err.Error(), tt.wantLost) {
				t.Errorf("Reload = %v, want ErrPolicySetEmptied naming %q", err, tt.wantLost)
			}
			e.waitReloads(telemetryRefusedEmpty, 2)
			if got := e.statuses(); got != start {
				t.Errorf("after a refused SIGHUP: /x /y /z = %v, want %v", got, start)
			}
			warns := logs.lines("level=WARN", "policy reload refused", tt.wantLost)
			if len(warns) < 2 {
				t.Errorf("%d WARN lines for the refused reloads, want 2 (poll and SIGHUP)", len(warns))
			}
			if infos := logs.lines("level=INFO", "policy set in force"); len(infos) != 1 {
				t.Errorf("%d sets put in force, want 1 (at startup): %q", len(infos), infos)
			}
			if n := e.policyReloads()["success"]; n != 1 {
				t.Errorf("%d successful policy reloads, want 1 (at startup)", n)
			}
			if !strings.Contains(e.metrics(), `tollgate_config_last_reload_successful{kind="policy"} 0`) {
				t.Errorf("last policy reload not reported unsuccessful")
			}
			resp, err := http.Get("http://" + e.gw.AdminAddr() + "/readyz")
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != 200 {
				t.Errorf("readiness after a refused reload: %d, want 200 (the old set serves)", resp.StatusCode)
			}

			// Putting the old content back is a success again, and compiles nothing.
			e.writePolicy(initial)
			e.waitReloads("success", 2)
			if got := e.statuses(); got != start {
				t.Errorf("after restoring the files: /x /y /z = %v, want %v", got, start)
			}
			if !strings.Contains(e.metrics(), `tollgate_config_last_reload_successful{kind="policy"} 1`) {
				t.Errorf("restoring the files did not clear the failed-reload gauge")
			}
		})
	}
}

// telemetryRefusedEmpty is telemetry.ResultRefusedEmpty, as the metric shows it.
const telemetryRefusedEmpty = "refused_empty"

func TestPolicyStartupWithoutPolicies(t *testing.T) {
	e, logs := startPolicyEnv(t, "# nothing yet\n", policyEnvOptions{})
	if got := logs.lines("level=WARN", "no policy applies to this listener", "listener=ingress"); len(got) != 1 {
		t.Errorf("startup with no policies: %d warnings, want 1", len(got))
	}
	if got := e.statuses(); got != (statuses{200, 200, 200}) {
		t.Errorf("no policies: /x /y /z = %v, want all allowed (Istio's default)", got)
	}
	// The first set is taken; emptying the files again is then refused.
	e.writePolicy(denyX)
	e.waitStatuses(statuses{403, 200, 200})
	e.writePolicy("")
	e.waitReloads(telemetryRefusedEmpty, 1)
	if got := e.statuses(); got != (statuses{403, 200, 200}) {
		t.Errorf("after emptying: /x /y /z = %v, want the old set", got)
	}
}

// A SIGHUP sent for logrotate, with policy files unchanged, compiles nothing
// and puts nothing new in force.
func TestPolicySIGHUPWithUnchangedFiles(t *testing.T) {
	e, logs := startPolicyEnv(t, denyX, policyEnvOptions{policy: "{files: [policies/], pollInterval: 1s}"})
	start := time.Now()
	for range 20 {
		if err := e.gw.Reload(); err != nil {
			t.Fatal(err)
		}
	}
	// Unchanged content is recognized by one read: no settle wait.
	if d := time.Since(start); d > time.Second {
		t.Errorf("20 reloads of unchanged files took %s, want no settle wait (settle is 1s)", d)
	}
	if n := e.policyReloads()["success"]; n != 1 {
		t.Errorf("%d policy compiles counted, want 1 (startup only)", n)
	}
	if got := logs.lines("policy set in force"); len(got) != 1 {
		t.Errorf("%d sets put in force, want 1", len(got))
	}
}

// The running gateway names a set by the version `gateway policy` gives it.
func TestCompilePoliciesVersionMatchesLoadDocuments(t *testing.T) {
	dir := t.TempDir()
	os.MkdirAll(filepath.Join(dir, "team"), 0o755)
	os.WriteFile(filepath.Join(dir, "a.yaml"), []byte(denyX), 0o644)
	os.WriteFile(filepath.Join(dir, "team", "b.yml"), []byte(denyY), 0o644)
	os.WriteFile(filepath.Join(dir, ".hidden.yaml"), []byte("not: a policy"), 0o644)
	os.WriteFile(filepath.Join(dir, "README.md"), []byte("# docs"), 0o644)
	paths := []string{dir}
	set, err := config.LoadDocuments(paths)
	if err != nil {
		t.Fatal(err)
	}
	c, err := gateway.CompilePolicies(&config.Gateway{}, paths, nil)
	if err != nil {
		t.Fatal(err)
	}
	if c.Version != set.Version || c.Policies.Len() != 2 {
		t.Errorf("CompilePolicies: version %s with %d policies, want LoadDocuments' %s with 2", c.Version, c.Policies.Len(), set.Version)
	}
}
