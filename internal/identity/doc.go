// Package identity gives the gateway its SPIFFE identity and uses it for
// mutual TLS.
//
// A [Source] supplies the gateway's X.509 SVID and the trust bundles it
// verifies peers against. Four implementations exist:
//
//   - [NewWorkloadAPI] streams SVIDs and bundles from a SPIFFE Workload API
//     (a SPIRE agent) and keeps serving the last good material when the agent
//     goes away.
//   - [NewFiles] reads an SVID, its key and bundles from PEM files and reloads
//     them when they change; a broken new file never replaces working
//     material.
//   - [NewDevSource] issues short-lived SVIDs from an in-memory [DevCA] and
//     rotates them at half-life, for `gateway dev` and tests.
//   - [NewStatic] serves fixed material, for tests and one-off tools.
//
// Every source swaps its material through an atomic.Pointer, so readers never
// block and never see half an update, and every Close is idempotent.
//
// [ClientTLSConfig] and [ServerTLSConfig] build tls.Configs that present the
// current SVID on each new handshake (rotation needs no rebuild) and verify
// the peer against the bundle of the peer's own trust domain. The peer's
// SPIFFE ID is authorized against a [Matcher] in tls.Config.VerifyConnection,
// never in VerifyPeerCertificate: crypto/tls skips VerifyPeerCertificate on
// resumed sessions, so an authorization check placed there can be bypassed by
// resuming a session that was established before the allow-list changed.
// VerifyConnection runs on every handshake, resumed or not.
//
// Failures are [*PeerError] values that match [ErrPeerNotAllowed] (a valid
// certificate with the wrong identity) or [ErrPeerVerification] (no valid
// SVID chain) with errors.Is, so callers can report the two apart.
package identity
