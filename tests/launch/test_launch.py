"""``fer-bench launch`` end to end, in real processes: a smoke grid (a tiny model registered
by the project's conftest, 1 epoch, the synthetic default data) run as 2 shards on the
local engine and on submitit's local executor; the merged leaderboard equals a
single-process run of the same grid, cell for cell. (tests/helpers/launch_grid.py)"""

from __future__ import annotations

import json
import subprocess

import pytest

pytest.importorskip("submitit")

from fer_bench.launch.status import run_status  # noqa: E402
from tests.helpers import launch_grid  # noqa: E402

GRID = ("--fer-models", "launch_tiny", "--fer-nhot", "1,8", "--fer-splits", "ordinary,complex")


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    return launch_grid.make_project(tmp_path_factory.mktemp("launch") / "project")


@pytest.fixture(scope="module")
def reference(project):
    """The single-process run of the grid (its own store), started at once in the
    background; ``wait()`` returns its JSON."""
    out = project.parent / "single.json"
    process = subprocess.Popen(
        launch_grid.pytest_command(*GRID, "--fer-results", str(project.parent / "single-store"),
                                   "--benchmark-json", str(out)),
        cwd=project, env=launch_grid.project_env(project), stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True)

    class Reference:
        def wait(self):
            output = process.communicate(timeout=240)[0]
            assert process.returncode == 0, output
            return out

    yield Reference()
    if process.poll() is None:
        process.kill()
        process.wait()


def check_run(project, run_dir, reference_json, *, merged: bool):
    expected = launch_grid.accuracies([reference_json])
    assert len(expected) == 4 and all(v[1] == "ok" for v in expected.values())
    assert launch_grid.accuracies([run_dir]) == expected       # the run folder, as merged
    board = run_dir / "leaderboard"
    if merged:                                                 # the leaderboard it merged into
        assert (board / "README.md").exists()
        assert launch_grid.accuracies([board / "results.json"]) == expected
    else:
        assert not board.exists()
    # one JSON per shard, each with half the grid, and every cell trained by one shard
    halves = [launch_grid.entries(run_dir / f"shard-{i}.json") for i in (1, 2)]
    assert [len(h) for h in halves] == [2, 2] and not set(halves[0]) & set(halves[1])
    assert not any(extra["from_store"] for half in halves for extra in half.values())
    for i in (1, 2):
        assert (run_dir / "logs" / f"shard-{i}.log").exists()
        state = json.loads((run_dir / "shards" / f"shard-{i}.state.json").read_text())
        assert state["state"] == "finished" and state["exit_code"] == 0
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["shards"] == 2 and manifest["pytest_args"][-len(GRID):] == list(GRID)


def test_local_two_workers_equals_single_process(project, reference):
    run_dir = project.parent / "run-local"
    store = project.parent / "store-local"
    result = launch_grid.launch(project, "--shards", "2", "--workers", "2", "--run-dir",
                                str(run_dir), "--results", str(store), "--",
                                *launch_grid.GRID, *GRID)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "shard 1/2 finished: exit 0" in result.stdout
    assert "cells: 4 in the grid · 4 done · 0 running · 0 failed · 0 skipped · 0 left" in result.stdout
    check_run(project, run_dir, reference.wait(), merged=True)
    summary = run_status(run_dir).to_dict()
    assert summary["complete"] and summary["cells"]["done"] == 4 and summary["cells_total"] == 4
    assert summary["shards"] == {"done": 2, "running": 0, "failed": 0, "missing": 0}


def test_submitit_local_executor_equals_single_process(project, reference):
    run_dir = project.parent / "run-submitit"
    result = launch_grid.launch(project, "--engine", "submitit", "--cluster", "local",
                                "--shards", "2", "--time-min", "10", "--run-dir", str(run_dir),
                                "--no-merge",
                                "--results", str(project.parent / "store-submitit"), "--",
                                *launch_grid.GRID, *GRID)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "submitted shards 1-2 as local jobs" in result.stdout
    check_run(project, run_dir, reference.wait(), merged=False)
    # submitit's own files are in the run folder; GPU visibility was set explicitly ("")
    assert (run_dir / "submitit").is_dir()
    for i in (1, 2):
        assert json.loads((run_dir / "shards" / f"shard-{i}.state.json").read_text())["gpus"] == ""
