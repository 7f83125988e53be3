package audit

import (
	"net/url"
	"strings"
	"testing"
)

func TestRedactQuery(t *testing.T) {
	const jwt = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2ln"
	tests := []struct {
		name      string
		raw       string
		sensitive []string
		want      string
	}{
		{name: "empty", raw: "", want: ""},
		{name: "no parameters with values", raw: "debug&token", want: "debug&token"},
		{name: "nothing sensitive is unchanged", raw: "page=2&sort=name", want: "page=2&sort=name"},
		{name: "access_token (RFC 6750 2.3)", raw: "access_token=abc&page=2", want: "access_token=REDACTED&page=2"},
		{name: "every default name", raw: "id_token=a&refresh_token=b&token=c&code=d&state=e&client_secret=f&password=g&api_key=h&apikey=i&key=j&sig=k&signature=l",
			want: "id_token=REDACTED&refresh_token=REDACTED&token=REDACTED&code=REDACTED&state=REDACTED&client_secret=REDACTED&password=REDACTED&api_key=REDACTED&apikey=REDACTED&key=REDACTED&sig=REDACTED&signature=REDACTED"},
		{name: "pre-signed S3 URL", raw: "X-Amz-Credential=AKIA%2F20260101&X-Amz-Signature=deadbeef&X-Amz-Expires=60",
			want: "X-Amz-Credential=REDACTED&X-Amz-Signature=REDACTED&X-Amz-Expires=60"},
		{name: "names compare case-insensitively", raw: "Access_Token=abc&PASSWORD=x", want: "Access_Token=REDACTED&PASSWORD=REDACTED"},
		{name: "percent-encoded name is decoded as a server would", raw: "%74oken=abc&access%5Ftoken=def", want: "%74oken=REDACTED&access%5Ftoken=REDACTED"},
		{name: "plus in name decodes to space, not a match", raw: "to+ken=abc", want: "to+ken=abc"},
		{name: "repeated sensitive parameter", raw: "token=a&token=b", want: "token=REDACTED&token=REDACTED"},
		{name: "semicolon separator hides nothing", raw: "a=1;token=secret", want: "a=1;token=REDACTED"},
		{name: "value containing equals sign", raw: "token=a=b=c&x=1", want: "token=REDACTED&x=1"},
		{name: "empty value stays empty", raw: "token=&x=1", want: "token=&x=1"},
		{name: "empty segments are kept", raw: "&&token=a&&", want: "&&token=REDACTED&&"},
		{name: "similar names are not sensitive", raw: "tokens=1&keyboard=2&mycode=3", want: "tokens=1&keyboard=2&mycode=3"},
		{name: "JWT under any name", raw: "assertion=" + jwt + "&x=1", want: "assertion=REDACTED&x=1"},
		{name: "undecodable name is redacted", raw: "tok%zzen=abc&x=1", want: "tok%zzen=REDACTED&x=1"},
		{name: "custom list replaces the defaults", raw: "session=abc&token=def", sensitive: []string{"Session"}, want: "session=REDACTED&token=def"},
		{name: "empty custom list still catches JWTs", raw: "token=abc&t=" + jwt, sensitive: []string{}, want: "token=abc&t=REDACTED"},
		{name: "already redacted is stable", raw: "token=REDACTED", want: "token=REDACTED"},
		{name: "multibyte values", raw: "q=%C3%A9t%C3%A9&password=h%C3%A9", want: "q=%C3%A9t%C3%A9&password=REDACTED"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := RedactQuery(tt.raw, tt.sensitive); got != tt.want {
				t.Errorf("RedactQuery(%q) = %q, want %q", tt.raw, got, tt.want)
			}
		})
	}
}

func TestRedactQueryDoesNotAllocateWhenClean(t *testing.T) {
	q := "page=2&sort=name&filter=active"
	if n := testing.AllocsPerRun(100, func() { _ = RedactQuery(q, nil) }); n != 0 {
		t.Errorf("RedactQuery on a clean query allocated %v times, want 0", n)
	}
}

func TestDefaultSensitiveParamsIsACopy(t *testing.T) {
	p := DefaultSensitiveParams()
	p[0] = "changed"
	if RedactQuery("access_token=x", nil) != "access_token=REDACTED" {
		t.Error("changing the returned slice changed the defaults")
	}
}

// splitQuery splits like RedactQuery does, for the fuzz properties.
func splitQuery(q string) []string {
	return strings.FieldsFunc(q, func(r rune) bool { return r == '&' || r == ';' })
}

func FuzzRedactQuery(f *testing.F) {
	for _, s := range []string{
		"", "a=1", "token=abc", "access_token=x&page=2", "%74oken=1", "a=1;token=2", "token=a=b",
		"&&=&=", "tok%zzen=1", "t=eyJa.eyJb.c", "TOKEN=x&Token=y", "q=%C3%A9&key=\xff", "REDACTED=token",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		got := RedactQuery(raw, nil)
		// Idempotent: redacting a redacted query changes nothing.
		if again := RedactQuery(got, nil); again != got {
			t.Fatalf("not idempotent: %q -> %q -> %q", raw, got, again)
		}
		in, out := splitQuery(raw), splitQuery(got)
		if strings.Count(raw, "&")+strings.Count(raw, ";") != strings.Count(got, "&")+strings.Count(got, ";") || len(in) != len(out) {
			t.Fatalf("parameter structure changed: %q -> %q", raw, got)
		}
		for i, seg := range out {
			k, v, hasVal := strings.Cut(seg, "=")
			ik, iv, _ := strings.Cut(in[i], "=")
			if k != ik {
				t.Fatalf("key %q became %q", ik, k)
			}
			if v != iv && v != Redacted {
				t.Fatalf("value of %q changed to %q, not redacted", k, v)
			}
			name, err := url.QueryUnescape(k)
			if err != nil {
				name = ""
			}
			// The property that matters: no sensitive value survives.
			for _, s := range defaultSensitive {
				if hasVal && strings.EqualFold(name, s) && v != "" && v != Redacted {
					t.Fatalf("sensitive %q kept value %q in %q", k, v, got)
				}
			}
			if looksLikeJWT(v) {
				t.Fatalf("JWT-shaped value %q kept in %q", v, got)
			}
		}
	})
}

func BenchmarkRedactQuery(b *testing.B) {
	for _, bc := range []struct{ name, q string }{
		{"clean", "page=2&sort=name&filter=active&limit=100"},
		{"token", "page=2&access_token=abcdefghijklmnop&limit=100"},
	} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				_ = RedactQuery(bc.q, nil)
			}
		})
	}
}

func TestRedactQueryExcept(t *testing.T) {
	keep := []string{"page", "per_page"}
	for _, tc := range []struct{ in, want string }{
		{"", ""},
		{"page=2&per_page=50", "page=2&per_page=50"},
		{"page=2&q=secret+search&token=abc", "page=2&q=REDACTED&token=REDACTED"},
		{"PAGE=2;id=7", "PAGE=2;id=REDACTED"},
		{"p%61ge=3&x", "p%61ge=3&x"}, // a key without a value has nothing to hide
		{"page=eyJhbGciOi.eyJzdWIi.sig", "page=REDACTED"},
		{"%zz=1&page=1", "%zz=REDACTED&page=1"},
	} {
		if got := RedactQueryExcept(tc.in, keep); got != tc.want {
			t.Errorf("RedactQueryExcept(%q) = %q, want %q", tc.in, got, tc.want)
		}
		if got := RedactQueryExcept(RedactQueryExcept(tc.in, keep), keep); got != tc.want {
			t.Errorf("not idempotent on %q: %q", tc.in, got)
		}
	}
}
