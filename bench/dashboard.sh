#!/usr/bin/env bash
# bench/dashboard.sh — zerodown server's dashboard in a real headless
# Chromium (test/dashboard BenchmarkDashboard): the first render of the run
# page (a finished run with 40 tasks and 300 events) and of the history
# (10,000 runs in the SQLite journal), each beside the JSON API of the same
# data loaded in the same tab; and the delay from an event's append to the
# journal to the run page's script, beside the Go client (api.ReadSSE) on
# the same stream. Every figure has its peer from the same run.
#
#   bench/dashboard.sh [rounds]     # default 3; needs Debian's chromium
set -euo pipefail
REPO=$(cd "$(dirname "$0")/.." && pwd)
cd "$REPO"
ROUNDS=${1:-3}
command -v chromium >/dev/null || { echo "bench/dashboard.sh: no chromium (apt-get install chromium)" >&2; exit 1; }
echo "## Machine"
echo
echo "- CPUs: $(nproc) × $(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)"
echo "- $(go version); $(chromium --version 2>/dev/null | head -1), headless"
echo "- zerodown: built from $(git describe --always --dirty 2>/dev/null || echo 'the working tree')"
echo "- load average (1, 5, 15 min) when the script started: $(cut -d' ' -f1-3 /proc/loadavg)"
for r in $(seq 1 "$ROUNDS"); do
	echo
	echo "## Round $r of $ROUNDS"
	out=$(ZERODOWN_REQUIRE_CHROMIUM=1 go test -run '^$' -bench '^BenchmarkDashboard$' -benchtime 1x -count=1 -timeout 10m ./test/dashboard/ 2>&1) ||
		{ echo "$out" >&2; echo "bench/dashboard.sh: the benchmark failed (its output is above on stderr)" >&2; exit 1; }
	# The benchmark prints its own tables; keep them, drop go test's lines.
	awk '/^(###|\||Chromium \/|$)/' <<<"$out" | cat -s
done
