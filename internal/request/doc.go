// Package request holds the plain description of one request that every judge in
// Tollgate reads: the policy engine, the audit record and the `gateway policy eval`
// CLI. Authentication fills its Auth part. It knows nothing of HTTP servers, so a
// decision reached from a JSON description is the same decision the ingress reaches.
package request
