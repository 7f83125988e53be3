package audit

import (
	"bufio"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"tollgate.dev/tollgate/internal/request"
	"tollgate.dev/tollgate/internal/testkit"
)

// syslogReceiver is an RFC 5425 receiver: TLS, octet-counted frames. It
// can drop every connection (a receiver restarting).
type syslogReceiver struct {
	ln  net.Listener
	mu  sync.Mutex
	msg []string
	cs  []net.Conn
	wg  sync.WaitGroup
}

func startSyslogReceiver(t *testing.T, ca *testkit.CA) *syslogReceiver {
	t.Helper()
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{ca.Issue(t, "localhost")}})
	if err != nil {
		t.Fatal(err)
	}
	r := &syslogReceiver{ln: ln}
	r.wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			r.mu.Lock()
			r.cs = append(r.cs, c)
			r.mu.Unlock()
			r.wg.Go(func() { r.read(c) })
		}
	})
	t.Cleanup(func() {
		ln.Close()
		r.dropConns()
		r.wg.Wait()
	})
	return r
}

func (r *syslogReceiver) read(c net.Conn) {
	defer c.Close()
	br := bufio.NewReader(c)
	for {
		n, err := br.ReadString(' ')
		if err != nil {
			return
		}
		size, err := strconv.Atoi(strings.TrimSuffix(n, " "))
		if err != nil || size <= 0 || size > 1<<20 {
			return
		}
		b := make([]byte, size)
		if _, err := io.ReadFull(br, b); err != nil {
			return
		}
		r.mu.Lock()
		r.msg = append(r.msg, string(b))
		r.mu.Unlock()
	}
}

func (r *syslogReceiver) dropConns() {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, c := range r.cs {
		c.Close()
	}
	r.cs = nil
}

func (r *syslogReceiver) messages() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.msg...)
}

// rfc5424 is the header the sink writes: PRI, version, time, host, app,
// procid, msgid, no structured data, then the JSON record.
var rfc5424 = regexp.MustCompile(`^<(\d+)>1 (\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z) (\S+) tollgate (\d+) audit - (\{.*\})$`)

func TestSyslogSinkFormatsAndReconnects(t *testing.T) {
	ca := testkit.NewCA(t)
	rcv := startSyslogReceiver(t, ca)
	sink, err := NewSyslogSink(SyslogOptions{Address: rcv.ln.Addr().String(), Hostname: "gw 1",
		TLS: &tls.Config{RootCAs: ca.Pool(), ServerName: "localhost", MinVersion: tls.VersionTLS12}})
	if err != nil {
		t.Fatal(err)
	}
	l := newJournalLogger(t, openTestJournal(t, t.TempDir(), JournalOptions{}), Config{Sinks: []Sink{sink}, SinkNames: []string{"syslog"}})
	l.Record(&Event{RequestID: "allowed", Kind: Ingress, Time: time.Date(2026, 12, 7, 10, 0, 0, 123e6, time.UTC)})
	l.Record(&Event{RequestID: "denied", Kind: Ingress, Decision: deny()})
	waitMessages(t, rcv, 2)
	// The receiver restarts: the sink reconnects, and the record it was
	// writing when the connection broke is written again (at least once).
	rcv.dropConns()
	for i := range 5 {
		l.Record(&Event{RequestID: fmt.Sprint("after-", i), Kind: Egress})
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	// The replay makes it at least seven messages, so wait for the
	// records, not for a count: the last may still be on its way.
	msgs := waitRecords(t, rcv, "allowed", "denied", "after-0", "after-4")
	seen := map[string]bool{}
	for i, m := range msgs {
		g := rfc5424.FindStringSubmatch(m)
		if g == nil {
			t.Fatalf("message %d is not RFC 5424 as the sink writes it: %q", i, m)
		}
		var ev Event
		if err := ev.UnmarshalJSON([]byte(g[5])); err != nil {
			t.Fatalf("message %d: the MSG is not the record: %v", i, err)
		}
		seen[ev.RequestID] = true
		wantPRI := "110" // facility 13 (log audit) * 8 + informational
		if ev.RequestID == "denied" {
			wantPRI = "108" // warning
		}
		if g[1] != wantPRI || g[3] != "gw_1" {
			t.Errorf("message %d: PRI %s host %s, want %s gw_1", i, g[1], g[3], wantPRI)
		}
		if ev.RequestID == "allowed" && g[2] != "2026-12-07T10:00:00.123Z" {
			t.Errorf("TIMESTAMP %s, want the record's time", g[2])
		}
	}
	for _, id := range []string{"allowed", "denied", "after-0", "after-4"} {
		if !seen[id] {
			t.Errorf("record %s never reached the receiver", id)
		}
	}
}

func deny() *request.Decision {
	return &request.Decision{Allow: false, Reason: "no ALLOW policy matched"}
}

func waitMessages(t *testing.T, r *syslogReceiver, n int) []string {
	t.Helper()
	return waitUntil(t, r, func(m []string) bool { return len(m) >= n }, fmt.Sprint(n, " messages"))
}

// waitRecords waits until the receiver has a message for each request id.
func waitRecords(t *testing.T, r *syslogReceiver, ids ...string) []string {
	t.Helper()
	return waitUntil(t, r, func(msgs []string) bool {
		for _, id := range ids {
			if !slices.ContainsFunc(msgs, func(m string) bool { return strings.Contains(m, `"requestId":"`+id+`"`) }) {
				return false
			}
		}
		return true
	}, fmt.Sprint("records ", ids))
}

func waitUntil(t *testing.T, r *syslogReceiver, done func([]string) bool, want string) []string {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		if m := r.messages(); done(m) {
			return m
		}
		if time.Now().After(deadline) {
			for _, m := range r.messages() {
				t.Log(m[strings.Index(m, "requestId"):][:30])
			}
			t.Fatalf("receiver has %d messages, want %s", len(r.messages()), want)
		}
	}
}

func TestNewSyslogSinkErrors(t *testing.T) {
	for _, tt := range []struct {
		name string
		opts SyslogOptions
		want string
	}{
		{"no TLS", SyslogOptions{Address: "127.0.0.1:6514"}, "needs TLS"},
		{"bad address", SyslogOptions{Address: "127.0.0.1", TLS: &tls.Config{}}, "syslog address"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := NewSyslogSink(tt.opts)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %v, want %q", err, tt.want)
			}
		})
	}
}

// A receiver that is gone makes Write fail at once (no hang), so the
// Logger backs off and retries.
func TestSyslogSinkReceiverDown(t *testing.T) {
	addr := testkit.FreeAddrs(t, 1)[0]
	sink, err := NewSyslogSink(SyslogOptions{Address: addr, TLS: &tls.Config{}})
	if err != nil {
		t.Fatal(err)
	}
	defer sink.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := sink.Write(ctx, []byte("{}\n")); err == nil || !strings.Contains(err.Error(), "syslog connect") {
		t.Errorf("Write to nothing: %v", err)
	}
}

// A receiver that stops may not have stored what it last read (rsyslog
// loses its in-memory queue): what was written in the replay window before
// the connection was found gone is sent again, first, on the next one.
func TestSyslogSinkReplaysAfterReceiverLoss(t *testing.T) {
	ca := testkit.NewCA(t)
	rcv := startSyslogReceiver(t, ca)
	sink, err := NewSyslogSink(SyslogOptions{Address: rcv.ln.Addr().String(), Hostname: "gw",
		TLS: &tls.Config{RootCAs: ca.Pool(), ServerName: "localhost", MinVersion: tls.VersionTLS12}})
	if err != nil {
		t.Fatal(err)
	}
	defer sink.Close()
	ctx := t.Context()
	for _, id := range []string{"a", "b", "c"} {
		if err := sink.Write(ctx, []byte(`{"requestId":"`+id+`"}`)); err != nil {
			t.Fatal(err)
		}
	}
	waitMessages(t, rcv, 3)
	// The receiver restarts and lost what it had read.
	rcv.dropConns()
	rcv.mu.Lock()
	rcv.msg = nil
	rcv.mu.Unlock()
	// Until the sink sees the connection gone (its reader or the kernel),
	// a write may still go to it: write until one is on a new connection.
	deadline := time.Now().Add(5 * time.Second)
	for {
		if err := sink.Write(ctx, []byte(`{"requestId":"d"}`)); err == nil {
			if len(rcv.messages()) > 0 || time.Now().After(deadline) {
				break
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	msgs := waitMessages(t, rcv, 4)
	got := strings.Join(msgs, "\n")
	for _, id := range []string{`"a"`, `"b"`, `"c"`, `"d"`} {
		if !strings.Contains(got, id) {
			t.Errorf("record %s did not reach the restarted receiver:\n%s", id, got)
		}
	}
	if i, j := strings.Index(got, `"a"`), strings.Index(got, `"d"`); i > j {
		t.Errorf("the replayed records did not come first:\n%s", got)
	}
}
