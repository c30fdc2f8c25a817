package redistier

import (
	"testing"

	"go.uber.org/goleak"

	"dedupcache/internal/testutil"
)

// TestMain fails the package if a goroutine outlives the tests.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, testutil.LeakOptions()...)
}
