"""A Slurm job's state, with or without accounting (``slurmdbd``).

submitit asks ``sacct`` for job states. On a cluster without accounting (CI's one-node
Slurm, ``AccountingStorageType=accounting_storage/none``) ``sacct`` fails; submitit logs
"Bypassing sacct error", keeps every state ``UNKNOWN`` and ``job.result()`` waits for a result
file that a cancelled, timed-out or never-started job does not write: forever. So fer-bench
reads the state itself (``query_states``; ``wait_slurm`` waits for a launch's jobs with
it), in this order:

1. ``squeue --states=all -r``: every job slurmctld still holds, live or finished less than
   ``MinJobAge`` seconds ago (default 300), array tasks one per line (``4_1``). A pending
   array task that is cancelled vanishes at once (no record is ever made for it).
2. ``sacct`` (when accounting is on): finished jobs slurmctld forgot.
3. The job's stderr file (submitit's ``<job>_0_log.err``): slurmstepd writes
   ``*** JOB 5 ON node CANCELLED AT <time> [DUE TO TIME LIMIT|PREEMPTION|NODE FAILURE] ***``
   into it when Slurm kills a running job.

Otherwise the state is ``UNKNOWN``: slurmctld no longer knows the job and nothing on disk
tells (a task cancelled while pending, or one that ended more than ``MinJobAge`` ago). When
squeue itself fails (slurmctld down or busy, no squeue here) every job not found elsewhere
is ``UNREACHABLE``, which counts as live: a launcher keeps waiting rather than give up on
jobs that may still run. Every command has a timeout. This module reads files and runs
Slurm's commands only (no submitit import).
"""

from __future__ import annotations

import os
import re
import subprocess
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fer_bench.results.rundir import FINISHED_CODES

#: States of a job that has not ended (squeue's long names).
LIVE = frozenset({"PENDING", "CONFIGURING", "RUNNING", "COMPLETING", "SUSPENDED", "REQUEUED",
                  "REQUEUE_FED", "REQUEUE_HOLD", "RESIZING", "SIGNALING", "STAGE_OUT",
                  "STOPPED", "RESV_DEL_HOLD", "POWER_UP_NODE"})
#: Live states in which the job's processes have not started yet.
QUEUED = frozenset({"PENDING", "CONFIGURING", "REQUEUED", "REQUEUE_FED", "REQUEUE_HOLD",
                    "RESV_DEL_HOLD", "POWER_UP_NODE"})
COMMAND_TIMEOUT_S = 30.0
#: Seconds between two questions to Slurm while waiting; seconds an ended job may take to
#: show its result file (a shared file system's lag) before it is reported without one: 15,
#: or 5 when Slurm says it stopped the job (CANCELLED, TIMEOUT, ...), which is failed anyway
#: and whose result file, if any, would only add the exit code.
SLURM_POLL_S, SETTLE_S, FAILED_SETTLE_S = 10.0, 15.0, 5.0
_KILLED = re.compile(r"\*\*\* JOB \S+ ON \S+ CANCELLED AT \S+(?: DUE TO ([A-Z ]+?))? \*\*\*")
_DUE_TO = {None: "CANCELLED", "TIME LIMIT": "TIMEOUT", "PREEMPTION": "PREEMPTED",
           "NODE FAILURE": "NODE_FAIL"}

#: ``run(command) -> (exit status, stdout, stderr)``; 127 when the command is missing.
Runner = Callable[[list[str]], "tuple[int, str, str]"]


@dataclass(frozen=True)
class JobState:
    """``state``: Slurm's name (RUNNING, CANCELLED, TIMEOUT, ...) or UNKNOWN; ``source``:
    squeue, sacct, stderr or none; ``reason``: squeue's reason (Priority, TimeLimit, ...)."""

    job_id: str
    state: str
    source: str
    reason: str = ""

    @property
    def live(self) -> bool:
        """Not ended, or not known to have ended (squeue unreachable)."""
        return self.state in LIVE or self.state == "UNREACHABLE"

    @property
    def queued(self) -> bool:
        return self.state in QUEUED

    @property
    def ended(self) -> bool:
        return not self.live and self.state != "UNKNOWN"

    @property
    def failed(self) -> bool:
        """Ended in a state other than COMPLETED (CANCELLED, TIMEOUT, FAILED, NODE_FAIL, ...)."""
        return self.ended and self.state != "COMPLETED"

    def describe(self) -> str:
        """``Slurm job 4_1 TIMEOUT`` (+ the reason, + where the state came from)."""
        text = f"Slurm job {self.job_id} {self.state}"
        if self.reason and self.reason not in ("None", self.state):
            text += f" ({self.reason})"
        if self.source == "stderr":
            text += " (from the job's stderr: slurmctld no longer holds it)"
        elif self.state == "UNKNOWN":
            text += (" (slurmctld no longer holds it and there is no accounting: cancelled "
                     "while pending, or ended more than MinJobAge ago)")
        return text


def run_command(command: list[str]) -> tuple[int, str, str]:
    """(exit status, stdout, stderr) of ``command``; 127 when it cannot start, 124 when it
    takes longer than ``COMMAND_TIMEOUT_S``."""
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=COMMAND_TIMEOUT_S)
    except OSError as exc:
        return 127, "", str(exc)
    except subprocess.TimeoutExpired:
        return 124, "", f"{command[0]} took more than {COMMAND_TIMEOUT_S:.0f}s"
    return done.returncode, done.stdout, done.stderr


def parse_squeue(text: str) -> dict[str, tuple[str, str]]:
    """``4_1|TIMEOUT|TimeLimit`` lines -> {"4_1": ("TIMEOUT", "TimeLimit")}."""
    states = {}
    for line in text.splitlines():
        parts = line.strip().split("|")
        if len(parts) >= 2 and parts[0]:
            states[parts[0]] = (parts[1].strip().upper(), parts[2].strip() if len(parts) > 2 else "")
    return states


def parse_sacct(text: str) -> dict[str, str]:
    """``4_1|CANCELLED by 0`` lines (``sacct -n -P -X -o JobID,State``) -> {"4_1": "CANCELLED"}."""
    states = {}
    for line in text.splitlines():
        parts = line.strip().split("|")
        if len(parts) >= 2 and parts[0] and "." not in parts[0] and parts[1].strip():
            states[parts[0]] = parts[1].split()[0].upper()
    return states


def state_from_stderr(path: Path | None) -> str | None:
    """CANCELLED / TIMEOUT / PREEMPTED / NODE_FAIL when slurmstepd wrote that it killed the
    job into ``path``; None otherwise (also when the file is missing)."""
    if path is None:
        return None
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            text = fh.read()[-200_000:]
    except OSError:
        return None
    found = _KILLED.findall(text)
    return _DUE_TO.get(found[-1] or None, "CANCELLED") if found else None


def submitit_stderr(folder: Path, job_id: str) -> Path:
    """The stderr file submitit gives job ``job_id`` (task 0) in ``folder``."""
    return Path(folder) / f"{job_id}_0_log.err"


def query_states(job_ids: Iterable[str], stderr: Mapping[str, Path] | None = None,
                 run: Runner | None = None) -> dict[str, JobState]:
    """The state of each of ``job_ids`` ("4_1", "7"), from squeue, sacct, then the job's
    stderr file (``stderr[job_id]``); see the module docstring. One squeue and at most one
    sacct call for all of them."""
    ids = sorted({str(j) for j in job_ids if j})
    if not ids:
        return {}
    run = run or run_command
    stderr = stderr or {}
    code, out, err = run(["squeue", "-h", "-r", "--states=all", "-o", "%i|%T|%r", "-j", ",".join(ids)])
    # squeue exits 1 with "Invalid job id specified" when it knows none of the ids
    reachable = code == 0 or "invalid job id" in err.lower()
    live = parse_squeue(out) if code == 0 else {}
    states = {j: JobState(j, live[j][0], "squeue", live[j][1]) for j in ids if j in live}
    missing = [j for j in ids if j not in states]
    if missing:
        code, out, _ = run(["sacct", "-n", "-P", "-X", "-o", "JobID,State", "-j", ",".join(missing)])
        for job, state in (parse_sacct(out) if code == 0 else {}).items():
            if job in missing:
                states[job] = JobState(job, state, "sacct")
    for job in ids:
        if job in states:
            continue
        found = state_from_stderr(stderr.get(job))
        if found:
            states[job] = JobState(job, found, "stderr")
        elif reachable:
            states[job] = JobState(job, "UNKNOWN", "none")
        else:
            states[job] = JobState(job, "UNREACHABLE", "none", err.strip().splitlines()[-1:][0]
                                   if err.strip() else f"squeue exit {code}")
    return states


def wait_slurm(pairs: list[tuple[Any, Any]], *, outcome: Callable[[Any], tuple[int | None, str]],
               finished: Callable[[Any, int | None, float, str], None],
               report: Callable[[str], None], start: float,
               poll_s: float | None = None,
               requeue: Callable[[Any, Any, int | None, str | None], Any] | None = None,
               ) -> dict[int, int | None]:
    """Wait for submitit Slurm jobs without submitit's watcher, which trusts ``sacct`` and
    waits forever for a job that ends without a result file when there is no accounting.

    ``pairs``: (shard task with its ``index``, submitit job: ``job_id``,
    ``paths.result_pickle``, ``paths.stderr``). A job is over when its result file exists
    (``outcome(job)`` -> (exit code or None, note) reads it) or when Slurm says it ended
    (``query_states``) and ``SETTLE_S`` (``FAILED_SETTLE_S``) more seconds brought no result
    file. ``finished(task, code, seconds since start, note)`` is called once per job; the note
    of a shard that did not run to its end names its Slurm state (CANCELLED, TIMEOUT, ...).
    Slurm is asked every ``poll_s`` seconds (``$FER_BENCH_SLURM_POLL_S``, default 10), every
    2 s while a job settles; the result files are looked at every second.
    ``requeue(task, job, code, Slurm state or None)`` (``requeue.Requeuer``), asked before
    ``finished``, may return a new job of the same shard: the shard is then waited for in
    that job instead. Returns {task index: exit code or None} (of each shard's last job).
    """
    poll_s = poll_s or float(os.environ.get("FER_BENCH_SLURM_POLL_S") or SLURM_POLL_S)
    waiting = {task.index: (task, job) for task, job in pairs}
    settling: dict[int, float] = {}
    states: dict[str, Any] = {}
    asked, unreachable = float("-inf"), ""
    results: dict[int, int | None] = {}
    while waiting:
        now = time.monotonic()
        if now - asked >= (min(poll_s, 2.0) if settling else poll_s):
            states = query_states([str(job.job_id) for _, job in waiting.values()],
                                  {str(job.job_id): job.paths.stderr for _, job in waiting.values()})
            asked = now
            down = next((s for s in states.values() if s.state == "UNREACHABLE"), None)
            if down is not None and down.reason != unreachable:
                report(f"cannot ask Slurm about the shards' jobs ({down.reason}); still waiting")
            unreachable = down.reason if down is not None else ""
        for index, (task, job) in list(waiting.items()):
            state = states.get(str(job.job_id))
            if job.paths.result_pickle.exists():
                code, note = outcome(job)
                if code not in FINISHED_CODES:
                    if state is not None and state.live and now - settling.setdefault(index, now) < SETTLE_S:
                        continue            # wait for Slurm's final word (COMPLETING -> CANCELLED)
                    if state is not None and state.state != "COMPLETED":
                        note = "; ".join(filter(None, [state.describe(), note]))
            elif state is None or state.live or now - settling.setdefault(index, now) < (
                    FAILED_SETTLE_S if state.failed else SETTLE_S):
                continue
            else:
                code, note = None, state.describe()
            again = requeue(task, job, code, state.state if state else None) if requeue else None
            if again is not None:
                waiting[index] = (task, again)
                settling.pop(index, None)
                continue
            finished(task, code, time.monotonic() - start, note)
            results[index] = code
            del waiting[index]
        if waiting:
            time.sleep(1.0)
    return results
