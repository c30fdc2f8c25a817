package config

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// Duration is a [time.Duration] written as a Go duration string ("30s",
// "1h30m", "250ms") or a bare integer number of seconds (30, "30"); see
// [ParseDuration]. Parsing accepts negative values; [Config.Validate] rejects
// them. *Duration implements [flag.Value] and [yaml.Unmarshaler]; Duration
// implements [yaml.Marshaler].
type Duration time.Duration

// ParseDuration parses s with [time.ParseDuration], except that an optionally
// signed integer with no unit means seconds.
func ParseDuration(s string) (time.Duration, error) {
	t := strings.TrimSpace(s)
	if digits := strings.TrimPrefix(t, "-"); digits != "" && strings.Trim(digits, "0123456789") == "" {
		n, err := strconv.ParseInt(t, 10, 64)
		if err != nil || n > math.MaxInt64/int64(time.Second) || n < math.MinInt64/int64(time.Second) {
			return 0, fmt.Errorf("%s is too long a duration", quote(s))
		}
		return time.Duration(n) * time.Second, nil
	}
	d, err := time.ParseDuration(t)
	if err != nil {
		return 0, fmt.Errorf("%s is not a duration (want e.g. 30s, 5m or 1h30m)", quote(s))
	}
	return d, nil
}

// String renders d as [time.Duration.String] does ("1m30s", "0s").
func (d Duration) String() string { return time.Duration(d).String() }

// Set parses v with [ParseDuration]; it makes *Duration a [flag.Value].
func (d *Duration) Set(v string) error {
	x, err := ParseDuration(v)
	if err != nil {
		return err
	}
	*d = Duration(x)
	return nil
}

// UnmarshalYAML reads a duration from a scalar node: an integer (seconds) or
// a string accepted by [ParseDuration]. A null node leaves d unchanged.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	n = resolve(n)
	if isNull(n) {
		return nil
	}
	if n.Kind != yaml.ScalarNode {
		return fmt.Errorf("want a duration (e.g. 30s), got %s", describe(n))
	}
	return d.Set(n.Value)
}

// MarshalYAML writes d as its [Duration.String] form.
func (d Duration) MarshalYAML() (any, error) { return d.String(), nil }
