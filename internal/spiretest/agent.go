package spiretest

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// StartAgent starts the agent (again) with the same data folder. Start calls it once; a test calls
// it after StopAgent to exercise an agent restart.
//
// The agent keeps its key (disk key manager) and SVID (agent_ttl 1h) in its data folder, so a
// restarted agent rejoins without attesting again. A join token is single-use, so StartAgent still
// hands it a fresh one: it is ignored when the stored SVID is loaded, and used when the agent must
// attest anew (data folder removed, or its SVID expired). The fresh token maps to the same agent
// alias ID, so entries made by CreateEntry keep applying either way.
func (e *Env) StartAgent(tb testing.TB) {
	tb.Helper()
	e.mu.Lock()
	running := e.agent != nil && e.agent.alive()
	e.mu.Unlock()
	if running {
		tb.Fatalf("spiretest: StartAgent: agent already running")
	}
	t0 := time.Now()
	token := e.joinToken(tb)
	if err := os.MkdirAll(filepath.Join(e.run, "agent-data"), 0o700); err != nil {
		tb.Fatalf("spiretest: %v", err)
	}
	// A leftover socket file from a killed agent is replaced by the agent itself; nothing to do.
	var lastErr error
	for range startAttempts {
		ports, err := freePorts(1)
		if err != nil {
			tb.Fatalf("spiretest: %v", err)
		}
		conf, err := renderTemplate("agent.conf.tmpl", map[string]string{
			"RUN":               e.run,
			"TRUST_DOMAIN":      e.td.Name(),
			"SERVER_PORT":       strconv.Itoa(e.serverPort),
			"AGENT_HEALTH_PORT": strconv.Itoa(ports[0]),
		})
		if err != nil {
			tb.Fatalf("spiretest: %v", err)
		}
		confPath := filepath.Join(e.run, "agent.conf")
		if err := os.WriteFile(confPath, conf, 0o644); err != nil {
			tb.Fatalf("spiretest: write agent config: %v", err)
		}
		logPath := filepath.Join(e.run, "agent.log")
		e.mu.Lock()
		e.agentStart++
		n := e.agentStart
		e.mu.Unlock()
		appendMarker(logPath, fmt.Sprintf("=== spiretest: agent start #%d ===", n))
		p, err := startProcess("spire-agent", logPath, e.bins.Agent, "run", "-config", confPath, "-joinToken", token)
		if err != nil {
			tb.Fatalf("spiretest: %v", err)
		}
		e.mu.Lock()
		e.agent = p
		e.mu.Unlock()
		if lastErr = waitReady(p, fmt.Sprintf("http://127.0.0.1:%d/ready", ports[0])); lastErr == nil {
			tb.Logf("spiretest: %s agent #%d ready in %v (%s)", e.td, n, time.Since(t0).Round(time.Millisecond), e.agentJoin(n))
			return
		}
		_ = p.stop(stopTimeout)
		if !strings.Contains(tailFile(logPath, 20), "address already in use") {
			break
		}
	}
	tb.Fatalf("spiretest: %v", lastErr)
}

// StopAgent stops the agent (SIGTERM, waiting until it has exited). The Workload API socket goes
// away with it; clients see errors until StartAgent.
func (e *Env) StopAgent(tb testing.TB) {
	tb.Helper()
	e.mu.Lock()
	p := e.agent
	e.mu.Unlock()
	if p == nil {
		return
	}
	t0 := time.Now()
	if err := p.stop(stopTimeout); err != nil {
		tb.Fatalf("spiretest: stop agent: %v", err)
	}
	tb.Logf("spiretest: %s agent stopped in %v", e.td, time.Since(t0).Round(time.Millisecond))
}

// AgentRestartedFromDisk reports whether the most recent agent start reused the SVID stored in its
// data folder (true) or attested with a join token (false).
func (e *Env) AgentRestartedFromDisk() bool {
	e.mu.Lock()
	n := e.agentStart
	e.mu.Unlock()
	return e.agentJoin(n) == joinFromDisk
}

const (
	joinFromDisk  = "rejoined with stored SVID"
	joinWithToken = "attested with join token"
)

// agentJoin reads agent start #n's log to tell how it joined.
func (e *Env) agentJoin(n int) string {
	b, err := os.ReadFile(filepath.Join(e.run, "agent.log"))
	if err != nil {
		return "unknown"
	}
	_, after, ok := bytes.Cut(b, []byte(fmt.Sprintf("=== spiretest: agent start #%d ===", n)))
	switch {
	case !ok:
		return "unknown"
	case bytes.Contains(after, []byte("SVID loaded")):
		return joinFromDisk
	case bytes.Contains(after, []byte("Node attestation was successful")):
		return joinWithToken
	}
	return "unknown"
}

// joinToken makes a single-use token whose agent gets the alias e.agentID, so registration
// entries parented on the alias apply to every agent this Env starts.
func (e *Env) joinToken(tb testing.TB) string {
	tb.Helper()
	out := e.cli(tb, "token", "generate", "-spiffeID", e.agentID.String(), "-ttl", "600")
	for _, line := range strings.Split(string(out), "\n") {
		if tok, ok := strings.CutPrefix(strings.TrimSpace(line), "Token:"); ok {
			return strings.TrimSpace(tok)
		}
	}
	tb.Fatalf("spiretest: no token in `token generate` output: %q", out)
	return ""
}

func appendMarker(path, line string) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return
	}
	defer f.Close()
	fmt.Fprintln(f, line)
}
