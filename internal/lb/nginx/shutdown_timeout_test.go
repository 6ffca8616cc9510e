package nginx

import (
	"strings"
	"testing"
	"time"
)

func TestParseTime(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want time.Duration
		err  string
	}{
		{"30", 30 * time.Second, ""},
		{"30s", 30 * time.Second, ""},
		{"500ms", 500 * time.Millisecond, ""},
		{"1m30s", 90 * time.Second, ""},
		{"1h 30m", 90 * time.Minute, ""},
		{"2d", 48 * time.Hour, ""},
		{"1w", 7 * 24 * time.Hour, ""},
		{"1M", 30 * 24 * time.Hour, ""},
		{"1y", 365 * 24 * time.Hour, ""},
		{"1m5", 65 * time.Second, ""},
		{"1s500ms", 1500 * time.Millisecond, ""},
		{"", 0, "an empty time"},
		{"30x", 0, "unknown unit"},
		{"s", 0, "not an nginx time"},
		{"30s1m", 0, "from the largest to the smallest"},
		{"1s1s", 0, "from the largest to the smallest"},
		{"1s5", 0, "without unit after seconds"},
		{"99999999999y", 0, "too long"},
	} {
		got, err := parseTime(tc.in)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("parseTime(%q) = %s, %v; want an error with %q", tc.in, got, err, tc.err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("parseTime(%q) = %s, %v; want %s", tc.in, got, err, tc.want)
		}
	}
}

func TestFindShutdownTimeout(t *testing.T) {
	for _, tc := range []struct {
		name, dump string
		want       time.Duration
		set        bool
	}{
		{"own line", "# configuration file /etc/nginx/nginx.conf:\nworker_processes 2;\nworker_shutdown_timeout 1m30s;\n", 90 * time.Second, true},
		{"after another directive", "worker_processes 2; worker_shutdown_timeout 10s; events {}", 10 * time.Second, true},
		{"quoted", "worker_shutdown_timeout \"15s\";", 15 * time.Second, true},
		{"commented out", "# worker_shutdown_timeout 30s;\nworker_processes 2;\n", 0, false},
		{"comment after", "worker_processes 2; # worker_shutdown_timeout 30s;\n", 0, false},
		{"unset", "events {}\nhttp {}\n", 0, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, set, err := findShutdownTimeout(tc.dump)
			if err != nil || got != tc.want || set != tc.set {
				t.Fatalf("got %s set=%v err=%v, want %s set=%v", got, set, err, tc.want, tc.set)
			}
		})
	}
	if _, _, err := findShutdownTimeout("worker_shutdown_timeout 10q;"); err == nil || !strings.Contains(err.Error(), `worker_shutdown_timeout "10q"`) {
		t.Fatalf("a bad value: %v", err)
	}
}
