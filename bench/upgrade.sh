#!/usr/bin/env bash
# bench/upgrade.sh — restart the load balancer ten times under load, three ways.
#
# Two sample-app backends sit behind a load balancer on loopback, under a
# constant 1,000 requests/s: 900 GET/s to / and 100 POST/s to a slow endpoint
# (/checkout?sleep=500ms, echoed back and checked), sent by two `zerodown
# load` runs in parallel; every request is counted. Meanwhile the balancer
# is restarted RESTARTS times, SPACING seconds apart:
#
#   zerodown-upgrade  `zerodown lb` upgraded to a new binary: the built
#                     binary is copied to a new file, renamed over the path
#                     the lb runs from, then `zerodown lb upgrade`
#   haproxy-reload    HAProxy in master-worker mode (-W), reloaded with the
#                     master CLI's `reload` (the listening sockets pass to
#                     the new worker over the master's socketpair, as -x
#                     with `expose-fd listeners` does); each reload loads a
#                     new config whose only change is an X-Gen header
#   zerodown-restart  `zerodown lb` stopped and started (SIGTERM, wait for
#                     exit, start again): what the handover avoids
#
#   bench/upgrade.sh                       # all three rows, about 80s
#   ONLY="zerodown-upgrade haproxy-reload" bench/upgrade.sh
#
# Knobs (environment):
#   RESTARTS     restarts per row (default 10)
#   SPACING      seconds between restarts (default 2)
#   GET_RATE     GET requests/s (default 900)
#   POST_RATE    POST requests/s (default 100)
#   POST_SLEEP   how long the backend holds each POST (default 500ms)
#   ONLY         space-separated subset of the rows above
#   KEEP_TMP=1   keep the temp dir (configs, logs, the load JSON reports)
#
# Progress goes to stderr; the machine description and the tables to stdout.
# Everything listens on 127.0.0.1 only. Every process this script starts,
# and every lb process an upgrade starts, is stopped on exit, including on
# failure and Ctrl-C. See bench/README.md.
set -euo pipefail

RESTARTS=${RESTARTS:-10}
SPACING=${SPACING:-2}
GET_RATE=${GET_RATE:-900}
POST_RATE=${POST_RATE:-100}
POST_SLEEP=${POST_SLEEP:-500ms}
ONLY=${ONLY:-}
KEEP_TMP=${KEEP_TMP:-0}
ALL_ROWS="zerodown-upgrade haproxy-reload zerodown-restart"
LEAD=2 # seconds of load before the first restart
TAIL=3 # seconds of load after the last one

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
HOST=127.0.0.1

log() { printf '[upgrade] %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

[[ $RESTARTS =~ ^[1-9][0-9]*$ ]] || die "RESTARTS must be a positive integer"
[[ $SPACING =~ ^[1-9][0-9]*$ ]] || die "SPACING must be a positive integer (seconds)"
[[ $GET_RATE =~ ^[1-9][0-9]*$ ]] || die "GET_RATE must be a positive integer"
[[ $POST_RATE =~ ^[1-9][0-9]*$ ]] || die "POST_RATE must be a positive integer"
[[ $POST_SLEEP =~ ^[0-9]+(ms|s)$ ]] || die "POST_SLEEP must be like 500ms or 1s"
(( RESTARTS <= 30 )) || die "RESTARTS above 30 would make the run too long"
DUR=$(( LEAD + (RESTARTS - 1) * SPACING + TAIL )) # seconds of load per row

ROWS=()
if [[ -z $ONLY ]]; then
	read -r -a ROWS <<<"$ALL_ROWS"
else
	for n in $ONLY; do
		[[ " $ALL_ROWS " == *" $n "* ]] || die "unknown row in ONLY: $n (known: $ALL_ROWS)"
	done
	for n in $ALL_ROWS; do
		[[ " $ONLY " == *" $n "* ]] && ROWS+=("$n")
	done
fi

command -v python3 >/dev/null || die "python3 not found"
command -v curl >/dev/null || die "curl not found"
command -v ss >/dev/null || die "ss not found (iproute2)"
command -v ps >/dev/null || die "ps not found (procps)"

# ------------------------------------------------------- process bookkeeping

TMP=$(mktemp -d /tmp/zerodown-upgrade.XXXXXX)
mkdir -p "$TMP/bin"
STARTED=() # every pid we started, in order
ADOPTED=() # lb processes an upgrade started (not our children)

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

# ours PID: the process runs something from our temp dir (guards against a
# recycled pid before an adopted process is signalled).
ours() { tr '\0' ' ' <"/proc/$1/cmdline" 2>/dev/null | grep -qF "$TMP/"; }

# Stop the tree rooted at $1: SIGTERM, up to 5s grace, then SIGKILL; reap.
stop_tree() {
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
	local rc=$? i p
	trap - EXIT INT TERM HUP
	for p in "${ADOPTED[@]}"; do
		if alive "$p" && ours "$p"; then stop_tree "$p"; fi
	done
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

forget() {
	local i
	for i in "${!STARTED[@]}"; do
		[[ ${STARTED[i]} == "$1" ]] && unset 'STARTED[i]'
	done
	STARTED=("${STARTED[@]}")
}

adopt() { # remember an lb process an upgrade started, once
	[[ " ${ADOPTED[*]} " == *" $1 "* ]] || ADOPTED+=("$1")
}

# run_bounded SECS LOGFILE CMD... — run CMD to completion, killed after SECS.
# Backgrounded and waited for, so Ctrl-C reaches the trap at once.
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
# outgoing connections); sets PORT.
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

sleep_until_ms() { # sleep until the epoch-ms time $1 (at once if past)
	local left=$(( $1 - $(now_ms) ))
	(( left > 0 )) || return 0
	sleep "$(awk -v d="$left" 'BEGIN { printf "%.3f", d / 1000 }')"
}

# wait_http URL PID DEADLINE_S [LOGFILE] — poll until URL answers 200; fail
# early if PID died. 50ms between polls, bounded by the deadline.
wait_http() {
	local url=$1 pid=$2 secs=$3 logf=${4:-} end code
	end=$(( $(now_ms) + secs * 1000 ))
	while :; do
		code=$(curl -s -o /dev/null --max-time 1 -w '%{http_code}' "$url" 2>/dev/null || true)
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

# ------------------------------------------------------------ python helper

# probe.py: the HAProxy reload with its timing, the poll after a restart, and
# the summaries of the load reports. Every loop in it has a deadline.
cat >"$TMP/probe.py" <<'PY'
import http.client, json, socket, statistics, sys, time

def get(host, port):
    """One GET / on a new connection: (status, X-Gen) or None."""
    c = http.client.HTTPConnection(host, port, timeout=1)
    try:
        c.request("GET", "/")
        r = c.getresponse()
        r.read()
        return r.status, r.getheader("X-Gen")
    except OSError:
        return None
    finally:
        c.close()

def poll(host, port, want, t0_ns, deadline_s):
    """Poll every 2ms until want(answer); print the ms since t0_ns."""
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        a = get(host, int(port))
        if a is not None and want(a):
            print("%.1f" % ((time.time_ns() - t0_ns) / 1e6))
            return 0
        time.sleep(0.002)
    print("timeout", file=sys.stderr)
    return 1

def reload(master_sock, host, port, gen, deadline_s):
    """Send `reload` to HAProxy's master CLI; time it until a new connection
    is answered by a worker running config generation gen."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(2)
    s.connect(master_sock)
    t0 = time.time_ns()
    s.sendall(b"reload\n")
    try:
        return poll(host, port, lambda a: a[0] == 200 and a[1] == gen, t0, float(deadline_s))
    finally:
        s.close()

def wait200(host, port, t0_ns, deadline_s):
    return poll(host, port, lambda a: a[0] == 200, int(t0_ns), float(deadline_s))

def load(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None

def summary(get_json, post_json):
    """One line: total failed get_failed post_failed outcomes retried
    get_p99 get_max post_p99 achieved_rate (- for unknown)."""
    g, p = load(get_json), load(post_json)
    if g is None or p is None:
        print("- - - - - - - - - -")
        return 0
    total = g["requests"]["total"] + p["requests"]["total"]
    failed = g["requests"]["failed"] + p["requests"]["failed"]
    outs = {}
    for r, lane in ((g, "GET"), (p, "POST")):
        # Outcomes by name, except HTTP answers: those by status code.
        for k, v in r["outcomes"].items():
            if k != "ok" and v and not k.startswith("http_"):
                outs["%s %s" % (lane, k)] = v
        for code, v in sorted(r.get("status_codes", {}).items()):
            if not code.startswith("2") and v:
                outs["%s %s" % (lane, code)] = v
    o = ", ".join("%s %d" % (k, v) for k, v in outs.items()) or "–"
    rate = (g["achieved_rate"] + p["achieved_rate"])
    print("%d %d %d %d %s %d %.1f %.1f %.1f %.0f" % (
        total, failed, g["requests"]["failed"], p["requests"]["failed"],
        o.replace(" ", "_"), g["requests"]["retried"],
        g["latency"]["p99_ms"], g["latency"]["max_ms"], p["latency"]["p99_ms"], rate))
    return 0

def evidence(lane, path, restarts):
    """The failures of one report: the first samples, and the seconds they
    fell in next to the restarts (t in seconds since the load started)."""
    r = load(path)
    if r is None:
        return 0
    for e in r.get("errors", []):
        print("  %s %s at t=%.3fs: %s" % (lane, e["outcome"], e["t"], e["message"][:200]))
    rows = [x for x in r["timeline"]["rows"] if x.get("failed")]
    if rows:
        print("  %s failures per second: %s" % (lane, "; ".join(
            "t=%ds %s" % (x["t"], ",".join("%s %d" % kv for kv in x.get("failures", {}).items()))
            for x in rows)))
    return 0

def stats(*values):
    """median max of the numbers given."""
    v = [float(x) for x in values]
    print("%.1f %.1f" % (statistics.median(v), max(v)) if v else "- -")
    return 0

cmd, args = sys.argv[1], sys.argv[2:]
sys.exit({"reload": reload, "wait200": wait200, "summary": summary,
          "evidence": evidence, "stats": stats}[cmd](*args))
PY
probe() { python3 "$TMP/probe.py" "$@"; }

# ------------------------------------------------------------------ build

LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
log "building zerodown and the sample app (no -race)"
run_bounded 300 "$TMP/build.log" go -C "$REPO" build -o "$TMP/bin/zerodown" ./cmd/zerodown ||
	{ cat "$TMP/build.log" >&2; die "go build ./cmd/zerodown failed"; }
run_bounded 300 "$TMP/build.log" go -C "$REPO" build -o "$TMP/bin/hello" ./examples/hello ||
	{ cat "$TMP/build.log" >&2; die "go build ./examples/hello failed"; }
ZD=$TMP/bin/zerodown # the load generator and the source of every install

# ------------------------------------------------------------------ backends

BACKENDS=()
for name in a b; do
	pick_port
	start_bg "$TMP/hello-$name.log" "$TMP/bin/hello" --listen "$HOST:$PORT" --version v1 --name "$name"
	wait_http "http://$HOST:$PORT/healthz" "$PID" 20 "$TMP/hello-$name.log" || die "backend $name did not start"
	BACKENDS+=("$HOST:$PORT")
done
log "backends on ${BACKENDS[*]}"

# ---------------------------------------------------------- load, restarts

declare -A HO SELF NOTE SUMMARY LEFT LOADAVG

# Start the two load runs against ADDR; sets LOAD_PIDS and LOAD_T0 (epoch ms).
start_load() { # ROW ADDR
	local d=$TMP/$1 addr=$2 common
	common="--duration ${DUR}s --json --progress 0 --max-failed -1 --max-dropped -1 --min-rate 0"
	LOAD_T0=$(now_ms)
	# shellcheck disable=SC2086
	timeout -k 5 $(( DUR + 30 )) "$ZD" load "http://$addr/" --rate "$GET_RATE" $common \
		</dev/null >"$d/get.json" 2>"$d/get.err" &
	LOAD_PIDS=("$!")
	# shellcheck disable=SC2086
	timeout -k 5 $(( DUR + 30 )) "$ZD" load "http://$addr/checkout?sleep=$POST_SLEEP" -X POST \
		--expect-echo --rate "$POST_RATE" $common \
		</dev/null >"$d/post.json" 2>"$d/post.err" &
	LOAD_PIDS+=("$!")
	STARTED+=("${LOAD_PIDS[@]}")
}

finish_load() { # ROW
	local p rc=0
	for p in "${LOAD_PIDS[@]}"; do
		wait "$p" || rc=$?
		forget "$p"
	done
	(( rc == 0 )) || NOTE[$1]+="a load run exited with $rc (see $TMP/$1/*.err); "
	SUMMARY[$1]=$(probe summary "$TMP/$1/get.json" "$TMP/$1/post.json")
	# The machine may be shared: how busy it was over the last minute.
	LOADAVG[$1]=$(cut -d' ' -f1 /proc/loadavg)
}

lb_config() { # DIR LISTEN ADMIN
	cat >"$1/lb.yaml" <<-EOF
	listeners:
	  - address: $2
	    routes: [ { pool: hello } ]
	admin: { address: $3, token_file: $1/lb.token }
	state_file: $1/lb-state.json
	shutdown_timeout: 10s
	pools:
	  hello:
	    targets: [ ${BACKENDS[0]}, ${BACKENDS[1]} ]
	    health: { path: /healthz, interval: 100ms, timeout: 80ms, healthy_threshold: 2, unhealthy_threshold: 2 }
	EOF
}

install_binary() { # PATH: a new file renamed over PATH, as a package manager does
	cp "$ZD" "$1.new"
	mv -f "$1.new" "$1"
}

read_pid() { local p; p=$(cat "$1" 2>/dev/null || true); [[ $p =~ ^[0-9]+$ ]] && echo "$p" || echo 0; }

run_zerodown_upgrade() {
	local row=zerodown-upgrade d=$TMP/zerodown-upgrade exe addr admin i old new t0 t1 out ms link p left serving
	mkdir -p "$d/bin"
	exe=$d/bin/zerodown
	install_binary "$exe"
	pick_port; addr=$HOST:$PORT
	pick_port; admin=$HOST:$PORT
	lb_config "$d" "$addr" "$admin"
	start_bg "$d/lb.log" "$exe" lb --config "$d/lb.yaml" --pid-file "$d/lb.pid"
	adopt "$PID"
	wait_http "http://$addr/" "$PID" 20 "$d/lb.log" || { NOTE[$row]+="did not serve; "; return 1; }
	log "$row: serving on $addr (pid $PID); load for ${DUR}s, $RESTARTS upgrades"
	start_load "$row" "$addr"
	for (( i = 1; i <= RESTARTS; i++ )); do
		sleep_until_ms $(( LOAD_T0 + (LEAD + (i - 1) * SPACING) * 1000 ))
		old=$(read_pid "$d/lb.pid")
		install_binary "$exe"
		t0=$(date +%s%N)
		if ! out=$(timeout -k 2 30 "$exe" lb upgrade --admin "http://$admin" --token-file "$d/lb.token" -o json 2>"$d/upgrade-$i.err"); then
			NOTE[$row]+="upgrade $i failed: $(cat "$d/upgrade-$i.err" | tr '\n' ' '); "
			log "$row: upgrade $i failed: $(cat "$d/upgrade-$i.err")"
			continue
		fi
		t1=$(date +%s%N)
		ms=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", (b - a) / 1e6 }')
		HO[$row]+="$ms "
		SELF[$row]+="$(echo "$out" | python3 -c 'import json,sys; print(json.load(sys.stdin)["handover_ms"])') "
		# The pid file names the new process once it serves.
		for (( p = 0; p < 200; p++ )); do
			new=$(read_pid "$d/lb.pid")
			(( new != 0 && new != old )) && break
			sleep 0.01
		done
		if (( new == 0 || new == old )); then
			NOTE[$row]+="upgrade $i: the pid file still named $old; "
		else
			adopt "$new"
			link=$(readlink "/proc/$new/exe" 2>/dev/null || true)
			[[ $link == "$exe" ]] || NOTE[$row]+="upgrade $i: the new process runs '$link', not $exe; "
		fi
		log "$row: upgrade $i: $old -> $new, ${ms} ms (lb says $(echo "${SELF[$row]}" | awk '{ print $NF }') ms)"
	done
	finish_load "$row"
	# Every old process should have finished its requests and exited by now.
	left=0 serving=$(read_pid "$d/lb.pid")
	for p in "${ADOPTED[@]}"; do
		[[ $p == "$serving" ]] && continue
		if alive "$p" && ours "$p"; then left=$(( left + 1 )); fi
	done
	LEFT[$row]=$left
	for p in "${ADOPTED[@]}"; do
		if alive "$p" && ours "$p"; then stop_tree "$p"; fi
	done
	wait "${ADOPTED[0]}" 2>/dev/null || true # the first one is our child
	forget "${ADOPTED[0]}"
	ADOPTED=()
}

run_zerodown_restart() {
	local row=zerodown-restart d=$TMP/zerodown-restart exe addr admin i old t0 ms end
	mkdir -p "$d/bin"
	exe=$d/bin/zerodown
	install_binary "$exe"
	pick_port; addr=$HOST:$PORT
	pick_port; admin=$HOST:$PORT
	lb_config "$d" "$addr" "$admin"
	start_bg "$d/lb.log" "$exe" lb --config "$d/lb.yaml"
	wait_http "http://$addr/" "$PID" 20 "$d/lb.log" || { NOTE[$row]+="did not serve; "; return 1; }
	log "$row: serving on $addr (pid $PID); load for ${DUR}s, $RESTARTS restarts"
	start_load "$row" "$addr"
	for (( i = 1; i <= RESTARTS; i++ )); do
		sleep_until_ms $(( LOAD_T0 + (LEAD + (i - 1) * SPACING) * 1000 ))
		old=$PID
		t0=$(date +%s%N)
		kill -TERM "$old" 2>/dev/null || true
		# It finishes the requests in flight (shutdown_timeout 10s), then exits.
		end=$(( $(now_ms) + 15000 ))
		while alive "$old" && (( $(now_ms) < end )); do sleep 0.005; done
		alive "$old" && NOTE[$row]+="restart $i: process $old outlived its shutdown_timeout; "
		stop_tree "$old"
		forget "$old"
		start_bg "$d/lb-$i.log" "$exe" lb --config "$d/lb.yaml"
		if ! ms=$(probe wait200 "$HOST" "${addr##*:}" "$t0" 20); then
			NOTE[$row]+="restart $i: the new process did not serve; "
			continue
		fi
		HO[$row]+="$ms "
		log "$row: restart $i: $old -> $PID, ${ms} ms from SIGTERM to a 200 from the new process"
	done
	finish_load "$row"
	LEFT[$row]=0
	stop_tree "$PID"
	forget "$PID"
}

haproxy_config() { # DIR ADDR GEN
	cat >"$1/haproxy.cfg" <<-EOF
	global
	    maxconn 4000
	    stats socket $1/stats.sock mode 600 level admin expose-fd listeners
	    hard-stop-after 30s
	defaults
	    mode http
	    option http-keep-alive
	    timeout connect 2s
	    timeout client 60s
	    timeout server 60s
	    timeout http-request 10s
	    timeout http-keep-alive 60s
	frontend bench
	    bind $2
	    default_backend hello
	    http-response set-header X-Gen $3
	backend hello
	    balance leastconn
	    option httpchk GET /healthz
	    server a ${BACKENDS[0]} check inter 100ms rise 2 fall 2
	    server b ${BACKENDS[1]} check inter 100ms rise 2 fall 2
	EOF
}

haproxy_workers() { # MASTER_PID -> number of processes under the master
	local n
	n=$(tree_pids "$1" | wc -l)
	echo $(( n > 0 ? n - 1 : 0 ))
}

run_haproxy_reload() {
	local row=haproxy-reload d=$TMP/haproxy-reload addr i ms master w
	command -v haproxy >/dev/null || { NOTE[$row]+="n/a (haproxy not installed); "; return 1; }
	mkdir -p "$d"
	pick_port; addr=$HOST:$PORT
	haproxy_config "$d" "$addr" 0
	haproxy -c -q -f "$d/haproxy.cfg" >"$d/check.log" 2>&1 ||
		{ cat "$d/check.log" >&2; NOTE[$row]+="n/a (bad config); "; return 1; }
	start_bg "$d/haproxy.log" haproxy -W -db -S "$d/master.sock" -f "$d/haproxy.cfg"
	master=$PID
	wait_http "http://$addr/" "$master" 20 "$d/haproxy.log" || { NOTE[$row]+="did not serve; "; return 1; }
	log "$row: serving on $addr (master pid $master); load for ${DUR}s, $RESTARTS reloads"
	start_load "$row" "$addr"
	for (( i = 1; i <= RESTARTS; i++ )); do
		sleep_until_ms $(( LOAD_T0 + (LEAD + (i - 1) * SPACING) * 1000 ))
		haproxy_config "$d" "$addr" "$i"
		if ! ms=$(probe reload "$d/master.sock" "$HOST" "${addr##*:}" "$i" 20); then
			NOTE[$row]+="reload $i: no answer from the new worker; "
			continue
		fi
		HO[$row]+="$ms "
		log "$row: reload $i: ${ms} ms from \`reload\` to an answer from the new worker ($(haproxy_workers "$master") workers)"
	done
	finish_load "$row"
	w=$(haproxy_workers "$master")
	LEFT[$row]=$(( w > 1 ? w - 1 : 0 ))
	stop_tree "$master"
	forget "$master"
}

for row in "${ROWS[@]}"; do
	HO[$row]=""
	case $row in
		zerodown-upgrade) run_zerodown_upgrade || true ;;
		haproxy-reload) run_haproxy_reload || true ;;
		zerodown-restart) run_zerodown_restart || true ;;
	esac
done

# ------------------------------------------------------------------ report

echo "## Machine"
echo
echo "- CPUs: $(nproc) × $(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)"
echo "- kernel: $(uname -sr)"
echo "- $(go version 2>/dev/null || echo 'go: not found')"
echo "- zerodown: built from $(git -C "$REPO" describe --always --dirty 2>/dev/null || echo 'the working tree')"
echo "- load average (1, 5, 15 min) when the script started: $LOAD_START; the last column below is the 1-min figure as each row ended"
hv="not installed"
command -v haproxy >/dev/null && hv=$(haproxy -v 2>&1 | sed -n 1p) # sed reads it all: no SIGPIPE under pipefail
echo "- haproxy: $hv"
echo "- load: two \`zerodown load\` runs in parallel for ${DUR}s each, ${GET_RATE} GET/s to / and ${POST_RATE} POST/s to /checkout?sleep=$POST_SLEEP (body echoed and checked); Go's net/http client with keep-alive"
echo "- restarts: $RESTARTS per row, the first ${LEAD}s into the load, then every ${SPACING}s; backends: two examples/hello, health checks every 100ms (rise 2) in both balancers"
echo
echo "## Results"
echo
echo "| name | requests | failed | failed GET / POST | failures | GETs retried by the client | GET p99 / max ms | handover median ms | handover max ms | old processes left | load avg |"
echo "| --- | ---: | ---: | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: |"
declare -A MED MAX FAILED
for row in "${ROWS[@]}"; do
	read -r total failed gf pf outs retried gp99 gmax _pp99 _rate <<<"${SUMMARY[$row]:-- - - - - - - - - -}"
	# shellcheck disable=SC2086
	read -r med max <<<"$(probe stats ${HO[$row]})"
	MED[$row]=$med MAX[$row]=$max FAILED[$row]=$failed
	printf '| %s | %s | %s | %s / %s | %s | %s | %s / %s | %s | %s | %s | %s |\n' \
		"$row" "$total" "$failed" "$gf" "$pf" "${outs//_/ }" "$retried" "$gp99" "$gmax" \
		"$med" "$max" "${LEFT[$row]:-–}" "${LOADAVG[$row]:-–}"
done

ratio() { # a b -> a/b as "0.97x", or "–"
	[[ -n $1 && -n $2 && $1 != - && $2 != - ]] || { echo "–"; return; }
	awk -v a="$1" -v b="$2" 'BEGIN { if (b + 0 == 0) print "–"; else printf "%.2fx", a / b }'
}
if (( ${#ROWS[@]} > 1 )) && [[ -n ${MED[haproxy-reload]:-} && ${MED[haproxy-reload]} != - ]]; then
	echo
	echo "| name | handover median vs HAProxy | handover max vs HAProxy | failed | HAProxy failed |"
	echo "| --- | ---: | ---: | ---: | ---: |"
	for row in "${ROWS[@]}"; do
		[[ $row == haproxy-reload ]] && continue
		printf '| %s | %s | %s | %s | %s |\n' "$row" \
			"$(ratio "${MED[$row]}" "${MED[haproxy-reload]}")" "$(ratio "${MAX[$row]}" "${MAX[haproxy-reload]}")" \
			"${FAILED[$row]}" "${FAILED[haproxy-reload]}"
	done
fi

echo
echo "Handover, per restart (ms):"
echo
for row in "${ROWS[@]}"; do
	case $row in
		zerodown-upgrade) how="wall time of \`zerodown lb upgrade\`, which returns once the new process serves" ;;
		haproxy-reload) how="from writing \`reload\` to the master CLI until a new connection is answered with the new config's X-Gen header (polled every 2ms)" ;;
		zerodown-restart) how="from SIGTERM, through the old process finishing its requests and exiting and the new one starting, until a new connection is answered 200 (polled every 2ms)" ;;
	esac
	echo "- $row: ${HO[$row]:-none} ($how)"
	[[ -n ${SELF[$row]:-} ]] && echo "- $row, as the lb reports it (handover_ms): ${SELF[$row]}"
	[[ -n ${NOTE[$row]:-} ]] && echo "- $row: ${NOTE[$row]%; }"
done
for row in "${ROWS[@]}"; do
	if [[ ${FAILED[$row]:-0} != 0 && ${FAILED[$row]:-0} != - ]]; then
		echo
		echo "Failed requests, $row (t in seconds since the load started; restarts at t = $LEAD, $(( LEAD + SPACING )), … s):"
		echo
		echo '```'
		probe evidence GET "$TMP/$row/get.json" "$RESTARTS"
		probe evidence POST "$TMP/$row/post.json" "$RESTARTS"
		echo '```'
	fi
done
