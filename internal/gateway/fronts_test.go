package gateway_test

import (
	"bufio"
	"crypto/tls"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"tollgate.dev/tollgate/internal/testkit"
)

// auditEvents reads the env's audit log: one JSON object a line.
func (e *env) auditEvents() []map[string]any {
	e.t.Helper()
	b, err := os.ReadFile(filepath.Join(e.dir, "audit.log"))
	if err != nil {
		e.t.Fatal(err)
	}
	// A line being appended may be read half written: only whole lines
	// count.
	text := string(b)
	text = text[:strings.LastIndex(text, "\n")+1]
	var evs []map[string]any
	for line := range strings.SplitSeq(strings.TrimSpace(text), "\n") {
		if line == "" {
			continue
		}
		var ev map[string]any
		if err := json.Unmarshal([]byte(line), &ev); err != nil {
			e.t.Fatalf("audit line %q: %v", line, err)
		}
		evs = append(evs, ev)
	}
	return evs
}

// auditEvent waits for the event with request id id.
func (e *env) auditEvent(id string) map[string]any {
	e.t.Helper()
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		for _, ev := range e.auditEvents() {
			if ev["requestId"] == id {
				return ev
			}
		}
	}
	e.t.Fatalf("no audit event with requestId %q", id)
	return nil
}

// Requests that net/http refuses before any handler (and the listener's own
// header limits) get the gateway's JSON error with a request id, close the
// connection, and leave an audit event: a probe of the parser is answered and
// recorded like any other request, never in net/http's plain text.
func TestListenerRefusalsAreAnsweredAndAudited(t *testing.T) {
	e := startEnvOpts(t, "", envOptions{ingress: "  limits: {maxHeaderCount: 20}\n"})
	addr := e.gw.IngressAddr().String()
	manyHeaders := "GET /many HTTP/1.1\r\nHost: localhost\r\n" + strings.Repeat("X-A: 1\r\n", 30) + "\r\n"
	tests := []struct {
		name, raw  string
		plain      bool // sent without TLS
		keepAlive  bool // a well-formed request: the connection may stay open
		wantStatus int
		wantMsg    string
	}{
		{name: "no Host", raw: "GET / HTTP/1.1\r\n\r\n", wantStatus: 400, wantMsg: "malformed request"},
		{name: "bad request line", raw: "GET /\x01 HTTP/1.1\r\nHost: localhost\r\n\r\n", wantStatus: 400, wantMsg: "malformed request"},
		{name: "unknown transfer coding", raw: "POST / HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: gzip\r\n\r\n", wantStatus: 501, wantMsg: "unsupported transfer encoding"},
		{name: "HTTP/2.5", raw: "GET / HTTP/2.5\r\nHost: localhost\r\n\r\n", wantStatus: 505, wantMsg: "unsupported HTTP version"},
		{name: "unknown Expect", raw: "GET / HTTP/1.1\r\nHost: localhost\r\nExpect: teapot\r\n\r\n", wantStatus: 417, wantMsg: "unsupported expectation"},
		{name: "too many headers", raw: manyHeaders, wantStatus: 431, wantMsg: "request headers too large"},
		{name: "plain HTTP to the TLS port", raw: "GET / HTTP/1.1\r\nHost: localhost\r\n\r\n", plain: true, wantStatus: 400, wantMsg: "malformed request"},
		// OPTIONS * reaches the gateway's handler (net/http's own answer is off).
		{name: "OPTIONS *", raw: "OPTIONS * HTTP/1.1\r\nHost: localhost\r\n\r\n", wantStatus: 400, wantMsg: "unsupported request target", keepAlive: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var conn net.Conn
			var err error
			if tc.plain {
				conn, err = net.Dial("tcp", addr)
			} else {
				conn, err = tls.Dial("tcp", addr, &tls.Config{InsecureSkipVerify: true, NextProtos: []string{"http/1.1"}}) // the answer matters, not the certificate
			}
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			conn.SetDeadline(time.Now().Add(10 * time.Second))
			if _, err := io.WriteString(conn, tc.raw); err != nil {
				t.Fatal(err)
			}
			br := bufio.NewReader(conn)
			resp, err := http.ReadResponse(br, nil)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tc.wantStatus {
				t.Fatalf("status %d, want %d: %s", resp.StatusCode, tc.wantStatus, body)
			}
			var got struct{ Error, RequestID string }
			if err := json.Unmarshal(body, &got); err != nil || resp.Header.Get("Content-Type") != "application/json" {
				t.Fatalf("not the gateway's JSON error (%v): %s %q", err, resp.Header.Get("Content-Type"), body)
			}
			if got.Error != tc.wantMsg || got.RequestID == "" || resp.Header.Get("X-Request-Id") != got.RequestID {
				t.Errorf("error %q id %q (header %q), want %q and one id", got.Error, got.RequestID, resp.Header.Get("X-Request-Id"), tc.wantMsg)
			}
			if !resp.Close && !tc.keepAlive {
				t.Error("connection kept open after a refused request")
			}
			ev := e.auditEvent(got.RequestID)
			if ev["status"] != float64(tc.wantStatus) || ev["kind"] != "ingress" || ev["error"] != "bad_request" {
				t.Errorf("audit event %v", ev)
			}
		})
	}
}

// A client that names one site in SNI and another in Host (domain fronting)
// gets 421 by default, over HTTP/1.1 and HTTP/2, and the upstream never sees
// it; a request without SNI, or whose Host the same certificate serves, goes
// through; misdirectedRequests: ALLOW turns the check off.
func TestMisdirectedRequests(t *testing.T) {
	tests := []struct {
		name       string
		setting    string
		sni, host  string
		wantStatus int
	}{
		{name: "fronted", sni: "localhost", host: "admin.test", wantStatus: http.StatusMisdirectedRequest},
		{name: "fronted the other way", sni: "admin.test", host: "localhost", wantStatus: http.StatusMisdirectedRequest},
		{name: "same site", sni: "admin.test", host: "ADMIN.test.:443", wantStatus: http.StatusOK},
		{name: "no SNI", sni: "", host: "admin.test", wantStatus: http.StatusOK},
		{name: "allowed by setting", setting: "ALLOW", sni: "localhost", host: "admin.test", wantStatus: http.StatusOK},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			testkit.NewCA(t).WritePair(t, dir, "admin", "admin.test")
			ingress := "  tls:\n    certificates: [{cert: pki/tls.crt, key: pki/tls.key}, {cert: " + filepath.Join(dir, "admin.crt") + ", key: " + filepath.Join(dir, "admin.key") + "}]\n"
			if tc.setting != "" {
				ingress += "  misdirectedRequests: " + tc.setting + "\n"
			}
			e := startEnvOpts(t, "", envOptions{ingressOverride: ingress})
			for _, h2 := range []bool{false, true} {
				tr := &http.Transport{
					TLSClientConfig:   &tls.Config{InsecureSkipVerify: true, ServerName: tc.sni}, // two CAs; the SNI is what is tested
					ForceAttemptHTTP2: h2,
				}
				if !h2 {
					tr.TLSNextProto = map[string]func(string, *tls.Conn) http.RoundTripper{}
				}
				if tc.sni == "" {
					// Go sends no SNI for an IP address: dial the IP with an empty ServerName.
					tr.TLSClientConfig.ServerName = ""
				}
				c := &http.Client{Transport: tr, Timeout: 10 * time.Second}
				req, _ := http.NewRequest("GET", e.base+"/x", nil)
				req.Host = tc.host
				resp, err := c.Do(req)
				if err != nil {
					t.Fatalf("h2=%v: %v", h2, err)
				}
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				tr.CloseIdleConnections()
				if resp.StatusCode != tc.wantStatus {
					t.Errorf("h2=%v: status %d, want %d: %s", h2, resp.StatusCode, tc.wantStatus, b)
				}
			}
		})
	}
}

// Header names with '_' are refused by default (CGI-style upstreams read
// X_Tollgate_User as X-Tollgate-User, past every dash-spelled strip), or
// dropped before policy and upstream with headersWithUnderscores: DROP_HEADER.
// HTTP/1.1 and HTTP/2.
func TestHeadersWithUnderscores(t *testing.T) {
	tests := []struct {
		setting    string
		wantStatus int
	}{
		{setting: "", wantStatus: http.StatusBadRequest},
		{setting: "REJECT_REQUEST", wantStatus: http.StatusBadRequest},
		{setting: "DROP_HEADER", wantStatus: http.StatusOK},
	}
	for _, tc := range tests {
		t.Run("setting="+tc.setting, func(t *testing.T) {
			var o envOptions
			if tc.setting != "" {
				o.ingress = "  headersWithUnderscores: " + tc.setting + "\n"
			}
			e := startEnvOpts(t, "", o)
			for _, c := range []*http.Client{e.h1, e.client} {
				r := e.do(c, "GET", "/x", "X_Tollgate_User", "mallory", "X_Forwarded_For", "1.2.3.4")
				if r.status != tc.wantStatus {
					t.Fatalf("status %d, want %d: %s", r.status, tc.wantStatus, r.body)
				}
				for k := range r.echo.Headers {
					if strings.Contains(k, "_") {
						t.Errorf("upstream got %s", k)
					}
				}
			}
		})
	}
}
