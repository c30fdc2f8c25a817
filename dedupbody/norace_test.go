//go:build !race

package dedupbody

const raceEnabled = false
