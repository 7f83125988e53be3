package pathnorm

import (
	"errors"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestParseQuery(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want map[string][]string
		err  error
	}{
		{name: "empty", in: "", want: map[string][]string{}},
		{name: "repeated keys in order", in: "a=1&b=2&a=3", want: map[string][]string{"a": {"1", "3"}, "b": {"2"}}},
		{name: "plus is space", in: "a+b=c+d", want: map[string][]string{"a b": {"c d"}}},
		{name: "escaped plus", in: "a=%2B", want: map[string][]string{"a": {"+"}}},
		{name: "no value", in: "a&b=", want: map[string][]string{"a": {""}, "b": {""}}},
		{name: "empty pairs skipped", in: "&&a=1&", want: map[string][]string{"a": {"1"}}},
		{name: "empty key", in: "=x", want: map[string][]string{"": {"x"}}},
		{name: "decoded once", in: "a=%252e", want: map[string][]string{"a": {"%2e"}}},
		{name: "equals in value", in: "a=b=c", want: map[string][]string{"a": {"b=c"}}},
		{name: "escaped semicolon", in: "a=1%3Bb", want: map[string][]string{"a": {"1;b"}}},
		{name: "escaped newline", in: "t=a%0Ab", want: map[string][]string{"t": {"a\nb"}}},
		{name: "utf-8", in: "q=caf%C3%A9", want: map[string][]string{"q": {"café"}}},
		{name: "lone percent", in: "a=%", err: ErrInvalidEscape},
		{name: "bad hex", in: "a=%zz", err: ErrInvalidEscape},
		{name: "short escape", in: "a=%a", err: ErrInvalidEscape},
		{name: "semicolon", in: "a=1;a=2", err: ErrQuerySemicolon},
		{name: "NUL", in: "a=%00", err: ErrControlChar},
		{name: "raw control", in: "a=\x01", err: ErrControlChar},
		{name: "space", in: "a=b c", err: ErrInvalidChar},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseQuery(tt.in)
			checkQueryParam(t, tt.in, got, err)
			if tt.err != nil {
				if !errors.Is(err, tt.err) {
					t.Fatalf("ParseQuery(%q) = %v, %v; want error %v", tt.in, got, err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseQuery(%q): %v", tt.in, err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Fatalf("ParseQuery(%q) mismatch (-want +got):\n%s", tt.in, diff)
			}
		})
	}
}

// checkQueryParam checks QueryParam against ParseQuery's result for raw:
// the same error, and for every key (and one that is absent) the same
// first value and count. The JWT extraction reads tokens with QueryParam
// and the policy reads ParseQuery's map; a difference would be a bypass.
func checkQueryParam(t *testing.T, raw string, parsed map[string][]string, parseErr error) {
	t.Helper()
	names := []string{"access_token", "", "a", "a b"}
	for k := range parsed {
		names = append(names, k)
	}
	for _, name := range names {
		first, n, err := QueryParam(raw, name)
		if parseErr != nil {
			if err == nil || err.Error() != parseErr.Error() {
				t.Fatalf("QueryParam(%q, %q) error = %v, ParseQuery's = %v", raw, name, err, parseErr)
			}
			continue
		}
		if err != nil {
			t.Fatalf("QueryParam(%q, %q) = %v; ParseQuery accepts it", raw, name, err)
		}
		vals := parsed[name]
		wantFirst := ""
		if len(vals) > 0 {
			wantFirst = vals[0]
		}
		if first != wantFirst || n != len(vals) {
			t.Fatalf("QueryParam(%q, %q) = %q, %d; ParseQuery has %q", raw, name, first, n, vals)
		}
	}
}

func TestQueryParam(t *testing.T) {
	tests := []struct {
		name, raw, param string
		first            string
		n                int
		err              error
	}{
		{name: "absent", raw: "a=1&b=2", param: "c"},
		{name: "empty query", raw: "", param: "a"},
		{name: "only empty pairs", raw: "&&", param: ""},
		{name: "empty key", raw: "=x&a=1", param: "", first: "x", n: 1},
		{name: "once", raw: "x=1&access_token=abc", param: "access_token", first: "abc", n: 1},
		{name: "repeated: first and count", raw: "a=1&b=2&a=3", param: "a", first: "1", n: 2},
		{name: "escaped key", raw: "access%5Ftoken=abc", param: "access_token", first: "abc", n: 1},
		{name: "plus in key is space", raw: "a+b=c+d", param: "a b", first: "c d", n: 1},
		{name: "no value", raw: "a&b=", param: "a", first: "", n: 1},
		{name: "decoded once", raw: "a=%252e", param: "a", first: "%2e", n: 1},
		// A parameter the policy can't read one way only is refused even
		// when the name asked for sits before the ';'.
		{name: "semicolon after the parameter", raw: "a=1;a=2", param: "a", err: ErrQuerySemicolon},
		{name: "semicolon elsewhere", raw: "access_token=abc&x=1;y=2", param: "access_token", err: ErrQuerySemicolon},
		{name: "bad escape elsewhere", raw: "access_token=abc&x=%zz", param: "access_token", err: ErrInvalidEscape},
		{name: "NUL", raw: "a=%00", param: "a", err: ErrControlChar},
		{name: "space", raw: "a=b c", param: "a", err: ErrInvalidChar},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			first, n, err := QueryParam(tt.raw, tt.param)
			if tt.err != nil {
				if !errors.Is(err, tt.err) {
					t.Fatalf("QueryParam(%q, %q) = %q, %d, %v; want error %v", tt.raw, tt.param, first, n, err, tt.err)
				}
				return
			}
			if err != nil || first != tt.first || n != tt.n {
				t.Fatalf("QueryParam(%q, %q) = %q, %d, %v; want %q, %d", tt.raw, tt.param, first, n, err, tt.first, tt.n)
			}
			parsed, err := ParseQuery(tt.raw)
			checkQueryParam(t, tt.raw, parsed, err)
		})
	}
}

// TestQueryParamAllocs: reading a parameter that needs no decoding costs no
// allocation; the JWT extraction calls it on every request with a query.
func TestQueryParamAllocs(t *testing.T) {
	const raw = "x=1&fields=name,email&access_token=eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJhIn0.c2ln"
	allocs := testing.AllocsPerRun(100, func() {
		if _, n, err := QueryParam(raw, "access_token"); n != 1 || err != nil {
			t.Fatalf("QueryParam: %d, %v", n, err)
		}
	})
	if allocs != 0 {
		t.Errorf("QueryParam allocates %v times per call, want 0", allocs)
	}
}
