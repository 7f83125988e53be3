package request

import (
	"net/netip"
)

// Protocol is the kind of traffic a request arrived as.
type Protocol string

const (
	// HTTP is a request whose method, host, path and headers are known.
	HTTP Protocol = "http"
	// TCP is a connection judged only on its addresses, ports, SNI and peer identity
	// (an egress CONNECT tunnel, for example).
	TCP Protocol = "tcp"
)

// Request is what a judge sees. Empty fields mean the attribute is absent: an absent
// attribute never satisfies a positive matcher and always satisfies a negative one.
type Request struct {
	Protocol Protocol

	// Method is the HTTP method exactly as sent (case-sensitive).
	Method string
	// Host is the authority as received, including any port, as Istio matches it.
	Host string
	// Port is the port the connection arrived on at the gateway (the listener port).
	Port int
	// Path is the normalized path: what the policy matches and what the upstream receives.
	// It carries no query and no fragment.
	Path string
	// RawQuery is the query string as it will be forwarded, without the '?'.
	RawQuery string
	// Query is RawQuery decoded once; repeated keys keep every value in order.
	Query map[string][]string
	// Headers are keyed in canonical MIME form, as net/http's http.Header is
	// ("X-Role"), so the ingress passes r.Header without a copy; repeated headers
	// keep every value.
	Headers map[string][]string

	// Source is the direct peer: its address and, with mTLS, its SPIFFE ID.
	Source Peer
	// RemoteIP is the original client address (from trusted X-Forwarded-For hops,
	// else the peer address).
	RemoteIP netip.Addr
	// DestinationIP is the local address the connection arrived on.
	DestinationIP netip.Addr
	// SNI is the TLS server name the client sent, if any.
	SNI string

	// Auth is the verified request identity (JWT or OIDC session). Nil when anonymous.
	Auth *Auth
}

// Peer is the transport-level identity of the direct peer.
type Peer struct {
	// Principal is the peer's SPIFFE ID, "spiffe://td/path", empty without mTLS.
	Principal string
	IP        netip.Addr
}

// Auth is the identity proven by a verified credential.
type Auth struct {
	// Issuer and Subject are the verified token's iss and sub; Principal is "iss/sub".
	Issuer    string
	Subject   string
	Principal string
	Audiences []string
	// Presenter is the azp claim.
	Presenter string
	// Claims is the verified payload as decoded from JSON (map[string]any, []any,
	// string, float64, bool, nil).
	Claims map[string]any
}

// SetPrincipal derives the principal "iss/sub" as Istio does.
func (a *Auth) SetPrincipal() {
	a.Principal = a.Issuer + "/" + a.Subject
}
