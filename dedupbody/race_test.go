//go:build race

package dedupbody

// raceEnabled: under the race detector sync.Pool drops a quarter of Puts,
// so ristretto's lossy Get buffer (a pool of 64-key stripes) essentially
// never hands accesses to the admission policy.
const raceEnabled = true
