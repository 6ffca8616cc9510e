#!/usr/bin/env bash
# bench/switch.sh — blue-green switching: zerodown lb against HAProxy.
#
# Two sample apps (blue, green) behind each balancer, under 100 GET/s. The
# front is switched from blue to green and back, ten times each way, 25
# requests apart: zerodown lb through its admin API (POST /v1/switch, what
# `zerodown lb switch` sends), HAProxy 2.6 with `set map` on the map its
# use_backend rule reads. Per balancer: the switch call's time, the time
# from the call until a request is answered by the new pool, and failed
# GETs (test/e2e TestSwitchBenchmark).
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
