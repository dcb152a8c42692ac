"""``fer-bench launch --status RUN_DIR``: cells done / running / failed / left, shards done /
running / failed / missing, and the claims in the shared store.

Read from the run folder (the shards' plans, cell events and states; see ``layout``) plus
the store's claim files, so it works from any machine that sees the folder, while the run
goes on, after a crash, and for a run whose shards were never started. For a Slurm run
(job ids in the manifest or in the shards' state files) the scheduler has the last word on
unfinished shards (``fer_bench.launch.slurm``, no accounting needed): a queued job is a
running shard (never relaunched by ``--resume``), a job that ended CANCELLED, TIMEOUT,
FAILED, ... is a failed shard with that state, whatever its files still say.

A cell is *done* (its test passed, trained or read from the store), *failed* (its test
failed: a failed cell, or an error around it), *skipped*, *running* (started, its shard
alive) or *left* (not started, or started by a shard that died: it trains again on
``--resume``). The grid is known once any shard has collected it; until then only the
shards are counted. Cells *in progress* are the store's epoch checkpoints (a cell training or
interrupted after a finished epoch), each with its epoch, size and time, read from the
checkpoint files' trailers. *Requeued* shards (a Slurm shard preempted or timed out and
submitted again by the launcher, ``requeue``) are read from the manifest's ``requeues``.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from fer_bench.launch.requeue import format_requeue, requeues
from fer_bench.launch.slurm import JobState
from fer_bench.planning.profiles import select_shard
from fer_bench.results.rundir import (
    ShardState,
    read_events,
    read_json,
    read_manifest,
    shard_file,
    shard_state,
)
from fer_bench.strenum import StrEnum


class CellState(StrEnum):
    """A cell's state in a launch (see above)."""

    DONE = "done"
    RUNNING = "running"
    FAILED = "failed"
    SKIPPED = "skipped"
    LEFT = "left"


CELL_STATES = tuple(CellState)
SHARD_STATES = ("done", "running", "failed", "missing")
#: ``format_status`` lists this many of the latest requeues (``--json`` has all).
REQUEUES_SHOWN = 10


@dataclass
class RunStatus:
    """Where a launch stands. ``cells``: node id -> state; ``cell_shard``: node id -> shard."""

    run_dir: Path
    manifest: dict[str, Any]
    shards: list[ShardState]
    cells: dict[str, CellState] = field(default_factory=dict)
    cell_shard: dict[str, int] = field(default_factory=dict)
    claims_live: int = 0
    claims_stale: int = 0
    in_progress: list[Any] = field(default_factory=list)   # the store's CheckpointInfo

    @property
    def requeues(self) -> list[dict[str, Any]]:
        """The manifest's requeue entries, oldest first (``requeue.record_requeue``)."""
        return requeues(self.manifest)

    def requeue_count(self, index: int) -> int:
        return sum(r.get("shard") == index for r in self.requeues)

    @property
    def grid_known(self) -> bool:
        return bool(self.cells) or any(s.state == "done" for s in self.shards)

    def cell_counts(self) -> dict[str, int]:
        counts = dict.fromkeys(CELL_STATES, 0)
        for state in self.cells.values():
            counts[state] += 1
        return counts

    def shard_counts(self) -> dict[str, int]:
        counts = dict.fromkeys(SHARD_STATES, 0)
        for shard in self.shards:
            counts[shard.state] += 1
        return counts

    @property
    def complete(self) -> bool:
        return all(s.state == "done" for s in self.shards)

    def to_dict(self) -> dict[str, Any]:
        return {
            "run_dir": str(self.run_dir), "shards_total": len(self.shards),
            "engine": self.manifest.get("engine"), "store": self.manifest.get("store"),
            "cells_total": len(self.cells) if self.grid_known else None,
            "cells": self.cell_counts(), "shards": self.shard_counts(), "complete": self.complete,
            "claims": {"live": self.claims_live, "stale": self.claims_stale},
            "in_progress": [{"cell": c.cell_id, "epoch": c.epoch, "epochs": c.epochs,
                             "checkpoint_bytes": c.size, "written_at": c.written_at,
                             "path": str(c.path)} for c in self.in_progress],
            "shard_details": [{"index": s.index, "state": s.state, "detail": s.detail,
                               "exit_code": s.exit_code, "attempt": s.attempt, "host": s.host,
                               "log": str(s.log_path), "scheduler": s.scheduler or None,
                               "requeues": self.requeue_count(s.index)}
                              for s in self.shards],
            "requeues": self.requeues,
            "cells_by_state": {state: sorted(n for n, s in self.cells.items() if s == state)
                               for state in CELL_STATES if state is not CellState.DONE},
        }


def _cell_states(run_dir: Path, shard: ShardState, mine: list[str]) -> dict[str, CellState]:
    """The state of each of ``mine`` from the shard's events (the last one per cell wins)."""
    last: dict[str, CellState | None] = {}   # None: started, not finished
    for event in read_events(run_dir, shard.index):
        node = event.get("nodeid")
        if event.get("event") == "start":
            last[node] = None
        elif event.get("event") == "finish":
            outcome = event.get("outcome")
            last[node] = {"passed": CellState.DONE,
                          "skipped": CellState.SKIPPED}.get(outcome, CellState.FAILED)
    states = {}
    for node in mine:
        state = last.get(node, CellState.LEFT)
        if state is None:
            state = CellState.RUNNING if shard.state == "running" else CellState.LEFT
        states[node] = state
    return states


def slurm_jobs(manifest: dict[str, Any], shards: list[ShardState]) -> dict[int, str]:
    """Shard index -> its latest Slurm job: the manifest's ``jobs`` (written at submission)
    for a Slurm run, else the job a shard's state file was written in."""
    options = manifest.get("engine_options") or {}
    on_slurm = manifest.get("engine") == "submitit" and options.get("cluster", "slurm") == "slurm"
    jobs = {int(k): str(v) for k, v in (manifest.get("jobs") or {}).items()} if on_slurm else {}
    for shard in shards:
        if shard.slurm_job and shard.index not in jobs:
            jobs[shard.index] = shard.slurm_job
    return jobs


def slurm_verdict(shard: ShardState, job: JobState) -> ShardState:
    """``shard`` as its files tell it, corrected by what Slurm says of its latest job."""
    said = job.describe()
    if shard.state == "done" or job.state in ("UNKNOWN", "UNREACHABLE"):
        return replace(shard, scheduler=said)
    own = shard.slurm_job == job.job_id        # the shard's state file is from this job
    if job.queued:
        return replace(shard, state="running", detail=f"queued: {said}", scheduler=said)
    if job.live:
        if shard.state == "running" or not own:
            detail = shard.detail if shard.state == "running" else "starting"
            return replace(shard, state="running", detail=f"{detail}; {said}", scheduler=said)
        return replace(shard, detail=f"{said}; {shard.detail}", scheduler=said)
    if not own:
        why = "the shard never started in it" if shard.state == "missing" else shard.detail
        return replace(shard, state="failed", detail=f"{said}; {why}", scheduler=said)
    if shard.state == "running":            # its files lag behind: Slurm stopped the job
        return replace(shard, state="failed", detail=f"{said}; the shard's process was stopped "
                       f"(log {shard.log_path})", scheduler=said)
    return replace(shard, state="failed", detail=f"{said}; {shard.detail}", scheduler=said)


def with_slurm_states(run_dir: Path, manifest: dict[str, Any],
                      shards: list[ShardState]) -> list[ShardState]:
    """``shards`` with the Slurm state of each unfinished shard's job (one squeue call)."""
    jobs = {i: j for i, j in slurm_jobs(manifest, shards).items()
            if any(s.index == i and s.state != "done" for s in shards)}
    if not jobs:
        return shards
    from fer_bench.launch.slurm import query_states, submitit_stderr

    folder = Path(run_dir) / "submitit"
    states = query_states(jobs.values(), {j: submitit_stderr(folder, j) for j in jobs.values()})
    return [slurm_verdict(s, states[jobs[s.index]]) if s.index in jobs else s for s in shards]


def run_status(run_dir: str | Path) -> RunStatus:
    """Read the status of the launch in ``run_dir`` (``DataError`` when it holds none)."""
    run_dir = Path(run_dir)
    manifest = read_manifest(run_dir)
    count = int(manifest["shards"])
    shards = with_slurm_states(run_dir, manifest, [shard_state(run_dir, i) for i in range(1, count + 1)])
    status = RunStatus(run_dir, manifest, shards)
    plans = {s.index: read_json(shard_file(run_dir, s.index, "plan.json")) for s in shards}
    grid = next((p["all"] for p in plans.values() if isinstance(p, dict) and p.get("all")), None)
    for shard in shards:
        plan = plans[shard.index]
        if isinstance(plan, dict) and isinstance(plan.get("mine"), list):
            mine = plan["mine"]
        elif grid is not None:
            mine = select_shard(grid, (shard.index, count))
        else:
            continue
        status.cells.update(_cell_states(run_dir, shard, mine))
        status.cell_shard.update(dict.fromkeys(mine, shard.index))
    store = manifest.get("store")
    if store:
        from fer_bench.results.store import ResultStore

        shared = ResultStore(store)
        for claim in shared.claims():
            if claim.stale_reason(shared.claim_settings) is None:
                status.claims_live += 1
            else:
                status.claims_stale += 1
        status.in_progress = shared.checkpoints()
    return status


def _size(size: int) -> str:
    """``size`` bytes in MiB (KiB under one MiB), one decimal."""
    return f"{size / 2**20:.1f} MiB" if size >= 2**20 else f"{size / 2**10:.1f} KiB"


def format_in_progress(info: Any) -> str:
    """One checkpoint as ``--status`` shows it: ``<cell> epoch 4/9 (checkpoint 5.2 MiB,
    12:03:11 UTC)``; ``epoch`` is the last finished epoch, the time the checkpoint's write."""
    when = info.written_at[11:19] if len(info.written_at) >= 19 else info.written_at
    return (f"{info.cell_id} epoch {info.epoch}/{info.epochs} "
            f"(checkpoint {_size(info.size)}, {when} UTC)")


def format_status(status: RunStatus) -> str:
    """The human summary ``--status`` prints."""
    manifest, count = status.manifest, len(status.shards)
    cells, shards = status.cell_counts(), status.shard_counts()
    lines = [f"run {status.run_dir}: {count} shards, engine {manifest.get('engine')}, "
             f"store {manifest.get('store')}"]
    if status.grid_known:
        lines.append(f"cells: {len(status.cells)} in the grid · " +
                     " · ".join(f"{cells[s]} {s}" for s in CELL_STATES))
    else:
        lines.append("cells: the grid is not known yet (no shard has collected it)")
    lines.append("shards: " + " · ".join(f"{shards[s]} {s}" for s in SHARD_STATES))
    jobs = manifest.get("jobs") or {}
    for shard in status.shards:
        if shard.state == "done" and shards["done"] == count:
            continue
        mine = [n for n, i in status.cell_shard.items() if i == shard.index]
        finished = sum(status.cells[n] in (CellState.DONE, CellState.FAILED, CellState.SKIPPED)
                       for n in mine)
        job = f", job {jobs[str(shard.index)]}" if str(shard.index) in jobs else ""
        progress = f"; {finished}/{len(mine)} cells finished" if mine else ""
        again = status.requeue_count(shard.index)
        again_text = f"; requeued {again} time(s)" if again else ""
        lines.append(f"  shard {shard.index}/{count}: {shard.state}: {shard.detail}{job}{progress}"
                     f"{again_text}")
    for state in (CellState.FAILED, CellState.RUNNING):
        nodes = sorted(n for n, s in status.cells.items() if s == state)
        if nodes:
            lines.append(f"{state} cells:")
            lines += [f"  {n} (shard {status.cell_shard[n]})" for n in nodes]
    lines += [f"in progress: {format_in_progress(c)}" for c in status.in_progress]
    shown = status.requeues[-REQUEUES_SHOWN:]
    if status.requeues:
        earlier = len(status.requeues) - len(shown)
        lines.append(f"requeues: {len(status.requeues)}" + (f" ({earlier} earlier not shown)"
                                                             if earlier else ""))
        lines += [f"  {format_requeue(r)}" for r in shown]
    lines.append(f"store claims: {status.claims_live} held, {status.claims_stale} stale "
                 "(a stale claim is taken over by the next process that reaches its cell)")
    if status.complete:
        lines.append(f"complete: merge with `fer-bench leaderboard {status.run_dir}`")
    elif shards["failed"] or (shards["missing"] and not shards["running"]):
        lines.append(f"relaunch the unfinished shards: `fer-bench launch --resume {status.run_dir}` "
                     "(finished cells are read from the store)")
    return "\n".join(lines)
