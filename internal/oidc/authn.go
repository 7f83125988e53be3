package oidc

import (
	"cmp"
	"context"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"golang.org/x/net/http/httpguts"

	"tollgate.dev/tollgate/internal/config"
	"tollgate.dev/tollgate/internal/request"
)

// Options configure CompileRequestAuthn.
type Options struct {
	// Keys holds remote JWKS across reloads. Required when a rule uses jwksUri
	// or discovery; pass the same cache to every compile.
	Keys *KeyCache
	// TokenCacheSize bounds the verified-token cache (default 10000; negative
	// disables it).
	TokenCacheSize int
	// Now is the clock for exp/nbf (default time.Now); tests set it.
	Now func() time.Time
	// RootNamespace is the mesh root namespace (default "istio-system"): its
	// documents apply to listeners of every namespace (config.Workload).
	RootNamespace string
}

// Authn is the compiled RequestAuthentication of one configuration snapshot.
// It is immutable and safe for concurrent use; a reload compiles a new one.
type Authn struct {
	rules []*rule
	cache *tokenCache
	now   func() time.Time
	strip []string // every output header of every rule, canonical
	root  string   // the root namespace
}

// rule is one compiled JWTRule.
type rule struct {
	issuer         string
	audiences      []string
	locations      []location
	payloadHeader  string
	claimHeaders   []claimToHeader
	forward        bool
	spaceDelimited []string
	algs           map[string]bool
	skew           time.Duration
	maxTokenBytes  int
	static         *keySet
	remote         *remoteKeys
	selector       map[string]string
	namespace      string
	source         string
}

// CompileRequestAuthn compiles every RequestAuthentication document among
// docs (see OwnsDocument; other documents are ignored). Errors are positioned
// config.Errors, all reported at once. Remote JWKS are taken from opts.Keys:
// keys already cached are reused and new ones are fetched in the background,
// never here.
func CompileRequestAuthn(docs []config.Document, opts Options) (*Authn, error) {
	var errs config.Errors
	var specs []ruleSpec
	for _, doc := range docs {
		if !OwnsDocument(doc) {
			continue
		}
		d := config.NewDecoder(doc.File)
		for _, s := range decodeRequestAuth(doc, d) {
			if s.Jwks == "" && opts.Keys == nil {
				d.Errorf(s.path, "remote JWKS needs a key cache (internal: Options.Keys is nil)")
			}
			specs = append(specs, s)
		}
		errs = append(errs, d.Errs...)
	}
	if err := errs.Err(); err != nil {
		return nil, err
	}
	a := &Authn{cache: newTokenCache(opts.TokenCacheSize), now: opts.Now, root: cmp.Or(opts.RootNamespace, "istio-system")}
	if a.now == nil {
		a.now = time.Now
	}
	seen := map[string]bool{}
	for _, s := range specs {
		r := compileRule(s, opts.Keys)
		a.rules = append(a.rules, r)
		for _, h := range r.outputHeaders() {
			if !seen[h] {
				seen[h] = true
				a.strip = append(a.strip, h)
			}
		}
	}
	// Istio merges the rules of every applicable document sorted by issuer.
	slices.SortStableFunc(a.rules, func(x, y *rule) int { return strings.Compare(x.issuer, y.issuer) })
	slices.Sort(a.strip)
	return a, nil
}

func compileRule(s ruleSpec, keys *KeyCache) *rule {
	r := &rule{
		issuer:         s.Issuer,
		audiences:      s.Audiences,
		forward:        s.ForwardOriginalToken,
		spaceDelimited: append([]string{"scope", "permission"}, s.SpaceDelimitedClaims...),
		algs:           make(map[string]bool),
		skew:           s.clockSkew,
		maxTokenBytes:  s.maxTokenBytes,
		selector:       s.selector,
		namespace:      s.namespace,
		source:         s.source,
	}
	for _, a := range s.algorithms {
		r.algs[a] = true
	}
	for _, h := range s.FromHeaders {
		r.locations = append(r.locations, headerLocation(h.Name, h.Prefix))
	}
	for _, p := range s.FromParams {
		r.locations = append(r.locations, location{kind: locParam, name: p})
	}
	for _, c := range s.FromCookies {
		r.locations = append(r.locations, location{kind: locCookie, name: c})
	}
	if len(r.locations) == 0 {
		r.locations = defaultLocations
	}
	if s.OutputPayloadToHeader != "" {
		r.payloadHeader = http.CanonicalHeaderKey(s.OutputPayloadToHeader)
	}
	for _, c := range s.OutputClaimToHeaders {
		r.claimHeaders = append(r.claimHeaders, claimToHeader{Header: http.CanonicalHeaderKey(c.Header), Claim: c.Claim})
	}
	if s.Jwks != "" {
		r.static, _ = parseJWKS([]byte(s.Jwks)) // validated in decodeRequestAuth
	} else {
		r.remote = keys.source(s.JwksURI, s.Issuer, s.Timeout)
	}
	return r
}

func (r *rule) outputHeaders() []string {
	var out []string
	if r.payloadHeader != "" {
		out = append(out, r.payloadHeader)
	}
	for _, c := range r.claimHeaders {
		out = append(out, c.Header)
	}
	return out
}

func (r *rule) keys(ctx context.Context, kid string) (*keySet, error) {
	if r.static != nil {
		return r.static, nil
	}
	return r.remote.keys(ctx, kid)
}

// Unselected lists the JWT rules that apply to none of ws, each as
// "file:line: RequestAuthentication namespace/name spec.jwtRules[i]": such a
// rule verifies no token anywhere, which is worth a warning.
func (a *Authn) Unselected(ws ...config.Workload) []string {
	if a == nil {
		return nil
	}
	var out []string
	for _, r := range a.rules {
		if !slices.ContainsFunc(ws, func(w config.Workload) bool { return w.Selects(a.root, r.namespace, r.selector) }) {
			out = append(out, r.source)
		}
	}
	slices.Sort(out)
	return out
}

// Len is the number of JWT rules the authenticator applies.
func (au *Authenticator) Len() int { return len(au.rules) }

// ForListener returns the authenticator for a listener of no namespace with
// these labels; see ForWorkload.
func (a *Authn) ForListener(labels map[string]string) *Authenticator {
	return a.ForWorkload(config.Workload{Labels: labels})
}

// ForWorkload returns the authenticator for a listener: the rules of the
// documents that apply to w as Istio chooses them for a workload
// (config.Workload.Selects). Call it once per listener per snapshot, not per
// request.
func (a *Authn) ForWorkload(w config.Workload) *Authenticator {
	au := &Authenticator{authn: a, byLoc: make(map[location][]*rule), maxBytes: make(map[location]int), stripWith: make(map[string][]string)}
	if a == nil {
		return au
	}
	au.strip = a.strip
	for _, r := range a.rules {
		if !w.Selects(a.root, r.namespace, r.selector) {
			continue
		}
		au.rules = append(au.rules, r)
		for _, l := range r.locations {
			if _, ok := au.byLoc[l]; !ok {
				au.locs = append(au.locs, l)
			}
			au.byLoc[l] = append(au.byLoc[l], r)
			au.maxBytes[l] = max(au.maxBytes[l], r.maxTokenBytes)
			switch l.kind {
			case locHeader:
				if _, ok := au.stripWith[l.name]; !ok {
					au.stripWith[l.name] = append(slices.Clip(a.strip), l.name)
				}
			case locParam:
				au.readsQuery = true
			}
		}
	}
	// Headers first, then parameters, then cookies, each in first-seen order,
	// so the principal of a request with several tokens is deterministic.
	slices.SortStableFunc(au.locs, func(x, y location) int { return cmp.Compare(x.kind, y.kind) })
	return au
}

// Authenticator verifies the tokens of requests arriving on one listener.
type Authenticator struct {
	authn    *Authn
	rules    []*rule
	locs     []location
	byLoc    map[location][]*rule
	maxBytes map[location]int
	strip    []string
	// stripWith is strip plus one token header, for each header a token
	// may come in: the Remove of a request whose token came there.
	stripWith  map[string][]string
	readsQuery bool
}

// ReadsQuery reports whether some rule reads tokens from query parameters:
// then Authenticate reads the request's query (q.Query if decoded).
func (au *Authenticator) ReadsQuery() bool { return au.readsQuery }

// maxFound is how many tokens a request's verification holds without an
// allocation; more (a request with a token in each of many locations) only
// costs one.
const maxFound = 4

// Result is what authentication decided for one request.
type Result struct {
	// Auth is the verified identity, nil when the request carries no token.
	// It is shared by every request that presents the same token (the
	// verified-token cache keeps it): read it, never change it; a request
	// takes its own copy (exchange.Exchange.SetUser).
	Auth *request.Auth
	// Remove lists headers to delete before forwarding: every output header
	// (always) and the token's header unless the rule forwards it. Shared:
	// never change it.
	Remove []string
	// set are the headers to add for the upstream (outputPayloadToHeader,
	// outputClaimToHeaders), applied after Remove. Their value slices are
	// the verified token's, shared like Auth.
	set []outputHeader
}

// outputHeader is one header a verified token sets for the upstream. vals
// has one element and no spare capacity, so that an append to the header
// (http.Header.Add) copies it instead of writing into the shared array.
type outputHeader struct {
	name string
	vals []string
}

// Apply removes then sets the result's headers on h, the upstream request's.
func (res Result) Apply(h http.Header) {
	for _, name := range res.Remove {
		h.Del(name)
	}
	for _, o := range res.set {
		h[o.name] = o.vals
	}
}

// Header returns the headers Apply sets, in a new map (for tests and tools).
func (res Result) Header() http.Header {
	h := make(http.Header, len(res.set))
	for _, o := range res.set {
		h[o.name] = slices.Clone(o.vals)
	}
	return h
}

// Authenticate verifies every token the request carries at a configured
// location. No token: anonymous, a nil Auth and no error (policy decides).
// Any token that fails: an *Error (401, or 403 for a wrong audience); the
// Result is still valid for stripping headers. Several tokens must all verify
// and name the same issuer and subject.
//
// Headers and cookies are read from r, query parameters from q, the request
// description the policy will judge (its RawQuery, or its Query when
// already decoded), so that a token in the query is read from what the
// upstream receives, exactly as the policy reads it.
func (au *Authenticator) Authenticate(r *http.Request, q *request.Request) (Result, error) {
	res := Result{Remove: au.strip}
	if len(au.rules) == 0 || isCORSPreflight(r) {
		return res, nil
	}
	var buf [maxFound]foundToken
	found, err := extract(r, q, au.locs, buf[:0])
	if err != nil {
		return res, newError(err)
	}
	if len(found) == 0 {
		return res, nil
	}
	var first *verified
	// remove is shared (au.strip, then au.stripWith) until a second token
	// header joins it: copied then.
	remove, tokenHeader := au.strip, false
	for _, f := range found {
		v, err := au.verify(r.Context(), f)
		if err != nil {
			return res, newError(fmt.Errorf("%s: %w", f.loc, err))
		}
		if first == nil {
			first = v
		} else if v.auth.Issuer != first.auth.Issuer || v.auth.Subject != first.auth.Subject {
			// Istio leaves the principal of such a request undefined; Tollgate
			// refuses it rather than pick one.
			return res, newError(fmt.Errorf("%w: tokens in %s and %s name different principals", errMultipleTokens, found[0].loc, f.loc))
		}
		if f.loc.kind == locHeader && !v.rule.forward {
			if !tokenHeader {
				remove, tokenHeader = au.stripWith[f.loc.name], true
			} else {
				remove = append(slices.Clip(remove), f.loc.name)
			}
		}
		if len(res.set) == 0 {
			res.set = v.outputs
		} else if len(v.outputs) > 0 {
			res.set = append(slices.Clip(res.set), v.outputs...)
		}
	}
	res.Auth = first.auth
	res.Remove = remove
	return res, nil
}

// verified is a token whose signature and claims passed for rule. It is
// cached and shared by every request that presents the token: immutable.
type verified struct {
	tok     *token
	rule    *rule
	auth    *request.Auth
	outputs []outputHeader // the rule's output headers for this token
}

func (au *Authenticator) verify(ctx context.Context, f foundToken) (*verified, error) {
	if limit := au.maxBytes[f.loc]; len(f.value) > limit {
		return nil, fmt.Errorf("%w: %d bytes, limit %d", errTokenTooLarge, len(f.value), limit)
	}
	a := au.authn
	now := a.now()
	rules := au.byLoc[f.loc]
	key := tokenKey(f.value)
	if e, ok := a.cache.get(key, now); ok && slices.Contains(rules, e.rule) {
		if err := e.rule.checkClaims(e.tok, now); err != nil {
			return nil, err
		}
		return e.verified, nil
	}
	t, err := parseToken(f.value, au.maxBytes[f.loc])
	if err != nil {
		return nil, err
	}
	var candidates []*rule
	for _, r := range rules {
		if r.issuer == t.iss {
			candidates = append(candidates, r)
		}
	}
	if len(candidates) == 0 {
		// Rules without an issuer (jwksUri only) accept any iss their keys
		// verify. A token whose issuer no rule names is a 401, never "missing"
		// (CVE-2021-21378).
		for _, r := range rules {
			if r.issuer == "" {
				candidates = append(candidates, r)
			}
		}
	}
	if len(candidates) == 0 {
		return nil, fmt.Errorf("%w: %s", errUnknownIssuer, clip(t.iss))
	}
	var firstErr error
	for _, r := range candidates {
		v, err := r.verify(ctx, t, now)
		if err == nil {
			a.cache.put(key, cachedToken{tok: t, rule: r, verified: v, expires: t.expiry()}, now)
			return v, nil
		}
		if v != nil { // signature good, claims bad: still worth caching
			a.cache.put(key, cachedToken{tok: t, rule: r, verified: v, expires: t.expiry()}, now)
		}
		if firstErr == nil {
			firstErr = fmt.Errorf("rule %s: %w", r.source, err)
		}
	}
	return nil, firstErr
}

// verify checks t against r: size, alg allow-list, signature, claims. It
// returns the verified token with a non-nil error when only the claims fail.
func (r *rule) verify(ctx context.Context, t *token, now time.Time) (*verified, error) {
	if len(t.raw) > r.maxTokenBytes {
		return nil, fmt.Errorf("%w: %d bytes, limit %d", errTokenTooLarge, len(t.raw), r.maxTokenBytes)
	}
	if !r.algs[t.alg.name] {
		return nil, fmt.Errorf("%w: %s for issuer %s", errAlgNotAllowed, t.alg.name, clip(t.iss))
	}
	keys, err := r.keys(ctx, t.kid)
	if err != nil {
		return nil, err
	}
	var buf [4]*jwk
	if err := t.verifySignature(keys.candidates(t.kid, t.alg, buf[:0])); err != nil {
		return nil, err
	}
	v := &verified{tok: t, rule: r, auth: r.buildAuth(t), outputs: r.outputs(t)}
	return v, r.checkClaims(t, now)
}

func (r *rule) checkClaims(t *token, now time.Time) error {
	if err := t.validateTime(now, r.skew); err != nil {
		return err
	}
	// Without a list per request: this runs on every cache hit.
	n, ok := 0, len(r.audiences) == 0
	err := t.eachAudience(func(a string) {
		n++
		ok = ok || slices.Contains(r.audiences, a)
	})
	if err != nil || ok {
		return err
	}
	return fmt.Errorf("%w: token audiences %d, none configured", errAudience, n)
}

// buildAuth is the identity policy sees. scope, permission and the rule's
// spaceDelimitedClaims that are strings become lists of their words, as
// Envoy's normalize_payload_in_metadata does; the token's other claims are
// passed as decoded.
func (r *rule) buildAuth(t *token) *request.Auth {
	a := &request.Auth{Issuer: t.iss, Claims: t.claims}
	a.Subject, _ = t.claims["sub"].(string)
	a.Presenter, _ = t.claims["azp"].(string)
	a.Audiences, _ = t.audiences()
	a.SetPrincipal()
	copied := false
	for _, name := range r.spaceDelimited {
		s, ok := t.claims[name].(string)
		if !ok {
			continue
		}
		if !copied {
			a.Claims = make(map[string]any, len(t.claims))
			for k, v := range t.claims {
				a.Claims[k] = v
			}
			copied = true
		}
		words := strings.Fields(s)
		list := make([]any, len(words))
		for i, w := range words {
			list[i] = w
		}
		a.Claims[name] = list
	}
	return a
}

// outputs are the rule's output headers for a verified token, made once
// per verification and cached with it. Claim values that are not valid
// header values are skipped, never forwarded raw.
func (r *rule) outputs(t *token) []outputHeader {
	if r.payloadHeader == "" && len(r.claimHeaders) == 0 {
		return nil
	}
	var out []outputHeader
	if r.payloadHeader != "" {
		// The payload exactly as signed, base64url without padding.
		out = append(out, outputHeader{name: r.payloadHeader, vals: []string{t.payloadB64}})
	}
	for _, c := range r.claimHeaders {
		if s, ok := claimString(t.claims, c.Claim); ok && httpguts.ValidHeaderFieldValue(s) {
			out = append(out, outputHeader{name: c.Header, vals: []string{s}})
		}
	}
	return slices.Clip(out)
}
