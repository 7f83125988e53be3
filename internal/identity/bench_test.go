package identity

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"io"
	"net"
	"net/url"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
)

// benchSVID issues an SVID that also carries a DNS name, so the very same
// certificate can be used by a plain, hostname-verifying tls.Config.
func benchSVID(b *testing.B, ca *DevCA, id string) *x509svid.SVID {
	b.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		b.Fatal(err)
	}
	sid := spiffeid.RequireFromString(id)
	leaf, err := createCert(&x509.Certificate{
		URIs:                  []*url.URL{sid.URL()},
		DNSNames:              []string{"upstream.test"},
		NotBefore:             time.Now().Add(-time.Minute),
		NotAfter:              time.Now().Add(time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		BasicConstraintsValid: true,
	}, ca, key)
	if err != nil {
		b.Fatal(err)
	}
	return &x509svid.SVID{ID: sid, Certificates: []*x509.Certificate{leaf}, PrivateKey: key}
}

func tlsCert(s *x509svid.SVID) tls.Certificate {
	return tls.Certificate{Certificate: [][]byte{s.Certificates[0].Raw}, PrivateKey: s.PrivateKey, Leaf: s.Certificates[0]}
}

// BenchmarkHandshake compares a full mutual TLS 1.3 handshake (both ends, over
// loopback TCP) using the SPIFFE configs against plain crypto/tls configs
// with the same certificates and the same CA.
func BenchmarkHandshake(b *testing.B) {
	ca, err := NewDevCA("example.org")
	if err != nil {
		b.Fatal(err)
	}
	server := benchSVID(b, ca, "spiffe://example.org/upstream")
	client := benchSVID(b, ca, "spiffe://example.org/gateway")
	serverSrc, _ := NewStatic(server, ca.Bundle())
	clientSrc, _ := NewStatic(client, ca.Bundle())
	pool := x509.NewCertPool()
	pool.AddCert(ca.Root())

	cases := []struct {
		name           string
		server, client *tls.Config
	}{
		{
			name:   "spiffe",
			server: ServerTLSConfig(serverSrc, mustParse(b, "spiffe://example.org/gateway")),
			client: ClientTLSConfig(clientSrc, mustParse(b, "spiffe://example.org/upstream"), ClientOptions{ServerName: "upstream.test"}),
		},
		{
			name: "plain",
			server: &tls.Config{
				MinVersion:   tls.VersionTLS12,
				Certificates: []tls.Certificate{tlsCert(server)},
				ClientAuth:   tls.RequireAndVerifyClientCert,
				ClientCAs:    pool,
			},
			client: &tls.Config{
				MinVersion:   tls.VersionTLS12,
				Certificates: []tls.Certificate{tlsCert(client)},
				RootCAs:      pool,
				ServerName:   "upstream.test",
			},
		},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				b.Fatal(err)
			}
			defer ln.Close()
			go func() {
				for {
					raw, err := ln.Accept()
					if err != nil {
						return
					}
					go func() {
						defer raw.Close()
						_ = raw.SetDeadline(time.Now().Add(5 * time.Second))
						conn := tls.Server(raw, c.server)
						if conn.Handshake() == nil {
							_, _ = conn.Write([]byte{1})
						}
					}()
				}
			}()
			b.ReportAllocs()
			buf := make([]byte, 1)
			for b.Loop() {
				raw, err := net.Dial("tcp", ln.Addr().String())
				if err != nil {
					b.Fatal(err)
				}
				_ = raw.SetDeadline(time.Now().Add(5 * time.Second))
				conn := tls.Client(raw, c.client)
				if err := conn.Handshake(); err != nil {
					b.Fatal(err)
				}
				// Reading the server's byte waits for its side of the
				// handshake, including client certificate verification.
				if _, err := io.ReadFull(conn, buf); err != nil {
					b.Fatal(err)
				}
				conn.Close()
			}
		})
	}
}

// BenchmarkMatcher measures the per-handshake allow-list check.
func BenchmarkMatcher(b *testing.B) {
	m := mustParse(b, "spiffe://example.org/ns/a/sa/b", "spiffe://partner.example", "spiffe://example.org/ns/pay/*")
	id := spiffeid.RequireFromString("spiffe://example.org/ns/pay/sa/api")
	b.ReportAllocs()
	for b.Loop() {
		if !m.Match(id) {
			b.Fatal("no match")
		}
	}
}

func mustParse(tb testing.TB, patterns ...string) Matcher {
	tb.Helper()
	m, err := ParseMatcher(patterns)
	if err != nil {
		tb.Fatal(err)
	}
	return m
}
