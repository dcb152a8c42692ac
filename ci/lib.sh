# Shared by the ci/*-down.sh scripts (sourced, not run).
# stop_pid NAME PID SECONDS: SIGTERM to PID, wait up to SECONDS for it to exit, then SIGKILL.
stop_pid() {
    local name=$1 pid=$2 seconds=$3
    kill -TERM "$pid"
    for _ in $(seq $((seconds * 2))); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.5
    done
    if kill -0 "$pid" 2>/dev/null; then
        log "$name (pid $pid) ignored SIGTERM for $seconds s; SIGKILL"
        kill -KILL "$pid"
    fi
}
