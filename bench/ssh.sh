#!/usr/bin/env bash
# bench/ssh.sh — hosts reached over SSH (test/e2e TestSSHRolloutBench): two
# hosts, each a real OpenSSH server on a loopback port with nothing
# installed; `zerodown hosts bootstrap` from nothing, then again (nothing to
# do); then two-host rolling deploys of the sample app behind zerodown lb,
# alternating between the agents reached through SSH and the same agents
# reached directly at their loopback ports (5 each), timed as a user sees
# them: the whole `zerodown deploy` process.
#
#   bench/ssh.sh            # about two minutes; needs sshd (openssh-server)
#
# Everything listens on 127.0.0.1 only; the test stops what it starts.
set -euo pipefail
REPO=$(cd "$(dirname "$0")/.." && pwd)
cd "$REPO"
echo "## Machine"
echo
echo "- CPUs: $(nproc) × $(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)"
echo "- $(go version); $(/usr/sbin/sshd -V 2>&1 | head -1)"
echo "- zerodown: built from $(git describe --always --dirty 2>/dev/null || echo 'the working tree')"
echo "- load average (1, 5, 15 min) when the script started: $(cut -d' ' -f1-3 /proc/loadavg)"
echo
echo "| run | bootstrap, 2 hosts from nothing | bootstrap again | rollout over SSH (median, min–max) | rollout direct (median, min–max) | SSH / direct |"
echo "| --- | ---: | ---: | ---: | ---: | ---: |"
for run in 1 2; do
	out=$(ZERODOWN_BENCH_SSH=1 go test -count=1 -run '^TestSSHRolloutBench$' -v -timeout 10m ./test/e2e/ 2>&1) ||
		{ echo "$out" >&2; echo "bench/ssh.sh: run $run failed (its output is above on stderr)" >&2; exit 1; }
	line=$(grep -o 'bench: .*' <<<"$out")
	read -r boot again sshmed sshmin sshmax dmed dmin dmax < <(sed -E 's/bench: bootstrap from nothing ([0-9.]+) s, again ([0-9.]+) s; rollout over SSH median ([0-9.]+) s \(min ([0-9.]+), max ([0-9.]+)\), direct median ([0-9.]+) s \(min ([0-9.]+), max ([0-9.]+)\).*/\1 \2 \3 \4 \5 \6 \7 \8/' <<<"$line")
	ratio=$(awk -v a="$sshmed" -v b="$dmed" 'BEGIN { printf "%.2f×", a / b }')
	echo "| $run | $boot s | $again s | $sshmed s ($sshmin–$sshmax) | $dmed s ($dmin–$dmax) | $ratio |"
done
