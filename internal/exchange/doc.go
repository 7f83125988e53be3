// Package exchange is what every front of the gateway (ingress, mesh, egress)
// does per request, written once: request and trace ids, the canonical request
// description (one host, one client address, computed once), header hygiene
// (spoofable identity headers, Connection-named headers, underscores, method
// overrides, upgrades), the safe JSON errors and their classification,
// response and body counters, the audit seam and the audit event.
//
// A front is "its own routing and forwarding on top of an Exchange":
//
//	x, ok := front.Begin(w, r, rules) // ids, hygiene, canonical authority, event basics
//	defer x.Finish()                  // one audit event and the metrics, always
//	if !ok { return }                 // Begin already answered (400, 403, 421)
//	... x.SetTarget(path, query); route; authenticate ...
//	if !x.Authorize(engine) || !x.Admit() { return }   // 403, or 503 from the audit seam
//	... forward; upstream errors through x.Fail ...
//
// Nothing here knows routes, upstreams or destinations: ingress and egress sit
// on this package and never import each other.
package exchange
