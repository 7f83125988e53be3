package testkit

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestIssue(t *testing.T) {
	ca := NewCA(t)
	tests := []struct {
		name     string
		names    []string
		wantCN   string
		wantDNS  []string
		wantIPs  []string
		verifyAs string // a name the chain must verify for; "" skips
	}{
		{name: "dns and ips", names: []string{"a.example.com", "127.0.0.1", "::1", "*.b.example.com"},
			wantCN: "a.example.com", wantDNS: []string{"a.example.com", "*.b.example.com"}, wantIPs: []string{"127.0.0.1", "::1"}, verifyAs: "x.b.example.com"},
		{name: "ip only", names: []string{"127.0.0.1"}, wantCN: "127.0.0.1", wantIPs: []string{"127.0.0.1"}, verifyAs: "127.0.0.1"},
		{name: "no names", wantCN: "tollgate test"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := ca.Issue(t, tt.names...)
			leaf := c.Leaf
			var ips []string
			for _, ip := range leaf.IPAddresses {
				ips = append(ips, ip.String())
			}
			if leaf.Subject.CommonName != tt.wantCN {
				t.Errorf("common name %q, want %q", leaf.Subject.CommonName, tt.wantCN)
			}
			if diff := cmp.Diff(tt.wantDNS, leaf.DNSNames); diff != "" {
				t.Errorf("DNS SANs (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tt.wantIPs, ips); diff != "" {
				t.Errorf("IP SANs (-want +got):\n%s", diff)
			}
			if k, ok := c.PrivateKey.(*ecdsa.PrivateKey); !ok || k.Curve != elliptic.P256() {
				t.Errorf("key is %T, want an ECDSA P-256 key", c.PrivateKey)
			}
			for _, usage := range []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth} {
				if _, err := leaf.Verify(x509.VerifyOptions{DNSName: tt.verifyAs, Roots: ca.Pool(), KeyUsages: []x509.ExtKeyUsage{usage}}); err != nil {
					t.Errorf("verify for %q, usage %v: %v", tt.verifyAs, usage, err)
				}
			}
		})
	}
}

// TestIssueIsTrustedOnlyByItsCA: a test that relies on a CA to refuse a
// stranger's certificate must get that refusal.
func TestIssueIsTrustedOnlyByItsCA(t *testing.T) {
	ours, theirs := NewCA(t), NewCA(t)
	leaf := theirs.Issue(t, "a.example.com").Leaf
	_, err := leaf.Verify(x509.VerifyOptions{DNSName: "a.example.com", Roots: ours.Pool()})
	var unknown x509.UnknownAuthorityError
	if !errors.As(err, &unknown) {
		t.Errorf("another CA's certificate: error %v, want x509.UnknownAuthorityError", err)
	}
	if ours.Root().Equal(theirs.Root()) || ours.Root().SerialNumber.Cmp(theirs.Root().SerialNumber) == 0 {
		t.Error("two CAs share a root or a serial")
	}
}

func TestIssueWith(t *testing.T) {
	ca := NewCA(t)
	c := ca.IssueWith(t, func(tmpl *x509.Certificate) {
		tmpl.SerialNumber = big.NewInt(42)
		tmpl.Subject.CommonName = "odd"
		tmpl.NotBefore, tmpl.NotAfter = time.Now().Add(-2*time.Hour), time.Now().Add(-time.Minute)
	}, "a.example.com")
	if c.Leaf.SerialNumber.Cmp(big.NewInt(42)) != 0 || c.Leaf.Subject.CommonName != "odd" {
		t.Errorf("serial %v, common name %q; want 42, %q", c.Leaf.SerialNumber, c.Leaf.Subject.CommonName, "odd")
	}
	_, err := c.Leaf.Verify(x509.VerifyOptions{DNSName: "a.example.com", Roots: ca.Pool()})
	var invalid x509.CertificateInvalidError
	if !errors.As(err, &invalid) || invalid.Reason != x509.Expired {
		t.Errorf("expired certificate: error %v, want x509.Expired", err)
	}
}

// TestHandshake: an issued certificate serves TLS to a client that trusts
// Pool, and authenticates that client when it presents one.
func TestHandshake(t *testing.T) {
	ca := NewCA(t)
	server := &tls.Config{
		Certificates: []tls.Certificate{ca.Issue(t, "localhost", "127.0.0.1")},
		ClientAuth:   tls.RequireAndVerifyClientCert,
		ClientCAs:    ca.Pool(),
	}
	client := &tls.Config{
		RootCAs:      ca.Pool(),
		ServerName:   "127.0.0.1",
		Certificates: []tls.Certificate{ca.Issue(t, "client.example.com")},
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	serverErr := make(chan error, 1)
	go func() {
		conn, err := ln.Accept()
		if err != nil {
			serverErr <- err
			return
		}
		defer conn.Close()
		serverErr <- tls.Server(conn, server).Handshake()
	}()
	conn, err := tls.Dial("tcp", ln.Addr().String(), client)
	if err != nil {
		t.Fatalf("client handshake: %v", err)
	}
	defer conn.Close()
	if err := <-serverErr; err != nil {
		t.Fatalf("server handshake: %v", err)
	}
}

func TestWritePair(t *testing.T) {
	ca := NewCA(t)
	dir := t.TempDir()
	certFile, keyFile := ca.WritePair(t, dir, "srv", "a.example.com")
	if certFile != filepath.Join(dir, "srv.crt") || keyFile != filepath.Join(dir, "srv.key") {
		t.Errorf("paths %q, %q; want srv.crt and srv.key in %s", certFile, keyFile, dir)
	}
	pair, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := pair.Leaf.Verify(x509.VerifyOptions{DNSName: "a.example.com", Roots: ca.Pool()}); err != nil {
		t.Errorf("written certificate does not verify: %v", err)
	}
	fi, err := os.Stat(keyFile)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("key file mode %v, want 0600", fi.Mode().Perm())
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	if diff := cmp.Diff([]string{"srv.crt", "srv.key"}, names); diff != "" {
		t.Errorf("files in dir (-want +got), no temporary files left:\n%s", diff)
	}
}

func TestWriteRoot(t *testing.T) {
	ca := NewCA(t)
	path := ca.WriteRoot(t, t.TempDir(), "bundle.crt")
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(data) {
		t.Fatalf("%s holds no PEM certificate", path)
	}
	if !pool.Equal(ca.Pool()) {
		t.Error("written root is not the CA's root")
	}
	if !ca.Root().IsCA {
		t.Error("root is not a CA certificate")
	}
}
