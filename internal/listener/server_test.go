package listener

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"tollgate.dev/tollgate/internal/testkit"
)

type proto string

const (
	h1 proto = "HTTP/1.1"
	h2 proto = "HTTP/2"
)

var bothProtos = []proto{h1, h2}

// echoHandler answers "<ProtoMajor> <header field count>".
var echoHandler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
	n := 0
	for _, vs := range r.Header {
		n += len(vs)
	}
	fmt.Fprintf(w, "%d %d", r.ProtoMajor, n)
})

// startServer starts a Server on 127.0.0.1:0 and closes it at cleanup.
func startServer(tb testing.TB, cfg Config) *Server {
	tb.Helper()
	if cfg.Handler == nil {
		cfg.Handler = echoHandler
	}
	s, err := New(cfg)
	if err != nil {
		tb.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	if err := s.Start(ln); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { s.Close() })
	return s
}

// newClient returns a client that speaks p, verifies against pool, sends
// serverName as SNI (none if it is an IP or empty) and always dials addr.
func newClient(tb testing.TB, pool *x509.CertPool, addr net.Addr, serverName string, p proto) *http.Client {
	tb.Helper()
	var ps http.Protocols
	ps.SetHTTP1(p == h1)
	ps.SetHTTP2(p == h2)
	tr := &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: pool, ServerName: serverName},
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "tcp", addr.String())
		},
		Protocols: &ps,
	}
	tb.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 5 * time.Second}
}

// get does GET https://host/ and returns the response with its body read.
func get(tb testing.TB, c *http.Client, host string, hdr http.Header) (*http.Response, string) {
	tb.Helper()
	req, err := http.NewRequest(http.MethodGet, "https://"+host+"/", nil)
	if err != nil {
		tb.Fatal(err)
	}
	for k, vs := range hdr {
		req.Header[k] = vs
	}
	resp, err := c.Do(req)
	if err != nil {
		tb.Fatalf("GET %s: %v", host, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		tb.Fatalf("GET %s: read body: %v", host, err)
	}
	return resp, string(body)
}

func TestSNIAndProtocols(t *testing.T) {
	ca := testkit.NewCA(t)
	certs := map[string]tls.Certificate{
		"default":  ca.Issue(t, "default.example.com", "127.0.0.1"),
		"api":      ca.Issue(t, "api.example.com"),
		"wildcard": ca.Issue(t, "*.apps.example.com"),
	}
	store, err := NewStaticCertStore(certs["default"], certs["api"], certs["wildcard"])
	if err != nil {
		t.Fatal(err)
	}
	srv := startServer(t, Config{Certs: store})

	tests := []struct {
		name     string
		host     string // also the SNI, unless an IP
		wantCert string
	}{
		{name: "exact", host: "api.example.com", wantCert: "api"},
		{name: "wildcard", host: "shop.apps.example.com", wantCert: "wildcard"},
		{name: "default by name", host: "default.example.com", wantCert: "default"},
		{name: "no SNI", host: "127.0.0.1", wantCert: "default"},
	}
	for _, p := range bothProtos {
		for _, tt := range tests {
			t.Run(string(p)+"/"+tt.name, func(t *testing.T) {
				c := newClient(t, ca.Pool(), srv.Addr(), tt.host, p)
				resp, body := get(t, c, tt.host, nil)
				got := resp.TLS.PeerCertificates[0]
				if want := certs[tt.wantCert].Leaf; !got.Equal(want) {
					t.Errorf("server certificate for %q has SANs %q; want %s %q", tt.host, got.DNSNames, tt.wantCert, want.DNSNames)
				}
				wantMajor := map[proto]int{h1: 1, h2: 2}[p]
				if resp.ProtoMajor != wantMajor || !strings.HasPrefix(body, fmt.Sprint(wantMajor)+" ") {
					t.Errorf("response proto %d, handler saw %q; want %d", resp.ProtoMajor, body, wantMajor)
				}
				// Go's HTTP/1.1-only client offers no ALPN at all.
				if wantALPN := map[proto]string{h1: "", h2: "h2"}[p]; resp.TLS.NegotiatedProtocol != wantALPN {
					t.Errorf("ALPN %q; want %q", resp.TLS.NegotiatedProtocol, wantALPN)
				}
			})
		}
	}
}

func TestTLSVersionsAndSuites(t *testing.T) {
	ca := testkit.NewCA(t)
	store, err := NewStaticCertStore(ca.Issue(t, "a.example.com"))
	if err != nil {
		t.Fatal(err)
	}
	var failures atomic.Int64
	srv := startServer(t, Config{Certs: store, OnTLSHandshakeError: func(HandshakeFailure) { failures.Add(1) }})

	tests := []struct {
		name        string
		min, max    uint16
		suites      []uint16
		wantVersion uint16
		wantErr     string // substring of the client's error
	}{
		{name: "TLS 1.0 refused", min: tls.VersionTLS10, max: tls.VersionTLS10, wantErr: "protocol version"},
		{name: "TLS 1.1 refused", min: tls.VersionTLS10, max: tls.VersionTLS11, wantErr: "protocol version"},
		{name: "TLS 1.2 accepted", min: tls.VersionTLS12, max: tls.VersionTLS12, wantVersion: tls.VersionTLS12},
		{name: "TLS 1.3 accepted", min: tls.VersionTLS13, max: tls.VersionTLS13, wantVersion: tls.VersionTLS13},
		{name: "1.3 preferred", min: tls.VersionTLS12, max: tls.VersionTLS13, wantVersion: tls.VersionTLS13},
		{
			name: "TLS 1.2 CBC only refused", min: tls.VersionTLS12, max: tls.VersionTLS12,
			suites:  []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA, tls.TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA},
			wantErr: "handshake failure",
		},
		{
			name: "TLS 1.2 ChaCha20 accepted", min: tls.VersionTLS12, max: tls.VersionTLS12,
			suites:      []uint16{tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256},
			wantVersion: tls.VersionTLS12,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := failures.Load()
			d := &tls.Dialer{Config: &tls.Config{
				RootCAs: ca.Pool(), ServerName: "a.example.com",
				MinVersion: tt.min, MaxVersion: tt.max, CipherSuites: tt.suites,
			}}
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			conn, err := d.DialContext(ctx, "tcp", srv.Addr().String())
			if tt.wantErr != "" {
				if err == nil {
					conn.Close()
					t.Fatalf("handshake succeeded; want error containing %q", tt.wantErr)
				}
				if !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("handshake error %q; want containing %q", err, tt.wantErr)
				}
				waitFor(t, "handshake failure counted", func() bool { return failures.Load() == before+1 })
				return
			}
			if err != nil {
				t.Fatalf("handshake: %v", err)
			}
			defer conn.Close()
			st := conn.(*tls.Conn).ConnectionState()
			if st.Version != tt.wantVersion {
				t.Errorf("version %s; want %s", tls.VersionName(st.Version), tls.VersionName(tt.wantVersion))
			}
			if st.Version == tls.VersionTLS12 && !isAllowedSuite(st.CipherSuite) {
				t.Errorf("cipher suite %s is not in the allowed list", tls.CipherSuiteName(st.CipherSuite))
			}
			if got := failures.Load(); got != before {
				t.Errorf("handshake failures %d after a good handshake; want %d", got, before)
			}
		})
	}
}

func isAllowedSuite(id uint16) bool {
	for _, s := range tls12CipherSuites {
		if s == id {
			return true
		}
	}
	return false
}

// waitFor polls cond for up to 5s.
func waitFor(tb testing.TB, what string, cond func() bool) {
	tb.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			tb.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestNewErrors(t *testing.T) {
	ca := testkit.NewCA(t)
	store, err := NewStaticCertStore(ca.Issue(t, "a.example.com"))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		cfg     Config
		wantIs  error
		wantSub string
	}{
		{name: "no handler", cfg: Config{Certs: store}, wantSub: "Handler is required"},
		{name: "no certs", cfg: Config{Handler: echoHandler}, wantSub: "Certs is required"},
		{name: "negative timeout", cfg: Config{Handler: echoHandler, Certs: store, IdleTimeout: -time.Second}, wantSub: "IdleTimeout must not be negative (got -1s)"},
		{name: "negative count", cfg: Config{Handler: echoHandler, Certs: store, MaxHeaderCount: -1}, wantSub: "MaxHeaderCount must not be negative (got -1)"},
		{name: "negative connection limit", cfg: Config{Handler: echoHandler, Certs: store, MaxConnections: -2}, wantSub: "MaxConnections must not be negative (got -2)"},
		{
			name: "hook lowers version", wantIs: errWeakTLSConfig, wantSub: "minimum version TLS 1.0",
			cfg: Config{Handler: echoHandler, Certs: store, ClientAuth: func(c *tls.Config) { c.MinVersion = tls.VersionTLS10 }},
		},
		{
			name: "hook adds CBC", wantIs: errWeakTLSConfig, wantSub: "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA is not ECDHE with AEAD",
			cfg: Config{Handler: echoHandler, Certs: store, ClientAuth: func(c *tls.Config) {
				c.CipherSuites = append(c.CipherSuites, tls.TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA)
			}},
		},
		{
			name: "hook resets suites", wantIs: errWeakTLSConfig, wantSub: "reset to Go's defaults",
			cfg: Config{Handler: echoHandler, Certs: store, ClientAuth: func(c *tls.Config) { c.CipherSuites = nil }},
		},
		{
			name: "hook drops ALPN", wantIs: errWeakTLSConfig, wantSub: "offer neither h2 nor http/1.1",
			cfg: Config{Handler: echoHandler, Certs: store, ClientAuth: func(c *tls.Config) { c.NextProtos = nil }},
		},
		{
			name: "hook drops certificate", wantIs: errWeakTLSConfig, wantSub: "no server certificate",
			cfg: Config{Handler: echoHandler, Certs: store, ClientAuth: func(c *tls.Config) { c.GetCertificate = nil }},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := New(tt.cfg)
			if err == nil {
				t.Fatal("New succeeded; want error")
			}
			if tt.wantIs != nil && !errors.Is(err, tt.wantIs) {
				t.Errorf("error %q is not %v", err, tt.wantIs)
			}
			if !strings.Contains(err.Error(), tt.wantSub) {
				t.Errorf("error %q; want containing %q", err, tt.wantSub)
			}
		})
	}
}

// TestClientAuthHook shows the hook turning on mTLS, and a per-client config
// that would lower the floor failing the handshake instead of serving.
func TestClientAuthHook(t *testing.T) {
	ca := testkit.NewCA(t)
	store, err := NewStaticCertStore(ca.Issue(t, "a.example.com"))
	if err != nil {
		t.Fatal(err)
	}
	clientCert := ca.Issue(t, "client.example.com")
	var failures atomic.Int64
	srv := startServer(t, Config{
		Certs:               store,
		OnTLSHandshakeError: func(HandshakeFailure) { failures.Add(1) },
		ClientAuth: func(c *tls.Config) {
			c.ClientAuth = tls.RequireAndVerifyClientCert
			c.ClientCAs = ca.Pool()
			base := c.Clone()
			c.GetConfigForClient = func(hello *tls.ClientHelloInfo) (*tls.Config, error) {
				if hello.ServerName == "weak.example.com" {
					weak := base.Clone()
					weak.MinVersion = tls.VersionTLS10
					return weak, nil
				}
				return nil, nil
			}
		},
	})
	tests := []struct {
		name       string
		serverName string
		certs      []tls.Certificate
		wantErr    string
	}{
		{name: "with client cert", serverName: "a.example.com", certs: []tls.Certificate{clientCert}},
		{name: "without client cert", serverName: "a.example.com", wantErr: "certificate required"},
		{name: "weak per-client config", serverName: "weak.example.com", certs: []tls.Certificate{clientCert}, wantErr: "internal error"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := failures.Load()
			conn, err := tls.Dial("tcp", srv.Addr().String(), &tls.Config{
				RootCAs: ca.Pool(), ServerName: tt.serverName, Certificates: tt.certs,
				InsecureSkipVerify: tt.serverName == "weak.example.com", // name not on the cert; the handshake must fail anyway
			})
			if err == nil {
				// In TLS 1.3 the client's handshake ends before the server
				// has checked the client certificate; a refusal shows on
				// the first read, so make a request.
				err = roundTrip(conn)
			}
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("connection failed: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("error %v; want containing %q", err, tt.wantErr)
			}
			waitFor(t, "handshake failure counted", func() bool { return failures.Load() == before+1 })
		})
	}
}

// roundTrip sends one HTTP/1.1 GET on conn, closes it, and reports any
// failure, including a status other than 200.
func roundTrip(conn net.Conn) error {
	defer conn.Close()
	if err := conn.SetDeadline(time.Now().Add(5 * time.Second)); err != nil {
		return err
	}
	if _, err := io.WriteString(conn, "GET / HTTP/1.1\r\nHost: a.example.com\r\nConnection: close\r\n\r\n"); err != nil {
		return err
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("status %s", resp.Status)
	}
	return nil
}

func TestShutdownBeforeStart(t *testing.T) {
	store, _ := newTestStore(t)
	srv, err := New(Config{Certs: store, Handler: echoHandler})
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Shutdown(context.Background()); err != nil {
		t.Fatalf("Shutdown before Start = %v; want nil", err)
	}
	select {
	case <-srv.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("Done not closed after Shutdown of a server never started")
	}
	ln := mustListen(t)
	defer ln.Close() // a refused listener stays the caller's
	if err := srv.Start(ln); !errors.Is(err, http.ErrServerClosed) {
		t.Errorf("Start after Shutdown = %v; want %v", err, http.ErrServerClosed)
	}
	if srv.Addr() != nil {
		t.Errorf("Addr = %v; want nil", srv.Addr())
	}
}

func TestStartTwice(t *testing.T) {
	ca := testkit.NewCA(t)
	store, err := NewStaticCertStore(ca.Issue(t, "a.example.com"))
	if err != nil {
		t.Fatal(err)
	}
	srv := startServer(t, Config{Certs: store})
	if err := srv.Start(nil); !errors.Is(err, ErrServerStarted) {
		t.Errorf("second Start = %v; want %v", err, ErrServerStarted)
	}
	if err := srv.Close(); err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(nil); !errors.Is(err, http.ErrServerClosed) {
		t.Errorf("Start after Close = %v; want %v", err, http.ErrServerClosed)
	}
	select {
	case <-srv.Done():
	default:
		t.Error("Done not closed after Close")
	}
	if err := srv.Err(); err != nil {
		t.Errorf("Err after Close = %v; want nil", err)
	}
}

// TestOptionsAsteriskReachesHandler: "OPTIONS *" is the gateway's to
// answer (and audit), not net/http's general options handler's.
func TestOptionsAsteriskReachesHandler(t *testing.T) {
	store, ca := newTestStore(t)
	var seen atomic.Value
	srv := startServer(t, Config{Certs: store, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		seen.Store(r.Method + " " + r.RequestURI)
		w.Header().Set("X-Answered-By", "handler")
		w.WriteHeader(http.StatusNoContent)
	})})
	for _, p := range bothProtos {
		t.Run(string(p), func(t *testing.T) {
			seen.Store("")
			c := newClient(t, ca.Pool(), srv.Addr(), "a.example.com", p)
			req := &http.Request{
				Method: http.MethodOptions,
				URL:    &url.URL{Scheme: "https", Host: "a.example.com", Opaque: "*"},
				Host:   "a.example.com",
				Header: http.Header{},
			}
			resp, err := c.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusNoContent || resp.Header.Get("X-Answered-By") != "handler" {
				t.Errorf("status %d, X-Answered-By %q; want 204 from the handler", resp.StatusCode, resp.Header.Get("X-Answered-By"))
			}
			if got := seen.Load(); got != "OPTIONS *" {
				t.Errorf("handler saw %q; want %q", got, "OPTIONS *")
			}
		})
	}
}
