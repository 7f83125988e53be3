package exchange

import (
	"net/http"
	"slices"
	"strings"
	"testing"
)

// FuzzHygiene runs the whole header hygiene (FuzzDropConnectionNamed covers
// only its Connection step, on one name) over Connection field lines and
// header names of the fuzzer's choosing, keyed as net/http keys them.
//
// Properties:
//   - no header a Connection line names survives (RFC 9110 §7.6.1: a client
//     could otherwise show policy a header the upstream never gets, or strip
//     one the gateway sets), and what stays of Connection names only close,
//     keep-alive and upgrade;
//   - an accepted request has no header name with '_'; with REJECT_REQUEST a
//     refused one had such a name left after the Connection step;
//   - from an untrusted peer no forwarding or client-IP header and no other
//     X-Forwarded-* survives; from anyone, no identity, method-override or
//     X-Tollgate-/X-Envoy-/X-Istio-/X-Auth-Request- header;
//   - an ordinary header nobody named is kept with its values;
//   - hygiene is idempotent.
func FuzzHygiene(f *testing.F) {
	f.Add("keep-alive, X-Request-Id", "x-role", "X-Request-Id,X-Role,Accept", false, false)
	f.Add("close, X-A ,,x-b", "", "X-A,x-b,X-C", true, false)
	f.Add("upgrade", "Upgrade", "Upgrade,Connection", false, true)
	f.Add("X-Forwarded-For, connection", "", "X-Forwarded-For,X-Forwarded-Anything,X-Real-Ip,Accept", true, false)
	f.Add("", "", "X-Tollgate-User,X-Envoy-Original-Path,X-Istio-Attributes,X-Auth-Request-Email,X-Forwarded-User,X-Http-Method-Override,X-Role", true, false)
	f.Add("close, connection", "X-A", "X-A,Accept", false, false)
	f.Add("x_forwarded_for", "", "X_Forwarded_For,Accept", false, true)
	f.Add("", "", "X_Forwarded_For,Accept", false, true)
	f.Fuzz(func(t *testing.T, conn1, conn2, names string, trusted, reject bool) {
		h := http.Header{}
		var conn []string
		for _, c := range []string{conn1, conn2} {
			if c != "" {
				conn = append(conn, c)
			}
		}
		if conn != nil {
			h["Connection"] = slices.Clone(conn)
		}
		for _, n := range strings.Split(names, ",") {
			if n = strings.TrimSpace(n); n != "" && n != "Connection" {
				k := http.CanonicalHeaderKey(n)
				h[k] = append(h[k], "v-"+k)
			}
		}
		before := h.Clone()
		action := DropUnderscores
		if reject {
			action = RejectUnderscores
		}
		ok := hygiene(h, trusted, action)

		named := map[string]bool{}
		for _, v := range conn {
			for _, tok := range strings.Split(v, ",") {
				tok = strings.TrimSpace(tok)
				switch strings.ToLower(tok) {
				case "", "close", "keep-alive", "upgrade", "connection":
					// "Connection: close, connection" names itself: what stays
					// of it is checked below.
				default:
					named[http.CanonicalHeaderKey(tok)] = true
				}
			}
		}
		if !ok {
			if !reject {
				t.Fatalf("refused with DROP_HEADER: %v", before)
			}
			underscore := false
			for k := range before {
				underscore = underscore || strings.Contains(k, "_") && !named[k]
			}
			if !underscore {
				t.Fatalf("refused without an underscore name: %v", before)
			}
			return
		}
		for k, vs := range h {
			if named[k] {
				t.Fatalf("%s, named in Connection %q, survives: %v", k, conn, h)
			}
			if strings.Contains(k, "_") {
				t.Fatalf("%s survives with an underscore: %v", k, h)
			}
			switch c := headerClasses[k]; {
			case c == never, !trusted && (c == fromTrustedOnly || strings.HasPrefix(k, "X-Forwarded-")):
				t.Fatalf("trusted=%v: %s survives", trusted, k)
			}
			for _, p := range alwaysStrippedPrefixes {
				if strings.HasPrefix(k, p) {
					t.Fatalf("%s survives", k)
				}
			}
			if k == "Connection" {
				for _, v := range vs {
					for _, tok := range strings.Split(v, ",") {
						switch strings.ToLower(strings.TrimSpace(tok)) {
						case "", "close", "keep-alive", "upgrade":
						default:
							t.Fatalf("Connection %q still names %q", vs, tok)
						}
					}
				}
			} else if !slices.Equal(vs, before[k]) {
				t.Fatalf("%s changed: %q -> %q", k, before[k], vs)
			}
		}
		for k, vs := range before {
			ordinary := !named[k] && k != "Connection" && !strings.Contains(k, "_") &&
				headerClasses[k] == keep && !strings.HasPrefix(k, "X-Forwarded-")
			for _, p := range alwaysStrippedPrefixes {
				ordinary = ordinary && !strings.HasPrefix(k, p)
			}
			if ordinary && !slices.Equal(h[k], vs) {
				t.Fatalf("ordinary header %s removed or changed: %q -> %q", k, vs, h[k])
			}
		}
		again := h.Clone()
		if !hygiene(again, trusted, action) || len(again) != len(h) {
			t.Fatalf("not idempotent: %v -> %v", h, again)
		}
		for k, vs := range h {
			if !slices.Equal(again[k], vs) {
				t.Fatalf("not idempotent: %s %q -> %q", k, vs, again[k])
			}
		}
	})
}
