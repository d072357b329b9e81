#!/usr/bin/env bash
# Instructions per iteration of the codec workloads, from callgrind: for each
# library and workload, (Ir with N iterations − Ir with 0) / N. Instruction
# counts do not depend on other load on the machine, unlike criterion's times.
#
# Usage: benches/prof.sh [N] [LIBRARIES] [WORKLOADS]
#   defaults: N=20000, LIBRARIES="signpost domain", WORKLOADS="route walk build redirect"
# Needs valgrind; builds target/release/prof first.
set -euo pipefail
cd "$(dirname "$0")/.."
iterations=${1:-20000}
libraries=${2:-"signpost domain"}
workloads=${3:-"route walk build redirect"}
cargo build --release --quiet -p signpost-benches --bin prof
prof=target/release/prof
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

instructions() {
    valgrind --tool=callgrind --callgrind-out-file="$out/cg" "$prof" "$@" >/dev/null 2>"$out/log" \
        || { cat "$out/log" >&2; exit 1; }
    sed -n 's/^summary: //p' "$out/cg"
}

printf '%-10s' workload
for library in $libraries; do printf '%12s' "$library"; done
printf '\n'
for workload in $workloads; do
    printf '%-10s' "$workload"
    for library in $libraries; do
        base=$(instructions "$library" "$workload" 0)
        full=$(instructions "$library" "$workload" "$iterations")
        printf '%12s' "$(( (full - base) / iterations ))"
    done
    printf '\n'
done
