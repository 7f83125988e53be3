package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"tollgate.dev/tollgate/internal/config"
	"tollgate.dev/tollgate/internal/dev"
	"tollgate.dev/tollgate/internal/gateway"
	"tollgate.dev/tollgate/internal/identity"
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
	// Type errors are reported first and alone (validation on a half-decoded file
	// would mislead), so the unknown field is what check reports here.
	re := regexp.MustCompile(`(?m)^.*gateway\.yaml:\d+:\d+: ingress\.routes\[0\]\.pathprefix: unknown field \(did you mean "pathPrefix"\?\)$`)
	if !re.MatchString(errb.String()) {
		t.Errorf("stderr:\n%s", errb.String())
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

func TestCommandsHaveHelp(t *testing.T) {
	for _, args := range [][]string{{"run", "-h"}, {"check", "-h"}, {"dev", "-h"}, {"dev", "pki", "-h"}, {"dev", "echo", "-h"}, {"policy", "-h"}} {
		var out, errb bytes.Buffer
		run(args, nil, &out, &errb)
		if !strings.Contains(out.String()+errb.String(), "Usage: gateway") {
			t.Errorf("%v: no usage text: %q", args, out.String()+errb.String())
		}
	}
	var out bytes.Buffer
	if code := run([]string{"version"}, nil, &out, io.Discard); code != 0 || !strings.HasPrefix(out.String(), "gateway ") {
		t.Errorf("version: %d %q", code, out.String())
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
	defer gw.Shutdown(context.Background())
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
func TestRunRefusesWhatCheckRefuses(t *testing.T) {
	dir := copyExample(t, "quickstart")
	file := filepath.Join(dir, "gateway.yaml")
	b, _ := os.ReadFile(file)
	broken := strings.Replace(string(b), "url: https://127.0.0.1:9443", "url: http://127.0.0.1:9443", 1)
	broken = strings.Replace(broken, "key: pki/gateway.key", "key: pki/missing.key", 1)
	os.WriteFile(file, []byte(broken), 0o644)
	var checkOut, checkErr, runErr bytes.Buffer
	if code := run([]string{"check", "-c", file}, nil, &checkOut, &checkErr); code != 1 {
		t.Fatalf("check exited %d", code)
	}
	if code := run([]string{"run", "-c", file}, nil, io.Discard, &runErr); code != 1 {
		t.Fatalf("run exited %d", code)
	}
	if checkErr.String() != runErr.String() || !strings.Contains(runErr.String(), "gateway.yaml:") {
		t.Errorf("check said:\n%s\nrun said:\n%s", checkErr.String(), runErr.String())
	}
}
