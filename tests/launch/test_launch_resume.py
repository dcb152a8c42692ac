"""A shard that crashes: the other shard goes on, ``--status`` shows the failed shard and
its unfinished cell, the leaderboard refuses the incomplete run folder naming the shard,
and ``--resume`` reruns that shard only, training only its unfinished cell.

Grid (collection order): launch_tiny-n1-{ordinary,complex}, launch_crash-n1-{ordinary,
complex}; shard 2/2 = launch_tiny-n1-complex, then launch_crash-n1-complex, whose model
kills its process with SIGKILL while ``$LAUNCH_CRASH_SHARD`` is 2/2 (tests/helpers/launch_grid.py).
"""

from __future__ import annotations

import json

import pytest

from fer_bench.cli.main import main
from fer_bench.launch.status import format_status, run_status
from fer_bench.results.store import ResultStore
from tests.helpers import launch_grid

GRID = ("--fer-models", "launch_tiny,launch_crash", "--fer-nhot", "1",
        "--fer-splits", "ordinary,complex")


@pytest.fixture(scope="module")
def crashed(tmp_path_factory):
    root = tmp_path_factory.mktemp("crash")
    project = launch_grid.make_project(root / "project")
    run_dir, store = root / "run", root / "store"
    result = launch_grid.launch(
        project, "--shards", "2", "--workers", "2", "--run-dir", str(run_dir), "--results",
        str(store), "--", *launch_grid.GRID, *GRID,
        env=launch_grid.project_env(project, LAUNCH_CRASH_SHARD="2/2"))
    return project, run_dir, store, result


def test_a_crashing_shard_is_reported_and_the_other_goes_on(crashed, capsys):
    project, run_dir, store, result = crashed
    assert result.returncode == 1, result.stdout + result.stderr
    assert "shard 2/2 finished: exit -9 (killed by SIGKILL)" in result.stdout
    assert "shard 1/2 finished: exit 0" in result.stdout
    assert "relaunch the unfinished shards: `fer-bench launch --resume" in result.stdout
    assert not (run_dir / "leaderboard").exists()              # no merge of an incomplete run
    assert (run_dir / "shard-1.json").exists() and not (run_dir / "shard-2.json").exists()

    status = run_status(run_dir)
    assert status.shard_counts() == {"done": 1, "running": 0, "failed": 1, "missing": 0}
    assert status.cell_counts() == {"done": 3, "running": 0, "failed": 0, "skipped": 0, "left": 1}
    assert status.cells["test_grid.py::test_grid[launch_crash-n1-complex-s0]"] == "left"
    text = format_status(status)
    assert "shard 2/2: failed: exit -9 (killed by SIGKILL)" in text and "1/2 cells finished" in text
    assert "store claims: 0 held, 1 stale" in text              # the killed cell's claim

    # The leaderboard refuses the run folder and names the shard and the way out.
    assert main(["leaderboard", str(run_dir), "--no-write"]) == 1
    error = capsys.readouterr().err
    assert "incomplete" in error and "shard 2/2" in error and "exit -9" in error
    assert f"fer-bench launch --resume {run_dir}" in error

    # Nothing corrupt: three finished records, one stale claim.
    shared = ResultStore(store)
    assert sorted(r.cell_id for r in shared.records()) == [
        "launch_crash-n1-ordinary-s0", "launch_tiny-n1-complex-s0", "launch_tiny-n1-ordinary-s0"]
    assert sorted(launch_grid.builds(project)) == ["launch_crash", "launch_tiny", "launch_tiny"]


def test_resume_reruns_the_failed_shard_and_only_its_unfinished_cell(crashed):
    project, run_dir, store, _ = crashed
    result = launch_grid.launch(project, "--resume", str(run_dir))     # no crash this time
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 shard(s) on the local engine" in result.stdout
    assert "shard 1/2" not in result.stdout.split("cells:")[0]           # shard 1 not rerun
    # launch_tiny-n1-complex came from the store; only launch_crash-n1-complex trained.
    assert sorted(launch_grid.builds(project)) == ["launch_crash"] * 2 + ["launch_tiny"] * 2
    second = launch_grid.entries(run_dir / "shard-2.json")
    assert {k: v["from_store"] for k, v in second.items()} == {
        "launch_tiny-n1-complex-s0": True, "launch_crash-n1-complex-s0": False}
    states = [json.loads((run_dir / "shards" / f"shard-{i}.state.json").read_text()) for i in (1, 2)]
    assert [s["attempt"] for s in states] == [1, 2] and states[1]["exit_code"] == 0
    assert (run_dir / "logs" / "shard-2.log").read_text().count("=== fer-bench launch: shard 2/2") == 2
    # merged: all four cells, and the store is clean
    merged = launch_grid.accuracies([run_dir / "leaderboard" / "results.json"])
    assert sorted(v[0] for v in merged.values()) == sorted(
        f"{m}-n1-{s}-s0" for m in ("launch_tiny", "launch_crash") for s in ("ordinary", "complex"))
    assert ResultStore(store).claims() == [] and run_status(run_dir).complete
