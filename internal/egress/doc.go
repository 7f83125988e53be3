// Package egress is Tollgate's way out of the mesh: the forward proxy for
// workloads, its destinations, TLS origination, credential injection, and the
// SSRF guard.
//
// The guard (Guard) stands between an allowed request and the dial. It reads
// the destination's host once (an IP address in any spelling a resolver would
// accept is classified, never looked up), resolves a name once, classifies
// every address (Classify: loopback, private, link-local, CGNAT, multicast,
// unspecified, reserved, IPv6 forms that embed IPv4, documentation, and the
// gateway's own addresses), refuses the destination unless every address is
// public or admitted by the allow-list, and then dials exactly the addresses
// it checked. There is no second lookup between check and dial, so a name
// whose answer changes (DNS rebinding) can't move the connection inside.
// Its Decision is the record the audit event carries.
package egress
