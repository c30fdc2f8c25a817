//go:build race

package rules

// raceEnabled is true under the race detector, whose sync.Pool drops
// items at random (so regexp matching allocates now and then).
const raceEnabled = true
