package pathnorm

import "testing"

// Default with the other path-parameter actions.
var (
	optsDefaultKeep  = Options{Mode: ModeMergeSlashes, EscapedSlashes: EscapedSlashesReject, PathParameters: PathParametersKeep}
	optsDefaultStrip = Options{Mode: ModeMergeSlashes, EscapedSlashes: EscapedSlashesReject, PathParameters: PathParametersStrip}
)

// TestCVEs replays every path-shaped bypass of the Istio reference (§14)
// against Tollgate's Default and, where it differs, Istio's default. The
// expectation is what the policy judges and the upstream receives.
func TestCVEs(t *testing.T) {
	tests := []struct {
		cve  string
		in   string
		opts Options
		want want
	}{
		// Envoy did not normalize before RBAC: "/info/../private" passed an
		// allow-prefix "/info/".
		{cve: "CVE-2019-9901", in: "/info/../private", opts: Default(), want: ok("/private")},
		{cve: "CVE-2019-9901 BASE", in: "/info/../private", opts: IstioDefault(), want: ok("/private")},
		{cve: "CVE-2019-9901 escaped", in: "/info/%2e%2e/private", opts: Default(), want: ok("/private")},

		// Backends that merge or decode slashes served /admin although a
		// DENY on /admin did not match.
		{cve: "CVE-2021-31920 //admin", in: "//admin", opts: Default(), want: ok("/admin")},
		{cve: "CVE-2021-31920 //admin BASE keeps it (vulnerable by design)", in: "//admin", opts: IstioDefault(), want: ok("//admin")},
		{cve: "CVE-2021-31920 /admin%2Fx", in: "/admin%2Fx", opts: Default(), want: rejected(ErrEscapedSlash)},
		{cve: "CVE-2021-31920 /admin%2Fx decoded", in: "/admin%2Fx", opts: optsDecode, want: ok("/admin/x")},
		{cve: "CVE-2021-31920 /admin%2Fx BASE", in: "/admin%2Fx", opts: IstioDefault(), want: ok("/admin%2Fx")},
		{cve: "CVE-2021-31920 %5C", in: "/x%5C..%5Cadmin", opts: Default(), want: rejected(ErrEscapedSlash)},
		{cve: "CVE-2021-31920 %5c decoded", in: "/x%5c..%5cadmin", opts: optsDecode, want: ok("/admin")},
		{cve: "CVE-2021-31920 raw backslash", in: `/x\..\admin`, opts: Default(), want: ok("/admin")},

		// "#" was kept in :path and forwarded as %23.
		{cve: "CVE-2021-39156", in: "/user/profile#section1", opts: Default(), want: ok("/user/profile")},
		{cve: "CVE-2021-39156 NONE", in: "/user/profile#section1", opts: optsNone, want: ok("/user/profile")},

		// Exact path rules compared the query and fragment too.
		{cve: "CVE-2020-8595 query", in: "/protected?x", opts: Default(), want: ok("/protected")},
		{cve: "CVE-2020-8595 fragment", in: "/protected#x", opts: Default(), want: ok("/protected")},

		// Tomcat strips ";..." before resolving dot segments. Tollgate's
		// Default refuses the parameter outright; with parameters kept
		// (Istio's behaviour) the dot segment is still resolved.
		{cve: "CVE-2026-73511", in: "/public/..;/admin", opts: Default(), want: rejected(ErrPathParameter)},
		{cve: "CVE-2026-73511 KEEP", in: "/public/..;/admin", opts: optsDefaultKeep, want: ok("/admin")},
		{cve: "CVE-2026-73511 STRIP", in: "/public/..;/admin", opts: optsDefaultStrip, want: ok("/admin")},
		{cve: "CVE-2026-73511 BASE", in: "/public/..;/admin", opts: IstioDefault(), want: ok("/admin")},
		{cve: "CVE-2026-73511 params", in: "/public/..;jsessionid=1/admin", opts: Default(), want: rejected(ErrPathParameter)},
		{cve: "CVE-2026-73511 params KEEP", in: "/public/..;jsessionid=1/admin", opts: optsDefaultKeep, want: ok("/admin")},
		{cve: "CVE-2026-73511 escaped dots", in: "/public/%2e%2E;/admin", opts: Default(), want: rejected(ErrPathParameter)},
		{cve: "CVE-2026-73511 escaped dots KEEP", in: "/public/%2e%2E;/admin", opts: optsDefaultKeep, want: ok("/admin")},
		{cve: "CVE-2026-73511 escaped semicolon", in: "/public/..%3b/admin", opts: Default(), want: rejected(ErrEscapedSemicolon)},
		{cve: "CVE-2026-73511 escaped semicolon KEEP", in: "/public/..%3b/admin", opts: optsDefaultKeep, want: ok("/admin")},
		{cve: "CVE-2026-73511 dot", in: "/public/.;x/admin", opts: optsDefaultKeep, want: ok("/public/admin")},
		{cve: "CVE-2026-73511 leading", in: "/..;/admin", opts: optsDefaultKeep, want: ok("/admin")},
		{cve: "CVE-2026-73511 leading Default", in: "/..;/admin", opts: Default(), want: rejected(ErrPathParameter)},
		{cve: "CVE-2026-73511 trailing", in: "/public/admin/..;", opts: Default(), want: ok("/public/")},
		{cve: "CVE-2026-73511 not a dot segment", in: "/admin;x=y", opts: Default(), want: ok("/admin;x=y")},
		{cve: "CVE-2026-73511 three dots", in: "/public/...;/admin", opts: optsDefaultKeep, want: ok("/public/...;/admin")},
		{cve: "CVE-2026-73511 NONE untouched", in: "/public/..;/admin", opts: optsNone, want: ok("/public/..;/admin")},

		// Servlet containers strip ";x" from every segment and serve
		// "/admin;x/users" as /admin/users, past a DENY on "/admin/*".
		{cve: "servlet path parameter", in: "/admin;x/users", opts: Default(), want: rejected(ErrPathParameter)},
		{cve: "servlet path parameter KEEP (Istio)", in: "/admin;x/users", opts: IstioDefault(), want: ok("/admin;x/users")},
		{cve: "servlet path parameter STRIP", in: "/admin;x/users", opts: optsDefaultStrip, want: ok("/admin/users")},
		{cve: "servlet escaped parameter", in: "/admin%3Bx/users", opts: Default(), want: rejected(ErrEscapedSemicolon)},
		{cve: "servlet jsessionid in the last segment", in: "/shop/cart;jsessionid=ABC", opts: Default(), want: ok("/shop/cart;jsessionid=ABC")},

		// Double encoding is never decoded twice: the backend that decodes
		// once sees "%2e", not ".".
		{cve: "double encoding %252e", in: "/public/%252e%252e/admin", opts: Default(), want: ok("/public/%252e%252e/admin")},
		{cve: "encoded dots %2e%2e", in: "/public/%2e%2e/admin", opts: Default(), want: ok("/admin")},
		{cve: "encoded dots mixed case", in: "/public/%2E%2e/admin", opts: IstioDefault(), want: ok("/admin")},
		// Overlong UTF-8 for '.' is not UTF-8 and is never decoded.
		{cve: "overlong %c0%ae", in: "/public/%c0%ae%c0%ae/admin", opts: Default(), want: ok("/public/%c0%ae%c0%ae/admin")},

		// NUL ends strings in C backends (CVE-2019-9900's lesson).
		{cve: "NUL escaped", in: "/admin%00.html", opts: Default(), want: rejected(ErrControlChar)},
		{cve: "NUL raw", in: "/admin\x00.html", opts: Default(), want: rejected(ErrControlChar)},
		{cve: "NUL in NONE", in: "/admin%00", opts: optsNone, want: rejected(ErrControlChar)},
		{cve: "NUL in query", in: "/admin?x=%00", opts: Default(), want: rejected(ErrControlChar)},
	}
	for _, tt := range tests {
		t.Run(tt.cve, func(t *testing.T) {
			check(t, tt.in, tt.opts, tt.want)
		})
	}
}
