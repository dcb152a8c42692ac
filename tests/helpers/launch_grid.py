"""Test helpers for ``fer-bench launch`` and the shared store: a throwaway pytest project
(a conftest that registers tiny models in-process, one benchmark module) whose grid runs in
real subprocesses, on the synthetic default data, smoke profile, 1 epoch.

The conftest's models log every build (one per trained cell) to ``$LAUNCH_BUILD_LOG`` as
``<pid> <model>`` lines; ``launch_slow`` sleeps ``$LAUNCH_SLOW_S`` seconds when built (a cell
that takes a while, to be caught mid-training); ``launch_crash`` kills its own process with
SIGKILL when the shard it runs in is ``$LAUNCH_CRASH_SHARD`` (e.g. "2/2").
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

CONFTEST = '''
import os, signal, time
import torch
from fer_bench.models import register_model, unregister_model

SHARD = {"value": None}


def pytest_configure(config):
    SHARD["value"] = config.getoption("fer_shard", default=None)


class Tiny(torch.nn.Module):
    def __init__(self, num_classes=8, in_chans=1):
        super().__init__()
        self.pool = torch.nn.AdaptiveAvgPool2d(6)
        self.fc = torch.nn.Linear(in_chans * 36, num_classes)

    def forward(self, x):
        return self.fc(self.pool(x).flatten(1))


def _built(name):
    with open(os.environ["LAUNCH_BUILD_LOG"], "a") as fh:
        fh.write(f"{os.getpid()} {name}\\n")


def launch_tiny(num_classes=8, in_chans=1):
    _built("launch_tiny")
    return Tiny(num_classes, in_chans)


def launch_other(num_classes=8, in_chans=1):
    _built("launch_other")
    return Tiny(num_classes, in_chans)


def launch_slow(num_classes=8, in_chans=1):
    _built("launch_slow")
    time.sleep(float(os.environ.get("LAUNCH_SLOW_S", "0")))
    return Tiny(num_classes, in_chans)


def launch_crash(num_classes=8, in_chans=1):
    if SHARD["value"] and SHARD["value"] == os.environ.get("LAUNCH_CRASH_SHARD"):
        os.kill(os.getpid(), signal.SIGKILL)
    _built("launch_crash")
    return Tiny(num_classes, in_chans)


for factory in (launch_tiny, launch_other, launch_slow, launch_crash):
    unregister_model(factory.__name__)
    register_model(factory)
'''
MODULE = '''
def test_grid(fer_cell, benchmark):
    record = fer_cell.run(benchmark)
    assert record.status == "ok"
'''
INI = "[pytest]\naddopts = -p no:cacheprovider -p no:hypothesispytest\n"
#: The grid options every run of these tests shares (synthetic default data).
GRID = ("test_grid.py", "-q", "--fer-profile", "smoke", "--fer-epochs", "1")


def make_project(root: Path) -> Path:
    """Write the throwaway project into ``root``; returns it."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "conftest.py").write_text(CONFTEST)
    (root / "test_grid.py").write_text(MODULE)
    (root / "pytest.ini").write_text(INI)
    return root


def project_env(root: Path, **extra: str) -> dict[str, str]:
    """The environment of every process of a test: one torch thread (deterministic, and the
    2-core machine is shared), quick claim polling, the build log."""
    env = dict(os.environ)
    for name in ("FER_BENCH_DATA", "FER_BENCH_RESULTS", "FER_BENCH_SHARD", "LAUNCH_CRASH_SHARD"):
        env.pop(name, None)
    env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", FER_BENCH_CLAIM_POLL_S="0.2",
               LAUNCH_BUILD_LOG=str(root / "builds.log"), PYTHONDONTWRITEBYTECODE="1")
    env.update(extra)
    return env


def pytest_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "pytest", *GRID, *args]


def run_pytest(root: Path, *args: str, env: dict[str, str] | None = None,
               timeout: float = 120) -> subprocess.CompletedProcess:
    """One plain (unsharded) pytest run of the grid in ``root``."""
    return subprocess.run(pytest_command(*args), cwd=root, env=env or project_env(root),
                          capture_output=True, text=True, timeout=timeout)


def launch(root: Path, *args: str, env: dict[str, str] | None = None,
           timeout: float = 180) -> subprocess.CompletedProcess:
    """``fer-bench launch ARGS`` run from ``root`` (a subprocess, as a user would)."""
    command = [sys.executable, "-m", "fer_bench.cli", "launch", *args]
    return subprocess.run(command, cwd=root, env=env or project_env(root), capture_output=True,
                          text=True, timeout=timeout)


def builds(root: Path) -> list[str]:
    """The models built so far (one line per trained cell), in order."""
    path = root / "builds.log"
    return [line.split()[1] for line in path.read_text().splitlines()] if path.exists() else []


def accuracies(json_paths: list[Path]) -> dict[str, tuple]:
    """cell digest -> (cell id, status, honest, optimistic, per-image predictions) of the
    records in pytest-benchmark JSON files (each cell once)."""
    from fer_bench.leaderboard.load import load_results

    return {r.cell.digest(): (r.cell_id, r.status, r.acc_honest, r.acc_optimistic,
                              r.test_predictions)
            for r in load_results(json_paths).records}


def entries(json_path: Path) -> dict[str, dict]:
    """cell id -> extra_info of each benchmark entry of one JSON file."""
    document = json.loads(Path(json_path).read_text())
    return {b["extra_info"]["cell_id"]: b["extra_info"] for b in document["benchmarks"]}
