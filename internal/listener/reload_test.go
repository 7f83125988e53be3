package listener

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net/http"
	"net/http/httptrace"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/google/go-cmp/cmp"

	"tollgate.dev/tollgate/internal/testkit"
)

type reloadEvent struct {
	file string
	err  error
}

// reloadRecorder collects OnReload calls.
type reloadRecorder chan reloadEvent

func (r reloadRecorder) onReload(file string, err error) {
	select {
	case r <- reloadEvent{file, err}:
	default: // a test that floods this fails on its own expectations
	}
}

// next waits for the next event.
func (r reloadRecorder) next(tb testing.TB) reloadEvent {
	tb.Helper()
	select {
	case ev := <-r:
		return ev
	case <-time.After(5 * time.Second):
		tb.Fatal("timed out waiting for a reload")
		return reloadEvent{}
	}
}

// nextOK waits for the next successful reload. A pair written file by file
// may be polled between the two writes; the key mismatch that this reports
// is expected and skipped.
func (r reloadRecorder) nextOK(tb testing.TB) reloadEvent {
	tb.Helper()
	for range 3 {
		ev := r.next(tb)
		if ev.err == nil {
			return ev
		}
		if !strings.Contains(ev.err.Error(), "private key does not match public key") {
			tb.Fatalf("reload of %s failed: %v", ev.file, ev.err)
		}
	}
	tb.Fatal("no successful reload")
	return reloadEvent{}
}

// none checks that no event arrives within d.
func (r reloadRecorder) none(tb testing.TB, d time.Duration) {
	tb.Helper()
	select {
	case ev := <-r:
		tb.Fatalf("unexpected reload of %s: %v", ev.file, ev.err)
	case <-time.After(d):
	}
}

// servedLeaf returns the leaf certificate a fresh client sees.
func servedLeaf(tb testing.TB, srv *Server, pool *x509.CertPool, p proto) *x509.Certificate {
	tb.Helper()
	c := newClient(tb, pool, srv.Addr(), "a.example.com", p)
	resp, _ := get(tb, c, "a.example.com", nil)
	c.CloseIdleConnections()
	return resp.TLS.PeerCertificates[0]
}

func TestReloadByPolling(t *testing.T) {
	for _, p := range bothProtos {
		t.Run(string(p), func(t *testing.T) {
			ca := testkit.NewCA(t)
			dir := t.TempDir()
			certA, certB, certC := ca.Issue(t, "a.example.com"), ca.Issue(t, "a.example.com"), ca.Issue(t, "a.example.com")
			cf := writePair(t, dir, "srv", certA)
			events := make(reloadRecorder, 16)
			const interval = 20 * time.Millisecond
			store, err := NewCertStore([]CertFile{cf}, CertStoreOptions{PollInterval: interval, Settle: interval, OnReload: events.onReload})
			if err != nil {
				t.Fatal(err)
			}
			defer store.Close()
			srv := startServer(t, Config{Certs: store})

			// A keep-alive connection opened before the rotation.
			old := newClient(t, ca.Pool(), srv.Addr(), "a.example.com", p)
			if resp, _ := get(t, old, "a.example.com", nil); !resp.TLS.PeerCertificates[0].Equal(certA.Leaf) {
				t.Fatal("initial certificate is not A")
			}

			// Rotate to B: new handshakes get B.
			writePair(t, dir, "srv", certB)
			if ev := events.nextOK(t); ev.file != cf.Cert {
				t.Fatalf("reload event %q, %v; want %q, nil", ev.file, ev.err, cf.Cert)
			}
			if got := servedLeaf(t, srv, ca.Pool(), p); !got.Equal(certB.Leaf) {
				t.Error("after rotation, new connections do not get certificate B")
			}

			// The old connection keeps working, on the same connection.
			var reused bool
			req, err := http.NewRequest(http.MethodGet, "https://a.example.com/", nil)
			if err != nil {
				t.Fatal(err)
			}
			req = req.WithContext(httptrace.WithClientTrace(req.Context(), &httptrace.ClientTrace{
				GotConn: func(info httptrace.GotConnInfo) { reused = info.Reused },
			}))
			resp, err := old.Do(req)
			if err != nil {
				t.Fatalf("request on the pre-rotation connection: %v", err)
			}
			resp.Body.Close()
			if !reused || resp.StatusCode != http.StatusOK || !resp.TLS.PeerCertificates[0].Equal(certA.Leaf) {
				t.Errorf("old connection: reused %v, status %d; want reused connection still on A with 200", reused, resp.StatusCode)
			}

			// Garbage: B keeps serving, the error is reported once.
			testkit.WriteFileAtomic(t, cf.Cert, []byte("-----BEGIN CERTIFICATE-----\ngarbage\n"))
			ev := events.next(t)
			if ev.err == nil || ev.file != cf.Cert || !strings.Contains(ev.err.Error(), cf.Cert) {
				t.Fatalf("reload event %q, %v; want an error naming %q", ev.file, ev.err, cf.Cert)
			}
			events.none(t, 5*interval)
			if got := servedLeaf(t, srv, ca.Pool(), p); !got.Equal(certB.Leaf) {
				t.Error("after a garbage certificate file, B is no longer served")
			}

			// Half-written pair: C's certificate with B's key is refused ...
			certPEM, keyPEM := testkit.EncodePEM(t, certC)
			testkit.WriteFileAtomic(t, cf.Cert, certPEM)
			ev = events.next(t)
			if ev.err == nil || !strings.Contains(ev.err.Error(), "private key does not match public key") {
				t.Fatalf("reload event %v; want key mismatch", ev.err)
			}
			if got := servedLeaf(t, srv, ca.Pool(), p); !got.Equal(certB.Leaf) {
				t.Error("after a half-written pair, B is no longer served")
			}
			// ... and taken once the key follows.
			testkit.WriteFileAtomic(t, cf.Key, keyPEM)
			if ev := events.next(t); ev.err != nil {
				t.Fatalf("reload after the key arrived: %v", ev.err)
			}
			if got := servedLeaf(t, srv, ca.Pool(), p); !got.Equal(certC.Leaf) {
				t.Error("after completing the pair, C is not served")
			}

			// Close stops polling; Close is idempotent.
			if err := store.Close(); err != nil {
				t.Fatal(err)
			}
			if err := store.Close(); err != nil {
				t.Fatal(err)
			}
			writePair(t, dir, "srv", certA)
			events.none(t, 5*interval)
		})
	}
}

func TestReloadExplicit(t *testing.T) {
	ca := testkit.NewCA(t)
	dir := t.TempDir()
	certA, certB := ca.Issue(t, "a.example.com"), ca.Issue(t, "a.example.com")
	other := writePair(t, dir, "other", ca.Issue(t, "other.example.com"))
	cf := writePair(t, dir, "srv", certA)
	events := make(reloadRecorder, 16)
	store, err := NewCertStore([]CertFile{cf, other}, CertStoreOptions{PollInterval: -1, Settle: 10 * time.Millisecond, OnReload: events.onReload})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	served := func() *x509.Certificate {
		c, err := store.GetCertificate(&tls.ClientHelloInfo{ServerName: "a.example.com"})
		if err != nil {
			t.Fatal(err)
		}
		return c.Leaf
	}

	writePair(t, dir, "srv", certB)
	if !served().Equal(certA.Leaf) {
		t.Fatal("certificate changed with polling off and no Reload")
	}
	if err := store.Reload(); err != nil {
		t.Fatalf("Reload: %v", err)
	}
	// Reload forces every pair: both report success.
	for range 2 {
		if ev := events.next(t); ev.err != nil {
			t.Fatalf("reload event %q: %v", ev.file, ev.err)
		}
	}
	if !served().Equal(certB.Leaf) {
		t.Fatal("Reload did not switch to B")
	}

	tests := []struct {
		name    string
		break_  func()
		wantIs  error
		wantSub []string
	}{
		{
			name:    "garbage key",
			break_:  func() { testkit.WriteFileAtomic(t, cf.Key, []byte("garbage")) },
			wantSub: []string{cf.Cert, cf.Key, "failed to find any PEM data in key input"},
		},
		{
			name:    "missing key",
			break_:  func() { os.Remove(cf.Key) },
			wantIs:  os.ErrNotExist,
			wantSub: []string{"read key file", cf.Key},
		},
		{
			name:    "empty certificate",
			break_:  func() { writePair(t, dir, "srv", certB); testkit.WriteFileAtomic(t, cf.Cert, nil) },
			wantSub: []string{cf.Cert, "failed to find any PEM data in certificate input"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.break_()
			err := store.Reload()
			if err == nil {
				t.Fatal("Reload succeeded; want error")
			}
			if tt.wantIs != nil && !errors.Is(err, tt.wantIs) {
				t.Errorf("error %q is not %v", err, tt.wantIs)
			}
			for _, sub := range tt.wantSub {
				if !strings.Contains(err.Error(), sub) {
					t.Errorf("error %q does not contain %q", err, sub)
				}
			}
			var gotErr error
			for range 2 {
				if ev := events.next(t); ev.file == cf.Cert {
					gotErr = ev.err
				} else if ev.err != nil {
					t.Errorf("unrelated pair %q reported %v", ev.file, ev.err)
				}
			}
			if gotErr == nil || gotErr.Error() != err.Error() {
				t.Errorf("OnReload error %v; want %v", gotErr, err)
			}
			if !served().Equal(certB.Leaf) {
				t.Error("B is no longer served")
			}
			if c, _ := store.GetCertificate(&tls.ClientHelloInfo{ServerName: "other.example.com"}); len(c.Leaf.DNSNames) != 1 || c.Leaf.DNSNames[0] != "other.example.com" {
				t.Error("the other pair is no longer served")
			}
		})
	}
}

// eventLog records OnReload calls in a synctest bubble, where a test reads
// it only after synctest.Wait.
type eventLog struct {
	mu     sync.Mutex
	events []reloadEvent
}

func (l *eventLog) onReload(file string, err error) {
	l.mu.Lock()
	l.events = append(l.events, reloadEvent{file, err})
	l.mu.Unlock()
}

// take returns the events so far as "file: ok" or "file: error text", and
// forgets them.
func (l *eventLog) take(dir string) []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []string
	for _, ev := range l.events {
		s := strings.TrimPrefix(ev.file, dir+"/") + ": ok"
		if ev.err != nil {
			s = strings.TrimPrefix(ev.file, dir+"/") + ": " + strings.ReplaceAll(ev.err.Error(), dir+"/", "")
		}
		out = append(out, s)
	}
	l.events = nil
	return out
}

// writePair writes c to name.crt and name.key in dir (see testkit.WriteCert)
// and names them as the store takes them.
func writePair(tb testing.TB, dir, name string, c tls.Certificate) CertFile {
	tb.Helper()
	cert, key := testkit.WriteCert(tb, dir, name, c)
	return CertFile{Cert: cert, Key: key}
}

func writeFile(tb testing.TB, path string, data []byte) {
	tb.Helper()
	if err := os.WriteFile(path, data, 0o600); err != nil {
		tb.Fatal(err)
	}
}

// TestPollingSettles drives the store's watchers in fake time: what is put in
// force, and what is reported, when files are written the ways rotation tools
// (and people) write them.
func TestPollingSettles(t *testing.T) {
	const interval, settle = time.Second, 100 * time.Millisecond
	tests := []struct {
		name string
		// change runs 500ms after the store starts; srv and other are the
		// pairs' files, next the certificate to rotate to.
		change   func(t *testing.T, srv, other CertFile, next tls.Certificate)
		want     []string // OnReload reports
		wantNext bool     // srv serves next afterwards; other keeps its certificate
	}{
		{
			name: "certificate truncated, then rewritten in place within the settle interval: never served torn",
			change: func(t *testing.T, srv, _ CertFile, next tls.Certificate) {
				certPEM, keyPEM := testkit.EncodePEM(t, next)
				testkit.WriteFileAtomic(t, srv.Key+".new", keyPEM)
				time.Sleep(490 * time.Millisecond) // to 990ms: the poll at 1s sees the cut file
				writeFile(t, srv.Cert, certPEM[:len(certPEM)/2])
				time.Sleep(50 * time.Millisecond)
				writeFile(t, srv.Cert, certPEM)
				if err := os.Rename(srv.Key+".new", srv.Key); err != nil {
					t.Fatal(err)
				}
			},
			want:     []string{"srv.crt: ok"},
			wantNext: true,
		},
		{
			name: "key and certificate renamed into place one after the other",
			change: func(t *testing.T, srv, _ CertFile, next tls.Certificate) {
				certPEM, keyPEM := testkit.EncodePEM(t, next)
				time.Sleep(490 * time.Millisecond)
				testkit.WriteFileAtomic(t, srv.Cert, certPEM)
				time.Sleep(20 * time.Millisecond)
				testkit.WriteFileAtomic(t, srv.Key, keyPEM)
			},
			want:     []string{"srv.crt: ok"},
			wantNext: true,
		},
		{
			name: "unchanged touch: nothing reported",
			change: func(t *testing.T, srv, _ CertFile, _ tls.Certificate) {
				now := time.Now()
				if err := os.Chtimes(srv.Cert, now, now); err != nil {
					t.Fatal(err)
				}
			},
		},
		{
			name: "key deleted: one error, the old certificate keeps serving",
			change: func(t *testing.T, srv, _ CertFile, _ tls.Certificate) {
				if err := os.Remove(srv.Key); err != nil {
					t.Fatal(err)
				}
			},
			want: []string{"srv.crt: listener: read key file: stat srv.key: no such file or directory"},
		},
		{
			name: "one pair broken does not hold up the other's rotation",
			change: func(t *testing.T, srv, other CertFile, next tls.Certificate) {
				testkit.WriteFileAtomic(t, other.Key, []byte("garbage"))
				certPEM, keyPEM := testkit.EncodePEM(t, next)
				testkit.WriteFileAtomic(t, srv.Key+".new", keyPEM)
				testkit.WriteFileAtomic(t, srv.Cert, certPEM)
				if err := os.Rename(srv.Key+".new", srv.Key); err != nil {
					t.Fatal(err)
				}
			},
			want: []string{
				"srv.crt: ok",
				`other.crt: listener: load certificate "other.crt" with key "other.key": tls: failed to find any PEM data in key input`,
			},
			wantNext: true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				ca := testkit.NewCA(t)
				dir := t.TempDir()
				first, next := ca.Issue(t, "a.example.com"), ca.Issue(t, "a.example.com")
				srv := writePair(t, dir, "srv", first)
				other := writePair(t, dir, "other", ca.Issue(t, "other.example.com"))
				var log eventLog
				store, err := NewCertStore([]CertFile{srv, other}, CertStoreOptions{PollInterval: interval, Settle: settle, OnReload: log.onReload})
				if err != nil {
					t.Fatal(err)
				}
				defer store.Close()
				time.Sleep(500 * time.Millisecond)
				tt.change(t, srv, other, next)
				time.Sleep(5 * interval)
				synctest.Wait()
				got := log.take(dir)
				slices.Sort(got)
				want := slices.Sorted(slices.Values(tt.want))
				if diff := cmp.Diff(want, got); diff != "" {
					t.Errorf("OnReload reports (-want +got):\n%s", diff)
				}
				c, _ := store.GetCertificate(&tls.ClientHelloInfo{ServerName: "a.example.com"})
				if wantLeaf := map[bool]*x509.Certificate{false: first.Leaf, true: next.Leaf}[tt.wantNext]; !c.Leaf.Equal(wantLeaf) {
					t.Errorf("a.example.com serves serial %s; want %s", c.Leaf.SerialNumber, wantLeaf.SerialNumber)
				}
				if c, _ := store.GetCertificate(&tls.ClientHelloInfo{ServerName: "other.example.com"}); !slices.Equal(c.Leaf.DNSNames, []string{"other.example.com"}) {
					t.Errorf("other.example.com serves %v", c.Leaf.DNSNames)
				}
			})
		})
	}
}

// TestPollingRecovery: a file that comes back after a read error is taken
// and the recovery reported, even with its old content.
func TestPollingRecovery(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ca := testkit.NewCA(t)
		dir := t.TempDir()
		srv := writePair(t, dir, "srv", ca.Issue(t, "a.example.com"))
		keyPEM, err := os.ReadFile(srv.Key)
		if err != nil {
			t.Fatal(err)
		}
		var log eventLog
		store, err := NewCertStore([]CertFile{srv}, CertStoreOptions{PollInterval: time.Second, Settle: 100 * time.Millisecond, OnReload: log.onReload})
		if err != nil {
			t.Fatal(err)
		}
		defer store.Close()
		if err := os.Remove(srv.Key); err != nil {
			t.Fatal(err)
		}
		time.Sleep(5 * time.Second)
		testkit.WriteFileAtomic(t, srv.Key, keyPEM)
		time.Sleep(5 * time.Second)
		synctest.Wait()
		want := []string{"srv.crt: listener: read key file: stat srv.key: no such file or directory", "srv.crt: ok"}
		if diff := cmp.Diff(want, log.take(dir)); diff != "" {
			t.Errorf("OnReload reports (-want +got):\n%s", diff)
		}
	})
}

// TestReloadSettles: a SIGHUP Reload during a rewrite waits for the files to
// hold still instead of parsing what it caught, and gives up (keeping the
// old certificate) on files that never do.
func TestReloadSettles(t *testing.T) {
	const settle = 100 * time.Millisecond
	tests := []struct {
		name     string
		writes   int // writes of the certificate, every 3/4 settle, the first torn
		wantErr  error
		wantNext bool
		wantTook time.Duration
	}{
		{name: "rewrite in progress", writes: 3, wantNext: true, wantTook: 3 * settle},
		{name: "files never hold still", writes: 40, wantErr: context.DeadlineExceeded, wantTook: reloadSettleRounds * settle},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				ca := testkit.NewCA(t)
				dir := t.TempDir()
				first, next := ca.Issue(t, "a.example.com"), ca.Issue(t, "a.example.com")
				srv := writePair(t, dir, "srv", first)
				store, err := NewCertStore([]CertFile{srv}, CertStoreOptions{PollInterval: -1, Settle: settle})
				if err != nil {
					t.Fatal(err)
				}
				defer store.Close()
				certPEM, keyPEM := testkit.EncodePEM(t, next)
				testkit.WriteFileAtomic(t, srv.Key, keyPEM)
				writeFile(t, srv.Cert, certPEM[:len(certPEM)/3]) // torn, when Reload starts
				writerDone := make(chan struct{})
				defer func() { <-writerDone }()
				go func() {
					defer close(writerDone)
					for i := 1; i < tt.writes; i++ {
						// Off the reads' instants (multiples of settle).
						time.Sleep(settle * 3 / 4)
						// The last write is the whole certificate; before it, ever
						// different partial ones.
						n := len(certPEM) * (i + 1) / tt.writes
						if i == tt.writes-1 {
							n = len(certPEM)
						}
						writeFile(t, srv.Cert, certPEM[:n])
					}
				}()
				start := time.Now()
				err = store.Reload()
				if took := time.Since(start); took != tt.wantTook {
					t.Errorf("Reload took %v; want %v", took, tt.wantTook)
				}
				if !errors.Is(err, tt.wantErr) {
					t.Errorf("Reload = %v; want %v", err, tt.wantErr)
				}
				c, _ := store.GetCertificate(&tls.ClientHelloInfo{ServerName: "a.example.com"})
				if wantLeaf := map[bool]*x509.Certificate{false: first.Leaf, true: next.Leaf}[tt.wantNext]; !c.Leaf.Equal(wantLeaf) {
					t.Errorf("serves serial %s; want %s", c.Leaf.SerialNumber, wantLeaf.SerialNumber)
				}
				synctest.Wait()
			})
		})
	}
}
