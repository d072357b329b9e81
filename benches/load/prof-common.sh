# Sourced by the prof-*.sh scripts (after setting LOAD_DIR): the repository,
# the defaults of SIGNPOST_BIN and PROF_OUTSTANDING, their temp dir ($work), the processes
# they start ($pids, each stopped on exit), the server under callgrind and
# the wait for its first answer, and the sum of callgrind dumps.
REPO=$(cd "$LOAD_DIR/../.." && pwd)
SIGNPOST_BIN=${SIGNPOST_BIN:-$REPO/target/release/signpost-forward}
outstanding=${PROF_OUTSTANDING:-32}
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

# start_under_callgrind COMMAND...: the server under test, under callgrind on
# CPU 1 (its log in $work/server.log); sets $server_pid.
start_under_callgrind() {
    taskset -c 1 valgrind --tool=callgrind --callgrind-out-file="$work/callgrind.%p" \
        "$@" </dev/null >"$work/server.log" 2>&1 &
    server_pid=$!
    pids+=("$server_pid")
}

# wait_answering DIG_ARGUMENT...: until `dig @127.0.0.1 -p $port` with these
# arguments gets NOERROR (valgrind starts slowly), 120 tries a second apart;
# exits with the server's log if the server died, returns 1 if it never answered.
wait_answering() {
    for _ in $(seq 1 120); do
        if dig +tries=1 -p "$port" @127.0.0.1 "$@" 2>/dev/null | grep -q 'status: NOERROR'; then
            return 0
        fi
        kill -0 "$server_pid" 2>/dev/null || { cat "$work/server.log" >&2; exit 1; }
        sleep 1
    done
    return 1
}

# callgrind_allocations FILE...: calls into the allocator's entry points
# (glibc's malloc, calloc, realloc and aligned variants; mimalloc's mi_*
# equivalents, which the Rust binaries' global allocator calls) from code
# outside the allocator, summed over the dumps. Each dump file has its own
# table of compressed function names, reset at its first line.
callgrind_allocations() {
    awk '
        function named(text,   id, rest) {
            if (match(text, /^\([0-9]+\)/)) {
                id = substr(text, 2, RLENGTH - 2)
                rest = substr(text, RLENGTH + 2)
                if (rest != "") names[id] = rest
                return names[id]
            }
            return text
        }
        FNR == 1 { split("", names) }
        /^fn=/ { caller = named(substr($0, 4)); next }
        /^cfn=/ { callee = named(substr($0, 5)); next }
        /^calls=/ {
            split(substr($0, 7), count, " ")
            if (callee ~ entry && caller !~ inside) total += count[1]
            next
        }
        END { printf "%.0f\n", total }
    ' entry='^(malloc|calloc|realloc|posix_memalign|aligned_alloc|memalign|mi_malloc|mi_zalloc|mi_calloc|mi_realloc|mi_malloc_aligned|mi_zalloc_aligned|mi_realloc_aligned)$' \
      inside='^(_?mi_|_int_|malloc|calloc|realloc|posix_memalign|aligned_alloc|memalign|tcache|__libc)' "$@"
}
