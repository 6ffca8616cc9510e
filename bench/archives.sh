#!/usr/bin/env bash
# bench/archives.sh — the hostile archives of the agent issue's item 5,
# uploaded to a real `zerodown agent`: its peak memory (VmHWM, a fresh
# agent for each archive), its answer and the time to it, next to a
# trusted tool doing the comparable job on the same file (listing it:
# `unzip -l`, `tar -tzf`, peak RSS by GNU time).
#
#   bench/archives.sh                  # a few minutes, most of it making the archives
#   BASE_REF=54bbddf bench/archives.sh # the same with zerodown at an older commit
#
# The archives (made by bench/mkarchive, streaming, in a temporary
# directory, removed at the end; about 420 MB of disk while it runs):
#   bomb.zip    4,000,000 entries, all pointing at one local file, zip64 end
#               records saying so (208 MB)
#   lying.zip   the same directory, end records saying 2,304 entries
#               (4,000,000 modulo 65,536) and a directory to match, the
#               way an archive slips past a count taken from them
#   long.tar.gz 20,000 files in one directory, names of 10,700 bytes (1.7 MB)
#   cut.tar.gz  20,000 files, names of 4,000 bytes, no tar end marker
#
# Needs Go, curl, unzip, GNU tar, ss and GNU time (/usr/bin/time). The
# agents listen on a free 127.0.0.1 port and are stopped before the next.
set -euo pipefail
REPO=$(cd "$(dirname "$0")/.." && pwd)
cd "$REPO"
BASE_REF=${BASE_REF:-}
for tool in curl unzip tar ss /usr/bin/time; do
	command -v "$tool" >/dev/null || { echo "bench/archives.sh: $tool is not installed" >&2; exit 1; }
done
TMP=$(mktemp -d)
AGENT_PID=
cleanup() {
	if [ -n "$AGENT_PID" ]; then kill "$AGENT_PID" 2>/dev/null || true; wait "$AGENT_PID" 2>/dev/null || true; fi
	rm -rf "$TMP"
}
trap cleanup EXIT

echo "## Machine"
echo
echo "- CPUs: $(nproc) × $(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)"
echo "- memory: $(awk '/^MemTotal/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo)"
echo "- $(go version)"
echo "- zerodown: built from $(git describe --always --dirty 2>/dev/null || echo 'the working tree')"
[ -n "$BASE_REF" ] && echo "- zerodown-base: built from $BASE_REF"
echo "- $(unzip -v | head -1 | cut -c1-40), $(tar --version | head -1)"
echo "- load average (1, 5, 15 min) when the script started: $(cut -d' ' -f1-3 /proc/loadavg)"
echo

go build -o "$TMP/zerodown" ./cmd/zerodown
go build -o "$TMP/mkarchive" ./bench/mkarchive
agents=(zerodown)
if [ -n "$BASE_REF" ]; then
	mkdir "$TMP/base"
	git archive "$BASE_REF" | tar -x -C "$TMP/base"
	(cd "$TMP/base" && go build -o "$TMP/zerodown-base" ./cmd/zerodown)
	agents+=(zerodown-base)
fi

"$TMP/mkarchive" -kind zip -entries 4000000 -out "$TMP/bomb.zip"
"$TMP/mkarchive" -kind zip -entries 4000000 -declare 2304 -out "$TMP/lying.zip"
"$TMP/mkarchive" -kind targz -entries 20000 -name-len 10700 -out "$TMP/long.tar.gz"
"$TMP/mkarchive" -kind targz -entries 20000 -name-len 4000 -no-end -out "$TMP/cut.tar.gz"

TOKEN="bench-$(od -An -N12 -tx1 /dev/urandom | tr -d ' \n')"
export ZERODOWN_AGENT_TOKEN=$TOKEN
SPEC=$(printf '{"run":["./app"]}' | base64 -w0)

mib() { awk -v k="$1" 'BEGIN { printf "%.1f MiB", k / 1024 }'; }
hwm() { awk '/^VmHWM/ { print $2 }' "/proc/$1/status"; }

# pick_port: a free loopback port below the ephemeral range (the agent's
# config wants a number, not 0), as bench/load.sh picks one.
pick_port() {
	local lo hi p tries
	read -r lo _ </proc/sys/net/ipv4/ip_local_port_range
	hi=$((lo - 1)); lo=10000
	((hi > lo + 1000)) || { lo=20000; hi=30000; }
	for ((tries = 0; tries < 200; tries++)); do
		p=$((lo + (RANDOM * 32768 + RANDOM) % (hi - lo)))
		[[ -z $(ss -Htan "( sport = :$p )" 2>/dev/null) ]] || continue
		echo "$p"
		return 0
	done
	echo "bench/archives.sh: no free port found" >&2
	exit 1
}

# start_agent BIN DIR: a fresh agent on DIR; sets AGENT_PID and URL. The
# app's port is never used: no release is activated.
start_agent() {
	local bin=$1 dir=$2 listen app
	listen=$(pick_port)
	app=$(pick_port)
	mkdir -p "$dir"
	cat >"$dir/agent.yaml" <<-EOF
	listen: 127.0.0.1:$listen
	token: \${ZERODOWN_AGENT_TOKEN}
	root: $dir/root
	port: $app
	max_artifact_bytes: 1GiB
	EOF
	"$bin" agent --config "$dir/agent.yaml" >"$dir/out" 2>"$dir/err" &
	AGENT_PID=$!
	URL=
	local deadline=$((SECONDS + 20))
	while [ -z "$URL" ]; do
		URL=$(sed -n 's/.*API on \(http:[^,]*\),.*/\1/p' "$dir/out" 2>/dev/null || true)
		if [ $SECONDS -gt $deadline ] || ! kill -0 "$AGENT_PID" 2>/dev/null; then
			cat "$dir/err" >&2
			echo "bench/archives.sh: the agent did not start" >&2
			exit 1
		fi
		[ -n "$URL" ] || sleep 0.05
	done
}

stop_agent() {
	kill "$AGENT_PID"
	wait "$AGENT_PID" || true
	AGENT_PID=
}

echo "| archive | size | agent | answer | time to the answer (upload included) | agent peak RSS | above the idle agent | peer | peer exit | peer peak RSS | peer time | peak RSS agent / peer | time agent / peer |"
echo "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"
for archive in bomb.zip lying.zip long.tar.gz cut.tar.gz; do
	file=$TMP/$archive
	format=${archive#*.}
	size=$(stat -c %s "$file")
	sum=$(sha256sum "$file" | cut -d' ' -f1)
	case $format in
	zip) peer=(unzip -l "$file") ;;
	*) peer=(tar -tzf "$file") ;;
	esac
	peer_exit=0
	/usr/bin/time -f '%M %e' -o "$TMP/peer.time" "${peer[@]}" >/dev/null 2>&1 || peer_exit=$?
	read -r peer_kb peer_s < <(tail -1 "$TMP/peer.time")
	for agent in "${agents[@]}"; do
		dir=$TMP/run-$agent-$archive
		start_agent "$TMP/$agent" "$dir"
		idle=$(hwm "$AGENT_PID")
		out=$(curl -sS -o "$dir/answer" -w '%{http_code} %{time_total}' --max-time 900 -H 'Expect:' \
			-H "Authorization: Bearer $TOKEN" -H "Zerodown-Spec: $SPEC" -T "$file" \
			"$URL/v1/releases/v1?format=$format&sha256=$sum") || out="curl-failed 0"
		peak=$(hwm "$AGENT_PID")
		stop_agent
		read -r status secs <<<"$out"
		# The answer is indented JSON; its "error", without the upload's
		# own prefix and suffix and with long entry names cut, or what was
		# stored.
		what=$(tr -d '\n' <"$dir/answer" | sed -n 's/^{ *"error": *"\(.*\)", *"code".*/\1/p' |
			sed -E 's/\\"/"/g; s/^unpack v1 \([a-z.]*\): //; s/; nothing was kept$//; s/"([^"]{24})[^"]*"(\.\.\.)?/"\1..."/g' | cut -c1-200)
		[ -n "$what" ] || what="stored, $(tr -d '\n ' <"$dir/answer" | sed -n 's/.*"unpacked":\([0-9]*\).*/\1/p') bytes unpacked"
		printf '| %s | %s | %s | %s: %s | %.2f s | %s | %s | %s %s | %s | %s | %.2f s | %s | %s |\n' \
			"$archive" "$(awk -v b="$size" 'BEGIN { printf "%.1f MB", b / 1e6 }')" "$agent" "$status" "$what" "$secs" \
			"$(mib "$peak")" "$(mib $((peak - idle)))" "${peer[0]}" "${peer[1]}" "$peer_exit" "$(mib "$peer_kb")" "$peer_s" \
			"$(awk -v a="$peak" -v p="$peer_kb" 'BEGIN { printf "%.1f×", a / p }')" \
			"$(awk -v a="$secs" -v p="$peer_s" 'BEGIN { if (p > 0) printf "%.2f×", a / p; else print "n/a" }')"
	done
done
