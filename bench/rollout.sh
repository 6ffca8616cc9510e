#!/usr/bin/env bash
# Times a rolling deploy of the sample app to two hosts behind `zerodown lb`,
# everything on loopback, with 250ms health-check intervals, and compares it
# with the 240s the classic recipe spends in `sleep 60` alone on two servers
# (detach, sleep 60, deploy, attach, sleep 60 — per server).
#
#   bench/rollout.sh            # 5 timed deploys
#   RUNS=10 bench/rollout.sh
set -euo pipefail
cd "$(dirname "$0")/.."

RUNS=${RUNS:-5}
TMP=$(mktemp -d /tmp/zerodown-rollout.XXXXXX)
PIDS=()
cleanup() {
	for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
	# The apps the agents started run in their own process groups.
	pkill -f "$TMP/" 2>/dev/null || true
	wait 2>/dev/null || true
	rm -rf "$TMP"
}
trap cleanup EXIT INT TERM

log() { echo "[rollout] $*" >&2; }

free_port() {
	python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

# wait_for CMD...: retry until it succeeds, for at most 20s.
wait_for() {
	local deadline=$((SECONDS + 20))
	until "$@" >/dev/null 2>&1; do
		if ((SECONDS >= deadline)); then
			log "gave up waiting for: $*"
			return 1
		fi
		sleep 0.05
	done
}

log "building"
go build -o "$TMP/zerodown" ./cmd/zerodown
go build -o "$TMP/hello" ./examples/hello
tar -C "$TMP" -czf "$TMP/hello.tar.gz" hello

LB_PORT=$(free_port)
ADMIN_PORT=$(free_port)
hosts_yaml=""
targets=""
for i in 1 2; do
	agent_port=$(free_port)
	app_port=$(free_port)
	mkdir -p "$TMP/agent$i"
	cat >"$TMP/agent$i/agent.yaml" <<EOF
listen: 127.0.0.1:$agent_port
root: $TMP/agent$i/root
port: $app_port
allow_root: true
EOF
	"$TMP/zerodown" agent --config "$TMP/agent$i/agent.yaml" >"$TMP/agent$i/log" 2>&1 &
	PIDS+=($!)
	wait_for test -s "$TMP/agent$i/root/agent.token"
	hosts_yaml+="      - { name: host-$i, agent: \"http://127.0.0.1:$agent_port\", target: \"127.0.0.1:$app_port\", token_file: \"$TMP/agent$i/root/agent.token\" }"$'\n'
	targets+="127.0.0.1:$app_port, "
done

cat >"$TMP/lb.yaml" <<EOF
listeners:
  - address: 127.0.0.1:$LB_PORT
    routes: [ { pool: hello } ]
admin: { address: 127.0.0.1:$ADMIN_PORT, token_file: $TMP/lb.token }
state_file: $TMP/lb-state.json
pools:
  hello:
    targets: [ ${targets%, } ]
    health: { path: /healthz, interval: 250ms, timeout: 200ms, healthy_threshold: 2, unhealthy_threshold: 2 }
EOF
"$TMP/zerodown" lb --config "$TMP/lb.yaml" >"$TMP/lb.log" 2>&1 &
PIDS+=($!)
wait_for test -s "$TMP/lb.token"

cat >"$TMP/zerodown.yaml" <<EOF
app:
  name: hello
  run: ["./hello", "--listen", "127.0.0.1:\${PORT}"]
  health: { path: /healthz, interval: 250ms, timeout: 30s }
  stop: { signal: SIGTERM, timeout: 30s }
state: $TMP/state.db
environments:
  staging:
    lb: { driver: builtin, admin: "http://127.0.0.1:$ADMIN_PORT", pool: hello, token_file: $TMP/lb.token }
    hosts:
$hosts_yaml    strategy:
      rolling: { batch: 1, min_healthy: 1 }
EOF

deploy() {
	"$TMP/zerodown" deploy staging --version "$1" --artifact "$TMP/hello.tar.gz" -c "$TMP/zerodown.yaml" -o log >"$TMP/deploy-$1.log" 2>&1
}

log "first deploy (v0), not timed"
deploy v0 || { cat "$TMP/deploy-v0.log"; exit 1; }

times=()
for r in $(seq 1 "$RUNS"); do
	start=$(date +%s.%N)
	deploy "v$r" || { cat "$TMP/deploy-v$r.log"; exit 1; }
	end=$(date +%s.%N)
	t=$(echo "$end - $start" | bc)
	times+=("$t")
	log "run $r: v$r in ${t}s"
done
median=$(printf '%s\n' "${times[@]}" | sort -n | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}')
min=$(printf '%s\n' "${times[@]}" | sort -n | head -1)
max=$(printf '%s\n' "${times[@]}" | sort -n | tail -1)

echo "## Two-host rolling deploy (bench/rollout.sh)"
echo
echo "- machine: $(nproc) × $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//'), $(uname -sr), $(go version | cut -d' ' -f3)"
echo "- health checks every 250ms (app and load balancer), healthy_threshold 2; batch 1, min_healthy 1; $RUNS timed deploys, each of a new version, the whole \`zerodown deploy\` process timed"
echo
echo "| | seconds | vs the classic recipe's 240s of sleeps |"
echo "| --- | ---: | ---: |"
printf '| median | %.2f | %.1f× faster |\n' "$median" "$(echo "240 / $median" | bc -l)"
printf '| fastest | %.2f | |\n' "$min"
printf '| slowest | %.2f | |\n' "$max"
