// Package audittest runs a real syslog receiver for end-to-end tests of the
// audit sinks: Debian's rsyslogd (scripts/rsyslog/install.sh) with a TLS
// input on loopback, writing each message's MSG (the audit record) to a file.
package audittest

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"tollgate.dev/tollgate/internal/testkit"
)

// EnvRequire, when set, turns a missing rsyslogd into a failure instead of a
// skip (CI sets it, so a missing install can never pass silently).
const EnvRequire = "TOLLGATE_REQUIRE_E2E"

// Rsyslog is a running (or stopped) rsyslogd.
type Rsyslog struct {
	// Addr is the TLS input's address (RFC 5425), "127.0.0.1:port".
	Addr string
	// CA signed the receiver's certificate, for "localhost".
	CA *testkit.CA

	dir, conf, out string
	cmd            *exec.Cmd
	exited         chan struct{}
}

// StartRsyslog writes a configuration into a temporary directory and starts
// rsyslogd on a free loopback port, waiting until it completes a TLS
// handshake. It is stopped when the test ends.
func StartRsyslog(t testing.TB) *Rsyslog {
	t.Helper()
	bin, err := exec.LookPath("rsyslogd")
	if err != nil {
		require(t, "rsyslogd not installed")
	}
	if m, _ := filepath.Glob("/usr/lib/*/rsyslog/lmnsd_ossl.so"); len(m) == 0 {
		require(t, "rsyslog's OpenSSL driver (rsyslog-openssl) not installed")
	}
	dir := t.TempDir()
	ca := testkit.NewCA(t)
	caFile := ca.WriteRoot(t, dir, "ca.crt")
	cert, key := ca.WritePair(t, dir, "server", "localhost")
	r := &Rsyslog{Addr: testkit.FreeAddrs(t, 1)[0], CA: ca, dir: dir, conf: filepath.Join(dir, "rsyslog.conf"), out: filepath.Join(dir, "audit.log")}
	_, port, _ := strings.Cut(r.Addr, ":")
	os.MkdirAll(filepath.Join(dir, "work"), 0o700)
	conf := fmt.Sprintf(`# The syslog end-to-end test's receiver: TLS (RFC 5425) on loopback only,
# no imuxsock/imklog, so the machine's own logging is not touched.
global(workDirectory=%q maxMessageSize="64k"
       defaultNetstreamDriver="ossl" defaultNetstreamDriverCAFile=%q
       defaultNetstreamDriverCertFile=%q defaultNetstreamDriverKeyFile=%q)
module(load="imtcp" maxSessions="100" streamDriver.name="ossl" streamDriver.mode="1" streamDriver.authMode="anon")
template(name="msg" type="string" string="%%timegenerated:::date-rfc3339%% %%msg%%\n")
ruleset(name="audit") {
  action(type="omfile" file=%q template="msg" flushOnTXEnd="on" asyncWriting="off")
}
input(type="imtcp" address="127.0.0.1" port=%q ruleset="audit")
`, filepath.Join(dir, "work"), caFile, cert, key, r.out, port)
	if err := os.WriteFile(r.conf, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(bin, "-N1", "-f", r.conf).CombinedOutput(); err != nil {
		t.Fatalf("rsyslogd -N1 refused the test's configuration: %v\n%s", err, out)
	}
	r.Start(t)
	t.Cleanup(func() { r.Stop(t) })
	return r
}

func require(t testing.TB, msg string) {
	t.Helper()
	if os.Getenv(EnvRequire) != "" {
		t.Fatalf("%s (%s is set; run scripts/rsyslog/install.sh)", msg, EnvRequire)
	}
	t.Skipf("%s (run scripts/rsyslog/install.sh)", msg)
}

// Start starts rsyslogd (again, after Stop) and waits until it handshakes.
func (r *Rsyslog) Start(t testing.TB) {
	t.Helper()
	if r.cmd != nil {
		t.Fatal("audittest: rsyslogd already running")
	}
	cmd := exec.Command("rsyslogd", "-n", "-f", r.conf, "-i", filepath.Join(r.dir, "rsyslogd.pid"))
	var stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stderr, &stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	r.cmd, r.exited = cmd, make(chan struct{})
	go func() { cmd.Wait(); close(r.exited) }()
	cfg := &tls.Config{RootCAs: r.CA.Pool(), ServerName: "localhost"}
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		select {
		case <-r.exited:
			t.Fatalf("rsyslogd exited: %v\n%s", cmd.ProcessState, stderr.String())
		default:
		}
		c, err := tls.Dial("tcp", r.Addr, cfg)
		if err == nil {
			c.Close() // with close_notify: rsyslog logs nothing for it
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("rsyslogd not accepting TLS on %s after 30s: %v\n%s", r.Addr, err, stderr.String())
		}
	}
}

// Stop stops rsyslogd (SIGTERM, then SIGKILL after 10s) and waits for it.
func (r *Rsyslog) Stop(t testing.TB) {
	t.Helper()
	if r.cmd == nil {
		return
	}
	r.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-r.exited:
	case <-time.After(10 * time.Second):
		r.cmd.Process.Kill()
		<-r.exited
	}
	r.cmd = nil
}

// Lines returns the messages received so far: one audit record per line.
func (r *Rsyslog) Lines(t testing.TB) []string {
	t.Helper()
	var lines []string
	for _, m := range r.Received(t) {
		lines = append(lines, m.Line)
	}
	return lines
}

// Message is a message rsyslog received, and when.
type Message struct {
	At   time.Time
	Line string
}

// Received returns the messages received so far with rsyslog's time of
// reception, for delivery lag.
func (r *Rsyslog) Received(t testing.TB) []Message {
	t.Helper()
	b, err := os.ReadFile(r.out)
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	var msgs []Message
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		ts, line, ok := strings.Cut(sc.Text(), " ")
		if !ok {
			continue
		}
		at, err := time.Parse(time.RFC3339Nano, ts)
		if err != nil {
			t.Fatalf("rsyslog line without its reception time: %q", sc.Text())
		}
		if l := strings.TrimSpace(line); l != "" {
			msgs = append(msgs, Message{At: at, Line: l})
		}
	}
	return msgs
}
