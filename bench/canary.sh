#!/usr/bin/env bash
# bench/canary.sh — a canary through zerodown lb, HAProxy and a simulated
# ALB, twice each (test/e2e TestCanary, TestCanaryHAProxy, TestCanaryALB):
# three hosts, one canary, steps 10 % (3 s), 50 % (3 s), 100 %,
# under the load verifier at 200 GET/s. Per run: the canary's share of the
# verifier's answers during each step (set by server weights; by target
# group weights on the ALB), and
# for a canary answering 5 % of its requests with 500: how long after it
# began serving it was out of the load balancer, and how many requests
# failed meanwhile.
#
#   bench/canary.sh            # about three minutes
#
# Everything listens on 127.0.0.1 only; the test stops what it starts.
set -euo pipefail
REPO=$(cd "$(dirname "$0")/.." && pwd)
cd "$REPO"
echo "## Machine"
echo
echo "- CPUs: $(nproc) × $(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)"
echo "- $(go version)"
echo "- zerodown: built from $(git describe --always --dirty 2>/dev/null || echo 'the working tree')"
echo "- load average (1, 5, 15 min) when the script started: $(cut -d' ' -f1-3 /proc/loadavg)"
echo
echo "| balancer | run | canary share at the 10 % step | at the 50 % step | bad canary: time to abort | failed requests |"
echo "| --- | --- | --- | --- | --- | --- |"
for test in TestCanary TestCanaryHAProxy TestCanaryALB; do
for run in 1 2; do
	out=$(go test -count=1 -run "^$test\$" -v -timeout 10m ./test/e2e/ 2>&1) ||
		{ echo "$out" >&2; echo "bench/canary.sh: $test run $run failed (its output is above on stderr)" >&2; exit 1; }
	mix=$(sed -n 's/.*version mix: v2 \([0-9.]*\)% of \([0-9]*\) answers at the 10% step, \([0-9.]*\)% of \([0-9]*\) at the 50% step.*/\1 % of \2|\3 % of \4/p' <<<"$out")
	abort=$(sed -n 's/.*bad canary: aborted \([^ ]*\) after it began serving; \([0-9]*\) of \([0-9]*\) requests failed.*/\1|\2 of \3/p' <<<"$out")
	balancer=$(case $test in TestCanary) echo "zerodown lb" ;; TestCanaryHAProxy) echo "HAProxy" ;; *) echo "ALB (simulated)" ;; esac)
	echo "| $balancer | $run | ${mix%%|*} | ${mix#*|} | ${abort%%|*} | ${abort#*|} |"
done
done
