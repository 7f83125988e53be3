// Package gateway assembles a running gateway from a loaded configuration: the
// identity source, the ingress listener and handler, policy and authentication
// with hot reload, the audit logger, and the admin listener with health and
// metrics. cmd/gateway parses flags and signals and calls this package; nothing
// here reads flags, handles signals or exits the process.
package gateway
