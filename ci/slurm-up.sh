#!/usr/bin/env bash
# A one-node Slurm (munge, slurmctld, slurmd) on this machine, for CI and for a developer:
#
#   sudo ci/slurm-up.sh      # installs Debian's Slurm 22.05 if missing, starts it, waits for the node
#   sudo ci/slurm-down.sh    # stops exactly the daemons this script started
#
# Root is needed (apt-get, /etc/slurm/slurm.conf, daemons). The daemons' pid files, logs and
# state live in $FER_SLURM_DIR (default /var/tmp/fer-bench-slurm); the names of the daemons
# started here are appended to $FER_SLURM_DIR/started, which ci/slurm-down.sh reads. A munged
# or Slurm that already runs is left alone and not recorded. /etc/slurm/slurm.conf is written
# only when absent or written by this script (its first line says so); another one is never
# overwritten. No accounting (no slurmdbd): `sacct` fails, so fer-bench reads job states from
# slurmctld (squeue) and, once slurmctld forgot a job (MinJobAge), from the job's stderr
# (README "Scaling out"). Exits non-zero when the node is not idle within $FER_SLURM_WAIT_S (60).
set -euo pipefail

DIR="${FER_SLURM_DIR:-/var/tmp/fer-bench-slurm}"
WAIT_S="${FER_SLURM_WAIT_S:-60}"
CONF=/etc/slurm/slurm.conf
MARK="# written by fer-bench ci/slurm-up.sh"
log() { echo "slurm-up: $*" >&2; }
alive() { [ -s "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

if command -v sinfo >/dev/null && [ -n "$(timeout 5 sinfo -h -o %T 2>/dev/null | grep -E '^(idle|mixed|allocated)')" ]; then
    log "Slurm already answers (sinfo: $(sinfo -h -o '%N %T' | tr '\n' ' ')); nothing started"
    exit 0
fi
if [ "$(id -u)" != 0 ]; then
    log "run as root: it installs packages, writes $CONF and starts daemons"
    exit 1
fi

start=$(date +%s)
if ! command -v slurmctld >/dev/null || ! command -v slurmd >/dev/null || ! command -v sbatch >/dev/null \
        || ! command -v munged >/dev/null; then
    log "installing slurmctld slurmd slurm-client munge (apt-get)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -q --no-install-recommends slurmctld slurmd slurm-client munge >/dev/null \
        || { apt-get update -q >/dev/null && \
             apt-get install -y -q --no-install-recommends slurmctld slurmd slurm-client munge >/dev/null; }
fi

mkdir -p "$DIR/ctld" "$DIR/spool"
if [ -e "$CONF" ] && [ "$(head -n1 "$CONF")" != "$MARK" ]; then
    log "$CONF exists and was not written by this script; not overwriting it (start that Slurm yourself)"
    exit 1
fi
HOST="$(hostname -s)"
NODE_LINE="$(slurmd -C | head -n1)"         # NodeName=<host> CPUs=... RealMemory=...
cat >"$CONF" <<EOF
$MARK
# A one-node cluster for fer-bench's CI; see ci/slurm-up.sh. No accounting: sacct fails.
ClusterName=fer-bench-ci
SlurmctldHost=$HOST
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
StateSaveLocation=$DIR/ctld
SlurmdSpoolDir=$DIR/spool
SlurmctldPidFile=$DIR/slurmctld.pid
SlurmdPidFile=$DIR/slurmd.pid
SlurmctldLogFile=$DIR/slurmctld.log
SlurmdLogFile=$DIR/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
MpiDefault=none
ReturnToService=2
# seconds between a job's SIGTERM and SIGKILL (cancel, time limit): short in CI
KillWait=10
# seconds slurmctld keeps a finished job (its state then comes from the job's stderr)
MinJobAge=300
$NODE_LINE
# two jobs may share a core: CI's shards mostly wait (a stalled cell, a time limit), so
# fer-bench's tests run their launches side by side on a 2-core machine
PartitionName=ci Nodes=$HOST Default=YES MaxTime=INFINITE State=UP OverSubscribe=FORCE:2
EOF

# munge: the init script starts munged as user munge, pid file /run/munge/munged.pid.
if munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
    log "munged already runs; left alone"
else
    /etc/init.d/munge start >/dev/null
    ln -sf /run/munge/munged.pid "$DIR/munged.pid"
    echo munged >>"$DIR/started"
fi
for daemon in slurmctld slurmd; do
    if alive "$DIR/$daemon.pid"; then
        log "$daemon already runs (pid $(cat "$DIR/$daemon.pid")); left alone"
        continue
    fi
    "$daemon"                               # forks; writes $DIR/$daemon.pid
    echo "$daemon" >>"$DIR/started"
done

state=""
for _ in $(seq "$WAIT_S"); do
    state="$(sinfo -h -n "$HOST" -o %T 2>/dev/null || true)"
    case "$state" in
        idle) log "node $HOST idle after $(( $(date +%s) - start ))s; started: $(tr '\n' ' ' <"$DIR/started" 2>/dev/null)"
              exit 0 ;;
        down*|drain*|unknown*) scontrol update nodename="$HOST" state=resume 2>/dev/null || true ;;
    esac
    sleep 1
done
log "node $HOST not idle after ${WAIT_S}s (sinfo: '${state}'); logs:"
tail -n 20 "$DIR/slurmctld.log" "$DIR/slurmd.log" >&2 || true
exit 1
