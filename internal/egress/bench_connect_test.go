package egress

import (
	"bufio"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/net/dns/dnsmessage"

	"tollgate.dev/tollgate/internal/identity"
	"tollgate.dev/tollgate/internal/testkit"
)

// BenchmarkEgressConnect measures bulk throughput of a workload's TLS stream
// to a destination: "direct" is the workload's TLS connection straight to
// it; "gateway" goes through the egress listener (mTLS with the workload's
// SVID, CONNECT judged by policy, SNI checked, audited), "smokescreen"
// through stripe/smokescreen's CONNECT with the same mTLS leg (its
// --tls-server-bundle-file and --tls-client-ca-file) and an ACL that allows
// the destination. Both proxies see the same workload: one CONNECT, then
// 64 KiB writes of the inner TLS session. Both run in a process of their own
// (the gateway in this test binary, re-executed: TestEgressBenchGateway), so
// neither shares the Go scheduler with the workload and the destination, and
// both get the same share of a busy machine. BenchmarkTunnel isolates the
// splice itself (in process, no listener, no TLS to the gateway).
//
// The smokescreen variant needs SMOKESCREEN_BIN (scripts/smokescreen/install.sh
// builds it from the Go module proxy); without it the variant is skipped.
func BenchmarkEgressConnect(b *testing.B) {
	sink := func(c *tls.Conn) { _, _ = io.Copy(io.Discard, c) }
	chunk := pattern(64 << 10)
	for _, via := range []string{"direct", "gateway", "smokescreen"} {
		b.Run(via, func(b *testing.B) {
			pki := newBenchPKI(b)
			dest := startTunnelDest(b, pki.outside, sink)
			_, portText, _ := net.SplitHostPort(dest.addr)
			port, _ := strconv.Atoi(portText)
			target := net.JoinHostPort(benchHost, portText)

			var conn net.Conn
			switch via {
			case "direct":
				c, err := net.Dial("tcp", dest.addr)
				if err != nil {
					b.Fatal(err)
				}
				conn = c
			case "gateway":
				addr := startGatewayProcess(b, pki, port)
				conn = dialConnect(b, addr, pki.workloadTLS(b), target)
			case "smokescreen":
				addr, clientTLS := startSmokescreen(b, pki)
				conn = dialConnect(b, addr, clientTLS, target)
			}
			defer conn.Close()
			c := tls.Client(conn, &tls.Config{ServerName: benchHost, RootCAs: pki.outside.Pool()})
			if err := c.Handshake(); err != nil {
				b.Fatalf("%s: handshake with the destination: %v", via, err)
			}
			b.SetBytes(int64(len(chunk)))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := c.Write(chunk); err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			// Close cleanly: close_notify and end of stream, then the sink's.
			_ = c.CloseWrite()
			if cw, ok := conn.(interface{ CloseWrite() error }); ok {
				_ = cw.CloseWrite()
			}
			_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
			_, _ = io.Copy(io.Discard, c)
			_ = c.Close()
		})
	}
}

// connectConn is the workload's end of a CONNECT tunnel: the TLS connection
// to the proxy, read through the reader that parsed the proxy's answer.
type connectConn struct {
	*tls.Conn
	r *bufio.Reader
}

func (c *connectConn) Read(p []byte) (int, error) { return c.r.Read(p) }

// dialConnect opens an mTLS connection to a proxy and asks for a tunnel to
// target, as a workload's HTTPS_PROXY client does.
func dialConnect(tb testing.TB, proxyAddr string, cfg *tls.Config, target string) net.Conn {
	tb.Helper()
	cfg = cfg.Clone()
	cfg.NextProtos = []string{"http/1.1"}
	tc, err := tls.Dial("tcp", proxyAddr, cfg)
	if err != nil {
		tb.Fatalf("dial the proxy: %v", err)
	}
	_ = tc.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := fmt.Fprintf(tc, "CONNECT %s HTTP/1.1\r\nHost: %s\r\n\r\n", target, target); err != nil {
		tb.Fatal(err)
	}
	br := bufio.NewReader(tc)
	resp, err := http.ReadResponse(br, &http.Request{Method: http.MethodConnect})
	if err != nil {
		tb.Fatalf("CONNECT %s: %v", target, err)
	}
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<10))
		tb.Fatalf("CONNECT %s: %s %s", target, resp.Status, body)
	}
	_ = tc.SetDeadline(time.Time{})
	return &connectConn{Conn: tc, r: br}
}

// startSmokescreen runs SMOKESCREEN_BIN on 127.0.0.1 with TLS and client
// certificates (the mesh CA), an ACL whose default rule allows only the
// destination's name, --allow-range for exactly the destination's address,
// and a resolver on loopback that answers that name (nothing is resolved
// off the machine). It returns the proxy's address and the workload's TLS
// for it: the same SVID as for the gateway, verifying smokescreen's
// certificate by name.
func startSmokescreen(tb testing.TB, pki *benchPKI) (string, *tls.Config) {
	tb.Helper()
	bin := os.Getenv("SMOKESCREEN_BIN")
	if bin == "" {
		tb.Skip("smokescreen: SMOKESCREEN_BIN is not set; build it with scripts/smokescreen/install.sh (scripts/bench-egress.sh does)")
	}
	if _, err := os.Stat(bin); err != nil {
		tb.Fatalf("smokescreen: SMOKESCREEN_BIN: %v", err)
	}
	dir := tb.TempDir()
	serverCert, err := pki.mesh.IssueServerCert([]string{"localhost"}, []net.IP{net.IPv4(127, 0, 0, 1)}, time.Hour)
	if err != nil {
		tb.Fatal(err)
	}
	certPEM, keyPEM := testkit.EncodePEM(tb, serverCert)
	write := func(name string, data []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, data, 0o600); err != nil {
			tb.Fatal(err)
		}
		return p
	}
	bundle := write("server.pem", append(certPEM, keyPEM...))
	clientCA := write("client-ca.pem", pki.mesh.RootPEM())
	// The stock binary takes the role from the client certificate's common
	// name; an SVID has none, so the default rule applies.
	acl := write("acl.yaml", []byte("version: v1\nservices: []\ndefault:\n  project: bench\n  action: enforce\n  allowed_domains: ["+benchHost+"]\n"))
	cfgFile := write("config.yaml", []byte("allow_missing_role: true\nconnect_timeout: 10s\n"))
	dns := startBenchDNS(tb, benchHost, benchIP.As4())

	args := []string{
		"--config-file", cfgFile, "--egress-acl-file", acl,
		"--tls-server-bundle-file", bundle, "--tls-client-ca-file", clientCA,
		"--allow-range", benchIP.String() + "/32",
		"--resolver-address", dns,
		// Metrics to the discard port on loopback, not to a statsd elsewhere.
		"--statsd-address", "127.0.0.1:9",
	}
	// The port is chosen before the daemon binds it; another process may
	// take it in between, so retry a few times.
	var addr string
	for attempt := 0; ; attempt++ {
		var inUse bool
		addr, inUse = runSmokescreen(tb, bin, args, filepath.Join(dir, "smokescreen.log"))
		if !inUse {
			break
		}
		if attempt == 3 {
			tb.Fatal("smokescreen: no free port after 4 attempts")
		}
	}
	roots := x509.NewCertPool()
	roots.AddCert(pki.mesh.Root())
	svid := pki.workloadSVID
	return addr, &tls.Config{
		MinVersion: tls.VersionTLS12,
		ServerName: "localhost",
		RootCAs:    roots,
		Certificates: []tls.Certificate{{
			Certificate: [][]byte{svid.Certificates[0].Raw}, PrivateKey: svid.PrivateKey, Leaf: svid.Certificates[0],
		}},
	}
}

// startBenchDNS answers A queries for name with ip and everything else with
// no records, over UDP on 127.0.0.1, until the benchmark ends.
func startBenchDNS(tb testing.TB, name string, ip [4]byte) string {
	tb.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	want := dnsmessage.MustNewName(name + ".")
	var wg sync.WaitGroup
	wg.Go(func() {
		buf := make([]byte, 1500)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			var p dnsmessage.Parser
			h, err := p.Start(buf[:n])
			if err != nil {
				continue
			}
			q, err := p.Question()
			if err != nil {
				continue
			}
			resp := dnsmessage.Message{
				Header:    dnsmessage.Header{ID: h.ID, Response: true, Authoritative: true, RecursionDesired: h.RecursionDesired},
				Questions: []dnsmessage.Question{q},
			}
			switch {
			case !strings.EqualFold(q.Name.String(), want.String()):
				resp.Header.RCode = dnsmessage.RCodeNameError
			case q.Type == dnsmessage.TypeA:
				resp.Answers = []dnsmessage.Resource{{
					Header: dnsmessage.ResourceHeader{Name: q.Name, Type: dnsmessage.TypeA, Class: dnsmessage.ClassINET, TTL: 60},
					Body:   &dnsmessage.AResource{A: ip},
				}}
			}
			out, err := resp.Pack()
			if err == nil {
				_, _ = pc.WriteTo(out, from)
			}
		}
	})
	tb.Cleanup(func() {
		_ = pc.Close()
		wg.Wait()
	})
	return pc.LocalAddr().String()
}

// runSmokescreen starts bin on a free 127.0.0.1 port and waits (at most 10 s)
// until it accepts connections; it is stopped by its PID when the benchmark
// ends. inUse reports that it exited because the port was taken.
func runSmokescreen(tb testing.TB, bin string, args []string, logFile string) (addr string, inUse bool) {
	tb.Helper()
	addr = testkit.FreeAddrs(tb, 1)[0]
	_, port, _ := net.SplitHostPort(addr)
	logf, err := os.Create(logFile)
	if err != nil {
		tb.Fatal(err)
	}
	defer logf.Close()
	cmd := exec.Command(bin, append([]string{"--listen-ip", "127.0.0.1", "--listen-port", port}, args...)...)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		tb.Fatalf("smokescreen: start %s: %v", bin, err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		select {
		case err := <-exited:
			out, _ := os.ReadFile(logFile)
			if strings.Contains(string(out), "address already in use") {
				return addr, true
			}
			tb.Fatalf("smokescreen exited: %v\n%s", err, out)
		default:
		}
		if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
			c.Close()
			break
		}
		if time.Now().After(deadline) {
			_ = cmd.Process.Kill()
			<-exited
			out, _ := os.ReadFile(logFile)
			tb.Fatalf("smokescreen not listening on %s after 10 s:\n%s", addr, out)
		}
	}
	tb.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(5 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
	})
	return addr, false
}

// benchGatewayDirEnv names the folder a re-executed test binary serves the
// benchmark's gateway from (TestEgressBenchGateway).
const benchGatewayDirEnv = "TOLLGATE_BENCH_EGRESS_GATEWAY_DIR"

// startGatewayProcess runs the benchmark's gateway (benchGatewayHandler
// behind the egress listener's mTLS) in a child process: this test binary,
// running TestEgressBenchGateway with the gateway's SVID, key and bundle as
// PEM files (as the gateway reads them). It returns the listener's address;
// the child ends when the benchmark does.
func startGatewayProcess(tb testing.TB, pki *benchPKI, tunnelPort int) string {
	tb.Helper()
	dir := tb.TempDir()
	svid, err := pki.gateway.GetX509SVID()
	if err != nil {
		tb.Fatal(err)
	}
	certPEM, keyPEM := testkit.EncodePEM(tb, tls.Certificate{Certificate: [][]byte{svid.Certificates[0].Raw}, PrivateKey: svid.PrivateKey})
	for name, data := range map[string][]byte{
		"gateway.crt": certPEM, "gateway.key": keyPEM, "bundle.pem": pki.mesh.RootPEM(),
		"params": fmt.Appendf(nil, "%s\n%d\n", pki.outsideFile, tunnelPort),
	} {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o600); err != nil {
			tb.Fatal(err)
		}
	}
	cmd := exec.Command(os.Args[0], "-test.run", "^TestEgressBenchGateway$", "-test.bench", "^$", "-test.count", "1")
	cmd.Env = append(os.Environ(), benchGatewayDirEnv+"="+dir)
	logf, err := os.Create(filepath.Join(dir, "log"))
	if err != nil {
		tb.Fatal(err)
	}
	defer logf.Close()
	cmd.Stdout, cmd.Stderr = logf, logf
	// The child serves until its stdin closes.
	stdin, err := cmd.StdinPipe()
	if err != nil {
		tb.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		tb.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	tb.Cleanup(func() {
		_ = stdin.Close()
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
	})
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if addr, err := os.ReadFile(filepath.Join(dir, "addr")); err == nil {
			return string(addr)
		}
		select {
		case err := <-exited:
			exited <- err
			out, _ := os.ReadFile(filepath.Join(dir, "log"))
			tb.Fatalf("gateway process exited: %v\n%s", err, out)
		default:
		}
		if time.Now().After(deadline) {
			out, _ := os.ReadFile(filepath.Join(dir, "log"))
			tb.Fatalf("gateway process not listening after 30 s:\n%s", out)
		}
	}
}

// TestEgressBenchGateway is not a test: it is the gateway process of
// BenchmarkEgressConnect (startGatewayProcess), and skips unless started as
// one. It serves until its stdin closes.
func TestEgressBenchGateway(t *testing.T) {
	dir := os.Getenv(benchGatewayDirEnv)
	if dir == "" {
		t.Skip("the gateway process of BenchmarkEgressConnect; runs only when the benchmark starts it")
	}
	params, err := os.ReadFile(filepath.Join(dir, "params"))
	if err != nil {
		t.Fatal(err)
	}
	var caFile string
	var tunnelPort int
	if _, err := fmt.Sscan(string(params), &caFile, &tunnelPort); err != nil {
		t.Fatalf("params: %v", err)
	}
	src, err := identity.NewFiles(identity.FilesOptions{
		Cert: filepath.Join(dir, "gateway.crt"), Key: filepath.Join(dir, "gateway.key"), Bundle: filepath.Join(dir, "bundle.pem"),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { src.Close() })
	addr := serveMTLS(t, benchGatewayHandler(t, caFile, 443, tunnelPort), listenerTLS(t, src))
	// Written whole, then renamed: the parent never reads half an address.
	testkit.WriteFileAtomic(t, filepath.Join(dir, "addr"), []byte(addr))
	_, _ = io.Copy(io.Discard, os.Stdin)
}
