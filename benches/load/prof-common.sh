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

# server_command SERVER CACHED: set `command` to start SERVER (signpost,
# i.e. signpost-forward; redirect; dnsdist; endpoint) on 127.0.0.1:$port,
# forwarding to 127.0.0.1:$backend_port, with its answer cache (dnsdist:
# packet cache) on when CACHED is true, rendered from the load script's
# configurations into $work. Returns 1 for a SERVER it does not know, and
# for a dnsdist configuration that dnsdist rejects.
server_command() {
    local conf
    case $1 in
    signpost)
        sed -e "s/@PORT@/$port/" -e "s/@BACKEND_PORT@/$backend_port/" -e "s/@ADMIN_PORT@/$((port + 1))/" \
            -e "/^\[cache\]/,/^\[/ s/^enabled = .*/enabled = $2/" \
            "$LOAD_DIR/signpost-forward.toml.in" >"$work/server.toml"
        command=("$SIGNPOST_BIN" --config "$work/server.toml")
        ;;
    redirect)
        # Configured by its environment, as LocalStack's is (exported, not
        # through env(1): under valgrind that would measure env, not the
        # server). Names it does not redirect go to the backend.
        export DNS_ADDRESS=127.0.0.1 DNS_PORT="$port" DNS_SERVER="127.0.0.1:$backend_port"
        command=("${REDIRECT_BIN:-$REPO/target/release/signpost-redirect}")
        ;;
    dnsdist)
        conf=dnsdist-nocache.conf
        [[ $2 == true ]] && conf=dnsdist-cache.conf
        sed -e "s/@PORT@/$port/" -e "s/@BACKEND_PORT@/$backend_port/" \
            "$LOAD_DIR/$conf" >"$work/server.conf"
        # Checked first: a dnsdist that cannot read its configuration starts
        # on its defaults and asks the system's resolver for its security
        # status (see dnsdist_checked in run.sh).
        dnsdist --check-config -C "$work/server.conf" >"$work/dnsdist-check.log" 2>&1 ||
            { cat "$work/dnsdist-check.log" >&2; return 1; }
        command=(dnsdist --supervised --disable-syslog -C "$work/server.conf")
        ;;
    endpoint)
        # The load configuration without its DoH listener (no certificate here).
        grep -v -e "^\[tls\]" -e "^cert =" -e "^key =" -e "^doh_port" "$LOAD_DIR/signpost-endpoint.toml.in" |
            sed -e "s/@PORT@/$port/g" -e "s/@BACKEND_PORT@/$backend_port/" \
                -e "s/protocols = .*/protocols = [\"Do53\"]/" >"$work/server.toml"
        command=("$REPO/target/release/signpost-endpoint" --config "$work/server.toml")
        ;;
    *) return 1 ;;
    esac
}
