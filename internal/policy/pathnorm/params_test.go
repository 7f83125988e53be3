package pathnorm

import (
	"errors"
	"testing"
)

// byAction is one expected outcome per path-parameter action.
type byAction struct {
	keep, strip, reject, exceptLast want
}

func acts(keep, strip, reject, exceptLast want) byAction {
	return byAction{keep: keep, strip: strip, reject: reject, exceptLast: exceptLast}
}

// same is the same outcome under every action: paths without a parameter.
func same(w want) byAction { return acts(w, w, w, w) }

func (b byAction) get(p PathParameters) want {
	switch p {
	case PathParametersKeep:
		return b.keep
	case PathParametersStrip:
		return b.strip
	case PathParametersReject:
		return b.reject
	default:
		return b.exceptLast
	}
}

var (
	errPP   = rejected(ErrPathParameter)
	errSemi = rejected(ErrEscapedSemicolon)
	// refusedOutsideLast is the outcome of a ';' outside the last segment.
	refusedOutsideLast = func(keep, strip want) byAction { return acts(keep, strip, errPP, errPP) }
	// escapedSemicolon is the outcome of a %3B: kept by KEEP only.
	escapedSemicolon = func(keep want) byAction { return acts(keep, errSemi, errSemi, errSemi) }
)

// TestPathParameters runs servlet-style path-parameter attacks and
// legitimate parameters through every mode and every path-parameter
// action. NONE, BASE and MERGE_SLASHES keep escaped slashes (Istio's
// action for them); DECODE_AND_MERGE_SLASHES decodes them. A column left
// empty has the outcome of the column before it.
func TestPathParameters(t *testing.T) {
	tests := []struct {
		name                      string
		in                        string
		none, base, merge, decode byAction
	}{
		{
			name: "no parameter", in: "/api/v1/users",
			none: same(ok("/api/v1/users")),
		},
		{
			// The servlet upstream serves /admin/users; a DENY on
			// "/admin/*" does not match the raw path.
			name: "parameter in a middle segment", in: "/admin;x/users",
			none: refusedOutsideLast(ok("/admin;x/users"), ok("/admin/users")),
		},
		{
			name: "empty parameter in a middle segment", in: "/admin;/users",
			none: refusedOutsideLast(ok("/admin;/users"), ok("/admin/users")),
		},
		{
			name: "several parameters in one segment", in: "/a;b;c/d",
			none: refusedOutsideLast(ok("/a;b;c/d"), ok("/a/d")),
		},
		{
			name: "segment that is only a parameter", in: "/x/;/y",
			none:  refusedOutsideLast(ok("/x/;/y"), ok("/x//y")),
			merge: refusedOutsideLast(ok("/x/;/y"), ok("/x/y")),
		},
		{
			// CVE-2026-73511: Tomcat resolves "..;" as "..".
			name: "parameterized dot dot", in: "/public/..;/admin",
			none: refusedOutsideLast(ok("/public/..;/admin"), ok("/public/../admin")),
			base: refusedOutsideLast(ok("/admin"), ok("/admin")),
		},
		{
			name: "parameterized dot", in: "/.;x/admin",
			none: refusedOutsideLast(ok("/.;x/admin"), ok("/./admin")),
			base: refusedOutsideLast(ok("/admin"), ok("/admin")),
		},
		{
			name: "parameter eaten by a later dot dot", in: "/a;x/../b",
			none: refusedOutsideLast(ok("/a;x/../b"), ok("/a/../b")),
			base: refusedOutsideLast(ok("/b"), ok("/b")),
		},
		{
			name: "parameter in the last segment", in: "/shop/cart;jsessionid=ABC",
			none: acts(ok("/shop/cart;jsessionid=ABC"), ok("/shop/cart"), errPP, ok("/shop/cart;jsessionid=ABC")),
		},
		{
			name: "several parameters in the last segment", in: "/a;b=c;d=e",
			none: acts(ok("/a;b=c;d=e"), ok("/a"), errPP, ok("/a;b=c;d=e")),
		},
		{
			name: "empty parameter in the last segment", in: "/admin;",
			none: acts(ok("/admin;"), ok("/admin"), errPP, ok("/admin;")),
		},
		{
			name: "parameter before a trailing slash", in: "/admin;/",
			none: refusedOutsideLast(ok("/admin;/"), ok("/admin/")),
		},
		{
			name: "root parameter", in: "/;x",
			none: acts(ok("/;x"), ok("/"), errPP, ok("/;x")),
		},
		{
			name: "parameterized dot dot as the last segment", in: "/public/admin/..;",
			none: acts(ok("/public/admin/..;"), ok("/public/admin/.."), errPP, ok("/public/admin/..;")),
			base: acts(ok("/public/"), ok("/public/"), errPP, ok("/public/")),
		},
		{
			name: "double slashes with parameters", in: "//admin;x//users",
			none:  refusedOutsideLast(ok("//admin;x//users"), ok("//admin//users")),
			merge: refusedOutsideLast(ok("/admin;x/users"), ok("/admin/users")),
		},
		{
			name: "double slashes and a last-segment parameter", in: "//shop//cart;x",
			none:  acts(ok("//shop//cart;x"), ok("//shop//cart"), errPP, ok("//shop//cart;x")),
			merge: acts(ok("/shop/cart;x"), ok("/shop/cart"), errPP, ok("/shop/cart;x")),
		},
		{
			// A container that decodes before it strips serves
			// /admin/users.
			name: "escaped semicolon", in: "/admin%3Bx/users",
			none: escapedSemicolon(ok("/admin%3Bx/users")),
		},
		{
			name: "escaped semicolon lower case in the last segment", in: "/files/a%3bb.txt",
			none: escapedSemicolon(ok("/files/a%3bb.txt")),
		},
		{
			name: "escaped semicolon after dot dot", in: "/public/..%3b/admin",
			none: escapedSemicolon(ok("/public/..%3b/admin")),
			base: escapedSemicolon(ok("/admin")),
		},
		{
			// One decoding gives "%3B", not ';'.
			name: "double-encoded semicolon", in: "/admin%253Bx/users",
			none: same(ok("/admin%253Bx/users")),
		},
		{
			// Kept %2F: the parameter runs to the next real '/', so STRIP
			// drops the rest, as Tomcat does; a decoding reader may still
			// split at the %2F, so it is not the last segment.
			name: "parameter before an escaped slash", in: "/admin;x%2Fusers",
			none:   refusedOutsideLast(ok("/admin;x%2Fusers"), ok("/admin")),
			decode: refusedOutsideLast(ok("/admin;x/users"), ok("/admin/users")),
		},
		{
			name: "parameter before an escaped backslash", in: "/admin;x%5Cusers",
			none:   refusedOutsideLast(ok("/admin;x%5Cusers"), ok("/admin")),
			decode: refusedOutsideLast(ok("/admin;x/users"), ok("/admin/users")),
		},
		{
			name: "parameter after an escaped slash", in: "/admin%2Fx;y",
			none:   acts(ok("/admin%2Fx;y"), ok("/admin%2Fx"), errPP, ok("/admin%2Fx;y")),
			decode: acts(ok("/admin/x;y"), ok("/admin/x"), errPP, ok("/admin/x;y")),
		},
		{
			// '\' is kept in NONE, so the parameter runs to the next '/'.
			name: "parameter before a backslash", in: `/admin;x\users`,
			none: refusedOutsideLast(ok(`/admin;x\users`), ok("/admin")),
			base: refusedOutsideLast(ok("/admin;x/users"), ok("/admin/users")),
		},
		{
			name: "semicolon in the query", in: "/a?x=1;y=2",
			none: same(ok("/a")),
		},
		{
			name: "semicolon in the fragment", in: "/a#b;c/d",
			none: same(ok("/a")),
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cols := []struct {
				mode Mode
				want *byAction
			}{
				{ModeNone, &tt.none}, {ModeBase, &tt.base}, {ModeMergeSlashes, &tt.merge}, {ModeDecodeAndMergeSlashes, &tt.decode},
			}
			for i := range cols {
				if *cols[i].want == (byAction{}) {
					*cols[i].want = *cols[i-1].want
				}
			}
			for _, col := range cols {
				for pp := PathParametersKeep; pp <= PathParametersRejectExceptLast; pp++ {
					opts := Options{Mode: col.mode, EscapedSlashes: EscapedSlashesKeep, PathParameters: pp}
					check(t, tt.in, opts, col.want.get(pp))
				}
			}
		})
	}
}

// TestPathParametersEscapedSlashes covers parameters next to escaped
// slashes under each escaped-slash action: the first refusal found wins,
// and the path is refused either way.
func TestPathParametersEscapedSlashes(t *testing.T) {
	tests := []struct {
		name string
		in   string
		esc  EscapedSlashes
		want byAction
	}{
		{
			name: "reject: parameter before %2F", in: "/admin;x%2Fusers", esc: EscapedSlashesReject,
			want: acts(rejected(ErrEscapedSlash), rejected(ErrEscapedSlash), errPP, rejected(ErrEscapedSlash)),
		},
		{
			name: "reject: parameter after %2F", in: "/admin%2Fx;y", esc: EscapedSlashesReject,
			want: same(rejected(ErrEscapedSlash)),
		},
		{
			name: "decode: parameter before %2F", in: "/admin;x%2Fusers", esc: EscapedSlashesDecode,
			want: refusedOutsideLast(ok("/admin;x/users"), ok("/admin/users")),
		},
		{
			name: "decode: parameter after %5C", in: "/admin%5Cx;y", esc: EscapedSlashesDecode,
			want: acts(ok("/admin/x;y"), ok("/admin/x"), errPP, ok("/admin/x;y")),
		},
		{
			name: "keep: parameter before %2f", in: "/a;x%2fb", esc: EscapedSlashesKeep,
			want: refusedOutsideLast(ok("/a;x%2fb"), ok("/a")),
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for pp := PathParametersKeep; pp <= PathParametersRejectExceptLast; pp++ {
				check(t, tt.in, Options{Mode: ModeMergeSlashes, EscapedSlashes: tt.esc, PathParameters: pp}, tt.want.get(pp))
			}
		})
	}
}

// TestPathParameterOffsets pins where the refusal points: at the ';' (the
// first one, under REJECT_EXCEPT_LAST) or at the '%' of %3B.
func TestPathParameterOffsets(t *testing.T) {
	tests := []struct {
		name   string
		in     string
		pp     PathParameters
		reason error
		offset int
	}{
		{name: "reject", in: "/admin;x/users", pp: PathParametersReject, reason: ErrPathParameter, offset: 6},
		{name: "reject in the last segment", in: "/shop/cart;j=1", pp: PathParametersReject, reason: ErrPathParameter, offset: 10},
		{name: "except last: first of several", in: "/a;b;c/d", pp: PathParametersRejectExceptLast, reason: ErrPathParameter, offset: 2},
		{name: "except last: before a backslash", in: `/a/b;c\d`, pp: PathParametersRejectExceptLast, reason: ErrPathParameter, offset: 4},
		{name: "escaped semicolon", in: "/a/b%3Bc", pp: PathParametersRejectExceptLast, reason: ErrEscapedSemicolon, offset: 4},
		{name: "escaped semicolon under strip", in: "/a%3bc/d", pp: PathParametersStrip, reason: ErrEscapedSemicolon, offset: 2},
		{name: "offset counts the whole target", in: "/a;b/c?x=1", pp: PathParametersRejectExceptLast, reason: ErrPathParameter, offset: 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			opts := Default()
			opts.PathParameters = tt.pp
			_, err := Normalize(tt.in, opts)
			var e *Error
			if !errors.As(err, &e) || !errors.Is(err, tt.reason) || e.Part != "path" || e.Offset != tt.offset {
				t.Fatalf("Normalize(%q, %v) error = %v; want %v in path at %d", tt.in, tt.pp, err, tt.reason, tt.offset)
			}
		})
	}
}

// TestPathParametersNoAlloc pins the fast path: without a change to make,
// every action returns a substring of the input, a kept last-segment
// parameter included.
func TestPathParametersNoAlloc(t *testing.T) {
	tests := []struct {
		in string
		pp PathParameters
	}{
		{in: "/api/v1/users/123", pp: PathParametersKeep},
		{in: "/api/v1/users/123", pp: PathParametersStrip},
		{in: "/api/v1/users/123", pp: PathParametersReject},
		{in: "/api/v1/users/123", pp: PathParametersRejectExceptLast},
		{in: "/shop/cart;jsessionid=ABC", pp: PathParametersRejectExceptLast},
		{in: "/admin;x/users", pp: PathParametersKeep},
	}
	for _, tt := range tests {
		opts := Default()
		opts.PathParameters = tt.pp
		allocs := testing.AllocsPerRun(100, func() {
			if _, err := Normalize(tt.in, opts); err != nil {
				t.Fatal(err)
			}
		})
		if allocs != 0 {
			t.Errorf("Normalize(%q, %v) allocates %v times; want 0", tt.in, tt.pp, allocs)
		}
	}
}
