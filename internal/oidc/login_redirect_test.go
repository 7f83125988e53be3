package oidc

import (
	"net/url"
	"strings"
	"testing"
)

func TestSafeRedirect(t *testing.T) {
	for _, tc := range []struct {
		in string
		ok bool
	}{
		{"/", true},
		{"/app", true},
		{"/app/x?y=1&z=%2F", true},
		{"/a%20b", true},
		{"/app/..//x", true}, // a path on this host; http.Redirect cleans it
		{"", false},
		{"app", false},
		{"//evil.example", false},
		{"///evil.example", false},
		{`/\evil.example`, false},
		{`\\evil.example`, false},
		{`/app\x`, false},
		{"https://evil.example", false},
		{"javascript:alert(1)", false},
		{"/%2F%2Fevil.example", false},
		{"/%2fevil.example", false},
		{"/%5Cevil.example", false},
		{"/%252F%252Fevil.example", false},
		{"/%25252F%25252Fevil.example", false},
		{"/\t/evil.example", false},
		{"/\n/evil.example", false},
		{"/ /evil.example", false},
		{"/%09/evil.example", false},
		{"/%00", false},
		{"/x#frag", false},
		{"/é", false},
		{"/%zz", false},
		{"/" + strings.Repeat("a", maxRedirectLen), false},
	} {
		got, ok := SafeRedirect(tc.in)
		if ok != tc.ok || (ok && got != tc.in) {
			t.Errorf("SafeRedirect(%q) = %q, %v; want ok=%v", tc.in, got, ok, tc.ok)
		}
	}
}

// FuzzSafeRedirect: whatever is accepted stays on the gateway's host when a browser
// resolves it, even after decoding and with backslashes read as slashes.
func FuzzSafeRedirect(f *testing.F) {
	for _, s := range []string{"/", "/app?x=1", "//evil.example", `/\evil.example`, "/%2F%2Fevil", "https://evil.example",
		"/%5c%5cevil", "/\x00", "/a/../..//b", "/?next=//evil", "/%252f/evil"} {
		f.Add(s)
	}
	base, _ := url.Parse("https://gw.example/page")
	f.Fuzz(func(t *testing.T, in string) {
		out, ok := SafeRedirect(in)
		if !ok {
			return
		}
		if out != in {
			t.Fatalf("accepted value changed: %q -> %q", in, out)
		}
		for layer, s := 0, in; layer < 5; layer++ {
			browser := strings.ReplaceAll(s, `\`, "/")
			u, err := base.Parse(browser)
			if err != nil {
				break
			}
			if u.Host != "gw.example" || u.Scheme != "https" {
				t.Fatalf("%q (layer %d) resolves to host %q scheme %q", in, layer, u.Host, u.Scheme)
			}
			dec, err := url.PathUnescape(s)
			if err != nil || dec == s {
				break
			}
			s = dec
		}
	})
}
