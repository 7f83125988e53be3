package pathnorm

import (
	"errors"
	"strings"
	"testing"
)

// The four Istio modes with the escaped-slash action Istio gives each, and
// path parameters kept, as Istio keeps them.
var (
	optsNone   = Options{Mode: ModeNone, EscapedSlashes: EscapedSlashesKeep, PathParameters: PathParametersKeep}
	optsBase   = IstioDefault()
	optsMerge  = Options{Mode: ModeMergeSlashes, EscapedSlashes: EscapedSlashesKeep, PathParameters: PathParametersKeep}
	optsDecode = Options{Mode: ModeDecodeAndMergeSlashes, PathParameters: PathParametersKeep}
)

// want is one expected outcome: a path, or an error matched with errors.Is.
type want struct {
	path string
	err  error
}

func ok(p string) want        { return want{path: p} }
func rejected(err error) want { return want{err: err} }

// optsName names opts in failure messages.
func optsName(o Options) string {
	return o.Mode.String() + "/" + o.EscapedSlashes.String() + "/" + o.PathParameters.String()
}

// check normalizes target and compares with w; successful results outside
// NONE must also be fixed points.
func check(t *testing.T, target string, opts Options, w want) {
	t.Helper()
	got, err := Normalize(target, opts)
	if w.err != nil {
		if !errors.Is(err, w.err) {
			t.Fatalf("Normalize(%q, %v) = %q, %v; want error %v", target, optsName(opts), got.Path, err, w.err)
		}
		var e *Error
		if !errors.As(err, &e) {
			t.Fatalf("Normalize(%q) error %T is not *Error", target, err)
		}
		return
	}
	if err != nil || got.Path != w.path {
		t.Fatalf("Normalize(%q, %v) = %q, %v; want %q", target, optsName(opts), got.Path, err, w.path)
	}
	if opts.Mode == ModeNone {
		return
	}
	again, err := Normalize(got.Path, opts)
	if err != nil || again.Path != got.Path {
		t.Fatalf("not idempotent: Normalize(%q) = %q, %v", got.Path, again.Path, err)
	}
}

// TestWorkedExamples is every row of the worked-examples table of the
// Istio reference (§13.3, from Istio's normalization_test.go), in all four
// modes, plus Tollgate's Default. The "/%c0%2fadmin" row lists only
// DECODE_AND_MERGE_SLASHES in the source; the other columns follow from
// the rules (%c0 and %2f are not unreserved, so they are kept).
func TestWorkedExamples(t *testing.T) {
	tests := []struct {
		in                        string
		none, base, merge, decode want
		tollgateDefault           want
	}{
		{
			in:   "/app/../admin",
			none: ok("/app/../admin"), base: ok("/admin"), merge: ok("/admin"), decode: ok("/admin"),
			tollgateDefault: ok("/admin"),
		},
		{
			in:   "/app//",
			none: ok("/app//"), base: ok("/app//"), merge: ok("/app/"), decode: ok("/app/"),
			tollgateDefault: ok("/app/"),
		},
		{
			in:   "/app/%2f",
			none: ok("/app/%2f"), base: ok("/app/%2f"), merge: ok("/app/%2f"), decode: ok("/app/"),
			tollgateDefault: rejected(ErrEscapedSlash),
		},
		{
			in:   `/app\admin`,
			none: ok(`/app\admin`), base: ok("/app/admin"), merge: ok("/app/admin"), decode: ok("/app/admin"),
			tollgateDefault: ok("/app/admin"),
		},
		{
			in:   "/%2Fapp%5cadmin%5Cabc",
			none: ok("/%2Fapp%5cadmin%5Cabc"), base: ok("/%2Fapp%5cadmin%5Cabc"), merge: ok("/%2Fapp%5cadmin%5Cabc"),
			decode:          ok("/app/admin/abc"),
			tollgateDefault: rejected(ErrEscapedSlash),
		},
		{
			in:     `/%5Capp%2f%5c%2F%2e%2e%2fadmin%5c\abc`,
			none:   ok(`/%5Capp%2f%5c%2F%2e%2e%2fadmin%5c\abc`),
			base:   ok("/%5Capp%2f%5c%2F..%2fadmin%5c/abc"),
			merge:  ok("/%5Capp%2f%5c%2F..%2fadmin%5c/abc"),
			decode: ok("/app/admin/abc"),

			tollgateDefault: rejected(ErrEscapedSlash),
		},
		{
			in:   "/app//../admin",
			none: ok("/app//../admin"), base: ok("/app/admin"), merge: ok("/app/admin"), decode: ok("/app/admin"),
			tollgateDefault: ok("/app/admin"),
		},
		{
			in:   "/%c0%2fadmin",
			none: ok("/%c0%2fadmin"), base: ok("/%c0%2fadmin"), merge: ok("/%c0%2fadmin"), decode: ok("/%c0/admin"),
			tollgateDefault: rejected(ErrEscapedSlash),
		},
		{
			in:   "/app#foo",
			none: ok("/app"), base: ok("/app"), merge: ok("/app"), decode: ok("/app"),
			tollgateDefault: ok("/app"),
		},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			check(t, tt.in, optsNone, tt.none)
			check(t, tt.in, optsBase, tt.base)
			check(t, tt.in, optsMerge, tt.merge)
			check(t, tt.in, optsDecode, tt.decode)
			check(t, tt.in, Default(), tt.tollgateDefault)
		})
	}
}

// TestBase covers the rest of §13.2 (what BASE does) and RFC 3986 §5.2.4.
func TestBase(t *testing.T) {
	tests := []struct {
		name, in, want string
	}{
		{name: "root", in: "/", want: "/"},
		{name: "already normal", in: "/api/v1/users/123", want: "/api/v1/users/123"},
		{name: "escaped dot dot segment", in: "/app/%2E./admin", want: "/admin"},
		{name: "dot dot eats empty segments", in: "/app//../../admin", want: "/admin"},
		{name: "dots inside a segment stay", in: "/xyz%30..//abc", want: "/xyz0..//abc"},
		{name: "three dots stay", in: "/.../admin", want: "/.../admin"},
		{name: "dotted names stay", in: "/.well-known/x..y/.z", want: "/.well-known/x..y/.z"},
		{name: "unreserved decoded", in: "/%41%7a%30%2D%2e%5F%7E", want: "/Az0-._~"},
		{name: "reserved kept lower", in: "/admin%3f", want: "/admin%3f"},
		{name: "reserved kept upper", in: "/admin%3F", want: "/admin%3F"},
		{name: "percent kept", in: "/100%25", want: "/100%25"},
		{name: "no double decode", in: "/%252e%252e/admin", want: "/%252e%252e/admin"},
		{name: "overlong utf8 kept", in: "/%c0%ae%c0%ae/admin", want: "/%c0%ae%c0%ae/admin"},
		{name: "hex text untouched", in: "/0x2e0x2e/admin", want: "/0x2e0x2e/admin"},
		{name: "no case folding", in: "/ADMIN", want: "/ADMIN"},
		{name: "params kept", in: "/admin;x=y", want: "/admin;x=y"},
		{name: "trailing dot", in: "/a/b/.", want: "/a/b/"},
		{name: "trailing dot dot", in: "/a/b/..", want: "/a/"},
		{name: "above root", in: "/../../a", want: "/a"},
		{name: "only dot dot", in: "/..", want: "/"},
		{name: "only dot", in: "/.", want: "/"},
		{name: "empty then dot dot", in: "//..", want: "/"},
		{name: "dot in middle", in: "/a/./b", want: "/a/b"},
		{name: "backslashes not merged in BASE", in: `/app/\/\/\admin`, want: "/app//////admin"},
		{name: "sub-delims and colon at", in: "/a:b@c!$&'()*+,;=", want: "/a:b@c!$&'()*+,;="},
		{name: "query kept out", in: "/a/../b?c=/../d", want: "/b"},
		{name: "empty path from absolute-form", in: "", want: "/"},
		{name: "empty path with query", in: "?x=1", want: "/"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			check(t, tt.in, optsBase, ok(tt.want))
		})
	}
}

// TestMergeSlashes covers merging after dot-segment removal.
func TestMergeSlashes(t *testing.T) {
	tests := []struct {
		name, in, want string
	}{
		{name: "leading", in: "//admin", want: "/admin"},
		{name: "runs", in: "/a///b////c", want: "/a/b/c"},
		{name: "trailing", in: "/a//", want: "/a/"},
		{name: "backslashes", in: `/app/\/\/\admin`, want: "/app/admin"},
		{name: "dot dot eats empty first", in: "/app//../admin", want: "/app/admin"},
		{name: "dot dot at root", in: "//../admin", want: "/admin"},
		{name: "kept escapes", in: "/a%2f/b", want: "/a%2f/b"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			check(t, tt.in, optsMerge, ok(tt.want))
		})
	}
}

// TestEscapedSlashes covers the escaped-slash action in each mode.
func TestEscapedSlashes(t *testing.T) {
	tests := []struct {
		name string
		in   string
		opts Options
		want want
	}{
		{name: "reject in NONE", in: "/a%2Fb", opts: Options{Mode: ModeNone, EscapedSlashes: EscapedSlashesReject, PathParameters: PathParametersKeep}, want: rejected(ErrEscapedSlash)},
		{name: "reject in BASE", in: "/a%5cb", opts: Options{Mode: ModeBase, EscapedSlashes: EscapedSlashesReject, PathParameters: PathParametersKeep}, want: rejected(ErrEscapedSlash)},
		{name: "reject lower", in: "/a%2fb", opts: Default(), want: rejected(ErrEscapedSlash)},
		{name: "reject upper backslash", in: "/a%5Cb", opts: Default(), want: rejected(ErrEscapedSlash)},
		{name: "decode in NONE keeps backslash", in: "/a%2Fb%5cc", opts: Options{Mode: ModeNone, EscapedSlashes: EscapedSlashesDecode, PathParameters: PathParametersKeep}, want: ok(`/a/b\c`)},
		{name: "decode in BASE", in: "/a%2F%2Fb%5cc", opts: Options{Mode: ModeBase, EscapedSlashes: EscapedSlashesDecode, PathParameters: PathParametersKeep}, want: ok("/a//b/c")},
		{name: "decode then dots", in: "/a/b%2F..%2Fc", opts: Options{Mode: ModeBase, EscapedSlashes: EscapedSlashesDecode, PathParameters: PathParametersKeep}, want: ok("/a/c")},
		{name: "decode mode overrides reject", in: "/a%2Fb", opts: Options{Mode: ModeDecodeAndMergeSlashes, EscapedSlashes: EscapedSlashesReject, PathParameters: PathParametersKeep}, want: ok("/a/b")},
		{name: "double-encoded slash kept", in: "/a%252Fb", opts: Default(), want: ok("/a%252Fb")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			check(t, tt.in, tt.opts, tt.want)
		})
	}
}

func TestResult(t *testing.T) {
	tests := []struct {
		in                     string
		path, rawQuery, reqURI string
	}{
		{in: "/a/../b?x=1&y=%2F#frag", path: "/b", rawQuery: "x=1&y=%2F", reqURI: "/b?x=1&y=%2F"},
		{in: "/a?", path: "/a", rawQuery: "", reqURI: "/a"},
		{in: "/a?b?c", path: "/a", rawQuery: "b?c", reqURI: "/a?b?c"},
		{in: "/a#b?c", path: "/a", rawQuery: "", reqURI: "/a"},
		{in: "/a?q=../x", path: "/a", rawQuery: "q=../x", reqURI: "/a?q=../x"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := Normalize(tt.in, Default())
			if err != nil {
				t.Fatal(err)
			}
			if got.Path != tt.path || got.RawQuery != tt.rawQuery || got.RequestURI() != tt.reqURI {
				t.Fatalf("Normalize(%q) = %+v, RequestURI %q; want %q, %q, %q", tt.in, got, got.RequestURI(), tt.path, tt.rawQuery, tt.reqURI)
			}
		})
	}
}

// TestNoAllocWhenNormal pins the fast path: a path that needs no change
// is returned as a substring of the input.
func TestNoAllocWhenNormal(t *testing.T) {
	for _, in := range []string{"/api/v1/users/123", "/a%20b/%C3%A9?x=1", "/.well-known/openid-configuration"} {
		allocs := testing.AllocsPerRun(100, func() {
			if _, err := Normalize(in, Default()); err != nil {
				t.Fatal(err)
			}
		})
		if allocs != 0 {
			t.Errorf("Normalize(%q) allocates %v times; want 0", in, allocs)
		}
	}
	in := "/api/v1/users/123?x=1"
	got, _ := Normalize(in, Default())
	if !strings.HasPrefix(in, got.Path) {
		t.Fatalf("Path %q is not a prefix of %q", got.Path, in)
	}
}
