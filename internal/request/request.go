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

// Request is what a judge sees: built once per request by the front that
// received it, and read unchanged by routing, authentication, policy, the audit
// event and the upstream. Empty fields mean the attribute is absent: an absent
// attribute never satisfies a positive matcher and always satisfies a negative
// one.
type Request struct {
	Protocol Protocol
	// Front names the front that received the request: "ingress", "mesh",
	// "egress".
	Front string

	// Method is the HTTP method exactly as sent (case-sensitive).
	Method string
	// Host is the request's canonical host (see ParseAuthority) and HostPort
	// the port its authority carried, 0 for none: what routing and policy
	// match, and, as Authority().String(), what the upstream receives as Host.
	Host     string
	HostPort int
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

	// Source is the direct peer: its address and, with mTLS, its SPIFFE ID
	// (Istio's source.ip, ipBlocks, principals).
	Source Peer
	// RemoteIP is the original client: the first untrusted address of the
	// X-Forwarded-For chain when the peer is a trusted proxy, else the peer
	// (Istio's remote.ip, remoteIpBlocks; see ClientIP).
	RemoteIP netip.Addr
	// Destination is where the request goes at this front.
	Destination Destination
	// SNI is the TLS server name the client sent, if any.
	SNI string

	// Auth is the verified request identity (JWT or OIDC session). Nil when anonymous.
	Auth *Auth
}

// Destination is where a request goes: at the ingress and mesh fronts, the
// listener it reached (Istio's destination.ip and ports: the port the
// connection arrived on, never the port a client wrote in Host); at egress,
// the outside service, with the addresses its name resolved to.
type Destination struct {
	// IP is the listener's address (ingress) or the address that will be
	// dialled (egress).
	IP netip.Addr
	// Port is what policy's ports and destination.port judge.
	Port int
	// Addresses are every address the destination's name resolved to
	// (egress); each was checked before any is dialled.
	Addresses []netip.Addr
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

// Authority is the request's canonical authority.
func (r *Request) Authority() Authority { return Authority{Host: r.Host, Port: r.HostPort} }
