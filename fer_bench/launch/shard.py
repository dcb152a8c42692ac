"""One shard = one pytest process: its command line, and ``run_shard``, what every engine runs.

``run_shard(task)`` runs (cwd, interpreter and arguments from the run's manifest)::

    python -m pytest <selection and options> --fer-shard i/n --fer-results STORE \\
        --benchmark-json RUN_DIR/shards/shard-i.pytest.json \\
        -p fer_bench.launch.probe --fer-launch-dir RUN_DIR --fer-launch-shard i

with its output appended to ``logs/shard-i.log`` and its state (host, pid, attempt, exit
code, Slurm job id) in ``shards/shard-i.state.json``. The pytest process dies with its
wrapper (``$FER_BENCH_LAUNCH_PARENT``, see ``probe``): a shard whose wrapper was killed (a
Ray worker, say) leaves no orphan training on. In a Slurm job the wrapper and pytest ignore
SIGUSR2, submitit's own warning signal, which would kill pytest at once (its default
action) while submitit's handler left the wrapper to end the job early. The engine asks
Slurm for SIGTERM before the time limit instead (``--signal=TERM@<lead>``, see ``requeue``):
submitit's handler ignores it in the wrapper, pytest stops its cell at a safe point and
exits 75, and the launcher submits the shard again. When pytest exits normally (0: all
passed, 1: some cells failed, 5: no cell) the JSON is checked and published as
``RUN_DIR/shard-i.json``
through ``fileio`` (so that file is either absent or complete). pytest-benchmark writes
nothing when no cell of the shard reached an epoch; then a JSON holding those cells'
records as ``fer_bench.untimed_failures`` is published instead, so they are not lost.
Engines pickle ``ShardTask`` and ``run_shard`` (submitit, Ray): both are module-level.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from fer_bench.fileio import atomic_write_text
from fer_bench.results.rundir import (
    FINISHED_CODES,
    HEARTBEAT_S,
    json_problem,
    read_events,
    read_json,
    read_manifest,
    shard_file,
    shard_json,
    shard_log,
    write_json,
)


@dataclass(frozen=True)
class ShardTask:
    """Shard ``index`` (1-based) of ``count`` in ``run_dir``.

    ``gpus``: the ``CUDA_VISIBLE_DEVICES`` the shard's pytest gets ("" hides every GPU;
    None keeps what the engine's environment has). ``memory_fraction``: cap of the CUDA
    allocator per visible GPU (Ray's fractional GPUs), None for no cap.
    """

    run_dir: str
    index: int
    count: int
    gpus: str | None = None
    memory_fraction: float | None = None


def shard_command(manifest: dict[str, Any], task: ShardTask) -> list[str]:
    """The pytest command line of ``task`` (see the module docstring)."""
    run_dir = str(Path(task.run_dir).resolve())
    command = [manifest.get("python") or sys.executable, "-m", "pytest", *manifest["pytest_args"],
               "--fer-shard", f"{task.index}/{task.count}", "--fer-results", manifest["store"],
               "--benchmark-json", str(shard_file(Path(run_dir), task.index, "pytest.json")),
               "-p", "fer_bench.launch.probe", "--fer-launch-dir", run_dir,
               "--fer-launch-shard", str(task.index)]
    if task.memory_fraction:
        command += ["--fer-launch-memory-fraction", f"{task.memory_fraction:.4f}"]
    return command


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def slurm_job_id(environ: dict[str, str] | None = None) -> str | None:
    """This process's Slurm job as squeue names it ("12_1" for an array task), else None."""
    environ = dict(os.environ) if environ is None else environ
    array, task = environ.get("SLURM_ARRAY_JOB_ID"), environ.get("SLURM_ARRAY_TASK_ID")
    return f"{array}_{task}" if array and task else environ.get("SLURM_JOB_ID") or None


def _ignore_slurm_warning() -> bool:
    """In a Slurm job's main thread: ignore SIGUSR2 here and in the pytest started next (an
    ignored signal stays ignored across exec). See the module docstring."""
    if not os.environ.get("SLURM_JOB_ID") or threading.current_thread() is not threading.main_thread():
        return False
    signal.signal(signal.SIGUSR2, signal.SIG_IGN)
    return True


def run_shard(task: ShardTask) -> int:
    """Run shard ``task`` to its end; returns pytest's exit code (negative: killed by a
    signal). Never raises for a failing shard: the state file and the log tell."""
    from fer_bench.results.claims import HOST, PIDNS

    run_dir = Path(task.run_dir)
    manifest = read_manifest(run_dir)
    command = shard_command(manifest, task)
    env = dict(os.environ, FER_BENCH_LAUNCH_PARENT=str(os.getpid()))
    if task.gpus is not None:
        env["CUDA_VISIBLE_DEVICES"] = task.gpus
    ignoring_usr2 = _ignore_slurm_warning()
    state_path = shard_file(run_dir, task.index, "state.json")
    attempt = int((read_json(state_path) or {}).get("attempt") or 0) + 1
    for stale in (shard_json(run_dir, task.index), shard_file(run_dir, task.index, "pytest.json")):
        stale.unlink(missing_ok=True)          # a rerun shard starts from nothing of its own
    log_path = shard_log(run_dir, task.index)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    state: dict[str, Any] = {
        "shard": task.index, "of": task.count, "attempt": attempt, "host": HOST, "pidns": PIDNS,
        "wrapper_pid": os.getpid(), "started": _now(), "gpus": task.gpus,
        "memory_fraction": task.memory_fraction, "command": command,
        "slurm_job": slurm_job_id(),
    }
    with open(log_path, "a", encoding="utf-8") as log:
        log.write(f"=== fer-bench launch: shard {task.index}/{task.count}, attempt {attempt}, "
                  f"{HOST}, {_now()}\n=== {' '.join(command)}\n")
        if ignoring_usr2:
            log.write(f"=== Slurm job {state['slurm_job']}: SIGUSR2 (submitit's time-limit "
                      "warning) is ignored; SIGTERM before the time limit stops the cell at a "
                      "safe point (exit 75: the launcher requeues the shard)\n")
        log.flush()
        try:
            process = subprocess.Popen(command, cwd=manifest.get("cwd") or None, env=env,
                                       stdout=log, stderr=subprocess.STDOUT)
        except OSError as exc:
            log.write(f"=== could not start pytest: {exc}\n")
            write_json(state_path, {**state, "state": "finished", "exit_code": 127,
                                    "finished": _now()})
            return 127
        write_json(state_path, {**state, "state": "running", "pid": process.pid})
        while True:                 # the state file's mtime is the shard's heartbeat
            try:
                code = process.wait(timeout=HEARTBEAT_S)
                break
            except subprocess.TimeoutExpired:
                with contextlib.suppress(OSError):
                    os.utime(state_path)
        note = publish(run_dir, task) if code in FINISHED_CODES else "not published"
        log.write(f"=== pytest exited with {code}; results: {note}\n")
    write_json(state_path, {**state, "state": "finished", "pid": process.pid, "exit_code": code,
                            "finished": _now(), "published": note})
    return code


def publish(run_dir: Path, task: ShardTask) -> str:
    """Check the shard's pytest JSON and publish it as ``shard-<i>.json``; returns a note."""
    written = shard_file(run_dir, task.index, "pytest.json")
    target = shard_json(run_dir, task.index)
    problem = json_problem(written)
    if problem is None:
        atomic_write_text(target, written.read_text(encoding="utf-8"))
        written.unlink(missing_ok=True)
        return str(target)
    if problem != "missing":
        return f"{written} {problem}"
    plan = read_json(shard_file(run_dir, task.index, "plan.json"))
    if not isinstance(plan, dict):
        return "pytest wrote no JSON and never finished collecting"
    events = read_events(run_dir, task.index)
    starts = [n for n, event in enumerate(events) if event.get("event") == "session"]
    untimed = [event["record"] for event in events[starts[-1] if starts else 0:]
               if event.get("event") == "finish" and isinstance(event.get("record"), dict)]
    document = {
        "benchmarks": [],
        "fer_bench": {"shard": f"{task.index}/{task.count}", "untimed_failures": untimed,
                      "note": "written by fer-bench launch: pytest-benchmark kept no entry "
                              "(no cell of this shard reached an epoch)"},
    }
    atomic_write_text(target, json.dumps(document, indent=1))
    return f"{target} ({len(untimed)} untimed cells, no benchmark entries)"
