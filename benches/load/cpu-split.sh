#!/usr/bin/env bash
# Where one server's CPU goes per answered query, at dnsperf's full rate:
# user and kernel microseconds (utime and stime of /proc/PID/stat; the
# kernel splits them by sampling at clock ticks, so the split is an
# estimate and the sum is exact), and with `perf` the system calls per
# answered query, by call. The server runs alone on CPU 1; dnsperf
# (`-c 4 -q 256`) and, for forwarding servers, a floor_responder backend on
# CPU 0, as in the load script but with a backend that costs CPU 0 little.
#
# Usage: benches/load/cpu-split.sh SERVER [SECONDS]
#   SERVER: forward (signpost-forward, cache off), forward-cache (cache on:
#   hits after the first pass), redirect (signpost-redirect, every query a
#   redirected name), dnsdist (no packet cache), relay (floor_relay), floor
#   (floor_responder batched, answering itself)
#   SECONDS: length of the measured run (default 4)
# Environment: SIGNPOST_BIN (signpost-forward), FLOOR_BIN, RELAY_BIN,
#   REDIRECT_BIN (default: target/release; read by prof-common.sh), PROF_PORT_BASE (default 26720),
#   SPLIT_RUNS (measured runs, default 1; one line each).
# Needs dnsperf, dig (and dnsdist for its run); perf for the system calls
# (skipped with a note when it is missing or not allowed). Loopback only;
# every process started here is stopped on exit.
set -euo pipefail
LOAD_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=benches/load/prof-common.sh
source "$LOAD_DIR/prof-common.sh"
server=${1:?usage: cpu-split.sh forward|forward-cache|redirect|dnsdist|relay|floor [SECONDS]}
seconds=${2:-4}
FLOOR_BIN=${FLOOR_BIN:-$REPO/target/release/floor_responder}
RELAY_BIN=${RELAY_BIN:-$REPO/target/release/floor_relay}
base=${PROF_PORT_BASE:-26720}
backend_port=$base
port=$((base + 1))

if [[ $server == redirect ]]; then
    for i in $(seq 1 20000); do echo "bucket$i.s3.amazonaws.com A"; done >"$work/names"
else
    for i in $(seq 1 10000); do echo "n$i.split.test A"; done >"$work/names"
fi

start_backend() {
    taskset -c 0 "$FLOOR_BIN" "127.0.0.1:$backend_port" batched >"$work/backend.log" 2>&1 &
    pids+=($!)
}

case $server in
forward | forward-cache | redirect | dnsdist)
    # Names the redirect proxy does not redirect would go to the backend
    # (none are asked).
    start_backend
    cached=false
    [[ $server == forward-cache ]] && cached=true
    name=$server
    [[ $server == forward* ]] && name=signpost
    server_command "$name" "$cached" || { echo "cannot start $server (see above)" >&2; exit 2; }
    ;;
relay)
    start_backend
    command=("$RELAY_BIN" "127.0.0.1:$port" "127.0.0.1:$backend_port")
    ;;
floor)
    command=("$FLOOR_BIN" "127.0.0.1:$port" batched)
    ;;
*) echo "unknown server $server" >&2; exit 2 ;;
esac

taskset -c 1 "${command[@]}" </dev/null >"$work/server.log" 2>&1 &
server_pid=$!
pids+=("$server_pid")
for _ in $(seq 1 30); do
    # floor_responder answers anything; the others need the backend up.
    if dig +tries=1 +time=1 -p "$port" @127.0.0.1 n0.split.test A 2>/dev/null | grep -q 'status: NOERROR'; then
        break
    fi
    kill -0 "$server_pid" 2>/dev/null || { cat "$work/server.log" >&2; exit 1; }
    sleep 0.5
done

load() {
    timeout $(($1 + 30)) taskset -c 0 dnsperf -s 127.0.0.1 -p "$port" -d "$work/names" -n 1000 -c 4 -q 256 \
        -l "$1" -t 2 >"$2" 2>&1
}
# ticks PID: "utime stime" of the whole thread group, in clock ticks.
ticks() { awk '{ print $14, $15 }' "/proc/$1/stat"; }

hz=$(getconf CLK_TCK)
load 2 "$work/warm.out"
for run in $(seq 1 "${SPLIT_RUNS:-1}"); do
    read -r u0 s0 < <(ticks "$server_pid")
    load "$seconds" "$work/load.out" &
    loader=$!
    counted=""
    if command -v perf >/dev/null 2>&1; then
        # Counted over the middle of the run.
        sleep 0.5
        counted=$((seconds > 2 ? seconds - 1 : 1))
        perf stat -x, -o "$work/perf.txt" -e raw_syscalls:sys_enter -e syscalls:sys_enter_recvmmsg \
            -e syscalls:sys_enter_sendmmsg -e syscalls:sys_enter_recvmsg -e syscalls:sys_enter_recvfrom \
            -e syscalls:sys_enter_sendmsg -e syscalls:sys_enter_sendto -e syscalls:sys_enter_epoll_wait \
            -e syscalls:sys_enter_poll -e syscalls:sys_enter_write -e syscalls:sys_enter_futex \
            -p "$server_pid" -- sleep "$counted" 2>/dev/null || counted=""
    fi
    wait "$loader" || true
    read -r u1 s1 < <(ticks "$server_pid")
    answered=$(sed -n 's/^ *Queries completed: *\([0-9]*\).*/\1/p' "$work/load.out")
    qps=$(sed -n 's/^ *Queries per second: *\([0-9.]*\).*/\1/p' "$work/load.out")
    awk -v s="$server" -v u=$((u1 - u0)) -v k=$((s1 - s0)) -v a="${answered:-0}" -v q="${qps:-0}" -v hz="$hz" \
        'BEGIN {
            if (a == 0) { printf "%s: no answers (see the dnsperf output)\n", s; exit 1 }
            us = 1e6 / hz / a
            printf "%s: %d answered, %.0f qps, per answered query: user %.3f us, kernel %.3f us, total %.3f us (%.1fk per busy core)\n",
                s, a, q, u * us, k * us, (u + k) * us, a / ((u + k) / hz) / 1000
        }'
    if [[ -n $counted ]]; then
        # Per answered query at the run's rate (the counted window is inside the run).
        awk -F, -v s="$server" -v counted="$counted" -v q="${qps:-0}" '
            $1 ~ /^[0-9]+$/ && $1 > 0 && q > 0 {
                name = $3; sub(/^.*:sys_enter_?/, "", name); if (name == "") name = "all"
                out = out sprintf(" %s %.3f", name, $1 / counted / q)
            }
            END { if (out != "") printf "%s: system calls per answered query:%s\n", s, out }' "$work/perf.txt"
    else
        echo "$server: perf could not count system calls here"
    fi
done
