package listener

import (
	"crypto/tls"
	"errors"
	"fmt"
	"slices"
)

// tls12CipherSuites are the only suites offered to TLS 1.2 clients: ECDHE
// for forward secrecy and AEAD ciphers only. CBC suites (Lucky13, POODLE-
// style padding oracles), RSA key exchange (no forward secrecy, ROBOT) and
// 3DES (Sweet32) are left out. TLS 1.3 suites are not configurable in Go
// and are all AEAD.
var tls12CipherSuites = []uint16{
	tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
	tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
	tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
	tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
	tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
	tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
}

// nextProtos is the ALPN list: HTTP/2 preferred, HTTP/1.1 otherwise.
var nextProtos = []string{"h2", "http/1.1"}

// newTLSConfig builds the server's tls.Config and lets the mTLS hook adjust
// it. The hook runs last, so it is checked afterwards: it may add client
// authentication but not lower the protocol floor, re-enable weak suites or
// drop the certificate source.
func newTLSConfig(certs CertSource, hook func(*tls.Config)) (*tls.Config, error) {
	conf := &tls.Config{
		MinVersion:     tls.VersionTLS12,
		CipherSuites:   slices.Clone(tls12CipherSuites),
		NextProtos:     slices.Clone(nextProtos),
		GetCertificate: certs.GetCertificate,
	}
	if hook != nil {
		hook(conf)
		if err := checkTLSConfig(conf); err != nil {
			return nil, fmt.Errorf("listener: client auth hook: %w", err)
		}
		if inner := conf.GetConfigForClient; inner != nil {
			// A per-client config replaces this one for the handshake, so
			// it gets the same check; one that fails aborts the handshake
			// rather than serving with weaker settings (fail closed).
			conf.GetConfigForClient = func(hello *tls.ClientHelloInfo) (*tls.Config, error) {
				c, err := inner(hello)
				if err != nil || c == nil {
					return c, err
				}
				if err := checkTLSConfig(c); err != nil {
					return nil, fmt.Errorf("listener: per-client tls config: %w", err)
				}
				return c, nil
			}
		}
	}
	return conf, nil
}

var errWeakTLSConfig = errors.New("tls config weaker than the listener's floor")

func checkTLSConfig(c *tls.Config) error {
	if c.MinVersion < tls.VersionTLS12 {
		return fmt.Errorf("%w: minimum version %s, want TLS 1.2 or later", errWeakTLSConfig, tls.VersionName(c.MinVersion))
	}
	if c.MinVersion < tls.VersionTLS13 {
		if len(c.CipherSuites) == 0 {
			return fmt.Errorf("%w: TLS 1.2 cipher suites reset to Go's defaults", errWeakTLSConfig)
		}
		for _, id := range c.CipherSuites {
			if !slices.Contains(tls12CipherSuites, id) {
				return fmt.Errorf("%w: cipher suite %s is not ECDHE with AEAD", errWeakTLSConfig, tls.CipherSuiteName(id))
			}
		}
	}
	if !slices.Contains(c.NextProtos, "http/1.1") && !slices.Contains(c.NextProtos, "h2") {
		return fmt.Errorf("%w: ALPN protocols %q offer neither h2 nor http/1.1", errWeakTLSConfig, c.NextProtos)
	}
	if c.GetCertificate == nil && len(c.Certificates) == 0 {
		return fmt.Errorf("%w: no server certificate", errWeakTLSConfig)
	}
	return nil
}
