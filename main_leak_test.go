package main

import (
	"testing"

	"go.uber.org/goleak"

	"dedupcache/internal/testutil"
)

// TestMain fails the package if a goroutine outlives the tests: an app's
// shutdown stops its servers, the follower, the snapshot writer and the
// proxy.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, testutil.LeakOptions()...)
}
