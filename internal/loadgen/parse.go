package loadgen

import (
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
)

// MixEntry is one method of a --mix and its weight.
type MixEntry struct {
	Method string
	Weight int
}

// MaxMixWeight bounds one weight of a mix.
const MaxMixWeight = 1000

// ParseMix parses a method mix such as "get=1,post=1" or "GET=3,POST": a
// comma-separated list of METHOD[=WEIGHT] (weight 0..MaxMixWeight, default
// 1). Methods are upper-cased and must be distinct; entries of weight 0 are
// dropped, and at least one must remain.
func ParseMix(s string) ([]MixEntry, error) {
	if strings.TrimSpace(s) == "" {
		return nil, errors.New("empty mix: want METHOD=WEIGHT pairs such as get=1,post=1")
	}
	var out []MixEntry
	seen := map[string]bool{}
	for part := range strings.SplitSeq(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			return nil, fmt.Errorf("mix %q: empty entry", s)
		}
		name, weight, hasWeight := strings.Cut(part, "=")
		name = strings.ToUpper(strings.TrimSpace(name))
		if !validToken(name) {
			return nil, fmt.Errorf("mix %q: %q is not an HTTP method", s, name)
		}
		if seen[name] {
			return nil, fmt.Errorf("mix %q: %s given twice", s, name)
		}
		seen[name] = true
		w := 1
		if hasWeight {
			weight = strings.TrimSpace(weight)
			n, err := strconv.Atoi(weight)
			if err != nil || n < 0 || n > MaxMixWeight || strings.HasPrefix(weight, "+") {
				return nil, fmt.Errorf("mix %q: weight of %s must be a whole number from 0 to %d, got %q", s, name, MaxMixWeight, weight)
			}
			w = n
		}
		if w > 0 {
			out = append(out, MixEntry{Method: name, Weight: w})
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("mix %q: every weight is 0", s)
	}
	return out, nil
}

// ParseHeader parses "Name: value" (curl's -H form). The value is trimmed
// and may be empty; the name must be a valid header name.
func ParseHeader(s string) (name, value string, err error) {
	name, value, ok := strings.Cut(s, ":")
	if !ok {
		return "", "", fmt.Errorf("header %q: want \"Name: value\"", s)
	}
	name = strings.TrimSpace(name)
	value = strings.TrimSpace(value)
	if !validToken(name) {
		return "", "", fmt.Errorf("header %q: %q is not a valid header name", s, name)
	}
	if !validHeaderValue(value) {
		return "", "", fmt.Errorf("header %q: the value has control characters", s)
	}
	return http.CanonicalHeaderKey(name), value, nil
}

// validToken reports an RFC 9110 token (header names, methods).
func validToken(s string) bool {
	if s == "" || len(s) > 256 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0:
		default:
			return false
		}
	}
	return true
}

// validHeaderValue rejects control characters other than tab.
func validHeaderValue(s string) bool {
	if len(s) > 8192 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if (c < ' ' && c != '\t') || c == 0x7f {
			return false
		}
	}
	return true
}
