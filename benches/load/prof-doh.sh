#!/usr/bin/env bash
# Instructions and allocator calls per answered DoH query, from callgrind:
# the server (signpost-endpoint's DoH listener, or dnsdist's DoH frontend)
# runs under valgrind pinned to one CPU, with the answer cache (dnsdist: its
# packet cache) on, like the load script's DoH rows, forwarding misses to a
# floor_responder backend on loopback. A warm-up pass of h2load sends every
# name (filling the cache), the counters are zeroed, h2load sends
# REQUESTS GET ?dns= requests over 8 connections x 32 streams (the load
# script's shape; the connections and TLS handshakes are counted too), the
# counters are dumped, and the script prints Ir / answered requests and
# allocator calls / answered requests. Instruction counts do not depend on
# other load on the machine, unlike the load script's CPU seconds.
#
# Usage: benches/load/prof-doh.sh signpost|dnsdist [REQUESTS] [NAMES]
# Environment:
#   SIGNPOST_BIN     signpost-endpoint binary (default target/release/signpost-endpoint)
#   FLOOR_BIN        floor_responder binary (default target/release/floor_responder)
#   PROF_PORT_BASE   first of the three loopback ports used (default 26720)
#   PROF_KEEP        1 = keep the temp dir (callgrind output, logs)
# Needs valgrind, h2load, openssl, perl (and dnsdist for the dnsdist run).
# Loopback only; every process started here is stopped on exit.
set -euo pipefail
LOAD_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
SIGNPOST_BIN=${SIGNPOST_BIN:-$(cd "$LOAD_DIR/../.." && pwd)/target/release/signpost-endpoint}
# shellcheck source=benches/load/prof-common.sh
source "$LOAD_DIR/prof-common.sh"
server=${1:?usage: prof-doh.sh signpost|dnsdist [REQUESTS] [NAMES]}
requests=${2:-20000}
names=${3:-1000}
FLOOR_BIN=${FLOOR_BIN:-$REPO/target/release/floor_responder}
base=${PROF_PORT_BASE:-26720}
backend_port=$base
port=$((base + 1))
doh_port=$((base + 2))

# The load script's GET URIs.
for i in $(seq 1 "$names"); do echo "n$i.prof.test A"; done | perl "$LOAD_DIR/doh-uris.pl" |
    sed "s|@AUTHORITY@|127.0.0.1:$doh_port|" >"$work/uris"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
    -subj "/CN=localhost" -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" \
    -keyout "$work/key.pem" -out "$work/cert.pem" >/dev/null 2>&1

taskset -c 0 "$FLOOR_BIN" "127.0.0.1:$backend_port" batched >"$work/floor.log" 2>&1 &
pids+=($!)

render() {
    sed -e "s|@PORT@|$port|" -e "s|@DOH_PORT@|$doh_port|g" -e "s|@BACKEND_PORT@|$backend_port|" \
        -e "s|@WORKDIR@|$work|g" "$LOAD_DIR/$1" >"$2"
}
case $server in
signpost)
    render signpost-endpoint.toml.in "$work/server.toml"
    command=("$SIGNPOST_BIN" --config "$work/server.toml")
    ;;
dnsdist)
    render dnsdist-doh.conf "$work/server.conf"
    command=(dnsdist --supervised --disable-syslog -C "$work/server.conf")
    ;;
*) echo "unknown server $server" >&2; exit 2 ;;
esac

start_under_callgrind "${command[@]}"
wait_answering +time=2 up.prof.test A || true

load() {
    timeout 600 taskset -c 0 h2load -n "$1" -c 8 -m 32 -t 1 -i "$work/uris" \
        -H 'accept: application/dns-message' >"$2" 2>&1
}
# h2load's clients each walk the URI list from its start: 8 x NAMES
# requests send every name from every connection.
load $((names * 8)) "$work/warm.out"
callgrind_control --zero "$server_pid" >/dev/null
load "$requests" "$work/load.out"
callgrind_control --dump "$server_pid" >/dev/null
sleep 1
# "requests: N total, N started, N done, N succeeded, N failed, ..."
answered=$(awk '/^requests:/ { print $8 }' "$work/load.out")
[[ ${answered:-0} -gt 0 ]] || { cat "$work/load.out" >&2; exit 1; }
instructions=$(callgrind_total "$work"/callgrind.*.*)
allocations=$(callgrind_allocations "$work"/callgrind.*.*)
echo "$server: $instructions instructions, $answered answered of $requests: $((instructions / answered)) instructions per answered query"
echo "$server: $allocations allocator calls: $(awk -v a="$allocations" -v q="$answered" 'BEGIN { printf "%.1f", a / q }') per answered query"
if [[ ${PROF_KEEP:-0} == 1 ]]; then
    callgrind_annotate "$(ls "$work"/callgrind.*.* | head -1)" 2>/dev/null | head -80 >"$work/annotate.txt" || true
fi
