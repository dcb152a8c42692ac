#!/usr/bin/env bash
# Stops the Ray head ci/ray-up.sh started: SIGTERM to its `ray start --block` (pid in
# $FER_RAY_DIR/ray.pid), which stops the Ray processes it started; SIGKILL after 30 s (Ray's
# reaper then stops them). Nothing else is touched.
set -uo pipefail

DIR="${FER_RAY_DIR:-/tmp/fer-bench-ray}"
log() { echo "ray-down: $*" >&2; }
# shellcheck source=ci/lib.sh
. "$(dirname "$0")/lib.sh"
pid="$(cat "$DIR/ray.pid" 2>/dev/null || true)"
if [ -z "$pid" ] || ! kill -0 "$pid" 2>/dev/null; then
    log "no Ray head started by ci/ray-up.sh runs ($DIR/ray.pid)"
    rm -f "$DIR/ray.pid"
    exit 0
fi
stop_pid "ray start" "$pid" 30
rm -f "$DIR/ray.pid"
log "stopped the Ray head (pid $pid)"
