#!/usr/bin/env bash
# Stops exactly the daemons ci/slurm-up.sh started (the names in $FER_SLURM_DIR/started), each
# by its pid file, newest first: SIGTERM, then SIGKILL after 20 s. Anything else is left alone.
set -uo pipefail

DIR="${FER_SLURM_DIR:-/var/tmp/fer-bench-slurm}"
log() { echo "slurm-down: $*" >&2; }
# shellcheck source=ci/lib.sh
. "$(dirname "$0")/lib.sh"

if [ ! -s "$DIR/started" ]; then
    log "nothing was started by ci/slurm-up.sh ($DIR/started is empty or missing)"
    exit 0
fi
for daemon in $(tac "$DIR/started"); do
    pidfile="$DIR/$daemon.pid"
    pid="$(cat "$pidfile" 2>/dev/null || true)"
    if [ -z "$pid" ] || ! kill -0 "$pid" 2>/dev/null; then
        log "$daemon: not running (pid file $pidfile)"
        continue
    fi
    stop_pid "$daemon" "$pid" 20
    log "stopped $daemon (pid $pid)"
done
rm -f "$DIR/started"
