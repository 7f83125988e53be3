package exchange

import (
	"net/url"
	"strings"
	"testing"
)

// FuzzPathOfTarget checks the fronts' reading of a request-target against
// net/http's (url.ParseRequestURI, which the server runs before any handler and
// which sets r.Host from an absolute-form target). If the two disagreed on
// where the authority of "http://a.example/x" ends, policy would judge one path
// while the router, or the upstream, saw the authority eat part of it.
//
// Properties:
//   - an accepted target yields an origin-form: it starts with "/" and is a
//     fixed point (reading it again gives it back);
//   - an origin-form target is returned byte for byte;
//   - an absolute-form result is the target's own tail (or "/" before a bare
//     query), so no byte is invented or re-encoded;
//   - wherever net/http accepts an absolute-form target, PathOfTarget accepts
//     it too, and both read the same path and query; a "scheme:" target
//     without "//" (no authority) is refused.
func FuzzPathOfTarget(f *testing.F) {
	for _, s := range []string{
		// The request targets of the ingress and CVE tables.
		"//admin", "/a%00b", "/a%zz", "/a/%2e%2e/b", "/a/../admin", "/admin%2Fx", "/admin%5Cx",
		"/admin//x", "/admin;x/secret", "/app//x///y?k=v", "/info/%2e%2e/private", "/keep%3Fescape;p=1",
		"/ok?a=1&%64ebug=1", "/protected#x", "/protected?x", "/public/..;/admin", "/public/..\\admin",
		"/user/profile#section1", "https://localhost/abs/../form", "https://localhost/info/../admin",
		// Forms the ingress refuses or that sit on a boundary.
		"*", "a.example:443", "", "http://", "http://a", "http://a?b#c/d", "http://a#x", "http://u@a/x",
		"http://[::1]:80/x?y", "HTTP://A/x", "x://y", "http://a/x://b/y", "http:/a/x", "mailto:x",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, target string) {
		got, err := PathOfTarget(target)
		if err == nil {
			if !strings.HasPrefix(got, "/") {
				t.Fatalf("PathOfTarget(%q) = %q, not an origin-form", target, got)
			}
			if again, err := PathOfTarget(got); err != nil || again != got {
				t.Fatalf("PathOfTarget(%q) = %q, but that reads as %q, %v", target, got, again, err)
			}
			if strings.HasPrefix(target, "/") && got != target {
				t.Fatalf("origin-form %q came back as %q", target, got)
			}
			// Either the target's tail, or "/" put before a tail that is only
			// a query or fragment ("http://a?x"), or "/" alone ("http://a").
			tail := got[1:]
			if !strings.HasSuffix(target, got) && !(strings.HasSuffix(target, tail) && (tail == "" || tail[0] == '?' || tail[0] == '#')) {
				t.Fatalf("PathOfTarget(%q) = %q, not a tail of the target", target, got)
			}
		}

		u, uerr := url.ParseRequestURI(target)
		if uerr != nil || strings.HasPrefix(target, "/") || u.Opaque != "" || u.Scheme == "" {
			return // net/http refuses it, or it is not absolute-form
		}
		if !strings.HasPrefix(target[len(u.Scheme)+1:], "//") {
			// "scheme:/path" has no authority: not an absolute-form the
			// ingress serves ("A:/://x/admin" must not read as host x).
			if err == nil {
				t.Fatalf("PathOfTarget(%q) = %q; net/http reads no authority but path %q", target, got, u.Path)
			}
			return
		}
		if err != nil {
			t.Fatalf("net/http reads %q as host %q path %q, the ingress refuses it: %v", target, u.Host, u.Path, err)
		}
		o, oerr := url.ParseRequestURI(got)
		if oerr != nil {
			t.Fatalf("PathOfTarget(%q) = %q, which net/http can't read: %v", target, got, oerr)
		}
		want := u.Path
		if want == "" {
			want = "/"
		}
		if o.Path != want || o.RawQuery != u.RawQuery {
			t.Fatalf("PathOfTarget(%q) = %q (path %q query %q); net/http reads path %q query %q, host %q",
				target, got, o.Path, o.RawQuery, want, u.RawQuery, u.Host)
		}
	})
}
