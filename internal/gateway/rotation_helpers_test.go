package gateway_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"log"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/svid/x509svid"

	"tollgate.dev/tollgate/internal/config"
	"tollgate.dev/tollgate/internal/gateway"
	"tollgate.dev/tollgate/internal/identity"
	"tollgate.dev/tollgate/internal/identity/identitytest"
)

// serialOf is the hex serial of an SVID's leaf, as the upstream logs it.
func serialOf(svid *x509svid.SVID) string { return svid.Certificates[0].SerialNumber.Text(16) }

// seen is one thing the recording upstream saw: a handshake (when its
// ClientHello arrived) or a request (when its handler ran), with the serial
// of the gateway's certificate on that connection.
type seen struct {
	at     time.Time
	serial string
	path   string // requests only
}

// recordingUpstream is an mTLS upstream (ServerTLSConfig, accepting only the
// gateway's ID) that records the client certificate serial of every
// handshake and every request.
type recordingUpstream struct {
	addr string

	mu         sync.Mutex
	handshakes []seen
	requests   []seen
}

// startRecordingUpstream serves with src over HTTP/1.1 only (h2 false) or
// HTTP/2, on 127.0.0.1. /stream answers with a line every 20 ms until the
// request ends; its end is recorded as a request with path "/stream-end".
func startRecordingUpstream(t *testing.T, src identity.Source, h2 bool) *recordingUpstream {
	t.Helper()
	u := &recordingUpstream{}
	base := identity.ServerTLSConfig(src, identitytest.Matcher(t, gatewayID))
	tlsCfg := base.Clone()
	tlsCfg.GetConfigForClient = func(*tls.ClientHelloInfo) (*tls.Config, error) {
		start := time.Now()
		c := base.Clone()
		c.VerifyConnection = func(cs tls.ConnectionState) error {
			if err := base.VerifyConnection(cs); err != nil {
				return err
			}
			u.mu.Lock()
			u.handshakes = append(u.handshakes, seen{at: start, serial: cs.PeerCertificates[0].SerialNumber.Text(16)})
			u.mu.Unlock()
			return nil
		}
		return c, nil
	}
	record := func(r *http.Request, path string) {
		u.mu.Lock()
		u.requests = append(u.requests, seen{at: time.Now(), serial: r.TLS.PeerCertificates[0].SerialNumber.Text(16), path: path})
		u.mu.Unlock()
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/stream", func(w http.ResponseWriter, r *http.Request) {
		record(r, r.URL.Path)
		defer record(r, "/stream-end")
		rc := http.NewResponseController(w)
		t := time.NewTicker(20 * time.Millisecond)
		defer t.Stop()
		for range 1000 { // 20 s at most
			if _, err := fmt.Fprintln(w, "tick"); err != nil {
				return
			}
			if rc.Flush() != nil {
				return
			}
			select {
			case <-r.Context().Done():
				return
			case <-t.C:
			}
		}
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		record(r, r.URL.Path)
		fmt.Fprintln(w, "ok", r.Proto)
	})
	srv := &http.Server{Handler: mux, TLSConfig: tlsCfg, ErrorLog: log0(), Protocols: new(http.Protocols)}
	srv.Protocols.SetHTTP1(true)
	srv.Protocols.SetHTTP2(h2)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	u.addr = ln.Addr().String()
	go srv.ServeTLS(ln, "", "")
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			srv.Close()
		}
	})
	return u
}

func (u *recordingUpstream) snapshot() (handshakes, requests []seen) {
	u.mu.Lock()
	defer u.mu.Unlock()
	return append([]seen(nil), u.handshakes...), append([]seen(nil), u.requests...)
}

// log0 discards net/http's server log (handshake failures are expected).
func log0() *log.Logger { return slog.NewLogLogger(slog.DiscardHandler, slog.LevelError) }

// startRotationGateway starts a gateway whose identity is src, with one route
// to upstream, and returns its base URL and the roots that trust it.
func startRotationGateway(t *testing.T, ca *identity.DevCA, src identity.Source, upstream string) (string, *x509.CertPool) {
	t.Helper()
	dir := t.TempDir()
	cert, err := ca.IssueServerCert([]string{"localhost"}, []net.IP{net.IPv4(127, 0, 0, 1)}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(cert.PrivateKey)
	if err != nil {
		t.Fatal(err)
	}
	svid, err := src.GetX509SVID()
	if err != nil {
		t.Fatal(err)
	}
	svidPEM, svidKey, err := svid.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	files := map[string][]byte{
		"tls.crt":     pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Certificate[0]}),
		"tls.key":     pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}),
		"gateway.crt": svidPEM, // the configured files are replaced by src
		"gateway.key": svidKey,
		"ca.crt":      ca.RootPEM(),
		"gateway.yaml": fmt.Appendf(nil, `apiVersion: tollgate.dev/v1
kind: Gateway
identity:
  files: {cert: gateway.crt, key: gateway.key, bundle: ca.crt}
ingress:
  listen: 127.0.0.1:0
  tls:
    certificates: [{cert: tls.crt, key: tls.key}]
  # Generous: the suite runs with -race beside every other package on two
  # cores, where a handshake can take seconds; a timeout here would count as
  # a failed request that rotation did not cause.
  timeouts: {dial: 30s, readHeader: 30s, upstream: 30s}
  routes:
  - name: up
    host: "*"
    upstream: {url: "https://%s", spiffeIDs: ["%s"]}
admin: {listen: "127.0.0.1:0"}
audit: {sinks: [{file: audit.log}]}
`, upstream, echoID),
	}
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	cfg, err := config.Load(filepath.Join(dir, "gateway.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	gw, err := gateway.New(context.Background(), cfg, gateway.Options{Identity: src, Logger: slog.New(slog.NewTextHandler(testWriter{t}, nil))})
	if err != nil {
		t.Fatal(err)
	}
	if err := gw.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		gw.Shutdown(ctx)
	})
	roots := x509.NewCertPool()
	roots.AddCert(ca.Root())
	return "https://" + gw.IngressAddr().String(), roots
}

// rotationClient speaks HTTP/2 (h2) or HTTP/1.1 only to the gateway, with
// keep-alive.
func rotationClient(t *testing.T, roots *x509.CertPool, h2 bool) *http.Client {
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots}, ForceAttemptHTTP2: h2, MaxIdleConnsPerHost: 16}
	if !h2 {
		tr.TLSNextProto = map[string]func(string, *tls.Conn) http.RoundTripper{}
	}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 45 * time.Second}
}

// protoName names a protocol choice for subtests.
func protoName(h2 bool) string {
	if h2 {
		return "h2"
	}
	return "h1"
}
