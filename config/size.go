package config

import (
	"fmt"
	"math/big"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// Size is a byte count. It is written as a whole number of bytes ("512") or
// a decimal number and a unit ("256MiB", "1.5GiB", "64 KiB"); see [ParseSize].
// A parsed Size is never negative. *Size implements [flag.Value] and
// [yaml.Unmarshaler]; Size implements [yaml.Marshaler].
type Size int64

// Binary size units, for writing sizes in code.
const (
	KiB Size = 1 << (10 * (iota + 1))
	MiB
	GiB
	TiB
)

// sizeUnits maps each accepted unit to its multiplier. Units are matched
// exactly: "MiB" and "MB" differ by 5%, so "mib" or "MIB" are rejected rather
// than guessed, and so is "Mb" (megabits).
var sizeUnits = map[string]int64{
	"":    1,
	"B":   1,
	"kB":  1e3,
	"KB":  1e3,
	"MB":  1e6,
	"GB":  1e9,
	"TB":  1e12,
	"KiB": 1 << 10,
	"MiB": 1 << 20,
	"GiB": 1 << 30,
	"TiB": 1 << 40,
}

// sizeNames lists the units String renders, largest first within each family;
// binary units are preferred because that is how memory is usually sized.
var sizeNames = []struct {
	name string
	mult int64
}{
	{"TiB", 1 << 40}, {"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10},
	{"TB", 1e12}, {"GB", 1e9}, {"MB", 1e6}, {"KB", 1e3},
}

// ParseSize parses a byte count: digits with an optional fraction, optionally
// followed (after optional spaces) by a unit: B, kB or KB, MB, GB, TB (powers
// of 1000) or KiB, MiB, GiB, TiB (powers of 1024). Units are case-sensitive.
// Fractions of a byte are rounded down ("0.1KiB" is 102). Negative numbers,
// exponents, other units and values above 2^63-1 bytes are errors.
func ParseSize(s string) (int64, error) {
	t := strings.TrimSpace(s)
	if strings.HasPrefix(t, "-") {
		return 0, fmt.Errorf("%s is negative (want a size such as 512MiB)", quote(s))
	}
	i := strings.IndexFunc(t, func(r rune) bool { return (r < '0' || r > '9') && r != '.' })
	num, unit := t, ""
	if i >= 0 {
		num, unit = t[:i], strings.TrimLeft(t[i:], " ")
	}
	mult, ok := sizeUnits[unit]
	if !ok || !isDecimal(num) {
		return 0, fmt.Errorf("%s is not a size (want e.g. 512MiB)", quote(s))
	}
	r, ok := new(big.Rat).SetString(num)
	if !ok { // unreachable after isDecimal, kept so a change there cannot panic
		return 0, fmt.Errorf("%s is not a size (want e.g. 512MiB)", quote(s))
	}
	r.Mul(r, new(big.Rat).SetInt64(mult))
	n := new(big.Int).Quo(r.Num(), r.Denom()) // both positive: rounds down
	if !n.IsInt64() {
		return 0, fmt.Errorf("%s is too large (the limit is 8EiB)", quote(s))
	}
	return n.Int64(), nil
}

// isDecimal reports whether s is digits, optionally followed by a dot and
// more digits, and short enough that nobody meant it.
func isDecimal(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	whole, frac, dot := strings.Cut(s, ".")
	if whole == "" || (dot && frac == "") {
		return false
	}
	return strings.Trim(whole, "0123456789") == "" && strings.Trim(frac, "0123456789") == ""
}

// String renders s in the largest unit that divides it exactly ("256MiB",
// "1500KB"), or as plain bytes; [ParseSize] reads it back to the same value.
func (s Size) String() string {
	if s > 0 {
		for _, u := range sizeNames {
			if int64(s)%u.mult == 0 {
				return strconv.FormatInt(int64(s)/u.mult, 10) + u.name
			}
		}
	}
	return strconv.FormatInt(int64(s), 10)
}

// Set parses v with [ParseSize]; it makes *Size a [flag.Value].
func (s *Size) Set(v string) error {
	n, err := ParseSize(v)
	if err != nil {
		return err
	}
	*s = Size(n)
	return nil
}

// UnmarshalYAML reads a size from a scalar node: an integer (bytes) or a
// string accepted by [ParseSize]. A null node leaves s unchanged.
func (s *Size) UnmarshalYAML(n *yaml.Node) error {
	n = resolve(n)
	if isNull(n) {
		return nil
	}
	if n.Kind != yaml.ScalarNode {
		return fmt.Errorf("want a size (e.g. 512MiB), got %s", describe(n))
	}
	return s.Set(n.Value)
}

// MarshalYAML writes s as its [Size.String] form.
func (s Size) MarshalYAML() (any, error) { return s.String(), nil }
