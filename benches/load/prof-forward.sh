#!/usr/bin/env bash
# Instructions per answered query of an uncached forwarder, from callgrind:
# the server runs under valgrind (pinned to one CPU, like the load script's
# runs), forwarding to a floor_responder backend on loopback; after a
# warm-up its counters are zeroed, dnsperf sends QUERIES distinct names at
# a bounded rate, the counters are dumped, and the script prints
# Ir / answered queries, and calls into the allocator (malloc, realloc and
# their aligned and mimalloc variants) / answered queries. Instruction
# counts do not depend on other load on the machine, unlike the load
# script's CPU seconds.
#
# Usage: benches/load/prof-forward.sh signpost|dnsdist|endpoint[-cache]|redirect [QUERIES]
# endpoint runs target/release/signpost-endpoint with the load script's
# signpost-endpoint.toml.in (Do53 only; its cache is on in both modes, so
# use endpoint-cache).
# redirect runs target/release/signpost-redirect on its embedded default
# (the load script's set-up) and measures local answers: every query is a
# distinct bucket<N>.s3.amazonaws.com name, answered by the redirect rule.
# The -cache modes turn the server's answer cache on (dnsdist: its packet
# cache) and measure cache hits: the warm-up sends PROF_CACHE_NAMES
# distinct names once, then the measured pass repeats those same names
# until QUERIES queries, so every measured query is answered from the cache.
# Environment:
#   SIGNPOST_BIN     signpost-forward binary (default target/release/signpost-forward)
#   FLOOR_BIN        floor_responder binary (default target/release/floor_responder)
#   PROF_PORT_BASE   first of the two loopback ports used (default 26710)
#   PROF_OUTSTANDING dnsperf -q (default 32)
#   PROF_CACHE_NAMES distinct names of the -cache modes (default 1000)
#   PROF_KEEP        1 = keep the temp dir (callgrind output, logs)
# Needs valgrind, dnsperf (and dnsdist for the dnsdist run). Loopback only;
# every process started here is stopped on exit.
set -euo pipefail
LOAD_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=benches/load/prof-common.sh
source "$LOAD_DIR/prof-common.sh"
server=${1:?usage: prof-forward.sh signpost|dnsdist|endpoint[-cache]|redirect [QUERIES]}
queries=${2:-20000}
cached=false
if [[ $server == *-cache ]]; then
    cached=true
    server=${server%-cache}
fi
FLOOR_BIN=${FLOOR_BIN:-$REPO/target/release/floor_responder}
base=${PROF_PORT_BASE:-26710}
backend_port=$base
port=$((base + 1))

if [[ $server == redirect ]]; then
    for i in $(seq 1 "$queries"); do echo "bucket$i.s3.amazonaws.com A"; done >"$work/names"
    for i in $(seq 1 500); do echo "warm$i.s3.amazonaws.com A"; done >"$work/warm"
elif [[ $cached == true ]]; then
    distinct=${PROF_CACHE_NAMES:-1000}
    for i in $(seq 1 "$distinct"); do echo "c$i.prof.test A"; done >"$work/warm"
    for i in $(seq 0 $((queries - 1))); do echo "c$((i % distinct + 1)).prof.test A"; done >"$work/names"
else
    for i in $(seq 1 "$queries"); do echo "n$i.prof.test A"; done >"$work/names"
    for i in $(seq 1 500); do echo "w$i.prof.test A"; done >"$work/warm"
fi

taskset -c 0 "$FLOOR_BIN" "127.0.0.1:$backend_port" batched >"$work/floor.log" 2>&1 &
pids+=($!)

server_command "$server" "$cached" || { echo "cannot start $server (unknown, or see above)" >&2; exit 2; }

start_under_callgrind "${command[@]}"
# Up and answering through the backend.
wait_answering +time=2 up.prof.test A || true

load() {
    timeout 600 taskset -c 0 dnsperf -s 127.0.0.1 -p "$port" -d "$1" -n 1 -c 1 -q "$outstanding" -t 10 \
        >"$2" 2>&1
}
load "$work/warm" "$work/warm.out"
callgrind_control --zero "$server_pid" >/dev/null
load "$work/names" "$work/load.out"
callgrind_control --dump "$server_pid" >/dev/null
sleep 1
answered=$(sed -n 's/^ *Queries completed: *\([0-9]*\).*/\1/p' "$work/load.out")
instructions=$(callgrind_total "$work"/callgrind.*.*)
lost=$(sed -n 's/^ *Queries lost: *\([0-9]*\).*/\1/p' "$work/load.out")
allocations=$(callgrind_allocations "$work"/callgrind.*.*)
echo "$server: $instructions instructions, $answered answered, $lost lost: $((instructions / answered)) instructions per answered query"
echo "$server: $allocations allocator calls: $(awk -v a="$allocations" -v q="$answered" 'BEGIN { printf "%.1f", a / q }') per answered query"
if [[ ${PROF_KEEP:-0} == 1 ]]; then
    # The largest dump is the measured one (the other is the part after it, to exit).
    callgrind_annotate --threshold=100 --inclusive=yes "$(ls -S "$work"/callgrind.*.* | head -1)" 2>/dev/null \
        | head -80 >"$work/annotate.txt" || true
fi
