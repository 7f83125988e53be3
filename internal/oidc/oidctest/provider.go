// Package oidctest runs the real OpenID provider of the end-to-end tests
// (test/oidcprovider, the npm package oidc-provider) and finds the browser they
// drive. It is for tests only; scripts/oidc/install.sh installs both.
package oidctest

import (
	"bufio"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// EnvRequire, when set, turns a missing provider or browser into a failure
// instead of a skip (CI sets it, so a missing install can never pass silently).
const EnvRequire = "TOLLGATE_REQUIRE_E2E"

// RequireE2E skips the test, or fails it when EnvRequire is set.
func RequireE2E(t testing.TB, format string, args ...any) {
	t.Helper()
	if os.Getenv(EnvRequire) != "" {
		t.Fatalf(format+" ("+EnvRequire+" is set; run scripts/oidc/install.sh)", args...)
	}
	t.Skipf(format+" (run scripts/oidc/install.sh)", args...)
}

// Chromium returns the path of Debian's chromium, or skips (fails) the test.
func Chromium(t testing.TB) string {
	t.Helper()
	p, err := exec.LookPath("chromium")
	if err != nil {
		RequireE2E(t, "chromium not installed")
	}
	return p
}

// ProviderDir finds test/oidcprovider above the working directory, with its
// node_modules installed, or skips (fails) the test.
func ProviderDir(t testing.TB) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		p := filepath.Join(dir, "test", "oidcprovider")
		if _, err := os.Stat(filepath.Join(p, "provider.mjs")); err == nil {
			if _, err := os.Stat(filepath.Join(p, "node_modules", "oidc-provider")); err != nil {
				RequireE2E(t, "oidc-provider not installed in test/oidcprovider")
			}
			return p
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("test/oidcprovider not found above the working directory")
		}
		dir = parent
	}
}

// StartProvider runs provider.mjs from dir on a free loopback port (PORT=0) with
// env added to the environment, and returns its issuer once it listens. It is
// stopped (by its PID, SIGTERM then SIGKILL) when the test ends.
func StartProvider(t testing.TB, dir string, env ...string) string {
	t.Helper()
	node, err := exec.LookPath("node")
	if err != nil {
		RequireE2E(t, "node not found")
	}
	cmd := exec.Command(node, "provider.mjs")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), append([]string{"PORT=0"}, env...)...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(5 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
	})
	issuer := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if _, iss, ok := strings.Cut(sc.Text(), "listening, issuer "); ok {
				issuer <- iss
			}
		}
		_, _ = io.Copy(io.Discard, stdout)
	}()
	go func() { _ = cmd.Wait(); close(exited) }()
	select {
	case iss := <-issuer:
		return iss
	case <-exited:
		t.Fatalf("provider exited: %s", stderr.String())
	case <-time.After(30 * time.Second):
		t.Fatalf("provider not ready after 30s: %s", stderr.String())
	}
	return ""
}
