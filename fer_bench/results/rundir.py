"""The run folder of ``fer-bench launch``: what lies where, and reading it back.

::

    RUN_DIR/
      manifest.json              the launch: shards, pytest arguments, store, engine, cwd
      shard-<i>.json             shard i's pytest-benchmark JSON, published (validated, atomic)
                                 only once its pytest process exited normally
      logs/shard-<i>.log         shard i's pytest output (appended on every attempt)
      shards/shard-<i>.state.json  running/finished, host, pid, exit code, attempt, times
      shards/shard-<i>.plan.json   the grid as collected (all cells) and this shard's cells
      shards/shard-<i>.events.jsonl  one line per cell started / finished (the probe plugin)
      shards/shard-<i>.pytest.json   where pytest-benchmark writes before publication
      leaderboard/               the merged leaderboard (``--out`` default)
      submitit/                  submitit's own job files (submitit engine)

A shard is **done** when ``shard-<i>.json`` exists and parses (or its plan holds no cell);
**failed** when its process exited abnormally or its JSON is missing or unreadable after it
exited; **running** while its process lives; **missing** when it never started. This module
only reads and writes files (no torch, no pytest): the leaderboard imports it to read a run
folder.
"""

from __future__ import annotations

import json
import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fer_bench.errors import DataError
from fer_bench.fileio import atomic_write_text

MANIFEST = "manifest.json"
MANIFEST_FORMAT = 1
#: pytest exit codes of a shard that ran to its end: all passed, some cells failed, no cell.
FINISHED_CODES = (0, 1, 5)
#: A running shard's wrapper touches its state file this often (seconds); a shard on another
#: host whose state file is older than ``STATE_STALE_S`` is taken for dead (its job killed).
HEARTBEAT_S, STATE_STALE_S = 30.0, 300.0
#: The exit status of a shard stopped by SIGTERM/SIGUSR1 after checkpointing its cell
#: (``fer_bench.training.preempt.REQUEUE_EXIT``, not imported: this module loads no torch).
#: Such a shard is failed for ``--resume`` (which reruns it), but reported as preempted.
PREEMPTED_EXIT = 75


def manifest_path(run_dir: Path) -> Path:
    return Path(run_dir) / MANIFEST


def shard_json(run_dir: Path, index: int) -> Path:
    return Path(run_dir) / f"shard-{index}.json"


def shard_log(run_dir: Path, index: int) -> Path:
    return Path(run_dir) / "logs" / f"shard-{index}.log"


def shard_file(run_dir: Path, index: int, kind: str) -> Path:
    """``shards/shard-<i>.<kind>``: kind is state.json, plan.json, events.jsonl, pytest.json."""
    return Path(run_dir) / "shards" / f"shard-{index}.{kind}"


def write_json(path: Path, data: Any) -> Path:
    return atomic_write_text(path, json.dumps(data, indent=1, sort_keys=True))


def read_json(path: Path) -> Any | None:
    """The JSON at ``path``; None when missing or unreadable (a torn file counts as absent)."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def read_manifest(run_dir: Path) -> dict[str, Any]:
    """The run's manifest; ``DataError`` when ``run_dir`` holds no launch."""
    path = manifest_path(run_dir)
    data = read_json(path)
    if not isinstance(data, dict) or not isinstance(data.get("shards"), int):
        state = "unreadable" if path.exists() else "missing"
        raise DataError(f"{run_dir}: not a fer-bench launch folder ({MANIFEST} {state})")
    return data


def read_events(run_dir: Path, index: int) -> list[dict[str, Any]]:
    """The shard's cell events in order; a torn last line (killed mid-write) is skipped."""
    try:
        lines = shard_file(run_dir, index, "events.jsonl").read_text(encoding="utf-8").splitlines()
    except OSError:
        return []
    events = []
    for line in lines:
        try:
            event = json.loads(line)
        except ValueError:
            continue
        if isinstance(event, dict):
            events.append(event)
    return events


def describe_exit(code: int | None) -> str:
    if code is None:
        return "no exit code"
    if code < 0:
        try:
            return f"exit {code} (killed by {signal.Signals(-code).name})"
        except ValueError:
            return f"exit {code} (killed by signal {-code})"
    meaning = {2: "interrupted", 3: "pytest internal error", 4: "pytest usage error",
               PREEMPTED_EXIT: "preempted, requeueable: its cell's checkpoint is kept; "
                               "`--resume` continues it"}.get(code)
    return f"exit {code}" + (f" ({meaning})" if meaning else "")


@dataclass(frozen=True)
class ShardState:
    """One shard as its files tell it. ``state``: done, failed, running or missing."""

    index: int
    state: str
    detail: str
    json_path: Path
    log_path: Path
    host: str = ""
    pid: int = 0
    exit_code: int | None = None
    attempt: int = 0
    slurm_job: str = ""         # the Slurm job the shard's state file was written in
    scheduler: str = ""         # what the scheduler says (``status``: "Slurm job 4_1 TIMEOUT")


def json_problem(path: Path) -> str | None:
    """None when ``path`` is readable pytest-benchmark JSON, else what is wrong with it."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return "missing"
    except OSError as exc:
        return f"unreadable ({exc.strerror or exc})"
    try:
        document = json.loads(text)
    except ValueError as exc:
        return f"truncated or invalid JSON ({exc})"
    if not isinstance(document, dict) or not isinstance(document.get("benchmarks"), list):
        return "not pytest-benchmark JSON (no 'benchmarks' list)"
    return None


def shard_state(run_dir: Path, index: int, *, alive: Any = None) -> ShardState:
    """Where shard ``index`` stands. ``alive(host, pidns, pid)`` tells whether a process
    still runs (default: ``fer_bench.results.claims``' check, same host only)."""
    from fer_bench.results.claims import HOST, PIDNS, pid_alive

    run_dir = Path(run_dir)
    out, log = shard_json(run_dir, index), shard_log(run_dir, index)
    state = read_json(shard_file(run_dir, index, "state.json")) or {}
    plan = read_json(shard_file(run_dir, index, "plan.json")) or {}
    host, pid = str(state.get("host", "")), int(state.get("pid") or 0)
    code = state.get("exit_code")
    common = dict(json_path=out, log_path=log, host=host, pid=pid, exit_code=code,
                  attempt=int(state.get("attempt") or 0), slurm_job=str(state.get("slurm_job") or ""))
    problem = json_problem(out)
    if state.get("state") == "running":
        if alive is None:
            try:
                age = time.time() - shard_file(run_dir, index, "state.json").stat().st_mtime
            except OSError:
                age = 0.0

            def alive(h: str, ns: str, p: int) -> bool:
                if h == HOST and ns == PIDNS:
                    return pid_alive(p)
                return age < STATE_STALE_S       # another host: its heartbeat
        pidns = str(state.get("pidns", ""))
        if any(alive(host, pidns, p) for p in {pid, int(state.get("wrapper_pid") or 0)} if p):
            return ShardState(index, "running", f"running on {host} (pid {pid})", **common)
        return ShardState(index, "failed", f"its process on {host} died or stopped beating "
                          f"(pid {pid}; killed, or its job hit the time limit?); log {log}", **common)
    if problem is None:
        return ShardState(index, "done", "done", **common)
    if state.get("state") == "finished":
        if code in FINISHED_CODES and problem == "missing" and plan.get("mine") == []:
            return ShardState(index, "done", "done (no cell in this shard)", **common)
        if code == PREEMPTED_EXIT:
            return ShardState(index, "failed", f"preempted, requeueable (exit {code}): "
                              f"`--resume` continues its cells from their checkpoints; log {log}",
                              **common)
        why = describe_exit(code) if code not in FINISHED_CODES else "finished"
        return ShardState(index, "failed", f"{why}; {out.name} {problem}; log {log}", **common)
    if problem != "missing":
        return ShardState(index, "failed", f"{out.name} {problem}", **common)
    return ShardState(index, "missing", "not started (or pending in the scheduler)", **common)


def run_shard_files(run_dir: Path) -> list[Path]:
    """The shard JSON files of a complete run folder, for the leaderboard.

    With a manifest: every shard must be done; otherwise ``DataError`` names each shard that
    is missing, running, failed or unreadable (never silently dropped). Without one: every
    ``*.json`` directly inside ``run_dir``, each checked the same way.
    """
    run_dir = Path(run_dir)
    if not manifest_path(run_dir).exists():
        files = sorted(p for p in run_dir.glob("*.json") if p.is_file())
        if not files:
            raise DataError(f"{run_dir}: no pytest-benchmark JSON files in this folder")
        bad = [f"  {p}: {why}" for p in files if (why := json_problem(p)) is not None]
        if bad:
            raise DataError(f"{run_dir}: {len(bad)} of {len(files)} JSON files cannot be read:\n"
                            + "\n".join(bad))
        return files
    manifest = read_manifest(run_dir)
    states = [shard_state(run_dir, i) for i in range(1, manifest["shards"] + 1)]
    bad = [s for s in states if s.state != "done"]
    if bad:
        lines = [f"  shard {s.index}/{manifest['shards']} ({s.json_path}): {s.state}: {s.detail}"
                 for s in bad]
        raise DataError(
            f"run folder {run_dir} is incomplete: {len(bad)} of {manifest['shards']} shards have "
            f"no usable results:\n" + "\n".join(lines) + "\nsee `fer-bench launch --status "
            f"{run_dir}`; relaunch the unfinished shards with `fer-bench launch --resume {run_dir}`")
    return [s.json_path for s in states if s.json_path.exists()]


def atomic_append_line(path: Path, line: str) -> None:
    """Append one line with a single ``write`` on an ``O_APPEND`` handle (lines from one
    writer never interleave; a kill can at worst tear the last one, which readers skip)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
    try:
        os.write(fd, (line.rstrip("\n") + "\n").encode("utf-8"))
    finally:
        os.close(fd)
