// Package oidc authenticates end users at the ingress: JWT bearer tokens with
// Istio's RequestAuthentication semantics, and the OIDC browser login with its
// session cookie. It knows nothing of policy: it fills request.Auth and the
// ingress hands that to the policy engine.
//
// # JWT (RequestAuthentication)
//
// CompileRequestAuthn turns RequestAuthentication documents
// (security.istio.io/v1 and v1beta1 exactly as Istio writes them, or
// tollgate.dev/v1 with the extension fields algorithms, clockSkew and
// maxTokenBytes) into an immutable *Authn. ForListener picks the rules whose
// spec.selector.matchLabels the listener's labels satisfy (no selector: every
// listener), and Authenticator.Authenticate judges one request:
//
//   - no token at any configured location: anonymous, no error; policy decides
//     (requestPrincipals: ["*"] is how a policy requires a JWT);
//   - a token that fails (malformed, unsupported or disallowed alg, bad
//     signature, unknown kid, expired or not yet valid beyond the clock skew,
//     issuer no rule names, no keys): 401 with
//     WWW-Authenticate: Bearer error="invalid_token";
//   - a valid token whose aud matches none of the rule's audiences: 403;
//   - several tokens (header and query, say): every one must verify, and they
//     must name the same iss/sub, else 401;
//   - a CORS preflight skips verification, as Envoy's bypass_cors_preflight.
//
// Verification pins each alg to one key type (HS* only with oct keys, so an
// HMAC "signed" with the issuer's public key fails), never accepts "none",
// reads only alg, kid and crit from the header (jku, x5u, jwk and x5c are never
// trusted), rejects any crit, duplicate JSON members and oversized tokens.
// Claims reach policy as decoded JSON; scope, permission and the rule's
// spaceDelimitedClaims are split into lists, as Envoy does for authorization.
// Differences from Envoy, each failing closed: the signature is checked before
// the audience, so only authentic tokens can earn a 403; repeated token
// headers, parameters or cookies are a 401; targetRef(s) is refused at load.
//
// Remote keys live in a KeyCache that outlives reloads: keyed by jwksUri (or
// issuer, for OIDC discovery), refreshed in the background, refetched when a
// token names an unknown kid (rate-limited, shared by concurrent requests, the
// wait bounded by the request's context), and kept while the issuer is
// unreachable for at most KeyCacheOptions.MaxStale. With no keys every token
// of the issuer is refused. A bounded cache of verified tokens, keyed by the
// token's SHA-256, lets a repeated token skip the signature check; time and
// audience checks run on every request.
//
// Result tells the ingress which headers to remove (every configured output
// header, always, and the token's header unless forwardOriginalToken) and
// which to set (outputPayloadToHeader, outputClaimToHeaders). Error carries the
// status, a reason safe for clients and, in Error(), a detailed cause for the
// log. Tokens are never logged.
package oidc
