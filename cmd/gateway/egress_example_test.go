package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/svid/x509svid"

	"tollgate.dev/tollgate/internal/dev"
	"tollgate.dev/tollgate/internal/identity"
	"tollgate.dev/tollgate/internal/testkit"
)

// egressCurl is one of dev mode's printed egress curl lines.
type egressCurl struct {
	proxy    string
	insecure bool   // --proxy-insecure instead of --proxy-cacert
	cacert   string // with --proxy-cacert
	cert     string
	key      string
	target   string
}

var egressCurlLine = regexp.MustCompile(`(?m)^\s+curl --proxy (\S+) (?:(--proxy-insecure)|--proxy-cacert (\S+)) --proxy-cert (\S+) --proxy-key (\S+) '?([^'\s]+)'?$`)

func parseEgressCurls(out string) []egressCurl {
	var cs []egressCurl
	for _, m := range egressCurlLine.FindAllStringSubmatch(out, -1) {
		cs = append(cs, egressCurl{proxy: m[1], insecure: m[2] != "", cacert: m[3], cert: m[4], key: m[5], target: m[6]})
	}
	return cs
}

// client is what the curl line does, in Go: the egress listener as an HTTPS
// proxy, the curl SVID from the written files as client certificate, the
// proxy's certificate checked against ca.crt. For --proxy-insecure the host
// name can't be checked (the gateway's SVID has none); instead of skipping
// verification as curl then does, the client checks the chain and the
// gateway's SPIFFE ID, as a Go workload should. seen gets the proxy's leaf.
func (c egressCurl) client(t *testing.T, caFile string, seen func(*x509.Certificate)) *http.Client {
	t.Helper()
	pemBytes, err := os.ReadFile(caFile)
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(pemBytes) {
		t.Fatalf("%s holds no certificate", caFile)
	}
	cert, err := tls.LoadX509KeyPair(c.cert, c.key)
	if err != nil {
		t.Fatal(err)
	}
	proxy, err := url.Parse(c.proxy)
	if err != nil {
		t.Fatal(err)
	}
	cfg := &tls.Config{Certificates: []tls.Certificate{cert}, RootCAs: roots}
	if c.insecure {
		gw, _ := identity.ParseMatcher([]string{dev.GatewayID})
		cfg.InsecureSkipVerify = true // replaced by the check below, which also runs on resumption
		cfg.VerifyConnection = func(cs tls.ConnectionState) error {
			if len(cs.PeerCertificates) == 0 {
				return errors.New("no proxy certificate")
			}
			leaf := cs.PeerCertificates[0]
			inter := x509.NewCertPool()
			for _, ic := range cs.PeerCertificates[1:] {
				inter.AddCert(ic)
			}
			if _, err := leaf.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}); err != nil {
				return err
			}
			if id, err := x509svid.IDFromCert(leaf); err != nil || !gw.Match(id) {
				return errors.New("the proxy is not the gateway's SPIFFE ID")
			}
			seen(leaf)
			return nil
		}
	} else {
		cfg.VerifyConnection = func(cs tls.ConnectionState) error {
			seen(cs.PeerCertificates[0])
			return nil
		}
	}
	tr := &http.Transport{Proxy: http.ProxyURL(proxy), TLSClientConfig: cfg}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 10 * time.Second}
}

// TestDevModeEgress follows dev mode's printed egress curl lines with Go:
// each must get the status its comment promises (the allowed call reaches the
// demo API through TLS origination and comes back with credentials masked),
// every promised line must be there, and every call is an egress audit event.
// All traffic stays on loopback: the one registered name resolves to
// 127.0.0.1, and the unregistered one is refused before any lookup.
func TestDevModeEgress(t *testing.T) {
	var out bytes.Buffer
	var auditOut testkit.Buffer
	dir := t.TempDir()
	env, err := dev.Start(context.Background(), dev.Options{
		Dir: dir, Listen: "127.0.0.1:0", Admin: "127.0.0.1:0", Egress: "127.0.0.1:0",
		Logger: testLogger(t), Out: &out, Audit: &auditOut,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer env.Close(context.Background())
	if !strings.HasPrefix(env.EgressURL, "https://localhost:") {
		t.Fatalf("EgressURL = %q", env.EgressURL)
	}
	const secret = "sk-live-0123456789abcdef"
	wants := map[string]*struct {
		status int
		reason string // X-Tollgate-Error
		seen   bool
	}{
		"http://" + dev.APIHost + "/v1/hello":            {status: 200},
		"http://" + dev.APIHost + "/v2/hello":            {status: 403},
		"http://" + dev.APIHost + "/v1/hello?mode=debug": {status: 403},
		"http://example.com/":                            {status: 403, reason: "destination_not_registered"},
	}
	curls := parseEgressCurls(out.String())
	for _, c := range curls {
		w, ok := wants[c.target]
		if !ok {
			t.Errorf("unexpected egress curl line for %q", c.target)
			continue
		}
		w.seen = true
		if c.proxy != env.EgressURL || c.cert != env.CurlCert || c.key != env.CurlKey || (!c.insecure && c.cacert != env.CAFile) {
			t.Errorf("curl line %+v: want proxy %s, cert %s, key %s, CA %s", c, env.EgressURL, env.CurlCert, env.CurlKey, env.CAFile)
		}
		var leaf *x509.Certificate
		client := c.client(t, env.CAFile, func(l *x509.Certificate) { leaf = l })
		req, _ := http.NewRequest("GET", c.target, nil)
		req.Header.Set("X-Api-Key", secret)
		resp, err := client.Do(req)
		if err != nil {
			t.Fatalf("%s: %v", c.target, err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != w.status {
			t.Errorf("%s = %d (want %d): %s", c.target, resp.StatusCode, w.status, body)
		}
		if w.reason != "" && resp.Header.Get("X-Tollgate-Error") != w.reason {
			t.Errorf("%s: X-Tollgate-Error %q, want %q", c.target, resp.Header.Get("X-Tollgate-Error"), w.reason)
		}
		// --proxy-insecure is printed exactly when curl could not check the
		// proxy's name: the day the dev SVID names localhost, the lines
		// must verify it.
		if leaf == nil {
			t.Errorf("%s: the proxy's certificate was not seen", c.target)
		} else if verifiable := leaf.VerifyHostname("localhost") == nil; c.insecure == verifiable {
			t.Errorf("%s: --proxy-insecure printed = %v, but the proxy's certificate verifies for localhost = %v", c.target, c.insecure, verifiable)
		}
		if resp.StatusCode == 200 {
			var a dev.APIResponse
			if err := json.Unmarshal(body, &a); err != nil {
				t.Fatalf("%s: %v: %s", c.target, err, body)
			}
			if a.Service != "tollgate-dev-api" || a.Path != "/v1/hello" || a.TLS != "TLS 1.3" {
				t.Errorf("%s: the demo API saw %+v", c.target, a)
			}
			if got := strings.Join(a.Headers["X-Api-Key"], ","); got != dev.Mask(secret) || strings.Contains(string(body), secret) {
				t.Errorf("%s: X-Api-Key came back as %q, want it masked as %q", c.target, got, dev.Mask(secret))
			}
		}
		ev := waitAuditEvent(t, &auditOut, resp.Header.Get("X-Request-Id"))
		if ev["kind"] != "egress" || ev["status"] != float64(w.status) || ev["sourcePrincipal"] != dev.CurlID {
			t.Errorf("%s: audit event %v", c.target, ev)
		}
		if w.status == 200 {
			up, _ := ev["upstream"].(map[string]any)
			if up["address"] != env.APIAddr {
				t.Errorf("%s: dialled %v, want the demo API at %s", c.target, up["address"], env.APIAddr)
			}
		}
	}
	for target, w := range wants {
		if !w.seen {
			t.Errorf("no printed egress curl line for %q:\n%s", target, out.String())
		}
	}
	if strings.Contains(auditOut.String(), secret) {
		t.Error("the audit stream holds the client's X-Api-Key value")
	}
}

// waitAuditEvent waits for the audit event with request id id on the audit
// stream (written without blocking the request, so maybe after the answer).
func waitAuditEvent(t *testing.T, b *testkit.Buffer, id string) map[string]any {
	t.Helper()
	if id == "" {
		t.Fatal("the answer has no X-Request-Id")
	}
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		for line := range strings.SplitSeq(b.String(), "\n") {
			var ev map[string]any
			if json.Unmarshal([]byte(line), &ev) == nil && ev["requestId"] == id {
				return ev
			}
		}
	}
	t.Fatalf("no audit event for request %s:\n%s", id, b.String())
	return nil
}

// A busy egress port is the same one clear line as the others, naming -egress.
func TestDevBusyEgressPort(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	taken := busy.Addr().String()
	var errb bytes.Buffer
	if code := run([]string{"dev", "-dir", t.TempDir(), "-listen", "127.0.0.1:0", "-admin", "127.0.0.1:0", "-egress", taken}, nil, io.Discard, &errb); code != 1 {
		t.Errorf("exit %d, want 1", code)
	}
	want := regexp.MustCompile(`(?m)^gateway dev: ` + regexp.QuoteMeta(taken) + ` is already in use \(is another gateway running\?\): choose another address with -egress \(-egress 127\.0\.0\.1:0 picks a free port\)$`)
	if !want.MatchString(errb.String()) || strings.Count(errb.String(), "in use") != 1 {
		t.Errorf("stderr:\n%s", errb.String())
	}
}
