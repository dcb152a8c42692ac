#!/usr/bin/env bash
# A Ray head on this machine for CI and for a developer (the `ray` of the active Python
# environment: pip install -e '.[ray]'):
#
#   ci/ray-up.sh        # prints the head's address (127.0.0.1:6379) once it answers
#   ci/ray-down.sh      # stops exactly that head
#   FER_BENCH_RAY_ADDRESS=127.0.0.1:6379 python -m pytest tests/launch/test_launch_ray.py
#
# `ray start --head --block` runs in the background with $FER_RAY_CPUS CPUs (default 2, what
# Ray's docs advise for 2-core CI), a $FER_RAY_OBJECT_STORE_MB (256) MB object store, no
# dashboard, usage stats off; its pid goes into
# $FER_RAY_DIR/ray.pid (default /tmp/fer-bench-ray). --block makes it stop every Ray process
# it started when it gets SIGTERM (ci/ray-down.sh), and Ray's reaper does the same should it
# be killed outright. A head that already answers on the port is left alone (nothing is
# recorded). Exits non-zero when the head does not answer within $FER_RAY_WAIT_S (90) s.
set -euo pipefail

DIR="${FER_RAY_DIR:-/tmp/fer-bench-ray}"
PORT="${FER_RAY_PORT:-6379}"
CPUS="${FER_RAY_CPUS:-2}"
WAIT_S="${FER_RAY_WAIT_S:-90}"
STORE_MB="${FER_RAY_OBJECT_STORE_MB:-256}"     # Ray's default takes 30% of the memory
ADDRESS="127.0.0.1:$PORT"
log() { echo "ray-up: $*" >&2; }
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; }

command -v ray >/dev/null || { log "no 'ray' on PATH: pip install -e '.[ray]'"; exit 1; }
if port_open; then
    log "something already listens on $ADDRESS; taken for a Ray head, nothing started"
    echo "$ADDRESS"
    exit 0
fi
mkdir -p "$DIR"
start=$(date +%s)
RAY_USAGE_STATS_ENABLED=0 nohup ray start --head --block --port="$PORT" --num-cpus="$CPUS" \
    --object-store-memory=$((STORE_MB * 1024 * 1024)) --include-dashboard=false \
    --disable-usage-stats >"$DIR/ray.log" 2>&1 </dev/null &
echo $! >"$DIR/ray.pid"
for _ in $(seq "$WAIT_S"); do
    if ! kill -0 "$(cat "$DIR/ray.pid")" 2>/dev/null; then
        log "ray start exited; its log:"; tail -n 30 "$DIR/ray.log" >&2; rm -f "$DIR/ray.pid"; exit 1
    fi
    if port_open && grep -q "blocks forever\|block forever" "$DIR/ray.log"; then
        log "Ray head at $ADDRESS after $(( $(date +%s) - start ))s (pid $(cat "$DIR/ray.pid"))"
        echo "$ADDRESS"
        exit 0
    fi
    sleep 1
done
log "the Ray head did not answer within ${WAIT_S}s; its log:"
tail -n 30 "$DIR/ray.log" >&2
exit 1
