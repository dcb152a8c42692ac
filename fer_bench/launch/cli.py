"""``fer-bench launch``: run a benchmark selection as N shards, watch them, merge them.

::

    fer-bench launch --shards 4 --workers 2 -- benchmarks/test_nhot.py --fer-profile smoke
    fer-bench launch --engine submitit --partition gpu --gpus-per-shard 1 --time-min 240 \\
        --shards 64 --array-parallelism 16 --run-dir runs/nhot -- benchmarks/ --fer-seeds 0-2
    fer-bench launch --status runs/nhot
    fer-bench launch --resume runs/nhot        # only shards that failed or never ran

On Slurm a shard is signalled before its time limit and, when it ends preempted or timed
out, submitted again (``--max-requeues``; ``fer_bench.launch.requeue``).

Everything after ``--`` goes to every shard's pytest unchanged; the launcher adds
``--fer-shard i/n``, ``--fer-results STORE`` and the shard's JSON path, so those (and
xdist's ``-n``: pytest-benchmark switches itself off under xdist) are refused there.
When every shard is done the run folder is merged into the leaderboard (``--out``,
default ``RUN_DIR/leaderboard``); a failed shard stops the merge and is named, with the
``--resume`` command that reruns it (its finished cells come back from the store).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import tempfile
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from fer_bench.errors import ConfigError, FerBenchError
from fer_bench.launch.engines import ENGINES, Engine, SubmititEngine, make_engine
from fer_bench.launch.shard import ShardTask
from fer_bench.launch.status import format_status, run_status
from fer_bench.results.rundir import MANIFEST_FORMAT, manifest_path, read_manifest, write_json

#: pytest options the launcher sets itself for every shard.
RESERVED = ("--fer-shard", "--benchmark-json", "--fer-results", "-n", "--numprocesses",
            "--dist", "--fer-launch-dir", "--fer-launch-shard")
#: Engine options: argparse dest -> (engines that take it, engine option name).
ENGINE_OPTIONS = {
    "workers": (("local",), "workers"), "gpus": (("local",), "gpus"),
    "cluster": (("submitit",), "cluster"), "partition": (("submitit",), "partition"),
    "time_min": (("submitit",), "time_min"), "mem_gb": (("submitit",), "mem_gb"),
    "array_parallelism": (("submitit",), "array_parallelism"), "setup": (("submitit",), "setup"),
    "visible_gpus": (("submitit",), "visible_gpus"),
    "max_requeues": (("submitit",), "max_requeues"), "signal_lead_s": (("submitit",), "signal_lead_s"),
    "gpus_per_shard": (("submitit", "ray"), "gpus_per_shard"),
    "cpus_per_shard": (("submitit", "ray"), "cpus_per_shard"),
    "ray_address": (("ray",), "address"),
}


def add_launch_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("pytest_args", nargs="*", metavar="PYTEST_ARG",
                        help="the selection and pytest/fer options for every shard, after --")
    parser.add_argument("--status", metavar="RUN_DIR", help="show where a launch stands and exit")
    parser.add_argument("--json", action="store_true", help="with --status: one JSON object")
    parser.add_argument("--resume", metavar="RUN_DIR",
                        help="rerun the shards of RUN_DIR that failed or never ran, then merge")
    parser.add_argument("--shards", type=int, default=None,
                        help="number of shards (default: --workers for local, else required)")
    parser.add_argument("--engine", choices=sorted(ENGINES), default=None, help="default local")
    parser.add_argument("--run-dir", default=None, help="run folder (default runs/<UTC time>)")
    parser.add_argument("--results", default=None,
                        help="the shared result store (default $FER_BENCH_RESULTS, else ./results)")
    parser.add_argument("--out", default=None, help="leaderboard folder (default RUN_DIR/leaderboard)")
    parser.add_argument("--no-merge", action="store_true", help="do not merge when all shards are done")
    parser.add_argument("--dry-run", action="store_true",
                        help="print each shard's command (and a Slurm array's #SBATCH lines) "
                             "and exit; nothing is written")
    parser.add_argument("--detach", action="store_true",
                        help="submitit engine: submit the array and return (merge later with "
                             "`fer-bench leaderboard RUN_DIR`)")
    local = parser.add_argument_group("local engine")
    local.add_argument("--workers", type=int, default=None,
                       help="shard processes at a time (default: min(shards, CPU count))")
    local.add_argument("--gpus", default=None, help="CUDA devices dealt to shards in turn, e.g. 0,1")
    sub = parser.add_argument_group("submitit engine (Slurm job array)")
    sub.add_argument("--cluster", choices=["slurm", "local"], default=None,
                     help="slurm (default) or submitit's local executor")
    sub.add_argument("--partition", default=None, help="Slurm partition (default: the cluster's)")
    sub.add_argument("--time-min", type=int, default=None, help="time limit per shard (default 720)")
    sub.add_argument("--mem-gb", type=float, default=None, help="memory per shard")
    sub.add_argument("--array-parallelism", type=int, default=None,
                     help="array tasks running at once (default: all)")
    sub.add_argument("--setup", action="append", default=None,
                     help="a shell line run before each shard (repeatable), e.g. 'module load cuda'")
    sub.add_argument("--visible-gpus", default=None, help="--cluster local: devices dealt to shards")
    sub.add_argument("--max-requeues", type=int, default=None,
                     help="Slurm: submit a shard that ended preempted or timed out again, at "
                          "most this many times per launch (default 3; 0: never)")
    sub.add_argument("--signal-lead-s", type=int, default=None,
                     help="Slurm: seconds before the time limit at which a shard gets SIGTERM "
                          "to checkpoint and stop (default: 10%% of --time-min, 10-180 s)")
    both = parser.add_argument_group("submitit and ray engines")
    both.add_argument("--gpus-per-shard", type=float, default=None,
                      help="GPUs per shard (ray: a fraction such as 0.25 shares a GPU)")
    both.add_argument("--cpus-per-shard", type=float, default=None, help="CPU cores per shard")
    ray = parser.add_argument_group("ray engine")
    ray.add_argument("--ray-address", default=None, help="an existing Ray cluster (default: start one)")


def _engine_options(args: argparse.Namespace, engine: str) -> dict[str, Any]:
    options: dict[str, Any] = {}
    for dest, (engines, name) in ENGINE_OPTIONS.items():
        value = getattr(args, dest, None)
        if value is None:
            continue
        if engine not in engines:
            raise ConfigError(f"--{dest.replace('_', '-')} is an option of the "
                              f"{' and '.join(engines)} engine, not of {engine}")
        if engine == "submitit" and name in ("gpus_per_shard", "cpus_per_shard"):
            if value != int(value):
                raise ConfigError(f"--{dest.replace('_', '-')}: the submitit engine takes whole "
                                  f"numbers, got {value} (fractional GPUs: --engine ray)")
            value = int(value)
        options[name] = value
    return options


#: Options that count something: each must be a whole number >= 1 when given.
COUNTS = ("shards", "workers", "array_parallelism", "time_min")


def check_counts(args: argparse.Namespace) -> None:
    """``ConfigError`` (exit 2) naming the option when a count is 0 or negative (argparse
    already refused what is not a whole number)."""
    for dest in COUNTS:
        value = getattr(args, dest, None)
        if value is not None and value < 1:
            raise ConfigError(f"--{dest.replace('_', '-')}: give a whole number >= 1, got {value}")


def _check_pytest_args(pytest_args: list[str]) -> list[str]:
    for arg in pytest_args:
        name = arg.split("=", 1)[0]
        if name in RESERVED or (name.startswith("-n") and name[2:].isdigit()):
            raise ConfigError(f"{arg!r} after --: fer-bench launch sets {name} itself for every "
                              f"shard (use --shards / --results; pytest-xdist disables "
                              f"pytest-benchmark, shards are separate pytest processes instead)")
    return pytest_args


Plan = tuple[Path, dict[str, Any], Engine, list[ShardTask]]


def new_run(args: argparse.Namespace) -> Plan:
    """Create the run folder and its manifest (not with ``--dry-run``); the run folder,
    manifest, engine and the shard tasks to run."""
    engine_name = args.engine or "local"
    options = _engine_options(args, engine_name)
    shards = args.shards
    if engine_name == "local":
        options.setdefault("workers", min(shards or os.cpu_count() or 1, os.cpu_count() or 1))
        shards = shards or options["workers"]
    if not shards or shards < 1:
        raise ConfigError(f"--shards: give the number of shards (>= 1) for the {engine_name} engine")
    engine = make_engine(engine_name, options)
    stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
    run_dir = Path(args.run_dir or Path("runs") / stamp).resolve()
    if manifest_path(run_dir).exists():
        raise ConfigError(f"{run_dir} already holds a launch; `fer-bench launch --resume "
                          f"{run_dir}` reruns its unfinished shards, or choose another --run-dir")
    from fer_bench.results.store import default_root

    store = Path(args.results).resolve() if args.results else default_root().resolve()
    manifest = {
        "format": MANIFEST_FORMAT, "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "shards": shards, "engine": engine_name, "engine_options": engine.options(),
        "pytest_args": _check_pytest_args(list(args.pytest_args)), "store": str(store),
        "cwd": os.getcwd(), "python": sys.executable,
        "out": str(Path(args.out).resolve()) if args.out else str(run_dir / "leaderboard"),
        "command": shlex.join(["fer-bench", "launch", *sys.argv[2:]]) if sys.argv[1:2] == ["launch"] else "",
    }
    if args.detach:
        _check_detach(engine)
    if not args.dry_run:
        manifest["plan"] = preflight(manifest)
        write_json(manifest_path(run_dir), manifest)
    return run_dir, manifest, engine, [ShardTask(str(run_dir), i, shards) for i in range(1, shards + 1)]


def preflight(manifest: dict[str, Any]) -> dict[str, Any]:
    """Collect the selection once, as every shard will, before anything is launched: a
    ``pytest --collect-only`` subprocess in the run's folder and python, on the run's store,
    with the probe's plan mode (``probe.PlanProbe``). Returns ``{"cells": n, "seconds":
    estimate or None, "lines": the plan's lines}``. ``ConfigError`` (exit 2) when pytest
    refuses the selection or it holds no fer_bench cell; ``FerBenchError`` (exit 1) when
    collecting fails otherwise (e.g. a module that does not import)."""
    selection = shlex.join(manifest["pytest_args"]) or "(the current folder)"
    with tempfile.TemporaryDirectory(prefix="fer-bench-launch-") as folder:
        path = Path(folder) / "plan.json"
        command = [manifest["python"], "-m", "pytest", "--collect-only", "-qq",
                   "-p", "fer_bench.launch.probe", "--fer-launch-plan", str(path),
                   "--fer-results", manifest["store"], *manifest["pytest_args"]]
        result = subprocess.run(command, cwd=manifest["cwd"], capture_output=True, text=True)
        document = json.loads(path.read_text()) if path.exists() else None
    if result.returncode in (0, 5) and document is not None and not document["cells"]:
        raise ConfigError(f"the selection {selection} collects no fer_bench cell (no test there "
                          f"uses fer_cell); nothing to launch")
    if result.returncode != 0 or document is None:
        why = _pytest_complaint(result.stdout + "\n" + result.stderr)
        error = ConfigError if result.returncode in (4, 5) else FerBenchError
        raise error(f"pytest cannot collect the selection {selection} (exit status "
                    f"{result.returncode}): {why}")
    plan = document.get("plan") or {}
    return {"cells": len(document["cells"]), "seconds": plan.get("seconds"),
            "lines": document.get("lines") or []}


def _pytest_complaint(output: str) -> str:
    """The line of pytest's output that says what is wrong (its first ``ERROR``/``E`` line,
    else its last line)."""
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    for line in lines:
        if line.startswith(("ERROR", "E ")):
            return line.removeprefix("E ").strip()
    return lines[-1] if lines else "no output"


def dry_run(manifest: dict[str, Any], engine: Engine, tasks: list[ShardTask]) -> str:
    """What a launch would run: the engine, each shard's command, a Slurm array's request."""
    from fer_bench.launch.shard import shard_command

    lines = [f"engine {engine.name} {engine.options()}; {len(tasks)} shard(s) of "
             f"{manifest['shards']}; store {manifest['store']}; "
             f"run folder {tasks[0].run_dir if tasks else '(nothing to run)'}"]
    if isinstance(engine, SubmititEngine) and engine.cluster == "slurm" and tasks:
        folder = str(Path(tasks[0].run_dir) / "submitit") if tasks else "RUN_DIR/submitit"
        lines += ["Slurm job array:", engine.preview(len(tasks), folder),
                  f"time limit {engine.time_min} min: SIGTERM {engine.lead_s} s before it; a shard "
                  f"that ends preempted or timed out is requeued up to {engine.max_requeues} times"]
    lines += [f"shard {t.index}: {shlex.join(shard_command(manifest, t))}" for t in tasks]
    return "\n".join(lines)


def resume_run(args: argparse.Namespace) -> Plan:
    """The shards of an existing run that failed or never ran (running ones are left alone)."""
    run_dir = Path(args.resume).resolve()
    manifest = read_manifest(run_dir)
    engine_name = args.engine or manifest.get("engine", "local")
    options = dict(manifest.get("engine_options") or {}) if engine_name == manifest.get("engine") else {}
    options.update(_engine_options(args, engine_name))
    engine = make_engine(engine_name, options)
    status = run_status(run_dir)
    running = [s.index for s in status.shards if s.state == "running"]
    if running:
        print(f"shards {running} are still running; not relaunched")
    todo = [s.index for s in status.shards if s.state in ("failed", "missing")]
    return run_dir, manifest, engine, [ShardTask(str(run_dir), i, int(manifest["shards"])) for i in todo]


def merge(run_dir: Path, out: str) -> int:
    from fer_bench.leaderboard.cli import leaderboard_command

    return leaderboard_command(argparse.Namespace(results=[str(run_dir)], out=out, no_write=False))


def _check_detach(engine: Engine) -> None:
    if not isinstance(engine, SubmititEngine):
        raise ConfigError(f"--detach needs the submitit engine (the {engine.name} engine runs "
                          "its shards from this process)")


def detach(run_dir: Path, engine: Engine, tasks: list[ShardTask]) -> int:
    """Submit the shards as a job array and return; job ids go into the manifest."""
    _check_detach(engine)
    jobs = engine.submit(tasks, run_dir / "submitit")
    manifest = read_manifest(run_dir)
    manifest["jobs"] = {**(manifest.get("jobs") or {}),
                        **{str(t.index): str(j.job_id) for t, j in zip(tasks, jobs, strict=True)}}
    write_json(manifest_path(run_dir), manifest)
    print(f"fer-bench launch: submitted {len(jobs)} shard(s): {', '.join(str(j.job_id) for j in jobs)}; "
          f"`fer-bench launch --status {run_dir}`, then `fer-bench leaderboard {run_dir}`")
    return 0


def launch_command(args: argparse.Namespace) -> int:
    """``fer-bench launch``; returns 0 when every shard is done (and merged), 1 otherwise."""
    if args.status:
        status = run_status(args.status)
        if args.json:
            import json

            print(json.dumps(status.to_dict(), indent=1))
        else:
            print(format_status(status))
        return 0
    check_counts(args)
    run_dir, manifest, engine, tasks = resume_run(args) if args.resume else new_run(args)
    if args.dry_run:
        print(dry_run(manifest, engine, tasks))
        return 0
    plan = manifest.get("plan") if not args.resume else None
    if plan:
        print(f"fer-bench launch: the selection holds {plan['cells']} cell(s), dealt to "
              f"{manifest['shards']} shard(s); its plan:", flush=True)
        print("\n".join(plan["lines"]), flush=True)
    print(f"fer-bench launch: {len(tasks)} shard(s) on the {engine.name} engine; run folder "
          f"{run_dir}; watch it with `fer-bench launch --status {run_dir}`", flush=True)
    if args.detach:
        return detach(run_dir, engine, tasks)
    if tasks:
        engine.run(tasks, report=lambda line: print(f"fer-bench launch: {line}", flush=True))
    status = run_status(run_dir)
    print(format_status(status), flush=True)
    if not status.complete:
        return 1
    if args.no_merge:
        return 0
    return merge(run_dir, args.out or read_manifest(run_dir).get("out") or str(run_dir / "leaderboard"))
