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
