package policy

import (
	"fmt"
	"strings"

	"tollgate.dev/tollgate/internal/config"
)

// builder validates the values of one policy and compiles them into matchers.
type builder struct {
	d      *config.Decoder
	opts   Options
	ns     string // the policy's namespace: serviceAccounts "sa" means "<ns>/sa"
	ext    bool   // tollgate.dev/v1: extensions allowed
	strict bool   // ALLOW policy: repeated values must all match
}

func (b *builder) rule(path string, rd *ruleDoc) *rule {
	r := &rule{}
	if rd.From != nil {
		if len(rd.From) == 0 {
			b.d.Errorf(path+".from", "empty list: omit from to match any source")
		}
		r.from = [][]matcher{}
		for i, f := range rd.From {
			p := fmt.Sprintf("%s.from[%d]", path, i)
			if f.Source == nil {
				b.d.Errorf(p, "source is required")
				continue
			}
			r.from = append(r.from, b.source(p+".source", f.Source))
		}
	}
	if rd.To != nil {
		if len(rd.To) == 0 {
			b.d.Errorf(path+".to", "empty list: omit to to match any operation")
		}
		r.to = [][]matcher{}
		for i, t := range rd.To {
			p := fmt.Sprintf("%s.to[%d]", path, i)
			if t.Operation == nil {
				b.d.Errorf(p, "operation is required")
				continue
			}
			r.to = append(r.to, b.operation(p+".operation", t.Operation))
		}
	}
	for i := range rd.When {
		r.when = append(r.when, b.condition(fmt.Sprintf("%s.when[%d]", path, i), &rd.When[i])...)
	}
	return r
}

// list is one field of a source or operation.
type list struct {
	name string
	vals []string
	neg  bool
}

func (b *builder) source(path string, s *sourceDoc) []matcher {
	fields := []list{
		{"principals", s.Principals, false}, {"notPrincipals", s.NotPrincipals, true},
		{"requestPrincipals", s.RequestPrincipals, false}, {"notRequestPrincipals", s.NotRequestPrincipals, true},
		{"namespaces", s.Namespaces, false}, {"notNamespaces", s.NotNamespaces, true},
		{"ipBlocks", s.IPBlocks, false}, {"notIpBlocks", s.NotIPBlocks, true},
		{"remoteIpBlocks", s.RemoteIPBlocks, false}, {"notRemoteIpBlocks", s.NotRemoteIPBlocks, true},
		{"serviceAccounts", s.ServiceAccounts, false}, {"notServiceAccounts", s.NotServiceAccounts, true},
		{"trustDomains", s.TrustDomains, false}, {"notTrustDomains", s.NotTrustDomains, true},
	}
	if len(s.ServiceAccounts)+len(s.NotServiceAccounts) > 0 &&
		len(s.Principals)+len(s.NotPrincipals)+len(s.Namespaces)+len(s.NotNamespaces) > 0 {
		b.d.Errorf(path, "serviceAccounts cannot be combined with principals or namespaces")
	}
	var out []matcher
	for _, f := range fields {
		if len(f.vals) == 0 {
			continue
		}
		p := path + "." + f.name
		if !b.nonEmpty(p, f.vals) {
			continue
		}
		var m matcher
		var ok bool
		switch strings.TrimPrefix(strings.ToLower(f.name), "not") {
		case "principals":
			m, ok = b.principals(p, f.vals)
		case "requestprincipals":
			m, ok = b.requestPrincipals(f.vals), true
		case "namespaces":
			m, ok = b.namespaces(f.vals), true
		case "ipblocks":
			m, ok = b.ips(p, aSourceIP, f.vals)
		case "remoteipblocks":
			m, ok = b.ips(p, aRemoteIP, f.vals)
		case "serviceaccounts":
			m, ok = b.serviceAccounts(p, f.vals)
		case "trustdomains":
			m, ok = b.trustDomainValues(p, f.vals)
		}
		if ok {
			m.neg = f.neg
			out = append(out, m)
		}
	}
	if out == nil && !b.anyValues(fields) && !b.reported(path) {
		b.d.Errorf(path, "must not be empty: set at least one field")
	}
	return nonNil(out)
}

func (b *builder) operation(path string, o *operationDoc) []matcher {
	fields := []list{
		{"hosts", o.Hosts, false}, {"notHosts", o.NotHosts, true},
		{"ports", o.Ports, false}, {"notPorts", o.NotPorts, true},
		{"methods", o.Methods, false}, {"notMethods", o.NotMethods, true},
		{"paths", o.Paths, false}, {"notPaths", o.NotPaths, true},
		{"pathRegex", o.PathRegex, false}, {"notPathRegex", o.NotPathRegex, true},
	}
	var out []matcher
	for _, f := range fields {
		p := path + "." + f.name
		if strings.HasSuffix(f.name, "athRegex") && b.d.Has(p) && !b.ext {
			b.d.Errorf(p, "%s is a Tollgate extension: use apiVersion %s", f.name, APIVersionTollgateV1)
			continue
		}
		if len(f.vals) == 0 || !b.nonEmpty(p, f.vals) {
			continue
		}
		var m matcher
		ok := true
		switch strings.TrimPrefix(strings.ToLower(f.name), "not") {
		case "hosts":
			m, ok = b.hosts(p, f.vals)
		case "ports":
			m, ok = b.ports(p, f.vals)
		case "methods":
			m = matcher{attr: aMethod}
			for _, v := range f.vals {
				m.strs = append(m.strs, parseStr(v, smPresent))
			}
		case "paths":
			m, ok = b.paths(p, f.vals)
		case "pathregex":
			m, ok = b.pathRegex(p, f.vals)
		}
		if ok {
			m.neg = f.neg
			out = append(out, m)
		}
	}
	if out == nil && !b.anyValues(fields) && !b.reported(path) {
		b.d.Errorf(path, "must not be empty: set at least one field")
	}
	return nonNil(out)
}

func appendKey(keys []string, k string) []string {
	if contains(keys, k) {
		return keys
	}
	return append(keys, k)
}

// nonNil keeps an entry whose fields all failed validation distinct from "absent".
func nonNil(ms []matcher) []matcher {
	if ms == nil {
		return []matcher{}
	}
	return ms
}

func (b *builder) anyValues(fields []list) bool {
	for _, f := range fields {
		if len(f.vals) > 0 {
			return true
		}
	}
	return false
}

// reported says whether a problem was already recorded inside path (an unknown
// field, say), which makes "must not be empty" noise.
func (b *builder) reported(path string) bool {
	for _, e := range b.d.Errs {
		if strings.HasPrefix(e.Path, path+".") {
			return true
		}
	}
	return false
}

// nonEmpty reports empty strings in a list, which Istio rejects.
func (b *builder) nonEmpty(path string, vals []string) bool {
	ok := true
	for i, v := range vals {
		if v == "" {
			b.d.Errorf(fmt.Sprintf("%s[%d]", path, i), "empty value")
			ok = false
		}
	}
	return ok
}

// hosts compiles hosts/notHosts; exact names key the rule index.
func (b *builder) hosts(path string, vals []string) (matcher, bool) {
	m := matcher{attr: aHost, keyed: true}
	// The values of request.headers[:authority] and [host] conditions are
	// compiled the same way (conditionValues).
	var ok bool
	m.hosts, ok = parseEach(b, path, vals, parseHostValue)
	for _, h := range m.hosts {
		if h.name.kind == smExact {
			m.keys = appendKey(m.keys, h.name.v)
		} else {
			m.keyed = false
		}
	}
	return m, ok
}

// parseEach compiles every value of a list with parse and reports each one it
// refuses at its position; ok says whether all were accepted.
func parseEach[T any](b *builder, path string, vals []string, parse func(string) (T, error)) (out []T, ok bool) {
	ok = true
	for i, v := range vals {
		x, err := parse(v)
		if err != nil {
			b.d.Errorf(fmt.Sprintf("%s[%d]", path, i), "%v", err)
			ok = false
			continue
		}
		out = append(out, x)
	}
	return out, ok
}
