package gateway_test

import (
	"crypto/tls"
	"crypto/x509"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"tollgate.dev/tollgate/internal/dev"
)

// TestGarbageCertificateKeepsServing: an ingress certificate file replaced by
// garbage while running is refused; the old certificate keeps serving, the
// failure is logged, counted, and reported by a SIGHUP reload.
func TestGarbageCertificateKeepsServing(t *testing.T) {
	e := startEnv(t, denyX)
	addr := e.gw.IngressAddr().String()
	pem, _ := os.ReadFile(filepath.Join(e.dir, "pki", "ca.crt"))
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(pem)
	serial := func() string {
		conn, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: roots, ServerName: "localhost"})
		if err != nil {
			t.Fatalf("handshake after the bad reload: %v", err)
		}
		defer conn.Close()
		return conn.ConnectionState().PeerCertificates[0].SerialNumber.String()
	}
	before := serial()
	if err := os.WriteFile(filepath.Join(e.dir, "pki", "tls.crt"), []byte("-----BEGIN CERTIFICATE-----\ngarbage\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := e.gw.Reload(); err == nil || !strings.Contains(err.Error(), "tls.crt") {
		t.Errorf("reload with a garbage certificate: %v (want an error naming the file)", err)
	}
	if got := serial(); got != before {
		t.Errorf("serving certificate changed to %s after a failed reload", got)
	}
	if r := e.do(e.client, "GET", "/y"); r.status != 200 {
		t.Errorf("request after the failed reload: %d", r.status)
	}
	if m := e.metrics(); !strings.Contains(m, `tollgate_cert_reloads_total{kind="ingress",result="failure"}`) {
		t.Error("failed certificate reload not counted")
	}

	// A good certificate is taken.
	if _, err := dev.WritePKI(filepath.Join(e.dir, "newpki"), "example.org", time.Hour, map[string]string{}); err != nil {
		t.Fatal(err)
	}
	// (A certificate from another CA: the test client trusts only the first CA,
	// so check the swap by serial with verification off.)
	for _, n := range []string{"tls.crt", "tls.key"} {
		b, _ := os.ReadFile(filepath.Join(e.dir, "newpki", n))
		os.WriteFile(filepath.Join(e.dir, "pki", n), b, 0o600)
	}
	if err := e.gw.Reload(); err != nil {
		t.Fatalf("reload with a good certificate: %v", err)
	}
	conn, err := tls.Dial("tcp", addr, &tls.Config{InsecureSkipVerify: true})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if conn.ConnectionState().PeerCertificates[0].SerialNumber.String() == before {
		t.Error("the new certificate was not taken")
	}
}
