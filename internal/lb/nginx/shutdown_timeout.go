package nginx

import (
	"context"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// DrainBound implements lb.DrainBounder with nginx's
// worker_shutdown_timeout: after it an old worker closes the connections
// it still has. It runs the test command with -t replaced by -T, which
// prints the whole configuration; 0 when the directive is not set.
func (b *Balancer) DrainBound(ctx context.Context) (time.Duration, error) {
	v, ok, err := b.shutdownTimeout(ctx)
	if err != nil || !ok {
		return 0, err
	}
	return v, nil
}

// Advice implements lb.Advisor.
func (b *Balancer) Advice(ctx context.Context) ([]string, error) {
	_, ok, err := b.shutdownTimeout(ctx)
	if err != nil {
		return nil, err
	}
	var out []string
	if !ok {
		out = append(out, "nginx has no worker_shutdown_timeout: an old worker then lives as long as its longest keep-alive or streaming connection, "+
			"so a drain may last up to drain_timeout; set `worker_shutdown_timeout 30s;` in the main context of nginx.conf")
	}
	out = append(out, "open-source nginx reports no per-server state or health: zerodown checks GET http://ADDR"+b.cfg.HealthPath+" on every server itself")
	return out, nil
}

// shutdownTimeout reads worker_shutdown_timeout from `nginx -T`.
func (b *Balancer) shutdownTimeout(ctx context.Context) (time.Duration, bool, error) {
	args := append([]string(nil), b.cfg.Test...)
	found := false
	for i, a := range args[1:] {
		if a == "-t" {
			args[i+1] = "-T"
			found = true
		}
	}
	if !found {
		return 0, false, fmt.Errorf("nginx: read worker_shutdown_timeout: the test command `%s` has no -t to replace with -T (which prints the configuration)", argv(b.cfg.Test))
	}
	out, err := run(ctx, args)
	if err != nil {
		return 0, false, fmt.Errorf("nginx: read worker_shutdown_timeout: `%s`: %w: %s", argv(args), err, tail(out))
	}
	v, ok, err := findShutdownTimeout(string(out))
	if err != nil {
		return 0, false, fmt.Errorf("nginx: read worker_shutdown_timeout from `%s`: %w", argv(args), err)
	}
	return v, ok, nil
}

// shutdownTimeoutRe finds the directive after the start of a line or
// another statement; comments are cut before.
var shutdownTimeoutRe = regexp.MustCompile(`(?:^|[;{}])\s*worker_shutdown_timeout\s+("[^"]*"|'[^']*'|[^;\s]+)\s*;`)

// findShutdownTimeout reads worker_shutdown_timeout from nginx's
// configuration as `nginx -T` prints it.
func findShutdownTimeout(dump string) (time.Duration, bool, error) {
	for _, line := range strings.Split(dump, "\n") {
		line = cutComment(line)
		m := shutdownTimeoutRe.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		v := strings.Trim(m[1], `"'`)
		d, err := parseTime(v)
		if err != nil {
			return 0, false, fmt.Errorf("worker_shutdown_timeout %q: %w", v, err)
		}
		return d, true, nil
	}
	return 0, false, nil
}

// cutComment drops a '#' comment: a '#' that starts a word.
func cutComment(line string) string {
	for i := 0; i < len(line); i++ {
		if line[i] == '#' && (i == 0 || strings.IndexByte(" \t;{}", line[i-1]) >= 0) {
			return line[:i]
		}
	}
	return line
}

// parseTime reads an nginx time: numbers with units from the largest to
// the smallest (y=365d, M=30d, w, d, h, m, s, ms), spaces allowed between
// them, such as 1m30s; a number with no unit is seconds.
func parseTime(s string) (time.Duration, error) {
	units := []struct {
		name string
		d    time.Duration
	}{
		{"y", 365 * 24 * time.Hour}, {"M", 30 * 24 * time.Hour}, {"w", 7 * 24 * time.Hour}, {"d", 24 * time.Hour},
		{"h", time.Hour}, {"ms", time.Millisecond}, {"m", time.Minute}, {"s", time.Second},
	}
	rank := map[string]int{"y": 0, "M": 1, "w": 2, "d": 3, "h": 4, "m": 5, "s": 6, "ms": 7}
	rest := strings.TrimSpace(s)
	if rest == "" {
		return 0, fmt.Errorf("an empty time")
	}
	var total time.Duration
	last := -1
	for rest != "" {
		i := 0
		for i < len(rest) && rest[i] >= '0' && rest[i] <= '9' {
			i++
		}
		if i == 0 {
			return 0, fmt.Errorf("%q is not an nginx time such as 30s or 1m30s", s)
		}
		n, err := strconv.ParseInt(rest[:i], 10, 64)
		if err != nil {
			return 0, fmt.Errorf("%q: %w", s, err)
		}
		rest = rest[i:]
		unit := time.Second
		if rest != "" {
			var name string
			for _, u := range units {
				if strings.HasPrefix(rest, u.name) {
					name, unit = u.name, u.d
					break
				}
			}
			if name == "" {
				return 0, fmt.Errorf("%q: unknown unit in %q (nginx knows ms, s, m, h, d, w, M, y)", s, rest)
			}
			if rank[name] <= last {
				return 0, fmt.Errorf("%q: units must go from the largest to the smallest", s)
			}
			last = rank[name]
			rest = strings.TrimLeft(rest[len(name):], " ")
		} else if last >= rank["s"] {
			// nginx reads a trailing bare number as seconds, after larger units only.
			return 0, fmt.Errorf("%q: a number without unit after seconds", s)
		}
		if n > int64(time.Duration(1<<62)/unit) {
			return 0, fmt.Errorf("%q is too long", s)
		}
		total += time.Duration(n) * unit
		if total < 0 {
			return 0, fmt.Errorf("%q is too long", s)
		}
	}
	return total, nil
}
