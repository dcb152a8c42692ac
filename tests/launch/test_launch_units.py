"""``fer-bench launch`` pieces that need no shard process: missing extras, refused pytest
options, engine settings (submitit's timeout and GPU visibility, Ray's fractions, the Slurm
array a launch would request), run folders read by the leaderboard (truncated, missing,
running shards), status from hand-made run folders, and the published fallback JSON."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from fer_bench.cli.main import main
from fer_bench.errors import ConfigError, DataError
from fer_bench.identity.cell import Cell
from fer_bench.identity.config import TrainConfig
from fer_bench.identity.record import CellRecord
from fer_bench.launch.engines import RayEngine, SubmititEngine, deal_gpus, make_engine
from fer_bench.launch.shard import ShardTask, publish
from fer_bench.launch.status import format_status, run_status
from fer_bench.leaderboard.load import load_results
from fer_bench.results import rundir as layout
from fer_bench.results.claims import HOST, PIDNS

CELL = Cell(model="vgg16", variant="nhot-3", split="complex", seed=0, recipe=TrainConfig(epochs=2),
            model_release="fer-baselines==0.1.0", dataset="f" * 16, device_type="cpu",
            precision="fp32")


def record(seed: int = 0, **changes) -> dict:
    values = dict(cell=CELL.with_axes(seed=seed), acc_honest=0.5, acc_optimistic=0.6,
                  val_acc=[0.4, 0.5], test_acc=[0.6, 0.5], epoch_times_s=[1.0, 1.0],
                  test_predictions="AAEC", dataset_fingerprint=CELL.dataset, experiment="nhot")
    values.update(changes)
    return CellRecord(**values).to_dict()


def document(*records: dict) -> dict:
    return {"benchmarks": [{"name": f"test[{r['cell']['seed']}]", "stats": {},
                            "extra_info": {"fer_bench": r, "from_store": False}} for r in records]}


def make_run(root: Path, shards: int = 2) -> Path:
    run = root / "run"
    layout.write_json(layout.manifest_path(run), {"format": 1, "shards": shards, "engine": "local",
                                                  "store": str(root / "store"), "pytest_args": []})
    return run


def finished(run: Path, index: int, code: int = 0, body: str | None = None) -> None:
    layout.write_json(layout.shard_file(run, index, "state.json"),
                      {"state": "finished", "exit_code": code, "host": "h", "pid": 1, "attempt": 1})
    if body is not None:
        layout.shard_json(run, index).write_text(body)


# ---------------------------------------------------------------- extras and options
@pytest.mark.parametrize("engine", ["submitit", "ray"])
def test_missing_extra_is_one_clear_error_naming_it(tmp_path, monkeypatch, capsys, engine):
    monkeypatch.setitem(sys.modules, engine, None)          # import fails as if not installed
    code = main(["launch", "--engine", engine, "--shards", "2", "--run-dir",
                 str(tmp_path / "run"), "--", "benchmarks/"])
    error = capsys.readouterr().err
    assert code == 2 and error.count("\n") == 1
    assert f"the {engine} engine needs the '{engine}' package" in error
    assert f"pip install 'fer-bench[{engine}]'" in error
    assert not (tmp_path / "run").exists()                  # checked before anything is written


@pytest.mark.parametrize("arg", [["--fer-shard", "1/2"], ["--benchmark-json=x.json"], ["-n", "4"],
                                 ["-n4"], ["--fer-results", "elsewhere"]])
def test_options_the_launcher_sets_are_refused(tmp_path, capsys, arg):
    code = main(["launch", "--shards", "2", "--run-dir", str(tmp_path / "run"), "--",
                 "benchmarks/", *arg])
    assert code == 2 and "fer-bench launch sets" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_engine_options_belong_to_their_engine(tmp_path, capsys):
    assert main(["launch", "--partition", "gpu", "--run-dir", str(tmp_path / "r"), "--", "x"]) == 2
    assert "--partition is an option of the submitit engine, not of local" in capsys.readouterr().err
    with pytest.raises(ConfigError, match="whole GPUs.*--engine ray"):
        make_engine("submitit", {"gpus_per_shard": 0.5})
    # without ray installed the engine refuses first, naming the extra
    with pytest.raises(ConfigError, match="a fraction <= 1 or a whole number|fer-bench\\[ray\\]"):
        make_engine("ray", {"gpus_per_shard": 1.5})
    with pytest.raises(ConfigError, match="--detach needs the submitit engine"):
        main(["launch", "--detach", "--run-dir", str(tmp_path / "d"), "--debug", "--", "x"])


def test_a_run_folder_is_never_reused(tmp_path, capsys):
    run = make_run(tmp_path)
    assert main(["launch", "--run-dir", str(run), "--", "x"]) == 2
    assert "already holds a launch" in capsys.readouterr().err


@pytest.mark.parametrize(("arg", "expected"), [
    (["--shards", "0"], "--shards: give a whole number >= 1, got 0"),
    (["--shards", "-2"], "--shards: give a whole number >= 1, got -2"),
    (["--workers", "0"], "--workers: give a whole number >= 1, got 0"),
    (["--engine", "submitit", "--shards", "2", "--array-parallelism", "0"],
     "--array-parallelism: give a whole number >= 1, got 0"),
])
def test_counts_below_one_are_usage_errors(tmp_path, capsys, arg, expected):
    code = main(["launch", *arg, "--run-dir", str(tmp_path / "run"), "--", "benchmarks/"])
    error = capsys.readouterr().err
    assert code == 2 and error.count("\n") == 1 and expected in error, error
    assert not (tmp_path / "run").exists()


def test_a_selection_without_fer_bench_cells_is_a_usage_error(tmp_path, capsys, monkeypatch):
    """Checked by collecting the selection once (``pytest --collect-only``) before anything
    is written or started: no fer_cell test there, or a path pytest cannot find."""
    (tmp_path / "test_plain.py").write_text("def test_plain():\n    assert True\n")
    (tmp_path / "pytest.ini").write_text("[pytest]\naddopts = -p no:cacheprovider\n")
    monkeypatch.chdir(tmp_path)
    run = tmp_path / "run"
    code = main(["launch", "--shards", "2", "--run-dir", str(run), "--", "test_plain.py"])
    error = capsys.readouterr().err
    assert code == 2 and error.count("\n") == 1, error
    assert "the selection test_plain.py collects no fer_bench cell" in error
    code = main(["launch", "--shards", "2", "--run-dir", str(run), "--", "no_such_dir/"])
    error = capsys.readouterr().err
    assert code == 2 and error.count("\n") == 1, error
    assert "pytest cannot collect the selection no_such_dir/" in error and "not found" in error
    assert not run.exists()


def test_the_launcher_collects_the_grid_and_prints_its_plan_first(tmp_path):
    from tests.helpers import launch_grid

    project = launch_grid.make_project(tmp_path / "project")
    run = tmp_path / "run"
    result = launch_grid.launch(project, "--shards", "2", "--workers", "1", "--run-dir", str(run),
                                "--results", str(tmp_path / "store"), "--",
                                *launch_grid.GRID, "--fer-models", "launch_tiny", "--fer-nhot", "8",
                                "--fer-splits", "ordinary,complex")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    plan = out.index("fer-bench launch: the selection holds 2 cell(s), dealt to 2 shard(s)")
    assert out.index("fer_bench plan: 2 cells on cpu", plan) < out.index("shard(s) on the local")
    assert "2 to train, 0 from the store" in out
    assert layout.read_manifest(run)["plan"]["cells"] == 2


# ---------------------------------------------------------------- engine settings
def test_submitit_local_executor_timeout_and_gpus_are_explicit(tmp_path):
    pytest.importorskip("submitit")
    engine = SubmititEngine(cluster="local", time_min=30)
    params = engine.executor(tmp_path / "submitit", 2).parameters
    assert params["timeout_min"] == 30 and params["gpus_per_node"] == 0   # not submitit's 2 min
    tasks = [ShardTask(str(tmp_path), i, 3) for i in (1, 2, 3)]
    assert [t.gpus for t in engine._with_gpus(tasks)] == ["", "", ""]    # CPU shards see no GPU
    gpu = SubmititEngine(cluster="local", gpus_per_shard=1, visible_gpus="0,1")
    assert [t.gpus for t in gpu._with_gpus(tasks)] == ["0", "1", "0"]    # each its own, in turn
    slurm = SubmititEngine(cluster="slurm", gpus_per_shard=1)
    assert [t.gpus for t in slurm._with_gpus(tasks)] == [None] * 3       # Slurm binds them
    assert deal_gpus(["0", "1", "2", "3"], 2, 2) == "2,3" and deal_gpus([], 1, 1) == ""


def test_dry_run_shows_the_slurm_array_and_writes_nothing(tmp_path, capsys):
    pytest.importorskip("submitit")
    run = tmp_path / "run"
    code = main(["launch", "--dry-run", "--engine", "submitit", "--partition", "gpu",
                 "--gpus-per-shard", "1", "--cpus-per-shard", "8", "--mem-gb", "32",
                 "--time-min", "240", "--shards", "64", "--array-parallelism", "16",
                 "--setup", "source .venv/bin/activate", "--run-dir", str(run), "--",
                 "benchmarks/", "--fer-seeds", "0-2"])
    out = capsys.readouterr().out
    assert code == 0 and not run.exists()
    for line in ("#SBATCH --array=0-63%16", "#SBATCH --gpus-per-node=1", "#SBATCH --time=240",
                 "#SBATCH --partition=gpu", "#SBATCH --cpus-per-task=8", "#SBATCH --mem=32GB",
                 "#SBATCH --signal=TERM@180"):       # 10 % of 240 min, capped at 180 s
        assert line in out
    assert "SIGTERM 180 s before it; a shard that ends preempted or timed out is requeued up " \
           "to 3 times" in out
    assert "--fer-shard 64/64" in out and "-p fer_bench.launch.probe" in out


def test_ray_fractional_gpu_caps_each_shard_memory(tmp_path):
    from fer_bench.launch.probe import cap_gpu_memory
    from fer_bench.launch.shard import shard_command

    manifest = {"pytest_args": ["benchmarks/"], "store": "/s", "python": "python"}
    command = shard_command(manifest, ShardTask(str(tmp_path), 1, 4, gpus="0", memory_fraction=0.25))
    assert command[-2:] == ["--fer-launch-memory-fraction", "0.2500"]
    assert RayEngine(gpus_per_shard=0.25).options()["gpus_per_shard"] == 0.25
    import torch

    if not torch.cuda.is_available():
        assert cap_gpu_memory(0.25) == []
    with pytest.raises(pytest.UsageError, match="0 < F <= 1"):
        cap_gpu_memory(1.5)


# ---------------------------------------------------------------- reading run folders
def test_truncated_shard_json_is_named_not_dropped(tmp_path, capsys):
    run = make_run(tmp_path)
    finished(run, 1, body=json.dumps(document(record(0))))
    text = json.dumps(document(record(1)))
    finished(run, 2, body=text[: len(text) // 2])                       # torn
    with pytest.raises(DataError) as raised:
        layout.run_shard_files(run)
    message = str(raised.value)
    assert "1 of 2 shards" in message and "shard 2/2" in message and "truncated" in message
    assert "shard 1/2" not in message
    assert main(["leaderboard", str(run), "--no-write"]) == 1
    assert "shard 2/2" in capsys.readouterr().err
    finished(run, 2, body=text)                                         # repaired: both read
    assert sorted(r.seed for r in load_results([run]).records) == [0, 1]


def test_missing_and_running_shards_are_named(tmp_path):
    run = make_run(tmp_path, shards=3)
    finished(run, 1, body=json.dumps(document(record(0))))
    layout.write_json(layout.shard_file(run, 2, "state.json"),
                      {"state": "running", "host": "other-node", "pid": 5, "attempt": 1})
    with pytest.raises(DataError) as raised:
        load_results([run])
    message = str(raised.value)
    assert "shard 2/3" in message and "running on other-node" in message
    assert "shard 3/3" in message and "missing: not started" in message


def test_plain_folder_of_json_files(tmp_path):
    (tmp_path / "a.json").write_text(json.dumps(document(record(0))))
    (tmp_path / "b.json").write_text(json.dumps(document(record(1))))
    assert len(load_results([tmp_path]).records) == 2
    (tmp_path / "c.json").write_text("{\"benchmarks\": [")
    with pytest.raises(DataError, match=r"c\.json: truncated"):
        load_results([tmp_path])


# ---------------------------------------------------------------- status
def test_status_of_running_dead_and_unstarted_shards(tmp_path):
    run = make_run(tmp_path, shards=3)
    grid = [f"t.py::t[c{i}]" for i in range(6)]
    # shard 1: this very process, alive, one cell done and one started
    layout.write_json(layout.shard_file(run, 1, "state.json"),
                      {"state": "running", "host": HOST, "pidns": PIDNS, "pid": os.getpid()})
    layout.write_json(layout.shard_file(run, 1, "plan.json"), {"all": grid, "mine": grid[0::3]})
    events = layout.shard_file(run, 1, "events.jsonl")
    for event in ({"event": "start", "nodeid": grid[0]},
                  {"event": "finish", "nodeid": grid[0], "outcome": "passed"},
                  {"event": "start", "nodeid": grid[3]}):
        layout.atomic_append_line(events, json.dumps(event))
    with open(events, "a") as fh:
        fh.write('{"event": "fin')                                       # torn last line
    # shard 2: its process is gone without a word; shard 3 never started
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    layout.write_json(layout.shard_file(run, 2, "state.json"),
                      {"state": "running", "host": HOST, "pidns": PIDNS, "pid": dead.pid})
    status = run_status(run)
    assert [s.state for s in status.shards] == ["running", "failed", "missing"]
    assert status.cell_counts() == {"done": 1, "running": 1, "failed": 0, "skipped": 0, "left": 4}
    text = format_status(status)
    assert "cells: 6 in the grid · 1 done · 1 running" in text
    assert "shard 2/3: failed: its process on" in text and "died" in text
    assert "shard 3/3: missing" in text and "running cells:\n  t.py::t[c3] (shard 1)" in text
    assert status.to_dict()["cells_by_state"]["left"] == sorted(set(grid) - {grid[0], grid[3]})


def test_status_before_any_shard_collected(tmp_path, capsys):
    run = make_run(tmp_path)
    assert main(["launch", "--status", str(run)]) == 0
    out = capsys.readouterr().out
    assert "the grid is not known yet" in out and "0 done · 0 running · 0 failed · 2 missing" in out
    with pytest.raises(DataError, match="not a fer-bench launch folder"):
        run_status(tmp_path / "nothing")


def test_status_shows_cells_in_progress_with_their_checkpointed_epoch(tmp_path, capsys):
    """A cell with an epoch checkpoint in the run's store is listed with its epoch, the
    checkpoint's size and the time it was written (from the file's trailer)."""
    from fer_bench.results.store import ResultStore
    from fer_bench.training.checkpoint_file import read_info, write_checkpoint

    run = make_run(tmp_path)
    store = ResultStore(tmp_path / "store")
    path = store.checkpoint_path(CELL)
    path.parent.mkdir(parents=True, exist_ok=True)
    meta = {"cell_id": CELL.id, "cell_digest": CELL.digest(), "protocol": 1, "epoch": 4,
            "epochs": 9}
    write_checkpoint(path, lambda sink: sink.write(b"x" * (5 * 2**20 + 2**18)), meta)
    info = read_info(path)
    (tmp_path / "store" / "zz").mkdir()
    (tmp_path / "store" / "zz" / ("bad" + path.suffix)).write_bytes(b"torn")  # left out
    status = run_status(run)
    assert [c.cell_id for c in status.in_progress] == [CELL.id]
    line = f"in progress: {CELL.id} epoch 4/9 (checkpoint 5.3 MiB, {info.written_at[11:19]} UTC)"
    assert main(["launch", "--status", str(run)]) == 0
    assert line in capsys.readouterr().out.splitlines()
    [entry] = status.to_dict()["in_progress"]
    assert entry["epoch"] == 4 and entry["epochs"] == 9 and entry["checkpoint_bytes"] == info.size
    path.unlink()                                          # the record written: no longer listed
    assert run_status(run).in_progress == [] and "in progress" not in format_status(run_status(run))


def test_a_preempted_shard_is_reported_requeueable_and_resumed(tmp_path):
    """Exit 75 (SIGTERM/SIGUSR1 after a checkpoint) reads "preempted, requeueable", not a
    plain failure, in the launcher's line and in --status; --resume reruns that shard only."""
    import argparse

    from fer_bench.launch.cli import add_launch_arguments, resume_run
    from fer_bench.launch.engines import _finished
    from fer_bench.training.preempt import REQUEUE_EXIT

    assert layout.PREEMPTED_EXIT == REQUEUE_EXIT
    run = make_run(tmp_path)
    finished(run, 1, body=json.dumps(document(record(0))))
    finished(run, 2, code=REQUEUE_EXIT)
    status = run_status(run)
    assert [s.state for s in status.shards] == ["done", "failed"]
    text = format_status(status)
    assert "shard 2/2: failed: preempted, requeueable (exit 75): `--resume` continues" in text
    assert "fer-bench launch --resume" in text
    lines = []
    _finished(lines.append, ShardTask(str(run), 2, 2), REQUEUE_EXIT, 3.0)
    assert lines == ["shard 2/2 finished: exit 75 (preempted, requeueable: its cell's checkpoint "
                     "is kept; `--resume` continues it) (3s)"]
    parser = argparse.ArgumentParser()
    add_launch_arguments(parser)
    _, _, _, tasks = resume_run(parser.parse_args(["--resume", str(run)]))
    assert [t.index for t in tasks] == [2]


# ---------------------------------------------------------------- publishing a shard
def test_a_shard_whose_cells_all_failed_untimed_still_publishes_them(tmp_path):
    """pytest-benchmark writes no JSON when no cell reached an epoch: the shard's failed
    records (from its events, latest attempt only) are published instead."""
    run = make_run(tmp_path, shards=1)
    task = ShardTask(str(run), 1, 1)
    layout.write_json(layout.shard_file(run, 1, "plan.json"), {"all": ["a"], "mine": ["a"]})
    events = layout.shard_file(run, 1, "events.jsonl")
    old = record(0, status="failed", error="an older attempt", epoch_times_s=[])
    new = record(0, status="failed", error="model broken", epoch_times_s=[])
    for event in ({"event": "session"}, {"event": "finish", "nodeid": "a", "record": old},
                  {"event": "session"}, {"event": "finish", "nodeid": "a", "record": new}):
        layout.atomic_append_line(events, json.dumps(event))
    assert "1 untimed cells" in publish(run, task)
    [loaded] = load_results([layout.shard_json(run, 1)]).records
    assert loaded.status == "failed" and loaded.error == "model broken"
