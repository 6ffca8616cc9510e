#!/usr/bin/env bash
# bench/server-api.sh — zerodown server's API with 10,000 runs in history
# (internal/server BenchmarkAPI): GET /api/v1/runs (the first page of 50;
# a page filtered by environment and status from the middle of the
# history) and GET /api/v1/runs/{id} (a run with 40 tasks), over HTTP on
# loopback with a bearer token, on SQLite and on a real PostgreSQL started
# by the benchmark. The peer is the same read straight from the store, in
# the same run: the ratio is what the API adds (auth, JSON, HTTP).
#
#   bench/server-api.sh [requests]     # default 3000 per case; needs postgresql
set -euo pipefail
REPO=$(cd "$(dirname "$0")/.." && pwd)
cd "$REPO"
N=${1:-3000}
echo "## Machine"
echo
echo "- CPUs: $(nproc) × $(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)"
echo "- $(go version); $(ls /usr/lib/postgresql 2>/dev/null | sed 's/^/PostgreSQL /' | tail -1)"
echo "- zerodown: built from $(git describe --always --dirty 2>/dev/null || echo 'the working tree')"
echo "- load average (1, 5, 15 min) when the script started: $(cut -d' ' -f1-3 /proc/loadavg)"
echo
out=$(go test -run '^$' -bench '^BenchmarkAPI$' -benchtime "${N}x" -count=1 -timeout 20m ./internal/server/ 2>&1) ||
	{ echo "$out" >&2; echo "bench/server-api.sh: the benchmark failed (its output is above on stderr)" >&2; exit 1; }
echo "| store | request | API p50 | API p99 | store p50 | store p99 | API / store (p50) |"
echo "| --- | --- | ---: | ---: | ---: | ---: | ---: |"
awk '
/^BenchmarkAPI\// {
	split($1, k, "/"); be = k[2]; req = k[3]; side = k[4]; sub(/-[0-9]+$/, "", side)
	for (i = 1; i <= NF; i++) { if ($i == "p50-µs") p50 = $(i-1); if ($i == "p99-µs") p99 = $(i-1) }
	key = be " " req
	if (!(key in seen)) { order[++n] = key; seen[key] = 1 }
	v[key, side, "p50"] = p50; v[key, side, "p99"] = p99
}
END {
	for (i = 1; i <= n; i++) {
		split(order[i], kk, " ")
		a50 = v[order[i], "api", "p50"]; a99 = v[order[i], "api", "p99"]
		s50 = v[order[i], "store", "p50"]; s99 = v[order[i], "store", "p99"]
		printf "| %s | %s | %.2f ms | %.2f ms | %.2f ms | %.2f ms | %.2f× |\n", kk[1], kk[2], a50/1000, a99/1000, s50/1000, s99/1000, a50/s50
	}
}' <<<"$out"
