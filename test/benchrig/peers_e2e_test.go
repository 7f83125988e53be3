//go:build e2e

package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestBenchPeersScript runs scripts/bench-peers.sh for one short round, so the
// side-by-side benchmark (real nginx, Caddy, wrk and h2load from Debian, the
// gateway binary) can't rot: every target must start, answer every request of
// every load with a 2xx, and appear in the summary. It measures nothing:
// the figures of so short a run mean nothing, and no test judges timing.
//
// Skips when a tool is missing, unless TOLLGATE_REQUIRE_E2E is set (then it
// fails); scripts/bench-peers/install.sh installs them.
func TestBenchPeersScript(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the gateway and starts every peer")
	}
	for _, tool := range []string{"wrk", "h2load", "nginx", "caddy"} {
		if _, err := exec.LookPath(tool); err != nil {
			if os.Getenv("TOLLGATE_REQUIRE_E2E") != "" {
				t.Fatalf("%s is missing (scripts/bench-peers/install.sh installs it)", tool)
			}
			t.Skipf("%s is missing (scripts/bench-peers/install.sh installs it)", tool)
		}
	}
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	out := t.TempDir()
	cmd := exec.Command("bash", filepath.Join(root, "scripts", "bench-peers.sh"))
	cmd.Env = append(os.Environ(), "COUNT=1", "DUR=1", "CONNS=8", "IDLE=20", "OUT="+out, "PORT_BASE=18540")
	b, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("bench-peers.sh: %v\n%s", err, b)
	}
	res, err := os.ReadFile(filepath.Join(out, "peers.txt"))
	if err != nil {
		t.Fatal(err)
	}
	for _, target := range []string{"bare", "tollgate", "caddy", "nginx"} {
		for _, kind := range []string{"Peers/target=" + target + "/proto=h1 ", "Peers/target=" + target + "/proto=h2 ",
			"PeersLatency/target=" + target + "/proto=h1 ", "PeersLatency/target=" + target + "/proto=h2 ", "PeersIdle/target=" + target + " "} {
			if !strings.Contains(string(res), "Benchmark"+kind) {
				t.Errorf("no Benchmark%s line in the results:\n%s", kind, res)
			}
		}
		if !strings.Contains(string(b), "\n"+target+" ") {
			t.Errorf("the summary has no row for %s:\n%s", target, b)
		}
	}
}
