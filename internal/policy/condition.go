package policy

import (
	"fmt"
	"net/textproto"
	"strings"
)

// condition compiles one when entry into a matcher for values and one for
// notValues (their conjunction is Istio's "(OR values) AND NOT (OR notValues)").
func (b *builder) condition(path string, c *conditionDoc) []matcher {
	if c.Key == "" {
		b.d.Errorf(path+".key", "required")
		return nil
	}
	if len(c.Values) == 0 && len(c.NotValues) == 0 {
		b.d.Errorf(path, "set values or notValues")
		return nil
	}
	okV := b.nonEmpty(path+".values", c.Values)
	okN := b.nonEmpty(path+".notValues", c.NotValues)
	if !okV || !okN {
		return nil
	}
	proto, ok := b.conditionKey(path+".key", c.Key)
	if !ok {
		return nil
	}
	var out []matcher
	for _, f := range []list{{"values", c.Values, false}, {"notValues", c.NotValues, true}} {
		if len(f.vals) == 0 {
			continue
		}
		m, ok := b.conditionValues(path+"."+f.name, proto, f.vals)
		if ok {
			m.neg = f.neg
			out = append(out, m)
		}
	}
	return out
}

// conditionKey parses a when key into a matcher template without values.
func (b *builder) conditionKey(path, key string) (matcher, bool) {
	switch key {
	case "source.ip":
		return matcher{attr: aSourceIP}, true
	case "remote.ip":
		return matcher{attr: aRemoteIP}, true
	case "destination.ip":
		return matcher{attr: aDestIP}, true
	case "destination.port":
		return matcher{attr: aPort}, true
	case "source.namespace":
		return matcher{attr: aNamespace}, true
	case "source.principal":
		return matcher{attr: aPrincipal}, true
	case "source.serviceAccount":
		return matcher{attr: aServiceAccount}, true
	case "source.trustDomain":
		return matcher{attr: aTrustDomain}, true
	case "request.auth.principal":
		return matcher{attr: aRequestPrincipal}, true
	case "request.auth.audiences":
		return matcher{attr: aAudiences}, true
	case "request.auth.presenter":
		return matcher{attr: aPresenter}, true
	case "connection.sni":
		return matcher{attr: aSNI}, true
	case "destination.labels", "destination.name", "destination.namespace", "destination.user":
		b.d.Errorf(path, "%q was removed from Istio (v1alpha1) and is not supported", key)
		return matcher{}, false
	}
	switch {
	case strings.HasPrefix(key, "request.headers"):
		names, ok := cutBrackets(key[len("request.headers"):])
		if !ok || len(names) != 1 {
			b.d.Errorf(path, "invalid header key (got %q, want request.headers[NAME])", key)
			return matcher{}, false
		}
		m := matcher{attr: aHeader, strict: b.strict, name: strings.ToLower(names[0])}
		switch m.name {
		case ":method":
			m.pseudo = psMethod
		case ":authority", "host":
			m.pseudo = psAuthority
		case ":path":
			m.pseudo = psPath
		}
		if m.pseudo == psNone {
			// request.Request keys headers as net/http does (canonical MIME form), so
			// the ingress hands over r.Header without copying it.
			m.name = textproto.CanonicalMIMEHeaderKey(names[0])
		}
		return m, true
	case strings.HasPrefix(key, "request.query"):
		if !b.ext {
			b.d.Errorf(path, "request.query[...] is a Tollgate extension: use apiVersion %s", APIVersionTollgateV1)
			return matcher{}, false
		}
		names, ok := cutBrackets(key[len("request.query"):])
		if !ok || len(names) != 1 {
			b.d.Errorf(path, "invalid query key (got %q, want request.query[NAME])", key)
			return matcher{}, false
		}
		return matcher{attr: aQuery, strict: b.strict, name: names[0]}, true
	case strings.HasPrefix(key, "request.auth.claims"):
		names, ok := cutBrackets(key[len("request.auth.claims"):])
		if !ok {
			b.d.Errorf(path, "invalid claim key (got %q, want request.auth.claims[NAME] or request.auth.claims[A][B]...)", key)
			return matcher{}, false
		}
		split := len(names) == 1 && (names[0] == "scope" || names[0] == "permission")
		return matcher{attr: aClaim, claim: names, split: split}, true
	case strings.HasPrefix(key, "experimental.envoy.filters."):
		b.d.Errorf(path, "%q reads Envoy dynamic metadata, which Tollgate does not have", key)
		return matcher{}, false
	}
	b.d.Errorf(path, "unknown key %q%s", key, suggestKey(key))
	return matcher{}, false
}

var knownKeys = []string{
	"request.headers[NAME]", "source.ip", "remote.ip", "source.namespace", "source.principal",
	"source.serviceAccount", "source.trustDomain", "request.auth.principal", "request.auth.audiences",
	"request.auth.presenter", "request.auth.claims[NAME]", "destination.ip", "destination.port", "connection.sni",
}

func suggestKey(key string) string {
	for _, k := range knownKeys {
		if strings.EqualFold(k, key) || strings.EqualFold(strings.TrimSuffix(k, "[NAME]"), strings.SplitN(key, "[", 2)[0]) {
			return fmt.Sprintf(" (did you mean %q?)", k)
		}
	}
	return " (want one of " + strings.Join(knownKeys, ", ") + ")"
}

// conditionValues fills a copy of proto with the values, validated as the
// attribute's own field would be.
func (b *builder) conditionValues(path string, proto matcher, vals []string) (matcher, bool) {
	var m matcher
	ok := true
	switch proto.attr {
	case aSourceIP, aRemoteIP, aDestIP:
		m, ok = b.ips(path, proto.attr, vals)
	case aPort:
		m, ok = b.ports(path, vals)
	case aNamespace:
		m = b.namespaces(vals)
	case aPrincipal:
		m, ok = b.principals(path, vals)
	case aServiceAccount:
		m, ok = b.serviceAccounts(path, vals)
	case aTrustDomain:
		m, ok = b.trustDomainValues(path, vals)
	case aRequestPrincipal:
		m = b.requestPrincipals(vals)
	case aHeader, aQuery:
		m = proto
		if proto.pseudo == psAuthority {
			// The request's host is canonical and its port apart; a raw
			// "Upper.Example.com" or "host:port" value would never equal it, and
			// a DENY on it would let every spelling through.
			m.hosts, ok = parseEach(b, path, vals, parseHostValue)
			break
		}
		for _, v := range vals {
			m.strs = append(m.strs, parseStr(v, smPresent))
		}
	case aSNI:
		m = proto
		m.strs, ok = parseEach(b, path, vals, parseSNIValue)
	default: // audiences, presenter, claims
		m = proto
		for _, v := range vals {
			m.strs = append(m.strs, parseStr(v, smNonEmpty))
		}
	}
	return m, ok
}
