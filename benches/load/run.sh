#!/usr/bin/env bash
# Load comparison of DNS servers, measured as queries per busy server core.
#
# Every server runs confined to CPU 1 (taskset -c 1); the load generator
# (dnsperf, or h2load for DoH) runs on CPU 0. Each run reads the server's
# CPU time (utime+stime of the whole thread group, /proc/PID/stat) before and
# after, and reports answered queries / server CPU seconds. Raw QPS and the
# p99 latency at a fixed 20k QPS are reported too. See README.md.
#
# Only loopback addresses and high ports are used; every load run is bounded
# in time (LOAD_SECONDS, plus a hard `timeout`) and dnsperf runs in count
# (LOAD_MAX_RUNS passes over the query file). Every process started here is
# stopped on exit, failure included.
#
# Environment:
#   LOAD_SECONDS    seconds per measured run (default 10)
#   LOAD_P99_QPS    fixed rate of the latency runs (default 20000)
#   LOAD_CLIENTS    dnsperf -c (default 4)
#   LOAD_OUTSTANDING dnsperf -q (default 256)
#   LOAD_MAX_RUNS   dnsperf -n, passes over the query file (default 1000)
#   LOAD_NAMES      lines in the generated query file (default 10000)
#   LOAD_PORT_BASE  first port used (default 25300; uses base..base+20)
#   LOAD_ONLY       space-separated subset of runs to do (names below)
#   LOAD_KEEP       1 = keep the temp dir (configs, logs) for inspection
#   LOAD_ROUNDS     times the whole set of runs is repeated (default 1); each
#                   row then reports the round with its median queries per
#                   busy core, and each goal's ratio is the median of the
#                   rounds' own ratios (every round's listed), so that one
#                   noisy round on a shared machine does not decide it
#   LOAD_WARM       1 (default) = before each throughput run, one unmeasured
#                   pass over the query file, so that cache rows measure
#                   cache hits, not the first pass's misses; 0 = no warm-up
#   LOAD_QUIET_WAIT seconds to wait, before each run, for the machine to be
#                   idle (default 0: do not wait); runs disturbed by other
#                   processes are flagged CONTENDED in the notes either way
#   RESULTS         markdown results file (default benches/load/results.md)
#   FLOOR_BIN       floor_responder binary (default: built with cargo)
#   RELAY_BIN       floor_relay binary (default: floor_relay beside
#                   FLOOR_BIN, else built with cargo)
#   SIGNPOST_BIN_DIR where signpost-* binaries are looked for
#                   (default <repo>/target/release)
#
# Run names for LOAD_ONLY: floor-simple floor-batched floor-relay unbound-local
#   unbound-forward unbound-forward-cache dnsdist-nocache dnsdist-cache unbound-tcp dnsdist-doh
#   unbound-doh signpost-redirect signpost-forward signpost-endpoint

set -euo pipefail

LOAD_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$LOAD_DIR/../.." && pwd)

LOAD_SECONDS=${LOAD_SECONDS:-10}
LOAD_P99_QPS=${LOAD_P99_QPS:-20000}
LOAD_CLIENTS=${LOAD_CLIENTS:-4}
LOAD_OUTSTANDING=${LOAD_OUTSTANDING:-256}
LOAD_MAX_RUNS=${LOAD_MAX_RUNS:-1000}
LOAD_NAMES=${LOAD_NAMES:-10000}
LOAD_PORT_BASE=${LOAD_PORT_BASE:-25300}
LOAD_ONLY=${LOAD_ONLY:-}
LOAD_KEEP=${LOAD_KEEP:-0}
LOAD_QUIET_WAIT=${LOAD_QUIET_WAIT:-0}
LOAD_WARM=${LOAD_WARM:-1}
LOAD_ROUNDS=${LOAD_ROUNDS:-1}
[[ $LOAD_ROUNDS =~ ^[1-9][0-9]*$ ]] || {
    printf '[load] LOAD_ROUNDS must be a positive whole number, not %s\n' "$LOAD_ROUNDS" >&2
    exit 2
}
ROUND=1
RESULTS=${RESULTS:-$LOAD_DIR/results.md}
SIGNPOST_BIN_DIR=${SIGNPOST_BIN_DIR:-$REPO/target/release}

# DoH load shape: 8 connections x 32 concurrent streams.
DOH_CONNECTIONS=8
DOH_STREAMS=32

SERVER_CPU=1
CLIENT_CPU=0
ADDR=127.0.0.1

# Ports (all on 127.0.0.1).
PORT_FLOOR_SIMPLE=$((LOAD_PORT_BASE + 0))
PORT_FLOOR_BATCHED=$((LOAD_PORT_BASE + 1))
PORT_UNBOUND_LOCAL=$((LOAD_PORT_BASE + 2))
PORT_UNBOUND_LOCAL_DOH=$((LOAD_PORT_BASE + 3))
PORT_UNBOUND_FORWARD=$((LOAD_PORT_BASE + 4))
PORT_DNSDIST_NOCACHE=$((LOAD_PORT_BASE + 5))
PORT_DNSDIST_CACHE=$((LOAD_PORT_BASE + 6))
PORT_DNSDIST_DOH_UDP=$((LOAD_PORT_BASE + 7))
PORT_DNSDIST_DOH=$((LOAD_PORT_BASE + 8))
PORT_SIGNPOST_REDIRECT=$((LOAD_PORT_BASE + 9))
PORT_SIGNPOST_FORWARD=$((LOAD_PORT_BASE + 10))
PORT_SIGNPOST_ENDPOINT=$((LOAD_PORT_BASE + 11))
PORT_SIGNPOST_ENDPOINT_DOH=$((LOAD_PORT_BASE + 12))
PORT_FLOOR_RELAY=$((LOAD_PORT_BASE + 13))
PORT_SIGNPOST_FORWARD_ADMIN=$((LOAD_PORT_BASE + 14))
PORT_BACKEND=$((LOAD_PORT_BASE + 20))

CLK_TCK=$(getconf CLK_TCK)

log() { printf '[load] %s\n' "$*" >&2; }
warn() { printf '[load] WARNING: %s\n' "$*" >&2; }
die() {
    printf '[load] ERROR: %s\n' "$*" >&2
    exit 1
}

# ---------------------------------------------------------------------------
# Prerequisites: install nothing, say what is missing.
# ---------------------------------------------------------------------------

check_tools() {
    local missing=() pkgs=() tool pkg
    for pair in dnsperf:dnsperf unbound:unbound dnsdist:dnsdist h2load:nghttp2-client \
        taskset:util-linux openssl:openssl perl:perl timeout:coreutils getconf:libc-bin; do
        tool=${pair%%:*}
        pkg=${pair#*:}
        if ! command -v "$tool" >/dev/null 2>&1; then
            missing+=("$tool")
            pkgs+=("$pkg")
        fi
    done
    if ((${#missing[@]})); then
        printf '[load] missing tools: %s\n' "${missing[*]}" >&2
        printf '[load] install them with: apt-get install %s\n' "${pkgs[*]}" >&2
        exit 1
    fi
    if ! perl -MMIME::Base64 -e1 2>/dev/null; then
        die "perl lacks MIME::Base64 (apt-get install perl)"
    fi
    if [[ $(nproc --all) -lt 2 ]]; then
        die "needs at least 2 CPUs (server on CPU $SERVER_CPU, load on CPU $CLIENT_CPU)"
    fi
}

# ---------------------------------------------------------------------------
# Process bookkeeping and cleanup.
# ---------------------------------------------------------------------------

STARTED_PIDS=()
WORKDIR=""

cleanup() {
    local status=$? pid
    trap - EXIT INT TERM
    for pid in "${STARTED_PIDS[@]}"; do
        kill -TERM "$pid" 2>/dev/null || true
    done
    for pid in "${STARTED_PIDS[@]}"; do
        for _ in 1 2 3 4 5 6 7 8 9 10; do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.2
        done
        kill -KILL "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    if [[ -n $WORKDIR && -d $WORKDIR ]]; then
        if [[ $LOAD_KEEP == 1 ]]; then
            log "kept $WORKDIR"
        else
            rm -rf "$WORKDIR"
        fi
    fi
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# start NAME CPU COMMAND... : start a process in the background on CPU,
# logging to $WORKDIR/NAME.log; sets STARTED_PID.
STARTED_PID=""
start() {
    local name=$1 cpu=$2
    shift 2
    taskset -c "$cpu" "$@" </dev/null >"$WORKDIR/$name.log" 2>&1 &
    STARTED_PID=$!
    STARTED_PIDS+=("$STARTED_PID")
}

# stop PID: stop one process started here and forget it.
stop() {
    local pid=$1
    kill -TERM "$pid" 2>/dev/null || true
    for _ in 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15; do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.2
    done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    forget "$pid"
}

# run_load OUT COMMAND...: run a load generator on the client CPU, bounded by
# a hard timeout, output to OUT. Run in the background and waited for, so a
# signal reaches the EXIT trap at once (which then stops it too).
run_load() {
    local out=$1 pid rc=0
    shift
    timeout $((LOAD_SECONDS + 30)) taskset -c "$CLIENT_CPU" "$@" >"$out" 2>&1 &
    pid=$!
    STARTED_PIDS+=("$pid")
    wait "$pid" || rc=$?
    forget "$pid"
    return "$rc"
}

# forget PID: drop PID from the processes to stop on exit.
forget() {
    local keep=() p
    for p in "${STARTED_PIDS[@]}"; do
        [[ $p == "$1" ]] || keep+=("$p")
    done
    STARTED_PIDS=("${keep[@]+"${keep[@]}"}")
}

# ---------------------------------------------------------------------------
# Measurement helpers.
# ---------------------------------------------------------------------------

# proc_ticks PID EXPR: an awk expression of /proc/PID/stat's fields, in
# clock ticks, with $12 the utime (field 14) and $13 the stime (field 15)
# of the whole thread group (threads that already exited included). 0 if
# PID is absent.
proc_ticks() {
    local stat rest
    stat=$(cat "/proc/$1/stat" 2>/dev/null) || {
        echo 0
        return
    }
    # rest starts at field 3 (state), after the command name in parentheses.
    rest=${stat##*) }
    awk "{ print $2 }" <<<"$rest"
}

# cpu_ticks PID: utime+stime.
cpu_ticks() { proc_ticks "$1" '$12 + $13'; }

# user_ticks PID: utime alone, the user-space part of cpu_ticks. The kernel
# splits a thread's time between utime and stime by sampling at its clock
# ticks, so the split is an estimate (within a few percent over a run of
# seconds), unlike the sum.
user_ticks() { proc_ticks "$1" '$12'; }

# ticks_to_seconds TICKS
ticks_to_seconds() { awk -v t="$1" -v hz="$CLK_TCK" 'BEGIN { printf "%.2f", t / hz }'; }

# child_ticks: utime+stime of this shell's waited-for children (cutime +
# cstime of /proc/$$/stat): measures the load generator's own CPU use.
child_ticks() {
    local stat rest
    stat=$(cat "/proc/$$/stat")
    rest=${stat##*) }
    awk '{ print $14 + $15 }' <<<"$rest"
}

# percent TICKS START_EPOCH END_EPOCH: CPU use over a wall-clock interval.
percent() {
    awk -v t="$1" -v a="$2" -v b="$3" -v hz="$CLK_TCK" \
        'BEGIN { printf "%d", (b > a ? 100 * t / hz / (b - a) : 0) }'
}

# busy_ticks: busy time of all CPUs from /proc/stat (user, nice, system, irq,
# softirq; clock ticks), to spot other processes competing during a run.
busy_ticks() { awk '/^cpu / { print $2 + $3 + $4 + $7 + $8 }' /proc/stat; }

# other_load_note OTHER_TICKS T0 T1: a note when processes other than the
# server, its backend and the load generator used more than 5% of a core.
other_load_note() {
    awk -v t="$1" -v a="$2" -v b="$3" -v hz="$CLK_TCK" 'BEGIN {
        s = t / hz; if (b > a && s > 0.05 * (b - a)) printf "; CONTENDED: other processes used %.2f CPU s", s }'
}

# snapshot PID [BACKEND_PID]: "server backend load-generator all-busy time
# server-user" (ticks, ticks, ticks, ticks, epoch seconds, ticks) for
# contended_note and cpu_notes.
snapshot() {
    local backend=0
    [[ -n ${2:-} ]] && backend=$(cpu_ticks "$2")
    echo "$(cpu_ticks "$1") $backend $(child_ticks) $(busy_ticks) $EPOCHREALTIME $(user_ticks "$1")"
}

# contended_note SNAPSHOT0 SNAPSHOT1 LABEL: other_load_note between two snapshots.
contended_note() {
    local c0 b0 l0 a0 t0 u0 c1 b1 l1 a1 t1 u1
    read -r c0 b0 l0 a0 t0 u0 <<<"$1"
    read -r c1 b1 l1 a1 t1 u1 <<<"$2"
    other_load_note $((a1 - a0 - (c1 - c0) - (b1 - b0) - (l1 - l0))) "$t0" "$t1" | sed "s/CONTENDED/$3CONTENDED/"
}

# wait_quiet: with LOAD_QUIET_WAIT > 0, wait up to that many seconds for the
# machine to be idle (under 10% of one core busy over one second) before a run.
wait_quiet() {
    ((LOAD_QUIET_WAIT > 0)) || return 0
    local deadline=$((SECONDS + LOAD_QUIET_WAIT)) a b
    while ((SECONDS < deadline)); do
        a=$(busy_ticks)
        sleep 1
        b=$(busy_ticks)
        ((b - a <= CLK_TCK / 10)) && return 0
    done
    warn "machine still busy after ${LOAD_QUIET_WAIT}s; measuring anyway"
}

# wait_udp PORT [SECONDS]: wait until a DNS query over UDP is answered.
wait_udp() {
    local port=$1 limit=${2:-15} i
    for ((i = 0; i < limit * 2; i++)); do
        if timeout 5 dnsperf -s "$ADDR" -p "$port" -d "$WORKDIR/probe.txt" -n 1 -l 2 -t 1 \
            2>/dev/null | grep -q 'Queries completed: *1 '; then
            return 0
        fi
        sleep 0.5
    done
    return 1
}

# wait_tcp PORT [SECONDS]: wait until something accepts TCP connections.
wait_tcp() {
    local port=$1 limit=${2:-15} i
    for ((i = 0; i < limit * 4; i++)); do
        if (exec 3<>"/dev/tcp/$ADDR/$port") 2>/dev/null; then
            return 0
        fi
        sleep 0.25
    done
    return 1
}

# tag TEXT: TEXT made safe for a file name.
tag() { tr -c 'A-Za-z0-9._\n-' '_' <<<"$1"; }

# Results: one TSV line per measured run in $WORKDIR/results.tsv:
# server workload transport qps cpu_seconds answered p99_ms notes round
record() {
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$@" "$ROUND" >>"$WORKDIR/results.tsv"
}

# medians TSV: one line per server / workload / transport, in the order
# first measured: the round with the median queries per busy core (the
# lower middle of an even count), its notes marked with the round; a row
# that never measured keeps its first line.
medians() {
    awk -F'\t' -v OFS='\t' -v rounds="$LOAD_ROUNDS" '
        { key = $1 FS $2 FS $3 }
        !(key in first) { first[key] = $0; order[++keys] = key }
        $5 + 0 > 0 { n[key]++; line[key, n[key]] = $0; qpc[key, n[key]] = $6 / $5 }
        END {
            for (k = 1; k <= keys; k++) {
                key = order[k]
                if (!n[key]) { print first[key]; continue }
                # Insertion sort by queries per core: a handful of rounds.
                for (i = 2; i <= n[key]; i++)
                    for (j = i; j > 1 && qpc[key, j - 1] > qpc[key, j]; j--) {
                        t = qpc[key, j]; qpc[key, j] = qpc[key, j - 1]; qpc[key, j - 1] = t
                        t = line[key, j]; line[key, j] = line[key, j - 1]; line[key, j - 1] = t
                    }
                split(line[key, int((n[key] + 1) / 2)], f, FS)
                if (rounds > 1) f[8] = "median of " n[key] " rounds (round " f[9] ")" (f[8] == "" ? "" : "; " f[8])
                print f[1], f[2], f[3], f[4], f[5], f[6], f[7], f[8], f[9]
            }
        }' "$1"
}

# skip SERVER WORKLOAD TRANSPORT REASON: record a run that could not happen.
skip() {
    warn "skipping $1 / $2 / $3: $4"
    record "$1" "$2" "$3" "-" "-" "-" "-" "skipped: $4"
}

# p99 MS_PER_UNIT: the 99th percentile (nearest rank) of the latencies on
# stdin, one a line, in ms to three places ("-" when there are none).
p99() {
    sort -g | awk -v scale="$1" '
        { v[NR] = $1 }
        END { if (NR == 0) { print "-"; exit }
              i = int(NR * 0.99); if (i < NR * 0.99) i++; if (i < 1) i = 1;
              printf "%.3f", v[i] * scale }'
}

# p99_from_dnsperf FILE: p99 latency in ms from `dnsperf -v` output
# ("> RCODE name type latency" per answered query, in seconds).
p99_from_dnsperf() {
    awk '/^> / && $2 != "T" { print $NF }' "$1" | p99 1000
}

# no_statistics TOOL SERVER WORKLOAD MODE OUT: a failed row when TOOL's
# output OUT has no statistics to read (the output goes to stderr).
no_statistics() {
    warn "no $1 statistics for $2 / $3 / $4"
    sed 's/^/    /' "$5" >&2
    record "$2" "$3" "$4" "-" "-" "-" "-" "failed: no $1 statistics"
}

# cpu_notes SNAPSHOT0 SNAPSHOT1 BACKEND_PID [SERVER_SECONDS]: the notes on
# who used the CPU between two snapshots: the backend's CPU seconds (when
# there is a backend), the server's use as a percentage of SERVER_SECONDS
# (default: the interval) with the user-space share of it, the load
# generator's of the interval, and a CONTENDED note for other processes.
# Sets CPU to the server's CPU seconds and CPU_NOTES to the notes.
cpu_notes() {
    local c0 b0 l0 a0 t0 u0 c1 b1 l1 a1 t1 u1 notes="" busy_from busy_to
    read -r c0 b0 l0 a0 t0 u0 <<<"$1"
    read -r c1 b1 l1 a1 t1 u1 <<<"$2"
    busy_from=$t0 busy_to=$t1
    [[ -n ${4:-} ]] && busy_from=0 busy_to=$4
    CPU=$(ticks_to_seconds $((c1 - c0)))
    if [[ -n $3 ]]; then
        notes+="backend CPU $(ticks_to_seconds $((b1 - b0)))s; "
    fi
    notes+="server busy $(percent $((c1 - c0)) "$busy_from" "$busy_to")%"
    # How much of the server's CPU time was its own code (the rest is the
    # kernel's: system calls, loopback delivery): where a ratio can move.
    ((c1 > c0)) && notes+=" (user $(((u1 - u0) * 100 / (c1 - c0)))%)"
    notes+=", load generator CPU $(percent $((l1 - l0)) "$t0" "$t1")%"
    notes+=$(other_load_note $((a1 - a0 - (c1 - c0) - (b1 - b0) - (l1 - l0))) "$t0" "$t1")
    CPU_NOTES=$notes
}

# udp_receive_drops: datagrams the kernel has dropped for a full receive
# buffer in this network namespace (UdpRcvbufErrors + Udp6RcvbufErrors, as
# nstat shows them); a lost query or answer costs a retransmission.
udp_receive_drops() {
    local v4 v6
    v4=$(awk '$1 == "Udp:" { if (!seen) { for (i = 2; i <= NF; i++) if ($i == "RcvbufErrors") column = i; seen = 1 }
                             else value = $column }
              END { print value + 0 }' /proc/net/snmp 2>/dev/null)
    v6=$(awk '$1 == "Udp6RcvbufErrors" { print $2 }' /proc/net/snmp6 2>/dev/null)
    echo $((${v4:-0} + ${v6:-0}))
}

# upstream_retransmits URL: the sum of signpost_upstream_retransmits_total
# in the Prometheus text at URL (matched by exact name, as the soak
# script's `metric` does); nothing without curl or an answer.
upstream_retransmits() {
    command -v curl >/dev/null || return 0
    # A server that does not answer leaves the note out, not the run.
    curl -s --max-time 2 "$1" 2>/dev/null |
        awk -v name=signpost_upstream_retransmits_total \
            '$1 == name || index($1, name "{") == 1 { sum += $NF; seen = 1 } END { if (seen) printf "%d\n", sum }' ||
        true
}

# measure_dnsperf SERVER WORKLOAD MODE PORT SERVER_PID [BACKEND_PID]
# One throughput run (CPU measured) then one fixed-rate latency run. With
# METRICS_URL set (a Signpost server's /metrics), the throughput run's
# upstream retransmissions go in the notes.
measure_dnsperf() {
    local server=$1 workload=$2 mode=$3 port=$4 pid=$5 backend=${6:-}
    # QUERIES names another query file (default: the mixed one).
    local queries=${QUERIES:-$WORKDIR/queries.txt}
    local out
    out="$WORKDIR/dnsperf-$(tag "$server-$workload-$mode")"
    local s0 s1 d0 d1 r0="" r1="" completed sent qps notes="" p99 lost
    # The load shape; each run adds its count of passes (-n) and its rate.
    local common=(-s "$ADDR" -p "$port" -m "$mode" -d "$queries" -l "$LOAD_SECONDS"
        -c "$LOAD_CLIENTS" -q "$LOAD_OUTSTANDING" -T 1 -t 2)
    if [[ $LOAD_WARM != 0 ]]; then
        # Every name once, unmeasured: a cache's first pass is all misses.
        log "$server / $workload / $mode: warm-up pass over the query file"
        run_load "$out-warm.txt" dnsperf "${common[@]}" -n 1 ||
            warn "dnsperf (warm-up) exited non-zero (see $out-warm.txt)"
    fi
    log "$server / $workload / $mode: ${LOAD_SECONDS}s throughput run"
    wait_quiet
    [[ -n ${METRICS_URL:-} ]] && r0=$(upstream_retransmits "$METRICS_URL")
    d0=$(udp_receive_drops)
    s0=$(snapshot "$pid" "$backend")
    run_load "$out.txt" dnsperf "${common[@]}" -n "$LOAD_MAX_RUNS" ||
        warn "dnsperf exited non-zero (see $out.txt)"
    s1=$(snapshot "$pid" "$backend")
    d1=$(udp_receive_drops)
    [[ -n $r0 ]] && r1=$(upstream_retransmits "$METRICS_URL")
    sent=$(awk '/Queries sent:/ { print $3 }' "$out.txt")
    completed=$(awk '/Queries completed:/ { print $3 }' "$out.txt")
    qps=$(awk '/Queries per second:/ { printf "%.0f", $4 }' "$out.txt")
    if [[ -z $completed || -z $qps ]]; then
        no_statistics dnsperf "$server" "$workload" "$mode" "$out.txt"
        return 0
    fi
    lost=$((sent - completed))
    if ((sent > 0 && lost * 100 > sent)); then
        notes+="lost ${lost}/${sent}; "
    fi
    if ! grep -q 'NOERROR [0-9]* (100.00%)' "$out.txt"; then
        notes+="rcodes: $(awk -F': *' '/Response codes:/ { print $2 }' "$out.txt"); "
    fi
    if ((d1 > d0)); then
        notes+="UDP receive-buffer drops $((d1 - d0)); "
    fi
    if [[ -n $r0 && -n $r1 ]]; then
        notes+="upstream retransmits $((r1 - r0)); "
    fi
    # dnsperf's run time excludes its wait for the last answers (-t), during
    # which the server idles and dnsperf spins: server busy uses the former.
    local runtime
    runtime=$(awk '/Run time \(s\):/ { print $4 }' "$out.txt")
    cpu_notes "$s0" "$s1" "$backend" "${runtime:-0}"
    notes+=$CPU_NOTES

    log "$server / $workload / $mode: ${LOAD_SECONDS}s at ${LOAD_P99_QPS} qps for p99"
    local p0 p1
    wait_quiet
    p0=$(snapshot "$pid" "$backend")
    run_load "$out-p99.txt" dnsperf "${common[@]}" -n "$LOAD_MAX_RUNS" -Q "$LOAD_P99_QPS" -v ||
        warn "dnsperf (p99) exited non-zero"
    p1=$(snapshot "$pid" "$backend")
    notes+=$(contended_note "$p0" "$p1" "p99 run ")
    p99=$(p99_from_dnsperf "$out-p99.txt")
    local achieved
    achieved=$(awk '/Queries per second:/ { printf "%.0f", $4 }' "$out-p99.txt")
    if [[ -n $achieved ]] && ((achieved < LOAD_P99_QPS * 95 / 100)); then
        notes+="; p99 run reached only $achieved qps"
    fi
    rm -f "$out-p99.txt"
    record "$server" "$workload" "$mode" "$qps" "$CPU" "$completed" "$p99" "$notes"
    log "$server / $workload / $mode: $qps qps, server CPU ${CPU}s, p99 ${p99} ms ($notes)"
}

# measure_h2load SERVER WORKLOAD PORT SERVER_PID [BACKEND_PID]
# DoH (HTTP/2, GET ?dns=) with h2load: throughput run then fixed-rate run.
measure_h2load() {
    local server=$1 workload=$2 port=$3 pid=$4 backend=${5:-}
    local out
    out="$WORKDIR/h2load-$(tag "$server-$workload")"
    local s0 s1 ok secs qps notes="" p99 uris="$WORKDIR/doh-uris-$port.txt"
    sed "s|@AUTHORITY@|$ADDR:$port|" "$WORKDIR/doh-uris.txt" >"$uris"
    # The load shape; the measured runs add their length (-D), the warm-up
    # its count of requests (-n).
    local common=(-c "$DOH_CONNECTIONS" -m "$DOH_STREAMS" -t 1 -i "$uris"
        -H 'accept: application/dns-message')
    if [[ $LOAD_WARM != 0 ]]; then
        # Every URI once, unmeasured (see measure_dnsperf).
        log "$server / $workload / doh: warm-up pass over the query file"
        run_load "$out-warm.txt" h2load "${common[@]}" -n "$(wc -l <"$uris")" ||
            warn "h2load (warm-up) exited non-zero (see $out-warm.txt)"
    fi
    log "$server / $workload / doh: ${LOAD_SECONDS}s throughput run"
    wait_quiet
    s0=$(snapshot "$pid" "$backend")
    run_load "$out.txt" h2load "${common[@]}" -D "$LOAD_SECONDS" || warn "h2load exited non-zero (see $out.txt)"
    s1=$(snapshot "$pid" "$backend")
    # "requests: N total, N started, N done, N succeeded, N failed, ..."
    ok=$(awk '/^requests:/ { print $8 }' "$out.txt")
    # "finished in 5.00s, 69000.00 req/s, ..."
    secs=$(awk '/^finished in/ { v = $3; sub(/,$/, "", v); print v }' "$out.txt")
    if [[ -z $ok || -z $secs ]]; then
        no_statistics h2load "$server" "$workload" doh "$out.txt"
        return 0
    fi
    # h2load prints ms for short runs ("finished in 900.12ms").
    qps=$(awk -v n="$ok" -v s="$secs" 'BEGIN { if (s ~ /ms$/) { sub(/ms$/, "", s); s /= 1000 } else sub(/s$/, "", s)
        printf "%.0f", (s > 0 ? n / s : 0) }')
    local failed
    failed=$(awk '/^requests:/ { print $10 + $12 + $14 }' "$out.txt")
    ((failed > 0)) && notes+="failed/errored/timeout $failed; "
    cpu_notes "$s0" "$s1" "$backend"
    notes+=$CPU_NOTES

    log "$server / $workload / doh: ${LOAD_SECONDS}s at ${LOAD_P99_QPS} qps for p99"
    local p0 p1
    wait_quiet
    p0=$(snapshot "$pid" "$backend")
    run_load "$out-p99.txt" h2load "${common[@]}" -D "$LOAD_SECONDS" --rps $((LOAD_P99_QPS / DOH_CONNECTIONS)) \
        --log-file="$out-p99.log" || warn "h2load (p99) exited non-zero"
    p1=$(snapshot "$pid" "$backend")
    notes+=$(contended_note "$p0" "$p1" "p99 run ")
    # --log-file columns: start (us since epoch), status, duration (us).
    p99=$(awk -F'\t' '$2 >= 200 && $2 < 300 { print $3 }' "$out-p99.log" 2>/dev/null | p99 0.001)
    local achieved
    achieved=$(awk '/^finished in/ { print int($4) }' "$out-p99.txt")
    if [[ -n $achieved ]] && ((achieved < LOAD_P99_QPS * 95 / 100)); then
        notes+="; p99 run reached only $achieved req/s"
    fi
    rm -f "$out-p99.log" "$out-p99.txt"
    record "$server" "$workload" "doh" "$qps" "$CPU" "$ok" "$p99" "$notes"
    log "$server / $workload / doh: $qps qps, server CPU ${CPU}s, p99 ${p99} ms ($notes)"
}

# ---------------------------------------------------------------------------
# Inputs: query file, DoH URIs, configs, certificate.
# ---------------------------------------------------------------------------

# Half redirected-style names (bucketN.s3.amazonaws.com), half
# forwarded-style names under a test domain, interleaved.
make_queries() {
    local n=$LOAD_NAMES
    awk -v n="$n" 'BEGIN { for (i = 0; i < n; i++)
        if (i % 2 == 0) printf "bucket%d.s3.amazonaws.com A\n", i / 2;
        else printf "host%d.fwd.signpost.test A\n", i / 2 }' >"$WORKDIR/queries.txt"
    # The two halves on their own, for runs that measure one path.
    grep 's3.amazonaws.com' "$WORKDIR/queries.txt" >"$WORKDIR/queries-redirect.txt"
    grep 'fwd.signpost.test' "$WORKDIR/queries.txt" >"$WORKDIR/queries-forward.txt"
    echo "probe.s3.amazonaws.com A" >"$WORKDIR/probe.txt"
    # DoH GET URIs: base64url (unpadded) wire-format queries, ID 0, RD set.
    perl "$LOAD_DIR/doh-uris.pl" "$WORKDIR/queries.txt" >"$WORKDIR/doh-uris.txt"
}

make_cert() {
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
        -subj "/CN=localhost" -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" \
        -keyout "$WORKDIR/key.pem" -out "$WORKDIR/cert.pem" >/dev/null 2>&1 ||
        die "openssl could not make a self-signed certificate"
}

# render TEMPLATE OUT NAME PORT [EXTRA_SED_ARGS...]
render() {
    local template=$1 out=$2 name=$3 port=$4
    shift 4
    sed -e "s|@WORKDIR@|$WORKDIR|g" -e "s|@NAME@|$name|g" -e "s|@PORT@|$port|g" \
        -e "s|@BACKEND_PORT@|$PORT_BACKEND|g" "$@" "$LOAD_DIR/$template" >"$out"
}

unbound_has_doh() { unbound -V 2>/dev/null | grep -q 'libnghttp2'; }

wanted() {
    [[ -z $LOAD_ONLY ]] && return 0
    [[ " $LOAD_ONLY " == *" $1 "* ]]
}

# ---------------------------------------------------------------------------
# Servers.
# ---------------------------------------------------------------------------

BACKEND_PID=""

# The backend of the forwarding runs: unbound with local data, on the client
# CPU (so it does not share the measured core); its CPU is reported apart.
start_backend() {
    [[ -n $BACKEND_PID ]] && return 0
    render unbound-localdata.conf "$WORKDIR/unbound-backend.conf" backend "$PORT_BACKEND"
    start unbound-backend "$CLIENT_CPU" unbound -d -c "$WORKDIR/unbound-backend.conf"
    BACKEND_PID=$STARTED_PID
    wait_udp "$PORT_BACKEND" || die "backend unbound did not answer (see $WORKDIR/unbound-backend.log)"
}

# measure_udp_once_up SERVER WORKLOAD PORT SECONDS WHY_NOT PID...: dnsperf over
# UDP (measure_dnsperf, PIDs' CPU time) once PORT answers within SECONDS
# (empty: wait_udp's default); otherwise a skipped row saying WHY_NOT.
measure_udp_once_up() {
    local server=$1 workload=$2 port=$3 seconds=$4 why_not=$5
    shift 5
    if wait_udp "$port" ${seconds:+"$seconds"}; then
        measure_dnsperf "$server" "$workload" udp "$port" "$@"
    else
        skip "$server" "$workload" udp "$why_not"
    fi
}

run_floor() {
    local mode=$1 port=$2 pid
    if [[ -z $FLOOR_BIN || ! -x $FLOOR_BIN ]]; then
        skip "floor $mode" "static A" udp "floor_responder not built"
        return 0
    fi
    start "floor-$mode" "$SERVER_CPU" "$FLOOR_BIN" "$ADDR:$port" "$mode"
    pid=$STARTED_PID
    measure_udp_once_up "floor $mode" "static A" "$port" "" "did not answer" "$pid"
    stop "$pid"
}

# The forwarding floor: floor_relay passing every query to the backend
# and every answer back with the least user-space work (no checks, no
# timers): what the kernel allows a batched forwarder, next to dnsdist's
# and the Signpost forwarders' uncached rows.
run_floor_relay() {
    local pid
    if [[ -z $RELAY_BIN || ! -x $RELAY_BIN ]]; then
        skip "floor relay" "forward, no cache" udp "floor_relay not built"
        return 0
    fi
    start_backend
    start floor-relay "$SERVER_CPU" "$RELAY_BIN" "$ADDR:$PORT_FLOOR_RELAY" "$ADDR:$PORT_BACKEND"
    pid=$STARTED_PID
    measure_udp_once_up "floor relay" "forward, no cache" "$PORT_FLOOR_RELAY" "" "did not answer" "$pid" \
        "$BACKEND_PID"
    stop "$pid"
}

UNBOUND_LOCAL_PID=""
UNBOUND_LOCAL_DOH=0

start_unbound_local() {
    [[ -n $UNBOUND_LOCAL_PID ]] && return 0
    local extra=()
    if unbound_has_doh; then
        UNBOUND_LOCAL_DOH=1
        extra=(-e 's|^#doh# ||' -e "s|@DOH_PORT@|$PORT_UNBOUND_LOCAL_DOH|g")
    fi
    render unbound-localdata.conf "$WORKDIR/unbound-local.conf" local "$PORT_UNBOUND_LOCAL" \
        "${extra[@]+"${extra[@]}"}"
    start unbound-local "$SERVER_CPU" unbound -d -c "$WORKDIR/unbound-local.conf"
    UNBOUND_LOCAL_PID=$STARTED_PID
    wait_udp "$PORT_UNBOUND_LOCAL" || die "unbound (local-data) did not answer (see $WORKDIR/unbound-local.log)"
}

stop_unbound_local() {
    [[ -n $UNBOUND_LOCAL_PID ]] || return 0
    stop "$UNBOUND_LOCAL_PID"
    UNBOUND_LOCAL_PID=""
}

# run_unbound_forward CACHE: CACHE is "no cache" (forward-no-cache: yes, every
# query goes to the backend) or "cache" (unbound's message cache answers repeats).
run_unbound_forward() {
    local cache=$1 pid no_cache=yes
    [[ $cache == cache ]] && no_cache=no
    start_backend
    render unbound-forward.conf "$WORKDIR/unbound-forward.conf" forward "$PORT_UNBOUND_FORWARD" \
        -e "s|forward-no-cache: yes|forward-no-cache: $no_cache|"
    start unbound-forward "$SERVER_CPU" unbound -d -c "$WORKDIR/unbound-forward.conf"
    pid=$STARTED_PID
    measure_udp_once_up "unbound" "forward, $cache" "$PORT_UNBOUND_FORWARD" "" "did not answer" "$pid" "$BACKEND_PID"
    stop "$pid"
}

# dnsdist_checked CONF: whether dnsdist reads CONF. A dnsdist 1.7 that
# cannot read its configuration starts all the same on its defaults:
# listening on 127.0.0.1:53 and asking the system's resolver (the one in
# /etc/resolv.conf, outside loopback) for its security status. So it is
# started only on a configuration it has just accepted.
dnsdist_checked() {
    dnsdist --check-config -C "$1" >>"$WORKDIR/dnsdist-check.log" 2>&1
}

# run_dnsdist CONFIG LABEL PORT
run_dnsdist() {
    local conf=$1 workload=$2 port=$3 pid
    start_backend
    render "$conf" "$WORKDIR/$conf" "${conf%.conf}" "$port"
    if ! dnsdist_checked "$WORKDIR/$conf"; then
        skip "dnsdist" "$workload" udp "rejects its configuration (see $WORKDIR/dnsdist-check.log)"
        return 0
    fi
    start "${conf%.conf}" "$SERVER_CPU" dnsdist --supervised --disable-syslog -C "$WORKDIR/$conf"
    pid=$STARTED_PID
    measure_udp_once_up "dnsdist" "$workload" "$port" "" "did not answer (see $WORKDIR/${conf%.conf}.log)" \
        "$pid" "$BACKEND_PID"
    stop "$pid"
}

run_dnsdist_doh() {
    local pid
    start_backend
    render dnsdist-doh.conf "$WORKDIR/dnsdist-doh.conf" dnsdist-doh "$PORT_DNSDIST_DOH_UDP" \
        -e "s|@DOH_PORT@|$PORT_DNSDIST_DOH|g"
    if ! dnsdist_checked "$WORKDIR/dnsdist-doh.conf"; then
        skip "dnsdist" "packet cache" doh "rejects its configuration (see $WORKDIR/dnsdist-check.log)"
        return 0
    fi
    start dnsdist-doh "$SERVER_CPU" dnsdist --supervised --disable-syslog -C "$WORKDIR/dnsdist-doh.conf"
    pid=$STARTED_PID
    if wait_udp "$PORT_DNSDIST_DOH_UDP" && wait_tcp "$PORT_DNSDIST_DOH"; then
        measure_h2load "dnsdist" "packet cache" "$PORT_DNSDIST_DOH" "$pid" "$BACKEND_PID"
    else
        skip "dnsdist" "packet cache" doh "did not start (see $WORKDIR/dnsdist-doh.log)"
    fi
    stop "$pid"
}

# ---------------------------------------------------------------------------
# Signpost hooks. Each runs only if its binary exists in $SIGNPOST_BIN_DIR
# (cargo build --release); otherwise the row is marked skipped.
# ---------------------------------------------------------------------------

# signpost-redirect: configured by environment (bins/redirect/default.toml):
# DNS_ADDRESS / DNS_PORT = where to listen, DNS_SERVER = upstream for names
# that are not redirected (the backend). DNS_SERVER must be set: without it
# the binary would take its upstreams from /etc/resolv.conf.
# Runs: redirected names only (answered locally) over UDP and TCP, then
# forwarded names only (5000 names: after the first pass, cache hits).
hook_signpost_redirect() {
    local bin="$SIGNPOST_BIN_DIR/signpost-redirect" pid
    if [[ ! -x $bin ]]; then
        skip "signpost-redirect" "redirect" udp "binary absent ($bin)"
        return 0
    fi
    start_backend
    start signpost-redirect "$SERVER_CPU" env DNS_ADDRESS="$ADDR" DNS_PORT="$PORT_SIGNPOST_REDIRECT" \
        DNS_SERVER="$ADDR:$PORT_BACKEND" "$bin"
    pid=$STARTED_PID
    if wait_udp "$PORT_SIGNPOST_REDIRECT" 10; then
        QUERIES="$WORKDIR/queries-redirect.txt" \
            measure_dnsperf "signpost-redirect" "redirected names" udp "$PORT_SIGNPOST_REDIRECT" "$pid" "$BACKEND_PID"
        QUERIES="$WORKDIR/queries-redirect.txt" \
            measure_dnsperf "signpost-redirect" "redirected names" tcp "$PORT_SIGNPOST_REDIRECT" "$pid" "$BACKEND_PID"
        QUERIES="$WORKDIR/queries-forward.txt" \
            measure_dnsperf "signpost-redirect" "forwarded names, cache" udp "$PORT_SIGNPOST_REDIRECT" "$pid" "$BACKEND_PID"
    else
        skip "signpost-redirect" "redirect" udp "did not answer (see $WORKDIR/signpost-redirect.log)"
    fi
    stop "$pid"
}

# signpost_configured NAME WORKLOAD TRANSPORT: whether NAME's binary and its
# config template NAME.toml.in are there; if not, a skipped row says which.
signpost_configured() {
    local bin="$SIGNPOST_BIN_DIR/$1" template="$1.toml.in"
    if [[ ! -x $bin ]]; then
        skip "$1" "$2" "$3" "binary absent ($bin)"
        return 1
    fi
    if [[ ! -f $LOAD_DIR/$template ]]; then
        skip "$1" "$2" "$3" "no $template config template"
        return 1
    fi
}

# start_signpost NAME PORT [EXTRA_SED_ARGS...]: render NAME.toml.in for PORT
# and start NAME --config with it on the server CPU (STARTED_PID).
start_signpost() {
    local name=$1 port=$2
    shift 2
    render "$name.toml.in" "$WORKDIR/$name.toml" "$name" "$port" "$@"
    start "$name" "$SERVER_CPU" "$SIGNPOST_BIN_DIR/$name" --config "$WORKDIR/$name.toml"
}

# signpost-forward --config FILE, rendered from signpost-forward.toml.in:
# everything forwarded, uncached, to the backend (like the unbound and
# dnsdist "forward, no cache" runs).
# A second run turns the cache on (next to dnsdist's packet-cache run): the
# query file's names repeat, so after the first pass they are cache hits.
hook_signpost_forward() {
    local pid
    signpost_configured signpost-forward "forward, no cache" udp || return 0
    start_backend
    local cache workload
    for cache in false true; do
        workload="forward, no cache"
        [[ $cache == true ]] && workload="forward, cache"
        start_signpost signpost-forward "$PORT_SIGNPOST_FORWARD" \
            -e "/^\[cache\]/,/^\[/ s/^enabled = .*/enabled = $cache/" \
            -e "s|@ADMIN_PORT@|$PORT_SIGNPOST_FORWARD_ADMIN|g"
        pid=$STARTED_PID
        METRICS_URL="http://127.0.0.1:$PORT_SIGNPOST_FORWARD_ADMIN/metrics" \
            measure_udp_once_up "signpost-forward" "$workload" "$PORT_SIGNPOST_FORWARD" 10 \
            "did not answer (see $WORKDIR/signpost-forward.log)" "$pid" "$BACKEND_PID"
        stop "$pid"
    done
}

# signpost-endpoint --config FILE, rendered from signpost-endpoint.toml.in:
# a UDP listener on @PORT@ and a DoH listener on @DOH_PORT@ (path
# /dns-query, @WORKDIR@/cert.pem and key.pem), the backend as upstream.
hook_signpost_endpoint() {
    local pid
    signpost_configured signpost-endpoint endpoint "udp+doh" || return 0
    start_backend
    start_signpost signpost-endpoint "$PORT_SIGNPOST_ENDPOINT" -e "s|@DOH_PORT@|$PORT_SIGNPOST_ENDPOINT_DOH|g"
    pid=$STARTED_PID
    measure_udp_once_up "signpost-endpoint" "endpoint" "$PORT_SIGNPOST_ENDPOINT" 10 \
        "did not answer (see $WORKDIR/signpost-endpoint.log)" "$pid" "$BACKEND_PID"
    if wait_tcp "$PORT_SIGNPOST_ENDPOINT_DOH" 5; then
        measure_h2load "signpost-endpoint" "endpoint" "$PORT_SIGNPOST_ENDPOINT_DOH" "$pid" "$BACKEND_PID"
    else
        skip "signpost-endpoint" "endpoint" doh "no DoH listener"
    fi
    stop "$pid"
}

# ---------------------------------------------------------------------------
# Report.
# ---------------------------------------------------------------------------

report() {
    local raw="$WORKDIR/results.tsv" tsv="$WORKDIR/medians.tsv" floor_qpc
    [[ -s $raw ]] || {
        warn "no results"
        return 0
    }
    medians "$raw" >"$tsv"
    # Queries per busy server core of the batched floor, for the ratio column.
    floor_qpc=$(awk -F'\t' '$1 == "floor batched" && $5 + 0 > 0 { printf "%.0f", $6 / $5 }' "$tsv")
    awk -F'\t' -v floor="${floor_qpc:-0}" -v secs="$LOAD_SECONDS" -v rate="$LOAD_P99_QPS" \
        -v md="$RESULTS.tmp" -v rounds="$LOAD_ROUNDS" -v when="$(date -u '+%Y-%m-%d %H:%M UTC')" \
        -v host="$(uname -srm), $(nproc --all) CPUs" '
        function k(x) { return sprintf("%.1fk", x / 1000) }
        BEGIN {
            hdr[1] = "server"; hdr[2] = "workload"; hdr[3] = "transport"; hdr[4] = "QPS";
            hdr[5] = "server CPU s"; hdr[6] = "q / busy core s"; hdr[7] = "vs floor";
            hdr[8] = "p99 @" k(rate) " (ms)"; hdr[9] = "notes"
        }
        {
            row[NR, 1] = $1; row[NR, 2] = $2; row[NR, 3] = $3;
            row[NR, 4] = $4 == "-" ? "-" : k($4);
            row[NR, 5] = $5;
            if ($5 != "-" && $5 + 0 > 0) {
                qpc = $6 / $5; row[NR, 6] = k(qpc);
                row[NR, 7] = floor > 0 ? sprintf("%.2f", qpc / floor) : "n/a"
            } else { row[NR, 6] = "-"; row[NR, 7] = "-" }
            row[NR, 8] = $7; row[NR, 9] = $8; n = NR
        }
        END {
            for (c = 1; c <= 8; c++) { w[c] = length(hdr[c]);
                for (r = 1; r <= n; r++) if (length(row[r, c]) > w[c]) w[c] = length(row[r, c]) }
            line = ""; for (c = 1; c <= 8; c++) line = line sprintf("%-*s  ", w[c], hdr[c]);
            print line hdr[9];
            for (r = 1; r <= n; r++) { line = "";
                for (c = 1; c <= 8; c++) line = line sprintf(c >= 4 && c <= 8 ? "%*s  " : "%-*s  ", w[c], row[r, c]);
                print line row[r, 9] }
            printf "# DNS load results\n\n" > md;
            printf "%s; %s; %ss per run; %d round(s); servers on CPU 1, load on CPU 0.\n\n", when, host, secs, rounds > md;
            printf "Queries per busy server core = answered queries / server CPU seconds " > md;
            printf "(utime+stime from /proc/PID/stat). p99 measured in a separate run at %d QPS.\n\n", rate > md;
            line = "|"; sep = "|";
            for (c = 1; c <= 9; c++) { line = line " " hdr[c] " |"; sep = sep (c >= 4 && c <= 8 ? " ---: |" : " --- |") }
            print line > md; print sep > md;
            for (r = 1; r <= n; r++) { line = "|";
                for (c = 1; c <= 9; c++) line = line " " row[r, c] " |";
                print line > md }
        }' "$tsv"
    ratios "$raw" >>"$RESULTS.tmp"
    mkdir -p "$(dirname "$RESULTS")"
    mv "$RESULTS.tmp" "$RESULTS"
    log "results written to $RESULTS"
}

# The comparisons the issues set goals for: "signpost row / peer row" in
# queries per busy server core (higher is better) and in p99 at the fixed
# rate (lower is better). Each line: ours | peer | goal (q/core ratio, or
# "-" for a comparison shown for reference only).
GOALS=(
    "signpost-redirect|redirected names|udp;unbound|local-data|udp;1.2"
    "signpost-redirect|redirected names|udp;floor batched|static A|udp;0.9"
    "signpost-redirect|redirected names|tcp;unbound|local-data|tcp;1.5"
    "signpost-redirect|forwarded names, cache|udp;dnsdist|packet cache|udp;1.0"
    "signpost-forward|forward, no cache|udp;dnsdist|forward, no cache|udp;1.2"
    "signpost-forward|forward, no cache|udp;unbound|forward, no cache|udp;2.0"
    "signpost-forward|forward, cache|udp;unbound|forward, cache|udp;1.2"
    "signpost-forward|forward, cache|udp;floor batched|static A|udp;0.9"
    "signpost-endpoint|endpoint|udp;dnsdist|packet cache|udp;1.0"
    "signpost-endpoint|endpoint|doh;dnsdist|packet cache|doh;1.2"
    # No goal ("-"), for reference: how close each forwarder comes to the
    # forwarding floor (floor_relay), which does no work a forwarder must.
    "signpost-forward|forward, no cache|udp;floor relay|forward, no cache|udp;-"
    "dnsdist|forward, no cache|udp;floor relay|forward, no cache|udp;-"
)

# ratios TSV: markdown table of the GOALS comparisons present in TSV (also
# on stderr). Each ratio is taken within a round (ours and the peer measured
# minutes apart) and the table gives the median over the rounds, and every
# round's ratio when there are several. Three decimals: a ratio of 1.198
# must not read as a goal of 1.2 met.
ratios() {
    local tsv=$1 goal ours peer target
    printf '\n## Ratios against the peers\n\n'
    printf '| ours | peer | q/core ratio | goal | p99 ratio (lower is better) | per round |\n'
    printf '| --- | --- | ---: | ---: | ---: | --- |\n'
    # Written to stderr by the shell, not `tee /dev/stderr`: reopening
    # /dev/stderr truncates a log file that stderr is redirected to.
    local rows
    rows=$(for goal in "${GOALS[@]}"; do
        IFS=';' read -r ours peer target <<<"$goal"
        awk -F'\t' -v ours="$ours" -v peer="$peer" -v target="$target" -v rounds="$LOAD_ROUNDS" '
            function median(a, m,    i, j, t) {
                for (i = 2; i <= m; i++)
                    for (j = i; j > 1 && a[j - 1] > a[j]; j--) { t = a[j]; a[j] = a[j - 1]; a[j - 1] = t }
                return m % 2 ? a[(m + 1) / 2] : (a[m / 2] + a[m / 2 + 1]) / 2
            }
            { key = $1 "|" $2 "|" $3 }
            key == ours && $5 + 0 > 0 { oq[$9] = $6 / $5; op[$9] = $7 }
            key == peer && $5 + 0 > 0 { pq[$9] = $6 / $5; pp[$9] = $7 }
            END {
                n = 0; np = 0; listed = ""
                for (r = 1; r <= rounds; r++) {
                    if (!(r in oq) || !(r in pq)) continue
                    q[++n] = oq[r] / pq[r]
                    listed = listed (listed == "" ? "" : ", ") sprintf("%.3f", q[n])
                    if (op[r] + 0 > 0 && pp[r] + 0 > 0) p[++np] = op[r] / pp[r]
                }
                if (n == 0) exit
                ratio = median(q, n)
                p99 = np ? sprintf("%.2f", median(p, np)) : "-"
                goal = target == "-" ? "- (reference)" : sprintf("%.1f (%s)", target, ratio >= target ? "met" : "missed")
                gsub(/\|/, " / ", ours); gsub(/\|/, " / ", peer)
                printf "| %s | %s | %.3f | %s | %s | %s |\n", ours, peer, ratio, goal, p99, (n > 1 ? listed : "-")
            }' "$tsv"
    done)
    [[ -z $rows ]] || printf '%s\n' "$rows" >&2
    [[ -z $rows ]] || printf '%s\n' "$rows"
}

# ---------------------------------------------------------------------------
# Main.
# ---------------------------------------------------------------------------

main() {
    check_tools
    WORKDIR=$(mktemp -d /tmp/signpost-load.XXXXXX)
    : >"$WORKDIR/results.tsv"
    log "workdir $WORKDIR; ${LOAD_SECONDS}s per run; servers on CPU $SERVER_CPU, load on CPU $CLIENT_CPU"
    local load
    load=$(cut -d' ' -f1 /proc/loadavg)
    if awk -v l="$load" 'BEGIN { exit !(l > 0.5) }'; then
        warn "load average is $load: other work on this machine will skew the numbers"
    fi

    make_queries
    make_cert

    FLOOR_BIN=${FLOOR_BIN:-}
    RELAY_BIN=${RELAY_BIN:-}
    if [[ -z $RELAY_BIN && -n $FLOOR_BIN && -x $(dirname "$FLOOR_BIN")/floor_relay ]]; then
        RELAY_BIN=$(dirname "$FLOOR_BIN")/floor_relay
    fi
    if { [[ -z $FLOOR_BIN ]] && { wanted floor-simple || wanted floor-batched; }; } ||
        { [[ -z $RELAY_BIN ]] && wanted floor-relay; }; then
        if command -v cargo >/dev/null 2>&1; then
            log "building floor_responder and floor_relay (cargo build --release)"
            local built="${CARGO_TARGET_DIR:-$REPO/target}/release"
            if (cd "$REPO" && cargo build --release -q -p signpost-benches --bin floor_responder \
                --bin floor_relay) >&2; then
                :
            elif [[ -x $built/floor_responder ]]; then
                warn "the floors did not build; using the existing binaries in $built"
            else
                warn "the floors did not build; floor rows skipped"
            fi
            [[ -z $FLOOR_BIN && -x $built/floor_responder ]] && FLOOR_BIN=$built/floor_responder
            [[ -z $RELAY_BIN && -x $built/floor_relay ]] && RELAY_BIN=$built/floor_relay
        else
            warn "cargo not found; set FLOOR_BIN and RELAY_BIN to built floor binaries"
        fi
    fi

    for ((ROUND = 1; ROUND <= LOAD_ROUNDS; ROUND++)); do
        ((LOAD_ROUNDS == 1)) || log "round $ROUND of $LOAD_ROUNDS"
        # 1. The kernel floor: bare UDP responder, simple then batched.
        wanted floor-simple && run_floor simple "$PORT_FLOOR_SIMPLE"
        wanted floor-batched && run_floor batched "$PORT_FLOOR_BATCHED"

        # 2. unbound answering from local-data.
        if wanted unbound-local; then
            start_unbound_local
            measure_dnsperf "unbound" "local-data" udp "$PORT_UNBOUND_LOCAL" "$UNBOUND_LOCAL_PID"
        fi

        # 3. unbound forwarding to the backend, without then with its cache.
        wanted unbound-forward && run_unbound_forward "no cache"
        wanted unbound-forward-cache && run_unbound_forward cache

        # 4. dnsdist forwarding to the same backend, without then with packet cache;
        #    then the forwarding floor (floor_relay) to the same backend.
        wanted dnsdist-nocache && run_dnsdist dnsdist-nocache.conf "forward, no cache" "$PORT_DNSDIST_NOCACHE"
        wanted dnsdist-cache && run_dnsdist dnsdist-cache.conf "packet cache" "$PORT_DNSDIST_CACHE"
        wanted floor-relay && run_floor_relay

        # 5. unbound local-data over TCP.
        if wanted unbound-tcp; then
            start_unbound_local
            measure_dnsperf "unbound" "local-data" tcp "$PORT_UNBOUND_LOCAL" "$UNBOUND_LOCAL_PID"
        fi

        # 6. DoH: dnsdist's frontend (packet cache), then unbound's own listener.
        wanted dnsdist-doh && run_dnsdist_doh
        if wanted unbound-doh; then
            start_unbound_local
            if ((UNBOUND_LOCAL_DOH)) && wait_tcp "$PORT_UNBOUND_LOCAL_DOH" 5; then
                measure_h2load "unbound" "local-data" "$PORT_UNBOUND_LOCAL_DOH" "$UNBOUND_LOCAL_PID"
            else
                skip "unbound" "local-data" doh "unbound built without libnghttp2 (see unbound -V)"
            fi
        fi
        stop_unbound_local

        # 7. Signpost servers (hooks; skipped while the binaries are absent).
        wanted signpost-redirect && hook_signpost_redirect
        wanted signpost-forward && hook_signpost_forward
        wanted signpost-endpoint && hook_signpost_endpoint
    done

    report
}

main "$@"
