package listener

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"runtime"
	"strings"
	"testing"
	"time"

	"tollgate.dev/tollgate/internal/testkit"
)

// slowHandler answers after delay, or gives up when the request context ends.
func slowHandler(started chan<- struct{}, delay time.Duration) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		started <- struct{}{}
		select {
		case <-time.After(delay):
			io.WriteString(w, "done")
		case <-r.Context().Done():
		}
	})
}

type result struct {
	status int
	body   string
	err    error
	at     time.Time
}

func doAsync(c *http.Client, url string) <-chan result {
	ch := make(chan result, 1)
	go func() {
		resp, err := c.Get(url)
		if err != nil {
			ch <- result{err: err, at: time.Now()}
			return
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		ch <- result{status: resp.StatusCode, body: string(b), err: err, at: time.Now()}
	}()
	return ch
}

func TestShutdownGraceful(t *testing.T) {
	for _, p := range bothProtos {
		t.Run(string(p), func(t *testing.T) {
			store, ca := newTestStore(t)
			started := make(chan struct{}, 1)
			srv := startServer(t, Config{Certs: store, Handler: slowHandler(started, 600*time.Millisecond)})
			c := newClient(t, ca.Pool(), srv.Addr(), "a.example.com", p)

			inflight := doAsync(c, "https://a.example.com/")
			<-started
			shutdown := make(chan error, 1)
			var shutdownAt time.Time
			go func() {
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				defer cancel()
				err := srv.Shutdown(ctx)
				shutdownAt = time.Now()
				shutdown <- err
			}()

			// New connections are refused once Shutdown has begun.
			addr := srv.Addr().String()
			waitFor(t, "new connections refused", func() bool {
				conn, err := net.DialTimeout("tcp", addr, time.Second)
				if err != nil {
					return true
				}
				conn.Close()
				return false
			})

			res := <-inflight
			if res.err != nil || res.status != http.StatusOK || res.body != "done" {
				t.Fatalf("in-flight request: %d %q %v; want 200 \"done\"", res.status, res.body, res.err)
			}
			if err := <-shutdown; err != nil {
				t.Fatalf("Shutdown = %v; want nil", err)
			}
			// The client may record its answer late on a loaded machine; a Shutdown that
			// did not wait would return about 600ms before it.
			if shutdownAt.Before(res.at.Add(-300 * time.Millisecond)) {
				t.Errorf("Shutdown returned %v before the in-flight request finished", res.at.Sub(shutdownAt))
			}
			select {
			case <-srv.Done():
			default:
				t.Error("Done not closed after Shutdown")
			}
			// Idempotent.
			if err := srv.Shutdown(context.Background()); err != nil {
				t.Errorf("second Shutdown = %v; want nil", err)
			}
			if err := srv.Close(); err != nil {
				t.Errorf("Close after Shutdown = %v; want nil", err)
			}
		})
	}
}

func TestShutdownDeadlineCutsRequest(t *testing.T) {
	for _, p := range bothProtos {
		t.Run(string(p), func(t *testing.T) {
			store, ca := newTestStore(t)
			started := make(chan struct{}, 1)
			srv := startServer(t, Config{Certs: store, Handler: slowHandler(started, time.Minute)})
			c := newClient(t, ca.Pool(), srv.Addr(), "a.example.com", p)

			inflight := doAsync(c, "https://a.example.com/")
			<-started
			start := time.Now()
			ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
			defer cancel()
			err := srv.Shutdown(ctx)
			if !errors.Is(err, context.DeadlineExceeded) {
				t.Errorf("Shutdown = %v; want %v", err, context.DeadlineExceeded)
			}
			res := <-inflight
			if res.err == nil {
				t.Errorf("request past the deadline completed: %d %q", res.status, res.body)
			}
			if elapsed := time.Since(start); elapsed > 2*time.Second {
				t.Errorf("cut after %v; want about 200ms", elapsed)
			}
			if err2 := srv.Shutdown(context.Background()); !errors.Is(err2, context.DeadlineExceeded) {
				t.Errorf("second Shutdown = %v; want the first result", err2)
			}
		})
	}
}

// TestNoGoroutineLeak: after Close, no goroutine of the server or the store
// is left, even with clients still holding connections mid-handshake.
func TestNoGoroutineLeak(t *testing.T) {
	before := runtime.NumGoroutine()

	ca := testkit.NewCA(t)
	cf := writePair(t, t.TempDir(), "srv", ca.Issue(t, "a.example.com"))
	store, err := NewCertStore([]CertFile{cf}, CertStoreOptions{PollInterval: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	srv, err := New(Config{Certs: store, Handler: echoHandler})
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(mustListen(t)); err != nil {
		t.Fatal(err)
	}
	var clients []*http.Client
	for _, p := range bothProtos {
		c := newClient(t, ca.Pool(), srv.Addr(), "a.example.com", p)
		get(t, c, "a.example.com", nil) // leaves an idle keep-alive connection
		clients = append(clients, c)
	}
	// A client stuck before its ClientHello, and one half-way through it.
	silent, err := net.Dial("tcp", srv.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	partial, err := net.Dial("tcp", srv.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer partial.Close()
	if _, err := partial.Write(clientHello(t)[:20]); err != nil {
		t.Fatal(err)
	}

	if err := srv.Close(); err != nil {
		t.Fatal(err)
	}
	if err := store.Close(); err != nil {
		t.Fatal(err)
	}
	// The test's own clients: close their idle connections (the server
	// has closed its side already).
	for _, c := range clients {
		c.CloseIdleConnections()
	}

	deadline := time.Now().Add(5 * time.Second)
	for {
		n := runtime.NumGoroutine()
		if n <= before {
			return
		}
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			buf = buf[:runtime.Stack(buf, true)]
			t.Fatalf("%d goroutines after Close; %d before:\n%s", n, before, leakedStacks(string(buf)))
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// leakedStacks keeps the stacks that mention net/http, crypto/tls or this
// package, to make a failure readable.
func leakedStacks(all string) string {
	var keep []string
	for g := range strings.SplitSeq(all, "\n\n") {
		if strings.Contains(g, "listener.") || strings.Contains(g, "net/http.") || strings.Contains(g, "crypto/tls.") {
			keep = append(keep, g)
		}
	}
	return strings.Join(keep, "\n\n")
}

func mustListen(tb testing.TB) net.Listener {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	return ln
}
