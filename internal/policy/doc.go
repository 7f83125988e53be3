// Package policy is Tollgate's authorization engine. It loads Istio
// AuthorizationPolicy documents exactly as Istio writes them (security.istio.io/v1
// and v1beta1), plus a small set of extensions in documents with apiVersion
// tollgate.dev/v1, and judges a request.Request against them with Istio's
// semantics: DENY before ALLOW, no applicable ALLOW policy means allow, ALLOW
// policies without a match mean deny, AUDIT only marks the record, and
// istio.io/dry-run policies are evaluated and recorded but never enforced.
//
// Policies are validated and compiled once, when a set is loaded: nothing on the
// request path parses YAML, splits a policy string or compiles a regular
// expression. Rules are indexed by host and by the leading literal path segments
// (a trie) so that the cost of a decision stays nearly flat as the number of rules
// grows; a plain linear evaluator (Engine.Linear) is kept beside the indexed one
// and both are fuzzed against each other.
//
// Where Tollgate differs from Istio, it does so to fail closed:
//
//   - A principal written with "spiffe://" (spiffe://cluster.local/ns/a/sa/b) is
//     rejected at load. Istio accepts it and silently never matches it, so an ALLOW
//     denies everything and a DENY lets everything through.
//   - action CUSTOM is rejected at load: Tollgate has no external authorizer, and
//     ignoring the policy would drop its rules.
//   - when keys experimental.envoy.filters.* are rejected: Tollgate has no Envoy
//     dynamic metadata for them to read.
//   - spec.targetRef(s) are rejected: Tollgate listeners are selected by
//     namespace and spec.selector.matchLabels only (config.Workload).
//   - Repeated headers and repeated query parameters are judged conservatively,
//     whichever way fails closed for the policy's action. In an ALLOW policy, values
//     holds only if every occurrence matches and notValues fails if any occurrence
//     matches, so an attacker cannot smuggle a second value past a rule that checked
//     the first (CVE-2020-25017). In DENY and AUDIT policies, values holds if any
//     occurrence matches and notValues holds unless every occurrence matches, so
//     "x-role: user" plus "x-role: admin" is still caught by a DENY on admin
//     (CVE-2026-26308). Istio (after CVE-2026-26308) matches any occurrence for
//     both actions; Tollgate is stricter only for ALLOW with repeated values.
//
// Extensions (apiVersion tollgate.dev/v1 only, so an Istio document never changes
// meaning): operation.pathRegex / notPathRegex (RE2, must match the whole
// normalized path, query excluded) and the when key request.query[NAME] with
// values / notValues, matched against the decoded query parameter NAME with the
// same exact/prefix/suffix/presence forms as headers.
package policy
