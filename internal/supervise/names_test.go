//go:build unix && !aix && !solaris

package supervise

import "testing"

func TestNamesFile(t *testing.T) {
	const abs = "/srv/zerodown/agent-7101/agent.pid"
	tests := []struct {
		args []string
		cwd  string
		want bool
	}{
		{[]string{"agent", "supervise", "--pid-file", abs}, "", true},
		{[]string{"agent", "supervise", "--pid-file=" + abs}, "", true},
		{[]string{"agent", "supervise", "--pid-file", "agent.pid"}, "/srv/zerodown/agent-7101", true},
		{[]string{"agent", "supervise", "--pid-file", "../agent-7101/./agent.pid"}, "/srv/zerodown/agent-7101", true},
		{[]string{"agent", "supervise", "--pid-file", "agent.pid"}, "/srv/zerodown/agent-7102", false},
		{[]string{"agent", "supervise", "--pid-file", "agent.pid"}, "", false}, // cwd unknown
		{[]string{"agent", "supervise", "--pid-file", "/srv/zerodown/agent-7102/agent.pid"}, "", false},
		{[]string{"agent", "supervise", "--log", ""}, "/srv/zerodown/agent-7101", false},
	}
	for _, tt := range tests {
		if got := namesFile(tt.args, tt.cwd, abs); got != tt.want {
			t.Errorf("namesFile(%q, cwd %q) = %v, want %v", tt.args, tt.cwd, got, tt.want)
		}
	}
}
