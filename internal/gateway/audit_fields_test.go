package gateway

import (
	"slices"
	"testing"

	"tollgate.dev/tollgate/internal/audit"
	"tollgate.dev/tollgate/internal/config"
)

// config validates audit.pseudonymize.fields with its own list (it can't
// import audit): the two must not drift apart.
func TestPseudonymFieldsMatch(t *testing.T) {
	if !slices.Equal(config.PseudonymFields, audit.PseudonymFields) {
		t.Errorf("config.PseudonymFields %v != audit.PseudonymFields %v", config.PseudonymFields, audit.PseudonymFields)
	}
}
