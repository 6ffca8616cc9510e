#!/usr/bin/env bash
# bench/drivers.sh — the same two-host rolling deploy through every load
# balancer driver, under load, next to the recipe's fixed sleeps.
#
# Two agents run the sample app; the release goes out through each balancer
# in turn (test/e2e TestDriversBenchmark): zerodown lb (builtin), a real
# HAProxy, a real nginx, and the simulated classic ELB and ALB target group
# of internal/lb/awsfake with AWS's default settings and with tuned ones.
# During each deploy 100 GET/s and three workers of slow POSTs go through
# the balancer and every answer is checked. Per driver it prints the
# rollout time, the failed requests, each host's detach (detaching →
# drained) and attach (attaching → healthy) as the run's own events time
# them, the plan's estimate, and the longest wait per host that `zerodown
# plan` derives from the balancer's settings. The AWS simulation runs AWS's
# timers 50× faster; its steps are also shown at AWS's pace.
#
#   bench/drivers.sh            # about two minutes
#
# Everything listens on 127.0.0.1 only; the test stops what it starts.
set -euo pipefail
REPO=$(cd "$(dirname "$0")/.." && pwd)
cd "$REPO"
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)

echo "## Machine"
echo
echo "- CPUs: $(nproc) × $(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)"
echo "- kernel: $(uname -sr)"
echo "- $(go version)"
echo "- zerodown: built from $(git describe --always --dirty 2>/dev/null || echo 'the working tree')"
echo "- load average (1, 5, 15 min) when the script started: $LOAD_START"
hv="not installed"; command -v haproxy >/dev/null && hv=$(haproxy -v 2>&1 | sed -n 1p)
nv="not installed"; command -v nginx >/dev/null && nv=$(nginx -v 2>&1 | sed -n 1p)
echo "- haproxy: $hv"
echo "- nginx: $nv"
echo
ZERODOWN_BENCH_DRIVERS=1 go test -count=1 -run '^TestDriversBenchmark$' -v -timeout 30m ./test/e2e/ 2>&1 |
	tee /dev/stderr | grep '^|' || { echo "bench/drivers.sh: the benchmark failed (its output is above on stderr)" >&2; exit 1; }
