package testkit

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// CA is an in-memory certificate authority for tests that need plain TLS
// certificates, named by DNS names and IPs; its key never leaves memory, so no
// private key is committed. SPIFFE SVIDs come from identity.DevCA (see
// identity/identitytest) instead: testkit imports nothing of the project, so
// every package's tests can use it.
type CA struct {
	root *x509.Certificate
	key  *ecdsa.PrivateKey
}

// NewCA returns a CA with a fresh ECDSA P-256 root valid from an hour ago to an
// hour from now by time.Now (inside a synctest bubble, the bubble's clock).
func NewCA(tb testing.TB) *CA {
	tb.Helper()
	key := newKey(tb)
	tmpl := template(tb, "tollgate test CA")
	tmpl.IsCA, tmpl.BasicConstraintsValid = true, true
	tmpl.KeyUsage = x509.KeyUsageCertSign
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		tb.Fatalf("testkit: NewCA: %v", err)
	}
	root, err := x509.ParseCertificate(der)
	if err != nil {
		tb.Fatalf("testkit: NewCA: %v", err)
	}
	return &CA{root: root, key: key}
}

// Root returns the CA's self-signed root certificate.
func (ca *CA) Root() *x509.Certificate { return ca.root }

// Pool returns a new pool that trusts only the CA's root.
func (ca *CA) Pool() *x509.CertPool {
	pool := x509.NewCertPool()
	pool.AddCert(ca.root)
	return pool
}

// RootPEM returns the root certificate as PEM, as a trust bundle file holds it.
func (ca *CA) RootPEM() []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ca.root.Raw})
}

// WriteRoot writes the root certificate as PEM to dir/name and returns the path.
func (ca *CA) WriteRoot(tb testing.TB, dir, name string) string {
	tb.Helper()
	path := filepath.Join(dir, name)
	WriteFileAtomic(tb, path, ca.RootPEM())
	return path
}

// Issue makes an ECDSA P-256 leaf certificate for names, valid from an hour
// ago to an hour from now, for both server and client authentication. Names
// that parse as IP addresses become IP SANs, the others DNS SANs; with no
// names the certificate has no SAN at all. The common name is the first name.
func (ca *CA) Issue(tb testing.TB, names ...string) tls.Certificate {
	tb.Helper()
	return ca.IssueWith(tb, nil, names...)
}

// IssueWith is Issue with tweak applied to the template before signing, for
// certificates a test needs odd: expired, another common name or serial,
// serverAuth only. A nil tweak changes nothing.
func (ca *CA) IssueWith(tb testing.TB, tweak func(*x509.Certificate), names ...string) tls.Certificate {
	tb.Helper()
	key := newKey(tb)
	cn := "tollgate test"
	if len(names) > 0 {
		cn = names[0]
	}
	tmpl := template(tb, cn)
	tmpl.KeyUsage = x509.KeyUsageDigitalSignature
	tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}
	for _, n := range names {
		if ip := net.ParseIP(n); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, n)
		}
	}
	if tweak != nil {
		tweak(tmpl)
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.root, &key.PublicKey, ca.key)
	if err != nil {
		tb.Fatalf("testkit: issue %q: %v", names, err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		tb.Fatalf("testkit: issue %q: %v", names, err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}
}

// WritePair issues a certificate for names (as Issue) and writes it to
// dir/base.crt and dir/base.key (see WriteCert).
func (ca *CA) WritePair(tb testing.TB, dir, base string, names ...string) (certFile, keyFile string) {
	tb.Helper()
	return WriteCert(tb, dir, base, ca.Issue(tb, names...))
}

// WriteCert writes c's chain to dir/base.crt and its key to dir/base.key (PEM,
// PKCS #8, mode 0600), certificate first, each replaced atomically (see
// WriteFileAtomic), and returns the two paths.
func WriteCert(tb testing.TB, dir, base string, c tls.Certificate) (certFile, keyFile string) {
	tb.Helper()
	certPEM, keyPEM := EncodePEM(tb, c)
	certFile, keyFile = filepath.Join(dir, base+".crt"), filepath.Join(dir, base+".key")
	WriteFileAtomic(tb, certFile, certPEM)
	WriteFileAtomic(tb, keyFile, keyPEM)
	return certFile, keyFile
}

// EncodePEM returns c's chain as CERTIFICATE blocks and its key as a PKCS #8
// PRIVATE KEY block.
func EncodePEM(tb testing.TB, c tls.Certificate) (certPEM, keyPEM []byte) {
	tb.Helper()
	if len(c.Certificate) == 0 {
		tb.Fatal("testkit: EncodePEM: certificate has no chain")
	}
	for _, der := range c.Certificate {
		certPEM = append(certPEM, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})...)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(c.PrivateKey)
	if err != nil {
		tb.Fatalf("testkit: EncodePEM: %v", err)
	}
	return certPEM, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER})
}

// WriteFileAtomic replaces path with data (mode 0600) by writing path+".tmp"
// and renaming it, as rotation tools do, so a watcher polling path never
// reads a half-written file it was not meant to.
func WriteFileAtomic(tb testing.TB, path string, data []byte) {
	tb.Helper()
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		tb.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		tb.Fatal(err)
	}
}

// template is what every certificate of a CA shares: a fresh serial, the
// common name cn, and validity from an hour ago to an hour from now.
func template(tb testing.TB, cn string) *x509.Certificate {
	tb.Helper()
	now := time.Now()
	return &x509.Certificate{
		SerialNumber: newSerial(tb),
		Subject:      pkix.Name{CommonName: cn},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(time.Hour),
	}
}

func newKey(tb testing.TB) *ecdsa.PrivateKey {
	tb.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		tb.Fatalf("testkit: key: %v", err)
	}
	return key
}

// newSerial returns a random 128-bit serial, so certificates of different CAs
// in one test run never share issuer and serial.
func newSerial(tb testing.TB) *big.Int {
	tb.Helper()
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 128))
	if err != nil {
		tb.Fatalf("testkit: serial: %v", err)
	}
	return serial
}

// WriteEd25519Key makes an Ed25519 key pair and writes the private key
// (PKCS #8 PEM, 0600) to dir/base.key and the public key (PKIX PEM) to
// dir/base.pub, as openssl genpkey -algorithm ed25519 and openssl pkey
// -pubout would.
func WriteEd25519Key(tb testing.TB, dir, base string) (keyFile, pubFile string, pub ed25519.PublicKey) {
	tb.Helper()
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		tb.Fatal(err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		tb.Fatal(err)
	}
	pder, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		tb.Fatal(err)
	}
	keyFile, pubFile = filepath.Join(dir, base+".key"), filepath.Join(dir, base+".pub")
	WriteFileAtomic(tb, keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}))
	WriteFileAtomic(tb, pubFile, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pder}))
	return keyFile, pubFile, pub
}
