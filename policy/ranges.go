package policy

import (
	"math"
	"strings"
)

// ParseRange parses a Range request field value against a representation of
// size bytes (RFC 9110 §14.1.2, §14.2). For a single satisfiable byte range
// it returns its first and last (inclusive) byte positions and ok true: a
// last position past the end is clamped to size-1, and a suffix range
// "bytes=-N" covers the last N bytes (all of them if N >= size).
//
// ok is false when the value is not one byte range: another unit, several
// ranges, or invalid syntax (including last < first). The caller then ignores
// the field and sends the whole representation, as §14.2 allows. ok is false
// and unsatisfiable true when the one range is valid but selects no byte: it
// starts at or after size, or is a suffix of length 0, or size is 0. That is
// a 416 with "Content-Range: bytes */size" (§15.5.17).
func ParseRange(value string, size int64) (start, end int64, ok, unsatisfiable bool) {
	unit, set, found := strings.Cut(value, "=")
	if !found || size < 0 || !strings.EqualFold(trimOWS(unit), "bytes") {
		return 0, 0, false, false
	}
	var spec string
	n := 0
	for m := range strings.SplitSeq(set, ",") { // empty members are allowed (§5.6.1.2)
		if m = trimOWS(m); m != "" {
			spec = m
			n++
		}
	}
	if n != 1 {
		return 0, 0, false, false
	}
	first, last, found := strings.Cut(spec, "-")
	if !found {
		return 0, 0, false, false
	}
	if first == "" { // suffix-range
		length, valid := rangePos(last)
		switch {
		case !valid:
			return 0, 0, false, false
		case length == 0 || size == 0:
			return 0, 0, false, true
		}
		return max(size-length, 0), size - 1, true, false
	}
	start, valid := rangePos(first)
	if !valid {
		return 0, 0, false, false
	}
	end = math.MaxInt64
	if last != "" {
		if end, valid = rangePos(last); !valid || end < start {
			return 0, 0, false, false
		}
	}
	if start >= size {
		return 0, 0, false, true
	}
	return start, min(end, size-1), true, false
}

// rangePos parses 1*DIGIT, saturating near math.MaxInt64/10 (a position that large is
// past any representation, which is all that matters).
func rangePos(s string) (int64, bool) { return digits(s, (math.MaxInt64-9)/10) }
