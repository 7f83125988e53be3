package egress

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package's tests if any goroutine outlives them: the
// DNS client's exchanges, the test listeners and the transports must all stop.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
