# proc.sh - start, wait for and stop the background processes of a script, by pid.
#
#   . "$ROOT/scripts/lib/proc.sh"
#   trap proc_stop_all EXIT
#   proc_start kafka "$work/kafka.log" build/tools/mqk-devkafka -f "$work/bs"
#   proc_wait_until 10 "Kafka's bootstrap file" test -s "$work/bs"
#
# Everything started with proc_start is remembered (name, pid, log) and stopped by
# proc_stop_all in reverse order: SIGTERM, a bounded wait, then SIGKILL. Nothing is
# ever stopped by name. Sourced by bash scripts that use `set -euo pipefail`.

PROC_NAMES=()
PROC_PIDS=()
PROC_LOGS=()

# Prints a free TCP port on 127.0.0.1 (the kernel's choice of an ephemeral port).
proc_free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])'
}

# proc_start NAME LOGFILE CMD [ARGS...]: runs CMD in the background, stdout and stderr
# to LOGFILE, and remembers its pid (PROC_LAST_PID).
proc_start() {
    local name=$1 log=$2
    shift 2
    "$@" >"$log" 2>&1 &
    PROC_LAST_PID=$!
    PROC_NAMES+=("$name")
    PROC_PIDS+=("$PROC_LAST_PID")
    PROC_LOGS+=("$log")
}

# proc_pid NAME: prints the pid proc_start recorded for NAME.
proc_pid() {
    local i
    for i in "${!PROC_NAMES[@]}"; do
        [ "${PROC_NAMES[$i]}" = "$1" ] && { echo "${PROC_PIDS[$i]}"; return 0; }
    done
    return 1
}

# proc_alive PID: is it still running (and not a zombie)? Reads /proc, not ps(1), which
# a minimal Debian image does not have.
proc_alive() {
    local stat
    stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
    stat=${stat##*) } # the fields after "(comm) ": the state comes first
    [ -n "$stat" ] && [ "${stat:0:1}" != Z ]
}

# proc_wait_until SECONDS WHAT CMD [ARGS...]: retries CMD every 0.1 s until it
# succeeds; after SECONDS, prints "error: timed out waiting for WHAT" and returns 1.
# If PROC_WATCH_PID is set and that process dies meanwhile, it gives up at once.
proc_wait_until() {
    local seconds=$1 what=$2
    shift 2
    local deadline=$((SECONDS + seconds))
    until "$@" >/dev/null 2>&1; do
        if [ -n "${PROC_WATCH_PID:-}" ] && ! proc_alive "$PROC_WATCH_PID"; then
            echo "error: the process that should provide $what exited" >&2
            return 1
        fi
        if [ "$SECONDS" -ge "$deadline" ]; then
            echo "error: timed out after ${seconds}s waiting for $what" >&2
            return 1
        fi
        sleep 0.1
    done
}

# proc_dump_logs [LINES]: prints the tail of each started process's log (on failure).
proc_dump_logs() {
    local lines=${1:-20} i
    for i in "${!PROC_NAMES[@]}"; do
        [ -s "${PROC_LOGS[$i]}" ] || continue
        echo "---- last $lines lines of ${PROC_NAMES[$i]} (${PROC_LOGS[$i]}) ----" >&2
        tail -n "$lines" "${PROC_LOGS[$i]}" >&2
    done
}

# proc_stop_all [GRACE_SECONDS]: SIGTERM to every started process still running, newest
# first, waits up to GRACE_SECONDS (default 10) for each, then SIGKILL. Idempotent.
proc_stop_all() {
    local grace=${1:-10} i pid deadline
    for ((i = ${#PROC_PIDS[@]} - 1; i >= 0; i--)); do
        pid=${PROC_PIDS[$i]}
        proc_alive "$pid" || continue
        kill -TERM "$pid" 2>/dev/null || continue
        deadline=$((SECONDS + grace))
        while proc_alive "$pid" && [ "$SECONDS" -lt "$deadline" ]; do
            sleep 0.1
        done
        if proc_alive "$pid"; then
            echo "warning: ${PROC_NAMES[$i]} (pid $pid) ignored SIGTERM for ${grace}s: SIGKILL" >&2
            kill -KILL "$pid" 2>/dev/null || true
        fi
        wait "$pid" 2>/dev/null || true
    done
    PROC_NAMES=()
    PROC_PIDS=()
    PROC_LOGS=()
}
