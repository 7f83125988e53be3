package identity

import (
	"crypto/tls"
	"crypto/x509"
	"runtime"
	"sync"
	"weak"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// verified records, for each peer leaf certificate object that a
// VerifyConnection callback of this package accepted, the SPIFFE ID it was
// authorized as. Entries disappear when the connection's certificate is
// garbage collected.
//
// PeerID consults this record instead of parsing the URI SAN of whatever
// certificate is in the connection state: on a listener that requests but
// does not verify client certificates, the SAN is attacker-chosen, and a
// caller that mistakenly used PeerID there would trust a forged identity.
var verified sync.Map // weak.Pointer[x509.Certificate] -> spiffeid.ID

func rememberVerified(leaf *x509.Certificate, id spiffeid.ID) {
	key := weak.Make(leaf)
	if _, loaded := verified.Swap(key, id); loaded {
		return
	}
	runtime.AddCleanup(leaf, func(k weak.Pointer[x509.Certificate]) { verified.Delete(k) }, key)
}

// PeerID returns the SPIFFE ID of the peer of a connection whose handshake
// was verified and authorized by a config from [ServerTLSConfig] or
// [ClientTLSConfig] (for a server, pass *r.TLS). It returns false for any
// other connection, including ones whose certificate merely contains a
// SPIFFE URI SAN.
//
// The record is per certificate object. crypto/tls shares parsed
// certificates between a client's connections to the same server, so on
// the client side a certificate verified under one allow-list reads as
// verified on another connection too; the chain check and proof of key
// possession hold either way, but use PeerID only on connections made
// with this package's configs.
func PeerID(cs tls.ConnectionState) (spiffeid.ID, bool) {
	if len(cs.PeerCertificates) == 0 {
		return spiffeid.ID{}, false
	}
	v, ok := verified.Load(weak.Make(cs.PeerCertificates[0]))
	if !ok {
		return spiffeid.ID{}, false
	}
	return v.(spiffeid.ID), true
}
