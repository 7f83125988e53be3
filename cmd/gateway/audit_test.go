package main

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"tollgate.dev/tollgate/internal/audit"
	"tollgate.dev/tollgate/internal/audit/audittest"
	"tollgate.dev/tollgate/internal/identity"
	"tollgate.dev/tollgate/internal/testkit"
)

// recordingUpstream is the quickstart's echo identity answering 200 and
// remembering the request id of every request it received: what was
// forwarded.
type recordingUpstream struct {
	ln   net.Listener
	srv  *http.Server
	mu   sync.Mutex
	seen map[string]bool
}

// listenUpstream reserves the upstream's address before the example (and
// its PKI) exists; serve starts it once it does.
func listenUpstream(t *testing.T) *recordingUpstream {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return &recordingUpstream{ln: ln, seen: map[string]bool{}}
}

func (u *recordingUpstream) serve(t *testing.T, pki string) {
	t.Helper()
	src, err := identity.NewFiles(identity.FilesOptions{Cert: filepath.Join(pki, "echo.crt"), Key: filepath.Join(pki, "echo.key"), Bundle: filepath.Join(pki, "ca.crt")})
	if err != nil {
		t.Fatal(err)
	}
	allow, _ := identity.ParseMatcher([]string{"spiffe://example.org/ns/tollgate/sa/gateway"})
	cfg := identity.ServerTLSConfig(src, allow)
	cfg.NextProtos = []string{"h2", "http/1.1"}
	u.srv = &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u.mu.Lock()
		u.seen[r.Header.Get("X-Request-Id")] = true
		u.mu.Unlock()
		io.WriteString(w, "ok\n")
	}), ReadHeaderTimeout: 10 * time.Second}
	go u.srv.Serve(tls.NewListener(u.ln, cfg))
	t.Cleanup(func() {
		u.srv.Close()
		src.Close()
	})
}

func (u *recordingUpstream) forwarded() map[string]bool {
	u.mu.Lock()
	defer u.mu.Unlock()
	m := make(map[string]bool, len(u.seen))
	for k := range u.seen {
		m[k] = true
	}
	return m
}

// auditConfig is the quickstart with the given audit section in place of
// its stdout sink.
func auditConfig(t *testing.T, ingress, admin string, up *recordingUpstream, auditYAML string) string {
	t.Helper()
	file := quickstartConfig(t, ingress, admin, up.ln.Addr().String(), "shutdownDelay: 0s\n")
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	const stdout = "audit:\n  sinks:\n  - stdout: true\n"
	if !bytes.Contains(b, []byte(stdout)) {
		t.Fatalf("quickstart has no %q any more", stdout)
	}
	if err := os.WriteFile(file, bytes.Replace(b, []byte(stdout), []byte(auditYAML), 1), 0o644); err != nil {
		t.Fatal(err)
	}
	up.serve(t, filepath.Join(filepath.Dir(file), "pki"))
	return file
}

// journalRecords reads every record of a journal (or a sink's file).
func journalRecords(t *testing.T, paths ...string) []audit.Event {
	t.Helper()
	var evs []audit.Event
	for _, p := range paths {
		files := []string{p}
		if st, err := os.Stat(p); err == nil && st.IsDir() {
			files, _ = filepath.Glob(filepath.Join(p, "audit*.ndjson"))
		}
		for _, f := range files {
			b, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			sc := bufio.NewScanner(bytes.NewReader(b))
			sc.Buffer(nil, 1<<20)
			for sc.Scan() {
				var ev audit.Event
				if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
					continue // a torn last line; Verify reports it
				}
				evs = append(evs, ev)
			}
		}
	}
	return evs
}

// checkAllAudited fails t for every request the upstream received without
// its decision record in the journal: fail-closed forwards nothing unaudited.
func checkAllAudited(t *testing.T, forwarded map[string]bool, journal string) {
	t.Helper()
	decided := decisionIDs(journalRecords(t, journal))
	unaudited := 0
	for id := range forwarded {
		if !decided[id] {
			unaudited++
		}
	}
	if unaudited > 0 {
		t.Errorf("%d of %d forwarded requests have no decision record in the journal", unaudited, len(forwarded))
	}
}

func decisionIDs(evs []audit.Event) map[string]bool {
	m := map[string]bool{}
	for _, ev := range evs {
		if ev.Phase == audit.PhaseDecision {
			m[ev.RequestID] = true
		}
	}
	return m
}

// load sends GET /hello from workers until stop is closed or each has sent
// max, and returns the request ids answered 200 and the count of other
// outcomes.
func load(ingress string, workers, max int, stop <-chan struct{}) (ok []string, other int) {
	c := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}, Timeout: 5 * time.Second}
	defer c.CloseIdleConnections()
	var mu sync.Mutex
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for range max {
				select {
				case <-stop:
					return
				default:
				}
				resp, err := c.Get("https://" + ingress + "/hello")
				mu.Lock()
				if err == nil && resp.StatusCode == http.StatusOK {
					ok = append(ok, resp.Header.Get("X-Request-Id"))
				} else {
					other++
				}
				mu.Unlock()
				if err != nil {
					return // the gateway is gone
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
		})
	}
	wg.Wait()
	return ok, other
}

// TestAuditJournalSurvivesSIGKILL: fail-closed, under load, the gateway is
// SIGKILLed and started again. Every request the upstream received has its
// decision record in the journal, and every one the client got a 200 for
// reaches the sink (before the kill or after the restart).
func TestAuditJournalSurvivesSIGKILL(t *testing.T) {
	dir := t.TempDir()
	ingress, admin := freeAddr(t), freeAddr(t)
	up := listenUpstream(t)
	journal, sink := filepath.Join(dir, "journal"), filepath.Join(dir, "siem.ndjson")
	file := auditConfig(t, ingress, admin, up, fmt.Sprintf(
		"audit:\n  failureMode: closed\n  journal: {dir: %s}\n  sinks:\n  - file: %s\n", journal, sink))

	p := startGateway(t, io.Discard, io.Discard, "run", "-c", file)
	p.waitReady(t, admin)
	stop := make(chan struct{})
	var ok []string
	done := make(chan struct{})
	go func() {
		ok, _ = load(ingress, 4, 5000, stop)
		close(done)
	}()
	// Kill once the load has run for a while.
	for deadline := time.Now().Add(30 * time.Second); len(up.forwarded()) < 500; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("only %d requests forwarded in 30s", len(up.forwarded()))
		}
	}
	if err := p.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-p.exited
	close(stop)
	<-done
	forwarded := up.forwarded()

	// Nothing was forwarded unaudited: the journal has every decision.
	checkAllAudited(t, forwarded, journal)

	// Started again, the gateway delivers what the sink had not got.
	p = startGateway(t, io.Discard, io.Discard, "run", "-c", file)
	p.waitReady(t, admin)
	var missing []string
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		got := decisionIDs(journalRecords(t, sink))
		missing = missing[:0]
		for _, id := range ok {
			if !got[id] {
				missing = append(missing, id)
			}
		}
		if len(missing) == 0 || time.Now().After(deadline) {
			break
		}
	}
	if len(missing) > 0 {
		t.Errorf("%d of %d requests answered 200 never reached the sink, e.g. %s", len(missing), len(ok), missing[0])
	}
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := p.wait(t, 20*time.Second); err != nil {
		t.Errorf("after SIGTERM: %v", err)
	}
	var out, errb bytes.Buffer
	if code := run([]string{"audit", "verify", journal}, nil, &out, &errb); code != 0 {
		t.Errorf("audit verify after a SIGKILL and a restart: exit %d\n%s%s", code, out.String(), errb.String())
	}
	t.Logf("forwarded %d, answered 200: %d; verify: %s", len(forwarded), len(ok), strings.TrimSpace(out.String()))
}

// mountTmpfs mounts a tmpfs of size bytes at dir: a disk that fills up.
func mountTmpfs(t *testing.T, dir string, size int) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("mounting a small tmpfs (a full disk) needs root; CI runs as root")
	}
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", fmt.Sprintf("size=%d,mode=0700", size), "tmpfs", dir).CombinedOutput(); err != nil {
		t.Fatalf("mount tmpfs: %v: %s", err, out)
	}
	t.Cleanup(func() { exec.Command("umount", "-l", dir).Run() })
}

func resizeTmpfs(t *testing.T, dir string, size int) {
	t.Helper()
	if out, err := exec.Command("mount", "-o", fmt.Sprintf("remount,size=%d", size), dir).CombinedOutput(); err != nil {
		t.Fatalf("remount tmpfs: %v: %s", err, out)
	}
}

// TestAuditJournalDiskFull: the journal's disk fills up under load.
// Fail-closed, requests are refused (503) and none is forwarded without its
// decision record; fail-open, traffic flows and the loss is counted. Once
// the disk has room again, a gap record says how many events were lost.
func TestAuditJournalDiskFull(t *testing.T) {
	for _, mode := range []string{"closed", "open"} {
		t.Run(mode, func(t *testing.T) {
			dir := t.TempDir()
			mnt := filepath.Join(dir, "disk")
			if err := os.Mkdir(mnt, 0o700); err != nil {
				t.Fatal(err)
			}
			mountTmpfs(t, mnt, 256<<10)
			journal := filepath.Join(mnt, "journal")
			ingress, admin := freeAddr(t), freeAddr(t)
			up := listenUpstream(t)
			file := auditConfig(t, ingress, admin, up, fmt.Sprintf(
				"audit:\n  failureMode: %s\n  journal: {dir: %s, segmentBytes: 65536, maxBytes: 1048576}\n  sinks:\n  - file: %s\n",
				mode, journal, filepath.Join(dir, "siem.ndjson")))
			startInProcess(t, file)

			// 256 KiB holds about a thousand records: 3,000 requests fill it.
			ok, refused := load(ingress, 4, 750, nil)
			forwarded := up.forwarded()
			switch mode {
			case "closed":
				if refused == 0 {
					t.Fatalf("the disk filled up and no request was refused (%d answered 200)", len(ok))
				}
				checkAllAudited(t, forwarded, journal)
			case "open":
				if refused > 0 {
					t.Errorf("fail-open: %d requests were refused while the journal was full", refused)
				}
			}
			m := scrape(t, admin)
			if !strings.Contains(m, "tollgate_audit_events_dropped_total ") || strings.Contains(m, "tollgate_audit_events_dropped_total 0\n") {
				t.Errorf("the loss is not counted in /metrics")
			}

			// Room again: the next records go in, after a gap record.
			resizeTmpfs(t, mnt, 64<<20)
			if ok, refused := load(ingress, 1, 5, nil); len(ok) != 5 || refused != 0 {
				t.Fatalf("with room again: %d ok, %d refused", len(ok), refused)
			}
			// The completion records (and the gap before them) are committed
			// within the group commit window after the answers.
			var lost uint64
			for deadline := time.Now().Add(10 * time.Second); lost == 0 && time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
				for _, ev := range journalRecords(t, journal) {
					if ev.Gap != nil {
						lost += ev.Gap.Dropped
					}
				}
			}
			if lost == 0 {
				t.Error("no gap record in the journal after the disk had room again")
			}
			rep, err := audit.Verify([]string{journal}, nil)
			if err != nil {
				t.Fatal(err)
			}
			if len(rep.Problems) > 0 {
				t.Errorf("the journal does not verify after the disk was full: %v", rep.Problems)
			}
			t.Logf("%s: %d answered 200, %d refused, %d forwarded; gap records account for %d lost", mode, len(ok), refused, len(forwarded), lost)
		})
	}
}

func scrape(t *testing.T, admin string) string {
	t.Helper()
	resp, err := http.Get("http://" + admin + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil && !errors.Is(err, io.EOF) {
		t.Fatal(err)
	}
	return string(b)
}

// TestAuditVerifyCommand runs `gateway audit verify` as an operator would:
// on a signed journal the gateway wrote, then after someone edited a line.
func TestAuditVerifyCommand(t *testing.T) {
	dir := t.TempDir()
	keyFile, pubFile, _ := testkit.WriteEd25519Key(t, dir, "audit")

	journal := filepath.Join(dir, "journal")
	ingress, admin := freeAddr(t), freeAddr(t)
	up := listenUpstream(t)
	file := auditConfig(t, ingress, admin, up, fmt.Sprintf(
		"audit:\n  journal: {dir: %s, signingKey: %s, checkpointEvery: 20}\n  sinks:\n  - file: %s\n",
		journal, keyFile, filepath.Join(dir, "siem.ndjson")))
	p := startGateway(t, io.Discard, io.Discard, "run", "-c", file)
	p.waitReady(t, admin)
	if ok, other := load(ingress, 2, 30, nil); len(ok) != 60 || other != 0 {
		t.Fatalf("%d answered 200, %d otherwise", len(ok), other)
	}
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := p.wait(t, 20*time.Second); err != nil {
		t.Fatalf("after SIGTERM: %v", err)
	}

	var out, errb bytes.Buffer
	if code := run([]string{"audit", "verify", "--key", pubFile, journal}, nil, &out, &errb); code != 0 ||
		!strings.Contains(out.String(), "chain intact") || !strings.Contains(out.String(), "signatures verified") {
		t.Fatalf("verify of an untouched journal: exit %d\n%s%s", code, out.String(), errb.String())
	}

	// Someone turns a 200 into a 403 in the journal.
	active := filepath.Join(journal, "audit.ndjson")
	b, err := os.ReadFile(active)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.SplitAfter(string(b), "\n")
	edited := 10
	lines[edited-1] = strings.Replace(lines[edited-1], `"status":200`, `"status":403`, 1)
	os.WriteFile(active, []byte(strings.Join(lines, "")), 0o600)
	out.Reset()
	errb.Reset()
	if code := run([]string{"audit", "verify", "--key", pubFile, journal}, nil, &out, &errb); code != 1 {
		t.Fatalf("verify of an edited journal: exit %d, want 1\n%s%s", code, out.String(), errb.String())
	}
	if want := fmt.Sprintf("%s:%d: seq", active, edited); !strings.Contains(out.String(), want) {
		t.Errorf("verify did not name %s:%d:\n%s", active, edited, out.String())
	}
}

// TestAuditToHECAndWebhook: the gateway ships its records, configured as
// docs/audit.md shows, to Splunk's HTTP Event Collector (with indexer
// acknowledgement, as OCSF) and to an NDJSON webhook, both over TLS
// verified with caFile.
func TestAuditToHECAndWebhook(t *testing.T) {
	dir := t.TempDir()
	hec := audittest.NewHEC("hec-secret")
	hecSrv := httptest.NewTLSServer(hec)
	defer hecSrv.Close()
	var mu sync.Mutex
	hooked := map[string]bool{}
	hookSrv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer hook-secret" {
			http.Error(w, "no", http.StatusUnauthorized)
			return
		}
		sc := bufio.NewScanner(r.Body)
		for sc.Scan() {
			var ev audit.Event
			if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
				http.Error(w, "bad", http.StatusBadRequest)
				return
			}
			mu.Lock()
			hooked[ev.RequestID] = true
			mu.Unlock()
		}
	}))
	defer hookSrv.Close()
	writeCA := func(name string, srv *httptest.Server) string {
		f := filepath.Join(dir, name)
		os.WriteFile(f, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}), 0o644)
		return f
	}
	os.WriteFile(filepath.Join(dir, "hec.token"), []byte("hec-secret\n"), 0o600)
	os.WriteFile(filepath.Join(dir, "hook.token"), []byte("hook-secret"), 0o600)
	ingress, admin := freeAddr(t), freeAddr(t)
	up := listenUpstream(t)
	file := auditConfig(t, ingress, admin, up, fmt.Sprintf(`audit:
  journal: {dir: %s}
  sinks:
  - hec: {url: %s, caFile: %s, tokenFile: %s, ack: true}
    format: ocsf
  - webhook: {url: %s/audit, caFile: %s, tokenFile: %s}
`, filepath.Join(dir, "journal"), hecSrv.URL, writeCA("hec-ca.crt", hecSrv), filepath.Join(dir, "hec.token"),
		hookSrv.URL, writeCA("hook-ca.crt", hookSrv), filepath.Join(dir, "hook.token")))
	startInProcess(t, file)
	ok, other := load(ingress, 2, 25, nil)
	if len(ok) != 50 || other != 0 {
		t.Fatalf("%d answered 200, %d otherwise", len(ok), other)
	}
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		indexed := hec.RequestIDs()
		missing := 0
		mu.Lock()
		for _, id := range ok {
			if indexed[id] == 0 || !hooked[id] {
				missing++
			}
		}
		mu.Unlock()
		if missing == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of 50 requests' records missing at HEC or the webhook", missing)
		}
	}
}

// TestAuditRecordsFailedHandshakes: a connection that never gets as far as
// a request still leaves a record: who connected, to which listener, and
// why the handshake failed.
func TestAuditRecordsFailedHandshakes(t *testing.T) {
	dir := t.TempDir()
	trail := filepath.Join(dir, "audit.ndjson")
	ingress, admin := freeAddr(t), freeAddr(t)
	up := listenUpstream(t)
	startInProcess(t, auditConfig(t, ingress, admin, up, fmt.Sprintf("audit:\n  sinks:\n  - file: %s\n", trail)))
	tests := []struct {
		name string
		do   func() error
		want string
	}{
		{"not TLS", func() error {
			c, err := net.Dial("tcp", ingress)
			if err != nil {
				return err
			}
			defer c.Close()
			c.Write([]byte("SSH-2.0-OpenSSH_9.2\r\n"))
			c.SetReadDeadline(time.Now().Add(2 * time.Second))
			c.Read(make([]byte, 64))
			return nil
		}, "not_tls"},
		{"TLS 1.1", func() error {
			c, err := tls.Dial("tcp", ingress, &tls.Config{InsecureSkipVerify: true, MaxVersion: tls.VersionTLS11, MinVersion: tls.VersionTLS11})
			if err == nil {
				c.Close()
				return errors.New("a TLS 1.1 handshake succeeded")
			}
			return nil
		}, "unsupported_parameters"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.do(); err != nil {
				t.Fatal(err)
			}
			for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
				for _, ev := range journalRecords(t, trail) {
					if ev.Error == audit.ErrTLSHandshake && ev.TLSError == tt.want && ev.Client.Address == "127.0.0.1" &&
						ev.Listener.Port != 0 && ev.Kind == audit.Ingress {
						return
					}
				}
				if time.Now().After(deadline) {
					t.Fatalf("no tls_handshake record with tlsError %q", tt.want)
				}
			}
		})
	}
}

// TestAuditReloadWithStalledStdout: the reader of stdout has stopped reading
// (a hung shipper), and under load the operator reloads the audit sink from
// stdout to a file. The reload goes through, no request fails, every request
// answered after it is in the file, and the gateway stops cleanly. The
// stdout sink used to hold the audit writer in its write forever, and the
// reload with it.
func TestAuditReloadWithStalledStdout(t *testing.T) {
	dir := t.TempDir()
	ingress, admin := freeAddr(t), freeAddr(t)
	up := listenUpstream(t)
	file := auditConfig(t, ingress, admin, up, "audit:\n  sinks:\n  - stdout: true\n")
	_, outW := fullPipe(t)
	var stderr testkit.Buffer
	p := startGateway(t, outW, &stderr, "run", "-c", file)
	outW.Close()
	p.waitReady(t, admin)

	stop := make(chan struct{})
	var other int
	done := make(chan struct{})
	go func() { // it ends by itself if the test fails: the gateway is killed
		_, other = load(ingress, 4, 100000, stop)
		close(done)
	}()
	// The sink notices the stall (5 s without the reader taking anything)
	// and says so, as the operator would see it.
	p.waitFor(t, &stderr, "audit sink stalled")

	sink := filepath.Join(dir, "siem.ndjson")
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	b = bytes.Replace(b, []byte("  - stdout: true\n"), []byte("  - file: "+sink+"\n"), 1)
	if err := os.WriteFile(file, b, 0o644); err != nil {
		t.Fatal(err)
	}
	p.reload(t, &stderr)
	select {
	case <-done:
		t.Fatal("the load ended before the reload did: the reload was not under load")
	default:
	}
	// Requests answered from now on are audited to the file.
	after, failed := load(ingress, 4, 50, nil)
	close(stop)
	<-done
	if failed+other > 0 {
		t.Errorf("%d requests failed across the stall and the reload", failed+other)
	}
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := p.wait(t, 20*time.Second); err != nil {
		t.Errorf("after SIGTERM: %v, want exit 0\n%s", err, stderr.String())
	}
	got := map[string]bool{}
	for _, ev := range journalRecords(t, sink) {
		got[ev.RequestID] = true
	}
	for _, id := range after {
		if !got[id] {
			t.Fatalf("request %s answered after the reload is not in the file sink (%d records there)", id, len(got))
		}
	}
	t.Logf("%d requests after the reload, all in the file; %d forwarded in all", len(after), len(up.forwarded()))
}
