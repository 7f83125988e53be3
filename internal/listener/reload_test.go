package listener

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net/http"
	"net/http/httptrace"
	"os"
	"strings"
	"testing"
	"time"
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
			ca := newTestCA(t)
			dir := t.TempDir()
			certA, certB, certC := ca.issue(t, "a.example.com"), ca.issue(t, "a.example.com"), ca.issue(t, "a.example.com")
			cf := writePair(t, dir, "srv", certA)
			events := make(reloadRecorder, 16)
			const interval = 20 * time.Millisecond
			store, err := NewCertStore([]CertFile{cf}, CertStoreOptions{PollInterval: interval, OnReload: events.onReload})
			if err != nil {
				t.Fatal(err)
			}
			defer store.Close()
			srv := startServer(t, Config{Certs: store})

			// A keep-alive connection opened before the rotation.
			old := newClient(t, ca.pool, srv.Addr(), "a.example.com", p)
			if resp, _ := get(t, old, "a.example.com", nil); !resp.TLS.PeerCertificates[0].Equal(certA.Leaf) {
				t.Fatal("initial certificate is not A")
			}

			// Rotate to B: new handshakes get B.
			writePair(t, dir, "srv", certB)
			if ev := events.nextOK(t); ev.file != cf.Cert {
				t.Fatalf("reload event %q, %v; want %q, nil", ev.file, ev.err, cf.Cert)
			}
			if got := servedLeaf(t, srv, ca.pool, p); !got.Equal(certB.Leaf) {
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
			writeFileAtomic(t, cf.Cert, []byte("-----BEGIN CERTIFICATE-----\ngarbage\n"))
			ev := events.next(t)
			if ev.err == nil || ev.file != cf.Cert || !strings.Contains(ev.err.Error(), cf.Cert) {
				t.Fatalf("reload event %q, %v; want an error naming %q", ev.file, ev.err, cf.Cert)
			}
			events.none(t, 5*interval)
			if got := servedLeaf(t, srv, ca.pool, p); !got.Equal(certB.Leaf) {
				t.Error("after a garbage certificate file, B is no longer served")
			}

			// Half-written pair: C's certificate with B's key is refused ...
			certPEM, keyPEM := pemPair(t, certC)
			writeFileAtomic(t, cf.Cert, certPEM)
			ev = events.next(t)
			if ev.err == nil || !strings.Contains(ev.err.Error(), "private key does not match public key") {
				t.Fatalf("reload event %v; want key mismatch", ev.err)
			}
			if got := servedLeaf(t, srv, ca.pool, p); !got.Equal(certB.Leaf) {
				t.Error("after a half-written pair, B is no longer served")
			}
			// ... and taken once the key follows.
			writeFileAtomic(t, cf.Key, keyPEM)
			if ev := events.next(t); ev.err != nil {
				t.Fatalf("reload after the key arrived: %v", ev.err)
			}
			if got := servedLeaf(t, srv, ca.pool, p); !got.Equal(certC.Leaf) {
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
	ca := newTestCA(t)
	dir := t.TempDir()
	certA, certB := ca.issue(t, "a.example.com"), ca.issue(t, "a.example.com")
	other := writePair(t, dir, "other", ca.issue(t, "other.example.com"))
	cf := writePair(t, dir, "srv", certA)
	events := make(reloadRecorder, 16)
	store, err := NewCertStore([]CertFile{cf, other}, CertStoreOptions{PollInterval: -1, OnReload: events.onReload})
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
			break_:  func() { writeFileAtomic(t, cf.Key, []byte("garbage")) },
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
			break_:  func() { writePair(t, dir, "srv", certB); writeFileAtomic(t, cf.Cert, nil) },
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
