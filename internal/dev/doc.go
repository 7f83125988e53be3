// Package dev runs a complete gateway on one machine with nothing from the user:
// a dev trust domain with short-lived, rotating SVIDs, a demo mTLS echo upstream
// that accepts only the gateway's SPIFFE ID, a localhost server certificate whose
// CA is written to the dev directory, and a demo policy that can be edited while
// the gateway runs. Its egress half is an egress listener, an SVID for curl as a
// workload, and a demo "external API" on loopback registered by a ServiceEntry
// and DestinationRule and authorized by an AuthorizationPolicy.
package dev
