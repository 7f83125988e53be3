package exchange

import (
	"net/http"
	"net/url"
	"strings"
)

// Header hygiene. The lists below are the documented ones
// (docs/configuration.md, "What the gateway removes"); a test checks that the
// doc and the code agree.

// forwardingHeaders carry provenance that only the operator's own proxies may
// vouch for. From an untrusted peer every one of them is removed, and so is
// every other X-Forwarded-* name (CVE-2020-8843: internal headers trusted
// from outside). From a trusted proxy these are kept; the forward step then
// extends X-Forwarded-For and sets X-Forwarded-Host/-Proto itself.
var forwardingHeaders = []string{
	"X-Forwarded-For", "X-Forwarded-Host", "X-Forwarded-Proto", "X-Forwarded-Port",
	"X-Forwarded-Prefix", "Forwarded", "X-Original-Forwarded-For",
}

// clientIPHeaders are the other "who is the client" headers applications and
// frameworks read (CDNs and load balancers set them). Removed from every
// request, a trusted proxy's too: policy judged the client address from
// X-Forwarded-For (remote.ip), which the gateway extends and the upstream
// gets, and a second, different answer in X-Real-Ip or True-Client-Ip (which
// a load balancer that only appends X-Forwarded-For passes on as the client
// wrote it) would let the upstream believe another client than policy did.
var clientIPHeaders = []string{
	"X-Real-Ip", "True-Client-Ip", "X-Client-Ip", "X-Cluster-Client-Ip", "Cf-Connecting-Ip",
	"Fastly-Client-Ip", "X-Originating-Ip", "X-Remote-Ip", "X-Remote-Addr",
	"Client-Ip", "X-Host", "X-Forwarded-Server",
}

// alwaysStripped are removed whoever the peer is: they name a user, a
// verified client certificate or an original URL, and only the gateway (which
// authenticates) may say such things to an upstream. Authentication proxies
// (oauth2-proxy, Authelia, nginx auth_request, Apache) use these names, and
// apps behind them trust them.
var alwaysStripped = []string{
	"X-Forwarded-User", "X-Forwarded-Email", "X-Forwarded-Groups", "X-Forwarded-Access-Token",
	"X-Forwarded-Preferred-Username", "X-Forwarded-Uri", "X-Forwarded-Method", "X-Forwarded-Client-Cert",
	"Remote-User", "Remote-Groups", "Remote-Name", "Remote-Email",
	"X-Remote-User", "X-Remote-Group", "X-Remote-Groups",
	"X-User", "X-Email", "X-Groups", "X-Preferred-Username", "X-Access-Token",
	"X-Ssl-Client-Cert", "X-Ssl-Client-Verify", "X-Ssl-Client-S-Dn", "X-Ssl-Client-I-Dn",
	"X-Client-Cert", "X-Client-Verify", "Ssl-Client-Cert", "Ssl-Client-Verify",
	"X-Original-Url", "X-Rewrite-Url", "X-Original-Uri", "X-Envoy-Original-Path",
	"X-Original-Host", "X-Original-Method",
	// Kong, Keycloak's gatekeeper, Traefik forward auth and others.
	"X-Authenticated-User", "X-Authenticated-Userid", "X-Authenticated-Scope",
	"X-Auth-User", "X-Auth-Email", "X-Auth-Groups", "X-Userinfo", "X-Credential-Identifier",
}

// alwaysStrippedPrefixes are header-name prefixes only the gateway (or an Envoy
// behind it, or an auth proxy's auth_request) may set. X-Tollgate- covers the
// login's claim headers.
var alwaysStrippedPrefixes = []string{
	"X-Tollgate-", "X-Envoy-", "X-Istio-", "X-Auth-Request-",
	// Identity that cloud and product auth proxies assert: Grafana's auth
	// proxy (X-WEBAUTH-USER), AWS ALB, Google IAP, Cloudflare Access, Azure
	// App Service, Kong consumers.
	"X-Webauth-", "X-Amzn-Oidc-", "X-Goog-Authenticated-", "X-Goog-Iap-", "Cf-Access-",
	"X-Ms-Client-Principal", "X-Ms-Token-", "X-Consumer-",
}

// methodOverrideHeaders make frameworks (Rails, Laravel, Express's
// method-override, Spring's HiddenHttpMethodFilter behind proxies) act on
// another method than the one policy judged. Removed from every request.
var methodOverrideHeaders = []string{"X-Http-Method-Override", "X-Http-Method", "X-Method-Override"}

// methodOverrideParams are the query forms of the same (matched without case).
var methodOverrideParams = []string{"_method", "x-http-method-override", "x-http-method", "x-method-override"}

// UnderscoreAction is what happens to a request with '_' in a header name:
// CGI-style backends (PHP, Python WSGI, nginx's underscores_in_headers) read
// "X_Forwarded_For" as X-Forwarded-For, so such a name slips past every
// dash-spelled strip list and policy rule. Envoy's names.
type UnderscoreAction uint8

const (
	// RejectUnderscores answers 400 (Envoy's REJECT_REQUEST; the default).
	RejectUnderscores UnderscoreAction = iota
	// DropUnderscores removes such headers and goes on (DROP_HEADER).
	DropUnderscores
)

// UnderscoreActions are the configuration names, in UnderscoreAction order.
var UnderscoreActions = []string{"REJECT_REQUEST", "DROP_HEADER"}

// headerClass sorts the names above, for one map lookup per header present
// instead of one delete per listed name.
type headerClass uint8

const (
	keep headerClass = iota
	fromTrustedOnly
	never
)

var headerClasses = func() map[string]headerClass {
	m := map[string]headerClass{}
	for _, k := range forwardingHeaders {
		m[k] = fromTrustedOnly
	}
	for _, list := range [][]string{alwaysStripped, clientIPHeaders, methodOverrideHeaders} {
		for _, k := range list {
			m[k] = never
		}
	}
	return m
}()

// hygiene cleans h, a request's headers, before anything reads them. It reports
// false when the request must be refused (an underscore with RejectUnderscores).
func hygiene(h http.Header, trusted bool, underscores UnderscoreAction) bool {
	dropConnectionNamed(h)
	for k := range h {
		if strings.IndexByte(k, '_') >= 0 {
			if underscores == RejectUnderscores {
				return false
			}
			delete(h, k)
			continue
		}
		switch headerClasses[k] {
		case never:
			delete(h, k)
			continue
		case fromTrustedOnly:
			if !trusted {
				delete(h, k)
			}
			continue
		}
		if !trusted && strings.HasPrefix(k, "X-Forwarded-") {
			delete(h, k)
			continue
		}
		for _, p := range alwaysStrippedPrefixes {
			if strings.HasPrefix(k, p) {
				delete(h, k)
				break
			}
		}
	}
	return true
}

// dropConnectionNamed removes the headers a client names in Connection (other
// than the standard options). ReverseProxy removes them too, but only after
// policy has judged them, and after the gateway has set its own headers: a
// client could otherwise show policy a header the upstream never gets, or
// strip X-Request-Id or a claim header the gateway set (RFC 9110 §7.6.1).
// Connection keeps only the standard options, so ReverseProxy finds no name
// in it to remove from what the gateway sets later.
func dropConnectionNamed(h http.Header) {
	conn := h["Connection"]
	if conn == nil {
		return
	}
	var kept []string
	dropped := false
	for _, v := range conn {
		for tok := range strings.SplitSeq(v, ",") {
			tok = strings.TrimSpace(tok)
			switch {
			case tok == "":
			case strings.EqualFold(tok, "close"), strings.EqualFold(tok, "keep-alive"), strings.EqualFold(tok, "upgrade"):
				kept = append(kept, tok)
			default:
				delete(h, http.CanonicalHeaderKey(tok))
				dropped = true
			}
		}
	}
	switch {
	case !dropped:
	case len(kept) == 0:
		delete(h, "Connection")
	default:
		h["Connection"] = []string{strings.Join(kept, ", ")}
	}
}

// upgradeAllowed reports whether a request's Upgrade header (if any) asks for
// a protocol the gateway relays: only WebSocket on GET (RFC 6455). Anything
// else (h2c above all, which would open a tunnel of requests no policy judges
// and no audit records) is refused, as Envoy refuses upgrades not configured.
func upgradeAllowed(r *http.Request) bool {
	up := r.Header["Upgrade"]
	if len(up) == 0 {
		return true
	}
	if len(up) != 1 || r.Method != http.MethodGet {
		return false
	}
	return strings.EqualFold(strings.TrimSpace(up[0]), "websocket")
}

// stripMethodOverride removes method-override parameters from a raw query
// (kept otherwise byte for byte), so the upstream can't act on a method other
// than the one policy judged.
func stripMethodOverride(rawQuery string) string {
	if rawQuery == "" || !mayOverride(rawQuery) {
		return rawQuery
	}
	var b strings.Builder
	for pair := range strings.SplitSeq(rawQuery, "&") {
		if hasOverrideParam(pair) {
			continue
		}
		if b.Len() > 0 {
			b.WriteByte('&')
		}
		b.WriteString(pair)
	}
	return b.String()
}

// mayOverride is a cheap pre-check: every override parameter has "method" in
// its name, possibly percent-encoded ("_%6Dethod"), so look for "ethod" or '%'.
func mayOverride(q string) bool {
	return strings.Contains(strings.ToLower(q), "ethod") || strings.IndexByte(q, '%') >= 0
}

// hasOverrideParam reports whether a "key=value" pair, or any part of it
// between ';' (which some backends read as a separator too), names a
// method-override parameter.
func hasOverrideParam(pair string) bool {
	for part := range strings.SplitSeq(pair, ";") {
		key, _, _ := strings.Cut(part, "=")
		if isOverrideParam(key) {
			return true
		}
	}
	return false
}

func isOverrideParam(key string) bool {
	if strings.IndexByte(key, '%') >= 0 || strings.IndexByte(key, '+') >= 0 {
		if k, err := url.QueryUnescape(key); err == nil {
			key = k
		}
	}
	// PHP (Laravel reads _method from it) drops leading spaces of a name and
	// turns ' ', '.' and '[' into '_': " _method" and ".method" are _method.
	key = strings.TrimLeft(key, " ")
	key = strings.Map(func(r rune) rune {
		if r == ' ' || r == '.' || r == '[' {
			return '_'
		}
		return r
	}, key)
	for _, p := range methodOverrideParams {
		if strings.EqualFold(key, p) {
			return true
		}
	}
	return false
}
