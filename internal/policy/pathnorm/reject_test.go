package pathnorm

import (
	"errors"
	"strings"
	"testing"
)

// TestReject covers every refusal, in every mode: validation does not
// depend on the mode.
func TestReject(t *testing.T) {
	long := "/" + strings.Repeat("a", MaxLength)
	tests := []struct {
		name   string
		in     string
		reason error
		part   string
		offset int
	}{
		{name: "too long", in: long, reason: ErrTooLong, part: "path", offset: -1},
		{name: "asterisk", in: "*", reason: ErrAsteriskForm, part: "path", offset: -1},
		{name: "relative", in: "a/b", reason: ErrNotAbsolutePath, part: "path", offset: 0},
		{name: "absolute-form not split", in: "http://example.com/", reason: ErrNotAbsolutePath, part: "path", offset: 0},
		{name: "asterisk with query", in: "*?x", reason: ErrNotAbsolutePath, part: "path", offset: 0},
		{name: "lone percent", in: "/a%", reason: ErrInvalidEscape, part: "path", offset: 2},
		{name: "non-hex", in: "/a%G1", reason: ErrInvalidEscape, part: "path", offset: 2},
		{name: "one digit", in: "/a%a", reason: ErrInvalidEscape, part: "path", offset: 2},
		{name: "one digit then slash", in: "/a%a/b", reason: ErrInvalidEscape, part: "path", offset: 2},
		{name: "NUL", in: "/a\x00", reason: ErrControlChar, part: "path", offset: 2},
		{name: "tab", in: "/a\tb", reason: ErrControlChar, part: "path", offset: 2},
		{name: "newline", in: "/a\nb", reason: ErrControlChar, part: "path", offset: 2},
		{name: "DEL", in: "/a\x7f", reason: ErrControlChar, part: "path", offset: 2},
		{name: "escaped NUL", in: "/a%00", reason: ErrControlChar, part: "path", offset: 2},
		{name: "escaped CR", in: "/a%0d", reason: ErrControlChar, part: "path", offset: 2},
		{name: "escaped US", in: "/a%1F", reason: ErrControlChar, part: "path", offset: 2},
		{name: "escaped DEL", in: "/a%7f", reason: ErrControlChar, part: "path", offset: 2},
		{name: "space", in: "/a b", reason: ErrInvalidChar, part: "path", offset: 2},
		{name: "quote", in: `/a"`, reason: ErrInvalidChar, part: "path", offset: 2},
		{name: "less than", in: "/<script>", reason: ErrInvalidChar, part: "path", offset: 1},
		{name: "brace", in: "/{id}", reason: ErrInvalidChar, part: "path", offset: 1},
		{name: "pipe", in: "/a|b", reason: ErrInvalidChar, part: "path", offset: 2},
		{name: "caret", in: "/a^b", reason: ErrInvalidChar, part: "path", offset: 2},
		{name: "backtick", in: "/a`b", reason: ErrInvalidChar, part: "path", offset: 2},
		{name: "bracket", in: "/a[0]", reason: ErrInvalidChar, part: "path", offset: 2},
		{name: "raw utf-8", in: "/caf\xc3\xa9", reason: ErrInvalidChar, part: "path", offset: 4},
		{name: "raw high byte", in: "/\x80", reason: ErrInvalidChar, part: "path", offset: 1},
		{name: "raw overlong dot", in: "/\xc0\xae\xc0\xae/admin", reason: ErrInvalidChar, part: "path", offset: 1},
		{name: "query NUL", in: "/a?x=%00", reason: ErrControlChar, part: "query", offset: 5},
		{name: "query raw control", in: "/a?x=\x01", reason: ErrControlChar, part: "query", offset: 5},
		{name: "query lone percent", in: "/a?x=%", reason: ErrInvalidEscape, part: "query", offset: 5},
		{name: "query bad hex", in: "/a?x=%zz", reason: ErrInvalidEscape, part: "query", offset: 5},
		{name: "query space", in: "/a?x y", reason: ErrInvalidChar, part: "query", offset: 4},
		{name: "query high byte", in: "/a?x=\xff", reason: ErrInvalidChar, part: "query", offset: 5},
		{name: "fragment control", in: "/a#b\x00", reason: ErrControlChar, part: "fragment", offset: 4},
	}
	modes := []Options{optsNone, optsBase, optsMerge, optsDecode, Default(), optsDefaultKeep, optsDefaultStrip,
		{Mode: ModeNone, EscapedSlashes: EscapedSlashesKeep, PathParameters: PathParametersReject}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, opts := range modes {
				got, err := Normalize(tt.in, opts)
				var e *Error
				if !errors.As(err, &e) {
					t.Fatalf("%v: Normalize(%q) = %q, %v; want *Error", opts.Mode, tt.in, got.Path, err)
				}
				if !errors.Is(err, tt.reason) || e.Part != tt.part || e.Offset != tt.offset {
					t.Fatalf("%v: Normalize(%q) error = %+v; want %v in %s at %d", opts.Mode, tt.in, e, tt.reason, tt.part, tt.offset)
				}
				if strings.Contains(err.Error(), tt.in) && len(tt.in) > 1 {
					t.Fatalf("error %q echoes the input", err)
				}
			}
		})
	}
}

func TestAccept(t *testing.T) {
	tests := []struct {
		name, in string
	}{
		{name: "max length", in: "/" + strings.Repeat("a", MaxLength-1)},
		{name: "escaped control in query", in: "/a?text=line1%0Aline2"},
		{name: "browser raw chars in query", in: `/a?a[]=1&b={"c"}|^` + "`" + `<>\`},
		{name: "question mark in query", in: "/a?b?c=/d"},
		{name: "escaped high bytes in path", in: "/caf%C3%A9"},
		{name: "escaped space", in: "/a%20b"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := Normalize(tt.in, Default()); err != nil {
				t.Fatalf("Normalize(%q) = %v; want success", tt.in, err)
			}
		})
	}
}

func TestInvalidOptions(t *testing.T) {
	for _, opts := range []Options{
		{},
		{Mode: ModeBase},
		{Mode: 9, EscapedSlashes: EscapedSlashesKeep, PathParameters: PathParametersKeep},
		{Mode: ModeMergeSlashes, EscapedSlashes: 7, PathParameters: PathParametersKeep},
		{Mode: ModeMergeSlashes, EscapedSlashes: EscapedSlashesReject},
		{Mode: ModeMergeSlashes, EscapedSlashes: EscapedSlashesReject, PathParameters: 5},
		{Mode: ModeDecodeAndMergeSlashes},
	} {
		if _, err := Normalize("/a", opts); !errors.Is(err, ErrInvalidOptions) {
			t.Errorf("Normalize with %+v: %v; want ErrInvalidOptions", opts, err)
		}
	}
}
