#!/usr/bin/env bash
# bench/proxy.sh — compare `zerodown lb` with HAProxy, nginx and Caddy.
#
# One backend (examples/hello) is started once; then each proxy in turn is
# started in front of it on loopback, warmed up, loaded with wrk, measured and
# stopped before the next one starts, so only one proxy runs at a time. Each
# proxy is measured twice: behind a plain HTTP listener, and behind a TLS
# listener (rows zerodown-tls, haproxy-tls, ...) with a self-signed
# certificate; wrk speaks HTTP/1.1 on both.
#
#   bench/proxy.sh                          # all nine rows, 10s each
#   DURATION=30s CONNS=100 bench/proxy.sh
#   ONLY="direct haproxy zerodown" TLS=0 bench/proxy.sh
#   BASE_REF=main ONLY="haproxy zerodown" ROUNDS=3 bench/proxy.sh
#
# Knobs (environment):
#   DURATION     measured wrk run per target (default 10s; Go syntax s/m)
#   WARMUP       warm-up wrk run per target, discarded (default 2s)
#   CONNS        wrk connections (default 50)
#   THREADS      wrk threads (default 1)
#   SIZE         response body size in bytes (default 1024)
#   ROUNDS       repeat the whole sequence N times, interleaved, and report
#                each target's median round by req/s (default 1)
#   ONLY         space-separated subset of: direct zerodown haproxy nginx caddy
#   TLS          0: plain HTTP rows only; 1: plain and TLS rows; only: TLS
#                rows only, without direct (default 1)
#   BASE_REF     a git commit (main, HEAD~1, a tag or sha): also build zerodown
#                at that commit and measure it as zerodown-base (and
#                zerodown-base-tls) in the same rounds; adds "vs base" columns
#   BACKEND_BIN  use this prebuilt backend instead of building ./examples/hello
#   ZERODOWN_BIN use this prebuilt zerodown instead of building ./cmd/zerodown
#   KEEP_TMP=1   keep the temp dir (configs, logs, raw wrk output) and print it
#
# Progress goes to stderr; the machine description and the table to stdout.
# Everything listens on 127.0.0.1 only. Every process this script starts is
# killed on exit, including on failure and Ctrl-C. See bench/README.md.
set -euo pipefail

DURATION=${DURATION:-10s}
WARMUP=${WARMUP:-2s}
CONNS=${CONNS:-50}
THREADS=${THREADS:-1}
SIZE=${SIZE:-1024}
ROUNDS=${ROUNDS:-1}
ONLY=${ONLY:-}
TLS=${TLS:-1}
BASE_REF=${BASE_REF:-}
KEEP_TMP=${KEEP_TMP:-0}
ALL_NAMES="direct zerodown haproxy nginx caddy"
# Idle upstream connections each proxy may keep: never fewer than the client
# connections, so no proxy has to reconnect to the backend under steady load.
KEEPALIVE=$(( CONNS > 64 ? CONNS : 64 ))

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
HOST=127.0.0.1

log() { printf '[bench] %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

# ---------------------------------------------------------------- arguments

to_seconds() { # 10s | 2m | 1m30s | 1h | 10 -> seconds
	local d=$1 total=0
	[[ $d =~ ^[0-9]+$ ]] && d=${d}s # bare number: seconds
	[[ $d =~ ^([0-9]+h)?([0-9]+m)?([0-9]+s)?$ && -n $d ]] || die "bad duration: $d (use e.g. 10s, 1m, 1m30s)"
	[[ $d =~ ([0-9]+)h ]] && total=$(( total + 10#${BASH_REMATCH[1]} * 3600 ))
	[[ $d =~ ([0-9]+)m ]] && total=$(( total + 10#${BASH_REMATCH[1]} * 60 ))
	[[ $d =~ ([0-9]+)s ]] && total=$(( total + 10#${BASH_REMATCH[1]} ))
	(( total > 0 )) || die "duration must be > 0: $d"
	echo "$total"
}
DUR_S=$(to_seconds "$DURATION")
WARM_S=$(to_seconds "$WARMUP")
[[ $CONNS =~ ^[1-9][0-9]*$ ]] || die "CONNS must be a positive integer"
[[ $THREADS =~ ^[1-9][0-9]*$ ]] || die "THREADS must be a positive integer"
(( CONNS >= THREADS )) || die "CONNS must be >= THREADS (wrk requirement)"
[[ $SIZE =~ ^[0-9]+$ ]] || die "SIZE must be a non-negative integer"
[[ $ROUNDS =~ ^[1-9][0-9]*$ ]] || die "ROUNDS must be a positive integer"
[[ $TLS == 0 || $TLS == 1 || $TLS == only ]] || die "TLS must be 0, 1 or only"

NAMES=() # the proxies asked for, from ONLY
if [[ -z $ONLY ]]; then
	read -r -a NAMES <<<"$ALL_NAMES"
else
	for n in $ONLY; do
		[[ " $ALL_NAMES " == *" $n "* ]] || die "unknown name in ONLY: $n (known: $ALL_NAMES)"
	done
	for n in $ALL_NAMES; do # keep the canonical order
		[[ " $ONLY " == *" $n "* ]] && NAMES+=("$n")
	done
fi
selected() { [[ " ${NAMES[*]} " == *" $1 "* ]]; }

# ROWS are what gets measured, in this order in every round and in the table:
# the plain rows, then the TLS rows. zerodown-base sits next to zerodown.
ROWS=()
add_rows() { # SUFFIX
	local n
	for n in "${NAMES[@]}"; do
		[[ $n == direct && -n $1 ]] && continue # the backend speaks plain HTTP only
		ROWS+=("$n$1")
		[[ $n == zerodown && -n $BASE_REF ]] && ROWS+=("zerodown-base$1")
	done
	return 0
}
[[ $TLS == only ]] || add_rows ""
[[ $TLS == 0 ]] || add_rows -tls
(( ${#ROWS[@]} )) || die "nothing to measure with ONLY=\"$ONLY\" and TLS=$TLS"
row_kind() { local k=${1%-tls}; echo "${k%-base}"; } # zerodown-base-tls -> zerodown

command -v wrk >/dev/null || die "wrk not found (apt-get install -y wrk)"
command -v curl >/dev/null || die "curl not found"
command -v ps >/dev/null || die "ps not found (procps)"
if [[ $TLS != 0 ]]; then
	command -v openssl >/dev/null || die "openssl not found (apt-get install -y openssl, or TLS=0)"
fi
if [[ -n $BASE_REF ]]; then
	BASE_COMMIT=$(git -C "$REPO" rev-parse --verify --quiet "$BASE_REF^{commit}") ||
		die "BASE_REF=$BASE_REF is not a commit of $REPO"
fi

# ------------------------------------------------------- process bookkeeping

TMP=$(mktemp -d /tmp/zerodown-bench.XXXXXX)
mkdir -p "$TMP/bin"
STARTED=() # every pid we started, in order

# All pids in the process tree rooted at $1 (the root first).
tree_pids() {
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

# Stop the tree rooted at $1: SIGTERM, up to 5s grace, then SIGKILL; reap.
stop_tree() {
	local root=$1 pids p deadline
	pids=$(tree_pids "$root" || true)
	if [[ -n $pids ]]; then
		# shellcheck disable=SC2086
		kill -TERM $pids 2>/dev/null || true
		deadline=$(( $(date +%s) + 5 ))
		while (( $(date +%s) < deadline )); do
			local any=0
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
	if [[ $KEEP_TMP == 1 ]]; then
		log "kept $TMP"
	else
		rm -rf "$TMP"
	fi
	exit "$rc"
}
trap cleanup EXIT
trap 'log interrupted; exit 130' INT
trap 'log terminated; exit 143' TERM
trap 'exit 129' HUP

# start_bg LOGFILE CMD... — run CMD in the background, remember it; sets PID.
PID=
start_bg() {
	local logf=$1; shift
	"$@" </dev/null >"$logf" 2>&1 &
	PID=$!
	STARTED+=("$PID")
}

# Drop a pid from STARTED once it has been stopped or reaped.
forget() {
	local i
	for i in "${!STARTED[@]}"; do
		[[ ${STARTED[i]} == "$1" ]] && unset 'STARTED[i]'
	done
	STARTED=("${STARTED[@]}")
}

stop_started() {
	stop_tree "$1"
	forget "$1"
}

# run_bounded SECS LOGFILE CMD... — run CMD to completion, killed after SECS.
# It runs in the background and is waited for, so that Ctrl-C or SIGTERM
# reaches our trap at once instead of after CMD ends (bash runs traps only
# between foreground commands, but interrupts `wait`).
run_bounded() {
	local secs=$1 logf=$2 pid rc=0; shift 2
	timeout -k 5 "$secs" "$@" </dev/null >"$logf" 2>&1 &
	pid=$!
	STARTED+=("$pid")
	wait "$pid" || rc=$?
	forget "$pid"
	return "$rc"
}

# ----------------------------------------------------------------- ports

# Free loopback TCP port below the ephemeral range (so it cannot collide with
# the outgoing connections of wrk and the proxies); sets PORT.
USED_PORTS=" "
PORT=
pick_port() {
	local lo hi p tries
	read -r lo _ </proc/sys/net/ipv4/ip_local_port_range
	hi=$(( lo - 1 )); lo=10000
	(( hi > lo + 1000 )) || { lo=20000; hi=30000; }
	for (( tries = 0; tries < 200; tries++ )); do
		p=$(( lo + (RANDOM * 32768 + RANDOM) % (hi - lo) ))
		[[ $USED_PORTS == *" $p "* ]] && continue
		[[ -z $(ss -Htan "( sport = :$p )" 2>/dev/null) ]] || continue
		USED_PORTS+="$p "
		PORT=$p
		return 0
	done
	die "no free port found"
}

now_ms() { echo $(( $(date +%s%N) / 1000000 )); }

# wait_http URL PID DEADLINE_S [LOGFILE] — poll until URL answers 200; fail
# early if PID died. The poll interval is 50ms; the deadline bounds it. curl
# runs with -k here and below: the TLS rows use a self-signed certificate.
wait_http() {
	local url=$1 pid=$2 secs=$3 logf=${4:-} end code
	end=$(( $(now_ms) + secs * 1000 ))
	while :; do
		code=$(curl -s -k -o /dev/null --max-time 1 -w '%{http_code}' "$url" 2>/dev/null || true)
		[[ $code == 200 ]] && return 0
		if ! alive "$pid"; then
			log "process $pid exited before $url answered"
			[[ -n $logf && -f $logf ]] && tail -n 20 "$logf" | sed 's/^/    | /' >&2
			return 1
		fi
		if (( $(now_ms) > end )); then
			log "$url did not answer 200 within ${secs}s (last: ${code:-none})"
			[[ -n $logf && -f $logf ]] && tail -n 20 "$logf" | sed 's/^/    | /' >&2
			return 1
		fi
		sleep 0.05
	done
}

# Check the response through a target: 200 and exactly SIZE body bytes.
check_response() {
	local url=$1 out
	out=$(curl -s -k -o /dev/null --max-time 5 -w '%{http_code} %{size_download}' "$url" 2>/dev/null || true)
	if [[ $out != "200 $SIZE" ]]; then
		log "$url answered '$out', want '200 $SIZE'"
		return 1
	fi
}

# ------------------------------------------------------------- measurement

CLK_TCK=$(getconf CLK_TCK)

# Sum of utime+stime (clock ticks) of the given pids; all threads included.
cpu_ticks() {
	local p st sum=0 f
	for p in "$@"; do
		st=$(cat "/proc/$p/stat" 2>/dev/null) || continue
		st=${st##*) }           # drop "pid (comm) ", comm may contain spaces
		read -r -a f <<<"$st"   # f[0] is field 3 (state)
		sum=$(( sum + f[11] + f[12] )) # fields 14 utime, 15 stime
	done
	echo "$sum"
}

# TIME-WAIT sockets of connections to or from the backend port.
tw_count() {
	ss -Htan state time-wait "( dport = :$BPORT or sport = :$BPORT )" 2>/dev/null | wc -l
}

# wrk latency like 812.00us / 1.23ms / 1.02s / 1.50m -> milliseconds
to_ms() {
	awk -v v="$1" 'BEGIN {
		n = v + 0; u = v; sub(/^[0-9.]+/, "", u)
		if (u == "us") n /= 1000; else if (u == "s") n *= 1000; else if (u == "m") n *= 60000
		else if (u != "ms") { print "nan"; exit }
		printf "%.3f", n }'
}

# Results, keyed "name#round"; pick_medians() copies each name's median round
# (by req/s) to the plain "name" key.
declare -A RPS P50 P99 PCPU BCPU ERRS OTHER CLOSED NOTE
ROUND=1

# Busy ticks of the whole machine (all CPUs) from /proc/stat: user, nice,
# system and steal. irq and softirq are left out: on loopback most of the
# network stack runs in softirq on behalf of our own processes, and counting it
# as "other" would blame the benchmark's own traffic.
machine_busy_ticks() {
	local _cpu user nice system _idle _iowait _irq _softirq steal _rest
	read -r _cpu user nice system _idle _iowait _irq _softirq steal _rest </proc/stat
	echo $(( user + nice + system + steal ))
}

# CPU ticks of this shell's reaped children (wrk and friends): cutime+cstime.
children_ticks() {
	local st f
	st=$(cat "/proc/$$/stat"); st=${st##*) }
	read -r -a f <<<"$st"
	echo $(( f[13] + f[14] )) # fields 16 cutime, 17 cstime
}

# bench NAME URL PROXY_PID — warm up, then the measured run; fills the arrays.
bench() {
	local name=$1 url=$2 ppid=${3:-} k="$1#$ROUND" out reqs rps p50 p99 errs
	local ppids=() bpids=() p0 p1 b0 b1 w0 w1 m0 m1 t0 t1 tw0 tw1 closed
	out=$TMP/wrk-$name-$ROUND.txt
	log "$name: warm-up ${WARM_S}s"
	run_bounded $(( WARM_S + 30 )) "$TMP/wrk-$name-$ROUND-warmup.txt" wrk -t"$THREADS" -c"$CONNS" -d"${WARM_S}s" "$url" ||
		{ log "$name: warm-up wrk failed"; cat "$TMP/wrk-$name-$ROUND-warmup.txt" >&2; return 1; }
	check_response "$url" || return 1

	[[ -n $ppid ]] && mapfile -t ppids < <(tree_pids "$ppid")
	mapfile -t bpids < <(tree_pids "$BACKEND_PID")
	tw0=$(tw_count)
	p0=0; (( ${#ppids[@]} )) && p0=$(cpu_ticks "${ppids[@]}")
	b0=$(cpu_ticks "${bpids[@]}")
	w0=$(children_ticks); m0=$(machine_busy_ticks); t0=$(now_ms)
	log "$name: measuring ${DUR_S}s, $THREADS thread(s), $CONNS connections, $url"
	run_bounded $(( DUR_S + 30 )) "$out" wrk -t"$THREADS" -c"$CONNS" -d"${DUR_S}s" --latency "$url" ||
		{ log "$name: wrk failed"; cat "$out" >&2; return 1; }
	t1=$(now_ms); m1=$(machine_busy_ticks); w1=$(children_ticks)
	p1=0; (( ${#ppids[@]} )) && p1=$(cpu_ticks "${ppids[@]}")
	b1=$(cpu_ticks "${bpids[@]}")
	tw1=$(tw_count)

	reqs=$(awk '/requests in/ { print $1; exit }' "$out")
	rps=$(awk '/^Requests\/sec:/ { print $2; exit }' "$out")
	p50=$(awk '/Latency Distribution/ { d = 1 } d && $1 == "50%" { print $2; exit }' "$out")
	p99=$(awk '/Latency Distribution/ { d = 1 } d && $1 == "99%" { print $2; exit }' "$out")
	errs=$(awk '
		/Non-2xx or 3xx responses:/ { e += $NF }
		/Socket errors:/ { gsub(/,/, ""); e += $4 + $6 + $8 + $10 }
		END { print e + 0 }' "$out")
	if [[ -z $reqs || -z $rps || -z $p50 || -z $p99 ]] || (( reqs == 0 )); then
		log "$name: could not parse wrk output:"; cat "$out" >&2; return 1
	fi
	RPS[$k]=$rps
	P50[$k]=$(to_ms "$p50")
	P99[$k]=$(to_ms "$p99")
	ERRS[$k]=$errs
	# ticks -> µs of CPU, divided by the requests wrk completed
	per_req() { awk -v t="$1" -v hz="$CLK_TCK" -v r="$reqs" 'BEGIN { printf "%.1f", t * 1e6 / hz / r }'; }
	(( ${#ppids[@]} )) && PCPU[$k]=$(per_req $(( p1 - p0 )))
	BCPU[$k]=$(per_req $(( b1 - b0 )))
	# CPU used by anything but wrk, the proxy and the backend, in % of one
	# CPU: other load on the machine makes the numbers noisy.
	OTHER[$k]=$(awk -v t=$(( (m1 - m0) - (w1 - w0) - (p1 - p0) - (b1 - b0) )) -v hz="$CLK_TCK" -v ms=$(( t1 - t0 )) \
		'BEGIN { v = t / hz / (ms / 1000) * 100; if (v < 0) v = 0; printf "%.0f", v }')
	log "$name: ${rps} req/s, p50 ${p50}, p99 ${p99}, errors ${errs}, other processes ${OTHER[$k]}% CPU"
	# Keep-alive check: every connection to the backend closed during the run
	# leaves a TIME-WAIT socket. For "direct" these are wrk's own ~CONNS
	# connections closing at the end; for a proxy they should be ~0.
	closed=$(( tw1 - tw0 )); (( closed >= 0 )) || closed=0
	CLOSED[$k]=$closed
	log "$name: connections to the backend closed during the run: $closed"
	if [[ $name != direct ]] && (( closed > CONNS )); then
		log "WARNING: $name reconnected to the backend $closed times: upstream keep-alive is not effective"
		NOTE[$name]="upstream keep-alive not effective ($closed reconnects in round $ROUND)"
	fi
}

# For each name, copy the round with the median req/s to the "name" key and
# note the spread when there was more than one round.
pick_medians() {
	local name r rounds n mid best lo hi
	for name in "${ROWS[@]}"; do
		rounds=()
		for (( r = 1; r <= ROUNDS; r++ )); do
			[[ -n ${RPS[$name#$r]:-} ]] && rounds+=("${RPS[$name#$r]} $r")
		done
		n=${#rounds[@]}
		(( n )) || continue
		mid=$(( (n - 1) / 2 ))
		best=$(printf '%s\n' "${rounds[@]}" | sort -g | sed -n "$(( mid + 1 ))p" | awk '{ print $2 }')
		RPS[$name]=${RPS[$name#$best]}; P50[$name]=${P50[$name#$best]}; P99[$name]=${P99[$name#$best]}
		PCPU[$name]=${PCPU[$name#$best]:-}; BCPU[$name]=${BCPU[$name#$best]}; ERRS[$name]=${ERRS[$name#$best]}
		OTHER[$name]=${OTHER[$name#$best]}; CLOSED[$name]=${CLOSED[$name#$best]}
		if (( n > 1 )); then
			lo=$(printf '%s\n' "${rounds[@]}" | sort -g | head -n 1 | awk '{ printf "%.0f", $1 }')
			hi=$(printf '%s\n' "${rounds[@]}" | sort -g | tail -n 1 | awk '{ printf "%.0f", $1 }')
			SPREAD[$name]="$lo–$hi req/s over $n rounds"
		fi
	done
}
declare -A SPREAD

# ------------------------------------------------------------------ builds

cd "$REPO"
if [[ -n ${BACKEND_BIN:-} ]]; then
	[[ -x $BACKEND_BIN ]] || die "BACKEND_BIN=$BACKEND_BIN is not executable"
	HELLO=$BACKEND_BIN
else
	HELLO=$TMP/bin/hello
	log "building ./examples/hello"
	run_bounded 600 "$TMP/build-hello.log" go build -o "$HELLO" ./examples/hello ||
		{ cat "$TMP/build-hello.log" >&2; die "go build ./examples/hello failed (set BACKEND_BIN to use another backend)"; }
fi

ZD_BUILD_OK=0
if selected zerodown; then
	if [[ -n ${ZERODOWN_BIN:-} ]]; then
		ZD=$ZERODOWN_BIN
		[[ -x $ZD ]] && ZD_BUILD_OK=1
	else
		ZD=$TMP/bin/zerodown
		log "building ./cmd/zerodown"
		if run_bounded 600 "$TMP/build-zerodown.log" go build -o "$ZD" ./cmd/zerodown; then
			ZD_BUILD_OK=1
		else
			log "go build ./cmd/zerodown failed; its row will read n/a:"
			tail -n 10 "$TMP/build-zerodown.log" | sed 's/^/    | /' >&2
		fi
	fi
fi

# zerodown at BASE_REF: that commit's tree, exported with `git archive` (no
# worktree, nothing changes in the repository), built with its own go.mod.
ZD_BASE_OK=0
if selected zerodown && [[ -n $BASE_REF ]]; then
	ZD_BASE=$TMP/bin/zerodown-base
	log "building ./cmd/zerodown at $BASE_REF (${BASE_COMMIT:0:12})"
	mkdir -p "$TMP/base-src"
	if git -C "$REPO" archive --format=tar "$BASE_COMMIT" | tar -x -C "$TMP/base-src" &&
		run_bounded 600 "$TMP/build-zerodown-base.log" go -C "$TMP/base-src" build -o "$ZD_BASE" ./cmd/zerodown; then
		ZD_BASE_OK=1
	else
		log "building zerodown at $BASE_REF failed; its rows will read n/a:"
		tail -n 10 "$TMP/build-zerodown-base.log" 2>/dev/null | sed 's/^/    | /' >&2
	fi
fi

# One self-signed certificate for every TLS listener: ECDSA P-256, the
# cheapest common choice for the handshake (wrk's connections are kept alive,
# so handshakes are few anyway). HAProxy wants certificate and key in one file.
if [[ $TLS != 0 ]]; then
	CERT=$TMP/tls/cert.pem; KEY=$TMP/tls/key.pem
	mkdir -p "$TMP/tls"
	openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
		-subj /CN=127.0.0.1 -addext subjectAltName=IP:127.0.0.1 \
		-keyout "$KEY" -out "$CERT" >"$TMP/tls/openssl.log" 2>&1 ||
		{ cat "$TMP/tls/openssl.log" >&2; die "openssl could not make a certificate"; }
	cat "$CERT" "$KEY" >"$TMP/tls/cert+key.pem"
fi
# Go's TLS server (zerodown, Caddy) picks TLS_AES_128_GCM_SHA256 on CPUs with
# AES instructions and cannot be told otherwise; OpenSSL's default order puts
# AES-256 first. HAProxy and nginx are told to prefer the same suite as Go, so
# every TLS row pays for the same cipher.
TLS13_SUITES=TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256

# tls_info ADDR — the protocol and cipher suite openssl's client negotiates
# with ADDR. wrk uses the same library (libssl) with its default settings, so
# it gets the same.
declare -A TLSINFO
tls_info() {
	timeout 10 openssl s_client -connect "$1" -brief </dev/null 2>&1 | awk -F': *' '
		$1 == "Protocol version" { p = $2 }
		$1 == "Ciphersuite" { c = $2 }
		END { if (p != "") print p " " c; else print "unknown" }'
}

# ----------------------------------------------------------------- backend

pick_port; BPORT=$PORT
BACKEND=$HOST:$BPORT
start_bg "$TMP/hello.log" "$HELLO" --listen "$BACKEND" --version v1 --name bench
BACKEND_PID=$PID
wait_http "http://$BACKEND/?size=$SIZE" "$BACKEND_PID" 20 "$TMP/hello.log" || die "backend did not start"
check_response "http://$BACKEND/?size=$SIZE" || die "backend answers wrongly"
log "backend $BACKEND (pid $BACKEND_PID)"
URL_PATH="/?size=$SIZE"

# ----------------------------------------------------------------- proxies
# Each start_KIND ROW starts the row's proxy with a listener for SCHEME (http
# or https), its config in $TMP/ROW; it sets PROXY_PID and PROXY_ADDR and
# returns non-zero on failure, with the reason in NOTE[ROW]. set -e does not
# apply inside them (they are called from `if`), so every step checks its own
# status.

PROXY_PID=; PROXY_ADDR=; PROXY_LOG=; SCHEME=http

start_zerodown() {
	local row=$1 bin=$ZD ok=$ZD_BUILD_OK d=$TMP/$1 admin tls=""
	[[ $row == zerodown-base* ]] && { bin=${ZD_BASE:-}; ok=$ZD_BASE_OK; }
	(( ok )) || { NOTE[$row]="n/a (build failed)"; return 1; }
	mkdir -p "$d" || return 1
	pick_port; PROXY_ADDR=$HOST:$PORT
	pick_port; admin=$HOST:$PORT
	[[ $SCHEME == https ]] && tls=$(printf '\n    tls: { cert: %s, key: %s }' "$CERT" "$KEY")
	( umask 077; head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$d/lb.token" ) || return 1
	cat >"$d/lb.yaml" <<-EOF || return 1
	# generated by bench/proxy.sh
	listeners:
	  - name: bench
	    address: $PROXY_ADDR$tls
	    routes:
	      - { pool: bench }
	admin:
	  address: $admin
	  token_file: $d/lb.token
	state_file: $d/lb-state.json
	shutdown_timeout: 5s
	pools:
	  bench:
	    targets:
	      - $BACKEND
	    health:
	      path: /healthz
	      interval: 200ms
	      timeout: 150ms
	      healthy_threshold: 1
	    upstream:
	      max_idle_per_target: $KEEPALIVE
	EOF
	PROXY_LOG=$d/lb.log
	start_bg "$PROXY_LOG" "$bin" lb --config "$d/lb.yaml"
	PROXY_PID=$PID
	# The target starts in state "initial" (no traffic); wait for it to turn
	# healthy, i.e. for the listener to answer 200.
	wait_http "$SCHEME://$PROXY_ADDR/" "$PROXY_PID" 20 "$d/lb.log" ||
		{ NOTE[$row]="n/a (lb did not serve)"; return 1; }
}

start_haproxy() {
	local row=$1 d=$TMP/$1 tls=""
	command -v haproxy >/dev/null || { NOTE[$row]="n/a (not installed)"; return 1; }
	mkdir -p "$d" || return 1
	pick_port; PROXY_ADDR=$HOST:$PORT
	# HAProxy applies its own cipher order by default (no prefer-client-ciphers).
	[[ $SCHEME == https ]] && tls=" ssl crt $TMP/tls/cert+key.pem ciphersuites $TLS13_SUITES"
	# nbthread is left at its default: one thread per CPU the process may run on.
	cat >"$d/haproxy.cfg" <<-EOF || return 1
	global
	    maxconn $(( CONNS * 2 + 1000 ))
	defaults
	    mode http
	    option http-keep-alive
	    http-reuse always
	    timeout connect 5s
	    timeout client 60s
	    timeout server 60s
	    timeout http-keep-alive 60s
	frontend bench
	    bind $PROXY_ADDR$tls
	    default_backend bench
	backend bench
	    server hello $BACKEND
	EOF
	haproxy -c -q -f "$d/haproxy.cfg" >"$d/check.log" 2>&1 ||
		{ cat "$d/check.log" >&2; NOTE[$row]="n/a (bad config)"; return 1; }
	PROXY_LOG=$d/haproxy.log
	start_bg "$PROXY_LOG" haproxy -db -f "$d/haproxy.cfg"
	PROXY_PID=$PID
	wait_http "$SCHEME://$PROXY_ADDR$URL_PATH" "$PROXY_PID" 20 "$d/haproxy.log" ||
		{ NOTE[$row]="n/a (did not start)"; return 1; }
}

start_nginx() {
	local row=$1 d=$TMP/$1 tls=""
	command -v nginx >/dev/null || { NOTE[$row]="n/a (not installed)"; return 1; }
	mkdir -p "$d" || return 1
	pick_port; PROXY_ADDR=$HOST:$PORT
	# nginx 1.22 leaves TLS 1.3 out of its default ssl_protocols; the others
	# offer it, so it is asked for here.
	[[ $SCHEME == https ]] && tls=$(printf ' ssl;\n        %s;\n        %s;\n        %s;\n        %s;\n        %s' \
		"ssl_certificate $CERT" "ssl_certificate_key $KEY" "ssl_protocols TLSv1.2 TLSv1.3" \
		"ssl_prefer_server_ciphers on" "ssl_conf_command Ciphersuites $TLS13_SUITES")
	# worker_processes auto = one worker per CPU (2 here): HAProxy (nbthread
	# default), Caddy and zerodown (GOMAXPROCS default) may use every CPU too.
	# keepalive_requests is raised from nginx's default of 1000 because the
	# others never close a keep-alive connection after N requests.
	cat >"$d/nginx.conf" <<-EOF || return 1
	daemon off;
	master_process on;
	worker_processes auto;
	pid $d/nginx.pid;
	error_log $d/error.log warn;
	events {
	    worker_connections 4096;
	}
	http {
	    access_log off;
	    client_body_temp_path $d/client_body;
	    proxy_temp_path $d/proxy;
	    fastcgi_temp_path $d/fastcgi;
	    uwsgi_temp_path $d/uwsgi;
	    scgi_temp_path $d/scgi;
	    keepalive_requests 1000000;
	    keepalive_timeout 60s;
	    upstream bench {
	        server $BACKEND;
	        keepalive $KEEPALIVE;
	        keepalive_requests 1000000;
	        keepalive_timeout 60s;
	    }
	    server {
	        listen $PROXY_ADDR$tls;
	        location / {
	            proxy_pass http://bench;
	            proxy_http_version 1.1;
	            proxy_set_header Connection "";
	        }
	    }
	}
	EOF
	nginx -t -q -p "$d" -e "$d/error.log" -c "$d/nginx.conf" >"$d/check.log" 2>&1 ||
		{ cat "$d/check.log" >&2; NOTE[$row]="n/a (bad config)"; return 1; }
	PROXY_LOG=$d/error.log
	start_bg "$d/nginx.log" nginx -p "$d" -e "$d/error.log" -c "$d/nginx.conf"
	PROXY_PID=$PID
	wait_http "$SCHEME://$PROXY_ADDR$URL_PATH" "$PROXY_PID" 20 "$d/error.log" ||
		{ NOTE[$row]="n/a (did not start)"; return 1; }
}

start_caddy() {
	local row=$1 d=$TMP/$1 tls=""
	command -v caddy >/dev/null || { NOTE[$row]="n/a (not installed)"; return 1; }
	mkdir -p "$d/home" || return 1
	pick_port; PROXY_ADDR=$HOST:$PORT
	[[ $SCHEME == https ]] && tls=$(printf '\n    tls %s %s' "$CERT" "$KEY")
	# admin off, no automatic HTTPS, storage in $TMP; keep-alive toward the
	# backend is on by default, its idle pool per host raised like nginx's.
	# `protocols h1 h2` leaves out HTTP/3, whose UDP listener nobody here
	# speaks to and the other proxies do not open.
	cat >"$d/Caddyfile" <<-EOF || return 1
	{
	    admin off
	    auto_https off
	    storage file_system $d/storage
	    servers {
	        protocols h1 h2
	    }
	}
	$SCHEME://$PROXY_ADDR {$tls
	    reverse_proxy $BACKEND {
	        transport http {
	            keepalive 60s
	            keepalive_idle_conns_per_host $KEEPALIVE
	        }
	    }
	}
	EOF
	HOME=$d/home XDG_DATA_HOME=$d/home XDG_CONFIG_HOME=$d/home \
		caddy validate --config "$d/Caddyfile" --adapter caddyfile >"$d/check.log" 2>&1 ||
		{ cat "$d/check.log" >&2; NOTE[$row]="n/a (bad config)"; return 1; }
	PROXY_LOG=$d/caddy.log
	start_bg "$PROXY_LOG" env HOME="$d/home" XDG_DATA_HOME="$d/home" XDG_CONFIG_HOME="$d/home" \
		caddy run --config "$d/Caddyfile" --adapter caddyfile
	PROXY_PID=$PID
	wait_http "$SCHEME://$PROXY_ADDR$URL_PATH" "$PROXY_PID" 20 "$d/caddy.log" ||
		{ NOTE[$row]="n/a (did not start)"; return 1; }
}

# Rounds are interleaved (all targets, then all targets again) so a slow
# drift in machine load hits every target alike.
for (( ROUND = 1; ROUND <= ROUNDS; ROUND++ )); do
	(( ROUNDS == 1 )) || log "=== round $ROUND of $ROUNDS"
	for name in "${ROWS[@]}"; do
		if [[ $name == direct ]]; then
			bench direct "http://$BACKEND$URL_PATH" "" || NOTE[direct]="n/a (run failed in round $ROUND)"
			continue
		fi
		SCHEME=http; [[ $name == *-tls ]] && SCHEME=https
		log "$name: starting"
		PROXY_PID=
		if "start_$(row_kind "$name")" "$name"; then
			log "$name: listening on $SCHEME://$PROXY_ADDR (pid $PROXY_PID)"
			if [[ $SCHEME == https && -z ${TLSINFO[$name]:-} ]]; then
				TLSINFO[$name]=$(tls_info "$PROXY_ADDR")
				log "$name: TLS ${TLSINFO[$name]}"
			fi
			if ! bench "$name" "$SCHEME://$PROXY_ADDR$URL_PATH" "$PROXY_PID"; then
				NOTE[$name]="n/a (run failed in round $ROUND)"
				log "$name: last lines of $PROXY_LOG:"
				tail -n 10 "$PROXY_LOG" | sed 's/^/    | /' >&2 || true
			fi
		else
			[[ -n ${NOTE[$name]:-} ]] || NOTE[$name]="n/a (did not start)"
			log "$name: ${NOTE[$name]}"
		fi
		[[ -n $PROXY_PID ]] && stop_started "$PROXY_PID"
		PROXY_PID=
	done
done
pick_medians

# ------------------------------------------------------------------ report

first_line() { "$@" 2>&1 | head -n 1 || true; }
ver_zd=n/a
if (( ZD_BUILD_OK )); then
	ver_zd=$("$ZD" --version 2>/dev/null | head -n 1 || true)
	[[ -n $ver_zd ]] || ver_zd="built from $(git -C "$REPO" describe --always --dirty 2>/dev/null || echo 'working tree')"
fi
ver() { command -v "$1" >/dev/null && first_line "${@:2}" || echo "not installed"; }

echo "## Machine"
echo
echo "- CPUs: $(nproc) × $(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)"
echo "- kernel: $(uname -sr)"
echo "- $(go version 2>/dev/null || echo 'go: not found')"
echo "- zerodown: $ver_zd"
if [[ -n $BASE_REF ]] && selected zerodown; then
	ver_base="n/a (build failed)"
	(( ZD_BASE_OK )) && ver_base="built from $(git -C "$REPO" rev-parse --short "$BASE_COMMIT")"
	echo "- zerodown-base: $ver_base (BASE_REF=$BASE_REF)"
fi
echo "- haproxy: $(ver haproxy haproxy -v)"
echo "- nginx: $(ver nginx nginx -v)"
caddy_go=$(caddy build-info 2>/dev/null | awk '$1 == "go" { print ", built with " $2; exit }' || true)
echo "- caddy: $(ver caddy caddy version)$caddy_go"
echo "- wrk: $(first_line wrk -v)"
echo "- load: wrk -t$THREADS -c$CONNS -d${DUR_S}s --latency (after ${WARM_S}s warm-up), GET $URL_PATH; upstream keep-alive pool $KEEPALIVE"
if [[ $TLS != 0 ]]; then
	echo "- TLS: $(first_line openssl version); self-signed ECDSA P-256 certificate; wrk speaks HTTP/1.1 over TLS (no ALPN, so no HTTP/2)"
	# What each TLS row negotiated: one line when all agree.
	tls_seen=()
	for name in "${ROWS[@]}"; do
		[[ -n ${TLSINFO[$name]:-} ]] && tls_seen+=("$name: ${TLSINFO[$name]}")
	done
	if (( ${#tls_seen[@]} )); then
		if (( $(printf '%s\n' "${tls_seen[@]}" | sed 's/^[^:]*: //' | sort -u | wc -l) == 1 )); then
			echo "- TLS negotiated: ${tls_seen[0]#*: } (every TLS row)"
		else
			echo "- TLS negotiated: $(printf '%s; ' "${tls_seen[@]}" | sed 's/; $//')"
		fi
	fi
fi
if (( ROUNDS > 1 )); then
	echo "- rounds: $ROUNDS, interleaved; each row is the round with the median req/s"
fi
echo
echo "## Results"
echo
ratio() { # a b -> a/b as "0.97x", or "–"
	[[ -n $1 && -n $2 ]] || { echo "–"; return; }
	awk -v a="$1" -v b="$2" 'BEGIN { if (b + 0 == 0) print "–"; else printf "%.2fx", a / b }'
}
# A TLS row is compared with the TLS rows of HAProxy, Caddy and zerodown-base;
# a plain row with the plain ones.
head="| name | req/s | p50 ms | p99 ms | proxy CPU µs/req | backend CPU µs/req | errors | req/s vs HAProxy | req/s vs Caddy | p99 vs HAProxy |"
rule="| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
empty="| | | | | | | | |"
if [[ -n $BASE_REF ]]; then
	head+=" req/s vs base | CPU vs base |"
	rule+=" ---: | ---: |"
	empty+=" | |"
fi
echo "$head"
echo "$rule"
for name in "${ROWS[@]}"; do
	if [[ -z ${RPS[$name]:-} ]]; then
		echo "| $name | ${NOTE[$name]:-n/a} $empty"
		continue
	fi
	sfx=; [[ $name == *-tls ]] && sfx=-tls
	line=$(printf '| %s | %.0f | %.2f | %.2f | %s | %s | %s | %s | %s | %s |' \
		"$name" "${RPS[$name]}" "${P50[$name]}" "${P99[$name]}" \
		"${PCPU[$name]:-–}" "${BCPU[$name]}" "${ERRS[$name]}" \
		"$(ratio "${RPS[$name]}" "${RPS[haproxy$sfx]:-}")" \
		"$(ratio "${RPS[$name]}" "${RPS[caddy$sfx]:-}")" \
		"$(ratio "${P99[$name]}" "${P99[haproxy$sfx]:-}")")
	if [[ -n $BASE_REF ]]; then
		if [[ $name == zerodown || $name == zerodown-tls ]]; then
			line+=" $(ratio "${RPS[$name]}" "${RPS[zerodown-base$sfx]:-}") | $(ratio "${PCPU[$name]:-}" "${PCPU[zerodown-base$sfx]:-}") |"
		else
			line+=" – | – |"
		fi
	fi
	echo "$line"
done
notes=()
for name in "${ROWS[@]}"; do
	[[ -n ${RPS[$name]:-} ]] || continue
	[[ -n ${NOTE[$name]:-} ]] && notes+=("$name: ${NOTE[$name]}")
	[[ -n ${SPREAD[$name]:-} ]] && notes+=("$name: ${SPREAD[$name]}")
	if [[ $name != direct ]] && (( ${CLOSED[$name]:-0} > 0 && ${CLOSED[$name]:-0} <= CONNS )); then
		notes+=("$name: closed ${CLOSED[$name]} connections to the backend during the run (keep-alive churn; 0 is ideal)")
	fi
	if (( ${OTHER[$name]:-0} >= 10 )); then
		notes+=("$name: other processes used ${OTHER[$name]}% of a CPU during the run; numbers are noisy")
	fi
done
if (( ${#notes[@]} )); then
	echo
	printf -- '- %s\n' "${notes[@]}"
fi
