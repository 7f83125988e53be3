//go:build spire

package gateway_test

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"tollgate.dev/tollgate/internal/dev"
	"tollgate.dev/tollgate/internal/spiretest"
	"tollgate.dev/tollgate/internal/testkit"
)

// TestSPIREExampleBinary runs examples/spire as its README does, with the real
// binaries: `gateway dev echo -workload-api` as the upstream and `gateway run`
// with examples/spire/gateway.yaml (ports changed), both against a real agent.
// It records the time from process start to /readyz 200.
func TestSPIREExampleBinary(t *testing.T) {
	t.Parallel()
	root := repoRoot(t)
	dir := t.TempDir()
	bin := filepath.Join(dir, "gateway")
	t0 := time.Now()
	build := exec.Command("go", "build", "-o", bin, "./cmd/gateway")
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	t.Logf("built the gateway binary in %v", time.Since(t0).Round(time.Millisecond))

	env := spiretest.Start(t, spiretest.Options{TrustDomain: "example.org", SVIDTTL: time.Minute})
	env.CreateEntry(t, spireGatewayID, spiretest.UIDSelector())
	env.CreateEntry(t, spireUpstreamID, spiretest.UIDSelector())
	env.WaitForSVID(t, spireGatewayID)
	env.WaitForSVID(t, spireUpstreamID)

	pki, err := dev.WritePKI(filepath.Join(dir, "pki"), "example.org", time.Hour, nil)
	if err != nil {
		t.Fatal(err)
	}
	ports := testkit.FreeAddrs(t, 4)
	text := string(mustRead(t, filepath.Join(root, "examples", "spire", "gateway.yaml")))
	for i, p := range []string{"127.0.0.1:8443", "127.0.0.1:9443", "127.0.0.1:9901", "127.0.0.1:15443"} {
		if !strings.Contains(text, p) {
			t.Fatalf("examples/spire/gateway.yaml no longer uses %s; update this test", p)
		}
		text = strings.ReplaceAll(text, p, ports[i])
	}
	cfgFile := writeFile(t, dir, "gateway.yaml", []byte(text))
	ingressAddr, echoAddr, adminAddr := ports[0], ports[1], ports[2]
	spireEnv := append(os.Environ(), "SPIFFE_ENDPOINT_SOCKET="+env.SocketAddr())

	startProc(t, spireEnv, bin, "dev", "echo", "-workload-api", env.SocketAddr(), "-spiffe-id", spireUpstreamID,
		"-allow", spireGatewayID, "-listen", echoAddr)
	t1 := time.Now()
	startProc(t, spireEnv, bin, "run", "-c", cfgFile)
	admin := &http.Client{Timeout: time.Second, Transport: &http.Transport{Proxy: nil, DisableKeepAlives: true}}
	if err := waitFor(30*time.Second, func() error {
		resp, err := admin.Get("http://" + adminAddr + "/readyz")
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("readyz %d", resp.StatusCode)
		}
		return nil
	}); err != nil {
		t.Fatalf("gateway run never became ready: %v", err)
	}
	t.Logf("process start → /readyz 200 with a running agent: %v", time.Since(t1).Round(time.Millisecond))

	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(mustRead(t, pki.CA))
	c := httpsClient(t, roots, true)
	var echo dev.EchoResponse
	if err := waitFor(10*time.Second, func() error { // the echo process may still be starting
		resp, err := c.Get("https://" + ingressAddr + "/hello")
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("status %d", resp.StatusCode)
		}
		return json.NewDecoder(resp.Body).Decode(&echo)
	}); err != nil {
		t.Fatalf("request through the example: %v", err)
	}
	if echo.Caller != spireGatewayID {
		t.Fatalf("echo upstream saw caller %q, want %s", echo.Caller, spireGatewayID)
	}
}

// repoRoot walks up from the package folder to the folder holding go.mod.
func repoRoot(t testing.TB) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("no go.mod above the working directory")
		}
		dir = parent
	}
}

// startProc runs bin with args; at cleanup it is sent SIGTERM (SIGKILL after
// 10 s) and, if the test failed, its output is logged.
func startProc(t testing.TB, env []string, bin string, args ...string) {
	t.Helper()
	var out testkit.Buffer
	cmd := exec.Command(bin, args...)
	cmd.Env = env
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		select {
		case <-done:
		case <-ctx.Done():
			cmd.Process.Kill()
			<-done
		}
		if t.Failed() {
			t.Logf("--- %s %s output ---\n%s", filepath.Base(bin), args[0], out.String())
		}
	})
}
