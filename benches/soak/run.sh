#!/usr/bin/env bash
# Soak test: one of the three binaries (SOAK_BINARY) under steady dnsperf load for a long time,
# with a configuration reload every minute. Mixes local answers, cached
# and freshly forwarded names and NXDOMAIN. Reports answers lost, the
# error rate, resident memory after warm-up against the end (drift), and
# open file descriptors.
#
# Loopback only: the upstream is an unbound on 127.0.0.1 answering from
# local data (nothing is ever sent elsewhere; signpost-forward's "." zone
# names it, so resolv.conf is never read). Bounded in time (SOAK_SECONDS,
# plus a hard `timeout`) and in count (dnsperf -n). Every process started
# here is stopped on exit.
#
# Environment:
#   SOAK_BINARY      forward (default), redirect or endpoint
#   SOAK_SECONDS     length of the load (default 1800; CI's short run: 120)
#   SOAK_QPS         dnsperf's rate (default 5000: about half of what
#                    signpost-forward answers on one busy core forwarding,
#                    benches/load/results.md; set it from your own figure)
#   SOAK_RELOAD      seconds between SIGHUP reloads (default 60)
#   SOAK_SAMPLE      seconds between RSS/fd samples (default 5)
#   SOAK_PORT        first of three ports used: DNS, the upstream, the admin
#                    API whose /metrics is sampled (default 26300)
#   SOAK_MAX_DRIFT   allowed RSS growth after warm-up, percent (default 10):
#                    the peak over one reload cycle after warm-up against
#                    the peak over the last cycle. A reload empties the
#                    cache, so RSS rises and falls within each cycle; two
#                    single samples taken at different points of it differ
#                    by more than 10 % with nothing leaking.
#   SIGNPOST_BIN     the binary (default <repo>/target/release/signpost-$SOAK_BINARY,
#                    built when missing)
#   SOAK_KEEP        1 = keep the work directory
# Output: a summary on stdout (also in $WORK/summary.txt) and a CSV of
# samples (seconds, rss_kb, fds). Exit status 1 when answers were lost, the
# drift is over SOAK_MAX_DRIFT or descriptors grew.

set -euo pipefail
SOAK_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$SOAK_DIR/../.." && pwd)
SOAK_SECONDS=${SOAK_SECONDS:-1800}
SOAK_QPS=${SOAK_QPS:-5000}
SOAK_RELOAD=${SOAK_RELOAD:-60}
SOAK_SAMPLE=${SOAK_SAMPLE:-5}
SOAK_PORT=${SOAK_PORT:-26300}
SOAK_MAX_DRIFT=${SOAK_MAX_DRIFT:-10}
SOAK_KEEP=${SOAK_KEEP:-0}
SOAK_BINARY=${SOAK_BINARY:-forward}
case "$SOAK_BINARY" in
    forward | redirect | endpoint) ;;
    *) echo "soak: SOAK_BINARY must be forward, redirect or endpoint, not $SOAK_BINARY" >&2; exit 2 ;;
esac
SIGNPOST_BIN=${SIGNPOST_BIN:-$REPO/target/release/signpost-$SOAK_BINARY}
PORT=$SOAK_PORT
UPSTREAM_PORT=$((SOAK_PORT + 1))
ADMIN=127.0.0.1:$((SOAK_PORT + 2))

for tool in dnsperf unbound; do
    command -v "$tool" >/dev/null || { echo "soak: $tool is not installed (apt-get install dnsperf unbound)" >&2; exit 2; }
done
if [ ! -x "$SIGNPOST_BIN" ]; then
    (cd "$REPO" && cargo build --release -p "signpost-$SOAK_BINARY")
fi

WORK=$(mktemp -d /tmp/signpost-soak.XXXXXX)
PIDS=()
cleanup() {
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
    if [ "$SOAK_KEEP" = 1 ]; then echo "soak: work directory kept: $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT

# The upstream: names under up.test answer A (TTL 5 s, so cached answers
# expire and are forwarded again during the run); nx-* names are NXDOMAIN.
cat > "$WORK/unbound.conf" <<CONF
server:
    interface: 127.0.0.1@$UPSTREAM_PORT
    do-daemonize: no
    use-syslog: no
    logfile: ""
    username: ""
    chroot: ""
    directory: "$WORK"
    pidfile: ""
    access-control: 127.0.0.0/8 allow
    num-threads: 1
    local-zone: "." refuse
    local-zone: "up.test." redirect
    local-data: "up.test. 5 IN A 192.0.2.10"
    local-zone: "nx.up.test." always_nxdomain
CONF
# Careful: with a redirect zone every name under up.test answers; nx.up.test is carved out.

# Where the server listens and where dnsperf and dig send from: an
# endpoint's VPC resolver answers only clients inside its VPC's CIDR.
SERVER=127.0.0.1
CLIENT=127.0.0.1
[ "$SOAK_BINARY" = endpoint ] && SERVER=127.0.1.2 && CLIENT=127.0.1.1
# The redirect proxy reads resolv.conf for nothing when given servers; a
# loopback one keeps it that way should that change.
echo "nameserver 127.0.0.1" > "$WORK/resolv.conf"

# The local answers (lab.test; for the redirect proxy the redirected
# localhost.localstack.cloud) change at each reload: www answers ADDRESS.
# The configurations are signpost-$SOAK_BINARY.toml.in beside this script.
write_config() { # write_config ADDRESS
    sed -e "s|@PORT@|$PORT|g" -e "s|@UPSTREAM_PORT@|$UPSTREAM_PORT|g" -e "s|@ADMIN@|$ADMIN|g" \
        -e "s|@ADDRESS@|$1|g" -e "s|@WORK@|$WORK|g" "$SOAK_DIR/signpost-$SOAK_BINARY.toml.in" > "$WORK/signpost.toml"
}
write_config 10.0.0.1

# Queries: 25 % local, 25 % a small set that stays cached, 40 % many
# distinct forwarded names (cached 5 s, then forwarded again), 10 % NXDOMAIN.
python3 - "$WORK/queries.txt" "$SOAK_BINARY" <<'PY'
import random, sys
random.seed(17)
local = "localhost.localstack.cloud" if sys.argv[2] == "redirect" else "lab.test"
# The redirect proxy forwards other types of redirected names (as LocalStack
# does), and the upstream refuses those: it is asked AAAA instead of TXT.
other = "AAAA" if sys.argv[2] == "redirect" else "TXT"
lines = []
for i in range(100_000):
    r = random.random()
    if r < 0.25:
        lines.append(random.choice([f"www.{local} A", f"mail.{local} A", f"t{i % 500}.{local} {other}"]))
    elif r < 0.50:
        lines.append(f"hot{i % 50}.up.test A")
    elif r < 0.90:
        lines.append(f"n{i % 40000}.up.test A")
    else:
        lines.append(f"q{i % 5000}.nx.up.test A")
open(sys.argv[1], "w").write("\n".join(lines) + "\n")
PY

# What each binary prints once it serves.
READY='^ready'
[ "$SOAK_BINARY" = redirect ] && READY='^Starting DNS servers'
unbound -d -c "$WORK/unbound.conf" >"$WORK/unbound.log" 2>&1 &
PIDS+=($!)
# The redirect proxy takes its admin address from the environment (its
# TOML has no [admin] of its own).
SIGNPOST_ADMIN=$ADMIN "$SIGNPOST_BIN" --config "$WORK/signpost.toml" >"$WORK/signpost.log" 2>&1 &
SIGNPOST_PID=$!
PIDS+=("$SIGNPOST_PID")
for _ in $(seq 100); do
    grep -Eq "$READY" "$WORK/signpost.log" 2>/dev/null && break
    sleep 0.1
done
grep -Eq "$READY" "$WORK/signpost.log" || { echo "soak: signpost-$SOAK_BINARY did not start"; cat "$WORK/signpost.log"; exit 1; }
dig +short +time=1 +tries=3 -b "$CLIENT" -p "$PORT" @"$SERVER" probe.up.test A | grep -q 192.0.2.10 \
    || { echo "soak: the upstream does not answer through signpost"; exit 1; }

# One sample: seconds since start, RSS in kB, open descriptors, threads,
# the part of RSS in transparent huge pages (khugepaged folds a 2 MiB range
# with a single page in use into a whole huge page: RSS then steps up
# without the process allocating anything), and from /metrics what could hold memory: cache entries and the
# queries in flight upstream (empty when the scrape fails). Memory that
# grows with neither is the allocator's or a leak.
metric() { # metric NAME: the sum of NAME's samples in $WORK/metrics.txt
    awk -v name="$1" '$1 == name || index($1, name "{") == 1 {sum += $NF; seen = 1} END {if (seen) printf "%d", sum}' "$WORK/metrics.txt"
}
sample() {
    local rss fds threads huge
    rss=$(awk '/^VmRSS:/ {print $2}' "/proc/$SIGNPOST_PID/status")
    huge=$(awk '/^AnonHugePages:/ {print $2}' "/proc/$SIGNPOST_PID/smaps_rollup" 2>/dev/null)
    threads=$(awk '/^Threads:/ {print $2}' "/proc/$SIGNPOST_PID/status")
    fds=$(find "/proc/$SIGNPOST_PID/fd" -mindepth 1 -maxdepth 1 | wc -l)
    curl -s --max-time 1 "http://$ADMIN/metrics" > "$WORK/metrics.txt" || : > "$WORK/metrics.txt"
    echo "$1,$rss,$fds,$threads,$huge,$(metric signpost_cache_entries),$(metric signpost_upstream_in_flight)"
}
echo "seconds,rss_kb,fds,threads,huge_pages_kb,cache_entries,upstream_in_flight" > "$WORK/samples.csv"

# dnsperf: rate-limited, bounded in time and in passes over the file.
timeout $((SOAK_SECONDS + 60)) dnsperf -s "$SERVER" -a "$CLIENT" -p "$PORT" -d "$WORK/queries.txt" \
    -l "$SOAK_SECONDS" -Q "$SOAK_QPS" -n 1000 -c 4 -q 500 -t 5 >"$WORK/dnsperf.txt" 2>&1 &
DNSPERF_PID=$!
PIDS+=("$DNSPERF_PID")
started=$(date +%s)
next_reload=$SOAK_RELOAD
reloads=0
while kill -0 "$DNSPERF_PID" 2>/dev/null; do
    sleep "$SOAK_SAMPLE"
    now=$(($(date +%s) - started))
    sample "$now" >> "$WORK/samples.csv"
    if [ "$now" -ge "$next_reload" ]; then
        write_config "10.0.0.$((reloads % 200 + 3))"
        kill -HUP "$SIGNPOST_PID"
        reloads=$((reloads + 1))
        next_reload=$((next_reload + SOAK_RELOAD))
    fi
done
wait "$DNSPERF_PID" || true
final_address="10.0.0.$(((reloads - 1) % 200 + 3))"
[ "$reloads" -eq 0 ] && final_address=10.0.0.1
local_www=www.lab.test
[ "$SOAK_BINARY" = redirect ] && local_www=www.localhost.localstack.cloud
# The last SIGHUP may have gone out just before dnsperf ended: give that
# reload up to five seconds to take effect before judging it.
reloaded_ok=
for _ in $(seq 10); do
    reloaded_ok=$(dig +short +time=1 +tries=3 -b "$CLIENT" -p "$PORT" @"$SERVER" "$local_www" A)
    [ "$reloaded_ok" = "$final_address" ] && break
    sleep 0.5
done

python3 - "$WORK" "$SOAK_MAX_DRIFT" "$reloads" "$final_address" "$reloaded_ok" "$SOAK_SECONDS" "$SOAK_QPS" "$SOAK_BINARY" \
    "$SOAK_RELOAD" "$SOAK_SAMPLE" <<'PY' | tee "$WORK/summary.txt"
import csv, re, sys
work, max_drift, reloads, expected, seen, seconds, qps, binary, reload_every, sample_every = sys.argv[1:11]
text = open(f"{work}/dnsperf.txt").read()
def grab(pattern, default="0"):
    m = re.search(pattern, text)
    return m.group(1) if m else default
sent, completed, lost = int(grab(r"Queries sent:\s+(\d+)")), int(grab(r"Queries completed:\s+(\d+)")), int(grab(r"Queries lost:\s+(\d+)"))
codes = dict((c, int(n)) for c, n in re.findall(r"([A-Z]+) (\d+) \(", grab(r"Response codes:\s+(.*)", "")))
rows = [(int(r[0]), int(r[1]), int(r[2])) for r in list(csv.reader(open(f"{work}/samples.csv")))[1:]]
warm = [r for r in rows if r[0] >= max(int(seconds) // 5, 10)] or rows
# Peak against peak, each over one reload cycle (at least two samples): the
# cycle's cache fill makes any one sample a matter of timing.
cycle = max(int(reload_every), 2 * int(sample_every))
first = [r for r in warm if r[0] < warm[0][0] + cycle] or warm[:1]
last = [r for r in warm if r[0] > warm[-1][0] - cycle] or warm[-1:]
rss_warm, rss_end = max(r[1] for r in first), max(r[1] for r in last)
drift = 100.0 * (rss_end - rss_warm) / rss_warm if rss_warm else 0.0
fds = [r[2] for r in warm]
errors = sum(n for c, n in codes.items() if c not in ("NOERROR", "NXDOMAIN"))
print(f"soak: signpost-{binary}, {seconds} s at {qps} qps, {reloads} reloads (last one served: {seen or 'nothing'}, expected {expected})")
print(f"queries: {sent} sent, {completed} answered, {lost} lost; response codes {codes}; errors {errors}")
print(f"RSS: peak {rss_warm} kB in the first {cycle} s after warm-up, {rss_end} kB in the last {cycle} s, drift {drift:+.1f} % (max {max(r[1] for r in rows)} kB)")
print(f"descriptors: {min(fds)}..{max(fds)} after warm-up, {rows[-1][2]} at the end")
extra = [r for r in list(csv.reader(open(f"{work}/samples.csv")))[1:] if len(r) >= 7]
def spread(column):
    values = [int(r[column]) for r in extra if r[column]]
    return f"{min(values)}..{max(values)}" if values else "not scraped"
print(f"threads {spread(3)}; transparent huge pages {spread(4)} kB; cache entries {spread(5)}; upstream queries in flight {spread(6)}")
ok = lost == 0 and errors == 0 and drift <= float(max_drift) and max(fds) - min(fds) <= 2 and seen == expected
print("soak: PASS" if ok else "soak: FAIL")
sys.exit(0 if ok else 1)
PY
