// Package pathnorm turns an HTTP request-target into the one canonical path
// that Tollgate's policy matches and that the upstream receives.
//
// There is exactly one normalizer in Tollgate, and its output is used twice:
// the authorization policy judges [Result.Path], and the ingress forwards the
// same [Result.Path] (plus [Result.RawQuery]) to the upstream. A request that
// cannot be normalized safely is rejected (the ingress answers 400); it is
// never passed on in a form the policy did not see.
//
// # Semantics
//
// The modes are Istio's meshConfig.pathNormalization values and follow
// Envoy's order of operations:
//
//  1. the fragment ("#...") is always stripped, even in NONE
//     (CVE-2021-39156 / Envoy CVE-2021-32779: "/user/profile#x" must not
//     slip past a DENY on "/user/profile"); the query is split off and kept
//     as sent, after validation (CVE-2020-8595: "/protected?x");
//  2. escaped slashes (%2F %2f %5C %5c) are rejected, decoded or kept,
//     as [Options.EscapedSlashes] says (DECODE_AND_MERGE_SLASHES always
//     decodes);
//  3. BASE and above: percent-encoded unreserved characters
//     (ALPHA DIGIT - . _ ~) are decoded, once (%252e stays %252e); every other
//     escape is kept verbatim with its original hex case; '\' becomes '/';
//     dot segments are removed per RFC 3986 §5.2.4 (CVE-2019-9901:
//     "/info/../private");
//  4. MERGE_SLASHES and above: runs of '/' collapse to one, after dot-segment
//     removal, so "/app//../admin" is "/app/admin" (the ".." eats the empty
//     segment first, as in Envoy).
//
// # Stricter than Istio
//
// [Default] is MERGE_SLASHES with escaped slashes rejected, not Istio's BASE
// with escaped slashes kept ([IstioDefault]). Under BASE, "//admin",
// "/admin%2Fx" and "/admin%5Cx" do not match a DENY on "/admin", yet many
// backends merge slashes or decode %2F and %5C and then serve /admin: the
// policy judged one path and the backend acted on another (CVE-2021-31920,
// ISTIO-2021-005; Istio calls BASE "vulnerable by design"). Tollgate merges
// slashes, and answers 400 to %2F and %5C instead of guessing how the
// backend will read them. Upstreams that really need encoded slashes in a
// path segment must opt in to KEEP_UNCHANGED (and accept the risk above) or
// to UNESCAPE_AND_FORWARD.
//
// Beyond Istio, in every mode:
//
//   - A path segment whose part before ';' (or an escaped %3B) is "." or
//     ".." is that dot segment: "/public/..;/admin" is "/admin". Tomcat and
//     other servlet containers strip ";" path parameters before resolving
//     dots, so without this a policy allowing "/public/*" would let the
//     request reach /admin (CVE-2026-73511, Envoy PR 46997).
//   - The raw path may contain only RFC 3986 pchar characters, '/', '%' and
//     '\': spaces, quotes, '<' '>' '{' '}' '|' '^' '`' '[' ']', raw bytes
//     >= 0x80 and control characters are rejected rather than guessed at,
//     because backends disagree on how to read them.
//   - Control characters (raw, or escaped %00-%1F and %7F) in the path, raw
//     control characters and %00 in the query, invalid percent-encodings
//     anywhere, and targets over [MaxLength] bytes are rejected.
//     Overlong UTF-8 such as %c0%ae is kept encoded, never decoded to '.'.
//
// NONE performs only steps 1 and 2 and validation; it leaves dot segments
// and backslashes alone and is unsafe for any policy that matches paths.
//
// Every refused target is an [*Error] whose Reason is one of the Err*
// sentinels, so callers can use errors.Is; the asterisk-form target "*"
// (OPTIONS *) is reported as [ErrAsteriskForm] for the caller to handle.
// Invalid [Options] (the zero value included) fail every call with an
// error wrapping [ErrInvalidOptions]: a forgotten setting fails closed.
package pathnorm
