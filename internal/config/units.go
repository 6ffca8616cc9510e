package config

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
)

// Duration is a time.Duration written in Go syntax ("250ms", "2s", "1m30s").
// A bare number is refused: "5" could mean seconds or nanoseconds.
type Duration time.Duration

// String formats the duration in Go syntax.
func (d Duration) String() string { return time.Duration(d).String() }

// UnmarshalYAML implements yaml.InterfaceUnmarshaler. The loader checks the
// same value with its position first (see check.go), so an error here only
// surfaces for input the check could not see.
func (d *Duration) UnmarshalYAML(unmarshal func(any) error) error {
	var v any
	if err := unmarshal(&v); err != nil {
		return err
	}
	got, err := parseDuration(v)
	if err != nil {
		return err
	}
	*d = got
	return nil
}

// parseDuration converts what the YAML library decoded a scalar to.
func parseDuration(v any) (Duration, error) {
	switch v := v.(type) {
	case nil:
		return 0, nil
	case string:
		d, err := time.ParseDuration(v)
		if err != nil {
			return 0, fmt.Errorf("invalid duration %q: want a number with a unit, such as 250ms, 2s or 1m30s", v)
		}
		return Duration(d), nil
	case int64, uint64, float64:
		return 0, fmt.Errorf("invalid duration %v: a unit is required, such as %vs or %vms", v, v, v)
	}
	return 0, fmt.Errorf("invalid duration: want a string such as 2s, got %s", describeValue(v))
}

// ByteSize is a number of bytes: an integer, or a string with a unit
// ("512B", "64KiB", "10MiB", "1GiB"; "64KB", "10MB", "1GB" are powers of 1000).
type ByteSize int64

// UnmarshalYAML implements yaml.InterfaceUnmarshaler; see Duration.
func (s *ByteSize) UnmarshalYAML(unmarshal func(any) error) error {
	var v any
	if err := unmarshal(&v); err != nil {
		return err
	}
	got, err := parseByteSize(v)
	if err != nil {
		return err
	}
	*s = got
	return nil
}

// sizeUnits is ordered so that a longer suffix is tried before the "B" it
// ends with.
var sizeUnits = []struct {
	suffix string
	mult   int64
}{
	{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30},
	{"KB", 1e3}, {"MB", 1e6}, {"GB", 1e9},
	{"B", 1},
}

const sizeHint = "want bytes, or a number with B, KiB, MiB, GiB, KB, MB or GB, such as 64KiB"

func parseByteSize(v any) (ByteSize, error) {
	switch v := v.(type) {
	case nil:
		return 0, nil
	case int64:
		if v < 0 {
			return 0, fmt.Errorf("invalid size %d: must not be negative", v)
		}
		return ByteSize(v), nil
	case uint64:
		if v > math.MaxInt64 {
			return 0, fmt.Errorf("invalid size %d: too large", v)
		}
		return ByteSize(v), nil
	case string:
		num, mult := v, int64(1)
		for _, u := range sizeUnits {
			if strings.HasSuffix(v, u.suffix) {
				num, mult = strings.TrimSuffix(v, u.suffix), u.mult
				break
			}
		}
		// ParseUint refuses signs, spaces and fractions, so "-1KiB" and
		// "1.5MiB" get the hint rather than a surprising rounding.
		n, err := strconv.ParseUint(num, 10, 63)
		if err != nil {
			if errors.Is(err, strconv.ErrRange) {
				return 0, fmt.Errorf("invalid size %q: too large", v)
			}
			return 0, fmt.Errorf("invalid size %q: %s", v, sizeHint)
		}
		if int64(n) > math.MaxInt64/mult {
			return 0, fmt.Errorf("invalid size %q: too large", v)
		}
		return ByteSize(int64(n) * mult), nil
	}
	return 0, fmt.Errorf("invalid size: %s, got %s", sizeHint, describeValue(v))
}

// UnmarshalYAML implements yaml.InterfaceUnmarshaler: a target is either a
// plain "host:port" string or a mapping with address and weight.
func (t *TargetSpec) UnmarshalYAML(unmarshal func(any) error) error {
	var v any
	if err := unmarshal(&v); err != nil {
		return err
	}
	switch v := v.(type) {
	case nil:
		// An anchored null ("- &a") reaches here; validation reports the
		// missing address with its position.
		*t = TargetSpec{}
		return nil
	case string:
		*t = TargetSpec{Address: v}
		return nil
	case map[string]any:
		// A type without the method, so the library decodes the mapping
		// field by field, with its own unknown-field check and positions.
		type plain TargetSpec
		var p plain
		if err := unmarshal(&p); err != nil {
			return err
		}
		*t = TargetSpec(p)
		return nil
	}
	return fmt.Errorf(`invalid target: want "host:port" or {address, weight}, got %s`, describeValue(v))
}

// describeValue names a decoded YAML value for error messages.
func describeValue(v any) string {
	switch v := v.(type) {
	case nil:
		return "null"
	case string:
		return fmt.Sprintf("the string %q", v)
	case int64, uint64:
		return fmt.Sprintf("the integer %v", v)
	case float64:
		return fmt.Sprintf("the number %v", v)
	case bool:
		return fmt.Sprintf("the boolean %v", v)
	case map[string]any:
		return "a mapping"
	case []any:
		return "a list"
	}
	return fmt.Sprintf("a %T", v)
}
