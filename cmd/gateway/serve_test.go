package main

import (
	"errors"
	"fmt"
	"slices"
	"testing"

	"tollgate.dev/tollgate/internal/config"
)

// A reload's problems are logged one per line: a joined error's and a
// configuration's, never as one field with embedded newlines.
func TestProblemsOnePerLine(t *testing.T) {
	cfgErrs := config.Errors{{File: "g.yaml", Line: 3, Col: 5, Path: "ingress.bogus", Msg: "unknown field"},
		{File: "g.yaml", Line: 9, Col: 7, Path: "ingress.routes[0].upstream.url", Msg: "must be https://"}}
	for _, tc := range []struct {
		name string
		err  error
		want []string
	}{
		{"plain", errors.New("certificates: no such file"), []string{"certificates: no such file"}},
		{"config errors, wrapped", fmt.Errorf("gateway file: %w", cfgErrs), []string{cfgErrs[0].Error(), cfgErrs[1].Error()}},
		{"joined", errors.Join(errors.New("a"), fmt.Errorf("gateway file: %w", cfgErrs), errors.New("b")),
			[]string{"a", cfgErrs[0].Error(), cfgErrs[1].Error(), "b"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := problems(tc.err); !slices.Equal(got, tc.want) {
				t.Errorf("problems = %q, want %q", got, tc.want)
			}
		})
	}
}
