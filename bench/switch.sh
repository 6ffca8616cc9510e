#!/usr/bin/env bash
# bench/switch.sh — blue-green switching: zerodown lb against HAProxy.
#
# Two sample apps (blue, green) behind each balancer, under 100 GET/s. The
# live front is switched from blue to green and back, ten times each way,
# 25 requests apart, through the drivers a blue-green deploy uses: zerodown
# lb's (two admin calls: the live routes, then the preview's) and HAProxy
# 2.6's (`set map` of the live and preview entries on the map the
# use_backend rules read, then the map file). Per balancer and direction:
# the switch call's time, the time from the call until the new pool
# answers (the 20 requests after it all do), and failed GETs
# (test/e2e TestSwitchBenchmark).
#
#   bench/switch.sh            # about 15 s
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
hv="not installed"; command -v haproxy >/dev/null && hv=$(haproxy -v 2>&1 | sed -n 1p)
echo "- haproxy: $hv"
echo
ZERODOWN_BENCH_SWITCH=1 go test -count=1 -run '^TestSwitchBenchmark$' -v -timeout 10m ./test/e2e/ 2>&1 |
	tee /dev/stderr | grep '^|' || { echo "bench/switch.sh: the benchmark failed (its output is above on stderr)" >&2; exit 1; }
