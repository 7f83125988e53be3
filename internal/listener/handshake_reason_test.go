package listener

import (
	"crypto/tls"
	"net"
	"sync"
	"testing"
	"time"

	"tollgate.dev/tollgate/internal/testkit"
)

// TestHandshakeFailureReasons: every way a real handshake fails is reported
// once, with its reason in the listener's small vocabulary and the SNI the
// client sent.
func TestHandshakeFailureReasons(t *testing.T) {
	ca, other := testkit.NewCA(t), testkit.NewCA(t)
	store, err := NewStaticCertStore(ca.Issue(t, "a.example.com"))
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var got []HandshakeFailure
	srv := startServer(t, Config{Certs: store, HandshakeTimeout: 300 * time.Millisecond,
		ClientAuth: func(c *tls.Config) {
			c.ClientAuth = tls.RequireAndVerifyClientCert
			c.ClientCAs = ca.Pool()
		},
		OnTLSHandshakeError: func(hf HandshakeFailure) {
			mu.Lock()
			got = append(got, hf)
			mu.Unlock()
		}})
	addr := srv.Addr().String()
	good := ca.Issue(t, "client")
	tests := []struct {
		name    string
		connect func(t *testing.T)
		want    string
		wantSNI string
	}{
		{"TLS 1.1", func(t *testing.T) {
			handshake(addr, &tls.Config{RootCAs: ca.Pool(), ServerName: "a.example.com", MinVersion: tls.VersionTLS11, MaxVersion: tls.VersionTLS11})
		}, HandshakeUnsupported, ""}, // refused before the SNI is taken
		{"no client certificate", func(t *testing.T) {
			handshake(addr, &tls.Config{RootCAs: ca.Pool(), ServerName: "a.example.com"})
		}, HandshakeNoClientCert, "a.example.com"},
		{"client certificate of another CA", func(t *testing.T) {
			handshake(addr, &tls.Config{RootCAs: ca.Pool(), ServerName: "a.example.com", Certificates: []tls.Certificate{other.Issue(t, "intruder")}})
		}, HandshakeBadClientCert, "a.example.com"},
		{"client does not trust the gateway", func(t *testing.T) {
			handshake(addr, &tls.Config{RootCAs: other.Pool(), ServerName: "a.example.com", Certificates: []tls.Certificate{good}})
		}, HandshakePeerRejected, "a.example.com"},
		{"not TLS", func(t *testing.T) { rawSend(addr, "SSH-2.0-OpenSSH_9.2\r\n") }, HandshakeNotTLS, ""},
		{"plain HTTP", func(t *testing.T) { rawSend(addr, "GET / HTTP/1.1\r\nHost: a\r\n\r\n") }, HandshakePlainHTTP, ""},
		{"silent after one byte", func(t *testing.T) { rawSend(addr, "\x16") }, HandshakeTimeout, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			mu.Lock()
			before := len(got)
			mu.Unlock()
			tt.connect(t)
			var hf HandshakeFailure
			for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(5 * time.Millisecond) {
				mu.Lock()
				n := len(got)
				if n > before {
					hf = got[before]
				}
				mu.Unlock()
				if n > before {
					if n > before+1 {
						t.Errorf("%d reports for one handshake", n-before)
					}
					break
				}
				if time.Now().After(deadline) {
					t.Fatal("no report of the failed handshake")
				}
			}
			if hf.Reason != tt.want || hf.ServerName != tt.wantSNI {
				t.Errorf("reason %q SNI %q, want %q %q", hf.Reason, hf.ServerName, tt.want, tt.wantSNI)
			}
			if hf.RemoteAddr == nil || hf.LocalAddr.String() != addr || hf.Time.IsZero() {
				t.Errorf("addresses/time %+v", hf)
			}
		})
	}
}

func handshake(addr string, cfg *tls.Config) {
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr, cfg)
	if err == nil {
		// TLS 1.3: the client learns of a refused certificate on its first read.
		c.SetReadDeadline(time.Now().Add(2 * time.Second))
		c.Read(make([]byte, 1))
		c.Close()
	}
}

func rawSend(addr, s string) {
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return
	}
	defer c.Close()
	c.Write([]byte(s))
	c.SetReadDeadline(time.Now().Add(2 * time.Second))
	c.Read(make([]byte, 512))
}
