"""``fer-bench launch --engine ray --ray-address ...`` against a real Ray head
(``ci/ray-up.sh``: ``ray start --head --num-cpus=2``, no dashboard), in real processes:

* 2 shards of a small synthetic grid (smoke profile, the built-in small CNN, 1 epoch) give
  the same cells, accuracies and per-image predictions as one process;
* a Ray worker killed mid-cell (SIGKILL to the process running the shard) is reported by
  the launcher and by ``launch --status`` as a failed shard, its pytest dies with it, and
  ``--resume`` finishes the grid.

The head's address: ``$FER_BENCH_RAY_ADDRESS``, else ``$RAY_ADDRESS``, else 127.0.0.1:6379
(ci/ray-up.sh's); skipped when ray is not installed or nothing listens there.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time

import pytest

from fer_bench.results.claims import pid_alive
from tests.helpers import launch_grid
from tests.helpers.launch_engines import (
    SMALL,
    STALL_CELL,
    STALLING,
    cell_started,
    make_stall_project,
    small_reference,
    wait_for,
)

pytestmark = pytest.mark.ray
pytest.importorskip("ray")

ADDRESS = (os.environ.get("FER_BENCH_RAY_ADDRESS") or os.environ.get("RAY_ADDRESS")
           or "127.0.0.1:6379")


@pytest.fixture(scope="module", autouse=True)
def head_answers():
    host, _, port = ADDRESS.rpartition(":")
    try:
        socket.create_connection((host or "127.0.0.1", int(port)), timeout=5).close()
    except (OSError, ValueError) as exc:
        pytest.skip(f"no Ray head reachable at {ADDRESS} ({exc}); start one: ci/ray-up.sh")


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    return make_stall_project(tmp_path_factory.mktemp("ray") / "project")


def env(project, **extra):
    return launch_grid.project_env(project, RAY_USAGE_STATS_ENABLED="0", **extra)


def test_two_shards_on_ray_equal_one_process(project, tmp_path_factory):
    reference = small_reference(tmp_path_factory)
    run_dir = project.parent / "run-equal"
    result = launch_grid.launch(project, "--engine", "ray", "--ray-address", ADDRESS,
                                "--shards", "2", "--cpus-per-shard", "1", "--run-dir", str(run_dir),
                                "--no-merge", "--results", str(project.parent / "store-equal"),
                                "--", *launch_grid.GRID, *SMALL, env=env(project), timeout=400)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "2 shard(s) on the ray engine" in result.stdout
    expected = launch_grid.accuracies([reference])
    assert len(expected) == 2 and all(v[1] == "ok" for v in expected.values())
    assert launch_grid.accuracies([run_dir]) == expected       # cells, accuracies, predictions
    halves = [launch_grid.entries(run_dir / f"shard-{i}.json") for i in (1, 2)]
    assert [len(h) for h in halves] == [1, 1] and not set(halves[0]) & set(halves[1])
    states = [json.loads((run_dir / "shards" / f"shard-{i}.state.json").read_text()) for i in (1, 2)]
    assert all(s["exit_code"] == 0 and s["gpus"] == "" for s in states)
    assert states[0]["wrapper_pid"] != os.getpid()              # ran in Ray workers, not here


def test_a_killed_ray_worker_is_a_failed_shard_and_resume_finishes(project):
    run_dir, store = project.parent / "run-kill", project.parent / "store-kill"
    command = [sys.executable, "-m", "fer_bench.cli", "launch", "--engine", "ray", "--ray-address",
               ADDRESS, "--shards", "2", "--cpus-per-shard", "1", "--run-dir", str(run_dir),
               "--results", str(store), "--", *launch_grid.GRID, *STALLING]
    process = subprocess.Popen(command, cwd=project, text=True, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT,
                               env=env(project, LAUNCH_STALL_SHARD="2/2", LAUNCH_STALL_S="600"))
    try:
        wait_for(lambda: cell_started(run_dir, 2, STALL_CELL), 240, "shard 2 reaches its stalling cell")
        state = json.loads((run_dir / "shards" / "shard-2.state.json").read_text())
        worker, shard_pytest = state["wrapper_pid"], state["pid"]
        assert worker != process.pid and pid_alive(worker) and pid_alive(shard_pytest)
        os.kill(worker, signal.SIGKILL)                      # the Ray worker running shard 2
        killed = time.monotonic()
        output = process.communicate(timeout=120)[0]
        seconds = time.monotonic() - killed
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    print(f"killed Ray worker {worker}: the launcher reported it and exited after {seconds:.1f}s")
    assert process.returncode == 1, output
    assert "shard 1/2 finished: exit 0" in output
    line = next(x for x in output.splitlines() if "shard 2/2 finished:" in x)
    assert "lost by the engine:" in line and "WorkerCrashedError" in line, output
    # the shard's pytest died with its worker: no orphan trains on
    wait_for(lambda: not pid_alive(shard_pytest), 10, f"shard 2's pytest {shard_pytest} ends")

    text = launch_grid.launch(project, "--status", str(run_dir), env=env(project)).stdout
    assert "shard 2/2: failed: its process on" in text and "died" in text, text
    assert "shards: 1 done · 0 running · 1 failed · 0 missing" in text

    resumed = launch_grid.launch(project, "--resume", str(run_dir), env=env(project), timeout=400)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert "1 shard(s) on the ray engine" in resumed.stdout
    second = launch_grid.entries(run_dir / "shard-2.json")
    assert {k: v["from_store"] for k, v in second.items()} == {
        "launch_tiny-n1-complex-s0": True, "launch_stall-n1-complex-s0": False}
    merged = launch_grid.accuracies([run_dir / "leaderboard" / "results.json"])
    assert len(merged) == 4 and all(v[1] == "ok" for v in merged.values())
