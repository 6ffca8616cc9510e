#!/usr/bin/env bash
# bench/server-takeover.sh — zerodown server's lease takeover (test/server
# TestTakeoverBench): two replicas on one PostgreSQL database in front of a
# three-host fleet behind zerodown lb, with GET and slow-POST load through
# the balancer all along. Each round runs one rolling deploy to its end on
# replica A (the peer: a run nobody kills), then another that is SIGKILLed
# with A as soon as a host is reported draining; replica B takes it over
# when the lease runs out and finishes it. Per round: the time from the
# SIGKILL to B holding the environment's lock, to B's first event in the
# run's journal, and to the run's end; both runs' durations; takeover/lease.
#
#   bench/server-takeover.sh             # 5 rounds, lease 3s, about three minutes
#   ROUNDS=10 LEASE=15s bench/server-takeover.sh
#
# Needs PostgreSQL (Debian's postgresql package: initdb and postgres).
# Everything listens on 127.0.0.1 only; the test stops what it starts.
set -euo pipefail
REPO=$(cd "$(dirname "$0")/.." && pwd)
cd "$REPO"
ROUNDS=${ROUNDS:-5}
LEASE=${LEASE:-3s}
initdb=$(command -v initdb || ls /usr/lib/postgresql/*/bin/initdb 2>/dev/null | sort -V | tail -1)
echo "## Machine"
echo
echo "- CPUs: $(nproc) × $(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)"
echo "- $(go version); $("$initdb" --version)"
echo "- zerodown: built from $(git describe --always --dirty 2>/dev/null || echo 'the working tree')"
echo "- load average (1, 5, 15 min) when the script started: $(cut -d' ' -f1-3 /proc/loadavg)"
echo
out=$(ZERODOWN_BENCH_TAKEOVER=$ROUNDS ZERODOWN_BENCH_LEASE=$LEASE go test -count=1 -run '^TestTakeoverBench$' -v -timeout 30m ./test/server/ 2>&1) ||
	{ echo "$out" >&2; echo "bench/server-takeover.sh: the benchmark failed (its output is above on stderr)" >&2; exit 1; }
echo "| round | lease | SIGKILL → B holds the lock | → B's first event | → the run's end | the run, killed | the peer run, not killed | takeover / lease |"
echo "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
row() {
	awk -v label="$1" '{
		for (i = 1; i <= NF; i++) v[$i] = $(i + 1)
		lease = v["lease"]
		printf "| %s | %s s | %.3f s | %.3f s | %.2f s | %.2f s | %.2f s | %.2f× |\n", label, lease, v["lock"], v["first"], v["end"], v["killed-run"], v["peer-run"], v["lock"] / lease
	}'
}
grep -o 'bench: round .*' <<<"$out" | while read -r line; do
	row "$(awk '{ print $3 }' <<<"$line")" <<<"$line"
done
grep -o 'bench: median .*' <<<"$out" | row "median"
echo
grep -o 'bench: load .*' <<<"$out" | sed -E 's/bench: load ([0-9]+) GETs ([0-9]+) POSTs ([0-9]+) failed/Load through the balancer during the rounds: \1 GETs and \2 slow POSTs answered, \3 failed./'
