package pathnorm

import (
	"strings"
	"testing"
)

func TestParseMode(t *testing.T) {
	tests := []struct {
		in      string
		want    Mode
		wantErr string
	}{
		{in: "NONE", want: ModeNone},
		{in: "BASE", want: ModeBase},
		{in: "MERGE_SLASHES", want: ModeMergeSlashes},
		{in: "DECODE_AND_MERGE_SLASHES", want: ModeDecodeAndMergeSlashes},
		{in: "DEFAULT", wantErr: "ambiguous"},
		{in: "base", wantErr: "unknown"},
		{in: "", wantErr: "unknown"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseMode(tt.in)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("ParseMode(%q) = %v, %v; want error containing %q", tt.in, got, err, tt.wantErr)
				}
				return
			}
			if err != nil || got != tt.want || got.String() != tt.in {
				t.Fatalf("ParseMode(%q) = %v (%q), %v; want %v", tt.in, got, got.String(), err, tt.want)
			}
		})
	}
}

func TestParseEscapedSlashes(t *testing.T) {
	tests := []struct {
		in      string
		want    EscapedSlashes
		wantErr bool
	}{
		{in: "REJECT_REQUEST", want: EscapedSlashesReject},
		{in: "UNESCAPE_AND_FORWARD", want: EscapedSlashesDecode},
		{in: "KEEP_UNCHANGED", want: EscapedSlashesKeep},
		{in: "UNESCAPE_AND_REDIRECT", wantErr: true},
		{in: "keep_unchanged", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseEscapedSlashes(tt.in)
			if tt.wantErr {
				if err == nil {
					t.Fatalf("ParseEscapedSlashes(%q) = %v; want error", tt.in, got)
				}
				return
			}
			if err != nil || got != tt.want || got.String() != tt.in {
				t.Fatalf("ParseEscapedSlashes(%q) = %v, %v; want %v", tt.in, got, err, tt.want)
			}
		})
	}
}

func TestParsePathParameters(t *testing.T) {
	tests := []struct {
		in      string
		want    PathParameters
		wantErr bool
	}{
		{in: "KEEP", want: PathParametersKeep},
		{in: "STRIP", want: PathParametersStrip},
		{in: "REJECT", want: PathParametersReject},
		{in: "REJECT_EXCEPT_LAST", want: PathParametersRejectExceptLast},
		{in: "reject", wantErr: true},
		{in: "REJECT_REQUEST", wantErr: true},
		{in: "", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParsePathParameters(tt.in)
			if tt.wantErr {
				if err == nil || !strings.Contains(err.Error(), "unknown path parameters action") {
					t.Fatalf("ParsePathParameters(%q) = %v, %v; want an unknown-action error", tt.in, got, err)
				}
				return
			}
			if err != nil || got != tt.want || got.String() != tt.in {
				t.Fatalf("ParsePathParameters(%q) = %v, %v; want %v", tt.in, got, err, tt.want)
			}
		})
	}
}

func TestDefaults(t *testing.T) {
	want := Options{Mode: ModeMergeSlashes, EscapedSlashes: EscapedSlashesReject, PathParameters: PathParametersRejectExceptLast}
	if got := Default(); got != want {
		t.Errorf("Default() = %+v; want %+v", got, want)
	}
	if got, want := IstioDefault(), (Options{Mode: ModeBase, EscapedSlashes: EscapedSlashesKeep, PathParameters: PathParametersKeep}); got != want {
		t.Errorf("IstioDefault() = %+v; want %+v", got, want)
	}
	if got := PathParameters(0).String(); got != "PathParameters(0)" {
		t.Errorf("PathParameters(0).String() = %q", got)
	}
	if err := (Options{}).Validate(); err == nil {
		t.Error("zero Options validate; want an error so a forgotten setting fails closed")
	}
	if got := Mode(0).String(); got != "Mode(0)" {
		t.Errorf("Mode(0).String() = %q", got)
	}
	if got := EscapedSlashes(9).String(); got != "EscapedSlashes(9)" {
		t.Errorf("EscapedSlashes(9).String() = %q", got)
	}
}
