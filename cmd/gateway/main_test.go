package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"
	"tollgate.dev/tollgate/internal/config"
	"tollgate.dev/tollgate/internal/dev"
	"tollgate.dev/tollgate/internal/gateway"
	"tollgate.dev/tollgate/internal/identity"

	"tollgate.dev/tollgate/internal/testkit"
)

// copyExample copies an example directory into a temporary one and writes its
// throwaway PKI there, as the example's README tells a user to.
func copyExample(t *testing.T, name string) string {
	t.Helper()
	src := filepath.Join("..", "..", "examples", name)
	dst := filepath.Join(t.TempDir(), name)
	err := filepath.WalkDir(src, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		if rel == "pki" && d.IsDir() {
			return filepath.SkipDir
		}
		if d.IsDir() {
			return os.MkdirAll(filepath.Join(dst, rel), 0o755)
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(dst, rel), b, 0o644)
	})
	if err != nil {
		t.Fatal(err)
	}
	var out, errb bytes.Buffer
	if code := run([]string{"dev", "pki", "-out", filepath.Join(dst, "pki")}, nil, &out, &errb); code != 0 {
		t.Fatalf("dev pki: %d %s", code, errb.String())
	}
	if name == "oidc" {
		// What run.sh makes: the client secret and the session key, never committed.
		os.MkdirAll(filepath.Join(dst, "secrets"), 0o700)
		for _, f := range []string{"client-secret", "session.key"} {
			b := make([]byte, 32)
			rand.Read(b)
			if err := os.WriteFile(filepath.Join(dst, "secrets", f), []byte(base64.StdEncoding.EncodeToString(b)), 0o600); err != nil {
				t.Fatal(err)
			}
		}
	}
	return dst
}

// startInProcess loads file and runs the gateway in the test's process until
// the test ends.
func startInProcess(t *testing.T, file string) *gateway.Gateway {
	t.Helper()
	cfg, err := config.Load(file)
	if err != nil {
		t.Fatal(err)
	}
	gw, err := gateway.New(context.Background(), cfg, gateway.Options{Logger: testLogger(t), Stdout: io.Discard})
	if err != nil {
		t.Fatal(err)
	}
	if err := gw.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { gw.Shutdown(context.Background()) })
	return gw
}

func exampleNames(t *testing.T) []string {
	matches, err := filepath.Glob(filepath.Join("..", "..", "examples", "*", "gateway.yaml"))
	if err != nil || len(matches) == 0 {
		t.Fatalf("no examples found: %v", err)
	}
	var names []string
	for _, m := range matches {
		names = append(names, filepath.Base(filepath.Dir(m)))
	}
	return names
}

// TestCheckExamples runs `gateway check` on every example, so they never rot.
func TestCheckExamples(t *testing.T) {
	for _, name := range exampleNames(t) {
		t.Run(name, func(t *testing.T) {
			dir := copyExample(t, name)
			if name == "spire" {
				// Its README runs it with the agent's socket in the
				// environment; check dials nothing.
				t.Setenv("SPIFFE_ENDPOINT_SOCKET", "unix:///run/spire/agent.sock")
			}
			var out, errb bytes.Buffer
			code := run([]string{"check", "-c", filepath.Join(dir, "gateway.yaml")}, nil, &out, &errb)
			if code != 0 {
				t.Fatalf("check exited %d:\n%s", code, errb.String())
			}
			if !strings.Contains(out.String(), ": ok (") {
				t.Errorf("summary line = %q", out.String())
			}
			if errb.Len() > 0 {
				t.Errorf("check of a shipped example printed:\n%s", errb.String())
			}
		})
	}
}

// A listener namespace leaves out the documents of other namespaces; check
// says which, so a namespace set by mistake (an ALLOW policy that silently
// stops applying) is seen before it serves.
func TestCheckWarnsOfUnselectedDocuments(t *testing.T) {
	dir := copyExample(t, "quickstart")
	file := filepath.Join(dir, "gateway.yaml")
	b, _ := os.ReadFile(file)
	os.WriteFile(file, []byte(strings.Replace(string(b), "\ningress:\n", "\ningress:\n  namespace: edge\n", 1)), 0o644)
	os.WriteFile(filepath.Join(dir, "policies", "payments.yaml"), []byte(`apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: payments-only, namespace: payments}
spec: {rules: [{to: [{operation: {paths: [/pay]}}]}]}
`), 0o644)
	var out, errb bytes.Buffer
	if code := run([]string{"check", "-c", file}, nil, &out, &errb); code != 0 {
		t.Fatalf("check exited %d:\n%s", code, errb.String())
	}
	want := regexp.MustCompile(`(?m)^warning: .*payments\.yaml:1: AuthorizationPolicy payments/payments-only: applies to no listener \(check its namespace and selector\)$`)
	if !want.MatchString(errb.String()) || strings.Count(errb.String(), "warning:") != 1 {
		t.Errorf("stderr:\n%s", errb.String())
	}
}

func TestCheckBrokenExample(t *testing.T) {
	dir := copyExample(t, "quickstart")
	file := filepath.Join(dir, "gateway.yaml")
	b, _ := os.ReadFile(file)
	broken := strings.Replace(string(b), "pathPrefix: /", "pathprefix: /", 1)
	broken = strings.Replace(broken, "url: https://127.0.0.1:9443", "url: http://127.0.0.1:9443", 1)
	os.WriteFile(file, []byte(broken), 0o644)
	var out, errb bytes.Buffer
	if code := run([]string{"check", "-c", file}, nil, &out, &errb); code != 1 {
		t.Fatalf("check exited %d, want 1", code)
	}
	// Every problem in one run: the unknown field does not hide the
	// plain-text upstream.
	for _, re := range []*regexp.Regexp{
		regexp.MustCompile(`(?m)^.*gateway\.yaml:\d+:\d+: ingress\.routes\[0\]\.pathprefix: unknown field \(did you mean "pathPrefix"\?\)$`),
		regexp.MustCompile(`(?m)^.*gateway\.yaml:\d+:\d+: ingress\.routes\[0\]\.upstream\.url: must be https://`),
	} {
		if !re.MatchString(errb.String()) {
			t.Errorf("no line matches %s; stderr:\n%s", re, errb.String())
		}
	}
	os.WriteFile(file, []byte(strings.Replace(string(b), "url: https://127.0.0.1:9443", "url: http://127.0.0.1:9443", 1)), 0o644)
	errb.Reset()
	if code := run([]string{"check", "-c", file}, nil, &out, &errb); code != 1 {
		t.Fatalf("check exited %d, want 1", code)
	}
	if !regexp.MustCompile(`gateway\.yaml:22:12: ingress\.routes\[0\]\.upstream\.url: must be https://`).MatchString(errb.String()) {
		t.Errorf("stderr:\n%s", errb.String())
	}
}

type echoReply struct {
	Caller string `json:"caller"`
	Path   string `json:"path"`
}

func clientFor(t *testing.T, caFile string) *http.Client {
	pem, err := os.ReadFile(caFile)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}, ForceAttemptHTTP2: true}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 10 * time.Second}
}

func getJSON(t *testing.T, c *http.Client, method, url string) (int, echoReply, string) {
	t.Helper()
	req, _ := http.NewRequest(method, url, nil)
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var e echoReply
	json.Unmarshal(b, &e)
	return resp.StatusCode, e, string(b)
}

// TestQuickstartEndToEnd runs the quickstart as its README says: PKI, the echo
// upstream, the gateway with the example's configuration, and the curl lines.
func TestQuickstartEndToEnd(t *testing.T) {
	dir := copyExample(t, "quickstart")
	pki := filepath.Join(dir, "pki")
	echoSrc, err := identity.NewFiles(identity.FilesOptions{Cert: filepath.Join(pki, "echo.crt"), Key: filepath.Join(pki, "echo.key"), Bundle: filepath.Join(pki, "ca.crt")})
	if err != nil {
		t.Fatal(err)
	}
	defer echoSrc.Close()
	allow, _ := identity.ParseMatcher([]string{"spiffe://example.org/ns/tollgate/sa/gateway"})
	echo, err := dev.StartEcho("127.0.0.1:0", echoSrc, allow, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	defer echo.Close()

	file := filepath.Join(dir, "gateway.yaml")
	b, _ := os.ReadFile(file)
	s := strings.Replace(string(b), "https://127.0.0.1:9443", "https://"+echo.Addr(), 1)
	s = strings.Replace(s, "listen: 127.0.0.1:8443", "listen: 127.0.0.1:0", 1)
	s = strings.Replace(s, "listen: 127.0.0.1:9901", "listen: 127.0.0.1:0", 1)
	os.WriteFile(file, []byte(s), 0o644)
	gw := startInProcess(t, file)
	base := "https://" + gw.IngressAddr().String()
	c := clientFor(t, filepath.Join(pki, "ca.crt"))
	tests := []struct {
		method, path string
		want         int
	}{
		{"GET", "/hello", 200},
		{"HEAD", "/hello", 200},
		{"GET", "/admin/users", 403},
		{"GET", "/x/../admin/users", 403},
		{"GET", "//admin/users", 403},
		{"POST", "/hello", 403},
	}
	for _, tc := range tests {
		status, e, body := getJSON(t, c, tc.method, base+tc.path)
		if status != tc.want {
			t.Errorf("%s %s = %d, want %d: %s", tc.method, tc.path, status, tc.want, body)
		}
		if tc.want == 200 && tc.method == "GET" && e.Caller != "spiffe://example.org/ns/tollgate/sa/gateway" {
			t.Errorf("caller = %q", e.Caller)
		}
	}
	resp, err := http.Get("http://" + gw.AdminAddr() + "/readyz")
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("readyz: %v %v", resp, err)
	}
	resp.Body.Close()
}

// TestDevMode runs what the README's first command runs and follows its printed
// curl lines, header flags included: each line must get the status its comment
// promises, and every promised line must be there.
func TestDevMode(t *testing.T) {
	var out bytes.Buffer
	env, err := dev.Start(context.Background(), dev.Options{
		Dir: t.TempDir(), Listen: "127.0.0.1:0", Admin: "127.0.0.1:0",
		Logger: testLogger(t), Out: &out, Audit: io.Discard,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer env.Close(context.Background())
	c := clientFor(t, env.CAFile)
	curls := regexp.MustCompile(`(?m)^\s+curl --cacert (\S+)((?: -H "[^"]*")*) (\S+)$`).FindAllStringSubmatch(out.String(), -1)
	type want struct {
		status int
		seen   bool
	}
	wants := map[string]*want{
		"/hello":       {status: 200},
		"/admin/users": {status: 403},
		"/api/items":   {status: 403},
		"/api/items Authorization: Bearer " + env.Token: {status: 200},
		"/api/items Authorization: Bearer not-a-jwt":    {status: 401},
	}
	headerFlag := regexp.MustCompile(`-H "([^":]+): ([^"]*)"`)
	for _, m := range curls {
		if m[1] != env.CAFile {
			t.Errorf("curl uses CA %s, want %s", m[1], env.CAFile)
		}
		u := m[3]
		path := u[strings.Index(u[len("https://"):], "/")+len("https://"):]
		req, _ := http.NewRequest("GET", u, nil)
		key := path
		for _, h := range headerFlag.FindAllStringSubmatch(m[2], -1) {
			req.Header.Add(h[1], h[2])
			key += " " + h[1] + ": " + h[2]
		}
		resp, err := c.Do(req)
		if err != nil {
			t.Fatalf("%s: %v", u, err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		var e struct {
			Caller  string              `json:"caller"`
			Headers map[string][]string `json:"headers"`
		}
		json.Unmarshal(b, &e)
		w, ok := wants[key]
		if !ok {
			t.Errorf("unexpected curl line for %q", key)
			continue
		}
		w.seen = true
		if resp.StatusCode != w.status {
			t.Errorf("%s = %d (want %d): %s", key, resp.StatusCode, w.status, b)
		}
		if resp.StatusCode == 200 && e.Caller != dev.GatewayID {
			t.Errorf("%s: caller %q, want %q", u, e.Caller, dev.GatewayID)
		}
		if resp.StatusCode == 200 && strings.HasPrefix(path, "/api/") && strings.Join(e.Headers["X-Dev-User"], ",") != dev.DevUser {
			t.Errorf("%s: upstream saw x-dev-user %q, want %q", u, e.Headers["X-Dev-User"], dev.DevUser)
		}
	}
	for k, w := range wants {
		if !w.seen {
			t.Errorf("no printed curl line for %q:\n%s", k, out.String())
		}
	}
}

// TestRunRefusesWhatCheckRefuses: run prints the same positioned errors as check
// and exits 1 before binding anything.
// TestMain lets a test run this test binary as the gateway itself: with
// TOLLGATE_TEST_GATEWAY=1 it is main(), so signals and broken pipes meet the
// code a release binary runs, with no separate build.
func TestMain(m *testing.M) {
	if os.Getenv("TOLLGATE_TEST_GATEWAY") == "1" {
		main()
	}
	goleak.VerifyTestMain(m)
}

// gatewayProc is the gateway running as a child process.
type gatewayProc struct {
	cmd    *exec.Cmd
	exited chan struct{}
	err    error // of Wait, once exited is closed
}

// startGateway runs the gateway with args. stdout and stderr are the child's;
// a test that needs neither passes io.Discard. The child is killed at the end
// of the test if it is still running.
func startGateway(t *testing.T, stdout, stderr io.Writer, args ...string) *gatewayProc {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe, args...)
	cmd.Env = append(os.Environ(), "TOLLGATE_TEST_GATEWAY=1")
	cmd.Stdout, cmd.Stderr = stdout, stderr
	cmd.WaitDelay = 5 * time.Second // bounds Wait on a grandchild holding a pipe
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &gatewayProc{cmd: cmd, exited: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.exited)
	}()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-p.exited
	})
	return p
}

// wait returns the exit error once the child exits, or fails the test after d.
func (p *gatewayProc) wait(t *testing.T, d time.Duration) error {
	t.Helper()
	select {
	case <-p.exited:
		return p.err
	case <-time.After(d):
		t.Fatalf("gateway still running %v later", d)
		return nil
	}
}

// running fails the test if the child has exited.
func (p *gatewayProc) running(t *testing.T) {
	t.Helper()
	select {
	case <-p.exited:
		t.Fatalf("gateway exited: %v", p.cmd.ProcessState)
	default:
	}
}

// waitReady polls the admin listener's /readyz until it answers 200.
func (p *gatewayProc) waitReady(t *testing.T, admin string) {
	t.Helper()
	c := &http.Client{Timeout: time.Second}
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		p.running(t)
		if resp, err := c.Get("http://" + admin + "/readyz"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
	}
	t.Fatal("gateway not ready after 30s")
}

// handedOut are the addresses freeAddr has returned in this test binary.
var handedOut struct {
	sync.Mutex
	m map[string]bool
}

// freeAddr returns a loopback address nothing listens on (for a moment),
// and that it has not returned before. Its port is below the kernel's
// ephemeral range (testkit.FreePorts): a port from 127.0.0.1:0 can be taken
// by another test's connection or listener before the gateway binds it,
// which made a test fail now and then with "address already in use".
func freeAddr(t *testing.T) string {
	t.Helper()
	handedOut.Lock()
	defer handedOut.Unlock()
	if handedOut.m == nil {
		handedOut.m = map[string]bool{}
	}
	for range 100 {
		addr := testkit.FreeAddrs(t, 1)[0]
		if !handedOut.m[addr] {
			handedOut.m[addr] = true
			return addr
		}
	}
	t.Fatal("no free address not handed out before")
	return ""
}

// quickstartConfig is the quickstart with its PKI, the given ingress and admin
// addresses and upstream, and extra top-level YAML appended.
func quickstartConfig(t *testing.T, ingress, admin, upstream, extra string) string {
	t.Helper()
	dir := copyExample(t, "quickstart")
	file := filepath.Join(dir, "gateway.yaml")
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	for _, r := range [][2]string{
		{"https://127.0.0.1:9443", "https://" + upstream},
		{"listen: 127.0.0.1:8443", "listen: " + ingress},
		{"listen: 127.0.0.1:9901", "listen: " + admin},
	} {
		if !strings.Contains(s, r[0]) {
			t.Fatalf("quickstart has no %q any more", r[0])
		}
		s = strings.Replace(s, r[0], r[1], 1)
	}
	if err := os.WriteFile(file, []byte(s+extra), 0o644); err != nil {
		t.Fatal(err)
	}
	return file
}

// reload sends SIGHUP and waits until stderr (buf) logs one more reload.
func (p *gatewayProc) reload(t *testing.T, buf *testkit.Buffer) {
	t.Helper()
	before := strings.Count(buf.String(), "msg=reloaded")
	if err := p.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(30 * time.Second); strings.Count(buf.String(), "msg=reloaded") == before; time.Sleep(20 * time.Millisecond) {
		p.running(t)
		if time.Now().After(deadline) {
			t.Fatalf("no reload logged in 30s after SIGHUP:\n%s", buf.String())
		}
	}
}

// waitFor polls buf until it contains want.
func (p *gatewayProc) waitFor(t *testing.T, buf *testkit.Buffer, want string) {
	t.Helper()
	for deadline := time.Now().Add(15 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if strings.Contains(buf.String(), want) {
			return
		}
		p.running(t)
	}
	t.Fatalf("no %q in stderr after 15s:\n%s", want, buf.String())
}

// The gateway outlives whoever reads its stdout and stderr: with both pipes
// broken (journald restarted, the shipper died) it keeps serving, counts the
// failed writes, and still stops cleanly on SIGTERM. Without SIGPIPE handled,
// the first audit event or log line would kill it with SIGPIPE (exit 141),
// which systemd's defaults would not restart.
func TestServingSurvivesBrokenPipes(t *testing.T) {
	tests := []struct {
		name string
		// args start the command on the given addresses.
		args       func(t *testing.T, ingress, admin string) []string
		path       string // answered with wantStatus, and a line on stderr
		token      string
		wantStatus int
	}{
		{
			name: "run",
			args: func(t *testing.T, ingress, admin string) []string {
				// Nothing listens on the upstream: every request is a 503
				// (unreachable) and an "upstream request failed" line.
				return []string{"run", "-c", quickstartConfig(t, ingress, admin, freeAddr(t), "shutdownDelay: 0s\n")}
			},
			path: "/hello", wantStatus: http.StatusServiceUnavailable,
		},
		{
			name: "dev",
			args: func(t *testing.T, ingress, admin string) []string {
				return []string{"dev", "-dir", t.TempDir(), "-listen", ingress, "-admin", admin, "-egress", "127.0.0.1:0"}
			},
			// A token that does not verify: 401 and "authentication failed".
			path: "/api/items", token: "not-a-jwt", wantStatus: http.StatusUnauthorized,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ingress, admin := freeAddr(t), freeAddr(t)
			args := tc.args(t, ingress, admin)
			outR, outW, err := os.Pipe()
			if err != nil {
				t.Fatal(err)
			}
			errR, errW, err := os.Pipe()
			if err != nil {
				t.Fatal(err)
			}
			outR.Close() // stdout is broken from the start
			var startup testkit.Buffer
			copied := make(chan struct{})
			go func() {
				io.Copy(&startup, errR)
				close(copied)
			}()
			p := startGateway(t, outW, errW, args...)
			outW.Close()
			errW.Close()
			p.waitReady(t, admin)
			errR.Close() // and now stderr too
			<-copied

			c := &http.Client{
				Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}, // only the status matters here
				Timeout:   10 * time.Second,
			}
			defer c.CloseIdleConnections()
			for i := range 30 {
				req, _ := http.NewRequest("GET", "https://"+ingress+tc.path, nil)
				if tc.token != "" {
					req.Header.Set("Authorization", "Bearer "+tc.token)
				}
				resp, err := c.Do(req)
				if err != nil {
					t.Fatalf("request %d: %v (gateway: %v)\nstartup stderr:\n%s", i, err, p.cmd.ProcessState, startup.String())
				}
				resp.Body.Close()
				if resp.StatusCode != tc.wantStatus {
					t.Fatalf("request %d: %d, want %d", i, resp.StatusCode, tc.wantStatus)
				}
			}
			p.running(t)
			p.waitReady(t, admin)
			resp, err := c.Get("http://" + admin + "/metrics")
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			m := regexp.MustCompile(`(?m)^tollgate_audit_write_errors_total (\d+)$`).FindSubmatch(b)
			if m == nil || string(m[1]) == "0" {
				t.Errorf("audit write errors not counted: %q", m)
			}
			// The log's own failures reach /metrics, since the log can't
			// report them where its reader is gone.
			m = regexp.MustCompile(`(?m)^tollgate_log_write_errors_total (\d+)$`).FindSubmatch(b)
			if m == nil || string(m[1]) == "0" {
				t.Errorf("log write errors not counted: %q", m)
			}

			if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
				t.Fatal(err)
			}
			if err := p.wait(t, 20*time.Second); err != nil {
				t.Errorf("after SIGTERM: %v, want exit 0", err)
			}
		})
	}
}

// fullPipe returns a pipe whose buffer is already full: the child's first
// write to w blocks, as it does when the reader of stdout has stalled.
func fullPipe(t *testing.T) (r, w *os.File) {
	t.Helper()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	w.SetWriteDeadline(time.Now().Add(200 * time.Millisecond))
	junk := bytes.Repeat([]byte("x"), 4096)
	for range 1 << 10 { // 4 MiB at most; Linux pipes hold 64 KiB
		if _, err := w.Write(junk); err != nil {
			if !errors.Is(err, os.ErrDeadlineExceeded) {
				t.Fatal(err)
			}
			return r, w
		}
	}
	t.Fatal("pipe never filled")
	return nil, nil
}

// SIGTERM ends the process within shutdownTimeout and a small constant,
// whatever the sinks do: here the audit stdout sink is stuck in a write to a
// pipe nobody reads, which used to hold the exit forever.
func TestShutdownIsBoundedWhenStdoutStalls(t *testing.T) {
	const shutdownTimeout = time.Second
	ingress, admin := freeAddr(t), freeAddr(t)
	file := quickstartConfig(t, ingress, admin, freeAddr(t), "shutdownTimeout: 1s\nshutdownDelay: 0s\n")
	_, outW := fullPipe(t)
	var stderr testkit.Buffer
	p := startGateway(t, outW, &stderr, "run", "-c", file)
	outW.Close()
	p.waitReady(t, admin)

	// Audit events now queue behind the blocked write.
	c := &http.Client{
		Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}},
		Timeout:   10 * time.Second,
	}
	defer c.CloseIdleConnections()
	for i := range 20 {
		resp, err := c.Get("https://" + ingress + "/hello")
		if err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
		resp.Body.Close()
	}
	c.CloseIdleConnections()

	start := time.Now()
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	bound := shutdownTimeout + 5*time.Second
	err := p.wait(t, bound)
	took := time.Since(start)
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 1 {
		t.Errorf("exit = %v after %v, want exit status 1", err, took)
	}
	want := regexp.MustCompile(`(?m)^.*level=ERROR msg=shutdown err="shutdown did not finish within shutdownTimeout 1s \(\+1s\): exiting without it`)
	if !want.MatchString(stderr.String()) {
		t.Errorf("no watchdog line in stderr:\n%s", stderr.String())
	}
	t.Logf("exited %v after SIGTERM (bound %v)", took, bound)
}

// SIGHUP reloads dev mode as it does run (the demo policy says so), instead of
// killing it.
func TestDevReloadsOnSIGHUP(t *testing.T) {
	ingress, admin := freeAddr(t), freeAddr(t)
	var stderr testkit.Buffer
	p := startGateway(t, io.Discard, &stderr, "dev", "-dir", t.TempDir(), "-listen", ingress, "-admin", admin, "-egress", "127.0.0.1:0")
	p.waitReady(t, admin)
	for range 2 {
		p.reload(t, &stderr)
	}
	p.waitReady(t, admin)
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := p.wait(t, 20*time.Second); err != nil {
		t.Errorf("after SIGTERM: %v, want exit 0\n%s", err, stderr.String())
	}
	if !strings.Contains(stderr.String(), "msg=stopped") {
		t.Errorf("no stopped line:\n%s", stderr.String())
	}
}

// A port someone else holds is one clear line that names the address and
// what sets it (the config field for run, the flag for dev), and exit 1: no
// panic, no trace.
func TestBusyPortIsOneClearLine(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	taken := busy.Addr().String()
	q := regexp.QuoteMeta(taken)
	tests := []struct {
		name string
		args func(t *testing.T) []string
		want string // the one error line
	}{
		{
			name: "run ingress",
			args: func(t *testing.T) []string {
				return []string{"run", "-c", quickstartConfig(t, taken, "127.0.0.1:0", "127.0.0.1:1", "")}
			},
			want: `^.*gateway\.yaml:\d+:\d+: ingress\.listen: ` + q + ` is already in use \(is another gateway running\? choose a free address\)$`,
		},
		{
			name: "run admin",
			args: func(t *testing.T) []string {
				return []string{"run", "-c", quickstartConfig(t, "127.0.0.1:0", taken, "127.0.0.1:1", "")}
			},
			want: `^.*gateway\.yaml:\d+:\d+: admin\.listen: ` + q + ` is already in use`,
		},
		{
			name: "dev ingress",
			args: func(t *testing.T) []string {
				return []string{"dev", "-dir", t.TempDir(), "-listen", taken, "-admin", "127.0.0.1:0", "-egress", "127.0.0.1:0"}
			},
			want: `^gateway dev: ` + q + ` is already in use \(is another gateway running\?\): choose another address with -listen \(-listen 127\.0\.0\.1:0 picks a free port\)$`,
		},
		{
			name: "dev admin",
			args: func(t *testing.T) []string {
				return []string{"dev", "-dir", t.TempDir(), "-listen", "127.0.0.1:0", "-admin", taken, "-egress", "127.0.0.1:0"}
			},
			want: `^gateway dev: ` + q + ` is already in use .*: choose another address with -admin `,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var out, errb bytes.Buffer
			if code := run(tc.args(t), nil, &out, &errb); code != 1 {
				t.Errorf("exit %d, want 1", code)
			}
			want := regexp.MustCompile(tc.want)
			var matched, errorLines int
			for _, l := range strings.Split(errb.String(), "\n") {
				if want.MatchString(l) {
					matched++
				}
				if strings.Contains(l, "in use") || strings.Contains(l, "level=ERROR") || strings.Contains(l, "panic") {
					errorLines++
				}
			}
			if matched != 1 || errorLines != 1 {
				t.Errorf("want exactly one error line matching %s; stderr:\n%s", tc.want, errb.String())
			}
		})
	}
}

// SIGTERM turns readiness false while the listeners keep serving for
// shutdownDelay, so a load balancer polling /readyz stops sending before any
// connection is refused; then the process drains and exits 0.
func TestShutdownDelayKeepsServingWhileNotReady(t *testing.T) {
	ingress, admin := freeAddr(t), freeAddr(t)
	file := quickstartConfig(t, ingress, admin, freeAddr(t), "shutdownDelay: 2s\n")
	var stderr testkit.Buffer
	p := startGateway(t, io.Discard, &stderr, "run", "-c", file)
	p.waitReady(t, admin)
	c := &http.Client{
		Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}, // only the status matters here
		Timeout:   5 * time.Second,
	}
	defer c.CloseIdleConnections()
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	// Until readiness is seen false, and for a while after, every request is
	// answered by the gateway (its upstream is down: 503 with a request id),
	// none refused at the socket.
	notReady, servedAfter := false, 0
	for i := 0; i < 200 && servedAfter < 10; i++ {
		resp, err := c.Get("https://" + ingress + "/hello")
		if err != nil {
			t.Fatalf("request %d during shutdownDelay: %v (ready seen false: %v)", i, err, notReady)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("X-Request-Id") == "" {
			t.Fatalf("request %d: %d, want the gateway's 503", i, resp.StatusCode)
		}
		if notReady {
			servedAfter++
		} else if r, err := c.Get("http://" + admin + "/readyz"); err == nil {
			r.Body.Close()
			notReady = r.StatusCode == http.StatusServiceUnavailable
		}
		time.Sleep(20 * time.Millisecond)
	}
	if !notReady || servedAfter < 10 {
		t.Fatalf("readiness false seen: %v; requests served after it: %d, want ≥ 10", notReady, servedAfter)
	}
	c.CloseIdleConnections()
	if err := p.wait(t, 20*time.Second); err != nil {
		t.Errorf("after SIGTERM: %v, want exit 0\n%s", err, stderr.String())
	}
	if !strings.Contains(stderr.String(), "listeners keep serving for shutdownDelay") {
		t.Errorf("no drain line:\n%s", stderr.String())
	}
}
