// Package listener terminates TLS for Tollgate's public listeners and holds the
// HTTP server settings that every request passes through before any judge sees it.
//
// Two parts:
//
//   - [CertStore] picks a server certificate by SNI and reloads certificate files
//     when they change on disk (by polling) or when [CertStore.Reload] is called
//     (the gateway calls it on SIGHUP). A replacement that does not parse keeps the
//     old certificate serving; the error is reported, never fatal.
//   - [Server] wraps [net/http.Server] with the gateway's limits: TLS 1.2 minimum
//     with ECDHE AEAD suites only, ALPN h2 and http/1.1, a bounded TLS handshake,
//     read-header, idle and write timeouts, header size and count limits that
//     hold for HTTP/1.1 and HTTP/2 alike, and a connection limit that, when
//     reached, sheds idle keep-alive connections (HTTP/2 ones with GOAWAY) and
//     gives each source address a fair share ([Config.MaxConnections]).
//
// Mutual TLS is not configured here: the identity package supplies a hook
// ([Config.ClientAuth]) that turns it on, and this package checks that the hook
// did not weaken the protocol floor.
package listener
