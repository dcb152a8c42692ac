"""Slurm time limits and preemption end in a requeue, not a lost shard.

Two halves, both in the submitit engine (``engines.SubmititEngine``):

1. **The signal.** Every Slurm shard is submitted with ``#SBATCH --signal=TERM@<lead>``
   (``signal_lead_s``): Slurm sends SIGTERM to the job's step (the shard's wrapper and its
   pytest) ``lead`` seconds before the time limit. pytest, inside a cell, stops it at its
   next safe point (``fer_bench.training.preempt``: the last finished epoch's checkpoint is
   kept, the claim released) and the shard exits 75; outside a cell pytest dies of the
   SIGTERM (exit -15), having nothing half-written. submitit's wrapper process logs and
   ignores SIGTERM ("Bypassing signal SIGTERM"), so it still writes the shard's exit status
   as the job's result. A shard that does not stop in time ends as Slurm's TIMEOUT; its
   last finished epoch's checkpoint is on disk either way.

2. **The requeue.** The launcher, which waits for the jobs anyway (``slurm.wait_slurm``),
   submits a shard that ended preempted or timed out (``requeue_reason``: Slurm state
   TIMEOUT, PREEMPTED, NODE_FAIL or BOOT_FAIL, or exit 75, or killed by SIGTERM/SIGUSR1)
   again as a **new Slurm job** of the same shard, up to ``--max-requeues`` times per launch
   (default 3; a ``--resume`` starts a fresh count). The new job runs the same pytest
   command on the same store: finished cells come back from the store, the interrupted
   cell continues from its epoch checkpoint. Each requeue is one log line and one entry in
   the manifest's ``requeues`` (``--status`` shows them); the manifest's ``jobs`` then
   names the new job. A shard that ended any other way (exit 1-5, FAILED, OUT_OF_MEMORY,
   CANCELLED: a person's ``scancel`` is never undone) is not requeued.

Why not submitit's own checkpoint/requeue (read in submitit 1.5.4,
``submitit/core/job_environment.py``: ``SignalHandler.checkpoint_and_try_requeue``, and
``submitit/slurm/slurm.py``: ``_make_sbatch_string`` asks ``--signal=USR2@90``,
``SlurmJobEnvironment._requeue`` runs ``scontrol requeue <job>``): there, SIGUSR2 reaches
submitit's process, which calls the function's ``checkpoint()`` (a ``Checkpointable``) from
inside the signal handler and requeues the job in place. fer-bench's work runs in a pytest
child that has to reach a safe point by itself; a job that is SIGKILLed (TIMEOUT past
``KillWait``, NODE_FAIL) never runs that handler at all; submitit tells "timed out" from
"preempted" by a wall-clock guess (80 % of the limit); and an in-place requeue keeps the
job id, so without accounting (CI's Slurm) nothing tells one attempt of the job from the
next. Resubmitting from the launcher treats all of these alike, and each attempt has its
own job id, stderr file and state. The cost: only a launcher that waits requeues; a
``--detach`` run is continued with ``launch --resume``. A job Slurm requeues itself
(``PreemptMode=REQUEUE``) stays live (REQUEUED, PENDING) and is simply waited for.

This module runs Slurm's commands nowhere and imports neither submitit nor torch.
"""

from __future__ import annotations

import signal
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from fer_bench.results.rundir import (
    FINISHED_CODES,
    PREEMPTED_EXIT,
    describe_exit,
    manifest_path,
    read_manifest,
    write_json,
)

#: Slurm states of a job stopped for a reason that a new job of the same shard fixes.
REQUEUE_STATES = frozenset({"TIMEOUT", "PREEMPTED", "NODE_FAIL", "BOOT_FAIL"})
#: Signals whose death (exit -15 / -10) is Slurm's warning reaching pytest between cells.
REQUEUE_SIGNALS = (signal.SIGTERM, signal.SIGUSR1)
DEFAULT_MAX_REQUEUES = 3
#: The signal's lead: 10 % of the time limit, at least 10 s, at most 180 s (see signal_lead_s).
LEAD_FRACTION, LEAD_MIN_S, LEAD_MAX_S = 0.10, 10, 180


def signal_lead_s(time_min: int) -> int:
    """Seconds before a ``time_min``-minute limit at which Slurm is asked to send SIGTERM.

    What the lead must cover: the cell's way to its next safe point (the training batch in
    progress, or an epoch's evaluation plus its checkpoint write: a fast_resnet evaluation
    of validation and test, ~7k images at 757 images/s, is ~9 s on a CPU; VGG16's is about
    ten times that), the record's write and pytest's exit. 180 s covers a VGG16 CPU
    evaluation twice over and costs 0.4 % of a 12-hour allocation; 10 % keeps a short
    limit mostly for work (a 10-minute limit: 60 s); 10 s at least (a 1-minute limit)
    still lets a small cell stop between two batches. Slurm checks time limits every 30 s
    (``PERIODIC_TIMEOUT``), so the signal comes lead to lead + 30 s before the limit
    (measured on CI's Slurm 22.05, 1-minute limit, lead 10 s: 23-37 s after the start)
    and the kill up to 30 s after it.
    """
    return int(min(LEAD_MAX_S, max(LEAD_MIN_S, round(time_min * 60 * LEAD_FRACTION))))


def requeue_reason(code: int | None, state: str | None) -> str | None:
    """Why a shard that ended with exit ``code`` (None: no result) in Slurm state ``state``
    (None: not known) is submitted again, or None when it is not (see the module docstring)."""
    if code in FINISHED_CODES:
        return None                         # pytest ran to its end: nothing to continue
    if state and state.startswith("CANCELLED"):
        return None                         # a person (or an admin) stopped it
    if state in REQUEUE_STATES:
        return f"Slurm state {state}" + (f", {describe_exit(code)}" if code is not None else "")
    if code == PREEMPTED_EXIT:
        return "exit 75 (its cell stopped at a safe point on Slurm's signal, checkpoint kept)"
    if code is not None and code < 0 and -code in REQUEUE_SIGNALS:
        return f"{describe_exit(code)}: Slurm's signal reached pytest between cells"
    return None


def requeues(manifest: dict[str, Any]) -> list[dict[str, Any]]:
    """The requeues a manifest records, oldest first (entries of ``record_requeue``)."""
    return [r for r in manifest.get("requeues") or [] if isinstance(r, dict)]


def record_requeue(run_dir: Path, entry: dict[str, Any]) -> None:
    """Append ``entry`` to the manifest's ``requeues`` and make its ``new_job`` the shard's
    job in ``jobs`` (``--status`` asks Slurm about that one)."""
    manifest = read_manifest(run_dir)
    manifest["requeues"] = [*requeues(manifest), entry]
    manifest["jobs"] = {**(manifest.get("jobs") or {}), str(entry["shard"]): str(entry["new_job"])}
    write_json(manifest_path(run_dir), manifest)


def format_requeue(entry: dict[str, Any]) -> str:
    """``shard 1/2 requeued (1 of at most 3) at 12:03:11 UTC: Slurm job 4_0 ended with
    <reason>; resubmitted as Slurm job 5``."""
    when = str(entry.get("at", ""))
    when = f" at {when[11:19]} UTC" if len(when) >= 19 else ""
    return (f"shard {entry['shard']}/{entry['of']} requeued ({entry['count']} of at most "
            f"{entry['max']}){when}: Slurm job {entry['job']} ended with {entry['reason']}; "
            f"resubmitted as Slurm job {entry['new_job']}")


@dataclass
class Requeuer:
    """``wait_slurm``'s ``requeue`` hook for one launch: ``requeuer(task, job, code, state)``
    submits ``task`` again (``submit(task) -> job``) and returns the new job when
    ``requeue_reason`` says so and the shard has been requeued fewer than ``max_requeues``
    times in this launch; else None (the shard is finished as it is). ``report`` gets one
    line per requeue, and per refusal for the bound."""

    run_dir: Path
    max_requeues: int
    submit: Callable[[Any], Any]
    report: Callable[[str], None]
    counts: dict[int, int] = field(default_factory=dict)

    def __call__(self, task: Any, job: Any, code: int | None, state: str | None) -> Any | None:
        reason = requeue_reason(code, state)
        if reason is None:
            return None
        done = self.counts.get(task.index, 0)
        if done >= self.max_requeues:
            self.report(f"shard {task.index}/{task.count} not requeued: Slurm job {job.job_id} "
                        f"ended with {reason}, and it was requeued {done} time(s) in this launch "
                        f"already (--max-requeues {self.max_requeues})")
            return None
        new = self.submit(task)
        self.counts[task.index] = done + 1
        entry = {"shard": task.index, "of": task.count, "count": done + 1,
                 "max": self.max_requeues, "job": str(job.job_id), "new_job": str(new.job_id),
                 "reason": reason, "code": code, "state": state,
                 "at": datetime.now(timezone.utc).isoformat(timespec="seconds")}
        record_requeue(Path(self.run_dir), entry)
        self.report(format_requeue(entry) + "; it continues from the store and its checkpoints")
        return new
