// Package testutil holds small helpers shared by the packages' tests.
package testutil

import "runtime"

// HeapAlloc returns the live heap after two garbage collections (the
// second collects what the first one's finalizers released): what the
// objects still reachable take, before the GC's headroom.
func HeapAlloc() uint64 {
	var ms runtime.MemStats
	runtime.GC()
	runtime.GC()
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}
