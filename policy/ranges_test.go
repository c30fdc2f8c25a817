package policy

import "testing"

func TestParseRange(t *testing.T) {
	tests := []struct {
		name       string
		value      string
		size       int64
		start, end int64
		ok, unsat  bool
	}{
		{"RFC 9110 §14.1.2 first and last", "bytes=0-499", 1000, 0, 499, true, false},
		{"RFC 9110 §14.1.2 open-ended", "bytes=500-", 1000, 500, 999, true, false},
		{"RFC 9110 §14.1.2 suffix", "bytes=-500", 1000, 500, 999, true, false},
		{"RFC 9110 §14.1.2 suffix longer than the representation", "bytes=-2000", 1000, 0, 999, true, false},
		{"RFC 9110 §14.1.2 last past the end is clamped", "bytes=0-5000", 1000, 0, 999, true, false},
		{"RFC 9110 §14.1.2 single byte", "bytes=999-999", 1000, 999, 999, true, false},
		{"RFC 9110 §14.1 unit is case-insensitive", "BYTES=0-1", 1000, 0, 1, true, false},
		{"RFC 9110 §5.6.1 empty members around one range", "bytes=0-1,", 1000, 0, 1, true, false},
		{"RFC 9110 §5.6.1 whitespace around the range", "bytes= 0-1 ", 1000, 0, 1, true, false},
		{"RFC 9110 §14.1.2 huge last clamped", "bytes=0-99999999999999999999999", 1000, 0, 999, true, false},
		{"RFC 9110 §14.1.2 first at size: unsatisfiable", "bytes=1000-", 1000, 0, 0, false, true},
		{"RFC 9110 §14.1.2 first past size: unsatisfiable", "bytes=1000-2000", 1000, 0, 0, false, true},
		{"RFC 9110 §14.1.2 huge first: unsatisfiable", "bytes=99999999999999999999999-", 1000, 0, 0, false, true},
		{"RFC 9110 §14.1.2 zero-length suffix: unsatisfiable", "bytes=-0", 1000, 0, 0, false, true},
		{"RFC 9110 §14.1.2 empty representation: unsatisfiable", "bytes=0-", 0, 0, 0, false, true},
		{"RFC 9110 §14.1.2 suffix of empty representation: unsatisfiable", "bytes=-5", 0, 0, 0, false, true},
		{"RFC 9110 §14.1.2 last before first is invalid", "bytes=5-2", 1000, 0, 0, false, false},
		{"RFC 9110 §14.2 multiple ranges: ignored, not 416", "bytes=0-1,5-6", 1000, 0, 0, false, false},
		{"RFC 9110 §14.2 multiple unsatisfiable ranges: ignored", "bytes=2000-,3000-", 1000, 0, 0, false, false},
		{"RFC 9110 §14.1 other unit", "items=0-1", 1000, 0, 0, false, false},
		{"RFC 9110 §14.1.2 no dash", "bytes=5", 1000, 0, 0, false, false},
		{"RFC 9110 §14.1.2 dash only", "bytes=-", 1000, 0, 0, false, false},
		{"RFC 9110 §14.1.2 letters", "bytes=a-b", 1000, 0, 0, false, false},
		{"RFC 9110 §14.1.2 two dashes", "bytes=1-2-3", 1000, 0, 0, false, false},
		{"RFC 9110 §14.1.2 negative first", "bytes=--5", 1000, 0, 0, false, false},
		{"RFC 9110 §14.1.2 no ranges", "bytes=", 1000, 0, 0, false, false},
		{"RFC 9110 §14.2 empty value", "", 1000, 0, 0, false, false},
		{"negative size is invalid", "bytes=0-1", -1, 0, 0, false, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			start, end, ok, unsat := ParseRange(tt.value, tt.size)
			if start != tt.start || end != tt.end || ok != tt.ok || unsat != tt.unsat {
				t.Errorf("ParseRange(%q, %d) = %d, %d, %v, %v; want %d, %d, %v, %v",
					tt.value, tt.size, start, end, ok, unsat, tt.start, tt.end, tt.ok, tt.unsat)
			}
		})
	}
}
