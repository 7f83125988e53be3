package oidc

import (
	"net/url"
	"strings"
)

// maxRedirectLen bounds the return path kept in a login attempt's state cookie.
const maxRedirectLen = 2048

// SafeRedirect accepts only a same-origin relative path (with optional query) as
// the place to return to after login, and returns it unchanged. It stops open
// redirects: "//evil.example" and "/\evil.example" (browsers read both as
// scheme-relative URLs to another host), "https://evil.example" and other
// schemes, control characters and whitespace that browsers strip before parsing
// ("/\t/evil.example"), and their percent-encoded forms ("/%2F%2Fevil.example",
// "/%5Cevil.example"), which a later decode on either side could turn into the same.
func SafeRedirect(rd string) (string, bool) {
	if rd == "" || len(rd) > maxRedirectLen || !strings.HasPrefix(rd, "/") {
		return "", false
	}
	// Decode repeatedly (bounded) and judge every layer: what the browser, the
	// gateway or the upstream sees after any number of decodes must still be a path
	// on this host.
	if !safeRaw(rd) {
		return "", false
	}
	s := rd
	for range 4 {
		dec, err := url.PathUnescape(s)
		if err != nil {
			return "", false
		}
		if dec == s {
			break
		}
		if !safeDecoded(dec) {
			return "", false
		}
		s = dec
	}
	if dec, err := url.PathUnescape(s); err != nil || dec != s {
		return "", false // still encoded after several decodes: nobody needs that
	}
	u, err := url.Parse(rd)
	if err != nil || u.Scheme != "" || u.Host != "" || u.User != nil || u.Opaque != "" || !strings.HasPrefix(u.Path, "/") {
		return "", false
	}
	return rd, true
}

// safeRaw judges the text a browser parses: exactly one leading '/', printable ASCII
// only (browsers drop tabs and newlines anywhere, and read '\' as '/'), no fragment.
func safeRaw(s string) bool {
	if len(s) < 1 || s[0] != '/' || len(s) > 1 && s[1] == '/' {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x21 || c >= 0x7f || c == '\\' || c == '#' {
			return false
		}
	}
	return true
}

// safeDecoded judges a percent-decoded layer, as a component that decodes and
// redirects again would see it: still one leading '/', no control characters.
func safeDecoded(s string) bool {
	if len(s) < 1 || s[0] != '/' || len(s) > 1 && (s[1] == '/' || s[1] == '\\') {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c == 0x7f {
			return false
		}
	}
	return true
}
