// Package ingress routes inbound requests and proxies them to internal upstreams
// over mesh mTLS.
//
// A request goes through, in order: request id, path normalization (the one
// normalized path is both what policy judges and what the upstream receives),
// routing by host and path prefix, authentication, authorization, header
// sanitizing, and forwarding by the package's own lean reverse proxy
// (proxy.go). Every request ends in exactly one audit event. Clients see a
// small JSON error body with the request id; the details go to the log.
package ingress
