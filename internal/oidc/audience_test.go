package oidc

import (
	"errors"
	"slices"
	"testing"
	"time"
)

// TestAudience: the aud claim as the audience check (every request, cache
// hits included) and the audience list (policy's request.auth.audiences)
// read it, from the one reader both use.
func TestAudience(t *testing.T) {
	absent := map[string]any{}
	for _, tc := range []struct {
		name       string
		claims     map[string]any
		configured []string
		wantErr    error // of the check
		wantList   []string
		listErr    bool
	}{
		{"absent, none configured", absent, nil, nil, nil, false},
		{"absent, configured", absent, []string{"api"}, errAudience, nil, false},
		{"string match", map[string]any{"aud": "api"}, []string{"api"}, nil, []string{"api"}, false},
		{"string mismatch", map[string]any{"aud": "other"}, []string{"api"}, errAudience, []string{"other"}, false},
		{"list, one matches", map[string]any{"aud": []any{"x", "api"}}, []string{"api"}, nil, []string{"x", "api"}, false},
		{"list, none matches", map[string]any{"aud": []any{"x", "y"}}, []string{"api"}, errAudience, []string{"x", "y"}, false},
		{"empty list, none configured", map[string]any{"aud": []any{}}, nil, nil, []string{}, false},
		{"list with a non-string after a match", map[string]any{"aud": []any{"api", 7.0}}, []string{"api"}, errMalformed, nil, true},
		{"list with a non-string, none configured", map[string]any{"aud": []any{7.0}}, nil, errMalformed, nil, true},
		{"null", map[string]any{"aud": nil}, nil, errMalformed, nil, true},
		{"a number", map[string]any{"aud": 7.0}, []string{"api"}, errMalformed, nil, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tok := &token{claims: tc.claims}
			r := &rule{audiences: tc.configured}
			if err := r.checkClaims(tok, time.Now()); !errors.Is(err, tc.wantErr) || (err == nil) != (tc.wantErr == nil) {
				t.Errorf("checkClaims = %v, want %v", err, tc.wantErr)
			}
			list, err := tok.audiences()
			if (err != nil) != tc.listErr {
				t.Fatalf("audiences error = %v, want error %v", err, tc.listErr)
			}
			if !slices.Equal(list, tc.wantList) || (list == nil) != (tc.wantList == nil) {
				t.Errorf("audiences = %#v, want %#v", list, tc.wantList)
			}
		})
	}
}
