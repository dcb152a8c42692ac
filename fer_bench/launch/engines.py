"""Engines: where the shards of a launch run. One small interface, three implementations.

``Engine.run(tasks) -> {shard index: exit code, or None when the engine lost the shard}``
blocks until every shard ended (``submit`` on the Slurm engine returns after submission
instead, for ``--detach``). Each shard is ``fer_bench.launch.shard.run_shard(task)``: one
pytest process; what it did is in the run folder, whatever the engine reports.

* ``LocalEngine(workers, gpus)``: a pool of ``workers`` shard processes on this machine (the
  default). ``gpus`` ("0,1") deals one CUDA device to each shard in turn.
* ``SubmititEngine(cluster="slurm"|"local", ...)``: a Slurm job array through submitit's
  ``map_array`` (partition, time, GPUs and CPUs per shard, memory, array parallelism, setup
  lines); ``cluster="local"`` is submitit's local executor (tests, a workstation). Two of
  that executor's defaults are traps and are always set here: ``timeout_min`` (the local
  executor kills a job after **2 minutes** unless told otherwise; Slurm's default here is 5)
  and GPU visibility (the local controller exports ``CUDA_VISIBLE_DEVICES`` = the first
  ``gpus_per_node`` ids, i.e. **"" with no GPUs**, the same for every job of an array). So
  every shard gets ``CUDA_VISIBLE_DEVICES`` explicitly: its own dealt ids locally, "" for a
  CPU shard; on Slurm a GPU shard keeps the devices Slurm bound to it. On Slurm each shard
  asks for SIGTERM before its time limit (``--signal=TERM@<lead>``), and a shard that ended
  preempted or timed out is submitted again, up to ``max_requeues`` times
  (``fer_bench.launch.requeue``: the design, and why not submitit's own requeue).
* ``RayEngine(address, gpus_per_shard, cpus_per_shard)`` (the ``ray`` extra): one Ray task
  per shard; ``gpus_per_shard`` may be a fraction (0.25: four small 48x48 models share a
  GPU), and each shard process then caps its CUDA allocator at that fraction
  (``torch.cuda.set_per_process_memory_fraction``, in the probe plugin). Tasks are not
  retried by Ray (``max_retries=0``): ``fer-bench launch --resume`` reruns failed shards
  and the shared store keeps every finished cell. A Ray worker inherits the raylet's
  environment, not the launcher's: each task gets the launcher's (``runtime_env``
  ``env_vars``, less Ray's own variables and ``CUDA_VISIBLE_DEVICES``), as ``sbatch``
  exports it to a Slurm job. A killed worker is a shard lost by the engine (its pytest
  dies with it, see ``shard``).

On Slurm the launcher does not wait through submitit's ``job.result()``, which asks
``sacct`` and, without accounting, waits forever for a job that never writes its result:
``fer_bench.launch.slurm.wait_slurm`` asks Slurm itself and reports a shard that did not
run to its end with its Slurm state (CANCELLED, TIMEOUT, ...) within seconds.
"""

from __future__ import annotations

import importlib
import os
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import ModuleType
from typing import Any

from fer_bench.errors import ConfigError
from fer_bench.launch.requeue import DEFAULT_MAX_REQUEUES, Requeuer, signal_lead_s
from fer_bench.launch.shard import ShardTask, run_shard
from fer_bench.launch.slurm import wait_slurm
from fer_bench.results.rundir import (
    describe_exit,
    manifest_path,
    read_manifest,
    write_json,
)

Results = dict[int, "int | None"]
Report = Callable[[str], None]


def require_extra(module: str, engine: str) -> ModuleType:
    """Import ``module`` or raise ``ConfigError`` naming the extra that installs it."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise ConfigError(f"the {engine} engine needs the '{module}' package, which is not "
                          f"installed here ({exc}); install the extra: "
                          f"pip install 'fer-bench[{module}]'") from None


def parse_gpu_list(text: str | None) -> list[str]:
    """"0,1,3" -> ["0", "1", "3"]; None/"" -> []."""
    return [part.strip() for part in (text or "").split(",") if part.strip()]


def deal_gpus(devices: Sequence[str], per_shard: int, index: int) -> str:
    """The ``CUDA_VISIBLE_DEVICES`` of shard ``index`` (1-based): ``per_shard`` ids taken in
    turn from ``devices`` (shards share devices when there are more shards than devices)."""
    if per_shard <= 0 or not devices:
        return ""
    start = (index - 1) * per_shard
    return ",".join(devices[(start + k) % len(devices)] for k in range(min(per_shard, len(devices))))


class Engine:
    """Runs shard tasks; see the module docstring."""

    name = "engine"

    def options(self) -> dict[str, Any]:
        """What the manifest records about this engine (enough to rebuild it on --resume)."""
        return {}

    def check(self) -> None:
        """Raise ``ConfigError`` before anything is written when this engine cannot run
        here (its extra is not installed, an option is out of range)."""

    def run(self, tasks: Sequence[ShardTask], report: Report = print) -> Results:
        raise NotImplementedError


def _finished(report: Report, task: ShardTask, code: int | None, seconds: float, note: str = "") -> None:
    if code is None:
        what = f"lost by the engine: {note}"
    else:
        what = describe_exit(code) + (f"; {note}" if note else "")
    report(f"shard {task.index}/{task.count} finished: {what} ({seconds:.0f}s)")


@dataclass
class LocalEngine(Engine):
    """``workers`` shard processes at a time on this machine."""

    workers: int = 2
    gpus: str | None = None
    name = "local"

    def options(self) -> dict[str, Any]:
        return {"workers": self.workers, "gpus": self.gpus}

    def check(self) -> None:
        if self.workers < 1:
            raise ConfigError(f"--workers must be >= 1, got {self.workers}")

    def run(self, tasks: Sequence[ShardTask], report: Report = print) -> Results:
        devices = parse_gpu_list(self.gpus)
        if self.gpus is not None:
            tasks = [replace(t, gpus=deal_gpus(devices, 1, t.index)) for t in tasks]

        def one(task: ShardTask) -> int:
            start = time.monotonic()
            code = run_shard(task)
            _finished(report, task, code, time.monotonic() - start)
            return code

        with ThreadPoolExecutor(max_workers=max(1, self.workers)) as pool:
            codes = list(pool.map(one, tasks))
        return {task.index: code for task, code in zip(tasks, codes, strict=True)}


@dataclass
class SubmititEngine(Engine):
    """A job array through submitit: Slurm, or submitit's local executor."""

    cluster: str = "slurm"
    partition: str | None = None
    time_min: int = 720
    gpus_per_shard: int = 0
    cpus_per_shard: int = 2
    mem_gb: float | None = None
    array_parallelism: int | None = None
    setup: list[str] = field(default_factory=list)
    visible_gpus: str | None = None          # local cluster: the devices dealt to shards
    max_requeues: int = DEFAULT_MAX_REQUEUES  # Slurm: resubmissions of a preempted shard
    signal_lead_s: int | None = None         # Slurm: SIGTERM this long before the limit
    name = "submitit"

    def options(self) -> dict[str, Any]:
        return {"cluster": self.cluster, "partition": self.partition, "time_min": self.time_min,
                "gpus_per_shard": self.gpus_per_shard, "cpus_per_shard": self.cpus_per_shard,
                "mem_gb": self.mem_gb, "array_parallelism": self.array_parallelism,
                "setup": list(self.setup), "visible_gpus": self.visible_gpus,
                "max_requeues": self.max_requeues, "signal_lead_s": self.signal_lead_s}

    @property
    def lead_s(self) -> int:
        """Seconds before the time limit at which Slurm sends the shard SIGTERM (the option,
        else ``requeue.signal_lead_s(time_min)``)."""
        return self.signal_lead_s if self.signal_lead_s is not None else signal_lead_s(self.time_min)

    def check(self) -> None:
        require_extra("submitit", "submitit")
        if self.cluster not in ("slurm", "local"):
            raise ConfigError(f"--cluster: expected slurm or local, got {self.cluster!r}")
        if self.time_min < 1:
            raise ConfigError(f"--time-min must be >= 1 minute, got {self.time_min}")
        if int(self.gpus_per_shard) != self.gpus_per_shard or self.gpus_per_shard < 0:
            raise ConfigError(f"--gpus-per-shard: the submitit engine takes whole GPUs, got "
                              f"{self.gpus_per_shard} (fractions: --engine ray)")
        if self.max_requeues < 0:
            raise ConfigError(f"--max-requeues: give a whole number >= 0, got {self.max_requeues}")
        if self.signal_lead_s is not None and not 1 <= self.signal_lead_s < self.time_min * 60:
            raise ConfigError(f"--signal-lead-s: give seconds >= 1 and below the time limit "
                              f"({self.time_min * 60} s), got {self.signal_lead_s}")

    def executor(self, folder: Path, count: int) -> Any:
        """A configured submitit executor (``timeout`` and GPUs always explicit)."""
        submitit = require_extra("submitit", "submitit")
        self.check()
        gpus = int(self.gpus_per_shard)
        if self.cluster == "local":
            executor = submitit.LocalExecutor(folder=folder)
            executor.update_parameters(timeout_min=self.time_min, gpus_per_node=gpus,
                                       cpus_per_task=self.cpus_per_shard)
            return executor
        try:
            executor = submitit.SlurmExecutor(folder=folder)
        except RuntimeError as exc:      # no srun: not on a Slurm cluster
            raise ConfigError(f"submitit cannot reach Slurm here ({exc}); run fer-bench launch "
                              "on the cluster's login node, or use --cluster local") from None
        executor.update_parameters(**self.slurm_parameters(count))
        return executor

    def slurm_parameters(self, count: int) -> dict[str, Any]:
        """What each array task asks Slurm for (submitit's ``SlurmExecutor`` parameters)."""
        params: dict[str, Any] = {
            "time": self.time_min, "gpus_per_node": int(self.gpus_per_shard),
            "cpus_per_task": int(self.cpus_per_shard),
            "ntasks_per_node": 1, "nodes": 1, "job_name": "fer-bench",
            "array_parallelism": self.array_parallelism or count,
            # replaces submitit's --signal=USR2@90 (see fer_bench.launch.requeue)
            "additional_parameters": {"signal": f"TERM@{self.lead_s}"},
        }
        if self.partition:
            params["partition"] = self.partition
        if self.mem_gb:
            params["mem"] = f"{self.mem_gb:g}GB"
        if self.setup:
            params["setup"] = list(self.setup)
        return params

    def preview(self, count: int, folder: str = "RUN_DIR/submitit") -> str:
        """The ``#SBATCH`` lines of the array (submitit's own rendering; no Slurm needed)."""
        params = self.slurm_parameters(count)
        try:
            from submitit.slurm.slurm import _make_sbatch_string  # private: preview only

            text = _make_sbatch_string(command="<run_shard>", folder=folder,
                                       map_count=count, **params)
            return "\n".join(line for line in text.splitlines() if line.startswith("#SBATCH"))
        except Exception:
            return "\n".join(f"{key}={value}" for key, value in sorted(params.items()))

    def _with_gpus(self, tasks: Sequence[ShardTask]) -> list[ShardTask]:
        gpus = int(self.gpus_per_shard)
        if gpus == 0:
            return [replace(t, gpus="") for t in tasks]          # a CPU shard sees no GPU
        if self.cluster == "slurm":
            return [replace(t, gpus=None) for t in tasks]        # Slurm binds its devices
        devices = parse_gpu_list(self.visible_gpus) or \
            parse_gpu_list(os.environ.get("CUDA_VISIBLE_DEVICES")) or [str(k) for k in range(gpus)]
        return [replace(t, gpus=deal_gpus(devices, gpus, t.index)) for t in tasks]

    def submit(self, tasks: Sequence[ShardTask], folder: Path) -> list[Any]:
        """Submit every task as one array; returns submitit jobs (does not wait)."""
        return list(self.executor(folder, len(tasks)).map_array(run_shard, self._with_gpus(tasks)))

    def run(self, tasks: Sequence[ShardTask], report: Report = print) -> Results:
        if not tasks:
            return {}
        folder = Path(tasks[0].run_dir) / "submitit"
        tasks = self._with_gpus(tasks)
        executor = self.executor(folder, len(tasks))
        # The local executor has no array parallelism of its own: submit in windows.
        window = len(tasks) if self.cluster == "slurm" else (self.array_parallelism or len(tasks))
        results: Results = {}
        requeue_counts: dict[int, int] = {}
        for first in range(0, len(tasks), window):
            batch = list(tasks[first:first + window])
            start = time.monotonic()
            jobs = executor.map_array(run_shard, batch)
            report(f"submitted shards {batch[0].index}-{batch[-1].index} as {self.cluster} jobs "
                   f"{', '.join(str(j.job_id) for j in jobs)}")
            if self.cluster == "slurm":
                record_jobs(Path(batch[0].run_dir), batch, jobs)
                results.update(wait_slurm(
                    list(zip(batch, jobs, strict=True)), outcome=_job_outcome, start=start,
                    report=report, finished=lambda t, c, s, n: _finished(report, t, c, s, n),
                    requeue=Requeuer(Path(batch[0].run_dir), self.max_requeues,
                                     lambda task: executor.submit(run_shard, task), report,
                                     requeue_counts)))
                continue
            for task, job in zip(batch, jobs, strict=True):
                code, note = _job_outcome(job)
                _finished(report, task, code, time.monotonic() - start, note)
                results[task.index] = code
        return results


def record_jobs(run_dir: Path, tasks: Sequence[ShardTask], jobs: Sequence[Any]) -> None:
    """Note each shard's job id in the manifest (``jobs``): ``--status`` asks Slurm about it."""
    manifest = read_manifest(run_dir)
    manifest["jobs"] = {**(manifest.get("jobs") or {}),
                        **{str(t.index): str(j.job_id) for t, j in zip(tasks, jobs, strict=True)}}
    write_json(manifest_path(run_dir), manifest)


def _job_outcome(job: Any) -> tuple[int | None, str]:
    """(the shard's exit code, "") from a submitit job's result, or (None, what went wrong)."""
    try:
        return int(job.result()), ""
    except Exception as exc:    # submitit's FailedJobError, UncompletedJobError ...
        return None, f"{type(exc).__name__}: {str(exc).strip().splitlines()[-1:]}"


def ray_environment(environ: dict[str, str] | None = None) -> dict[str, str]:
    """What a Ray shard's environment gets from the launcher's: all of it but Ray's own
    variables and ``CUDA_VISIBLE_DEVICES`` (Ray sets that per worker)."""
    environ = dict(os.environ) if environ is None else environ
    return {k: v for k, v in environ.items()
            if not k.startswith("RAY_") and k != "CUDA_VISIBLE_DEVICES"}


def _ray_shard(task: ShardTask) -> int:
    """Runs inside a Ray worker: the GPUs Ray assigned become the shard's, explicitly."""
    import ray

    ids = [str(i) for i in ray.get_gpu_ids()]
    return run_shard(replace(task, gpus=",".join(ids)))


@dataclass
class RayEngine(Engine):
    """One Ray task per shard, with (fractional) GPUs and CPUs per shard."""

    address: str | None = None
    gpus_per_shard: float = 0.0
    cpus_per_shard: float = 1.0
    name = "ray"

    def options(self) -> dict[str, Any]:
        return {"address": self.address, "gpus_per_shard": self.gpus_per_shard,
                "cpus_per_shard": self.cpus_per_shard}

    def check(self) -> None:
        require_extra("ray", "ray")
        if self.gpus_per_shard < 0 or (self.gpus_per_shard > 1 and self.gpus_per_shard % 1):
            raise ConfigError(f"--gpus-per-shard: a fraction <= 1 or a whole number, got "
                              f"{self.gpus_per_shard}")

    def run(self, tasks: Sequence[ShardTask], report: Report = print) -> Results:
        ray = require_extra("ray", "ray")
        self.check()
        fraction = self.gpus_per_shard if 0 < self.gpus_per_shard < 1 else None
        ray.init(address=self.address, ignore_reinit_error=True, include_dashboard=False)
        remote = ray.remote(num_gpus=self.gpus_per_shard, num_cpus=self.cpus_per_shard,
                            max_retries=0)(_ray_shard).options(
            runtime_env={"env_vars": ray_environment()})
        start = time.monotonic()
        refs = {task.index: remote.remote(replace(task, memory_fraction=fraction)) for task in tasks}
        results: Results = {}
        for task in tasks:
            try:
                code: int | None = int(ray.get(refs[task.index]))
                note = ""
            except Exception as exc:   # ray.exceptions.RayTaskError, WorkerCrashedError ...
                first = next(iter(str(exc).strip().splitlines()), "")
                code, note = None, f"{type(exc).__name__}" + (f" ({first[:160]})" if first else "")
            _finished(report, task, code, time.monotonic() - start, note)
            results[task.index] = code
        return results


ENGINES: dict[str, type[Engine]] = {"local": LocalEngine, "submitit": SubmititEngine, "ray": RayEngine}


def make_engine(name: str, options: dict[str, Any]) -> Engine:
    """The engine called ``name`` with ``options`` (unknown keys are an error)."""
    if name not in ENGINES:
        raise ConfigError(f"--engine: unknown engine {name!r}; valid: {', '.join(ENGINES)}")
    cls = ENGINES[name]
    known = cls.__dataclass_fields__    # type: ignore[attr-defined]
    unknown = sorted(set(options) - set(known))
    if unknown:
        raise ConfigError(f"engine {name}: unknown options {unknown}")
    engine = cls(**options)
    engine.check()
    return engine
