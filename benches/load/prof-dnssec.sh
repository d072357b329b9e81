#!/usr/bin/env bash
# Instructions per validated answer of a validating forwarder, from
# callgrind, cache cold and warm. Knot serves the signed test hierarchy of
# crates/dnssec/tests/zones (root, test., nsec.test. signed with Ed25519) on
# loopback; the server under test forwards "." to it with the root's DS as
# its trust anchor (the same unbound.conf for both servers: signpost-forward
# reads it with --unbound-conf). The names asked are x<N>.wild.nsec.test TXT:
# each is a distinct wildcard answer whose RRSIG and NSEC proof (no closer
# name) must be validated afresh, while the DNSKEY/DS chain is the same.
#
#   warm-up  500 other wildcard names: the DNSKEY/DS chain is validated and cached
#   cold     QUERIES distinct names: one upstream query and one validation each
#   warm     the same QUERIES names again: answers from the cache
#
# callgrind's counters are zeroed before and dumped after each of the two
# runs; the script prints Ir / answered query for each, and checks that every
# answer is NOERROR (dnsperf's rcode count) and that a sample of names,
# asked with DO, get AD. Instruction counts do not depend on other load on
# the machine, unlike CPU seconds. Unbound runs with aggressive-nsec: no, so
# both servers do one validation per cold name (signpost-forward binaries
# with RFC 8198 support could otherwise answer from a cached proof).
#
# Usage: benches/load/prof-dnssec.sh signpost|unbound [QUERIES]
# Environment:
#   SIGNPOST_BIN     signpost-forward binary (default target/release/signpost-forward)
#   PROF_PORT_BASE   first of the two loopback ports used (default 26720)
#   PROF_OUTSTANDING dnsperf -q (default 32)
#   PROF_KEEP        1 = keep the temp dir (callgrind output, logs)
# Needs valgrind, dnsperf, knotd, dig (and unbound for the unbound run).
# Loopback only; every process started here is stopped on exit.
set -euo pipefail
LOAD_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=benches/load/prof-common.sh
source "$LOAD_DIR/prof-common.sh"
ZONES=$REPO/crates/dnssec/tests/zones
server=${1:?usage: prof-dnssec.sh signpost|unbound [QUERIES]}
queries=${2:-2000}
base=${PROF_PORT_BASE:-26720}
knot_port=$base
port=$((base + 1))

for i in $(seq 1 "$queries"); do echo "x$i.wild.nsec.test TXT"; done >"$work/names"
for i in $(seq 1 500); do echo "w$i.wild.nsec.test TXT"; done >"$work/warmup"

# The authoritative side: the pre-signed zones, as .ci/interop's dnssec section serves them.
mkdir -p "$work/knot"
{
    printf 'server:\n  listen: 127.0.0.1@%s\n  rundir: %s\n' "$knot_port" "$work/knot"
    printf 'database:\n  storage: %s\n' "$work/knot"
    printf 'template:\n  - id: default\n    storage: %s\n    zonefile-sync: -1\n' "$ZONES"
    printf '    journal-content: none\n    semantic-checks: off\n'
    printf 'zone:\n  - domain: "."\n    file: root.zone.signed\n'
    printf '  - domain: "test."\n    file: test.zone.signed\n'
    printf '  - domain: "nsec.test."\n    file: nsec.test.zone.signed\n'
} >"$work/knot.conf"
taskset -c 0 knotd -c "$work/knot.conf" >"$work/knot.log" 2>&1 &
pids+=($!)
for _ in $(seq 1 50); do
    dig +time=1 +tries=1 @127.0.0.1 -p "$knot_port" nsec.test. SOA 2>/dev/null | grep -q 'status: NOERROR' && break
    sleep 0.2
done

# One configuration for both validators: one thread, the root's DS as the
# anchor, everything forwarded to Knot on loopback.
cat >"$work/server.conf" <<EOF
server:
  interface: 127.0.0.1@$port
  do-ip6: no
  do-daemonize: no
  username: ""
  chroot: ""
  directory: "$work"
  pidfile: ""
  use-syslog: no
  verbosity: 0
  num-threads: 1
  access-control: 127.0.0.0/8 allow
  do-not-query-localhost: no
  module-config: "validator iterator"
  trust-anchor-file: "$ZONES/anchor.key"
  local-zone: "test." nodefault
  msg-cache-size: 64m
  rrset-cache-size: 64m
remote-control:
  control-enable: no
forward-zone:
  name: "."
  forward-addr: 127.0.0.1@$knot_port
EOF

case $server in
signpost)
    command=("$SIGNPOST_BIN" --unbound-conf "$work/server.conf")
    ;;
unbound)
    # Not an option signpost-forward reads, so only unbound's copy has it.
    sed -i 's/^  module-config:/  aggressive-nsec: no\n&/' "$work/server.conf"
    unbound-checkconf "$work/server.conf" >/dev/null
    command=(unbound -d -c "$work/server.conf")
    ;;
*) echo "unknown server $server" >&2; exit 2 ;;
esac

start_under_callgrind "${command[@]}"
# Up and validating.
wait_answering +dnssec +time=5 www.nsec.test A ||
    { echo "$server did not answer www.nsec.test" >&2; cat "$work/server.log" >&2; exit 1; }

load() {
    timeout 900 taskset -c 0 dnsperf -D -s 127.0.0.1 -p "$port" -d "$1" -n 1 -c 1 -q "$outstanding" -t 10 \
        >"$2" 2>&1
}
# measure NAME FILE: zero the counters, send FILE once, dump, print Ir per answer.
measure() {
    callgrind_control --zero "$server_pid" >/dev/null 2>&1
    load "$2" "$work/$1.out"
    callgrind_control --dump "$server_pid" >/dev/null 2>&1
    sleep 1
    # This run's dump (callgrind.PID.N), apart from the other run's.
    mkdir "$work/$1"
    mv "$work"/callgrind.*.* "$work/$1/"
    local answered lost noerror instructions
    answered=$(sed -n 's/^ *Queries completed: *\([0-9]*\).*/\1/p' "$work/$1.out")
    lost=$(sed -n 's/^ *Queries lost: *\([0-9]*\).*/\1/p' "$work/$1.out")
    noerror=$(sed -n 's/^ *Response codes: .*NOERROR \([0-9]*\).*/\1/p' "$work/$1.out")
    instructions=$(callgrind_total "$work/$1"/callgrind.*)
    echo "$server $1: $instructions instructions, $answered answered (${noerror:-0} NOERROR), $lost lost:" \
        "$((instructions / answered)) instructions per answered query"
    if [[ ${PROF_KEEP:-0} == 1 ]]; then
        callgrind_annotate --inclusive=no "$(ls "$work/$1"/callgrind.* | head -1)" 2>/dev/null |
            head -60 >"$work/$1.annotate.txt" || true
    fi
}
load "$work/warmup" "$work/warmup.out"
measure cold "$work/names"
measure warm "$work/names"

# Every answer validated: a sample of the measured names, asked with DO, is
# NOERROR with AD (outside the measured windows).
secure=0
sample=0
while read -r name qtype; do
    sample=$((sample + 1))
    answer=$(dig +dnssec +time=5 +tries=2 +noall +comments -p "$port" @127.0.0.1 "$name" "$qtype" || true)
    if grep -q 'status: NOERROR' <<<"$answer" && grep -Eq '^;; flags:[a-z ]* ad[ ;]' <<<"$answer"; then
        secure=$((secure + 1))
    fi
done < <(awk 'NR % 100 == 1' "$work/names")
echo "$server: $secure of $sample sampled answers NOERROR with AD"
