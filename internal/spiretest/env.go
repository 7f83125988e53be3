package spiretest

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"tollgate.dev/tollgate/internal/testkit"
)

const (
	// readyTimeout bounds every wait in this package: a daemon that is not ready by then is broken.
	readyTimeout = 30 * time.Second
	// stopTimeout is how long a daemon gets after SIGTERM before SIGKILL.
	stopTimeout = 10 * time.Second
	// cliTimeout bounds each spire-server CLI call (entry, token, bundle).
	cliTimeout = 30 * time.Second
	// maxSocketPath leaves room under the 108-byte sun_path limit.
	maxSocketPath = 100
	// startAttempts: a free port picked by us can be taken before the daemon binds it.
	startAttempts = 3
)

// Options configures one SPIRE server and its agent.
type Options struct {
	// TrustDomain of the server; default "example.org". Use different ones for federation tests.
	TrustDomain string
	// SVIDTTL is the default X.509 SVID TTL for workload entries; default 1m. The agent renews at
	// about half of it, so 30s gives a new SVID roughly every 15 s.
	SVIDTTL time.Duration
}

// Env is a running spire-server plus spire-agent. Its methods are safe for concurrent use.
type Env struct {
	bins        Binaries
	td          spiffeid.TrustDomain
	svidTTL     time.Duration
	run         string // run folder: configs, data, sockets, logs
	serverPort  int
	serverProbe string // http://127.0.0.1:port/ready
	agentID     spiffeid.ID
	bundlePEM   []byte

	mu         sync.Mutex
	server     *process
	agent      *process
	agentStart int // number of agent starts, for log messages
	stopOnce   sync.Once
}

// Start runs a SPIRE server and agent for the test and stops both (and removes the run folder) in
// tb.Cleanup. It skips or fails the test when the binaries are missing (see RequireBinaries).
// Timings (server ready, agent ready) are logged with tb.Logf.
func Start(tb testing.TB, opts Options) *Env {
	tb.Helper()
	bins := RequireBinaries(tb)
	if opts.TrustDomain == "" {
		opts.TrustDomain = "example.org"
	}
	if opts.SVIDTTL == 0 {
		opts.SVIDTTL = time.Minute
	}
	td, err := spiffeid.TrustDomainFromString(opts.TrustDomain)
	if err != nil {
		tb.Fatalf("spiretest: trust domain: %v", err)
	}
	if opts.SVIDTTL < 10*time.Second {
		tb.Fatalf("spiretest: SVIDTTL %v is below 10s; SPIRE would rotate continuously", opts.SVIDTTL)
	}
	run, err := newRunDir()
	if err != nil {
		tb.Fatalf("spiretest: %v", err)
	}
	e := &Env{
		bins:    bins,
		td:      td,
		svidTTL: opts.SVIDTTL,
		run:     run,
		agentID: spiffeid.RequireFromPath(td, "/tollgate-test/agent"),
	}
	tb.Cleanup(func() {
		if tb.Failed() {
			e.dumpLogs(tb)
		}
		if err := e.Stop(); err != nil {
			tb.Errorf("spiretest: stop: %v", err)
		}
	})

	t0 := time.Now()
	if err := e.startServer(); err != nil {
		tb.Fatalf("spiretest: %v", err)
	}
	tb.Logf("spiretest: %s server ready in %v (run dir %s)", td, time.Since(t0).Round(time.Millisecond), run)
	e.bundlePEM = e.cli(tb, "bundle", "show")
	if err := os.WriteFile(filepath.Join(run, "bundle.pem"), e.bundlePEM, 0o644); err != nil {
		tb.Fatalf("spiretest: %v", err)
	}
	e.StartAgent(tb)
	return e
}

// newRunDir makes a short, world-traversable folder: sockets live in it, so the path must stay
// well under 108 bytes, and non-root workloads must be able to reach the Workload API socket.
func newRunDir() (string, error) {
	base := os.TempDir()
	if len(base)+len("/spt0123456789/workload/agent.sock") > maxSocketPath {
		base = "/tmp" // TMPDIR too long for a unix socket path
	}
	run, err := os.MkdirTemp(base, "spt")
	if err != nil {
		return "", fmt.Errorf("run dir: %w", err)
	}
	for _, d := range []string{run, filepath.Join(run, "workload")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return "", fmt.Errorf("run dir: %w", err)
		}
		if err := os.Chmod(d, 0o755); err != nil { // MkdirTemp makes 0700
			return "", fmt.Errorf("run dir: %w", err)
		}
	}
	return run, nil
}

func (e *Env) startServer() error {
	var lastErr error
	for range startAttempts {
		ports, err := freePorts(2)
		if err != nil {
			return err
		}
		e.serverPort = ports[0]
		e.serverProbe = fmt.Sprintf("http://127.0.0.1:%d/ready", ports[1])
		conf, err := renderTemplate("server.conf.tmpl", map[string]string{
			"RUN":                e.run,
			"TRUST_DOMAIN":       e.td.Name(),
			"SERVER_PORT":        strconv.Itoa(ports[0]),
			"SERVER_HEALTH_PORT": strconv.Itoa(ports[1]),
			"SVID_TTL":           e.svidTTL.String(),
		})
		if err != nil {
			return err
		}
		confPath := filepath.Join(e.run, "server.conf")
		if err := os.WriteFile(confPath, conf, 0o644); err != nil {
			return fmt.Errorf("write server config: %w", err)
		}
		p, err := startProcess("spire-server", filepath.Join(e.run, "server.log"), e.bins.Server, "run", "-config", confPath)
		if err != nil {
			return err
		}
		e.mu.Lock()
		e.server = p
		e.mu.Unlock()
		if lastErr = waitReady(p, e.serverProbe); lastErr == nil {
			return nil
		}
		_ = p.stop(stopTimeout)
		if !strings.Contains(tailFile(p.logPath, 20), "address already in use") {
			break // not a port race: retrying will not help
		}
	}
	return lastErr
}

// waitReady polls a SPIRE health endpoint until it answers 200, the process exits, or readyTimeout.
func waitReady(p *process, url string) error {
	client := &http.Client{
		Timeout:   time.Second,
		Transport: &http.Transport{Proxy: nil, DisableKeepAlives: true}, // loopback only, never a proxy
	}
	deadline := time.Now().Add(readyTimeout)
	for time.Now().Before(deadline) {
		if !p.alive() {
			return fmt.Errorf("%s exited before ready (%v); log:\n%s", p.name, p.err, tailFile(p.logPath, 30))
		}
		resp, err := client.Get(url)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("%s not ready at %s after %v; log:\n%s", p.name, url, readyTimeout, tailFile(p.logPath, 30))
}

// freePorts picks n distinct free TCP ports on 127.0.0.1. They are free when we look, not
// reserved: startServer/StartAgent retry when a daemon loses the race for one.
func freePorts(n int) ([]int, error) { return testkit.FreePorts(n) }

// renderTemplate reads scripts/spire/<name> from the repository and replaces its @KEY@ markers.
// The templates are shared with scripts/spire/run-local.sh, so there is one source of truth.
func renderTemplate(name string, vars map[string]string) ([]byte, error) {
	dir, err := templateDir()
	if err != nil {
		return nil, err
	}
	b, err := os.ReadFile(filepath.Join(dir, name))
	if err != nil {
		return nil, fmt.Errorf("read template: %w", err)
	}
	for k, v := range vars {
		b = bytes.ReplaceAll(b, []byte("@"+k+"@"), []byte(v))
	}
	for _, line := range bytes.Split(b, []byte("\n")) {
		if t := bytes.TrimSpace(line); len(t) > 0 && t[0] != '#' && bytes.Count(t, []byte("@")) >= 2 {
			return nil, fmt.Errorf("template %s: unreplaced marker in %q", name, t)
		}
	}
	return b, nil
}

// templateDir finds scripts/spire by walking up from the working directory (go test runs in the
// package folder, somewhere below the repository root).
func templateDir() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", fmt.Errorf("find templates: %w", err)
	}
	for {
		cand := filepath.Join(dir, "scripts", "spire")
		if _, err := os.Stat(filepath.Join(cand, "server.conf.tmpl")); err == nil {
			return cand, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("find templates: no scripts/spire/server.conf.tmpl above the working directory")
		}
		dir = parent
	}
}

// cli runs a spire-server admin command against this server's socket and returns its stdout.
func (e *Env) cli(tb testing.TB, args ...string) []byte {
	tb.Helper()
	out, err := e.runCLI(args...)
	if err != nil {
		tb.Fatalf("spiretest: %v", err)
	}
	return out
}

func (e *Env) runCLI(args ...string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), cliTimeout)
	defer cancel()
	full := append([]string{args[0], args[1], "-socketPath", e.serverSocket()}, args[2:]...)
	cmd := exec.CommandContext(ctx, e.bins.Server, full...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("spire-server %s: %w: %s%s", strings.Join(full, " "), err, stdout.String(), stderr.String())
	}
	return stdout.Bytes(), nil
}

func (e *Env) serverSocket() string { return filepath.Join(e.run, "server.sock") }

// TrustDomain is the server's trust domain.
func (e *Env) TrustDomain() spiffeid.TrustDomain { return e.td }

// RunDir is the folder holding configs, data, sockets and logs (server.log, agent.log).
func (e *Env) RunDir() string { return e.run }

// SocketPath is the agent's Workload API unix socket path.
func (e *Env) SocketPath() string { return filepath.Join(e.run, "workload", "agent.sock") }

// SocketAddr is the Workload API address for workloadapi.WithAddr or SPIFFE_ENDPOINT_SOCKET
// ("unix:///…").
func (e *Env) SocketAddr() string { return "unix://" + e.SocketPath() }

// BundlePEM is the server's X.509 trust bundle (its CA certificates) as PEM, as fetched at
// start. A federation test hands it to the other side as a static foreign bundle.
func (e *Env) BundlePEM() []byte { return bytes.Clone(e.bundlePEM) }

// X509Bundle is BundlePEM parsed as a go-spiffe bundle for this trust domain.
func (e *Env) X509Bundle(tb testing.TB) *x509bundle.Bundle {
	tb.Helper()
	b, err := x509bundle.Parse(e.td, e.bundlePEM)
	if err != nil {
		tb.Fatalf("spiretest: parse bundle: %v", err)
	}
	return b
}

// Stop stops the agent, then the server, and removes the run folder. Idempotent; Start registers
// it with tb.Cleanup, so call it only to tear down early.
func (e *Env) Stop() error {
	var err error
	e.stopOnce.Do(func() {
		e.mu.Lock()
		agent, server := e.agent, e.server
		e.mu.Unlock()
		var errs []error
		if agent != nil {
			errs = append(errs, agent.stop(stopTimeout))
		}
		if server != nil {
			errs = append(errs, server.stop(stopTimeout))
		}
		errs = append(errs, os.RemoveAll(e.run))
		for _, x := range errs {
			if x != nil && err == nil {
				err = x
			}
		}
	})
	return err
}

func (e *Env) dumpLogs(tb testing.TB) {
	tb.Helper()
	for _, name := range []string{"server.log", "agent.log"} {
		tb.Logf("spiretest: --- %s %s (last 60 lines) ---\n%s", e.td, name, tailFile(filepath.Join(e.run, name), 60))
	}
}
