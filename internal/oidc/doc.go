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
// maxTokenBytes) into an immutable *Authn. ForWorkload picks the rules of the
// documents that apply to a listener, by namespace and spec.selector.matchLabels
// as Istio picks them for a workload (config.Workload), and
// Authenticator.Authenticate judges one request:
//
//   - no token at any configured location: anonymous, no error; policy decides
//     (requestPrincipals: ["*"] is how a policy requires a JWT). A header
//     location is empty only when the header is absent or its value is "";
//   - a header some rule of the listener reads a token from (Authorization by
//     default) that is present but holds no token in any configured form: 401
//     "unreadable credential", never forwarded unverified (Envoy calls it no
//     token and forwards it). A prefix that is an auth-scheme and whitespace
//     ("Bearer ", "Token ") matches as RFC 9110 §11.1 and §11.6.2 say, the
//     scheme in any letter case, then one or more SP or HTAB, so "bearer x",
//     "BEARER x" and "Bearer<TAB>x" carry the token x; any other prefix must
//     match exactly. Refused: another scheme, the scheme without a credential
//     ("Bearer"), no separator ("Bearerx"), garbage. In particular
//     Authorization: Basic ... on a listener whose rules read Authorization
//     is a 401: the gateway can't verify it and won't pass on a credential it
//     did not check. To forward Basic (or any other scheme) to an upstream,
//     read JWTs from another header (fromHeaders) or the query instead; a
//     listener that no rule selects reads no header and forwards it as is;
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
//
// # Browser login
//
// NewLogin builds one Login per provider (LoginConfig: the provider, the
// SessionKeys, the reserved PathPrefix, the hosts it serves). The gateway runs it
// on a route bound to the provider, after bearer authentication:
//
//  1. ServeReserved answers <prefix>oidc/{start,callback,logout,signed-out}
//     before routing, so those paths never reach an upstream (logout: see
//     below);
//  2. if no bearer token gave an identity, Authenticate opens the session
//     cookie and returns the ID token's identity as *request.Auth (refreshing the
//     access token when it is about to expire), or an Outcome:
//  3. Challenge answers LoginRequired (a GET/HEAD page load) with a 302 to the
//     provider: authorization code with PKCE S256, state and nonce, kept in
//     single-use cookies of this login attempt (below); the callback checks
//     state, iss, replay, the ID token and its nonce, and seals the session;
//     Unauthenticated (anything else) is a 401;
//  4. StripCookies removes the gateway's cookies before forwarding, and
//     ClaimHeaders describes the user to the upstream (the ingress removes client
//     copies of ClaimHeaderNames on every request).
//
// The session is two AES-256-GCM sealed, chunked cookies, each bound to its name
// and host: __Host-tollgate-<provider> carries the claims and expiries and is
// opened on every request; __Host-tollgate-<provider>-tokens carries the ID,
// access and refresh tokens and is opened only to refresh or log out. The first
// names the exact seal of the second and both carry one random session id, so
// parts of two sessions never pair; a missing or mismatched tokens part is no
// session. The first of the SessionKeys seals, all open, so keys rotate
// (LoadSessionKeys, SetKeys). Logout clears both (and the logins under way)
// and, when the provider has an end_session_endpoint, ends the provider's
// session with id_token_hint.
//
// Each login attempt has its own cookies, named by an id derived from its
// state parameter, so logins started in several tabs at once don't clobber
// each other: a sealed state cookie (__Secure-tollgate-<provider>-login-<id>:
// state, nonce, PKCE verifier, return path) that only the callback path
// receives, and a small marker (__Host-tollgate-<provider>-pending-<id>,
// Path=/: expiry and size) that proves this host started the attempt in this
// browser (a sibling subdomain can plant a __Secure- cookie, not a __Host-
// one) and lets the next start see the attempts under way. Both last the
// attempt's StateTTL. The callback needs both cookies of the attempt its
// state names, and expires those two only. At most 8 attempts (and 8 KiB of
// state cookies) are kept per provider and browser: a start beyond that ends
// the oldest, whose callback then fails like any other without its state.
//
// Logout is a same-origin POST to <prefix>oidc/logout, judged by net/http's
// CrossOriginProtection (Sec-Fetch-Site, else Origin against Host); a GET
// never ends a session, so another site can't sign the user out with an
// <img src> or a link (logout CSRF). A page load (GET/HEAD navigation) gets a
// small page with a button that submits the POST (no script, not frameable),
// any other GET or method 405 with Allow: POST, and a cross-origin POST
// (Sec-Fetch-Site cross-site or same-site, an Origin of another host) 403
// JSON; in each case the session stays. A POST with neither header is no
// browser's and is accepted. The accepted POST is answered 303 to the
// provider's end_session_endpoint or to <prefix>oidc/signed-out.
package oidc
