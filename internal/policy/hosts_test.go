package policy

import (
	"fmt"
	"strconv"
	"strings"
	"testing"

	"tollgate.dev/tollgate/internal/request"
)

// listener is the port the requests of these tests arrive on; the router treats
// "authz.example.com:18443" and "authz.example.com" as one host there.
const listener = 18443

// arrive is a request for authority (canonicalized as a front does, see at)
// arriving on the listener port. The ingress builds the same request from an
// HTTP/1.1 Host header and an HTTP/2 :authority, so one case covers both.
func arrive(authority string) request.Request {
	return at(authority, request.Request{Protocol: request.HTTP, Destination: request.Destination{Port: listener}})
}

func withSNI(sni string) request.Request {
	return request.Request{Protocol: request.HTTP, Destination: request.Destination{Port: listener}, SNI: sni}
}

// TestHostConditionsAreCanonical holds every bypass the attacker review found
// on DENY rules that read the request's host through a when condition: each
// spelling that routing takes for the denied host must be denied.
func TestHostConditionsAreCanonical(t *testing.T) {
	for _, key := range []string{"request.headers[:authority]", "request.headers[host]", "request.headers[Host]"} {
		t.Run(key, func(t *testing.T) {
			cond := func(name, op, vals string) string {
				return pol(name, fmt.Sprintf(`{action: DENY, rules: [{when: [{key: %q, %s: [%s]}]}]}`, key, op, vals))
			}
			policies := cond("names", "values", `authz.example.com, Upper.Example.com`) +
				cond("port", "values", `"p.example:8443"`) +
				cond("anyport", "values", `"q.example:*"`) +
				cond("idn", "values", `bücher.example.com`) +
				cond("suffix", "values", `"*.Suffix.Example."`) +
				cond("prefix", "values", `"Admin.*"`)
			runDecide(t, policies, Options{}, []decideCase{
				{"plain host", arrive("authz.example.com"), denyBy("names", 0)},
				{"listener port", arrive("authz.example.com:18443"), denyBy("names", 0)},
				{"default port", arrive("authz.example.com:443"), denyBy("names", 0)},
				{"upper case and trailing dot", arrive("AUTHZ.Example.COM."), denyBy("names", 0)},
				{"upper-case value", arrive("Upper.Example.com"), denyBy("names", 0)},
				{"upper-case value, request lower case with port", arrive("upper.example.com:8443"), denyBy("names", 0)},
				{"another host", arrive("other.example.com"), allowDefault},
				{"a longer name is another host", arrive("authz.example.com.evil"), allowDefault},
				{"no host", request.Request{Protocol: request.HTTP}, allowDefault},
				{"value with port, same port", arrive("p.example:8443"), denyBy("port", 0)},
				{"value with port, no port: the port arrived on", at("p.example", request.Request{Destination: request.Destination{Port: 8443}}), denyBy("port", 0)},
				{"value with port, other port", arrive("p.example:443"), allowDefault},
				{"value with port, no port, other listener", arrive("p.example"), allowDefault},
				{"any port, none", arrive("q.example"), denyBy("anyport", 0)},
				{"any port", arrive("q.example:9"), denyBy("anyport", 0)},
				{"internationalized value, A-label request", arrive("xn--bcher-kva.example.com"), denyBy("idn", 0)},
				{"internationalized value, Unicode request", arrive("BÜCHER.example.com:443"), denyBy("idn", 0)},
				{"suffix with port", arrive("a.suffix.example:443"), denyBy("suffix", 0)},
				{"suffix, upper case and dot", arrive("A.SUFFIX.EXAMPLE."), denyBy("suffix", 0)},
				{"prefix with port", arrive("admin.internal:8080"), denyBy("prefix", 0)},
			})
		})
	}
}

// An ALLOW notValues on the authority must see the host however it is spelled.
func TestAuthorityNotValuesIsCanonical(t *testing.T) {
	runDecide(t, pol("not-admin", `{rules: [{when: [{key: "request.headers[:authority]", notValues: [Admin.Example.com]}]}]}`), Options{}, []decideCase{
		{"other host", arrive("www.example.com"), allowBy("not-admin", 0)},
		{"admin", arrive("admin.example.com"), denyDefault},
		{"admin with port", arrive("admin.example.com:443"), denyDefault},
		{"admin with trailing dot", arrive("ADMIN.example.com."), denyDefault},
		{"no host satisfies notValues", request.Request{Protocol: request.HTTP}, allowBy("not-admin", 0)},
	})
}

func TestSNIConditionIsCanonical(t *testing.T) {
	sni := func(name, vals string) string {
		return pol(name, `{action: DENY, rules: [{when: [{key: connection.sni, values: [`+vals+`]}]}]}`)
	}
	policies := sni("upper", "LOCALHOST") + sni("dot", `"Dot.Example."`) + sni("idn", "bücher.example") +
		sni("suffix", `"*.Sni.Example."`) + sni("prefix", `"API.*"`)
	runDecide(t, policies, Options{}, []decideCase{
		{"upper-case value", withSNI("localhost"), denyBy("upper", 0)},
		{"trailing-dot value", withSNI("dot.example"), denyBy("dot", 0)},
		{"internationalized value, A-label SNI", withSNI("xn--bcher-kva.example"), denyBy("idn", 0)},
		// The exchange lower-cases ASCII only; a Unicode SNI is judged in A-labels.
		{"internationalized value, Unicode SNI", withSNI("bÜcher.example"), denyBy("idn", 0)},
		{"suffix", withSNI("a.sni.example"), denyBy("suffix", 0)},
		{"prefix", withSNI("api.example"), denyBy("prefix", 0)},
		{"another name", withSNI("localhost.example"), allowDefault},
		{"no SNI", withSNI(""), allowDefault},
		{"an SNI that is no host", withSNI("local host"), allowDefault},
	})
	// "localhost." as a value, separately: the first policy would catch it anyway.
	runDecide(t, sni("dot", `"localhost."`), Options{}, []decideCase{
		{"trailing-dot value", withSNI("localhost"), denyBy("dot", 0)},
	})
}

// TestHostConditionValueErrors: a value that can't be a host is refused at
// load, with its position, instead of never matching.
func TestHostConditionValueErrors(t *testing.T) {
	when := func(key, vals string) string {
		return pol("p", `{action: DENY, rules: [{when: [{key: "`+key+`", values: [`+vals+`]}]}]}`)
	}
	tests := []struct {
		name string
		src  string
		want string
	}{
		{"authority not a host", when("request.headers[:authority]", `a.example, "a b.example"`),
			`p.yaml:4:95: spec.rules[0].when[0].values[1]: invalid host: "a b.example" (want a host name, an IP literal, or one with a leading or trailing '*')`},
		{"authority bad port", when("request.headers[host]", `"a.example:0443"`),
			`p.yaml:4:78: spec.rules[0].when[0].values[0]: invalid port "0443" in host "a.example:0443" (want name, name:port or name:*)`},
		{"authority port pattern", when("request.headers[:authority]", `"a.example:84*"`),
			`p.yaml:4:84: spec.rules[0].when[0].values[0]: invalid port "84*" in host "a.example:84*" (want name, name:port or name:*)`},
		{"authority suffix with a character no host has", when("request.headers[:authority]", `"*.exa mple"`),
			`p.yaml:4:84: spec.rules[0].when[0].values[0]: host "*.exa mple": character ' ' never occurs in a host, so the value could never match`},
		{"authority Unicode suffix", when("request.headers[:authority]", `"*.bücher.example"`),
			`p.yaml:4:84: spec.rules[0].when[0].values[0]: host "*.bücher.example": write internationalized names in A-labels (xn--) when they carry a '*'`},
		{"sni with port", when("connection.sni", `"a.example:443"`),
			`p.yaml:4:71: spec.rules[0].when[0].values[0]: invalid server name "a.example:443": an SNI carries no port (want a host name)`},
		{"sni suffix with port", when("connection.sni", `"*.example:443"`),
			`p.yaml:4:71: spec.rules[0].when[0].values[0]: invalid server name "*.example:443": an SNI carries no port (want a host name)`},
		{"sni not a host", when("connection.sni", `"a_b..example"`),
			`p.yaml:4:71: spec.rules[0].when[0].values[0]: invalid host: "a_b..example" (want a host name, an IP literal, or one with a leading or trailing '*')`},
		{"hosts too", pol("p", `{rules: [{to: [{operation: {hosts: ["*.a/b"]}}]}]}`),
			`p.yaml:4:43: spec.rules[0].to[0].operation.hosts[0]: host "*.a/b": character '/' never occurs in a host, so the value could never match`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := compileYAML(t, tc.src, Options{})
			if err == nil {
				t.Fatalf("no error, want %s", tc.want)
			}
			if got := err.Error(); got != tc.want {
				t.Errorf("error:\n got: %s\nwant: %s", got, tc.want)
			}
		})
	}
}

// FuzzHostConditionsAgree checks that the three ways a policy names the
// request's host judge alike: operation hosts, a request.headers[:authority]
// condition and, for names without a port, connection.sni with the same name
// in the TLS handshake. Each value is accepted by all or refused by all.
func FuzzHostConditionsAgree(f *testing.F) {
	for _, s := range [][2]string{
		{"authz.example.com", "authz.example.com:18443"},
		{"Upper.Example.com", "upper.example.com"},
		{"LOCALHOST", "localhost"},
		{"localhost.", "localhost"},
		{"bücher.example.com", "xn--bcher-kva.example.com"},
		{"*.Example.COM.", "a.example.com:443"},
		{"a.example:8443", "a.example"},
		{"a.example:*", "A.example:1"},
		{"[::1]", "[0:0::1]:80"},
		{"ap*", "apx"},
		{"*", "x"},
		{"*.a b", "a"},
	} {
		f.Add(s[0], s[1], uint16(443))
	}
	f.Fuzz(func(t *testing.T, value, authority string, port uint16) {
		a, err := request.ParseAuthority(authority)
		if err != nil {
			return // a front refuses it with 400: never judged
		}
		r := request.Request{Protocol: request.HTTP, Host: a.Host, HostPort: a.Port, Destination: request.Destination{Port: int(port)}}
		q := strconv.Quote(value)
		for _, op := range [][2]string{{"hosts", "values"}, {"notHosts", "notValues"}} {
			byHosts, errH := compileYAML(t, pol("p", `{rules: [{to: [{operation: {`+op[0]+`: [`+q+`]}}]}]}`), Options{})
			byCond, errC := compileYAML(t, pol("p", `{rules: [{when: [{key: "request.headers[:authority]", `+op[1]+`: [`+q+`]}]}]}`), Options{})
			if (errH == nil) != (errC == nil) {
				t.Fatalf("value %q: hosts error %v, :authority error %v", value, errH, errC)
			}
			if errH != nil {
				continue
			}
			dh := byHosts.EngineAllPolicies().Decide(&r)
			dc := byCond.EngineAllPolicies().Decide(&r)
			if dh.Allow != dc.Allow {
				t.Fatalf("%s %q vs %s %q: hosts allow=%v, :authority allow=%v", op[0], value, op[1], authority, dh.Allow, dc.Allow)
			}
			if a.Port != 0 || strings.ContainsRune(value, ':') || strings.HasPrefix(authority, "[") {
				continue // SNI has no port and no IP literal
			}
			// The exchange hands policy the SNI lower-cased (ASCII) without a
			// trailing dot; policy canonicalizes the rest.
			sr := r
			sr.Host, sr.HostPort = "", 0
			sr.SNI = strings.TrimSuffix(asciiLower(authority), ".")
			bySNI, errS := compileYAML(t, pol("p", `{rules: [{when: [{key: connection.sni, `+op[1]+`: [`+q+`]}]}]}`), Options{})
			if errS != nil {
				t.Fatalf("value %q: hosts accepted, connection.sni refused: %v", value, errS)
			}
			ds := bySNI.EngineAllPolicies().Decide(&sr)
			if dh.Allow != ds.Allow {
				t.Fatalf("%s %q vs connection.sni %s %q: hosts allow=%v, sni allow=%v", op[0], value, op[1], authority, dh.Allow, ds.Allow)
			}
		}
	})
}

func asciiLower(s string) string {
	b := []byte(s)
	for i, c := range b {
		if 'A' <= c && c <= 'Z' {
			b[i] = c + 'a' - 'A'
		}
	}
	return string(b)
}
