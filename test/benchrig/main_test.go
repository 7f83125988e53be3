package main

import (
	"crypto/tls"
	"crypto/x509"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"tollgate.dev/tollgate/internal/config"
	"tollgate.dev/tollgate/internal/gateway"
)

// TestSetup: what setup writes is a configuration `gateway check` accepts,
// with the full path's parts in it.
func TestSetup(t *testing.T) {
	dir := t.TempDir()
	if err := setup([]string{"-dir", dir}); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"gateway.yaml", "gateway-journal.yaml", "gateway-failclosed.yaml"} {
		cfg, err := config.Load(filepath.Join(dir, f))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := gateway.Check(cfg); err != nil {
			t.Fatalf("gateway check %s: %v", f, err)
		}
		if closed := cfg.Audit.FailureMode == "closed"; closed != (f == "gateway-failclosed.yaml") {
			t.Errorf("%s: failureMode %q", f, cfg.Audit.FailureMode)
		}
	}
	rules, err := os.ReadFile(filepath.Join(dir, "policies", "rules.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(string(rules), "  - to:"); n != 100 {
		t.Errorf("rules.yaml has %d rules, want 100", n)
	}
	for _, f := range []string{"token", "policies/authn.yaml", "nginx/nginx.conf", "caddy/Caddyfile"} {
		b, err := os.ReadFile(filepath.Join(dir, f))
		if err != nil || len(b) == 0 {
			t.Errorf("%s: %v (%d bytes)", f, err, len(b))
		}
		if strings.Contains(string(b), "$DIR") {
			t.Errorf("%s still says $DIR", f)
		}
	}
}

// TestOpenLoop runs the open-loop client through the bare proxy to the
// upstream (both over mTLS as in the benchmark), HTTP/1.1 and HTTP/2: every
// request is counted and answered, and a refusing target fails the run.
func TestOpenLoop(t *testing.T) {
	dir := t.TempDir()
	if err := setup([]string{"-dir", dir}); err != nil {
		t.Fatal(err)
	}
	upCfg, upH, err := upstreamServer(dir)
	if err != nil {
		t.Fatal(err)
	}
	up := serveTest(t, upCfg, upH)
	bareCfg, bareH, err := bareServer(dir, up)
	if err != nil {
		t.Fatal(err)
	}
	front := serveTest(t, bareCfg, bareH)
	refusing := serveTest(t, bareCfg, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "no", http.StatusForbidden)
	}))
	ca := filepath.Join(dir, "pki", "ca.crt")
	for _, tc := range []struct {
		name   string
		addr   string
		h2     bool
		failed int
	}{
		{"h1", front, false, 0},
		{"h2", front, true, 0},
		{"h1 refused", refusing, false, 40},
		{"h2 refused", refusing, true, 40},
	} {
		t.Run(tc.name, func(t *testing.T) {
			port := tc.addr[strings.LastIndexByte(tc.addr, ':'):]
			res, err := openLoop(openOptions{url: "https://localhost" + port + "/x?y=1", ca: ca, rate: 200, dur: 200 * time.Millisecond,
				conns: 4, h2: tc.h2, header: "Authorization: Bearer abc"})
			if res.requests != 40 || res.failed != tc.failed {
				t.Errorf("requests %d, failed %d; want 40, %d (err %v)", res.requests, res.failed, tc.failed, err)
			}
			if (err != nil) != (tc.failed > 0) {
				t.Errorf("err = %v", err)
			}
			if tc.failed == 0 && (res.p50 <= 0 || res.p99 < res.p50 || res.max < res.p99) {
				t.Errorf("percentiles p50 %v p99 %v max %v", res.p50, res.p99, res.max)
			}
		})
	}
}

// TestWebhook: the audit sink of the journal variants counts the records
// of each batch.
func TestWebhook(t *testing.T) {
	dir := t.TempDir()
	if err := setup([]string{"-dir", dir}); err != nil {
		t.Fatal(err)
	}
	cfg, h, records, err := webhookServer(dir)
	if err != nil {
		t.Fatal(err)
	}
	addr := serveTest(t, cfg, h)
	pool := x509.NewCertPool()
	pem, _ := os.ReadFile(filepath.Join(dir, "pki", "ca.crt"))
	pool.AppendCertsFromPEM(pem)
	c := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, ServerName: "localhost"}}}
	defer c.CloseIdleConnections()
	for _, batch := range []string{"{}\n{}\n", "{}\n"} {
		resp, err := c.Post("https://"+addr+"/audit", "application/x-ndjson", strings.NewReader(batch))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusNoContent {
			t.Errorf("status %d", resp.StatusCode)
		}
	}
	if n := records.Load(); n != 3 {
		t.Errorf("counted %d records, want 3", n)
	}
}

// TestProcStats reads this process's own CPU ticks and resident memory.
func TestProcStats(t *testing.T) {
	if err := cpu([]string{"self"}); err == nil {
		t.Error("cpu accepted a non-number")
	}
	n, err := rss(os.Getpid())
	if err != nil || n < 1<<20 {
		t.Errorf("rss = %d, %v", n, err)
	}
	if err := cpu([]string{strconv.Itoa(os.Getpid())}); err != nil {
		t.Error(err)
	}
}

// serveTest serves h with cfg on a loopback port until the test ends.
func serveTest(t *testing.T, cfg *tls.Config, h http.Handler) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	go srv.Serve(tls.NewListener(ln, cfg))
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().String()
}
