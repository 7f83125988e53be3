// Command benchrig is the side-by-side benchmark's rig (scripts/bench-peers.sh):
// what it needs besides the load generators and the peers themselves, each in
// its own process so that no target shares a heap or a scheduler with
// another, or with the load.
//
//	benchrig setup -dir D ...        PKI, a JWT and its RequestAuthentication, 100 policy
//	                                 rules, and the configurations of Tollgate, nginx and Caddy
//	benchrig upstream -dir D ...     the mTLS upstream every target proxies to: it accepts only
//	                                 the gateway's SPIFFE ID and answers "ok\n"
//	benchrig bare -dir D ...         Go's floor: a bare httputil.ReverseProxy, TLS in and
//	                                 mTLS out with go-spiffe, Go's default transport
//	benchrig webhook -dir D ...      a remote audit sink: takes the NDJSON batches of
//	                                 Tollgate's webhook sink over TLS and counts the records
//	benchrig open -url U -rate R ... an open-loop load at R requests/s: latency percentiles
//	benchrig idle -url U -pid P ...  memory per idle keep-alive TLS connection of process P
//	benchrig cpu PID                 the CPU time of PID and its children, in clock ticks
//
// It is a tool for measuring, not part of the gateway.
package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"

	"tollgate.dev/tollgate/internal/benchdata"
	"tollgate.dev/tollgate/internal/dev"
)

const (
	trustDomain = "example.org"
	gatewayID   = "spiffe://example.org/ns/tollgate/sa/gateway"
	upstreamID  = "spiffe://example.org/ns/demo/sa/echo"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: benchrig setup|upstream|bare|webhook|open|idle|cpu ...")
		os.Exit(2)
	}
	var err error
	switch cmd, args := os.Args[1], os.Args[2:]; cmd {
	case "setup":
		err = setup(args)
	case "upstream":
		err = upstream(args)
	case "bare":
		err = bare(args)
	case "webhook":
		err = webhook(args)
	case "open":
		err = open(args)
	case "idle":
		err = idle(args)
	case "cpu":
		err = cpu(args)
	default:
		err = fmt.Errorf("unknown command %q", cmd)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "benchrig:", err)
		os.Exit(1)
	}
}

// setup writes everything the targets read, under dir.
func setup(args []string) error {
	fs := flag.NewFlagSet("setup", flag.ExitOnError)
	dir := fs.String("dir", "", "directory to write")
	up := fs.String("upstream", "127.0.0.1:19443", "the upstream's address")
	gw := fs.String("gateway", "127.0.0.1:18443", "Tollgate's address")
	admin := fs.String("admin", "127.0.0.1:19901", "Tollgate's admin address")
	ngx := fs.String("nginx", "127.0.0.1:18444", "nginx's address")
	caddy := fs.String("caddy", "127.0.0.1:18445", "Caddy's address")
	sink := fs.String("sink", "127.0.0.1:19444", "the audit webhook's address (benchrig webhook)")
	rules := fs.Int("rules", 100, "AuthorizationPolicy rules")
	fs.Parse(args)
	if *dir == "" {
		return errors.New("setup: -dir is required")
	}
	d, err := filepath.Abs(*dir)
	if err != nil {
		return err
	}
	if _, err := dev.WritePKI(filepath.Join(d, "pki"), trustDomain, 7*24*time.Hour,
		map[string]string{"gateway": gatewayID, "echo": upstreamID}); err != nil {
		return err
	}
	// Caddy serves a site for any host name on the port (wrk and curl say
	// "localhost"; a site address of 127.0.0.1 would answer them an empty 200).
	caddyHost, caddyPort, err := net.SplitHostPort(*caddy)
	if err != nil {
		return fmt.Errorf("-caddy: %w", err)
	}
	_, sinkPort, err := net.SplitHostPort(*sink)
	if err != nil {
		return fmt.Errorf("-sink: %w", err)
	}
	iss, err := dev.NewIssuer()
	if err != nil {
		return err
	}
	token, err := iss.Token("bench-user", []string{"bench"}, 24*time.Hour)
	if err != nil {
		return err
	}
	files := map[string]string{
		"token":               token,
		"policies/authn.yaml": string(iss.RequestAuthentication()),
		"policies/rules.yaml": benchdata.Policies(*rules),
		"gateway.yaml":        fmt.Sprintf(gatewayYAML, *gw, *up, upstreamID, *admin) + fileAudit,
		// The audit journal (group commit) feeding a webhook, and the same
		// fail-closed: a request waits for its decision record's fsync.
		"gateway-journal.yaml":    fmt.Sprintf(gatewayYAML, *gw, *up, upstreamID, *admin) + fmt.Sprintf(journalAudit, "open", sinkPort),
		"gateway-failclosed.yaml": fmt.Sprintf(gatewayYAML, *gw, *up, upstreamID, *admin) + fmt.Sprintf(journalAudit, "closed", sinkPort),
		"nginx/nginx.conf":        strings.ReplaceAll(fmt.Sprintf(nginxConf, *up, *ngx), "$DIR", d),
		"caddy/Caddyfile":         strings.ReplaceAll(fmt.Sprintf(caddyfile, caddyPort, caddyHost, *up), "$DIR", d),
		"nginx/tmp/.keep":         "",
		"caddy/data/.keep":        "",
		"caddy/config/.keep":      "",
		"audit/.keep":             "",
	}
	for name, content := range files {
		p := filepath.Join(d, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			return err
		}
	}
	return nil
}

// The full ingress path: TLS in, a bearer JWT checked on every request, 100
// policy rules, mTLS out to a verified SPIFFE ID, every event audited to a file.
const gatewayYAML = `apiVersion: tollgate.dev/v1
kind: Gateway
identity:
  trustDomain: example.org
  files: {cert: pki/gateway.crt, key: pki/gateway.key, bundle: pki/ca.crt}
ingress:
  listen: %s
  tls:
    certificates: [{cert: pki/tls.crt, key: pki/tls.key}]
  routes:
  - name: bench
    host: "*"
    pathPrefix: /
    upstream:
      url: https://%s
      spiffeIDs: [%s]
admin:
  listen: %s
policy:
  files: [policies/]
`

const fileAudit = `audit:
  sinks:
  - file: audit/audit.log
`

const journalAudit = `audit:
  failureMode: %s
  journal:
    dir: audit/journal
  sinks:
  - webhook:
      url: https://localhost:%s/audit
      caFile: pki/ca.crt
`

// nginx 1.22 (Debian 12): TLS in, mTLS out with the gateway's SVID; it checks
// the upstream's certificate by name (it cannot check a SPIFFE ID).
const nginxConf = `worker_processes 2;
error_log $DIR/nginx/error.log warn;
pid $DIR/nginx/nginx.pid;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path $DIR/nginx/tmp/body;
  proxy_temp_path $DIR/nginx/tmp/proxy;
  fastcgi_temp_path $DIR/nginx/tmp/fastcgi;
  uwsgi_temp_path $DIR/nginx/tmp/uwsgi;
  scgi_temp_path $DIR/nginx/tmp/scgi;
  upstream up { server %s; keepalive 64; }
  server {
    listen %s ssl http2;
    ssl_certificate     $DIR/pki/tls.crt;
    ssl_certificate_key $DIR/pki/tls.key;
    location / {
      proxy_pass https://up;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Host $host;
      proxy_ssl_verify on;
      proxy_ssl_trusted_certificate $DIR/pki/ca.crt;
      proxy_ssl_name localhost;
      proxy_ssl_server_name on;
      proxy_ssl_session_reuse on;
      proxy_ssl_certificate $DIR/pki/gateway.crt;
      proxy_ssl_certificate_key $DIR/pki/gateway.key;
    }
  }
}
`

// Caddy 2.6 (Debian 12): TLS in, mTLS out with the gateway's SVID; it checks
// the upstream's certificate by name.
const caddyfile = `{
	admin off
	auto_https off
}
https://:%s {
	bind %s
	tls $DIR/pki/tls.crt $DIR/pki/tls.key
	reverse_proxy https://%s {
		transport http {
			tls_client_auth $DIR/pki/gateway.crt $DIR/pki/gateway.key
			tls_trusted_ca_certs $DIR/pki/ca.crt
			tls_server_name localhost
		}
	}
}
`

// loadSVID reads an SVID and the trust bundle from dir's pki.
func loadSVID(dir, name string) (*x509svid.SVID, *x509bundle.Bundle, error) {
	pki := filepath.Join(dir, "pki")
	svid, err := x509svid.Load(filepath.Join(pki, name+".crt"), filepath.Join(pki, name+".key"))
	if err != nil {
		return nil, nil, err
	}
	bundle, err := x509bundle.Load(spiffeid.RequireTrustDomainFromString(trustDomain), filepath.Join(pki, "ca.crt"))
	if err != nil {
		return nil, nil, err
	}
	return svid, bundle, nil
}

// upstream serves "ok\n" over mTLS to the gateway's SPIFFE ID, HTTP/1.1 and HTTP/2.
func upstream(args []string) error {
	fs := flag.NewFlagSet("upstream", flag.ExitOnError)
	dir := fs.String("dir", "", "setup's directory")
	listen := fs.String("listen", "127.0.0.1:19443", "address")
	fs.Parse(args)
	cfg, h, err := upstreamServer(*dir)
	if err != nil {
		return err
	}
	return serve(*listen, cfg, h)
}

func upstreamServer(dir string) (*tls.Config, http.Handler, error) {
	svid, bundle, err := loadSVID(dir, "echo")
	if err != nil {
		return nil, nil, err
	}
	cfg := tlsconfig.MTLSServerConfig(svid, bundle, tlsconfig.AuthorizeID(spiffeid.RequireFromString(gatewayID)))
	cfg.NextProtos = []string{"h2", "http/1.1"}
	return cfg, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		io.WriteString(w, "ok\n")
	}), nil
}

// bare is the bare reverse proxy: what a Go team writes in ten lines.
func bare(args []string) error {
	fs := flag.NewFlagSet("bare", flag.ExitOnError)
	dir := fs.String("dir", "", "setup's directory")
	listen := fs.String("listen", "127.0.0.1:18446", "address")
	upAddr := fs.String("upstream", "127.0.0.1:19443", "upstream address")
	fs.Parse(args)
	cfg, h, err := bareServer(*dir, *upAddr)
	if err != nil {
		return err
	}
	return serve(*listen, cfg, h)
}

func bareServer(dir, upAddr string) (*tls.Config, http.Handler, error) {
	svid, bundle, err := loadSVID(dir, "gateway")
	if err != nil {
		return nil, nil, err
	}
	front, err := tls.LoadX509KeyPair(filepath.Join(dir, "pki", "tls.crt"), filepath.Join(dir, "pki", "tls.key"))
	if err != nil {
		return nil, nil, err
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = tlsconfig.MTLSClientConfig(svid, bundle, tlsconfig.AuthorizeID(spiffeid.RequireFromString(upstreamID)))
	up := &url.URL{Scheme: "https", Host: upAddr}
	rp := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(up)
			pr.Out.Host = pr.In.Host
			pr.SetXForwarded()
		},
		Transport: tr,
	}
	return &tls.Config{Certificates: []tls.Certificate{front}, NextProtos: []string{"h2", "http/1.1"}}, rp, nil
}

// webhook is the audit sink of the journal variants: it reads every batch
// and answers 204, and at exit prints how many records it took.
func webhook(args []string) error {
	fs := flag.NewFlagSet("webhook", flag.ExitOnError)
	dir := fs.String("dir", "", "setup's directory")
	listen := fs.String("listen", "127.0.0.1:19444", "address")
	fs.Parse(args)
	cfg, h, records, err := webhookServer(*dir)
	if err != nil {
		return err
	}
	defer func() { fmt.Println(records.Load(), "records") }()
	return serve(*listen, cfg, h)
}

func webhookServer(dir string) (*tls.Config, http.Handler, *atomic.Int64, error) {
	cert, err := tls.LoadX509KeyPair(filepath.Join(dir, "pki", "tls.crt"), filepath.Join(dir, "pki", "tls.key"))
	if err != nil {
		return nil, nil, nil, err
	}
	var records atomic.Int64
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(w, "read", http.StatusBadRequest)
			return
		}
		records.Add(int64(bytes.Count(b, []byte("\n"))))
		w.WriteHeader(http.StatusNoContent)
	})
	return &tls.Config{Certificates: []tls.Certificate{cert}, NextProtos: []string{"h2", "http/1.1"}}, h, &records, nil
}

// serve runs h on addr with TLS until SIGTERM or SIGINT.
func serve(addr string, cfg *tls.Config, h http.Handler) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 5 * time.Minute}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(sctx)
	}()
	if err := srv.Serve(tls.NewListener(ln, cfg)); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// idle opens n keep-alive TLS connections to url, one request on each, and
// leaves them idle; it prints the growth of pid's resident memory (with its
// children) per connection.
func idle(args []string) error {
	fs := flag.NewFlagSet("idle", flag.ExitOnError)
	target := fs.String("url", "", "target URL")
	ca := fs.String("ca", "", "CA certificate file")
	pid := fs.Int("pid", 0, "the target's process id")
	n := fs.Int("n", 1000, "connections")
	h2 := fs.Bool("h2", false, "HTTP/2 instead of HTTP/1.1")
	header := fs.String("H", "", "a request header, Name: value")
	fs.Parse(args)
	pem, err := os.ReadFile(*ca)
	if err != nil {
		return err
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	proto := "http/1.1"
	if *h2 {
		proto = "h2"
	}
	before, err := rss(*pid)
	if err != nil {
		return err
	}
	var clients []*http.Client
	defer func() {
		for _, c := range clients {
			c.CloseIdleConnections()
		}
	}()
	for range *n {
		// One transport per connection: each holds its own.
		tr := &http.Transport{
			TLSClientConfig:   &tls.Config{RootCAs: pool, ServerName: "localhost", NextProtos: []string{proto}},
			ForceAttemptHTTP2: *h2,
		}
		if !*h2 {
			tr.TLSNextProto = map[string]func(string, *tls.Conn) http.RoundTripper{}
		}
		c := &http.Client{Transport: tr, Timeout: 10 * time.Second}
		clients = append(clients, c)
		req, _ := http.NewRequest("GET", *target, nil)
		if name, value, ok := strings.Cut(*header, ":"); ok {
			req.Header.Set(name, strings.TrimSpace(value))
		}
		resp, err := c.Do(req)
		if err != nil {
			return err
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			return fmt.Errorf("status %d", resp.StatusCode)
		}
	}
	// Let the target settle (its buffers returned to pools, its goroutines parked).
	time.Sleep(2 * time.Second)
	after, err := rss(*pid)
	if err != nil {
		return err
	}
	fmt.Printf("%d %d\n", *n, (after-before)/int64(*n))
	return nil
}

// processes is pid and its children (nginx's workers).
func processes(pid int) []int {
	ps := []int{pid}
	tasks, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/children", pid))
	for _, t := range tasks {
		b, _ := os.ReadFile(t)
		for _, f := range strings.Fields(string(b)) {
			if c, err := strconv.Atoi(f); err == nil {
				ps = append(ps, c)
			}
		}
	}
	return ps
}

// rss is the resident memory of pid and its children, in bytes.
func rss(pid int) (int64, error) {
	var total int64
	for _, p := range processes(pid) {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", p))
		if err != nil {
			return 0, err
		}
		for line := range strings.Lines(string(b)) {
			if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
				kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
				if err != nil {
					return 0, err
				}
				total += kb << 10
			}
		}
	}
	return total, nil
}

// cpu prints the user and system CPU time of a process and its children, in
// clock ticks (fields 14 and 15 of /proc/PID/stat).
func cpu(args []string) error {
	if len(args) != 1 {
		return errors.New("usage: benchrig cpu PID")
	}
	pid, err := strconv.Atoi(args[0])
	if err != nil {
		return err
	}
	var ticks int64
	for _, p := range processes(pid) {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", p))
		if err != nil {
			return err
		}
		// The command name (field 2) may hold spaces: count after its ')'.
		f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+1:]))
		for _, i := range []int{11, 12} { // utime, stime: fields 14, 15
			v, err := strconv.ParseInt(f[i], 10, 64)
			if err != nil {
				return err
			}
			ticks += v
		}
	}
	fmt.Println(ticks)
	return nil
}
