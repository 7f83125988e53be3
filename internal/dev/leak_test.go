package dev

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package's tests if any goroutine outlives them: every
// component owns its goroutines and stops them in Close/Shutdown.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
