package cachestore

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package if a goroutine outlives the tests: every Store
// must stop ristretto's goroutines and its own sweep on Close.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
