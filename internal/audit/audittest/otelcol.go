package audittest

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"tollgate.dev/tollgate/internal/testkit"
)

// EnvOtelcol names the collector binary scripts/otelcol/install.sh built.
const EnvOtelcol = "OTELCOL_BIN"

// Collector is a running OpenTelemetry Collector (tools/otelcol) with an
// OTLP/HTTP receiver and a syslog receiver (RFC 5424, octet counting), both
// over TLS on loopback, writing every log record to a file.
type Collector struct {
	// OTLPURL is the logs endpoint, https://127.0.0.1:port/v1/logs.
	OTLPURL string
	// SyslogAddr is the syslog receiver's TLS address.
	SyslogAddr string
	// CA signed the receivers' certificate (for "localhost" and 127.0.0.1).
	CA *testkit.CA

	out string
}

// StartCollector starts the collector and waits until both receivers
// handshake. It is stopped when the test ends.
func StartCollector(t testing.TB) *Collector {
	t.Helper()
	bin := os.Getenv(EnvOtelcol)
	if bin == "" {
		if os.Getenv(EnvRequire) != "" {
			t.Fatalf("%s is not set (%s is set; run scripts/otelcol/install.sh and export its last line)", EnvOtelcol, EnvRequire)
		}
		t.Skipf("%s is not set: run scripts/otelcol/install.sh and export its last line", EnvOtelcol)
	}
	dir := t.TempDir()
	ca := testkit.NewCA(t)
	cert, key := ca.WritePair(t, dir, "server", "localhost", "127.0.0.1")
	addrs := testkit.FreeAddrs(t, 2)
	c := &Collector{OTLPURL: "https://" + addrs[0] + "/v1/logs", SyslogAddr: addrs[1], CA: ca, out: filepath.Join(dir, "out.json")}
	conf := fmt.Sprintf(`receivers:
  otlp:
    protocols:
      http:
        endpoint: %s
        tls: {cert_file: %s, key_file: %s}
  syslog:
    protocol: rfc5424
    enable_octet_counting: true
    tcp:
      listen_address: %s
      tls: {cert_file: %s, key_file: %s}
exporters:
  file:
    path: %s
    flush_interval: 100ms
service:
  telemetry:
    metrics: {level: none}
    logs: {level: warn}
  pipelines:
    logs:
      receivers: [otlp, syslog]
      exporters: [file]
`, addrs[0], cert, key, addrs[1], cert, key, c.out)
	confFile := filepath.Join(dir, "config.yaml")
	if err := os.WriteFile(confFile, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "--config="+confFile)
	var stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stderr, &stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-exited
		}
	})
	cfg := &tls.Config{RootCAs: ca.Pool(), ServerName: "localhost"}
	for _, addr := range addrs {
		for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(50 * time.Millisecond) {
			select {
			case <-exited:
				t.Fatalf("the collector exited: %v\n%s", cmd.ProcessState, stderr.String())
			default:
			}
			conn, err := tls.Dial("tcp", addr, cfg)
			if err == nil {
				conn.Close()
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("the collector is not accepting TLS on %s after 60s: %v\n%s", addr, err, stderr.String())
			}
		}
	}
	return c
}

// LogRecord is what the collector wrote of one log record.
type LogRecord struct {
	Body       string
	Attributes map[string]string
	EventName  string
	TraceID    string
}

// Records reads every log record the collector has written so far.
func (c *Collector) Records(t testing.TB) []LogRecord {
	t.Helper()
	b, err := os.ReadFile(c.out)
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	type anyValue struct {
		StringValue string `json:"stringValue"`
		IntValue    string `json:"intValue"`
	}
	var recs []LogRecord
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(nil, 16<<20)
	for sc.Scan() {
		var doc struct {
			ResourceLogs []struct {
				ScopeLogs []struct {
					LogRecords []struct {
						Body       anyValue `json:"body"`
						EventName  string   `json:"eventName"`
						TraceID    string   `json:"traceId"`
						Attributes []struct {
							Key   string   `json:"key"`
							Value anyValue `json:"value"`
						} `json:"attributes"`
					} `json:"logRecords"`
				} `json:"scopeLogs"`
			} `json:"resourceLogs"`
		}
		if err := json.Unmarshal(sc.Bytes(), &doc); err != nil {
			continue // a line still being written
		}
		for _, rl := range doc.ResourceLogs {
			for _, sl := range rl.ScopeLogs {
				for _, lr := range sl.LogRecords {
					r := LogRecord{Body: lr.Body.StringValue, EventName: lr.EventName, TraceID: lr.TraceID, Attributes: map[string]string{}}
					for _, a := range lr.Attributes {
						r.Attributes[a.Key] = a.Value.StringValue + a.Value.IntValue
					}
					recs = append(recs, r)
				}
			}
		}
	}
	return recs
}
