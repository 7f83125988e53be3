// Package audit records one structured event per request, ingress and egress, allow
// and deny, in a shape a SIEM can ingest without a parser of its own.
//
// The request path builds an [Event] when the request completes and hands it to
// [Logger.Record]; a background goroutine writes it to every [Sink] as one JSON line.
// This package is the seam: the SIEM pipeline (disk spool, at-least-once delivery,
// syslog/HEC/webhook sinks, OCSF/ECS/CEF/LEEF formatters, hash chain) will plug in
// behind the same Event and Record without changing either.
//
// # Secrets (security invariant 7)
//
// An event never holds a secret. It has no field for header or cookie values, so
// Authorization, Proxy-Authorization, Cookie, Set-Cookie and API-key headers cannot
// reach it; Auth carries who a token proved, never the token. The query string is
// passed through [RedactQuery] by the builder, and again by the Logger before any
// sink sees it. Paths are recorded as normalized: a route that carries secrets in
// path segments needs its own redaction (not done here).
//
// # Event fields (JSON name: meaning)
//
//   - time: when the request started, RFC 3339 in UTC with exactly three fractional
//     digits ("2026-09-24T10:13:20.123Z").
//   - id: unique event id, a UUIDv7 (time-ordered); filled by the Logger when empty.
//     Sinks with at-least-once delivery repeat an event with the same id.
//   - seq: sequence number, assigned in write order from 1. With a journal it is
//     the journal's and goes on across restarts; without one it is per Logger.
//     Lost events never leave a silent hole: a record of kind "audit" with a gap
//     says how many were lost and why.
//   - requestId: the request id the gateway gave the client and its own logs.
//   - traceId: the W3C trace id, when there is one.
//   - instance: the gateway instance that wrote the record (audit.instance, default
//     the host name); seq counts per instance.
//   - kind: "ingress", "mesh" or "egress"; "audit" for the trail's own records (gap,
//     checkpoint).
//   - client.address, client.port: the direct peer's IP and source port.
//   - listener.address, listener.port: the gateway address the request arrived on.
//   - sni: the TLS server name the client sent.
//   - tlsVersion: the client connection's TLS version, "TLS 1.2" or "TLS 1.3".
//   - tlsCipher: the client connection's cipher suite name (IANA), if known.
//   - host: the authority the request was for (as routed and judged by policy).
//   - method: the HTTP method; "CONNECT" for an egress tunnel.
//   - path: the normalized path, exactly what policy judged and the upstream received.
//   - query: the query string without '?', redacted (sensitive values → "REDACTED").
//   - protocol: "HTTP/1.1" or "HTTP/2" (as net/http's Request.Proto spells it).
//   - status: the HTTP status sent to the client; 0 when none was sent.
//   - bytesIn: body bytes received from the client.
//   - bytesOut: body bytes sent to the client.
//   - durationMs: from request start to the last byte written, in milliseconds
//     with microsecond resolution.
//   - userAgent: the client's User-Agent header (the only header recorded).
//   - route: the configured route (ingress) or destination (egress) name that matched.
//   - upstream.url: the upstream or destination origin, without userinfo.
//   - upstream.spiffeId: the upstream's SPIFFE ID as verified on the mTLS handshake.
//   - upstream.address: the ip:port actually dialled.
//   - upstream.tlsVersion: the TLS version of the outbound leg (egress).
//   - sourcePrincipal: the caller's SPIFFE ID from its client certificate (mTLS only;
//     every egress call has one).
//   - auth.principal, auth.issuer, auth.subject: the identity a verified JWT or OIDC
//     session proved ("iss/sub", iss, sub). Absent for anonymous requests.
//   - decision: the policy engine's record; absent when no policy ran (for example
//     a request rejected before authorization):
//   - decision.allow: the outcome.
//   - decision.action: the action of the deciding policy (ALLOW, DENY, CUSTOM), empty
//     when the default applied.
//   - decision.policy, decision.rule: the namespace/name of the deciding policy and
//     the index or name of its matching rule.
//   - decision.reason: a short human explanation ("no ALLOW policy matched").
//   - decision.dryRun: the deciding policy is in dry-run mode: the outcome was logged,
//     not enforced.
//   - decision.policyVersion: the version of the policy snapshot that decided.
//   - decision.audit: an AUDIT policy matched.
//   - error: why no normal upstream response was served, one of the [ErrorKind]
//     values ("no_route", "upstream_unreachable", "upstream_tls", "timeout", ...).
//   - tlsError: why a TLS handshake failed, when error is "tls_handshake" (a
//     connection record: no request was read): timeout, no_client_certificate,
//     bad_client_certificate, rejected_by_client, unsupported_parameters, not_tls,
//     connection_closed, handshake_failed.
//   - truncated: the Logger shortened an over-long field (Config.MaxFieldBytes).
//   - phase: "decision" on the record a fail-closed gateway journals before it
//     forwards the request; the completed record follows without a phase.
//   - gap.dropped, gap.reason: on an "audit" record, how many records were lost and
//     why: "queue_full", "journal_unavailable", "journal_full" (never journaled),
//     "quota" (removed from the journal before a sink delivered them), or
//     "sink_failed" (without a journal: one sink refused them, or its reader
//     stalled; the other sinks have them).
//   - gap.sink, gap.fromSeq, gap.toSeq: for "quota" and "sink_failed", the sink
//     that lost them and the sequence numbers they had.
//   - checkpoint.seq, checkpoint.hash, checkpoint.keyId, checkpoint.sig: on an "audit"
//     record, an Ed25519 signature (base64) over the hash of journal line seq (see
//     [CheckpointMessage]); keyId is the first 16 hex digits of the public key's SHA-256.
//   - prev: SHA-256 (hex) of the journal line before this one, the hash chain that
//     `gateway audit verify` checks; absent on the journal's first line and without
//     a journal.
//
// Zero-valued strings, objects and flags are omitted; time, kind, status, bytesIn,
// bytesOut and durationMs are always present, and so is decision.allow.
package audit
