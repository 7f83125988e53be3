package ingress

import (
	"crypto/tls"
	"net"
	"net/http"
	"time"
)

// TransportOptions tune the pooled transport to one upstream.
type TransportOptions struct {
	// TLS is the mTLS client configuration: the gateway's SVID, and verification of
	// the upstream's SPIFFE ID in VerifyConnection.
	TLS *tls.Config
	// DialTimeout bounds TCP connect and the TLS handshake each.
	DialTimeout time.Duration
	// ResponseHeaderTimeout bounds the wait for the upstream's response headers.
	ResponseHeaderTimeout time.Duration
	// MaxIdleConns bounds idle keep-alive connections kept to the upstream.
	MaxIdleConns int
}

// NewTransport returns a keep-alive transport that speaks HTTP/2 when the upstream
// offers it and HTTP/1.1 otherwise (WebSocket upgrades always use HTTP/1.1).
func NewTransport(o TransportOptions) *http.Transport {
	if o.MaxIdleConns == 0 {
		o.MaxIdleConns = 256
	}
	d := &net.Dialer{Timeout: o.DialTimeout, KeepAlive: 30 * time.Second}
	return &http.Transport{
		// Upstreams are named in config; no proxy from the environment applies.
		Proxy:                 nil,
		DialContext:           d.DialContext,
		TLSClientConfig:       o.TLS,
		TLSHandshakeTimeout:   o.DialTimeout,
		ResponseHeaderTimeout: o.ResponseHeaderTimeout,
		ForceAttemptHTTP2:     true,
		MaxIdleConns:          o.MaxIdleConns,
		MaxIdleConnsPerHost:   o.MaxIdleConns,
		IdleConnTimeout:       90 * time.Second,
		ExpectContinueTimeout: time.Second,
	}
}
