"""A shard preempted mid-cell (SIGTERM to its pytest after an epoch checkpoint): the
launcher reports it "preempted, requeueable" (exit 75), ``--status`` shows the cell in
progress with its epoch, and ``--resume`` continues the cell from its checkpoint; the
record equals a one-process run's.

``launch_lag`` (tests/helpers/launch_engines.py) sleeps ``$LAUNCH_LAG_S`` per training
forward pass, so an epoch lasts long enough to be caught; the sleep changes no number."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

from fer_bench.launch.status import format_status, run_status
from fer_bench.leaderboard.load import load_results
from fer_bench.results.store import ResultStore
from tests.helpers import launch_grid
from tests.helpers.launch_engines import LAG, wait_for

CELL = ("--fer-models", "launch_lag", "--fer-nhot", "1", "--fer-splits", "ordinary",
        "--fer-epochs", "3")


def test_a_preempted_shard_is_requeueable_and_resumes_from_its_checkpoint(tmp_path):
    project = launch_grid.make_project(tmp_path / "project")
    with open(project / "conftest.py", "a") as fh:
        fh.write(LAG)
    run_dir, store = tmp_path / "run", tmp_path / "store"
    env = launch_grid.project_env(project, LAUNCH_LAG_S="0.05")
    command = [sys.executable, "-m", "fer_bench.cli", "launch", "--shards", "1", "--run-dir",
               str(run_dir), "--results", str(store), "--", *launch_grid.GRID, *CELL]
    launcher = subprocess.Popen(command, cwd=project, env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True)
    try:
        [info] = wait_for(lambda: ResultStore(store).checkpoints(), 180, "an epoch checkpoint")
        assert info.cell_id == "launch_lag-n1-ordinary-s0" and info.epochs == 3
        assert f"in progress: {info.cell_id} epoch " in format_status(run_status(run_dir))
        state = json.loads((run_dir / "shards" / "shard-1.state.json").read_text())
        os.kill(int(state["pid"]), signal.SIGTERM)
        out, _ = launcher.communicate(timeout=120)
    finally:
        if launcher.poll() is None:
            launcher.kill()
    assert launcher.returncode == 1, out
    assert "shard 1/1 finished: exit 75 (preempted, requeueable" in out
    text = format_status(run_status(run_dir))
    assert "shard 1/1: failed: preempted, requeueable (exit 75)" in text
    [kept] = ResultStore(store).checkpoints()
    assert f"in progress: {kept.cell_id} epoch {kept.epoch}/3" in text and kept.epoch >= 1

    resumed = launch_grid.launch(project, "--resume", str(run_dir), env=env, timeout=240)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert ResultStore(store).checkpoints() == []
    [record] = ResultStore(store).records()
    assert record.resumed_from_epoch == kept.epoch

    single = tmp_path / "single.json"
    plain = launch_grid.run_pytest(project, *CELL, "--fer-results", str(tmp_path / "store1"),
                                   "--benchmark-json", str(single), env=env, timeout=240)
    assert plain.returncode == 0, plain.stdout + plain.stderr
    assert launch_grid.accuracies([run_dir / "shard-1.json"]) == launch_grid.accuracies([single])
    [alone] = load_results([single]).records
    assert (record.val_acc, record.test_acc) == (alone.val_acc, alone.test_acc)
