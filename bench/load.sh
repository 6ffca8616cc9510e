#!/usr/bin/env bash
# bench/load.sh — the load verifier measured: `zerodown load --max` beside
# wrk and hey against the same backend in the same run, then the accuracy of
# the open model (`zerodown load --rate R`) at 1k, 5k and 10k requests/s.
#
#   bench/load.sh                                   # 3 rounds of 10s + rate runs, about 3 minutes
#   ROUNDS=1 DURATION=5s RATE_DURATION=5s bench/load.sh
#   RATES="1000 20000" CLIENTS=raw bench/load.sh
#
# Knobs (environment):
#   DURATION       each throughput run (default 10s; Go syntax s/m)
#   WARMUP         warm-up run before the rounds, discarded (default 2s)
#   ROUNDS         throughput rounds, interleaved; each tool's median round is
#                  reported (default 3)
#   CONNS          connections of every tool (default 50)
#   THREADS        wrk threads (default 1)
#   SIZE           response body size in bytes (default 1024)
#   RATES          open-model rates to check (default "1000 5000 10000")
#   RATE_DURATION  each open-model run (default 10s)
#   CLIENTS        zerodown clients for the rate runs (default "go raw")
#   BACKEND_BIN    use this prebuilt backend instead of building ./examples/hello
#   ZERODOWN_BIN   use this prebuilt zerodown instead of building ./cmd/zerodown
#   KEEP_TMP=1     keep the temp dir (logs, raw outputs) and print it
#
# Progress goes to stderr; the machine description and the tables to stdout.
# Everything listens on 127.0.0.1 only; every process this script starts is
# killed on exit, including on failure and Ctrl-C. See docs/load.md.
set -euo pipefail

DURATION=${DURATION:-10s}
WARMUP=${WARMUP:-2s}
ROUNDS=${ROUNDS:-3}
CONNS=${CONNS:-50}
THREADS=${THREADS:-1}
SIZE=${SIZE:-1024}
RATES=${RATES:-"1000 5000 10000"}
RATE_DURATION=${RATE_DURATION:-10s}
CLIENTS=${CLIENTS:-"go raw"}
KEEP_TMP=${KEEP_TMP:-0}

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
HOST=127.0.0.1

log() { printf '[bench] %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

# ---------------------------------------------------------------- arguments

to_seconds() { # 10s | 2m | 1m30s | 10 -> seconds
	local d=$1 total=0
	[[ $d =~ ^[0-9]+$ ]] && d=${d}s
	[[ $d =~ ^([0-9]+m)?([0-9]+s)?$ && -n $d ]] || die "bad duration: $d (use e.g. 10s, 1m, 1m30s)"
	[[ $d =~ ([0-9]+)m ]] && total=$(( total + 10#${BASH_REMATCH[1]} * 60 ))
	[[ $d =~ ([0-9]+)s ]] && total=$(( total + 10#${BASH_REMATCH[1]} ))
	(( total > 0 )) || die "duration must be > 0: $d"
	echo "$total"
}
DUR_S=$(to_seconds "$DURATION")
WARM_S=$(to_seconds "$WARMUP")
RATE_S=$(to_seconds "$RATE_DURATION")
[[ $ROUNDS =~ ^[1-9][0-9]*$ ]] || die "ROUNDS must be a positive integer"
[[ $CONNS =~ ^[1-9][0-9]*$ ]] || die "CONNS must be a positive integer"
[[ $THREADS =~ ^[1-9][0-9]*$ ]] || die "THREADS must be a positive integer"
(( CONNS >= THREADS )) || die "CONNS must be >= THREADS (wrk requirement)"
[[ $SIZE =~ ^[0-9]+$ ]] || die "SIZE must be a non-negative integer"
for r in $RATES; do [[ $r =~ ^[1-9][0-9]*$ ]] || die "RATES must be positive integers: $r"; done
for c in $CLIENTS; do [[ $c == go || $c == raw ]] || die "CLIENTS must be go and/or raw: $c"; done

# ------------------------------------------------------------------ tools

need=()
for tool in wrk hey jq curl; do command -v "$tool" >/dev/null || need+=("$tool"); done
if (( ${#need[@]} )); then
	if [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null; then
		log "installing ${need[*]}"
		apt-get install -y "${need[@]}" >&2 || { apt-get update >&2 && apt-get install -y "${need[@]}" >&2; } ||
			die "apt-get install ${need[*]} failed"
	else
		die "missing ${need[*]} (apt-get install -y ${need[*]})"
	fi
fi
command -v ss >/dev/null || die "ss not found (iproute2)"
command -v ps >/dev/null || die "ps not found (procps)"

# ------------------------------------------------------- process bookkeeping

TMP=$(mktemp -d /tmp/zerodown-loadbench.XXXXXX)
STARTED=() # every pid we started

tree_pids() { # all pids in the tree rooted at $1, the root first
	ps -e -o pid=,ppid= | awk -v root="$1" '
		{ parent[$1] = $2 }
		END {
			if (!(root in parent)) exit
			in_tree[root] = 1; print root
			do {
				added = 0
				for (p in parent)
					if (!(p in in_tree) && (parent[p] in in_tree)) { in_tree[p] = 1; print p; added = 1 }
			} while (added)
		}'
}

alive() { # running and not a zombie
	local st
	st=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
	st=${st##*) }
	[[ ${st%% *} != Z ]]
}

stop_tree() { # SIGTERM, up to 5s grace, then SIGKILL; reap
	local root=$1 pids p deadline any
	pids=$(tree_pids "$root" || true)
	if [[ -n $pids ]]; then
		# shellcheck disable=SC2086
		kill -TERM $pids 2>/dev/null || true
		deadline=$(( $(date +%s) + 5 ))
		while (( $(date +%s) < deadline )); do
			any=0
			for p in $pids; do alive "$p" && { any=1; break; }; done
			(( any )) || break
			sleep 0.05
		done
		for p in $pids; do if alive "$p"; then kill -KILL "$p" 2>/dev/null || true; fi; done
	fi
	wait "$root" 2>/dev/null || true
}

cleanup() {
	local rc=$? i
	trap - EXIT INT TERM HUP
	for (( i = ${#STARTED[@]} - 1; i >= 0; i-- )); do
		stop_tree "${STARTED[i]}"
	done
	if [[ $KEEP_TMP == 1 ]]; then log "kept $TMP"; else rm -rf "$TMP"; fi
	exit "$rc"
}
trap cleanup EXIT
trap 'log interrupted; exit 130' INT
trap 'log terminated; exit 143' TERM
trap 'exit 129' HUP

forget() {
	local i
	for i in "${!STARTED[@]}"; do
		[[ ${STARTED[i]} == "$1" ]] && unset 'STARTED[i]'
	done
	STARTED=("${STARTED[@]}")
}

# run_bounded SECS OUTFILE CMD... — run CMD to completion, killed after SECS;
# in the background and waited for, so Ctrl-C reaches the trap at once.
run_bounded() {
	local secs=$1 out=$2 pid rc=0; shift 2
	timeout -k 5 "$secs" "$@" </dev/null >"$out" 2>"$out.err" &
	pid=$!
	STARTED+=("$pid")
	wait "$pid" || rc=$?
	forget "$pid"
	return "$rc"
}

# ----------------------------------------------------------------- ports

PORT=
pick_port() { # a free loopback port below the ephemeral range
	local lo hi p tries
	read -r lo _ </proc/sys/net/ipv4/ip_local_port_range
	hi=$(( lo - 1 )); lo=10000
	(( hi > lo + 1000 )) || { lo=20000; hi=30000; }
	for (( tries = 0; tries < 200; tries++ )); do
		p=$(( lo + (RANDOM * 32768 + RANDOM) % (hi - lo) ))
		[[ -z $(ss -Htan "( sport = :$p )" 2>/dev/null) ]] || continue
		PORT=$p
		return 0
	done
	die "no free port found"
}

now_ms() { echo $(( $(date +%s%N) / 1000000 )); }

wait_http() { # URL PID DEADLINE_S LOG — poll until URL answers 200
	local url=$1 pid=$2 secs=$3 logf=$4 end code
	end=$(( $(now_ms) + secs * 1000 ))
	while :; do
		code=$(curl -s -o /dev/null --max-time 1 -w '%{http_code}' "$url" 2>/dev/null || true)
		[[ $code == 200 ]] && return 0
		if ! alive "$pid"; then
			log "process $pid exited before $url answered"; tail -n 20 "$logf" | sed 's/^/    | /' >&2
			return 1
		fi
		if (( $(now_ms) > end )); then
			log "$url did not answer 200 within ${secs}s (last: ${code:-none})"; tail -n 20 "$logf" | sed 's/^/    | /' >&2
			return 1
		fi
		sleep 0.05
	done
}

# ------------------------------------------------------------- measurement

CLK_TCK=$(getconf CLK_TCK)

children_ticks() { # CPU ticks of this shell's reaped children: cutime+cstime
	local st f
	st=$(cat "/proc/$$/stat"); st=${st##*) }
	read -r -a f <<<"$st"
	echo $(( f[13] + f[14] ))
}

# wrk / hey latency to milliseconds: 812.00us, 1.23ms, 1.02s, or hey's secs
to_ms() {
	awk -v v="$1" 'BEGIN {
		n = v + 0; u = v; sub(/^[0-9.]+/, "", u)
		if (u == "us") n /= 1000; else if (u == "s" || u == "secs") n *= 1000; else if (u == "m") n *= 60000
		else if (u != "ms") { print "nan"; exit }
		printf "%.3f", n }'
}

declare -A RPS P50 P99 ERRS CPU NOTE

# throughput NAME — one measured run of that tool; fills the arrays under
# the key "NAME#ROUND".
throughput() {
	local name=$1 k="$1#$ROUND" out c0 c1 reqs rc=0
	out=$TMP/$name-$ROUND.txt
	c0=$(children_ticks)
	case $name in
	wrk)
		run_bounded $(( DUR_S + 30 )) "$out" wrk -t"$THREADS" -c"$CONNS" -d"${DUR_S}s" --latency "$URL" || rc=$?
		c1=$(children_ticks)
		(( rc == 0 )) || { log "wrk failed ($rc)"; cat "$out.err" >&2; return 1; }
		reqs=$(awk '/requests in/ { print $1; exit }' "$out")
		RPS[$k]=$(awk '/^Requests\/sec:/ { print $2; exit }' "$out")
		P50[$k]=$(to_ms "$(awk '/Latency Distribution/ { d = 1 } d && $1 == "50%" { print $2; exit }' "$out")")
		P99[$k]=$(to_ms "$(awk '/Latency Distribution/ { d = 1 } d && $1 == "99%" { print $2; exit }' "$out")")
		ERRS[$k]=$(awk '/Non-2xx or 3xx responses:/ { e += $NF }
			/Socket errors:/ { gsub(/,/, ""); e += $4 + $6 + $8 + $10 } END { print e + 0 }' "$out")
		;;
	hey)
		run_bounded $(( DUR_S + 30 )) "$out" hey -z "${DUR_S}s" -c "$CONNS" "$URL" || rc=$?
		c1=$(children_ticks)
		(( rc == 0 )) || { log "hey failed ($rc)"; cat "$out.err" >&2; return 1; }
		RPS[$k]=$(awk '/Requests\/sec:/ { print $2; exit }' "$out")
		P50[$k]=$(to_ms "$(awk '/Latency distribution/ { d = 1 } d && $1 == "50%" { print $3 "secs"; exit }' "$out")")
		P99[$k]=$(to_ms "$(awk '/Latency distribution/ { d = 1 } d && $1 == "99%" { print $3 "secs"; exit }' "$out")")
		reqs=$(awk '/Status code distribution/ { d = 1; next } d && /^[ \t]*\[[0-9]+\]/ { n += $2 } /Error distribution/ { d = 0 } END { print n + 0 }' "$out")
		ERRS[$k]=$(awk '/Status code distribution/ { d = 1; next } d && /^[ \t]*\[[0-9]+\]/ { if ($1 != "[200]") e += $2 }
			/Error distribution/ { d = 0; x = 1; next } x && /^[ \t]*\[[0-9]+\]/ { gsub(/[\[\]]/, "", $1); e += $1 } END { print e + 0 }' "$out")
		;;
	zerodown)
		# Exit 1 means a threshold failed (a failed request): the numbers
		# are still wanted.
		run_bounded $(( DUR_S + 30 )) "$out" "$ZD" load "$URL" --max "$CONNS" --duration "${DUR_S}s" --json --progress 0 || rc=$?
		c1=$(children_ticks)
		(( rc == 0 || rc == 1 )) || { log "zerodown load failed ($rc)"; cat "$out.err" >&2; return 1; }
		reqs=$(jq -r '.requests.total' "$out")
		RPS[$k]=$(jq -r '.achieved_rate' "$out")
		P50[$k]=$(jq -r '.latency.p50_ms' "$out")
		P99[$k]=$(jq -r '.latency.p99_ms' "$out")
		ERRS[$k]=$(jq -r '.requests.failed' "$out")
		;;
	esac
	if [[ -z ${RPS[$k]} || -z $reqs ]] || (( reqs == 0 )); then
		log "$name: could not read its output:"; cat "$out" >&2
		unset "RPS[$k]"
		return 1
	fi
	CPU[$k]=$(awk -v t=$(( c1 - c0 )) -v hz="$CLK_TCK" -v r="$reqs" 'BEGIN { printf "%.1f", t * 1e6 / hz / r }')
	log "$name round $ROUND: ${RPS[$k]} req/s, p50 ${P50[$k]} ms, p99 ${P99[$k]} ms, errors ${ERRS[$k]}, client CPU ${CPU[$k]} µs/req"
}

# ------------------------------------------------------------------ builds

cd "$REPO"
if [[ -n ${BACKEND_BIN:-} ]]; then
	[[ -x $BACKEND_BIN ]] || die "BACKEND_BIN=$BACKEND_BIN is not executable"
	HELLO=$BACKEND_BIN
else
	HELLO=$TMP/hello
	log "building ./examples/hello"
	run_bounded 600 "$TMP/build-hello.log" go build -o "$HELLO" ./examples/hello ||
		{ cat "$TMP/build-hello.log.err" >&2; die "go build ./examples/hello failed"; }
fi
if [[ -n ${ZERODOWN_BIN:-} ]]; then
	[[ -x $ZERODOWN_BIN ]] || die "ZERODOWN_BIN=$ZERODOWN_BIN is not executable"
	ZD=$ZERODOWN_BIN
else
	ZD=$TMP/zerodown
	log "building ./cmd/zerodown"
	run_bounded 600 "$TMP/build-zerodown.log" go build -o "$ZD" ./cmd/zerodown ||
		{ cat "$TMP/build-zerodown.log.err" >&2; die "go build ./cmd/zerodown failed"; }
fi

# ----------------------------------------------------------------- backend

pick_port
BACKEND=$HOST:$PORT
URL="http://$BACKEND/?size=$SIZE"
"$HELLO" --listen "$BACKEND" --name bench --version v1 </dev/null >"$TMP/hello.log" 2>&1 &
BACKEND_PID=$!
STARTED+=("$BACKEND_PID")
wait_http "http://$BACKEND/healthz" "$BACKEND_PID" 20 "$TMP/hello.log" || die "the backend did not start"
out=$(curl -s -o /dev/null --max-time 5 -w '%{http_code} %{size_download}' "$URL" || true)
[[ $out == "200 $SIZE" ]] || die "$URL answered '$out', want '200 $SIZE'"
log "backend on $BACKEND (pid $BACKEND_PID)"

log "warm-up ${WARM_S}s"
run_bounded $(( WARM_S + 30 )) "$TMP/warmup.txt" wrk -t1 -c"$CONNS" -d"${WARM_S}s" "$URL" || die "warm-up failed"

# -------------------------------------------------------------- throughput

TOOLS=(wrk zerodown hey)
for (( ROUND = 1; ROUND <= ROUNDS; ROUND++ )); do
	log "=== throughput round $ROUND of $ROUNDS"
	# Rotate the order so no tool always runs first (or right after hey).
	for (( i = 0; i < ${#TOOLS[@]}; i++ )); do
		name=${TOOLS[(i + ROUND - 1) % ${#TOOLS[@]}]}
		throughput "$name" || NOTE[$name]="run failed in round $ROUND"
	done
done

# Each tool's median round by req/s (the lower median for an even count).
declare -A SPREAD
for name in "${TOOLS[@]}"; do
	rounds=()
	for (( r = 1; r <= ROUNDS; r++ )); do
		[[ -n ${RPS[$name#$r]:-} ]] && rounds+=("${RPS[$name#$r]} $r")
	done
	n=${#rounds[@]}
	(( n )) || continue
	best=$(printf '%s\n' "${rounds[@]}" | sort -g | sed -n "$(( (n - 1) / 2 + 1 ))p" | awk '{ print $2 }')
	for a in RPS P50 P99 ERRS CPU; do
		declare -n arr=$a
		arr["$name"]=${arr["$name#$best"]}
		unset -n arr
	done
	if (( n > 1 )); then
		SPREAD[$name]=$(printf '%s\n' "${rounds[@]}" | sort -g | awk 'NR == 1 { lo = $1 } { hi = $1 } END { printf "%.0f–%.0f", lo, hi }')
	fi
done

# ------------------------------------------------------------ constant rate

declare -A RA_RATE RA_PCT RA_LAG50 RA_LAG99 RA_P99 RA_FAIL RA_DROP RA_PEAK
for rate in $RATES; do
	for client in $CLIENTS; do
		k="$rate#$client"
		out=$TMP/rate-$rate-$client.json
		log "open model: $rate/s for ${RATE_S}s, $client client"
		rc=0
		run_bounded $(( RATE_S + 60 )) "$out" "$ZD" load "$URL" --rate "$rate" --duration "${RATE_S}s" \
			--client "$client" --json --progress 0 || rc=$?
		if (( rc != 0 && rc != 1 )) || ! jq -e .schema "$out" >/dev/null 2>&1; then
			log "zerodown load --rate $rate failed ($rc)"; cat "$out.err" >&2
			RA_RATE[$k]="failed"
			continue
		fi
		RA_RATE[$k]=$(jq -r '.achieved_rate' "$out")
		RA_PCT[$k]=$(jq -r '.achieved_rate / .target_rate * 100 | . * 100 | round / 100' "$out")
		RA_LAG50[$k]=$(jq -r '.start_lag.p50_ms' "$out")
		RA_LAG99[$k]=$(jq -r '.start_lag.p99_ms' "$out")
		RA_P99[$k]=$(jq -r '.latency.p99_ms' "$out")
		RA_FAIL[$k]=$(jq -r '.requests.failed' "$out")
		RA_DROP[$k]=$(jq -r '.requests.dropped' "$out")
		RA_PEAK[$k]=$(jq -r '.peak_concurrency' "$out")
		log "  achieved ${RA_RATE[$k]}/s (${RA_PCT[$k]}%), start lag p99 ${RA_LAG99[$k]} ms, latency p99 ${RA_P99[$k]} ms, failed ${RA_FAIL[$k]}"
	done
done

# ------------------------------------------------------------------ report

first_line() { "$@" 2>&1 | head -n 1 || true; }
echo "## Machine"
echo
echo "- CPUs: $(nproc) × $(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)"
echo "- load average before the report: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "- kernel: $(uname -sr)"
echo "- $(go version 2>/dev/null || echo 'go: not found')"
echo "- zerodown: built from $(git -C "$REPO" describe --always --dirty 2>/dev/null || echo 'working tree')"
echo "- wrk: $(first_line wrk -v)"
echo "- hey: $(dpkg-query -W -f='${Version}' hey 2>/dev/null || echo unknown) (Debian package)"
echo "- backend: examples/hello, GET /?size=$SIZE, on the same machine"
echo
echo "## Throughput: closed loop, $CONNS connections, ${DUR_S}s, median of $ROUNDS interleaved rounds"
echo
echo "| tool | command | req/s | vs wrk | p50 ms | p99 ms | errors | client CPU µs/req |"
echo "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |"
cmdline() {
	case $1 in
	wrk) echo "\`wrk -t$THREADS -c$CONNS -d${DUR_S}s\`" ;;
	zerodown) echo "\`zerodown load --max $CONNS --duration ${DUR_S}s\`" ;;
	hey) echo "\`hey -z ${DUR_S}s -c $CONNS\`" ;;
	esac
}
for name in "${TOOLS[@]}"; do
	if [[ -z ${RPS[$name]:-} ]]; then
		echo "| $name | $(cmdline "$name") | n/a (${NOTE[$name]:-no run}) | | | | | |"
		continue
	fi
	vs="–"
	[[ -n ${RPS[wrk]:-} ]] && vs=$(awk -v a="${RPS[$name]}" -v b="${RPS[wrk]}" 'BEGIN { printf "%.2fx", a / b }')
	printf '| %s | %s | %.0f | %s | %.2f | %.2f | %s | %s |\n' "$name" "$(cmdline "$name")" "${RPS[$name]}" "$vs" \
		"${P50[$name]}" "${P99[$name]}" "${ERRS[$name]}" "${CPU[$name]}"
done
notes=()
for name in "${TOOLS[@]}"; do
	[[ -n ${SPREAD[$name]:-} ]] && notes+=("$name: ${SPREAD[$name]} req/s over the rounds")
	[[ -n ${NOTE[$name]:-} && -n ${RPS[$name]:-} ]] && notes+=("$name: ${NOTE[$name]}")
done
if (( ${#notes[@]} )); then
	echo
	printf -- '- %s\n' "${notes[@]}"
fi
echo
echo "## Constant rate: open model, ${RATE_S}s per run"
echo
echo "| target req/s | client | achieved req/s | achieved/target | within 1% | start lag p50 ms | start lag p99 ms | latency p99 ms | peak in flight | failed | dropped |"
echo "| ---: | --- | ---: | ---: | :---: | ---: | ---: | ---: | ---: | ---: | ---: |"
for rate in $RATES; do
	for client in $CLIENTS; do
		k="$rate#$client"
		if [[ ${RA_RATE[$k]:-failed} == failed ]]; then
			echo "| $rate | $client | run failed | | | | | | | | |"
			continue
		fi
		ok=$(awk -v p="${RA_PCT[$k]}" 'BEGIN { print (p >= 99 && p <= 101) ? "✓" : "✗" }')
		printf '| %s | %s | %.1f | %.2f%% | %s | %.3f | %.3f | %.3f | %s | %s | %s |\n' "$rate" "$client" "${RA_RATE[$k]}" \
			"${RA_PCT[$k]}" "$ok" "${RA_LAG50[$k]}" "${RA_LAG99[$k]}" "${RA_P99[$k]}" "${RA_PEAK[$k]}" "${RA_FAIL[$k]}" "${RA_DROP[$k]}"
	done
done
