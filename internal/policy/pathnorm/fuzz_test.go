package pathnorm

import (
	"errors"
	"net/url"
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// fuzzSeeds are the inputs of every table test and a few more shapes.
var fuzzSeeds = []string{
	"/", "", "*", "?x=1", "/api/v1/users/123", "/app/../admin", "/app//", "/app/%2f",
	`/app\admin`, "/%2Fapp%5cadmin%5Cabc", `/%5Capp%2f%5c%2F%2e%2e%2fadmin%5c\abc`,
	"/app//../admin", "/%c0%2fadmin", "/app#foo", "/info/../private", "//admin",
	"/admin%2Fx", "/x%5C..%5Cadmin", "/user/profile#section1", "/protected?x",
	"/public/..;/admin", "/public/..%3b/admin", "/public/.;x/a", "/public/%252e%252e/admin",
	"/public/%2e%2e/admin", "/public/%c0%ae%c0%ae/admin", "/admin%00.html", "/a%", "/a%G1",
	"/a%a", "a/b", "/a b", "/caf\xc3\xa9", "/a?x=%00", "/a/./b/../../..", "//..//.././",
	"/xyz%30..//abc", "/.../admin", "/a/b/..;", "/%2e%2E;x/%2e/", "/a?b#c?d",
	"/admin;x/users", "/admin;/users", "/a;b;c/d", "/x/;/y", "/admin%3Bx/users", "/shop/cart;jsessionid=ABC",
	"/admin;", "//admin;x//users", `/admin;x\users`, "/admin;x%2Fusers", "/admin%2Fx;y", "/a;x/../b",
	"/admin%253Bx/users", "/a?b;c", "/;", "/.;/a",
}

// modeMatrix is every mode with every escaped-slash and path-parameter
// action.
var modeMatrix = func() (all []Options) {
	for m := ModeNone; m <= ModeDecodeAndMergeSlashes; m++ {
		for e := EscapedSlashesReject; e <= EscapedSlashesKeep; e++ {
			for pp := PathParametersKeep; pp <= PathParametersRejectExceptLast; pp++ {
				all = append(all, Options{Mode: m, EscapedSlashes: e, PathParameters: pp})
			}
		}
	}
	return all
}()

func FuzzNormalize(f *testing.F) {
	for _, s := range fuzzSeeds {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, target string) {
		for _, opts := range modeMatrix {
			checkProperties(t, target, opts)
		}
	})
}

func checkProperties(t *testing.T, target string, opts Options) {
	t.Helper()
	name := optsName(opts)
	got, err := Normalize(target, opts)
	checkPathParameters(t, target, opts, got, err)
	if err != nil {
		var e *Error
		if !errors.As(err, &e) {
			t.Fatalf("%s: Normalize(%q) error %v is not *Error", name, target, err)
		}
		return
	}
	p := got.Path
	beforeFragment, _, _ := strings.Cut(target, "#")
	rawPath, rawQuery, _ := strings.Cut(beforeFragment, "?")
	if strings.Contains(beforeFragment, "%00") {
		t.Fatalf("%s: Normalize(%q) accepted %%00", name, target)
	}
	if got.RawQuery != rawQuery {
		t.Fatalf("%s: Normalize(%q).RawQuery = %q; want %q as sent", name, target, got.RawQuery, rawQuery)
	}
	if !strings.HasPrefix(p, "/") {
		t.Fatalf("%s: Normalize(%q) = %q does not start with '/'", name, target, p)
	}
	if strings.ContainsAny(p, "#?") {
		t.Fatalf("%s: Normalize(%q) = %q contains '#' or '?'", name, target, p)
	}
	for i := 0; i < len(p); i++ {
		if p[i] < 0x20 || p[i] == 0x7F {
			t.Fatalf("%s: Normalize(%q) = %q contains a control character", name, target, p)
		}
	}
	upper := strings.ToUpper(p)
	if opts.slashAction() == EscapedSlashesReject && (strings.Contains(upper, "%2F") || strings.Contains(upper, "%5C")) {
		t.Fatalf("%s: Normalize(%q) = %q keeps an escaped slash under Reject", name, target, p)
	}
	if want := referenceNormalize(rawPath, opts); p != want {
		t.Fatalf("%s: Normalize(%q) = %q; reference says %q", name, target, p, want)
	}
	again, err := Normalize(p, opts)
	if err != nil || again.Path != p {
		t.Fatalf("%s: not idempotent: Normalize(%q) = %q; Normalize(that) = %q, %v", name, target, p, again.Path, err)
	}
	if opts.Mode == ModeNone {
		return
	}
	if strings.Contains(p, `\`) {
		t.Fatalf("%s: Normalize(%q) = %q contains '\\'", name, target, p)
	}
	if strings.Contains(p, "/../") || strings.Contains(p, "/./") || strings.HasSuffix(p, "/..") || strings.HasSuffix(p, "/.") {
		t.Fatalf("%s: Normalize(%q) = %q keeps a dot segment", name, target, p)
	}
	for _, seg := range strings.Split(p, "/") {
		head, _, _ := strings.Cut(seg, ";")
		if i := strings.Index(strings.ToLower(head), "%3b"); i >= 0 {
			head = head[:i]
		}
		if head == "." || head == ".." {
			t.Fatalf("%s: Normalize(%q) = %q keeps a parameterized dot segment %q", name, target, p, seg)
		}
	}
	if opts.Mode >= ModeMergeSlashes && strings.Contains(p, "//") {
		t.Fatalf("%s: Normalize(%q) = %q contains '//'", name, target, p)
	}
}

// checkPathParameters checks the outcome of Normalize(target, opts)
// against the same options with PathParametersKeep: the other actions only
// ever refuse more, never change a path without ';', and refuse exactly
// what their rule says.
func checkPathParameters(t *testing.T, target string, opts Options, got Result, err error) {
	t.Helper()
	name := optsName(opts)
	keepOpts := opts
	keepOpts.PathParameters = PathParametersKeep
	keep, keepErr := Normalize(target, keepOpts)
	beforeFragment, _, _ := strings.Cut(target, "#")
	rawPath, _, _ := strings.Cut(beforeFragment, "?")
	semi := strings.IndexByte(rawPath, ';')
	escSemi := strings.Contains(strings.ToUpper(rawPath), "%3B")
	if opts.PathParameters == PathParametersKeep || semi < 0 && !escSemi {
		// Nothing for the action to do: the outcome is KEEP's, error
		// reason included.
		if !errors.Is(err, errorReason(keepErr)) || (err == nil) != (keepErr == nil) || got != keep {
			t.Fatalf("%s: Normalize(%q) = %+v, %v; KEEP gives %+v, %v", name, target, got, err, keep, keepErr)
		}
		return
	}
	if keepErr != nil {
		// Never more permissive than KEEP; a parameter found before KEEP's
		// reason may be reported instead.
		if reason := errorReason(err); err == nil ||
			reason != errorReason(keepErr) && reason != ErrPathParameter && reason != ErrEscapedSemicolon {
			t.Fatalf("%s: Normalize(%q) = %q, %v; KEEP refuses it with %v", name, target, got.Path, err, keepErr)
		}
		return
	}
	// KEEP accepts and the path has a ';' or a %3B.
	var wantErr error
	switch opts.PathParameters {
	case PathParametersStrip:
		if escSemi {
			wantErr = ErrEscapedSemicolon
		}
	case PathParametersReject:
		wantErr = ErrPathParameter
		if escSemi && (semi < 0 || strings.Index(strings.ToUpper(rawPath), "%3B") < semi) {
			wantErr = ErrEscapedSemicolon
		}
	case PathParametersRejectExceptLast:
		after := ""
		if semi >= 0 {
			after = strings.ToUpper(rawPath[semi:])
		}
		notLast := strings.ContainsAny(after, `/\`) || strings.Contains(after, "%2F") || strings.Contains(after, "%5C")
		switch {
		case notLast && escSemi:
			// Either may be found first; both are right.
			if !errors.Is(err, ErrPathParameter) && !errors.Is(err, ErrEscapedSemicolon) {
				t.Fatalf("%s: Normalize(%q) = %q, %v; want a path-parameter or escaped-semicolon error", name, target, got.Path, err)
			}
			return
		case notLast:
			wantErr = ErrPathParameter
		case escSemi:
			wantErr = ErrEscapedSemicolon
		}
	}
	if wantErr != nil {
		if !errors.Is(err, wantErr) {
			t.Fatalf("%s: Normalize(%q) = %q, %v; want %v", name, target, got.Path, err, wantErr)
		}
		return
	}
	if err != nil {
		t.Fatalf("%s: Normalize(%q) = %v; KEEP accepts it and %v has no reason to refuse", name, target, err, opts.PathParameters)
	}
	p := got.Path
	if got.RawQuery != keep.RawQuery {
		t.Fatalf("%s: Normalize(%q).RawQuery = %q; KEEP gives %q", name, target, got.RawQuery, keep.RawQuery)
	}
	if strings.Contains(strings.ToUpper(p), "%3B") {
		t.Fatalf("%s: Normalize(%q) = %q keeps an escaped semicolon", name, target, p)
	}
	switch opts.PathParameters {
	case PathParametersStrip:
		if strings.Contains(p, ";") {
			t.Fatalf("%s: Normalize(%q) = %q keeps a ';' under STRIP", name, target, p)
		}
	case PathParametersReject:
		t.Fatalf("%s: Normalize(%q) = %q accepted a ';' under REJECT", name, target, p)
	case PathParametersRejectExceptLast:
		// The upstream gets the path KEEP would forward, and any ';' in it
		// is in the last segment to every reader.
		if p != keep.Path {
			t.Fatalf("%s: Normalize(%q) = %q; KEEP gives %q", name, target, p, keep.Path)
		}
		if i := strings.IndexByte(p, ';'); i >= 0 {
			after := strings.ToUpper(p[i:])
			if strings.ContainsAny(after, `/\`) || strings.Contains(after, "%2F") || strings.Contains(after, "%5C") {
				t.Fatalf("%s: Normalize(%q) = %q has a ';' outside the last segment", name, target, p)
			}
		}
	}
}

// errorReason is the Reason of err, an *Error, or err itself; nil for nil.
func errorReason(err error) error {
	var e *Error
	if errors.As(err, &e) {
		return e.Reason
	}
	return err
}

// referenceNormalize is a deliberately naive second implementation of the
// rules, for an accepted path: string operations and the RFC 3986 §5.2.4
// algorithm as the RFC words it.
func referenceNormalize(p string, opts Options) string {
	if p == "" {
		return "/"
	}
	base := opts.Mode != ModeNone
	decode := opts.Mode == ModeDecodeAndMergeSlashes || opts.EscapedSlashes == EscapedSlashesDecode
	strip := opts.PathParameters == PathParametersStrip
	const unreserved = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~"
	var b strings.Builder
	for i := 0; i < len(p); i++ {
		if p[i] == '%' {
			v, _ := strconv.ParseUint(p[i+1:i+3], 16, 8)
			c := string(rune(v))
			switch {
			case decode && (c == "/" || c == `\`):
				b.WriteString(c)
			case base && strings.Contains(unreserved, c):
				b.WriteString(c)
			default:
				b.WriteString(p[i : i+3])
			}
			i += 2
			continue
		}
		b.WriteByte(p[i])
	}
	s := b.String()
	if base {
		s = strings.ReplaceAll(s, `\`, "/")
	}
	if strip {
		segs := strings.Split(s, "/")
		for i, seg := range segs {
			segs[i], _, _ = strings.Cut(seg, ";")
		}
		s = strings.Join(segs, "/")
	}
	if !base {
		return s
	}
	segs := strings.Split(s, "/")
	for i, seg := range segs {
		head, _, _ := strings.Cut(seg, ";")
		head, _, _ = strings.Cut(head, "%3B")
		head, _, _ = strings.Cut(head, "%3b")
		if head == "." || head == ".." {
			segs[i] = head
		}
	}
	s = rfc3986RemoveDotSegments(strings.Join(segs, "/"))
	if opts.Mode >= ModeMergeSlashes {
		for strings.Contains(s, "//") {
			s = strings.ReplaceAll(s, "//", "/")
		}
	}
	return s
}

// rfc3986RemoveDotSegments is RFC 3986 §5.2.4, step by step.
func rfc3986RemoveDotSegments(in string) string {
	out := ""
	removeLast := func() {
		out = out[:max(strings.LastIndexByte(out, '/'), 0)]
	}
	for in != "" {
		switch {
		case strings.HasPrefix(in, "../"):
			in = in[3:]
		case strings.HasPrefix(in, "./"):
			in = in[2:]
		case strings.HasPrefix(in, "/./"):
			in = in[2:]
		case in == "/.":
			in = "/"
		case strings.HasPrefix(in, "/../"):
			in = in[3:]
			removeLast()
		case in == "/..":
			in = "/"
			removeLast()
		case in == "." || in == "..":
			in = ""
		default:
			start := 0
			if in[0] == '/' {
				start = 1
			}
			j := strings.IndexByte(in[start:], '/')
			if j < 0 {
				j = len(in)
			} else {
				j += start
			}
			out += in[:j]
			in = in[j:]
		}
	}
	return out
}

// FuzzParseQuery checks ParseQuery against net/url: ParseQuery is
// stricter, and whatever it accepts url.ParseQuery reads the same way.
func FuzzParseQuery(f *testing.F) {
	for _, s := range []string{"", "a=1&b=2&a=3", "a+b=c+d", "a=%2B", "a&b=", "&&a=1&", "=x", "a=%252e", "a=%", "a=1;b", "a=%00", "q=caf%C3%A9"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		got, err := ParseQuery(raw)
		checkQueryParam(t, raw, got, err)
		if err != nil {
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("ParseQuery(%q) error %v is not *Error", raw, err)
			}
			return
		}
		want, err := url.ParseQuery(raw)
		if err != nil {
			t.Fatalf("ParseQuery(%q) accepted what url.ParseQuery refuses: %v", raw, err)
		}
		if diff := cmp.Diff(map[string][]string(want), got); diff != "" {
			t.Fatalf("ParseQuery(%q) differs from url.ParseQuery (-url +ours):\n%s", raw, diff)
		}
	})
}

// pathTokens are the pieces that matter to normalization. FuzzNormalizeTokens
// builds targets from them, so the fuzzer spends its time on dot segments,
// escapes and slashes instead of on bytes that are refused outright.
var pathTokens = []string{
	"/", "/", "/", ".", "..", "a", "b", ";", ";x", `\`, "%2e", "%2E", "%2f", "%2F", "%5c", "%5C",
	"%3b", "%3B", "%25", "%252e", "%41", "%20", "%c0%ae", "?", "#", "=", "//", "%", "%0", "%00",
	";jsessionid=1", "%253B", "..;",
}

func FuzzNormalizeTokens(f *testing.F) {
	f.Add([]byte{0, 4, 0, 5, 0, 6})
	f.Add([]byte{0, 4, 7, 0, 5})
	f.Add([]byte{0, 10, 11, 13, 0, 12})
	f.Add([]byte{5, 8, 0, 6, 0, 5, 30})
	f.Add([]byte{0, 32, 0, 5, 7, 0, 9, 5})
	f.Fuzz(func(t *testing.T, picks []byte) {
		var b strings.Builder
		b.WriteByte('/')
		for _, p := range picks {
			b.WriteString(pathTokens[int(p)%len(pathTokens)])
		}
		for _, opts := range modeMatrix {
			checkProperties(t, b.String(), opts)
		}
	})
}
