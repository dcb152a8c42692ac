"""``fer-bench launch --engine submitit`` through a real Slurm (``ci/slurm-up.sh``: one node,
munge, slurmctld, slurmd, no accounting), in real processes:

* a 2-shard job array of a small synthetic grid (smoke profile, the built-in small CNN,
  1 epoch) gives the same cells, accuracies and per-image predictions as one process;
* a shard cancelled with ``scancel`` mid-cell is reported by the waiting launcher and by
  ``launch --status`` as failed with its Slurm state, CANCELLED, within a bounded time, and
  ``--resume`` finishes the grid (its finished cell from the store);
* a shard that outlives its Slurm time limit (``--time-min 1``, ``--max-requeues 0``) is
  reported the same way, TIMEOUT. Its launch starts first, in the background, so its minute
  runs beside the others;
* a shard whose work (one ``launch_lag`` cell of 12 epochs, ~60 s of training) outlives its
  1-minute limit gets Slurm's SIGTERM before the limit, checkpoints and exits 75, is
  requeued by the launcher as a new job (as often as it takes, up to 6 times) and finishes
  with a record equal to one process's: same cell, accuracies, per-image predictions and
  per-epoch validation/test accuracies.

The stalling cell is ``launch_stall`` (tests/helpers/launch_engines.py): it sleeps
``$LAUNCH_STALL_S`` when built in shard ``$LAUNCH_STALL_SHARD``. sbatch exports the
launcher's environment to the jobs, so the tests steer them through it.
"""

from __future__ import annotations

import json
import re
import shutil
import signal
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import pytest

from fer_bench.launch.requeue import signal_lead_s
from tests.helpers import launch_grid
from tests.helpers.launch_engines import (
    LAG_CELL,
    LAG_S,
    SMALL,
    STALL_CELL,
    STALLING,
    cell_started,
    make_stall_project,
    small_reference,
    wait_for,
)

pytestmark = [
    pytest.mark.slurm,
    pytest.mark.skipif(shutil.which("sbatch") is None,
                       reason="no sbatch on PATH (a one-node Slurm: sudo ci/slurm-up.sh)"),
]
pytest.importorskip("submitit")

#: The longest a stopped shard may take to be reported (Slurm's KillWait is 10 s in CI,
#: the launcher asks Slurm every 2 s here and waits 5 s for a result file that never comes).
REPORT_S = 90


@pytest.fixture(scope="module", autouse=True)
def slurm_answers():
    done = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True, timeout=30)
    if done.returncode != 0 or not {"idle", "mixed", "allocated"} & set(done.stdout.split()):
        pytest.skip(f"no Slurm node answers (sinfo: {done.stdout.strip() or done.stderr.strip()}); "
                    "start one: sudo ci/slurm-up.sh")


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    return make_stall_project(tmp_path_factory.mktemp("slurm") / "project")


def env(project, **extra):
    return launch_grid.project_env(project, FER_BENCH_SLURM_POLL_S="2", **extra)


def start_launch(project, *args, **extra) -> subprocess.Popen:
    command = [sys.executable, "-m", "fer_bench.cli", "launch", *args]
    return subprocess.Popen(command, cwd=project, env=env(project, **extra), text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def stop(process: subprocess.Popen, run_dir: Path) -> None:
    """Kill the launcher if it still runs and cancel its jobs (a failed test leaves no
    stalled job holding the node)."""
    if process.poll() is None:
        process.kill()
        process.wait()
    manifest = run_dir / "manifest.json"
    jobs = json.loads(manifest.read_text()).get("jobs", {}) if manifest.exists() else {}
    if jobs:
        subprocess.run(["scancel", *jobs.values()], capture_output=True, timeout=30)


def status(project, run_dir: Path) -> tuple[str, dict]:
    text = launch_grid.launch(project, "--status", str(run_dir), env=env(project))
    data = launch_grid.launch(project, "--status", str(run_dir), "--json", env=env(project))
    assert text.returncode == 0 and data.returncode == 0, text.stdout + text.stderr
    return text.stdout, json.loads(data.stdout)


@pytest.fixture(scope="module")
def timed_out(project):
    """A 1-shard launch whose only cell stalls past its 1-minute Slurm time limit, started
    at once; ``wait()`` returns (run folder, exit status, output, when the launcher ended)."""
    run_dir = project.parent / "run-timeout"
    process = start_launch(project, "--engine", "submitit", "--shards", "1", "--time-min", "1",
                           "--max-requeues", "0",
                           "--cpus-per-shard", "1", "--run-dir", str(run_dir), "--no-merge",
                           "--results", str(project.parent / "store-timeout"), "--",
                           *launch_grid.GRID, "--fer-models", "launch_stall", "--fer-nhot", "1",
                           "--fer-splits", "ordinary",
                           LAUNCH_STALL_SHARD="1/1", LAUNCH_STALL_S="600")

    class TimedOut:
        def wait(self):
            output = process.communicate(timeout=60 + 60 + REPORT_S + 120)[0]
            return run_dir, process.returncode, output, datetime.now()

    yield TimedOut()
    stop(process, run_dir)


def test_two_shards_through_sbatch_equal_one_process(project, timed_out, tmp_path_factory):
    reference = small_reference(tmp_path_factory)
    run_dir = project.parent / "run-equal"
    result = launch_grid.launch(project, "--engine", "submitit", "--shards", "2",
                                "--cpus-per-shard", "1", "--time-min", "10", "--run-dir",
                                str(run_dir), "--no-merge", "--results",
                                str(project.parent / "store-equal"), "--", *launch_grid.GRID,
                                *SMALL, env=env(project), timeout=400)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "submitted shards 1-2 as slurm jobs" in result.stdout
    expected = launch_grid.accuracies([reference])
    assert len(expected) == 2 and all(v[1] == "ok" for v in expected.values())
    assert launch_grid.accuracies([run_dir]) == expected       # cells, accuracies, predictions
    manifest = json.loads((run_dir / "manifest.json").read_text())
    halves = [launch_grid.entries(run_dir / f"shard-{i}.json") for i in (1, 2)]
    assert [len(h) for h in halves] == [1, 1] and not set(halves[0]) & set(halves[1])
    for i in (1, 2):
        state = json.loads((run_dir / "shards" / f"shard-{i}.state.json").read_text())
        assert state["exit_code"] == 0 and state["gpus"] == ""
        # the shard ran inside the Slurm job the launcher submitted and recorded
        assert state["slurm_job"] == manifest["jobs"][str(i)]
        assert (run_dir / "submitit" / f"{state['slurm_job']}_0_log.out").exists()


def test_a_cancelled_shard_is_reported_with_its_slurm_state_and_resumed(project, timed_out):
    run_dir, store = project.parent / "run-cancel", project.parent / "store-cancel"
    process = start_launch(project, "--engine", "submitit", "--shards", "2", "--cpus-per-shard",
                           "1", "--time-min", "10", "--run-dir", str(run_dir), "--results",
                           str(store), "--", *launch_grid.GRID, *STALLING,
                           LAUNCH_STALL_SHARD="2/2", LAUNCH_STALL_S="600")
    try:
        wait_for(lambda: cell_started(run_dir, 2, STALL_CELL), 240, "shard 2 reaches its stalling cell")
        job = json.loads((run_dir / "manifest.json").read_text())["jobs"]["2"]
        subprocess.run(["scancel", job], check=True, timeout=30)
        cancelled = time.monotonic()
        output = process.communicate(timeout=REPORT_S + 60)[0]
        seconds = time.monotonic() - cancelled
    finally:
        stop(process, run_dir)
    print(f"scancel {job}: the launcher reported it and exited after {seconds:.1f}s")
    assert seconds < REPORT_S, output
    assert process.returncode == 1, output
    assert "shard 1/2 finished: exit 0" in output
    line = next(x for x in output.splitlines() if "shard 2/2 finished:" in x)
    assert f"Slurm job {job} CANCELLED" in line, output
    assert "relaunch the unfinished shards: `fer-bench launch --resume" in output

    text, data = status(project, run_dir)
    assert f"shard 2/2: failed: Slurm job {job} CANCELLED" in text, text
    details = {d["index"]: d for d in data["shard_details"]}
    assert details[2]["state"] == "failed" and "CANCELLED" in details[2]["scheduler"]
    assert data["shards"] == {"done": 1, "running": 0, "failed": 1, "missing": 0}
    assert data["cells"]["done"] == 3 and data["cells"]["left"] == 1

    resumed = launch_grid.launch(project, "--resume", str(run_dir), env=env(project), timeout=400)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert "1 shard(s) on the submitit engine" in resumed.stdout
    second = launch_grid.entries(run_dir / "shard-2.json")
    assert {k: v["from_store"] for k, v in second.items()} == {
        "launch_tiny-n1-complex-s0": True, "launch_stall-n1-complex-s0": False}
    merged = launch_grid.accuracies([run_dir / "leaderboard" / "results.json"])
    assert sorted(v[0] for v in merged.values()) == sorted(
        f"{m}-n1-{s}-s0" for m in ("launch_tiny", "launch_stall") for s in ("ordinary", "complex"))
    text, data = status(project, run_dir)
    assert data["complete"] and "complete: merge with" in text


def test_a_shard_past_its_time_limit_is_reported_timeout(project, timed_out):
    run_dir, code, output, ended = timed_out.wait()
    job = json.loads((run_dir / "manifest.json").read_text())["jobs"]["1"]
    assert code == 1, output
    line = next(x for x in output.splitlines() if "shard 1/1 finished:" in x)
    assert f"Slurm job {job} TIMEOUT" in line, output
    # slurmstepd's word, in the node's local time: "... CANCELLED AT <t> DUE TO TIME LIMIT ***"
    stderr = (run_dir / "submitit" / f"{job}_0_log.err").read_text()
    killed = re.search(r"CANCELLED AT (\S+) DUE TO TIME LIMIT", stderr)
    assert killed, stderr
    seconds = (ended - datetime.fromisoformat(killed.group(1))).total_seconds()
    print(f"time limit 1 min: job {job} killed by Slurm at {killed.group(1)}; the launcher "
          f"reported it and exited {seconds:.1f}s later")
    assert seconds < REPORT_S, output
    text, data = status(project, run_dir)
    assert f"shard 1/1: failed: Slurm job {job} TIMEOUT" in text, text
    assert data["shards"]["failed"] == 1 and data["cells"]["left"] == 1
    assert "TIMEOUT" in data["shard_details"][0]["scheduler"]


def test_a_shard_past_its_time_limit_is_requeued_and_finishes_equal_to_one_process(project, timed_out):
    run_dir, store = project.parent / "run-requeue", project.parent / "store-requeue"
    start = time.monotonic()
    result = launch_grid.launch(project, "--engine", "submitit", "--shards", "1", "--cpus-per-shard",
                                "1", "--time-min", "1", "--max-requeues", "6", "--run-dir",
                                str(run_dir), "--no-merge", "--results", str(store), "--",
                                *launch_grid.GRID, *LAG_CELL,
                                env=env(project, LAUNCH_LAG_S=LAG_S), timeout=540)
    seconds = time.monotonic() - start
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    manifest = json.loads((run_dir / "manifest.json").read_text())
    requeues = manifest["requeues"]
    lines = [x for x in result.stdout.splitlines() if x.startswith("fer-bench launch: shard 1/1 "
                                                                   "requeued (")]
    print(f"time limit 1 min, SIGTERM {signal_lead_s(1)} s before it: {len(requeues)} "
          f"requeue(s), {seconds:.0f}s in all; " + " | ".join(lines))
    assert len(requeues) >= 1 and len(lines) == len(requeues)
    assert [r["count"] for r in requeues] == list(range(1, len(requeues) + 1))
    # stopped by the signal at a safe point (75), killed by it between cells or before the
    # cell's handler was set (-15: a loaded machine's slow start), or late by the limit
    for entry in requeues:
        assert entry["code"] in (75, -signal.SIGTERM) or entry["state"] == "TIMEOUT", entry
    assert manifest["jobs"]["1"] == requeues[-1]["new_job"]
    first = (run_dir / "submitit" / f"{requeues[0]['job']}_0_log.err").read_text()
    assert "Bypassing signal SIGTERM" in first         # submitit's process outlived the signal
    state = json.loads((run_dir / "shards" / "shard-1.state.json").read_text())
    assert state["exit_code"] == 0 and state["attempt"] == len(requeues) + 1
    assert state["slurm_job"] == requeues[-1]["new_job"]
    log = (run_dir / "logs" / "shard-1.log").read_text()
    assert "stopped by SIGTERM" in log or any(r["state"] == "TIMEOUT" for r in requeues), log

    from fer_bench.leaderboard.load import load_results

    [record] = load_results([run_dir / "shard-1.json"]).records
    assert record.status == "ok" and record.resumed_from_epoch is not None
    single = project.parent / "requeue-single.json"
    plain = launch_grid.run_pytest(project, *LAG_CELL, "--fer-results",
                                   str(project.parent / "store-requeue-single"),
                                   "--benchmark-json", str(single), env=env(project), timeout=300)
    assert plain.returncode == 0, plain.stdout + plain.stderr
    assert launch_grid.accuracies([run_dir / "shard-1.json"]) == launch_grid.accuracies([single])
    [alone] = load_results([single]).records
    assert (record.val_acc, record.test_acc) == (alone.val_acc, alone.test_acc)
    assert len(record.val_acc) == 12

    text, data = status(project, run_dir)
    assert data["complete"] and data["shard_details"][0]["requeues"] == len(requeues)
    assert f"requeues: {len(requeues)}" in text and "shard 1/1 requeued (1 of at most 6)" in text
