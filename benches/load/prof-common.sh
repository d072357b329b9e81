# Sourced by the prof-*.sh scripts: their temp dir ($work), the processes
# they start ($pids, each stopped on exit) and the sum of callgrind dumps.
work=$(mktemp -d)
pids=()
prof_cleanup() {
    for pid in "${pids[@]+"${pids[@]}"}"; do kill -TERM "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    if [[ ${PROF_KEEP:-0} == 1 ]]; then echo "kept $work" >&2; else rm -rf "$work"; fi
}
trap prof_cleanup EXIT

# callgrind_total FILE...: the instructions (Ir) of these dumps, summed, as
# an integer (mawk's print would give 2.44e+09 past 2^31).
callgrind_total() {
    cat "$@" 2>/dev/null | sed -n 's/^summary: //p' | awk '{s += $1} END {printf "%.0f\n", s}'
}
